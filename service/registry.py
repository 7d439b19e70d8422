"""The registry: every session of an app by key, with the limits over all of them.

It creates, restores and removes sessions, and keeps the limits no single session can check:
their number (LRR_MAX_SESSIONS) and the memory their statistics and weights take together
(LRR_MAX_STATE_BYTES). What happens inside a session is service/session.py's business. It also
counts the open websocket streams of each key by mode (a socket may outlive the session it fed,
and connect before its key has one), which the sessions' status reports, and feeds the
sessions' quality summaries to the metrics at scrape time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from lrr_service.core import LRR, LRRSettings
from lrr_service.core.errors import SnapshotError, StatisticsError
from lrr_service.core.vocabulary import Mode
from lrr_service.service.capacity import check_budget, session_state_bytes
from lrr_service.service.errors import ServiceError, SessionLimitError, UnknownSessionError
from lrr_service.service.keys import validate_key
from lrr_service.service.lane import StatisticsLane
from lrr_service.service.logs import log_event
from lrr_service.service.metrics import ServiceMetrics
from lrr_service.service.persistence import SessionRecord
from lrr_service.service.session import Session, SessionCounters, SessionRuntime, no_connections
from lrr_service.service.solver import SolveScheduler


class SessionRegistry:
    """All sessions by key; counts and logs their creation, restoration and deletion."""

    def __init__(
        self,
        default_settings: LRRSettings,
        max_sessions: int,
        metrics: ServiceMetrics,
        lane: StatisticsLane,
        solve_executor: ThreadPoolExecutor,
        scheduler: SolveScheduler,
        max_state_bytes: int | None = None,
    ) -> None:
        self.default_settings = default_settings
        self.max_sessions = max_sessions
        self.max_state_bytes = max_state_bytes
        """Budget for the bound sessions' statistics and weights (service/capacity.py); None: no budget."""
        self.metrics = metrics
        self.runtime = SessionRuntime(
            lane, solve_executor, metrics, scheduler, self.check_capacity, connections=self.connections
        )
        self._sessions: dict[str, Session] = {}
        self._connections: dict[str, dict[str, int]] = {}
        metrics.quality_source = self.reduction_summaries

    def set_quality(self, window_seconds: float, every: int) -> None:
        """Measure every `every`-th transforming frame of each session (0: none) over an exponential window of
        `window_seconds` (LRR_QUALITY_WINDOW_SECONDS, LRR_QUALITY_EVERY)."""
        self.runtime.quality_window_seconds = window_seconds
        self.runtime.quality_every = every

    # -- connections --------------------------------------------------------------------------

    def connected(self, key: str, mode: Mode) -> None:
        """A websocket stream of `key` in `mode` opened."""
        counts = self._connections.setdefault(key, no_connections())
        counts[mode.value] += 1

    def disconnected(self, key: str, mode: Mode) -> None:
        """A websocket stream of `key` in `mode` closed."""
        counts = self._connections.get(key)
        if counts is None:
            return
        counts[mode.value] = max(0, counts[mode.value] - 1)
        if not any(counts.values()):
            del self._connections[key]

    def connections(self, key: str) -> dict[str, int]:
        """Open websocket streams of `key` by mode (fit, transform, fit_transform)."""
        counts = self._connections.get(key)
        return dict(counts) if counts is not None else no_connections()

    def reduction_summaries(self) -> Iterator[tuple[str, float, float]]:
        """(key, median channel dB, worst channel dB) of every session whose quality was measured."""
        for session in self.all():
            summary = session.reduction_summary()
            if summary is not None:
                yield session.key, summary[0], summary[1]

    def __len__(self) -> int:
        return len(self._sessions)

    def all(self) -> list[Session]:
        """Every session, in key order."""
        return [self._sessions[k] for k in sorted(self._sessions)]

    def get(self, key: str) -> Session | None:
        """The session of `key`, or None."""
        return self._sessions.get(key)

    def require(self, key: str) -> Session:
        """The session of `key`; raises UnknownSessionError saying how sessions come to exist."""
        session = self._sessions.get(key)
        if session is None:
            raise UnknownSessionError(
                f"no session for stream key {key!r}; sessions are created by the first chunk on /ws/{key}/..., "
                f"PUT /streams/{key} or PUT /streams/{key}/weights"
            )
        return session

    def get_or_create(self, key: str, settings: LRRSettings | None = None) -> tuple[Session, bool]:
        """(session, created): the existing session, or a new one with `settings` or the defaults;
        raises SessionLimitError beyond LRR_MAX_SESSIONS."""
        session = self._sessions.get(key)
        if session is not None:
            return session, False
        session = Session(validate_key(key), LRR(settings or self.default_settings), self.runtime)
        return self._add(session, "created"), True

    def check_capacity(self, key: str, n_channels: int) -> None:
        """Raise CapacityError if binding the session of `key` to `n_channels` would exceed the state budget."""
        if self.max_state_bytes is None:
            return
        others = sum(session_state_bytes(s.engine.n_channels) for k, s in self._sessions.items() if k != key)
        check_budget(key, n_channels, others, self.max_state_bytes)

    def restore(self, record: SessionRecord, max_channels: int) -> Session:
        """Adopt a session read from a checkpoint; raises SnapshotError if the record is inconsistent or binds
        more than `max_channels` channels, CapacityError if it does not fit in the state budget (both checked
        before anything is allocated)."""
        n_channels = record.engine_meta.get("n_channels")
        if n_channels is not None and (
            isinstance(n_channels, bool) or not isinstance(n_channels, int) or not 1 <= n_channels <= max_channels
        ):
            raise SnapshotError(
                f"n_channels is {n_channels!r}; expected null or an integer from 1 to {max_channels} (LRR_MAX_CHANNELS)"
            )
        if n_channels is not None:
            self.check_capacity(record.key, n_channels)
        engine_meta = _upgraded_engine_meta(record)
        changed = engine_meta is not record.engine_meta  # then the file is rewritten at the next checkpoint
        try:
            engine = LRR.restore(engine_meta, record.arrays)
        except StatisticsError as exc:  # written before fit chunks were range-checked: keep all but them
            engine = LRR.restore(engine_meta, record.arrays, statistics=False)
            changed = True
            log_event(
                "checkpoint_statistics_dropped",
                logging.WARNING,
                key=record.key,
                reason=str(exc),
                n_samples=record.engine_meta.get("n_samples"),
            )
        counters = SessionCounters(
            **{
                k: int(v)
                for k, v in dict(record.service_meta.get("counters") or {}).items()
                if k in SessionCounters.__dataclass_fields__
            }
        )
        created_at = float(record.service_meta.get("created_at") or time.time())
        session = Session(validate_key(record.key), engine, self.runtime, counters, created_at, dirty=changed)
        changed_at = record.service_meta.get("weights_changed_at")
        if isinstance(changed_at, (int, float)) and not isinstance(changed_at, bool) and math.isfinite(changed_at):
            session.status.weights_changed_at = float(changed_at)
        return self._add(session, "restored")

    @contextmanager
    def session_for_change(self, key: str) -> Iterator[Session]:
        """The session of `key`, created if need be, for a change that may be refused: a session created here is
        dropped again if the change raises ServiceError while it holds no data, so a refusal creates nothing."""
        session, created = self.get_or_create(key)
        try:
            yield session
        except ServiceError:
            if created:
                self.discard_if_unused(session)
            raise

    def discard_if_unused(self, session: Session) -> None:
        """Drop a session that was created for a frame or upload that was then refused (it never held data)."""
        if session.engine.n_channels is None and self._sessions.get(session.key) is session:
            self.remove(session.key, log=False)

    def remove(self, key: str, log: bool = True) -> Session:
        """Take a session out of the registry and close it; raises UnknownSessionError."""
        session = self._sessions.pop(key, None)
        if session is None:
            raise UnknownSessionError(f"no session for stream key {key!r}")
        session.close()
        self.metrics.sessions.set(len(self._sessions))
        if log:
            log_event("session_deleted", key=key)
        return session

    def _add(self, session: Session, how: str) -> Session:
        """Insert a session, enforcing the limit; logs `session_<how>`."""
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitError(
                f"the server holds its maximum of {self.max_sessions} sessions (LRR_MAX_SESSIONS); "
                f"session {session.key!r} was not created: delete unused sessions or raise the limit"
            )
        self._sessions[session.key] = session
        self.metrics.sessions.set(len(self._sessions))
        engine = session.engine
        log_event(
            f"session_{how}",
            key=session.key,
            n_channels=engine.n_channels,
            weights_source=engine.weights_source,
            settings=engine.settings.to_dict(),
        )
        return session


def _upgraded_engine_meta(record: SessionRecord) -> dict[str, Any]:
    """The record's engine snapshot with what older versions wrote brought up to date (logged), or
    the snapshot itself when nothing needed it."""
    settings = record.engine_meta.get("settings")
    if isinstance(settings, dict) and settings.get("check_finite") is False:
        log_event(
            "checkpoint_upgraded",
            logging.WARNING,
            key=record.key,
            change="check_finite false -> true: fit chunks holding NaN, infinity or values beyond "
            "±1e100 are always refused now, since one would make the statistics non-finite",
        )
        return {**record.engine_meta, "settings": {**settings, "check_finite": True}}
    return record.engine_meta
