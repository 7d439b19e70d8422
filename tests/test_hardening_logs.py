"""Hardening of the log (issue-10 defect 5): the API token never appears in the server's output.

Browsers cannot set headers on websockets, so clients put the token in `?token=`; uvicorn logged
each handshake's URL verbatim, token included, for accepted and refused handshakes alike. The
fixed server logs those URLs with `token=[redacted]`. Proved against the real server's log file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus

from lrr_service.core.codec import AckReply, encode_chunk

try:
    from live_server import LiveServer, exchange
except ImportError:
    from tests.live_server import LiveServer, exchange

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-5ecret-never-logged-81c2"
WRONG_TOKEN = "tok-wrong-never-logged-3d9e"
REDACTED = "token=[redacted]"
LOG_WAIT_S = 10.0
"""How long the log may take to show a handshake (liveness bound: it is written at once)."""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("logs") / "lrr-state", env={"LRR_API_TOKEN": TOKEN}).start()
    yield live
    live.stop()


async def wait_for_redactions(server: LiveServer, count: int) -> str:
    """The log once it shows `count` redacted token URLs; AssertionError after LOG_WAIT_S."""
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        text = server.log_text()
        if text.count(REDACTED) >= count:
            return text
        if time.monotonic() > deadline:
            handshakes = [line for line in text.splitlines() if "WebSocket" in line or "token" in line]
            raise AssertionError(
                f"expected {count} handshake URLs logged with {REDACTED!r}; the log's handshake lines: {handshakes}"
            )
        await asyncio.sleep(0.05)


async def test_accepted_websocket_url_is_logged_with_the_token_redacted(secured: LiveServer) -> None:
    before = secured.log_text().count(REDACTED)
    async with secured.connect("logged-accepted", "fit") as ws:  # ?token=<the real token>
        assert isinstance(await exchange(ws, encode_chunk(0, np.ones((2, 3)))), AckReply)
    text = await wait_for_redactions(secured, before + 1)
    assert TOKEN not in text


async def test_refused_websocket_url_is_logged_with_the_token_redacted(secured: LiveServer) -> None:
    before = secured.log_text().count(REDACTED)
    with pytest.raises(InvalidStatus) as refused:
        async with secured.connect("logged-refused", "fit", token=WRONG_TOKEN):
            pass
    assert refused.value.response.status_code == 403
    text = await wait_for_redactions(secured, before + 1)
    assert WRONG_TOKEN not in text


async def test_the_token_appears_nowhere_in_the_log_after_mixed_traffic(secured: LiveServer) -> None:
    """Every place a token could travel: query token (right and wrong), Authorization header, REST."""
    async with secured.connect("logged-mixed", "transform", token=TOKEN) as ws:
        await exchange(ws, encode_chunk(0, np.ones((2, 3))))
    async with secured.connect(
        "logged-mixed", "fit", token="", additional_headers={"Authorization": f"Bearer {TOKEN}"}
    ) as ws:
        await exchange(ws, encode_chunk(0, np.ones((2, 3))))
    with pytest.raises(InvalidStatus):
        async with secured.connect("logged-mixed", "fit", token=TOKEN[:-1]):
            pass
    with secured.http() as http:
        assert http.get("/streams/logged-mixed").status_code == 200
        assert http.get("/streams", params={"token": TOKEN}).status_code == 200
    await wait_for_redactions(secured, 2)
    secured.stop()
    secured.start()  # start-up and shutdown lines included
    text = secured.log_text()
    assert TOKEN not in text and TOKEN[:-1] not in text
