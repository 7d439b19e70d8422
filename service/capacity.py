"""The memory budget of bound sessions (LRR_MAX_STATE_BYTES): what one channel count costs, and the check.

A session bound to n channels holds XᵀX (n² float64), W (n² float64, once solved or uploaded),
column sums and the two staging blocks of `core.statistics`; its checkpoint file is about the same
size. Summing that over sessions bounds both the process's memory and the state dir.
"""

from __future__ import annotations

from lrr_service.core.statistics import staging_rows
from lrr_service.service.errors import CapacityError

FLOAT64_BYTES = 8


def session_state_bytes(n_channels: int | None) -> int:
    """Bytes a session bound to `n_channels` may hold: XᵀX and W (n² float64 each), sums, staging."""
    if not n_channels:
        return 0
    n = n_channels
    return FLOAT64_BYTES * (2 * n * n + n + 2 * staging_rows(n) * n)


def checkpoint_file_limit(max_channels: int) -> int:
    """The largest checkpoint file a session within `max_channels` can need: XᵀX, W and sums in
    float64, plus a MiB for the zip structure and the metadata (settings with their groups)."""
    n = max_channels
    return FLOAT64_BYTES * (2 * n * n + n) + 1024 * 1024


def check_budget(key: str, n_channels: int, held_by_others: int, budget: int) -> None:
    """Raise CapacityError, saying what to do, if binding `key` to `n_channels` exceeds `budget`."""
    needed = session_state_bytes(n_channels)
    if held_by_others + needed > budget:
        raise CapacityError(
            f"binding session {key!r} to {n_channels} channels needs {_mib(needed)} of statistics and weights, "
            f"but the other sessions hold {_mib(held_by_others)} of the {_mib(budget)} budget "
            "(LRR_MAX_STATE_BYTES); nothing changed: delete unused sessions (DELETE /streams/{key}), "
            "use fewer channels, or raise LRR_MAX_STATE_BYTES"
        )


def _mib(size: int) -> str:
    """A byte count for messages, in MiB with one decimal."""
    return f"{size / (1024 * 1024):.1f} MiB"
