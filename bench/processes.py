"""The processes of a benchmark run: the service and the echo floor (each its own process, loopback),
a busy neighbour, and what /proc says about a process (RSS, CPU time).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lrr_service.clients.local_server import ServerProcess, free_loopback_port, wait_until_healthy

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["BusyNeighbour", "EchoServer", "ServerProcess", "cpu_seconds", "rss_bytes"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 20.0


class EchoServer:
    """bench/echo_server.py in its own process on a free loopback port; a context manager."""

    def __init__(self, ws: str | None = None, app: str = "asgi") -> None:
        self.port = free_loopback_port()
        self.ws = ws
        self.app = app
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        """Base websocket URL."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The echo server's process id (0 before it starts)."""
        return self.process.pid if self.process else 0

    def __enter__(self) -> EchoServer:
        command = [sys.executable, str(REPO_ROOT / "bench" / "echo_server.py"), "--port", str(self.port)]
        command += (["--ws", self.ws] if self.ws else []) + ["--app", self.app]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
        if wait_until_healthy(f"http://127.0.0.1:{self.port}", self.process, START_TIMEOUT_S):
            return self
        if self.process.poll() is not None:
            raise RuntimeError("echo server exited during start-up")
        raise RuntimeError(f"echo server did not start within {START_TIMEOUT_S:.0f} s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class BusyNeighbour:
    """A process spinning one core in pure Python: the load another program puts on a shared machine."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BusyNeighbour:
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
