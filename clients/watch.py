"""The live sessions table of `lrr sessions --watch` (and `lrr top`): one `GET /streams` per refresh (each
session's status carries its median channel reduction).

On a terminal the table is redrawn in place (cursor home, lines erased, cursor hidden while it runs and shown
again at the end); anywhere else each refresh prints a table of its own, separated by a blank line, or one
JSON object per line with --json. A failed refresh is shown and tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from lrr_service.clients.errors import LRRClientError
from lrr_service.clients.rest import AsyncRestClient
from lrr_service.clients.table import format_table

MIN_INTERVAL_S = 0.1
REQUEST_TIMEOUT_S = 5.0
"""A refresh waits at most this long for any one request (or the interval, when that is longer)."""

WATCH_COLUMNS = (
    "key",
    "ch",
    "conn f/t/ft",
    "in fr/s",
    "out fr/s",
    "smp/s",
    "fitted",
    "w ver",
    "w source",
    "w age",
    "p50 us",
    "p99 us",
    "median dB",
    "last error",
)
"""The table's columns: key, channel count, open websockets by mode (fit/transform/fit_transform), frames per
second in and out, samples per second in, statistics sample count, weights version, source and age, transform
latency p50 and p99 in microseconds (server side), median channel reduction in dB, last error code and age."""

HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
HOME, CLEAR_SCREEN, ERASE_LINE, ERASE_BELOW = "\x1b[H", "\x1b[2J", "\x1b[K", "\x1b[J"


# -- one refresh ------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """One refresh: when it was taken and the sessions of `GET /streams`, each with `median_channel_db` added
    (None when the session has no quality measure yet)."""

    at: float
    sessions: list[dict[str, Any]]


def listed_median_db(session: dict[str, Any]) -> float | None:
    """The median channel reduction the `GET /streams` entry's status carries (None: not measured, or not said)."""
    status = session.get("status")
    quality = status.get("quality") if isinstance(status, dict) else None
    return _number(quality.get("median_channel_db")) if isinstance(quality, dict) else None


async def take_snapshot(rest: AsyncRestClient) -> Snapshot:
    """GET /streams, each session with its `median_channel_db`. Raises LRRClientError when GET /streams fails."""
    sessions = [dict(session) | {"median_channel_db": listed_median_db(session)} for session in await rest.sessions()]
    return Snapshot(time.time(), sessions)


# -- what a refresh shows ---------------------------------------------------------------------


def session_row(session: dict[str, Any], now: float) -> list[str]:
    """One session's cells, in WATCH_COLUMNS order ("-" where the server says nothing)."""
    listed = session.get("status")
    status: dict[str, Any] = listed if isinstance(listed, dict) else {}
    connections = _mapping(status, "connections")
    rates = _mapping(status, "rates")
    weights = _mapping(status, "weights")
    latency = _mapping(status, "transform_latency_us")
    error = status.get("last_error") if isinstance(status.get("last_error"), dict) else None
    connected = "/".join(_count(connections.get(mode)) for mode in ("fit", "transform", "fit_transform"))
    return [
        str(session.get("key", "?")),
        _count(session.get("n_channels")),
        connected if connections else "-",
        _rate(rates.get("frames_in_per_s")),
        _rate(rates.get("frames_out_per_s")),
        _rate(rates.get("samples_in_per_s")),
        _count(status.get("n_samples", session.get("n_samples"))),
        _count(weights.get("version", session.get("weights_version"))),
        str(weights.get("source") or session.get("weights_source") or "-"),
        _duration(weights.get("age_seconds")),
        _count(latency.get("p50")),
        _count(latency.get("p99")),
        _decibels(session.get("median_channel_db")),
        _error(error, now),
    ]


def snapshot_table(snapshot: Snapshot, *, max_rows: int | None = None) -> str:
    """The sessions as a table (WATCH_COLUMNS); beyond `max_rows` sessions, a last line says how many more."""
    if not snapshot.sessions:
        return "no sessions"
    shown = snapshot.sessions if max_rows is None else snapshot.sessions[: max(1, max_rows)]
    text = format_table(WATCH_COLUMNS, [session_row(session, snapshot.at) for session in shown])
    hidden = len(snapshot.sessions) - len(shown)
    return text + (f"\n... {hidden} more session{'s' if hidden != 1 else ''}" if hidden else "")


def screen_text(
    url: str,
    interval: float,
    snapshot: Snapshot | None,
    error: str | None,
    *,
    max_rows: int | None = None,
    now: float | None = None,
) -> str:
    """A whole screen: a title line (server, clock, session count), the error of the last refresh if it
    failed (with the age of the table still shown), and the table."""
    now = time.time() if now is None else now
    count = f"{len(snapshot.sessions)} session{'s' if len(snapshot.sessions) != 1 else ''}" if snapshot else "-"
    lines = [f"lrr sessions on {url}  {_clock(now)}  {count}  every {interval:g} s, Ctrl-C to quit"]
    if error is not None:
        since = f"; the table is from {_clock(snapshot.at)}" if snapshot else ""
        lines.append(f"refresh failed: {error}; retrying every {interval:g} s{since}")
    if snapshot is not None:
        lines.append(snapshot_table(snapshot, max_rows=max_rows))
    return "\n".join(lines)


def snapshot_json(url: str, snapshot: Snapshot | None, error: str | None, now: float) -> dict[str, Any]:
    """One refresh as JSON: its time, the server, the sessions (with `median_channel_db`; none when the
    refresh failed) and the error (null when it worked)."""
    return {
        "at": now,
        "url": url,
        "streams": snapshot.sessions if snapshot is not None and error is None else None,
        "error": error,
    }


# -- where refreshes go -----------------------------------------------------------------------


class Screen(Protocol):
    """Where each refresh is shown."""

    def rows_for_sessions(self) -> int | None:
        """How many sessions fit (None: no limit)."""

    def show(self, url: str, interval: float, snapshot: Snapshot | None, error: str | None) -> None:
        """Show one refresh."""

    def close(self) -> None:
        """Leave the output as a shell expects it (cursor shown)."""


class TerminalScreen:
    """Redraws in place on a terminal: cursor home, each line erased to its end, the rest of the screen
    erased; lines cut at the terminal's width and sessions at its height; the cursor hidden until closed."""

    RESERVED_ROWS = 5
    """Title, error, table header and rule, '... more' line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.out.write(HIDE_CURSOR + CLEAR_SCREEN + HOME)
        self.out.flush()

    def rows_for_sessions(self) -> int | None:
        return max(1, shutil.get_terminal_size().lines - self.RESERVED_ROWS)

    def show(self, url: str, interval: float, snapshot: Snapshot | None, error: str | None) -> None:
        width = shutil.get_terminal_size().columns
        text = screen_text(url, interval, snapshot, error, max_rows=self.rows_for_sessions())
        lines = [line[:width] for line in text.split("\n")]
        self.out.write(HOME + (ERASE_LINE + "\n").join(lines) + ERASE_LINE + ERASE_BELOW)
        self.out.flush()

    def close(self) -> None:
        self.out.write(SHOW_CURSOR)
        self.out.flush()


class PlainScreen:
    """Prints each refresh as a table of its own (no escape sequences), a blank line between two."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shown = 0

    def rows_for_sessions(self) -> int | None:
        return None

    def show(self, url: str, interval: float, snapshot: Snapshot | None, error: str | None) -> None:
        self.out.write(("\n" if self.shown else "") + screen_text(url, interval, snapshot, error) + "\n")
        self.out.flush()
        self.shown += 1

    def close(self) -> None:
        pass


class JsonLinesScreen:
    """Prints each refresh as one JSON object on a line of its own (snapshot_json)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def rows_for_sessions(self) -> int | None:
        return None

    def show(self, url: str, interval: float, snapshot: Snapshot | None, error: str | None) -> None:
        self.out.write(json.dumps(snapshot_json(url, snapshot, error, time.time()), sort_keys=True) + "\n")
        self.out.flush()

    def close(self) -> None:
        pass


# -- the loop ---------------------------------------------------------------------------------


@dataclass
class WatchOutcome:
    """How a watch ended: refreshes shown, why it stopped ("interrupted", "quit" or "count"), and the error of
    the last refresh (None if it worked)."""

    refreshes: int = 0
    stopped: str = "interrupted"
    error: str | None = None


def watch(
    url: str,
    token: str | None,
    *,
    interval: float = 1.0,
    count: int | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
    keys: TextIO | None = None,
    describe_error: Callable[[str], str] = lambda message: message,
) -> WatchOutcome:
    """Refresh every `interval` seconds until Ctrl-C (KeyboardInterrupt is caught: it ends the watch), 'q' typed
    on a terminal `keys`, or `count` refreshes. The screen is a TerminalScreen when `out` is a terminal (and not
    `as_json`), else plain tables or JSON lines; it is closed (cursor shown) however the watch ends."""
    out = sys.stdout if out is None else out
    keys = sys.stdin if keys is None else keys
    screen: Screen
    if as_json:
        screen = JsonLinesScreen(out)
    elif _is_terminal(out):
        screen = TerminalScreen(out)
    else:
        screen = PlainScreen(out)
    outcome = WatchOutcome()
    try:
        with _keys_without_echo(keys if isinstance(screen, TerminalScreen) else None) as key_fd:
            asyncio.run(_refresh_loop(url, token, interval, count, screen, outcome, key_fd, describe_error))
    except KeyboardInterrupt:
        outcome.stopped = "interrupted"
    finally:
        screen.close()
    return outcome


async def _refresh_loop(
    url: str,
    token: str | None,
    interval: float,
    count: int | None,
    screen: Screen,
    outcome: WatchOutcome,
    key_fd: int | None,
    describe_error: Callable[[str], str],
) -> None:
    """Refresh and show until `count` refreshes or 'q' (Ctrl-C cancels it from outside)."""
    quit_typed = asyncio.Event()
    loop = asyncio.get_running_loop()
    if key_fd is not None:
        loop.add_reader(key_fd, _on_key, key_fd, quit_typed)
    last: Snapshot | None = None
    try:
        async with AsyncRestClient(url, token, timeout=max(REQUEST_TIMEOUT_S, interval)) as rest:
            while True:
                started = loop.time()
                try:
                    last = await take_snapshot(rest)
                    outcome.error = None
                except LRRClientError as exc:
                    outcome.error = describe_error(" ".join(str(exc).split()) or type(exc).__name__)
                screen.show(url, interval, last, outcome.error)
                outcome.refreshes += 1
                if count is not None and outcome.refreshes >= count:
                    outcome.stopped = "count"
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(quit_typed.wait(), max(0.0, interval - (loop.time() - started)))
                if quit_typed.is_set():
                    outcome.stopped = "quit"
                    return
    finally:
        if key_fd is not None:
            loop.remove_reader(key_fd)


def _on_key(fd: int, quit_typed: asyncio.Event) -> None:
    """Read what was typed; 'q' or 'Q' ends the watch, anything else is ignored."""
    try:
        typed = os.read(fd, 64)
    except OSError:
        typed = b""
    if b"q" in typed.lower() or not typed:  # q, or the terminal went away
        quit_typed.set()


@contextlib.contextmanager
def _keys_without_echo(keys: TextIO | None) -> Iterator[int | None]:
    """On a terminal `keys`: typing is neither echoed nor line-buffered (Ctrl-C still interrupts) until the
    block ends, and its descriptor is yielded; otherwise None and nothing changes."""
    fd = _terminal_fd(keys)
    if fd is None:
        yield None
        return
    import termios

    saved = termios.tcgetattr(fd)
    changed = termios.tcgetattr(fd)
    changed[3] &= ~(termios.ECHO | termios.ICANON)  # lflags; ISIG stays, so Ctrl-C is still SIGINT
    changed[6][termios.VMIN], changed[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, changed)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


def _terminal_fd(stream: TextIO | None) -> int | None:
    """The descriptor of `stream` if it is a terminal."""
    if stream is None or sys.platform == "win32":
        return None
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if os.isatty(fd) else None


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


# -- cells ------------------------------------------------------------------------------------


def _mapping(status: dict[str, Any], name: str) -> dict[str, Any]:
    value = status.get(name)
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    """A finite number, else None (JSON has no infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _count(value: Any) -> str:
    """An integer count, compact beyond 10^5 (123.4k, 5.6M); "-" for none."""
    number = _number(value)
    if number is None:
        return "-"
    return _compact(number, decimals=0)


def _rate(value: Any) -> str:
    """A rate per second: one decimal below 100, whole above, compact beyond 10^5."""
    number = _number(value)
    if number is None:
        return "-"
    return _compact(number, decimals=1 if abs(number) < 100 else 0)


def _compact(number: float, *, decimals: int) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e5, "k")):
        if abs(number) >= scale:
            divisor = 1e3 if suffix == "k" else scale
            return f"{number / divisor:.1f}{suffix}"
    return f"{number:.{decimals}f}"


def _decibels(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.1f}"


def _duration(seconds: Any) -> str:
    """An age: 42s, 5m03s, 2h05m, 3d04h; "-" for none."""
    number = _number(seconds)
    if number is None:
        return "-"
    whole = max(0, int(number))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _error(error: dict[str, Any] | None, now: float) -> str:
    """A last error as 'code, age ago' ('-' without one)."""
    if not error:
        return "-"
    code = str(error.get("code") or "error")
    at = _number(error.get("at"))
    return f"{code} {_duration(now - at)} ago" if at is not None else code


def _clock(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).strftime("%H:%M:%S")
