"""How much a session's rereferencing takes out: per-channel power of its transform input and output.

`QualityMeter` keeps, per channel, an exponentially weighted mean of the squared samples of the
chunks it is shown (the input) and of their transform (the output). The weights decay with
wall-clock time, not with samples: a sample `age` seconds old weighs `exp(-age / window_seconds)`,
so `window_seconds` is the time constant (the half-life is `window_seconds * ln 2`), and a stream
that pauses keeps its last powers until it resumes. The caller passes the clock (`now`, seconds,
monotonic): this module does no I/O.

The cost per measured chunk is one square of the input and one of the output into a reused
buffer, one call for the weighted column sums of both (`matmul`) and one in-place addition of two
values per channel.
The decay is not applied to the sums on every chunk: each chunk's contribution is scaled up by
`exp((now - origin) / window)` instead, and the sums are brought back to the present (one
multiplication) only when that factor grows large. Integer input is squared in float64 (its power
in its own units, e.g. ADC counts squared); float input in its own dtype over the chunk, then
accumulated in float64.

`quality_report` turns a meter into the JSON-able summary of GET /streams/{key}/quality: the
reduction `10 log10(P_in / P_out)` in dB per channel, per group (powers summed over the group's
channels) and overall (summed over every channel), the median channel and the worst channel (the
least reduction). Values that are not finite (nothing measured yet, a silent channel, a chunk
holding NaN or infinity) are reported as None; a channel whose sums stopped being finite starts
its mean over when it is next read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

RESCALE_EXPONENT = 10.0
"""Bring the sums back to the present once a contribution's scale factor reaches exp(this)."""


class QualityMeter:
    """Exponentially weighted (in wall-clock time) mean power per channel of a transform's input and output."""

    def __init__(self, n_channels: int, window_seconds: float) -> None:
        if n_channels < 1:
            raise ValueError(f"n_channels is {n_channels}; expected at least 1")
        if not (window_seconds > 0 and math.isfinite(window_seconds)):
            raise ValueError(f"window_seconds is {window_seconds!r}; expected a finite number of seconds above 0")
        self.n_channels = n_channels
        self.window_seconds = float(window_seconds)
        self.measured_frames = 0
        """Chunks measured since the meter was made."""
        self._sums = np.zeros((2, n_channels))
        """The weighted sums of squares per channel of the input (row 0) and of the output (row 1)."""
        self._weight = 0.0
        """The weighted number of samples the sums hold (same scale as the sums)."""
        self._origin: float | None = None
        """The time the sums' scale refers to (None: nothing measured yet)."""
        self._buffers: dict[tuple[int, np.dtype[Any]], _Buffers] = {}

    def add(self, data: np.ndarray, output: np.ndarray, now: float) -> None:
        """Measure one chunk (`data`, its transform `output`, both (n_samples, n_channels)) seen at time `now`.
        Raises ValueError if the shapes do not match the meter's channel count."""
        n_samples = data.shape[0]
        if data.ndim != 2 or data.shape[1] != self.n_channels or output.shape != data.shape:
            raise ValueError(
                f"a chunk of shape {data.shape} with output {output.shape}; expected (n_samples, {self.n_channels}) "
                "for both"
            )
        if n_samples == 0:
            return
        if self._origin is None:
            self._origin = now
        exponent = (now - self._origin) / self.window_seconds
        if exponent > RESCALE_EXPONENT:
            self._rescale(now)
            exponent = 0.0
        scale = math.exp(exponent)
        dtype = output.dtype if data.dtype == output.dtype else np.dtype(np.float64)
        buffers = self._buffers.get((n_samples, dtype)) or self._new_buffers(n_samples, dtype)
        np.multiply(data, data, out=buffers.squares_in, dtype=dtype)
        np.multiply(output, output, out=buffers.squares_out, dtype=dtype)
        buffers.weights.fill(scale)
        np.matmul(buffers.weights, buffers.squares, out=buffers.sums)  # both weighted column sums in one call
        self._sums += buffers.sums
        self._weight += scale * n_samples
        self.measured_frames += 1

    def powers(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(P_in, P_out): per channel, the weighted mean squared sample of the input and of the output
        (float64 copies), or None before the first measured chunk. A channel whose sums stopped being finite
        (a chunk held NaN or infinity) reads NaN this once and starts its mean over."""
        if self._weight <= 0.0:
            return None
        power_in, power_out = self._sums / self._weight
        bad = ~(np.isfinite(power_in) & np.isfinite(power_out))
        if bad.any():
            power_in[bad] = power_out[bad] = np.nan
            self._sums[:, bad] = 0.0
        return power_in, power_out

    def _new_buffers(self, n_samples: int, dtype: np.dtype[Any]) -> _Buffers:
        """Buffers for chunks of `n_samples` rows squared in `dtype` (a few sizes are kept, not every size seen)."""
        if len(self._buffers) >= 8:
            self._buffers.clear()
        squares = np.empty((2, n_samples, self.n_channels), dtype)
        buffers = _Buffers(
            squares, squares[0], squares[1], np.empty(n_samples, dtype), np.empty((2, self.n_channels), dtype)
        )
        self._buffers[(n_samples, dtype)] = buffers
        return buffers

    def _rescale(self, now: float) -> None:
        """Apply the decay since the origin to the sums and make `now` the origin."""
        assert self._origin is not None
        decay = math.exp(-(now - self._origin) / self.window_seconds)
        self._sums *= decay
        self._weight *= decay
        self._origin = now


class _Buffers(NamedTuple):
    """Reused work arrays for one chunk size: the squares of the input and of the output (contiguous halves of
    one array), the weights of the chunk's samples and the two weighted column sums."""

    squares: np.ndarray
    squares_in: np.ndarray
    squares_out: np.ndarray
    weights: np.ndarray
    sums: np.ndarray


def reduction_db(power_in: np.ndarray | float, power_out: np.ndarray | float) -> np.ndarray:
    """10 log10(power_in / power_out) elementwise; NaN or ±inf where either is zero or not finite."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(10.0 * np.log10(np.asarray(power_in) / np.asarray(power_out)), dtype=np.float64)


def quality_report(meter: QualityMeter | None, n_channels: int, groups: Sequence[np.ndarray]) -> dict[str, Any]:
    """The summary of `n_channels` channels: `measured_frames`, `channels` (index, power_in, power_out,
    reduction_db), `groups` (index, channels, power_in, power_out, reduction_db; powers summed over the group's
    channels) and `overall` (power_in, power_out and reduction_db summed over every channel, median_channel_db,
    worst_channel as {index, reduction_db} or None). Every value not finite or not measured yet is None; so is
    every value when `meter` is None or measures another channel count."""
    powers = meter.powers() if meter is not None and meter.n_channels == n_channels else None
    measured = meter.measured_frames if meter is not None and meter.n_channels == n_channels else 0
    if powers is None:
        return {
            "measured_frames": measured,
            "channels": [_entry({"index": i}, None, None) for i in range(n_channels)],
            "groups": [_entry({"index": g, "channels": _ints(c)}, None, None) for g, c in enumerate(groups)],
            "overall": _entry({}, None, None) | {"median_channel_db": None, "worst_channel": None},
        }
    power_in, power_out = powers
    db = reduction_db(power_in, power_out)
    median, worst = _median_and_worst(db)
    return {
        "measured_frames": measured,
        "channels": [_entry({"index": i}, power_in[i], power_out[i], db[i]) for i in range(n_channels)],
        "groups": [_group(g, c, power_in, power_out) for g, c in enumerate(groups)],
        "overall": _entry({}, float(power_in.sum()), float(power_out.sum()))
        | {
            "median_channel_db": median,
            "worst_channel": {"index": worst, "reduction_db": float(db[worst])} if worst is not None else None,
        },
    }


def reduction_summary(meter: QualityMeter) -> tuple[float, float] | None:
    """(median, worst) of the channels' finite reductions in dB (worst: the least), or None if there is none."""
    powers = meter.powers()
    if powers is None:
        return None
    db = reduction_db(*powers)
    median, worst = _median_and_worst(db)
    if median is None or worst is None:
        return None
    return median, float(db[worst])


def _median_and_worst(db: np.ndarray) -> tuple[float | None, int | None]:
    """The median of the finite values of `db` and the index of the least one (None, None if none is finite)."""
    finite = np.flatnonzero(np.isfinite(db))
    if not finite.size:
        return None, None
    return float(np.median(db[finite])), int(finite[np.argmin(db[finite])])


def _group(index: int, channels: np.ndarray, power_in: np.ndarray, power_out: np.ndarray) -> dict[str, Any]:
    """One group's entry; channels beyond the meter's count (a stale grouping) give None powers."""
    members = np.asarray(channels, dtype=np.intp)
    entry: dict[str, Any] = {"index": index, "channels": _ints(members)}
    if members.size and (members.min() < 0 or members.max() >= power_in.shape[0]):
        return _entry(entry, None, None)
    return _entry(entry, float(power_in[members].sum()), float(power_out[members].sum()))


def _entry(entry: dict[str, Any], power_in: Any, power_out: Any, db: Any = None) -> dict[str, Any]:
    """`entry` with power_in, power_out and reduction_db (computed from the powers if not given), None if not finite."""
    if db is None and power_in is not None and power_out is not None:
        db = reduction_db(np.float64(power_in), np.float64(power_out))
    return entry | {"power_in": _finite(power_in), "power_out": _finite(power_out), "reduction_db": _finite(db)}


def _finite(value: Any) -> float | None:
    """`value` as a float, or None if it is None or not finite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _ints(values: np.ndarray) -> list[int]:
    """An index array as a JSON list of ints."""
    return [int(v) for v in np.asarray(values).ravel()]
