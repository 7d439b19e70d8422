"""Start an lrr server in a child process (`python -m lrr_service.service serve`): `ServerProcess`.

The one launcher of the project: `lrr demo` runs its private server with it (`private_server`),
the tests that need a process of their own (kill -9, signals, exit statuses) and the benchmarks
theirs. The service is run as a separate program, never imported: clients and service stay
independent. The child gets this process's environment without any `LRR_` variable, plus the
`env` it is given, so what it does depends on nothing but its arguments.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import websockets

from lrr_service.clients.tls import shared_tls_context

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class LocalServerError(RuntimeError):
    """The server process did not come up."""


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that the OS reported free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_loopback_port_block(size: int) -> int:
    """A port P such that P .. P+size-1 on 127.0.0.1 were all free a moment ago (a cluster's ports)."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        if all(_port_free(base + i) for i in range(size)):
            return base
    raise LocalServerError(f"no block of {size} free loopback ports found")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll GET {url}/health until it answers 200 (True), or `process` exits or `timeout` passes (False).

    Shared by everything that starts a server process and must know when it serves.
    """
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0, verify=shared_tls_context()) as http:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if http.get(url + "/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    return False


def clean_environment(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment without any LRR_ variable, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRR_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class ServerAddress:
    """A local server's addresses and clients, from its `port` and `token` (shared by ServerProcess and the
    tests' in-process server)."""

    port: int
    token: str | None

    @property
    def url(self) -> str:
        """Base HTTP URL, e.g. http://127.0.0.1:54321."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """Base websocket URL, e.g. ws://127.0.0.1:54321."""
        return f"ws://127.0.0.1:{self.port}"

    def http(self, token: str | None = None) -> httpx.Client:
        """An httpx client on the base URL, sending the server's token (or `token`) as a Bearer header."""
        chosen = token if token is not None else self.token
        headers = {"Authorization": f"Bearer {chosen}"} if chosen else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, verify=shared_tls_context())

    def connect(self, key: str, route: str, token: str | None = None, **kwargs: object) -> websockets.connect:
        """`async with server.connect("rig1", "fit") as ws:` -- a websocket on /ws/{key}/{route} (token via ?token=)."""
        chosen = token if token is not None else self.token
        query = f"?token={chosen}" if chosen else ""
        kwargs.setdefault("max_size", None)
        return websockets.connect(f"{self.ws_url}/ws/{key}/{route}{query}", **kwargs)  # type: ignore[arg-type]


class ServerProcess(ServerAddress):
    """One server process on 127.0.0.1 bound to a state directory; restartable on the same port.

    `env` holds LRR_ settings; its stdout and stderr go to `log_path` (beside the state dir by default).
    """

    def __init__(
        self,
        state_dir: Path | str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        log_path: Path | str | None = None,
        subcommand: str | None = "serve",
    ) -> None:
        self.state_dir = Path(state_dir)
        self.env = dict(env or {})
        self.port = port or free_loopback_port()
        self.log_path = Path(log_path) if log_path else self.state_dir.with_name(self.state_dir.name + ".log")
        self.token: str | None = self.env.get("LRR_API_TOKEN")
        self.subcommand = subcommand
        self._process: subprocess.Popen[bytes] | None = None

    # -- addresses and clients ----------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The server process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        """Everything the server wrote to stdout/stderr so far (all runs on this object)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> ServerProcess:
        """Start the server and return once GET /health answers 200; raises with the log's tail on failure."""
        if self.running:
            raise RuntimeError("server already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "lrr_service.service",
            *([self.subcommand] if self.subcommand else []),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--state-dir",
            str(self.state_dir),
        ]
        with open(self.log_path, "ab") as log:
            process = self._process = subprocess.Popen(
                command, env=clean_environment(self.env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        if wait_until_healthy(self.url, process, timeout):
            return self
        if process.poll() is not None:
            raise LocalServerError(f"the server exited during start-up:\n{self.log_text()[-4000:]}")
        self.kill()
        raise LocalServerError(f"the server did not answer within {timeout:.0f} s:\n{self.log_text()[-4000:]}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """Graceful stop (SIGTERM, which checkpoints every session), SIGKILL if it hangs; returns the exit code."""
        return self._signal_and_wait(signal.SIGTERM, timeout)

    def interrupt(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """Graceful stop with SIGINT (Ctrl-C), SIGKILL if it hangs; returns the exit code."""
        return self._signal_and_wait(signal.SIGINT, timeout)

    def kill(self) -> int | None:
        """`kill -9`: no checkpoint, no cleanup; returns the exit code."""
        return self._signal_and_wait(signal.SIGKILL, STOP_TIMEOUT_S)

    def restart(self, timeout: float = START_TIMEOUT_S) -> ServerProcess:
        """Graceful stop, then start again on the same port and state dir."""
        self.stop()
        return self.start(timeout)

    def _signal_and_wait(self, signum: int, timeout: float) -> int | None:
        """Send `signum`, wait up to `timeout`, escalate to SIGKILL; idempotent when not running."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signum)
            try:
                return process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait(STOP_TIMEOUT_S)

    def __enter__(self) -> ServerProcess:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ClusterProcess(ServerProcess):
    """`serve --workers N` (HAProxy, Redis and N workers, docs/scale.md) as one ServerProcess: its `url` is
    the proxy's; the workers listen on port+1 .. port+N, and `cluster.json` in the state dir says which
    process is which, so a worker can be paused or killed."""

    def __init__(
        self,
        state_dir: Path | str,
        workers: int = 2,
        env: dict[str, str] | None = None,
        log_path: Path | str | None = None,
    ) -> None:
        env = {**(env or {}), "LRR_WORKERS": str(workers)}
        super().__init__(state_dir, env=env, port=free_loopback_port_block(workers + 2), log_path=log_path)
        self.workers = workers
        self._lookups: httpx.Client | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> ClusterProcess:
        """Start and return once every worker is ready and the proxy answers."""
        super().start(timeout)
        deadline = time.monotonic() + timeout
        with self.http() as http:
            while time.monotonic() < deadline:
                if (self.state_dir / "cluster.json").exists() and all(
                    _ready(http, self.worker_url(i)) for i in range(self.workers)
                ):
                    return self
                time.sleep(0.05)
        self.kill()
        raise LocalServerError(f"the cluster's workers did not become ready:\n{self.log_text()[-4000:]}")

    def stop(self, timeout: float = 4 * STOP_TIMEOUT_S) -> int | None:
        """SIGTERM: the launcher stops the workers (each checkpoints), then HAProxy and Redis."""
        if self._lookups is not None:
            self._lookups.close()
            self._lookups = None
        return super().stop(timeout)

    def http(self, token: str | None = None, base_url: str | None = None, **headers: str) -> httpx.Client:
        """An httpx client on the proxy (or `base_url`, e.g. a worker's), with the token and `headers`."""
        client = super().http(token)
        client.base_url = httpx.URL(base_url or self.url)
        client.headers.update(headers)
        return client

    def worker_url(self, index: int) -> str:
        """Base URL of worker `index` (0-based)."""
        return f"http://127.0.0.1:{self.port + 1 + index}"

    def topology(self) -> dict[str, Any]:
        """The launcher's cluster.json: ports, URLs and process ids."""
        topology: dict[str, Any] = json.loads((self.state_dir / "cluster.json").read_text())
        return topology

    def worker_pid(self, index: int) -> int:
        """The process id of worker `index` now (the launcher starts a dead worker again)."""
        return int(self.topology()["workers"][index]["pid"])

    def redis_pid(self) -> int:
        """The process id of the Redis server the launcher started."""
        return int(self.topology()["redis_pid"])

    def owner_index(self, key: str) -> int:
        """The worker that owns `key`, asked through the proxy (which makes its ring's worker the owner)."""
        if self._lookups is None:
            self._lookups = self.http()
        reply = self._lookups.get(f"/streams/{key}/owner")
        reply.raise_for_status()
        return int(reply.json()["owner"].rsplit(":", 1)[1]) - self.port - 1


def _ready(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url + "/ready", timeout=1.0).status_code in (200, 401)
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def private_server(timeout: float = START_TIMEOUT_S) -> Iterator[ServerProcess]:
    """A server with default settings and a temporary state dir, both gone afterwards (`lrr demo`)."""
    workdir = Path(tempfile.mkdtemp(prefix="lrr-demo-"))
    try:
        with ServerProcess(workdir / "state").start(timeout) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
