"""Latency summaries: percentiles of round-trip samples, in microseconds, as one small record."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Latency:
    """Percentiles (µs) of `n` round trips; p99.9 needs >= 1000 samples to mean anything (see `n`)."""

    n: int
    p50: float
    p99: float
    p999: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, float]:
        """Plain dict for JSON results."""
        return asdict(self)


def summarize(seconds: list[float] | np.ndarray) -> Latency:
    """Percentiles of round-trip times given in seconds, reported in µs (linear interpolation)."""
    values = np.asarray(seconds, dtype=np.float64) * 1e6
    if values.size == 0:
        nan = float("nan")
        return Latency(0, nan, nan, nan, nan, nan)
    p50, p99, p999 = np.percentile(values, [50, 99, 99.9])
    return Latency(int(values.size), float(p50), float(p99), float(p999), float(values.max()), float(values.mean()))


def fmt_us(value: float) -> str:
    """A µs figure for tables: 1 decimal below 100 µs, whole µs above, '-' for missing."""
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"
