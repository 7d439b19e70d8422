"""`lrr sessions --watch` / `lrr top`: the live table in a pseudo-terminal against a real server with a session
streaming (drawn, redrawn with new figures, Ctrl-C or q ends it with status 0, the terminal restored), a lost
server shown and retried; off a terminal, one table (or JSON line) per refresh."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from cli_runner import run_lrr
from in_process import InProcessServer

from lrr_service.clients import LRRClientSync
from lrr_service.clients.watch import ERASE_BELOW, HIDE_CURSOR, HOME, SHOW_CURSOR, WATCH_COLUMNS, session_row

CHANNELS = 6
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

IN_ITS_OWN_TERMINAL = (
    "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'lrr_service.clients.cli', *sys.argv[1:]])"
)
"""Run `lrr ARGS` as the leader of a new session whose controlling terminal is its stdin (the pty), so Ctrl-C
typed on the terminal is a SIGINT to it, as in a shell."""


# -- a session streaming ---------------------------------------------------------------------


@contextmanager
def streaming(url: str, key: str) -> Iterator[None]:
    """Fit and solve `key` before the block starts, then keep transforming and fitting frames (tens a second)
    until it ends."""
    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    rng = np.random.default_rng(5)
    gains = rng.uniform(0.5, 1.5, CHANNELS)

    def chunk() -> np.ndarray:
        return rng.standard_normal((30, CHANNELS)) + rng.standard_normal((30, 1)) * 4 * gains

    def run() -> None:
        try:
            with LRRClientSync(url, key) as client:
                client.fit(np.concatenate([chunk() for _ in range(20)]))
                client.solve()
                ready.set()
                while not stop.is_set():
                    client.transform(chunk())
                    client.fit(chunk())
                    time.sleep(0.01)
        except BaseException as exc:  # reported by the test, not lost in a thread
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert ready.wait(20) or failures, "the session did not start"
        yield
    finally:
        stop.set()
        thread.join(10)
    assert not failures, failures


# -- a pseudo-terminal -------------------------------------------------------------------------


@dataclass
class Terminal:
    """`lrr ARGS` on a pseudo-terminal of 40 x 200: what it drew so far, read without blocking."""

    process: subprocess.Popen[bytes]
    master: int
    drawn: bytearray = field(default_factory=bytearray)

    def read(self, timeout: float) -> bool:
        """Read what is there within `timeout` s; False once the terminal's other side is closed."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            block = os.read(self.master, 65536)
        except OSError:  # EIO: the process exited and its output is drained
            return False
        self.drawn += block
        return bool(block)

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        """Read until `condition()` holds; fails naming `what` after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline or (not self.read(0.1) and not condition()):
                raise AssertionError(f"no {what} within {timeout} s; the terminal shows:\n{self.text()[-3000:]}")

    def frames(self) -> list[str]:
        """Each whole redraw so far (from a cursor-home to the erasing of the rest of the screen that ends it),
        escape sequences removed."""
        return [ANSI.sub("", frame) for frame in self.text().split(HOME)[1:] if ERASE_BELOW in frame]

    def text(self) -> str:
        return self.drawn.decode("utf-8", "replace")

    def exit_status(self, timeout: float) -> int | None:
        """Read until the process exits (or `timeout` s pass): its exit status, None if it still runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read(0.05)
            if self.process.poll() is not None:
                while self.read(0.05):
                    pass
                return self.process.returncode
        return None


@contextmanager
def terminal(url: str, *args: str) -> Iterator[Terminal]:
    """`lrr ARGS` (LRR_URL=url, no other LRR_ setting) on a new pseudo-terminal; killed if still running after."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))  # a new pty is 0 columns wide
    env = {name: value for name, value in os.environ.items() if not name.startswith("LRR_")}
    for name in ("COLUMNS", "LINES"):  # they would override the terminal's size
        env.pop(name, None)
    env |= {"LRR_URL": url, "LRR_CONFIG": os.devnull + ".absent", "TERM": "xterm", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", IN_ITS_OWN_TERMINAL, *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    try:
        yield Terminal(process, master)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(master)


def row_of(frame: str, key: str) -> str | None:
    """The table line of `key` in a frame."""
    return next((line.strip() for line in frame.splitlines() if line.startswith(key + " ")), None)


def live_cells(row: str | None) -> bool:
    """Whether a table row shows the streaming session live: its fit and transform sockets, frames flowing
    both ways, fitted samples, fitted weights, a transform latency and a median reduction in dB."""
    if row is None:
        return False
    cells = dict(zip(WATCH_COLUMNS[:13], row.split(), strict=False))
    return (
        cells["conn f/t/ft"] == "1/1/0"
        and float(cells["in fr/s"]) > 0
        and float(cells["out fr/s"]) > 0
        and cells["w source"] == "fitted"
        and cells["p50 us"] != "-"
        and cells["median dB"] != "-"
        and float(cells["median dB"]) > 3  # a strong common signal: most of each channel's power goes
    )


def assert_left_cleanly(term: Terminal, status: int | None) -> None:
    """Exit status 0, no traceback, the cursor shown again after the last redraw, typing echoed again."""
    assert status == 0, f"exit status {status}; the terminal shows:\n{term.text()[-3000:]}"
    text = term.text()
    assert "Traceback" not in text and "interrupted" not in text, text[-3000:]
    assert HIDE_CURSOR in text and SHOW_CURSOR in text.rsplit(HOME, 1)[-1]
    assert termios.tcgetattr(term.master)[3] & termios.ECHO, "the terminal was left without echo"


# -- on a terminal -----------------------------------------------------------------------------


def test_watch_draws_the_live_table_redraws_it_and_ends_cleanly_on_ctrl_c(live_server: InProcessServer) -> None:
    key = "watch-rig"
    with streaming(live_server.url, key), terminal(live_server.url, "sessions", "--watch", "--interval", "0.3") as term:
        term.wait_for("table with the session", lambda: any(row_of(f, key) for f in term.frames()))
        first_frame = next(f for f in term.frames() if row_of(f, key))
        first = row_of(first_frame, key)
        assert all(column in first_frame for column in ("conn f/t/ft", "in fr/s", "median dB"))
        term.wait_for(
            "redraw with new figures",
            lambda: any(row_of(f, key) not in (None, first) for f in term.frames()),
        )
        term.wait_for("live status and quality", lambda: live_cells(row_of(term.frames()[-1], key)))
        assert "\x1b[K" in term.text(), "lines are erased to their end when redrawn in place"
        os.write(term.master, b"\x03")  # Ctrl-C, as typed
        assert_left_cleanly(term, term.exit_status(timeout=5))


def test_q_ends_the_watch_and_sigint_does_too(live_server: InProcessServer) -> None:
    with terminal(live_server.url, "top", "--interval", "0.2") as term:
        term.wait_for("first screen", lambda: "no sessions" in term.text())
        os.write(term.master, b"q")
        assert_left_cleanly(term, term.exit_status(timeout=5))
    with terminal(live_server.url, "sessions", "--watch", "--interval", "0.2") as term:
        term.wait_for("first screen", lambda: "no sessions" in term.text())
        term.process.send_signal(signal.SIGINT)
        assert_left_cleanly(term, term.exit_status(timeout=5))


def test_a_lost_server_is_shown_and_retried_until_it_is_back(live_server: InProcessServer) -> None:
    key = "watch-lost"
    with LRRClientSync(live_server.url, key) as client:
        client.fit(np.random.default_rng(1).standard_normal((100, CHANNELS)))
    with terminal(live_server.url, "sessions", "--watch", "--interval", "0.2") as term:
        term.wait_for("table", lambda: any(row_of(f, key) for f in term.frames()))
        live_server.stop()
        term.wait_for("error on screen", lambda: "refresh failed: cannot connect" in term.frames()[-1])
        assert row_of(term.frames()[-1], key), "the last table stays on screen under the error"
        live_server.start()
        term.wait_for(
            "table again", lambda: "refresh failed" not in term.frames()[-1] and row_of(term.frames()[-1], key)
        )
        os.write(term.master, b"\x03")
        assert_left_cleanly(term, term.exit_status(timeout=5))


# -- off a terminal ----------------------------------------------------------------------------


def test_off_a_terminal_each_refresh_is_a_table_of_its_own(live_server: InProcessServer) -> None:
    key = "watch-plain"
    with streaming(live_server.url, key):
        done = run_lrr("sessions", "--watch", "--interval", "0.2", "--count", "3", url=live_server.url)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    screens = done.stdout.strip("\n").split("\n\n")
    assert len(screens) == 3
    for screen in screens:
        lines = screen.splitlines()
        assert lines[0].startswith(f"lrr sessions on {live_server.url}") and "1 session" in lines[0]
        assert lines[1].split()[:2] == ["key", "ch"] and row_of(screen, key)
        assert row_of(screen, key).split()[1] == str(CHANNELS)  # type: ignore[union-attr]


def test_json_lines_one_per_refresh_then_how_it_ended(live_server: InProcessServer) -> None:
    key = "watch-json"
    with streaming(live_server.url, key):
        done = run_lrr("top", "--json", "--interval", "0.2", "--count", "2", url=live_server.url)
    assert done.returncode == 0, done.stderr
    *refreshes, last = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(refreshes) == 2 and last == {"watch": {"refreshes": 2, "stopped": "count"}}
    for refresh in refreshes:
        assert refresh["url"] == live_server.url and refresh["error"] is None
        (session,) = refresh["streams"]
        assert session["key"] == key and "median_channel_db" in session


def test_usage_and_a_server_that_is_not_there(live_server: InProcessServer) -> None:
    assert run_lrr("sessions", "--watch", "--interval", "0").returncode == 2
    assert run_lrr("top", "--count", "0").returncode == 2
    url = live_server.url
    live_server.stop()
    done = run_lrr("sessions", "--watch", "--interval", "0.1", "--count", "2", url=url)
    assert done.returncode == 1
    assert done.stdout.count("refresh failed: cannot connect to the server") == 2
    assert done.stderr.startswith("lrr sessions: error: cannot connect") and done.stderr.count("\n") == 1


# -- the row ---------------------------------------------------------------------------------


def test_a_row_shows_every_field_of_the_status_contract() -> None:
    now = 1_000_000.0
    session = {
        "key": "rig-7",
        "n_channels": 384,
        "n_samples": 90_000,
        "weights_version": 3,
        "weights_source": "fitted",
        "median_channel_db": 12.345,
        "status": {
            "connections": {"fit": 1, "transform": 2, "fit_transform": 0},
            "rates": {
                "frames_in_per_s": 1000.0,
                "samples_in_per_s": 30000.0,
                "frames_out_per_s": 999.5,
                "samples_out_per_s": 29985.0,
            },
            "fs": 30000.0,
            "transform_latency_us": {"p50": 85.2, "p99": 240.0, "count": 5000},
            "weights": {"version": 4, "source": "uploaded", "age_seconds": 125.0},
            "last_solve": {"seconds": 0.01, "at": now - 10},
            "n_samples": 123_456,
            "last_error": {"code": "non_finite", "message": "NaN", "at": now - 42},
        },
    }
    row = dict(zip(WATCH_COLUMNS, session_row(session, now), strict=True))
    assert row == {
        "key": "rig-7",
        "ch": "384",
        "conn f/t/ft": "1/2/0",
        "in fr/s": "1000",
        "out fr/s": "1000",
        "smp/s": "30000",
        "fitted": "123.5k",
        "w ver": "4",
        "w source": "uploaded",
        "w age": "2m05s",
        "p50 us": "85",
        "p99 us": "240",
        "median dB": "12.3",
        "last error": "non_finite 42s ago",
    }
    bare = session_row({"key": "k", "n_channels": None, "median_channel_db": float("inf"), "status": None}, now)
    assert bare[0] == "k" and set(bare[1:]) == {"-"}
