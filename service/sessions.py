"""Sessions: one LRR engine per stream key, plus counters; the registry that owns them all.

Everything here runs on the event loop. Heavy statistics work runs in the statistics lane
(service/lane.py) and solves in the solve thread (service/solver.py); `engine_lock` keeps
engine changes apart from lane work, and `epoch` lets a solve detect that it went stale.
The registry's mutating methods (reset, replace_settings, load_weights) expect the caller to
hold the session's `engine_lock`; load_weights, which copies and checks n² values, is run in the
statistics lane (the lock held), the others on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lrr_service.core import LRR, LRRSettings, validate_weights
from lrr_service.core.errors import SnapshotError, StatisticsError
from lrr_service.core.groups import resolve_groups
from lrr_service.service.capacity import check_budget, session_state_bytes
from lrr_service.service.keys import validate_key
from lrr_service.service.logs import log_event
from lrr_service.service.metrics import ServiceMetrics
from lrr_service.service.persistence import SessionRecord


class SessionLimitError(Exception):
    """A new session was refused because the registry holds LRR_MAX_SESSIONS sessions."""


class UnknownSessionError(KeyError):
    """No session exists for the requested key."""

    def __str__(self) -> str:
        return f"no session for stream key {self.args[0]!r}"


@dataclass
class SessionCounters:
    """Per-session traffic and event counts, reported by GET /streams/{key} and persisted."""

    fit_frames: int = 0
    fit_samples: int = 0
    transform_frames: int = 0
    transform_samples: int = 0
    rejected_frames: int = 0
    resets: int = 0
    solves: int = 0
    weights_uploads: int = 0


@dataclass(eq=False)
class Session:
    """One stream key's engine and bookkeeping; `engine` may be swapped when settings change."""

    key: str
    engine: LRR
    counters: SessionCounters = field(default_factory=SessionCounters)
    created_at: float = field(default_factory=time.time)
    epoch: int = 0
    """Bumped on every change that makes an in-flight solve stale (reset, upload, new settings)."""
    dirty: bool = False
    """State changed since the last checkpoint."""
    closed: bool = False
    """Deleted from the registry; connections holding it look the key up again."""
    pending_samples: int = 0
    """Fit samples accepted since the last solve started."""
    solve_task: asyncio.Task[None] | None = None
    pending_fold: asyncio.Future[object] | None = None
    """The lane's fold of the engine's full staging block, queued by a fit chunk and not awaited."""
    solve_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held for a whole solve: at most one in flight per session."""
    engine_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held around every change of the engine's statistics, weights or binding, and every lane call."""

    def describe(self) -> dict[str, Any]:
        """The JSON view of GET /streams/{key}."""
        engine = self.engine
        return {
            "key": self.key,
            "settings": engine.settings.to_dict(),
            "n_channels": engine.n_channels,
            "n_samples": engine.n_samples,
            "n_samples_solved": engine.n_samples_solved,
            "weights_version": engine.weights_version,
            "weights_source": engine.weights_source,
            "solve_in_flight": self.solve_task is not None,
            "created_at": self.created_at,
            "counters": asdict(self.counters),
        }

    def summary(self) -> dict[str, Any]:
        """The short JSON view used by GET /streams."""
        engine = self.engine
        return {
            "key": self.key,
            "n_channels": engine.n_channels,
            "n_samples": engine.n_samples,
            "weights_version": engine.weights_version,
            "weights_source": engine.weights_source,
        }

    def to_record(self) -> SessionRecord:
        """A self-contained copy of the state for a checkpoint (arrays are copies); run it in the lane."""
        meta, arrays = self.engine.snapshot()
        service_meta = {"created_at": self.created_at, "counters": asdict(self.counters)}
        return SessionRecord(self.key, meta, arrays, service_meta)

    def mark_changed(self) -> None:
        """Invalidate in-flight solves and schedule a checkpoint."""
        self.epoch += 1
        self.dirty = True


def _upgraded_engine_meta(record: SessionRecord) -> dict[str, Any]:
    """The record's engine snapshot with what older versions wrote brought up to date (logged), or
    the snapshot itself when nothing needed it."""
    settings = record.engine_meta.get("settings")
    if isinstance(settings, dict) and settings.get("check_finite") is False:
        log_event("checkpoint_upgraded", logging.WARNING, key=record.key,
                  change="check_finite false -> true: fit chunks holding NaN, infinity or values beyond "
                         "±1e100 are always refused now, since one would make the statistics non-finite")  # fmt: skip
        return {**record.engine_meta, "settings": {**settings, "check_finite": True}}
    return record.engine_meta


def engine_with_settings(settings: LRRSettings, after_version: int = 0) -> LRR:
    """A fresh engine whose weights_version continues after `after_version`, so versions never go back."""
    return LRR(settings, weights_version=after_version + 1 if after_version > 0 else 0)


TRANSFORM_DTYPES = (np.float32, np.float64)
"""The output dtypes of transforms (integer wire dtypes give float32)."""


def prepare_transforms(engine: LRR) -> None:
    """Build the engine's apply plans for both output dtypes now (ms at 1024 channels; run it in the lane),
    so the first transform after new weights does not build them on the event loop."""
    n_channels = engine.n_channels
    if n_channels:
        for dtype in TRANSFORM_DTYPES:
            engine.transform(np.zeros((1, n_channels), dtype=dtype))


def check_settings_fit(settings: LRRSettings, n_channels: int) -> None:
    """Raise SettingsError if `settings` cannot be used with `n_channels` (e.g. group index out of range)."""
    resolve_groups(settings, n_channels)


class SessionRegistry:
    """All sessions by key, with the limit on their number; counts and logs creations and resets."""

    def __init__(
        self, default_settings: LRRSettings, max_sessions: int, metrics: ServiceMetrics,
        max_state_bytes: int | None = None,
    ) -> None:  # fmt: skip
        self.default_settings = default_settings
        self.max_sessions = max_sessions
        self.max_state_bytes = max_state_bytes
        """Budget for the bound sessions' statistics and weights (service/capacity.py); None: no budget."""
        self.metrics = metrics
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def all(self) -> list[Session]:
        """Every session, in key order."""
        return [self._sessions[k] for k in sorted(self._sessions)]

    def get(self, key: str) -> Session | None:
        """The session of `key`, or None."""
        return self._sessions.get(key)

    def require(self, key: str) -> Session:
        """The session of `key`; raises UnknownSessionError."""
        session = self._sessions.get(key)
        if session is None:
            raise UnknownSessionError(key)
        return session

    def get_or_create(self, key: str, settings: LRRSettings | None = None) -> tuple[Session, bool]:
        """(session, created): the existing session, or a new one with `settings` or the defaults."""
        session = self._sessions.get(key)
        if session is not None:
            return session, False
        session = Session(validate_key(key), LRR(settings or self.default_settings), dirty=True)  # not on disk yet
        return self._add(session, "created"), True

    def check_capacity(self, key: str, n_channels: int) -> None:
        """Raise CapacityError if binding the session of `key` to `n_channels` would exceed the state budget."""
        if self.max_state_bytes is None:
            return
        others = sum(session_state_bytes(s.engine.n_channels) for k, s in self._sessions.items() if k != key)
        check_budget(key, n_channels, others, self.max_state_bytes)

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
        log_event(f"session_{how}", key=session.key, n_channels=engine.n_channels,
                  weights_source=engine.weights_source, settings=engine.settings.to_dict())  # fmt: skip
        return session

    def restore(self, record: SessionRecord, max_channels: int) -> Session:
        """Adopt a session read from a checkpoint; raises SnapshotError if the record is inconsistent
        or binds more than `max_channels` channels, CapacityError if it does not fit in the state budget
        (both checked before anything is allocated)."""
        n_channels = record.engine_meta.get("n_channels")
        if n_channels is not None and (
            isinstance(n_channels, bool) or not isinstance(n_channels, int) or not 1 <= n_channels <= max_channels
        ):
            raise SnapshotError(f"n_channels is {n_channels!r}; expected null or an integer from 1 to "
                                f"{max_channels} (LRR_MAX_CHANNELS)")  # fmt: skip
        if n_channels is not None:
            self.check_capacity(record.key, n_channels)
        engine_meta = _upgraded_engine_meta(record)
        changed = engine_meta is not record.engine_meta  # then the file is rewritten at the next checkpoint
        try:
            engine = LRR.restore(engine_meta, record.arrays)
        except StatisticsError as exc:  # written before fit chunks were range-checked: keep all but them
            engine = LRR.restore(engine_meta, record.arrays, statistics=False)
            changed = True
            log_event("checkpoint_statistics_dropped", logging.WARNING, key=record.key, reason=str(exc),
                      n_samples=record.engine_meta.get("n_samples"))  # fmt: skip
        counters = SessionCounters(**{
            k: int(v) for k, v in dict(record.service_meta.get("counters") or {}).items()
            if k in SessionCounters.__dataclass_fields__
        })  # fmt: skip
        created_at = float(record.service_meta.get("created_at") or time.time())
        session = Session(validate_key(record.key), engine, counters, created_at, dirty=changed)
        return self._add(session, "restored")

    def discard_if_unused(self, session: Session) -> None:
        """Drop a session that was created for a frame that was then rejected (it never held data)."""
        if session.engine.n_channels is None and self._sessions.get(session.key) is session:
            self.remove(session.key, log=False)

    def remove(self, key: str, log: bool = True) -> Session:
        """Take a session out of the registry and mark it closed; raises UnknownSessionError."""
        session = self._sessions.pop(key, None)
        if session is None:
            raise UnknownSessionError(key)
        session.closed = True
        session.mark_changed()
        self.metrics.sessions.set(len(self._sessions))
        if log:
            log_event("session_deleted", key=key)
        return session

    def reset(self, session: Session, reason: str, **details: Any) -> None:
        """Clear statistics and weights (settings kept); counted by reason and logged."""
        previous = session.engine.n_channels
        session.engine.reset()
        session.pending_samples = 0
        session.counters.resets += 1
        session.mark_changed()
        self.metrics.resets.labels(reason).inc()
        log_event("session_reset", key=session.key, reason=reason, previous_n_channels=previous, **details)

    def replace_settings(self, session: Session, settings: LRRSettings) -> None:
        """Give the session a new engine with `settings`: statistics and weights start over."""
        session.engine = engine_with_settings(settings, session.engine.weights_version)
        session.pending_samples = 0
        session.mark_changed()
        log_event("session_configured", key=session.key, settings=settings.to_dict())

    def load_weights(self, session: Session, weights: np.ndarray, replace: bool) -> None:
        """Pin uploaded weights; with `replace`, a session bound to another size is reset first.

        Raises ChannelCountError (size differs, no `replace`) or WeightsError, changing nothing.
        """
        engine = session.engine
        n = weights.shape[0] if weights.ndim == 2 else -1
        if replace and engine.n_channels is not None and engine.n_channels != n:
            validate_weights(weights)  # refuse bad weights, or settings that cannot take n channels,
            check_settings_fit(engine.settings, n)  # before the reset changes anything
            self.reset(session, "weights_replace", n_channels=n)
        engine.load_weights(weights)
        session.pending_samples = 0
        session.counters.weights_uploads += 1
        session.mark_changed()
        self.metrics.uploads.inc()
        log_event("weights_uploaded", key=session.key, n_channels=n, weights_version=engine.weights_version)
