"""The statistics lane: one worker thread for the heavy statistics calls of every session.

`accumulate` (its staged BLAS update costs tens of ms at 1024 channels every few chunks),
`statistics()` (a flush plus a copy) and `snapshot()` run here, so the event loop only ever
does the transforms. Callers hold the session's `engine_lock` around each call, so an engine
is never touched by two of these at once, and never reset or reconfigured under one.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


BACKGROUND_NICENESS = 10
"""How much lower than the event loop the background threads (folds, solves) run, so that on a
machine with few cores the loop's transforms win the CPU (docs/benchmarks.md, fit traffic)."""


def lower_thread_priority() -> None:
    """Executor initializer: lower the calling thread's scheduling priority (Linux: per-thread nice)."""
    try:
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(niceness + BACKGROUND_NICENESS, 19))
    except (AttributeError, OSError):  # not Linux, or not allowed: keep the default priority
        pass


class StatisticsLane:
    """A single worker thread with an awaitable `run`; numpy's BLAS releases the GIL while it works."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lrr-statistics", initializer=lower_thread_priority
        )

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """Run `function(*args)` in the lane's thread and return its result (or raise its exception).

        If the caller is cancelled, it still waits for the thread to finish before the cancellation
        propagates, so a lock held around this call is never released while the thread uses the engine.
        """
        future = asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])
            raise

    def shutdown(self) -> None:
        """Stop the thread once queued work is done (at app shutdown, after the final checkpoint)."""
        self._executor.shutdown(wait=True)
