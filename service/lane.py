"""The statistics lane: one worker thread for the heavy statistics calls of every session.

`accumulate` when it folds (its BLAS update costs tens of ms at 1024 channels),
`statistics()` (a flush plus a copy) and `snapshot()` run here, so the event loop only ever
does the transforms and the cheap staging. Sessions (service/session.py) hold their lock around
each `run`, so an engine is never touched by two of these at once, and never reset or
reconfigured under one. The one exception is `start(engine.fold_pending)`: the fold of a full
staging block, which the engine allows beside cheap accumulates; the lane runs its work in
order, so every later `run` on that engine comes after it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lrr_service.service.logs import log_event

T = TypeVar("T")


BACKGROUND_NICENESS = 10
"""Where SCHED_IDLE is missing: how much lower than the event loop the background threads run."""


def lower_thread_priority() -> None:
    """Executor initializer: run the calling thread only when the CPU has nothing else to do.

    Linux SCHED_IDLE for the thread (folds, solves), so on a machine with few cores the loop's
    transforms and the rigs' own processes win the CPU at once; elsewhere 10 nice levels lower.
    SCHED_IDLE halved the transform p99 ratio under real-time fit traffic against nice +10
    (docs/benchmarks.md); on saturated CPUs, whatever waits for these threads waits longer.
    """
    try:
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(niceness + BACKGROUND_NICENESS, 19))
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not allowed: keep what could be set
        pass


def _log_failure(future: asyncio.Future[object]) -> None:
    """Done-callback of `start`: nobody awaits the result, so an exception would otherwise vanish."""
    exc = None if future.cancelled() else future.exception()
    if exc is not None:
        log_event("lane_task_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")


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

    def start(self, function: Callable[[], object]) -> asyncio.Future[object]:
        """Queue `function()` in the lane's thread without waiting for it; a failure is logged, not raised."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, function)
        future.add_done_callback(_log_failure)
        return future

    def shutdown(self) -> None:
        """Stop the thread once queued work is done (at app shutdown, after the final checkpoint)."""
        self._executor.shutdown(wait=True)
