"""The API documentation over HTTP: its pages, assets and schema are served by the service itself and open
without the token (GET only, Host still checked); the schema declares the bearer token when the server has
one. The browser's view of the same pages: tests/test_docs_offline.py."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from in_process import InProcessServer

from lrr_service.service.api_docs import ASSETS_PATH, BEARER_SCHEME, OPENAPI_PATH, PUBLIC_PATHS

TOKEN = "docs-access-token"
PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    server = InProcessServer(tmp_path_factory.mktemp("docs") / "lrr-state", env={"LRR_API_TOKEN": TOKEN}).start()
    yield server
    server.stop()


def test_every_public_path_answers_without_the_token_with_its_content_type(secured: InProcessServer) -> None:
    expected_types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
    assert {"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"} < PUBLIC_PATHS
    with secured.http(token="") as anonymous:
        for path in sorted(PUBLIC_PATHS):
            response = anonymous.get(path)
            assert response.status_code == 200, (path, response.text[:200])
            suffix = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[1] else ".html"
            assert response.headers["content-type"].startswith(expected_types.get(suffix, "text/html")), path
        assert anonymous.head(f"{ASSETS_PATH}/swagger-ui-bundle.js").status_code == 200


def test_the_pages_load_nothing_from_another_site(secured: InProcessServer) -> None:
    with secured.http(token="") as anonymous:
        for path in ("/docs", "/redoc"):
            page = anonymous.get(path).text
            assert "://" not in page, path  # every script, style and icon is a path on this server
            loaded = set(re.findall(r'(?:src|href)="([^"]+)"', page))
            assert loaded and all(url.startswith(ASSETS_PATH + "/") for url in loaded), loaded
            assert loaded <= PUBLIC_PATHS
        assert "img-src 'self'" in anonymous.get("/redoc").headers["content-security-policy"]  # Redocly's logo


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("path", [*PAGES, OPENAPI_PATH])
def test_only_reads_of_the_docs_pass_without_the_token(secured: InProcessServer, method: str, path: str) -> None:
    with secured.http(token="") as anonymous:
        response = anonymous.request(method, path)
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "unauthorized"


def test_data_routes_and_other_asset_paths_still_need_the_token(secured: InProcessServer) -> None:
    with secured.http(token="") as anonymous, secured.http() as authorized:
        for path in ("/streams", "/metrics", "/ready", f"{ASSETS_PATH}/swagger-ui.js.map", f"{ASSETS_PATH}/"):
            assert anonymous.get(path).status_code == 401, path
            assert anonymous.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        assert authorized.get(f"{ASSETS_PATH}/swagger-ui.js.map").status_code == 404
        assert authorized.get("/streams").status_code == 200


def test_a_path_that_climbs_out_of_the_assets_is_refused(secured: InProcessServer) -> None:
    """The exemption is by exact path: `/docs/assets/../streams` (sent as is, which HTTP clients would not do)
    needs the token like any other path."""
    with socket.create_connection(("127.0.0.1", secured.port), timeout=10) as connection:
        head = f"GET {ASSETS_PATH}/../streams HTTP/1.1\r\nHost: 127.0.0.1:{secured.port}\r\nConnection: close\r\n\r\n"
        connection.sendall(head.encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


def test_the_docs_still_answer_only_to_allowed_host_names(secured: InProcessServer) -> None:
    with secured.http(token="") as anonymous:
        for path in ("/docs", OPENAPI_PATH, f"{ASSETS_PATH}/swagger-ui-bundle.js"):
            response = anonymous.get(path, headers={"Host": "attacker.example"})
            assert response.status_code == 400, path
            assert response.json()["detail"]["code"] == "host_not_allowed"


def test_the_schema_declares_the_bearer_token_on_every_operation_but_health(secured: InProcessServer) -> None:
    with secured.http(token="") as anonymous:
        schema = anonymous.get(OPENAPI_PATH).json()
    assert schema["components"]["securitySchemes"][BEARER_SCHEME] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the server's LRR_API_TOKEN, sent as `Authorization: Bearer <token>`",
    }
    assert schema["security"] == [{BEARER_SCHEME: []}]
    operations = [(path, op) for path, item in schema["paths"].items() for op in item.values()]
    assert {path for path, op in operations if op.get("security") == []} == {"/health"}
    assert {path for path, op in operations if "401" not in op["responses"]} == {"/health"}
    assert "/streams/{key}/weights" in schema["paths"]


def test_without_a_token_the_schema_declares_none(live_server: InProcessServer) -> None:
    with live_server.http() as http:
        schema = http.get(OPENAPI_PATH).json()
        assert http.get("/docs").status_code == 200
    assert "security" not in schema
    assert BEARER_SCHEME not in schema.get("components", {}).get("securitySchemes", {})
    assert all("security" not in op for item in schema["paths"].values() for op in item.values())
