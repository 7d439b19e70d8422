"""/docs and /redoc in a real browser on a rig without internet: the distribution's Chromium, headless, driven by
Playwright, with every request to a host other than loopback aborted. The pages must render from what the
server itself serves, and Swagger UI's "Authorize" and "Try it out" must reach the API with the token.

Chromium is the Debian package `chromium` (make test installs it when run as root); Playwright never
downloads a browser here. The HTTP side of the same pages: tests/test_docs_access.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from browser import chromium_context
from in_process import InProcessServer
from live_server import HTTP
from playwright.sync_api import BrowserContext, Page, Request, Route, expect

LOOPBACK = frozenset({"127.0.0.1", "localhost"})
UI_TIMEOUT_MS = 30_000
"""How long the page may take to render or answer: generous, the test machine's cores are shared."""
TOKEN = "docs-browser-token"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})

pytestmark = pytest.mark.timeout(180)


@dataclass
class OfflinePage:
    """A browser tab whose requests to any host but loopback are aborted, and what it asked for."""

    page: Page
    requested: list[str] = field(default_factory=list)
    """Every URL the page asked for, in order."""
    sent_away: list[str] = field(default_factory=list)
    """URLs that reached the network layer for another host (aborted there)."""
    refused_by_policy: list[str] = field(default_factory=list)
    """URLs the browser refused to fetch because of the page's Content-Security-Policy."""

    def from_elsewhere(self, server: InProcessServer) -> list[str]:
        """The URLs asked for that are not the server's (a blob: URL belongs to the origin it names)."""
        return [url for url in self.requested if not url.removeprefix("blob:").startswith(server.url + "/")]


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """The distribution's Chromium with a fresh profile, shared by the module's tests (one tab each)."""
    with chromium_context(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def offline(chromium: BrowserContext) -> Iterator[OfflinePage]:
    """A new tab with no way out but loopback."""
    tab = OfflinePage(chromium.new_page())

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            tab.sent_away.append(route.request.url)
            route.abort("internetdisconnected")

    def failed(request: Request) -> None:
        if request.failure == "csp":
            tab.refused_by_policy.append(request.url)

    tab.page.route("**/*", only_loopback)
    tab.page.on("request", lambda request: tab.requested.append(request.url))
    tab.page.on("requestfailed", failed)
    tab.page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield tab
    finally:
        tab.page.close()


def schema_of(server: InProcessServer) -> dict:
    """The server's OpenAPI document (open without the token)."""
    return HTTP.get(server.url + "/openapi.json", timeout=30).raise_for_status().json()


def operation_count(schema: dict) -> int:
    """How many operations the document lists (Swagger UI and ReDoc show one block each)."""
    return sum(1 for item in schema["paths"].values() for method in item if method in HTTP_METHODS)


def authorize(page: Page, token: str) -> None:
    """Enter `token` in Swagger UI's Authorize dialog and close it."""
    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".modal-ux")
    dialog.locator("input#auth-bearer-value").fill(token)
    dialog.locator("button[type=submit]").click()
    dialog.locator("button.btn-done").click()
    expect(dialog).to_have_count(0, timeout=UI_TIMEOUT_MS)


def try_it_out(page: Page, server: InProcessServer, schema: dict, path: str) -> tuple[Request, str, str]:
    """Open GET `path`, press "Try it out" and "Execute": the request the page sent, and the status and body
    Swagger UI shows for the response."""
    operation = schema["paths"][path]["get"]
    block = page.locator(f"#operations-{operation['tags'][0]}-{operation['operationId']}")
    block.locator(".opblock-summary-control").click()
    block.locator("button.try-out__btn").click()
    with page.expect_request(lambda request: request.url == server.url + path) as sent:
        block.locator("button.execute").click()
    shown = block.locator(".live-responses-table .response")
    expect(shown.locator(".response-col_status")).not_to_be_empty(timeout=UI_TIMEOUT_MS)
    status = shown.locator(".response-col_status").inner_text().split()[0]  # then the documented description
    return sent.value, status, shown.inner_text()


@pytest.mark.parametrize(
    ("server_token", "entered", "status", "answer"),
    [
        (TOKEN, TOKEN, "200", '"count"'),
        (TOKEN, "not-the-token", "401", '"unauthorized"'),
        (None, None, "200", '"count"'),
    ],
    ids=["token", "wrong-token", "no-token-configured"],
)
def test_swagger_ui_renders_offline_and_tries_the_api_with_the_token(
    offline: OfflinePage,
    server_factory: Callable[..., InProcessServer],
    server_token: str | None,
    entered: str | None,
    status: str,
    answer: str,
) -> None:
    server = server_factory(env={"LRR_API_TOKEN": server_token} if server_token else None)
    schema = schema_of(server)
    page = offline.page
    page.goto(server.url + "/docs")
    expect(page.locator(".info .title")).to_contain_text("lrr-service", timeout=UI_TIMEOUT_MS)
    expect(page.locator(".opblock")).to_have_count(operation_count(schema), timeout=UI_TIMEOUT_MS)
    if entered is None:  # nothing to authorize: no Authorize button
        expect(page.locator(".auth-wrapper button.authorize")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    else:
        authorize(page, entered)
    request, shown_status, shown = try_it_out(page, server, schema, "/streams")
    assert request.all_headers().get("authorization") == (f"Bearer {entered}" if entered else None)
    assert shown_status == status, shown
    assert answer in shown
    assert offline.from_elsewhere(server) == [] and offline.sent_away == []
    assets = {server.url + f"/docs/assets/{name}" for name in ("swagger-ui-bundle.js", "swagger-ui.css")}
    assert assets <= set(offline.requested)


def test_redoc_renders_offline(offline: OfflinePage, server_factory: Callable[..., InProcessServer]) -> None:
    server = server_factory(env={"LRR_API_TOKEN": TOKEN})
    schema = schema_of(server)
    page = offline.page
    page.goto(server.url + "/redoc")
    expect(page.locator(".api-info h1")).to_contain_text("lrr-service", timeout=UI_TIMEOUT_MS)
    operations = page.locator("[data-section-id^='tag/'][data-section-id*='/operation/']")
    expect(operations).to_have_count(operation_count(schema), timeout=UI_TIMEOUT_MS)
    assert server.url + "/docs/assets/redoc.standalone.js" in offline.requested
    # ReDoc's sidebar asks for Redocly's logo from their CDN: the page's policy refuses it in the browser
    assert offline.from_elsewhere(server) == offline.refused_by_policy
    assert offline.sent_away == []
