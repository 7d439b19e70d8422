"""When sessions are written to disk: on demand (REST changes), periodically when dirty, and at shutdown.

The session takes its own snapshot (`Session.checkpoint_record`: in the statistics lane, its lock
held); the file is written in the writer thread, so the loop never waits on a copy or fsync.
Both run at the lowest CPU priority: checking and writing a 1024-channel session's 16 MB at
normal priority took the CPU from the loop's transforms while REST clients uploaded weights. A
per-key lock keeps writes and deletes of one key in order, even across a DELETE and a
re-creation of the same key.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from lrr_service.service.errors import CheckpointFailedError, NotOwnerError, ServiceError, StoreUnavailableError
from lrr_service.service.lane import lower_thread_priority
from lrr_service.service.logs import log_event
from lrr_service.service.metrics import ServiceMetrics
from lrr_service.service.persistence import (
    CheckpointError,
    CheckpointStore,
    FencedOut,
    SessionRecord,
    StoreUnreachable,
)
from lrr_service.service.registry import SessionRegistry
from lrr_service.service.session import Session


class SessionWriter(Protocol):
    """Where checkpoints go: a CheckpointStore (files) or, in a cluster, service/cluster.py's ClusterWriter."""

    def save(self, record: SessionRecord) -> object: ...

    def delete(self, key: str) -> None: ...


class Checkpointer:
    """Writes session checkpoints through a CheckpointStore and keeps the metrics and log."""

    def __init__(
        self, store: CheckpointStore | SessionWriter, registry: SessionRegistry, metrics: ServiceMetrics
    ) -> None:
        self.store = store
        self._writer = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lrr-checkpoint", initializer=lower_thread_priority
        )
        self.registry = registry
        self.metrics = metrics
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        """Per-key locks, alive only while a write or delete of the key holds or awaits them."""

    def _lock_for(self, key: str) -> asyncio.Lock:
        """The key's lock, shared by everyone working on the key now; forgotten once nobody is."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    @property
    def lock_count(self) -> int:
        """How many per-key locks exist (keys with a write or delete in progress)."""
        return len(self._locks)

    async def checkpoint(self, session: Session, reason: str) -> None:
        """Write `session` durably; raises CheckpointFailedError (and keeps it dirty) if the write fails."""
        async with self._lock_for(session.key):
            record = await session.checkpoint_record()
            if record is None:  # deleted meanwhile
                return
            started = time.perf_counter()
            try:
                await asyncio.get_running_loop().run_in_executor(self._writer, self.store.save, record)
            except Exception as exc:
                session.checkpoint_failed()
                self.metrics.checkpoints.labels("failed").inc()
                log_event("checkpoint_failed", logging.ERROR, key=session.key, reason=reason, error=str(exc))
                raise _refusal(exc, session.key) from exc
        self.metrics.checkpoints.labels("ok").inc()
        log_event(
            "checkpoint",
            key=session.key,
            reason=reason,
            n_samples=record.engine_meta.get("n_samples", 0),
            weights_version=record.engine_meta["weights_version"],
            seconds=round(time.perf_counter() - started, 6),
        )

    async def checkpoint_dirty(self, reason: str) -> int:
        """Checkpoint every session changed since its last checkpoint; returns how many were written."""
        written = 0
        for session in self.registry.all():
            if session.dirty:
                try:
                    await self.checkpoint(session, reason)
                    written += 1
                except ServiceError:  # logged and counted in checkpoint(); the others still get written
                    pass
        return written

    async def run_periodically(self, interval_seconds: float) -> None:
        """Every `interval_seconds`, checkpoint the dirty sessions (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval_seconds)
            await self.checkpoint_dirty("periodic")

    def shutdown(self) -> None:
        """Stop the writer thread once its writes are done (at app shutdown, after the final checkpoint)."""
        self._writer.shutdown(wait=True)

    async def delete(self, session: Session) -> None:
        """Delete the session's checkpoint, then take the session out of the registry.

        Raises CheckpointFailedError, changing nothing, if the file cannot be deleted: removing the
        session from memory alone would bring it back at the next start.
        """
        async with self._lock_for(session.key):
            try:
                await asyncio.to_thread(self.store.delete, session.key)
            except (OSError, CheckpointError) as exc:
                log_event("checkpoint_delete_failed", logging.ERROR, key=session.key, error=str(exc))
                if isinstance(exc, CheckpointError):
                    raise _refusal(exc, session.key) from exc
                raise CheckpointFailedError(
                    f"session {session.key!r} was not deleted: its checkpoint file could not be removed ({exc}); "
                    "nothing changed: make the state dir (LRR_STATE_DIR) writable and retry"
                ) from exc
            if self.registry.get(session.key) is session:
                self.registry.remove(session.key)
        log_event("checkpoint_deleted", key=session.key)


def _refusal(exc: Exception, key: str) -> ServiceError:
    """The REST answer for a checkpoint that failed with `exc`."""
    if isinstance(exc, FencedOut):
        return NotOwnerError(
            f"the change was not stored: this worker no longer owns stream key {key!r}; "
            "retry through the cluster's proxy"
        )
    if isinstance(exc, StoreUnreachable):
        return StoreUnavailableError(
            f"the change is applied in memory but the session store cannot be reached ({exc}); "
            "it will be retried with the next periodic checkpoint"
        )
    return CheckpointFailedError(
        f"the change is applied but could not be written to disk ({exc}); "
        "it will be retried with the next periodic checkpoint"
    )
