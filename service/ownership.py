"""Which worker of a cluster owns a stream key: leases in Redis, renewed by their owner.

The rules (docs/scale.md tells them to users):
- A worker serves a key only while it holds the key's lease. It takes a free lease when a request
  for the key reaches it through the proxy (HAProxy sends every key to one worker of its ring);
  a request that came straight to it (the direct path) is served only if it already holds it.
- A lease is taken with a new fencing token (`INCR`); every checkpoint is written only while the
  writer's lease is the key's lease (service/store.py), so a stale owner's write is refused.
- The owner renews its leases every quarter of LRR_LEASE_SECONDS. It believes it owns a key until
  its last successful renewal's start plus the lease time; past that, the next frame waits for an
  answer from Redis. If Redis says the lease is someone else's, the key is dropped at once. If Redis
  cannot be reached, the worker goes on serving from memory: nobody else can take a lease then.
- A worker that wants a key another live worker holds (the ring moved) asks for a handover; the
  holder checkpoints the session, releases the lease and closes its sockets (close code 4421).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lrr_service.service.errors import NotOwnerError, StoreUnavailableError
from lrr_service.service.logs import log_event
from lrr_service.service.store import redis_key

_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then return {0, current} end
local token = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. '|' .. token .. '|' .. ARGV[3]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
redis.call('DEL', KEYS[3])
return {1, value}
"""
_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not current and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
LOST, RENEWED, HANDOVER_ASKED = 0, 1, 2
POLL_SECONDS = 0.05


@dataclass
class Lease:
    """This worker's lease on one key: `value` as stored in Redis, believed valid until `valid_until`."""

    key: str
    value: str
    valid_until: float
    lost: bool = False
    """Set when Redis says another worker holds it, or once a handover starts: no frame is served then."""
    handing_over: bool = False
    """Being handed over: still renewed, so that the handover's checkpoint is written under it."""
    taken_at: float = field(default_factory=time.monotonic)

    @property
    def token(self) -> int:
        """The fencing token."""
        return int(self.value.split("|")[1])


def owner_url(value: str) -> str:
    """The worker URL in a lease value."""
    return value.split("|", 2)[2]


class Ownership:
    """This worker's leases; `claim` before serving a key, `run` keeps them renewed."""

    def __init__(
        self,
        url: str,
        own_url: str,
        lease_seconds: float,
        on_lost: Callable[[str], Awaitable[None]],
        on_handover: Callable[[Lease], Coroutine[Any, Any, None]],
        in_use: Callable[[str], bool],
    ) -> None:
        self.worker_id = uuid.uuid4().hex[:12]
        self.own_url = own_url
        self.lease_seconds = lease_seconds
        self.leases: dict[str, Lease] = {}
        self._on_lost = on_lost
        self._on_handover = on_handover
        self._in_use = in_use
        """Whether a key still has a session or open streams here; leases of keys without are released."""
        self._redis = aioredis.Redis.from_url(url, socket_timeout=lease_seconds, socket_connect_timeout=lease_seconds)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self.reachable = True
        self._handovers: set[asyncio.Task[None]] = set()

    @property
    def ttl_ms(self) -> int:
        return int(self.lease_seconds * 1000)

    def _keys(self, key: str) -> list[str]:
        return [redis_key(key, "lease"), redis_key(key, "fence"), redis_key(key, "handover")]

    def held(self, key: str) -> Lease | None:
        """The lease on `key` while this worker believes it holds it."""
        lease = self.leases.get(key)
        return lease if lease is not None and not lease.lost else None

    async def claim(self, key: str, routed: bool) -> Lease:
        """This worker's lease on `key`, taking it if it is free.

        `routed`: the request came through the proxy, whose ring names this worker; if another worker
        holds the lease, ask it to hand over and wait (at most two lease times) for the lease to free.
        Otherwise (direct path) raise NotOwnerError naming the holder. StoreUnavailableError if Redis
        cannot be reached.
        """
        lease = self.held(key)
        if lease is not None and await self.still_owner(lease):  # confirmed with Redis once past its time
            return lease
        deadline = time.monotonic() + 2 * self.lease_seconds + 1.0
        asked = False
        while True:
            started = time.monotonic()
            try:
                taken, value = await self._acquire(
                    keys=self._keys(key), args=[self.worker_id, self.ttl_ms, self.own_url]
                )
            except RedisError as exc:
                raise StoreUnavailableError(
                    f"stream key {key!r} cannot be served: the session store cannot be reached ({exc}); retry"
                ) from exc
            value = value.decode()
            if taken or (value.startswith(self.worker_id + "|") and key not in self.leases):
                lease = Lease(key, value, started + self.lease_seconds)
                self.leases[key] = lease
                log_event("lease_taken", key=key, token=lease.token)
                return lease
            if not routed or time.monotonic() > deadline:
                raise NotOwnerError(
                    f"stream key {key!r} is owned by the worker at {owner_url(value)}; stream there, "
                    "or connect through the cluster's proxy",
                    owner=owner_url(value),
                )
            if not asked:
                await self._ask_handover(key)
                asked = True
            await asyncio.sleep(POLL_SECONDS)

    async def _ask_handover(self, key: str) -> None:
        """Ask the holder of `key` to hand it over (it sees the request at its next renewal)."""
        with contextlib.suppress(RedisError):  # if its holder is dead, the lease expires anyway
            await self._redis.set(redis_key(key, "handover"), self.own_url, px=2 * self.ttl_ms)

    async def still_owner(self, lease: Lease) -> bool:
        """Whether this worker may serve `lease.key` now: yes while the lease is believed valid, else
        after a renewal that Redis confirms (or that cannot reach Redis: served from memory)."""
        if lease.lost:
            return False
        if time.monotonic() < lease.valid_until or not self.reachable:  # unreachable: `run` keeps trying
            return True
        await self._renew_one(lease)
        return not lease.lost

    async def release(self, lease: Lease) -> None:
        """Give up `lease` (after the session was checkpointed): another worker may take it at once."""
        lease.lost = True
        if self.leases.get(lease.key) is lease:
            del self.leases[lease.key]
        with contextlib.suppress(RedisError):  # it expires by itself
            await self._release(keys=[redis_key(lease.key, "lease")], args=[lease.value])

    async def run(self) -> None:
        """Renew every lease every quarter lease time, until cancelled; release the leases of keys that
        have had neither a session nor an open stream here for two lease times (e.g. owner lookups)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 4)
            for lease in list(self.leases.values()):
                if lease.lost and not lease.handing_over:
                    continue
                if not self._in_use(lease.key) and time.monotonic() - lease.taken_at > 2 * self.lease_seconds:
                    await self.release(lease)
                    continue
                await self._renew_one(lease)

    async def _renew_one(self, lease: Lease) -> None:
        """Renew one lease; drop it if Redis says it is another worker's; hand it over if asked."""
        started = time.monotonic()
        try:
            outcome = await self._renew(keys=self._keys(lease.key), args=[lease.value, self.ttl_ms, lease.token])
        except RedisError as exc:
            if self.reachable:
                log_event("store_unreachable", logging.ERROR, error=str(exc), serving="from memory")
            self.reachable = False
            return
        if not self.reachable:
            log_event("store_reachable")
        self.reachable = True
        if outcome == LOST:
            if lease.lost:
                return
            lease.lost = True
            self.leases.pop(lease.key, None)
            log_event("lease_lost", logging.WARNING, key=lease.key, token=lease.token)
            await self._on_lost(lease.key)
            return
        lease.valid_until = started + self.lease_seconds
        if outcome == HANDOVER_ASKED and not lease.handing_over:
            lease.lost = lease.handing_over = True  # frames that still arrive are refused
            handover = asyncio.create_task(self._on_handover(lease), name=f"lrr-handover {lease.key}")
            self._handovers.add(handover)  # its own task: a long checkpoint must not hold up other renewals
            handover.add_done_callback(self._handovers.discard)

    async def close(self) -> None:
        """Release every lease (at shutdown, after the final checkpoint) and close the connection."""
        for lease in list(self.leases.values()):
            await self.release(lease)
        await self._redis.aclose()
