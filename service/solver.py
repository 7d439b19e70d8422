"""Solves off the event loop: statistics copied in the statistics lane, solved in the solve thread,
installed back on the loop.

Per session at most one solve is in flight (its `solve_lock`); fit traffic that arrives meanwhile
only raises `pending_samples`, and the next solve takes the newest statistics (coalescing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lrr_service.service.lane import StatisticsLane
from lrr_service.service.logs import log_event
from lrr_service.service.metrics import ServiceMetrics
from lrr_service.service.sessions import Session


@dataclass(frozen=True)
class SolveOutcome:
    """What one solve did: `installed` is False when it went stale or there was nothing to solve."""

    installed: bool
    reason: str
    n_samples: int
    weights_version: int
    seconds: float = 0.0


class SolveScheduler:
    """Runs automatic (coalesced) and requested solves on a dedicated executor."""

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        lane: StatisticsLane,
        metrics: ServiceMetrics,
        solve_every_samples: int,
        min_interval_seconds: float = 0.0,
    ) -> None:
        self.executor = executor
        self.lane = lane
        self.solve_every_samples = solve_every_samples
        self.min_interval_seconds = min_interval_seconds
        self.metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()

    def note_fit(self, session: Session, n_samples: int) -> None:
        """Count accepted fit samples; start a background solve when enough have arrived and none runs.

        Called per fit frame, so it only does arithmetic unless a solve is due.
        """
        session.pending_samples += n_samples
        if session.solve_task is None and self._solve_due(session):
            task = asyncio.get_running_loop().create_task(self._auto_solve(session))
            session.solve_task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _solve_due(self, session: Session) -> bool:
        """Enough fit samples since the last solve started, and weights a solve may replace
        (uploaded weights are pinned: an automatic solve could not be installed)."""
        return session.pending_samples >= self.solve_every_samples and session.engine.weights_source != "uploaded"

    async def _auto_solve(self, session: Session) -> None:
        """Solve until the weights have caught up with the fit traffic (newest statistics each time),
        starting solves at most every `min_interval_seconds` so large groups cannot eat every core."""
        loop = asyncio.get_running_loop()
        try:
            while not session.closed and self._solve_due(session):
                started = loop.time()
                async with session.solve_lock:
                    outcome = await self._solve_once(session, replace_uploaded=False)
                if outcome.reason == "failed":
                    break
                pause = self.min_interval_seconds - (loop.time() - started)
                if pause > 0:
                    await asyncio.sleep(pause)
        finally:
            session.solve_task = None

    async def solve_now(self, session: Session) -> SolveOutcome:
        """Solve on every sample accepted so far and install, replacing uploaded weights (POST /solve)."""
        async with session.solve_lock:
            return await self._solve_once(session, replace_uploaded=True)

    async def _solve_once(self, session: Session, replace_uploaded: bool) -> SolveOutcome:
        """One statistics copy -> worker-thread solve -> install, discarding the result if it went stale."""
        async with session.engine_lock:
            engine, epoch = session.engine, session.epoch
            if engine.n_channels is None or engine.n_samples == 0:
                return SolveOutcome(False, "no_data", engine.n_samples, engine.weights_version)
            session.pending_samples = 0
            stats = await self.lane.run(engine.statistics)
        started = time.perf_counter()
        try:
            solution = await asyncio.get_running_loop().run_in_executor(
                self.executor, engine.solve_statistics, stats
            )
        except Exception as exc:  # the engine changed under the copy (e.g. reset): stale; else unsolvable
            stale = session.epoch != epoch or session.engine is not engine
            reason = "stale" if stale else "failed"
            self.metrics.solves.labels(reason).inc()
            if not stale:
                log_event("solve_failed", logging.ERROR, key=session.key, error=str(exc))
            return SolveOutcome(False, reason, engine.n_samples, engine.weights_version)
        seconds = time.perf_counter() - started
        self.metrics.solve_seconds.observe(seconds)
        async with session.engine_lock:  # not while a lane call (e.g. a snapshot) reads the engine
            current = session.epoch == epoch and session.engine is engine and not session.closed
            installed = current and engine.install(solution, replace_uploaded=replace_uploaded)
        if not installed:
            self.metrics.solves.labels("stale").inc()
            return SolveOutcome(False, "stale", engine.n_samples, engine.weights_version, seconds)
        session.counters.solves += 1
        session.dirty = True
        self.metrics.solves.labels("installed").inc()
        log_event(
            "solve", logging.INFO if replace_uploaded else logging.DEBUG, key=session.key,
            n_samples=solution.n_samples, weights_version=engine.weights_version,
            seconds=round(seconds, 6), requested=replace_uploaded,
        )
        return SolveOutcome(True, "installed", solution.n_samples, engine.weights_version, seconds)

    async def drain(self) -> None:
        """Wait for background solves to finish (shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
