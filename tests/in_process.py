"""The service in this process, for the fast test tier: `InProcessServer`.

The same app (`create_app`) served by the same uvicorn configuration as `python -m
lrr_service.service serve` (`uvicorn_config`), on a free loopback port, but in a thread of the
test process: no interpreter to start and no imports to repeat, so a server starts in a tenth
of a second instead of a second or more. Tests talk to it over real sockets with real clients,
exactly as to a `LiveServer` (same attributes and methods), and it captures its own log lines.

What needs a process of its own (kill -9, signals, exit statuses, start-up failures, the
container) uses `LiveServer` (tests/live_server.py).
"""

from __future__ import annotations

import contextvars
import io
import itertools
import logging
import os
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from lrr_service.clients.local_server import ServerAddress
from lrr_service.service.__main__ import build_parser, settings_from_args
from lrr_service.service.logs import LOGGER_NAME, JsonLineFormatter, RedactTokens
from lrr_service.service.serving import service_server

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
CAPTURED_LOGGERS = (LOGGER_NAME, "uvicorn.error")

_current_server: contextvars.ContextVar[int | None] = contextvars.ContextVar("lrr_test_server", default=None)
_ids = itertools.count()


class _ThisServerOnly(logging.Filter):
    """Passes the records logged from one in-process server's event loop (its tasks inherit its id)."""

    def __init__(self, server_id: int) -> None:
        super().__init__()
        self.server_id = server_id

    def filter(self, record: logging.LogRecord) -> bool:
        return _current_server.get() == self.server_id


class InProcessServer(ServerAddress):
    """The app on uvicorn in a thread of this process, bound to a state directory; restartable. Its addresses
    and clients (`url`, `http()`, `connect()`) are those of a server process (ServerAddress)."""

    def __init__(self, state_dir: Path | str, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.env = dict(env or {})
        self.port = port or 0
        """0 until the first start binds a free port (no race with other test workers); kept across restarts."""
        self.token: str | None = self.env.get("LRR_API_TOKEN")
        self.pid = os.getpid()
        self._id = next(_ids)
        self._log = io.StringIO()
        self._handler = logging.StreamHandler(self._log)
        self._handler.setFormatter(JsonLineFormatter())
        self._handler.addFilter(RedactTokens())
        self._handler.addFilter(_ThisServerOnly(self._id))
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def log_text(self) -> str:
        """The JSON lines this server logged so far (all its runs), as its process would have printed them."""
        return self._log.getvalue()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> InProcessServer:
        """Start serving and return once the server listens; raises if it cannot start."""
        if self.running:
            raise RuntimeError("server already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        flags = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--state-dir", str(self.state_dir)]
        for name, value in self.env.items():
            if name.startswith("LRR_"):
                flags += ["--" + name[4:].lower().replace("_", "-"), value]
        settings = settings_from_args(build_parser().parse_args(flags))
        for name in CAPTURED_LOGGERS:
            logger = logging.getLogger(name)
            logger.setLevel(settings.log_level)
            logger.addHandler(self._handler)
        server = self._server = service_server(settings)
        self._thread = threading.Thread(target=self._serve, args=(server,), name=f"lrr-test-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"in-process server did not start:\n{self.log_text()[-4000:]}")
            time.sleep(0.005)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def _serve(self, server: uvicorn.Server) -> None:
        _current_server.set(self._id)  # every task of its loop inherits it: the log filter's key
        server.run()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Graceful stop (the app's shutdown: solves drained, every changed session checkpointed)."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"in-process server on port {self.port} did not stop within {timeout} s")
        for name in CAPTURED_LOGGERS:
            logging.getLogger(name).removeHandler(self._handler)

    def restart(self, timeout: float = START_TIMEOUT_S) -> InProcessServer:
        """Graceful stop, then start again on the same port and state dir."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> InProcessServer:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
