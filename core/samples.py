"""What a fit may take: samples that keep the statistics finite.

`XᵀX` is accumulated in float64 for as long as a session lives. One NaN or infinity, or one
finite sample so large that its square overflows (|x| above ~1.3e154), would turn the statistics
into NaN/Inf for good, and every solve after it into garbage. So a fit chunk is refused whole if
any sample is not finite or exceeds MAX_FIT_MAGNITUDE; the common case costs one dot product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

MAX_FIT_MAGNITUDE: Final = 1e100
"""Largest |sample| a fit accepts: its square, 1e200, summed over any number of samples a session
could ever see, stays far below float64's 1.8e308. Physical units (volts, microvolts, ADC counts)
are hundreds of orders of magnitude below it."""

_MAX_QUICK_ENERGY: Final = MAX_FIT_MAGNITUDE * MAX_FIT_MAGNITUDE


@dataclass(frozen=True)
class BadSample:
    """The first sample of a chunk that a fit may not take, and where it is."""

    sample: int
    channel: int
    value: float

    @property
    def finite(self) -> bool:
        """False for NaN and ±infinity; True for a finite value beyond MAX_FIT_MAGNITUDE."""
        return math.isfinite(self.value)

    def describe(self) -> str:
        """For error messages: what the value is and where, e.g. '1e+200 at sample 3, channel 7'."""
        return f"{self.value!r} at sample {self.sample}, channel {self.channel}"


def first_bad_sample(X: np.ndarray) -> BadSample | None:
    """The first sample (in C order) of a 2-D chunk that is NaN, ±inf or beyond ±MAX_FIT_MAGNITUDE, or None.

    Integer chunks are always fine (64-bit integers square to below 1e39).
    """
    if X.dtype.kind != "f" or X.size == 0 or _surely_fine(X):
        return None
    if X.dtype.itemsize < 8:  # float16/32 cannot reach MAX_FIT_MAGNITUDE: only NaN and inf are bad
        acceptable = np.isfinite(X)
    else:
        acceptable = np.abs(X) <= MAX_FIT_MAGNITUDE  # False for NaN too
    flat = acceptable.ravel()
    first = int(flat.argmin())
    if flat[first]:
        return None
    sample, channel = divmod(first, X.shape[1])
    return BadSample(sample, channel, float(X[sample, channel]))


def _surely_fine(X: np.ndarray) -> bool:
    """One dot product: a finite sum of squares at most MAX_FIT_MAGNITUDE² means every sample is fine.

    NaN, infinity and overflow all make the sum fail the test; so can a chunk of many large but
    acceptable samples, which the caller then checks exactly.
    """
    flat = X.reshape(-1)
    with np.errstate(all="ignore"):
        energy = float(np.dot(flat, flat))
    return energy <= _MAX_QUICK_ENERGY
