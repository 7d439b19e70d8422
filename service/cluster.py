"""A worker of a cluster (LRR_STORE_URL set): keys are served only under a lease, sessions come from Redis.

`Cluster.enter(key, routed)` runs before any request that names a key (service/gate.py): it takes
or confirms the lease (service/ownership.py), then restores the key's session from the store if
this worker does not hold it yet, so a key that moved (failover, ring change) answers with the
state it had. Checkpoints go to the store through `ClusterWriter`, fenced by the lease. When the
lease is lost, the key's streams are closed with 4421 and its session is dropped; when another
worker asks for it, the session is checkpointed first, then the lease released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from starlette.websockets import WebSocket

from lrr_service.core.vocabulary import CloseCode
from lrr_service.service.checkpoints import Checkpointer
from lrr_service.service.errors import ServiceError, StoreUnavailableError
from lrr_service.service.logs import log_event
from lrr_service.service.ownership import Lease, Ownership
from lrr_service.service.persistence import CheckpointError, FencedOut, SessionRecord, StoreUnreachable
from lrr_service.service.registry import SessionRegistry
from lrr_service.service.store import SessionStore


class ClusterWriter:
    """Checkpoints into the shared store, each write fenced by this worker's lease on the key."""

    def __init__(self, store: SessionStore, ownership: Ownership) -> None:
        self.store = store
        self.ownership = ownership

    def save(self, record: SessionRecord) -> None:
        """Write `record` while this worker holds its key's lease; FencedOut otherwise."""
        lease = self.ownership.leases.get(record.key)
        if lease is None:
            raise FencedOut(f"not written: this worker no longer owns stream key {record.key!r}")
        engine = record.engine_meta
        summary = {
            "key": record.key,
            "n_channels": engine.get("n_channels"),
            "n_samples": engine.get("n_samples", 0),
            "weights_version": engine.get("weights_version", 0),
            "weights_source": engine.get("weights_source"),
            "owner": self.ownership.own_url,
            "checkpointed_at": round(time.time(), 3),
        }
        self.store.save(record, lease.value, summary)

    def delete(self, key: str) -> None:
        """Delete the stored session of `key` while this worker holds its lease; FencedOut otherwise."""
        lease = self.ownership.leases.get(key)
        if lease is None:
            raise FencedOut(f"not deleted: this worker no longer owns stream key {key!r}")
        self.store.delete(key, lease.value)


class Cluster:
    """This worker's part of a cluster: leases, restores from the store, and its open streams by key."""

    def __init__(
        self,
        store_url: str,
        own_url: str,
        lease_seconds: float,
        registry: SessionRegistry,
        max_channels: int,
        max_record_bytes: int | None,
    ) -> None:
        self.store = SessionStore(store_url, max_record_bytes)
        self.ownership = Ownership(store_url, own_url, lease_seconds, self.drop, self.hand_over, self.in_use)
        self.registry = registry
        self.max_channels = max_channels
        self.checkpointer: Checkpointer | None = None
        """Set by the app once its checkpointer exists (handovers checkpoint through it)."""
        self._streams: dict[str, set[WebSocket]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def enter(self, key: str, routed: bool) -> Lease:
        """Make this worker the owner of `key` with its stored state, or raise NotOwnerError /
        StoreUnavailableError (see Ownership.claim)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            lease = await self.ownership.claim(key, routed)
            if self.registry.get(key) is None:
                await self._restore(key)
            return lease

    async def _restore(self, key: str) -> None:
        """Adopt the stored session of `key`, if there is one; an unreadable one is logged and left."""
        try:
            record = await asyncio.to_thread(self.store.load, key)
        except StoreUnreachable as exc:
            raise StoreUnavailableError(f"the session of stream key {key!r} cannot be restored: {exc}; retry") from exc
        except CheckpointError as exc:
            await self._set_aside(key, str(exc))
            return
        if record is None:
            return
        try:
            self.registry.restore(record, self.max_channels)
        except ServiceError:
            raise
        except Exception as exc:  # SnapshotError: the stored session cannot be used; start afresh
            await self._set_aside(key, f"{type(exc).__name__}: {exc}")

    async def _set_aside(self, key: str, reason: str) -> None:
        """Keep a stored session that cannot be restored under another name (the next checkpoint of the
        fresh session must not destroy it), and log where it went."""
        moved_to = await asyncio.to_thread(self.store.set_aside, key)
        log_event("stored_session_corrupt", logging.ERROR, key=key, moved_to=moved_to, reason=reason)

    def in_use(self, key: str) -> bool:
        """Whether `key` has a session or an open stream on this worker."""
        return self.registry.get(key) is not None or key in self._streams

    # -- streams --------------------------------------------------------------------------------
    def opened(self, key: str, websocket: WebSocket) -> None:
        """Track an open stream of `key`, to be closed if the key moves."""
        self._streams.setdefault(key, set()).add(websocket)

    def closed(self, key: str, websocket: WebSocket) -> None:
        streams = self._streams.get(key)
        if streams is not None:
            streams.discard(websocket)
            if not streams:
                del self._streams[key]

    async def _close_streams(self, key: str, reason: str) -> None:
        for websocket in list(self._streams.pop(key, ())):
            with contextlib.suppress(Exception):  # already closing: nothing more to tell it
                await websocket.close(code=CloseCode.NOT_OWNER, reason=reason)

    # -- losing a key ---------------------------------------------------------------------------
    async def drop(self, key: str) -> None:
        """The lease of `key` is another worker's now: close its streams, forget its session unsaved."""
        await self._close_streams(key, "another worker owns this stream key now; reconnect")
        if self.registry.get(key) is not None:
            self.registry.remove(key, log=False)
        log_event("session_dropped", logging.WARNING, key=key, reason="lease lost")

    async def hand_over(self, lease: Lease) -> None:
        """Another worker was given `lease.key` by the proxy: close its streams, checkpoint, release."""
        await self._close_streams(lease.key, "this stream key moved to another worker; reconnect")
        session = self.registry.get(lease.key)
        if session is not None and self.checkpointer is not None:
            with contextlib.suppress(ServiceError):  # logged by the checkpointer; the lease then simply expires
                await self.checkpointer.checkpoint(session, "handover")
        await self.ownership.release(lease)
        if self.registry.get(lease.key) is session and session is not None:
            self.registry.remove(lease.key, log=False)
        log_event("session_handed_over", key=lease.key)

    # -- the cluster's view ---------------------------------------------------------------------
    async def stored_sessions(self) -> dict[str, dict[str, Any]]:
        """Every stored session's summary as of its last checkpoint (StoreUnavailableError if unreachable)."""
        try:
            return await asyncio.to_thread(self.store.summaries)
        except StoreUnreachable as exc:
            raise StoreUnavailableError(f"the cluster's sessions cannot be listed: {exc}") from exc

    async def close(self) -> None:
        """Release every lease and close the connections (after the final checkpoint)."""
        await self.ownership.close()
        await asyncio.to_thread(self.store.close)
