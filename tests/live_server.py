"""Run the real lrr-service in a subprocess for tests: free loopback port, temp state dir.

`LiveServer(state_dir, env=None)` starts `python -m lrr_service.service serve` with uvicorn on
127.0.0.1, waits for `/health`, and stops it with SIGTERM (then SIGKILL). `kill()` is a
`kill -9`; `start()` again restarts on the same state dir and port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from lrr_service.clients.local_server import free_loopback_port, wait_until_healthy
from lrr_service.core.codec import Reply, decode_reply

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def _clean_environment(overrides: dict[str, str]) -> dict[str, str]:
    """The parent's environment without any LRR_ variable, plus `overrides`, so tests are hermetic."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRR_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class LiveServer:
    """One real server process bound to a state directory; restartable on the same port."""

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

    # -- addresses --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base HTTP URL, e.g. http://127.0.0.1:54321."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """Base websocket URL, e.g. ws://127.0.0.1:54321."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def http(self, token: str | None = None) -> httpx.Client:
        """An httpx client on the base URL, sending the server's token (or `token`) as a Bearer header."""
        chosen = token if token is not None else self.token
        headers = {"Authorization": f"Bearer {chosen}"} if chosen else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def connect(self, key: str, route: str, token: str | None = None, **kwargs: object) -> websockets.connect:
        """`async with server.connect("rig1", "fit") as ws:` -- a websocket on /ws/{key}/{route} (token via ?token=)."""
        chosen = token if token is not None else self.token
        query = f"?token={chosen}" if chosen else ""
        kwargs.setdefault("max_size", None)
        return websockets.connect(f"{self.ws_url}/ws/{key}/{route}{query}", **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        """Everything the server wrote to stdout/stderr so far (all runs on this object)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> LiveServer:
        """Start the server and return once GET /health answers 200; raises with the log tail on failure."""
        if self.running:
            raise RuntimeError("server already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "lrr_service.service", *([self.subcommand] if self.subcommand else []),
            "--host", "127.0.0.1", "--port", str(self.port), "--state-dir", str(self.state_dir),
        ]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=_clean_environment(self.env),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        """Return once /health answers; raise with the log tail if the process dies or `timeout` passes."""
        assert self._process is not None
        if wait_until_healthy(self.url, self._process, timeout):
            return
        if not self.running:
            raise RuntimeError(f"server exited during start-up:\n{self.log_text()[-4000:]}")
        self.kill()
        raise RuntimeError(f"server not healthy after {timeout}s:\n{self.log_text()[-4000:]}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """Graceful stop (SIGTERM, which checkpoints every session), SIGKILL if it hangs; returns the exit code."""
        return self._signal_and_wait(signal.SIGTERM, timeout)

    def interrupt(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """Graceful stop with SIGINT (Ctrl-C), SIGKILL if it hangs; returns the exit code."""
        return self._signal_and_wait(signal.SIGINT, timeout)

    def kill(self) -> int | None:
        """`kill -9`: no checkpoint, no cleanup; returns the exit code."""
        return self._signal_and_wait(signal.SIGKILL, STOP_TIMEOUT_S)

    def restart(self, timeout: float = START_TIMEOUT_S) -> LiveServer:
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

    def __enter__(self) -> LiveServer:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def exchange(ws: ClientConnection, frame: bytes | str) -> Reply:
    """Send one frame and decode the one reply the server sends for it."""
    await ws.send(frame)
    reply = await ws.recv()
    if isinstance(reply, str):
        raise AssertionError(f"the server sent a text message: {reply[:200]!r}")
    return decode_reply(reply)
