"""Shared pytest fixtures: real lrr-service processes on free loopback ports (see tests/live_server.py)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

try:  # tests/ on sys.path (pytest's default rootdir-conftest import mode)
    from live_server import LiveServer
except ImportError:  # tests imported as a package
    from tests.live_server import LiveServer

ServerFactory = Callable[..., LiveServer]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh server (default settings, no token) on its own state dir, stopped after the test."""
    server = LiveServer(tmp_path / "lrr-state").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server shared by a test module; tests must use their own stream keys."""
    server = LiveServer(tmp_path_factory.mktemp("shared") / "lrr-state").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Make started servers with env overrides: `server_factory(env={"LRR_API_TOKEN": "t"})`.

    Each call gets its own state dir unless `state_dir` is given; all are stopped after the test.
    """
    servers: list[LiveServer] = []

    def make(env: dict[str, str] | None = None, state_dir: Path | None = None) -> LiveServer:
        server = LiveServer(state_dir or tmp_path / f"lrr-state-{len(servers)}", env=env)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def stream_key(request: pytest.FixtureRequest) -> str:
    """A valid stream key unique to the test (so tests can share one server)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", request.node.name)
    return f"{name[:100]}-{next(_key_counter)}"


_key_counter = itertools.count()
