"""When sessions solve on their own: after LRR_SOLVE_EVERY_SAMPLES new fit samples, at most every
LRR_SOLVE_MIN_INTERVAL_SECONDS, one background solve per session at a time.

The solve itself is `Session.solve` (statistics copied in the lane, solved in the solve thread,
installed under the session's lock); this module only decides when. Fit traffic that arrives
during a solve raises the session's `pending_samples`, and the next solve takes the newest
statistics (coalescing).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lrr_service.service.session import Session


class SolveScheduler:
    """Starts and tracks the automatic solves of every session of an app."""

    def __init__(self, solve_every_samples: int, min_interval_seconds: float = 0.0) -> None:
        self.solve_every_samples = solve_every_samples
        self.min_interval_seconds = min_interval_seconds
        self._running: dict[Session, asyncio.Task[None]] = {}

    def note_fit(self, session: Session) -> None:
        """After a fit chunk: start a background solve when enough samples arrived and none runs.

        Called per fit frame, so it only compares numbers unless a solve is due.
        """
        if session not in self._running and self._due(session):
            task = asyncio.get_running_loop().create_task(self._solve_while_due(session))
            self._running[session] = task
            task.add_done_callback(lambda _: self._running.pop(session, None))

    def is_solving(self, session: Session) -> bool:
        """A background solve of `session` is running or waiting for its interval."""
        return session in self._running

    def _due(self, session: Session) -> bool:
        """Enough fit samples since the last solve started, and weights a solve may replace
        (uploaded weights are pinned: an automatic solve could not be installed)."""
        return session.pending_samples >= self.solve_every_samples and session.engine.weights_source != "uploaded"

    async def _solve_while_due(self, session: Session) -> None:
        """Solve until the weights have caught up with the fit traffic, starting solves at most every
        `min_interval_seconds` so that large groups cannot take every core."""
        loop = asyncio.get_running_loop()
        while not session.closed and self._due(session):
            started = loop.time()
            outcome = await session.solve(requested=False)
            if outcome.reason == "failed":
                break
            pause = self.min_interval_seconds - (loop.time() - started)
            if pause > 0:
                await asyncio.sleep(pause)

    async def drain(self) -> None:
        """Wait for background solves to finish (shutdown)."""
        if self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)
