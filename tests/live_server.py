"""The real service in a process of its own, for the tests that need one: `LiveServer`.

It is the project's one launcher, `ServerProcess` (clients/local_server.py): a free loopback port,
the test's state dir, `LRR_` settings from `env` only, a log file, SIGTERM / SIGINT / kill -9, and
restarts on the same port. Tests that do not need a process use `InProcessServer`
(tests/in_process.py), which has the same interface. `exchange` is the one-frame round trip both use.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection

from lrr_service.clients.local_server import ServerProcess as LiveServer
from lrr_service.clients.local_server import clean_environment, free_loopback_port, wait_until_healthy
from lrr_service.clients.tls import shared_tls_context
from lrr_service.core.codec import Reply, decode_reply

REPO_ROOT = Path(__file__).resolve().parent.parent

HTTP = httpx.Client(timeout=30.0, verify=shared_tls_context(), limits=httpx.Limits(max_keepalive_connections=0))
"""For a test's one-off requests by absolute URL (`HTTP.get(url)`): one client per test process, since
making one costs about 50 ms of CPU; no connection is kept, as servers come and go between requests."""

__all__ = [
    "HTTP",
    "REPO_ROOT",
    "LiveServer",
    "clean_environment",
    "exchange",
    "free_loopback_port",
    "wait_for_session",
    "wait_until_healthy",
]

SESSION_WAIT_S = 30.0
"""Bound on each wait for a session to reach a state: a hang fails instead of blocking."""


async def exchange(ws: ClientConnection, frame: bytes | str) -> Reply:
    """Send one frame and decode the one reply the server sends for it."""
    await ws.send(frame)
    reply = await ws.recv()
    if isinstance(reply, str):
        raise AssertionError(f"the server sent a text message: {reply[:200]!r}")
    return decode_reply(reply)


def wait_for_session(
    url: str,
    key: str,
    condition: Callable[[dict], bool],
    what: str,
    while_running: subprocess.Popen | None = None,
) -> None:
    """Return once GET {url}/streams/{key} answers with a session meeting `condition`; fail saying the
    session never `what` after SESSION_WAIT_S, or at once if `while_running` (what feeds it) has exited."""
    deadline = time.monotonic() + SESSION_WAIT_S
    while True:
        if while_running is not None:
            assert while_running.poll() is None, while_running.communicate()
        reply = HTTP.get(f"{url}/streams/{key}")
        if reply.status_code == 200 and condition(reply.json()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the session {key!r} never {what}: {reply.text}")
        time.sleep(0.05)
