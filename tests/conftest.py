"""Shared pytest fixtures: the real service on free loopback ports, in this process (tests/in_process.py).

Tests that need a process of their own (kill -9, signals, exit statuses) start a LiveServer
(tests/live_server.py) themselves.
"""

from __future__ import annotations

import itertools
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

try:  # tests/ on sys.path (pytest's default rootdir-conftest import mode)
    from in_process import InProcessServer
    from live_server import LiveServer
except ImportError:  # tests imported as a package
    from tests.in_process import InProcessServer
    from tests.live_server import LiveServer

ServerFactory = Callable[..., InProcessServer]


def pytest_configure(config: pytest.Config) -> None:
    """Take SIGINT back if this run inherited it ignored (a shell without job control starts background jobs
    so): every process the tests start would inherit that too, and the tests of Ctrl-C could not interrupt."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[InProcessServer]:
    """A fresh server (default settings, no token) on its own state dir, stopped after the test."""
    server = InProcessServer(tmp_path / "lrr-state").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """One server shared by a test module; tests must use their own stream keys."""
    server = InProcessServer(tmp_path_factory.mktemp("shared") / "lrr-state").start()
    try:
        yield server
    finally:
        server.stop()


def _factory(kind: type, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Make started servers of `kind` with env overrides; each gets its own state dir unless `state_dir`
    is given; all are stopped after the test."""
    servers: list[Any] = []

    def make(env: dict[str, str] | None = None, state_dir: Path | None = None) -> Any:
        server = kind(state_dir or tmp_path / f"lrr-state-{len(servers)}", env=env)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Make started in-process servers with env overrides: `server_factory(env={"LRR_API_TOKEN": "t"})`."""
    yield from _factory(InProcessServer, tmp_path)


@pytest.fixture
def process_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Like server_factory, but each server is a process of its own (for kill -9, signals, exit statuses)."""
    yield from _factory(LiveServer, tmp_path)


@pytest.fixture
def stream_key(request: pytest.FixtureRequest) -> str:
    """A valid stream key unique to the test (so tests can share one server)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", request.node.name)
    return f"{name[:100]}-{next(_key_counter)}"


_key_counter = itertools.count()
