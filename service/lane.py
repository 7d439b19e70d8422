"""The statistics lane: one worker thread for the heavy statistics calls of every session.

`accumulate` (its staged BLAS update costs tens of ms at 1024 channels every few chunks),
`statistics()` (a flush plus a copy) and `snapshot()` run here, so the event loop only ever
does the transforms. Callers hold the session's `engine_lock` around each call, so an engine
is never touched by two of these at once, and never reset or reconfigured under one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class StatisticsLane:
    """A single worker thread with an awaitable `run`; numpy's BLAS releases the GIL while it works."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lrr-statistics")

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
