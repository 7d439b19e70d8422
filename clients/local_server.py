"""Start a private lrr server in a child process (`python -m lrr_service.service serve`) for `lrr demo`.

The service is run as a separate program, never imported: clients and service stay independent.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

START_TIMEOUT_S = 30.0


class LocalServerError(RuntimeError):
    """The private server did not come up."""


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that the OS reported free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll GET {url}/health until it answers 200 (True), or `process` exits or `timeout` passes (False).

    Shared by everything that starts a server process and must know when it serves.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


class LocalServer:
    """A server on a free loopback port with a temporary state dir, removed again on exit."""

    def __init__(self, timeout: float = START_TIMEOUT_S) -> None:
        self.port = free_loopback_port()
        self.timeout = timeout
        self._state_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LocalServer":
        self._state_dir = Path(tempfile.mkdtemp(prefix="lrr-demo-"))
        self._log = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "lrr_service.service", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--state-dir", str(self._state_dir)]
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        try:
            self._wait_healthy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_healthy(self) -> None:
        """Wait for GET /health; fail with the server's last output if it dies or hangs."""
        assert self._process is not None
        if wait_until_healthy(self.url, self._process, self.timeout):
            return
        if self._process.poll() is not None:
            raise LocalServerError(f"the local server exited at start-up: {self._log_tail()}")
        raise LocalServerError(f"the local server did not answer within {self.timeout:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None
