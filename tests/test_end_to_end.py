"""Every route of the app once, against the service as users run it: `python -m lrr_service.service serve`
in a process of its own. The contract tests run the same app in the test process (tests/in_process.py);
this proves the command-line server serves every one of those routes, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lrr_service.core.codec import AckReply, ChunkReply, encode_chunk
from lrr_service.core.vocabulary import Mode
from lrr_service.core.weights_csv import format_weights_csv
from lrr_service.service.app import create_app
from lrr_service.service.config import ServiceSettings

try:
    from live_server import LiveServer, exchange
    from test_service_auth import http_routes
except ImportError:
    from tests.live_server import LiveServer, exchange
    from tests.test_service_auth import http_routes

KEY = "end-to-end"
N = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("e2e") / "state") as live:
        yield live


def app_routes() -> tuple[set[tuple[str, str]], set[str]]:
    """(method, path) of every HTTP route and the path of every websocket route of the app, `{key}` filled in."""
    app = create_app(ServiceSettings())
    http = {
        (method, route.path.replace("{key}", KEY))
        for route in http_routes(app.routes)
        for method in route.methods - {"HEAD"}
    }
    websockets = {
        route.path.replace("{key}", KEY)
        for route in leaf_routes(app.routes)
        if getattr(route, "path", "").startswith("/ws/")
    }
    return http, websockets


def leaf_routes(routes: list) -> list:
    """Every route below `routes`, looking into included routers and mounts."""
    found = []
    for route in routes:
        nested = getattr(route, "original_router", None) or route
        children = getattr(nested, "routes", None)
        found += leaf_routes(children) if children else [route]
    return found


async def test_every_route_answers_on_the_process_server(server: LiveServer, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    W = rng.uniform(-0.3, 0.3, (N, N))
    np.fill_diagonal(W, 0.0)
    called: set[tuple[str, str]] = set()
    with server.http() as http:

        def call(method: str, path: str, expected: int, **kwargs: object) -> object:
            response = http.request(method, path, **kwargs)
            assert response.status_code == expected, (method, path, response.status_code, response.text[:300])
            called.add((method, path))
            return response

        for path in ("/health", "/ready", "/metrics", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"):
            call("GET", path, 200)
        for path in ("/ui", "/ui/app.js", "/ui/style.css"):
            call("GET", path, 200)
        assert call("GET", "/", 307).headers["location"].endswith("/ui")
        call("PUT", f"/streams/{KEY}", 201, json={"ridge_lambda": 0.1})
        call("PUT", f"/streams/{KEY}/weights", 200, content=format_weights_csv(W))
        assert (
            np.loadtxt(call("GET", f"/streams/{KEY}/weights", 200).text.splitlines(), delimiter=",").tobytes()
            == W.tobytes()
        )
        replies = []
        for route in Mode:
            async with server.connect(KEY, route) as ws:
                replies.append(await exchange(ws, encode_chunk(0, rng.standard_normal((50, N)))))
        assert [type(reply) for reply in replies] == [AckReply, ChunkReply, ChunkReply]
        assert call("POST", f"/streams/{KEY}/solve", 200).json()["replaced_uploaded"] is True
        assert call("GET", f"/streams/{KEY}/quality", 200).json()["measured_frames"] >= 1
        with http.stream("GET", "/events") as events:
            assert events.status_code == 200 and next(events.iter_lines()).startswith("retry:")
            called.add(("GET", "/events"))
        assert call("GET", "/streams", 200).json()["count"] == 1
        owner = call("GET", f"/streams/{KEY}/owner", 200).json()
        assert owner == {"key": KEY, "owner": server.url, "cluster": False}
        assert call("GET", f"/streams/{KEY}", 200).json()["n_samples"] == 100
        labels = [f"ch{i}" for i in range(N)]
        described = call("PUT", f"/streams/{KEY}/channels", 200, json={"labels": labels}).json()
        assert described["regrouped"] == "unchanged" and described["channels"]["labels"] is True
        assert call("GET", f"/streams/{KEY}/channels", 200).json()["channels"]["labels"] == labels
        assert call("DELETE", f"/streams/{KEY}/channels", 200).json()["channels"] is None
        assert call("POST", f"/streams/{KEY}/reset", 200).json()["n_channels"] is None
        call("DELETE", f"/streams/{KEY}", 204)
    http_routes_of_app, websocket_routes = app_routes()
    assert called == http_routes_of_app
    assert websocket_routes == {f"/ws/{KEY}/{route}" for route in Mode}
