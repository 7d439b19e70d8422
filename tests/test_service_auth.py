"""API token: REST 401 and websocket handshake refusal without it, /health and the API documentation (GET) always
open; off by default."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import websockets
from in_process import InProcessServer
from live_server import LiveServer, exchange
from websockets.exceptions import InvalidStatus

from lrr_service.core.codec import AckReply, encode_chunk
from lrr_service.service.api_docs import PUBLIC_PATHS
from lrr_service.service.app import create_app
from lrr_service.service.config import ServiceSettings
from lrr_service.service.ui import UI_PUBLIC_PATHS

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = InProcessServer(tmp_path_factory.mktemp("auth") / "lrr-state", env={"LRR_API_TOKEN": TOKEN}).start()
    yield live
    live.stop()


def http_routes(routes: list) -> list:
    """Every HTTP route below `routes`, looking into included routers (FastAPI >= 0.16x nests them) and mounts."""
    found = []
    for route in routes:
        if getattr(route, "methods", None):  # an HTTP route; websocket routes have no methods
            found.append(route)
        elif getattr(route, "original_router", None) is not None:
            found += http_routes(route.original_router.routes)
        elif getattr(route, "routes", None):
            found += http_routes(route.routes)
    return found


def rest_calls() -> list[tuple[str, str]]:
    """(method, path) of every HTTP route the app has, read from the app itself, with `{key}` filled in."""
    calls = []
    for route in http_routes(create_app(ServiceSettings()).routes):
        path = route.path.replace("{key}", "k")
        calls += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return calls


REST_CALLS = rest_calls()
DOCS_CALLS = [(method, path) for method, path in REST_CALLS if method == "GET" and path in PUBLIC_PATHS]
PAGE_CALLS = [(method, path) for method, path in REST_CALLS if method == "GET" and path in UI_PUBLIC_PATHS]
"""The live view's page and its files (service/ui.py): no data, so no token (the page asks for it itself)."""
PROTECTED_CALLS = [call for call in REST_CALLS if call[1] != "/health" and call not in DOCS_CALLS + PAGE_CALLS]


def test_the_route_list_covers_the_documentation_and_every_stream_route() -> None:
    paths = {path for _, path in REST_CALLS}
    assert {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/metrics", "/ready"} <= paths
    assert ("PUT", "/streams/k/weights") in REST_CALLS and ("DELETE", "/streams/k") in REST_CALLS
    assert {path for _, path in DOCS_CALLS} == {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
    assert {path for _, path in PAGE_CALLS} == {"/", "/ui", "/ui/app.js", "/ui/style.css"}


@pytest.mark.parametrize(("method", "path"), PROTECTED_CALLS)
@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", TOKEN[:-1]])
def test_rest_refuses_missing_or_wrong_token(secured: LiveServer, method: str, path: str, token: str | None) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    with secured.http(token="") as http:
        response = http.request(method, path, headers=headers, json={} if method == "PUT" else None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"]["code"] == "unauthorized"


def test_rest_accepts_the_token_and_health_needs_none(secured: LiveServer) -> None:
    with secured.http(token="") as anonymous:
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/streams?token=" + TOKEN).status_code == 401  # query tokens are for websockets only
    with secured.http() as http:
        assert http.get("/ready").status_code == 200
        assert http.put("/streams/authed", json={}).status_code == 201
        assert http.get("/streams").json()["count"] >= 1
        assert http.get("/metrics").status_code == 200
        assert "/streams/{key}" in http.get("/openapi.json").json()["paths"]
        assert http.get("/docs").status_code == 200 and http.get("/redoc").status_code == 200


@pytest.mark.parametrize(("method", "path"), DOCS_CALLS + PAGE_CALLS)
@pytest.mark.parametrize("token", [None, "wrong"])
def test_the_documentation_needs_no_token(secured: LiveServer, method: str, path: str, token: str | None) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    with secured.http(token="") as http:
        assert http.request(method, path, headers=headers, follow_redirects=True).status_code == 200  # / -> /ui


@pytest.mark.parametrize("query", ["", "?token=wrong", "?token="])
async def test_websocket_handshake_is_refused_without_the_token(secured: LiveServer, query: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{secured.ws_url}/ws/k/fit{query}"):
            pass
    assert refused.value.response.status_code == 403
    with secured.http() as http:
        assert http.get("/streams/k").status_code == 404  # nothing was created


async def test_websocket_accepts_query_token_or_bearer_header(secured: LiveServer) -> None:
    async with websockets.connect(f"{secured.ws_url}/ws/wsauth/fit?token={TOKEN}") as ws:
        assert isinstance(await exchange(ws, encode_chunk(0, np.ones((2, 3)))), AckReply)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with websockets.connect(f"{secured.ws_url}/ws/wsauth/fit", additional_headers=headers) as ws:
        reply = await exchange(ws, encode_chunk(1, np.ones((2, 3))))
    assert isinstance(reply, AckReply) and reply.n_samples == 4


async def test_without_a_token_everything_is_open(live_server: LiveServer) -> None:
    with live_server.http() as http:
        assert http.get("/streams").status_code == 200
        assert http.get("/streams", headers={"Authorization": "Bearer anything"}).status_code == 200
    async with websockets.connect(f"{live_server.ws_url}/ws/open/transform") as ws:
        assert (await exchange(ws, encode_chunk(0, np.ones((1, 3))))).seq == 0
