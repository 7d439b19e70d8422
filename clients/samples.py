"""Samples a rig produces in dtypes the wire does not carry, converted exactly or refused with the reason.

The wire takes float32, float64, int16 and int32 (docs/protocol.md). Amplifiers write uint16 and
numpy's default integer is int64, so the clients convert what they can without changing a value:
int8, uint8, uint16 and float16 always; int64, uint32 and uint64 to int32 when every value fits,
else to float64 when every value is within ±2**53 (where float64 holds integers exactly).
"""

from __future__ import annotations

import numpy as np

WIRE_KINDS = (np.float32, np.float64, np.int16, np.int32)
_ALWAYS_EXACT = {np.dtype(np.int8): np.int32, np.dtype(np.uint8): np.int32, np.dtype(np.uint16): np.int32}
_INT32 = np.iinfo(np.int32)
_FLOAT64_EXACT = 2**53


def wire_samples(data: np.ndarray) -> np.ndarray:
    """`data` itself if the wire carries its dtype, else an exact conversion; ValueError saying why not."""
    array = np.asarray(data)
    dtype = array.dtype.newbyteorder("=")
    if dtype in (np.dtype(kind) for kind in WIRE_KINDS):
        return array
    if dtype in _ALWAYS_EXACT:
        return array.astype(_ALWAYS_EXACT[dtype])
    if dtype == np.dtype(np.float16):
        return array.astype(np.float32)
    if dtype.kind in "iu" and array.size:
        low, high = int(array.min()), int(array.max())
        if _INT32.min <= low and high <= _INT32.max:
            return array.astype(np.int32)
        if low >= -_FLOAT64_EXACT and high <= _FLOAT64_EXACT:
            return array.astype(np.float64)
        raise ValueError(
            f"{dtype} samples from {low} to {high} cannot be sent exactly: beyond ±2**53 even float64 rounds them; "
            "scale or convert them to float64 yourself if that rounding is acceptable"
        )
    if dtype.kind in "iu":  # empty: the shape check refuses it later with its own message
        return array.astype(np.int32)
    raise ValueError(
        f"samples of dtype {dtype} cannot be sent; expected real numbers: float32, float64, int16 or int32 "
        "(int8, uint8, uint16, float16, int64, uint32 and uint64 are converted when exact)"
    )
