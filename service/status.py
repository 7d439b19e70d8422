"""A session's live status: traffic rates, nominal rate, transform latency, weights age, last solve, last error.

`SessionStatus` is bookkeeping owned by its Session (service/session.py), which updates it from
the stream protocol, the solves and the refusals; it never touches the engine. Per frame it costs a
few integer additions and one list store (no lock, no await, no allocation), so it stays on the hot
path; everything else (percentiles, rates) is computed when the status is read: GET /streams,
GET /streams/{key} and the events stream (service/events.py).

Rates are averaged over the last RATE_WINDOW_SECONDS seconds of the monotonic clock (whole seconds
plus the current one; less right after the session's first frame), counted in one-second buckets.
Latency percentiles are over the last LATENCY_FRAMES transform and fit_transform frames.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import numpy as np

RATE_WINDOW_SECONDS = 5
"""Rates are averaged over this many seconds before the current one (and the current one so far)."""
MIN_RATE_SPAN_SECONDS = 0.25
"""Right after a stream's first frame, rates are divided by at least this span, not by a few microseconds."""
LATENCY_FRAMES = 1000
"""Transform latency percentiles describe this many of the latest transform and fit_transform frames."""
MAX_ERROR_MESSAGE = 500
"""Characters of an error message kept for the status."""


class SessionStatus:
    """Live bookkeeping of one session, updated by the session and read as JSON by `view`."""

    def __init__(self, weights_version: int, weights_changed_at: float | None = None) -> None:
        self.fs: float | None = None
        """The nominal sample rate the latest chunk that carried `fs` named."""
        self._second = -1
        self._bucket = [0, 0, 0, 0]
        """frames in, samples in, frames out, samples out in the current second."""
        self._past: deque[tuple[int, list[int]]] = deque(maxlen=RATE_WINDOW_SECONDS)
        self._first_frame: float | None = None
        self._latencies = [0.0] * LATENCY_FRAMES
        self._timed = 0
        """Transform frames timed since the session was made (the ring holds the latest LATENCY_FRAMES)."""
        self.weights_version = weights_version
        self.weights_changed_at = weights_changed_at
        """Unix time the applied weights last changed (None: unknown, e.g. restored from an older checkpoint)."""
        self._last_solve: tuple[float, float] | None = None
        self._last_error: dict[str, Any] | None = None

    # -- per frame (the hot path) ------------------------------------------------------------------

    def served(self, now: float, samples_in: int, samples_out: int, latency: float | None) -> None:
        """Count one accepted frame at monotonic time `now`: `samples_in` samples in, `samples_out` out (0: it
        returned no data), and the server-side `latency` (seconds) of a transforming frame (None: not timed)."""
        second = int(now)
        if second != self._second:
            self._next_second(second, now)
        bucket = self._bucket
        bucket[0] += 1
        bucket[1] += samples_in
        if samples_out:
            bucket[2] += 1
            bucket[3] += samples_out
        if latency is not None:
            self._latencies[self._timed % LATENCY_FRAMES] = latency
            self._timed += 1

    def _next_second(self, second: int, now: float) -> None:
        """Close the current bucket and open one for `second`."""
        if self._second >= 0:
            self._past.append((self._second, self._bucket))
        else:
            self._first_frame = now
        self._second = second
        self._bucket = [0, 0, 0, 0]

    # -- events -----------------------------------------------------------------------------------

    def weights_seen(self, version: int) -> None:
        """Note the engine's weights version; a change is dated now (Unix time)."""
        if version != self.weights_version:
            self.weights_version = version
            self.weights_changed_at = time.time()

    def solved(self, seconds: float) -> None:
        """A solve taking `seconds` was installed just now."""
        self._last_solve = (seconds, time.time())

    def failed(self, code: str, message: str) -> None:
        """A frame of this session was refused, or a solve failed, just now, with `code` and `message`."""
        text = message if len(message) <= MAX_ERROR_MESSAGE else message[: MAX_ERROR_MESSAGE - 3] + "..."
        self._last_error = {"code": str(code), "message": text, "at": time.time()}

    # -- the view ---------------------------------------------------------------------------------

    def view(self, connections: dict[str, int], weights_source: str, n_samples: int) -> dict[str, Any]:
        """The `status` object of GET /streams and GET /streams/{key} (docs/service.md)."""
        now = time.perf_counter()
        p50 = p99 = None
        count = min(self._timed, LATENCY_FRAMES)
        if count:
            p50, p99 = (float(v) * 1e6 for v in np.percentile(self._latencies[:count], [50, 99]))
        solve = self._last_solve
        changed = self.weights_changed_at
        return {
            "connections": connections,
            "rates": self._rates(now),
            "fs": self.fs,
            "transform_latency_us": {"p50": p50, "p99": p99, "count": count},
            "weights": {
                "version": self.weights_version,
                "source": weights_source,
                "age_seconds": max(0.0, time.time() - changed)
                if changed is not None and weights_source != "none"
                else None,
            },
            "last_solve": {"seconds": solve[0], "at": solve[1]} if solve is not None else {"seconds": None, "at": None},
            "n_samples": n_samples,
            "last_error": dict(self._last_error) if self._last_error is not None else None,
        }

    def _rates(self, now: float) -> dict[str, float]:
        """Frames and samples per second, in and out, over the window ending `now` (monotonic)."""
        start = math.floor(now) - RATE_WINDOW_SECONDS
        totals = [0, 0, 0, 0]
        for second, bucket in [*self._past, (self._second, self._bucket)]:
            if second >= start:
                totals = [a + b for a, b in zip(totals, bucket, strict=True)]
        first = self._first_frame
        span = now - max(start, first) if first is not None else 0.0
        span = max(span, MIN_RATE_SPAN_SECONDS)
        names = ("frames_in_per_s", "samples_in_per_s", "frames_out_per_s", "samples_out_per_s")
        return {name: total / span for name, total in zip(names, totals, strict=True)}
