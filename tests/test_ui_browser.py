"""The live view (`GET /ui`, service/ui.py and service/ui-page/) in a real browser, against the real server with two
rigs streaming: the distribution's Chromium, headless, driven by Playwright, every request to a host other than
loopback aborted (the page must work from what the server serves).

With LRR_API_TOKEN set, the page shows nothing but its login until it has the right token (a wrong one is
refused with a visible message), then sends the token as a bearer header on every API call, never in a URL.
The session table lists both rigs with non-zero rates; a session's detail draws its weights as a heatmap
and its per-channel reduction as bars (read back from the canvases); the solve button gives new weights;
the weights CSV goes down and back up through the page; a refusal shows the server's message.

The test takes the screenshots the README shows (docs/ui-login.png, docs/ui-sessions.png, docs/ui-session.png)
into LRR_SCREENSHOTS_DIR when set (`make screenshots` sets it to docs/), else into its temporary directory, so
a test run leaves the checkout as it was. Chromium is the Debian package `chromium`
(make test installs it when run as root); Playwright never downloads a browser here.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from browser import chromium_context
from in_process import InProcessServer
from live_server import HTTP
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Request, Route, expect

from lrr_service.clients import LRRClient

LOOPBACK = frozenset({"127.0.0.1", "localhost"})
UI_TIMEOUT_MS = 20_000
"""How long the page may take to show what it is waited for: generous, the test machine's cores are shared."""
TOKEN = "ui-browser-token"
VIEWPORT = {"width": 1400, "height": 900}

RIGS = {"rig-a": 64, "rig-b": 32}
"""The two streams and their channel counts; rig-a is grouped in banks of BANK channels."""
BANK = 16
SAMPLES = 30
FS = 1000.0
PERIOD_S = 0.02
"""Seconds between one rig's frames: 50 frames/s of 30 samples each."""

pytestmark = pytest.mark.timeout(120)


# -- the rigs ------------------------------------------------------------------------------------------------


def chunk(rng: np.random.Generator, n: int, gains: np.ndarray) -> np.ndarray:
    """SAMPLES x n: a common noise per bank of BANK channels (different gain per channel), plus the channels' own
    signal: what LRR takes out, and what it keeps."""
    banks = rng.standard_normal((SAMPLES, (n + BANK - 1) // BANK))
    common = np.repeat(banks, BANK, axis=1)[:, :n] * gains
    return (common + 0.3 * rng.standard_normal((SAMPLES, n))).astype(np.float32)


class Rigs:
    """Two rigs streaming into the server from a thread of their own (their own event loop), until stopped:
    rig-a with fit_transform, rig-b with fit_transform then transform, both carrying fs."""

    def __init__(self, server: InProcessServer) -> None:
        self.server = server
        self.frames = dict.fromkeys(RIGS, 0)
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="ui-rigs", daemon=True)

    def __enter__(self) -> Rigs:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(20)
        assert not self._thread.is_alive(), "the rigs did not stop"
        assert not self.errors, self.errors

    async def _run(self) -> None:
        await asyncio.gather(*(self._rig(key, n, seed) for seed, (key, n) in enumerate(RIGS.items())))

    async def _rig(self, key: str, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        gains = rng.uniform(0.5, 2.0, n)
        try:
            async with LRRClient(self.server.url, key, self.server.token, allow_identity=True) as client:
                client.set_channels({"labels": [f"{key[-1].upper()}{i + 1:02d}" for i in range(n)]})
                while not self._stop.is_set():
                    mode = "fit_transform" if key == "rig-a" or self.frames[key] < 40 else "transform"
                    await client.request(mode, chunk(rng, n, gains), fs=FS)
                    self.frames[key] += 1
                    await asyncio.sleep(PERIOD_S)
        except BaseException as exc:
            self.errors.append(exc)

    def wait_for_frames(self, frames: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while min(self.frames.values()) < frames:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"the rigs sent {self.frames} frames in {timeout} s"
            time.sleep(0.05)


# -- the browser ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """The distribution's Chromium with a fresh profile, shared by the module's tests (one tab each)."""
    with chromium_context(
        tmp_path_factory.mktemp("chromium-profile"), viewport=VIEWPORT, accept_downloads=True
    ) as context:
        yield context


class Tab:
    """A browser tab whose requests to any host but loopback are aborted, with what it asked for and logged."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[Request] = []
        self.sent_away: list[str] = []
        self.console_errors: list[str] = []
        page.route("**/*", self._only_loopback)
        page.on("request", self._request)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console_errors.append(str(error)))
        page.set_default_timeout(UI_TIMEOUT_MS)

    def _request(self, request: Request) -> None:
        self.requests.append(request)  # (a bound builtin cannot be a Playwright handler)

    def _console(self, message: ConsoleMessage) -> None:
        # the browser logs every answer >= 400 as an error (the page shows them itself): not a fault of the page
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.console_errors.append(message.text)

    def _only_loopback(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            self.sent_away.append(route.request.url)
            route.abort("internetdisconnected")

    def api_requests(self, server: InProcessServer) -> list[Request]:
        """The requests to the API (not the page or its assets)."""
        paths = ("/streams", "/events")
        return [r for r in self.requests if r.url.startswith(server.url) and urlsplit(r.url).path.startswith(paths)]


@pytest.fixture
def tab(chromium: BrowserContext) -> Iterator[Tab]:
    opened = Tab(chromium.new_page())
    try:
        yield opened
    finally:
        opened.page.close()


# -- reading the page ----------------------------------------------------------------------------------------

TABLE_JS = """() => [...document.querySelectorAll('#rows tr')].map(
    row => [...row.cells].map(cell => cell.textContent))"""
COLUMNS = ("key", "channels", "status", "frames_in", "samples_in", "frames_out", "samples_out", "weights", "source")
COLUMNS += ("age", "p50", "p99", "median")

CANVAS_JS = """(id) => {
    const canvas = document.getElementById(id);
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = 0, coloured = 0;
    for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] === 0) continue;  // the background: never drawn
        drawn++;
        const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
        if (Math.max(r, g, b) - Math.min(r, g, b) > 40) coloured++;  // not white, grey or black
    }
    return {drawn, coloured, total: data.length / 4};
}"""


def table(page: Page) -> dict[str, dict[str, str]]:
    """The session table as {key: {column: text}} (the first columns)."""
    rows = page.evaluate(TABLE_JS)
    return {cells[0]: dict(zip(COLUMNS, cells)) for cells in rows}


def number(text: str) -> float:
    """A number the page shows ("1,650" or "55.0"); — (not measured) is 0."""
    return 0.0 if text.strip() == "—" else float(text.replace(",", ""))


def wait_until(condition: Callable[[], Any], what: str, timeout: float = UI_TIMEOUT_MS / 1000) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def screenshot(page: Page, into: Path, name: str, height: float | None = None) -> None:
    """Save into/<name> (the page down to `height`, else all of it), a PNG as wide as the viewport."""
    path = into / name
    if height is None:
        page.screenshot(path=str(path), full_page=True)
    else:
        page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", header[16:20])[0] == VIEWPORT["width"], name


def weights_version(server: InProcessServer, key: str) -> int:
    with server.http() as http:
        version: int = http.get(f"/streams/{key}").raise_for_status().json()["weights_version"]
    return version


# -- the tests -----------------------------------------------------------------------------------------------


@pytest.fixture
def streaming(server_factory: Callable[..., InProcessServer]) -> Iterator[InProcessServer]:
    """A server with a token, only explicit solves (so the solve button is what changes the weights), and two
    rigs streaming into it, fitted once so that both have weights."""
    server = server_factory(env={"LRR_API_TOKEN": TOKEN, "LRR_SOLVE_EVERY_SAMPLES": "1000000000"})
    with server.http() as http:
        http.put("/streams/rig-a", json={"block_size": BANK}).raise_for_status()
    with Rigs(server) as rigs:
        rigs.wait_for_frames(20)
        with server.http() as http:
            for key in RIGS:
                http.post(f"/streams/{key}/solve").raise_for_status()
        yield server


def test_the_live_view_with_a_token_shows_sessions_weights_and_quality_and_solves(
    tab: Tab, streaming: InProcessServer, tmp_path: Path
) -> None:
    server, page = streaming, tab.page
    shots = Path(os.environ.get("LRR_SCREENSHOTS_DIR") or tmp_path)

    # the login, and nothing else, until the right token
    page.goto(server.url + "/")
    assert page.url == server.url + "/ui"
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#main")).to_be_hidden()
    assert "rig-a" not in page.content()
    assert HTTP.get(server.url + "/ui/app.js", timeout=30).status_code == 200  # the page's files: no token
    assert HTTP.get(server.url + "/streams", timeout=30).status_code == 401  # its data: the token

    page.fill("#token", "not-the-token")
    page.press("#token", "Enter")
    expect(page.locator("#login-message")).to_contain_text("Token refused")
    expect(page.locator("#login-message")).to_contain_text("wrong API token")
    expect(page.locator("#main")).to_be_hidden()
    assert "rig-a" not in page.content()
    screenshot(page, shots, "ui-login.png", height=280)

    page.fill("#token", TOKEN)
    page.press("#token", "Enter")
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()

    # the table: both rigs, streaming
    def both_streaming() -> dict[str, dict[str, str]] | None:
        rows = table(page)
        live = set(rows) == set(RIGS) and all(
            number(row["frames_in"]) > 0
            and number(row["samples_in"]) > 0
            and number(row["frames_out"]) > 0
            and row["median"].endswith(" dB")  # the noise the rigs share went down (measured)
            for row in rows.values()
        )
        return rows if live else None

    rows = wait_until(both_streaming, "both rigs in the table with non-zero rates")
    assert {key: int(row["channels"]) for key, row in rows.items()} == RIGS
    assert "fit_transform 1" in rows["rig-a"]["status"] and "transform 1" in rows["rig-b"]["status"]
    expect(page.locator("#feed")).to_have_text("live")  # GET /events, not the polling fallback
    box = page.locator("#sessions").bounding_box()
    assert box is not None
    screenshot(page, shots, "ui-sessions.png", height=box["y"] + box["height"] + 16)

    # a session's detail: the heatmap and the bars are drawn
    page.locator("#rows tr", has_text="rig-a").click()
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-key")).to_have_text("rig-a")
    heatmap = wait_until(lambda: (drawn := page.evaluate(CANVAS_JS, "heatmap"))["coloured"] > 0 and drawn, "heatmap")
    assert heatmap["drawn"] == heatmap["total"]  # the whole square
    expect(page.locator("#heatmap-caption")).to_contain_text(f"{RIGS['rig-a'] // BANK} groups")
    bars = wait_until(lambda: (drawn := page.evaluate(CANVAS_JS, "bars"))["coloured"] > 0 and drawn, "the bars")
    assert 0 < bars["drawn"] < bars["total"]
    expect(page.locator("#bars")).to_have_attribute("data-bars", str(RIGS["rig-a"]))
    expect(page.locator("#bars-caption")).to_contain_text(f"{RIGS['rig-a']} of {RIGS['rig-a']} channels measured")
    status = page.locator("#status")
    expect(status).to_contain_text("fit_transform 1")
    expect(status).to_contain_text("1,000 Hz")
    page.locator("#bars").hover()
    expect(page.locator("#bars-hover")).to_contain_text("dB")
    screenshot(page, shots, "ui-session.png")

    # solve: new weights, shown
    before = weights_version(server, "rig-a")
    page.click("#solve")
    expect(page.locator("#action-message")).to_contain_text(f"solved: weights version {before + 1}")
    assert weights_version(server, "rig-a") == before + 1
    expect(status.locator("div", has_text="weights version")).to_contain_text(str(before + 1))
    expect(page.locator("#heatmap-caption")).to_contain_text(f"version {before + 1}")

    # reset asks first: dismissed, nothing happens
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#reset")
    assert weights_version(server, "rig-a") == before + 1

    # the weights CSV: downloaded, then uploaded back (pinned, a new version)
    with page.expect_download() as downloaded:
        page.click("#download")
    assert downloaded.value.suggested_filename == f"rig-a-weights-v{before + 1}.csv"
    page.set_input_files("#upload", downloaded.value.path())
    expect(page.locator("#action-message")).to_contain_text("uploaded")
    with server.http() as http:
        uploaded = http.get("/streams/rig-a").raise_for_status().json()
    assert uploaded["weights_source"] == "uploaded" and uploaded["weights_version"] > before + 1
    expect(page.locator("#action-message")).to_contain_text(f"weights version {uploaded['weights_version']}")

    # an error of the API is shown with the server's message
    with server.http() as http:
        http.delete("/streams/rig-b").raise_for_status()  # the rig's next frame creates it anew, unfitted
        wait_until(lambda: http.get("/streams/rig-b").status_code == 200, "rig-b anew")
    page.locator("#rows tr", has_text="rig-b").click()
    page.click("#download")
    expect(page.locator("#error")).to_contain_text("no_weights")
    expect(page.locator("#error")).to_contain_text("has no weights yet")

    # the token went as a bearer header on every API call after the login, never in a URL
    sent = [(r.url, r.all_headers().get("authorization")) for r in tab.api_requests(server)]
    assert all(TOKEN not in url and "not-the-token" not in url for url, _ in sent)
    after_login = sent[[auth for _, auth in sent].index(f"Bearer {TOKEN}") :]
    assert {auth for _, auth in after_login} == {f"Bearer {TOKEN}"}
    assert tab.sent_away == [] and tab.console_errors == []


def test_without_a_token_the_page_opens_on_the_table(tab: Tab, server_factory: Callable[..., InProcessServer]) -> None:
    server = server_factory()
    root = HTTP.get(server.url + "/", timeout=30)
    assert root.status_code == 307 and root.headers["location"] == "/ui"
    served = HTTP.get(server.url + "/ui", timeout=30)
    assert "script-src 'self'" in served.headers["content-security-policy"]
    page = tab.page
    page.goto(server.url + "/ui")
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#logout")).to_be_hidden()
    expect(page.locator("#empty")).to_be_visible()
    assert all(r.all_headers().get("authorization") is None for r in tab.api_requests(server))
    assert tab.sent_away == [] and tab.console_errors == []
