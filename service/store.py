"""The shared session store of a cluster: session checkpoints and ownership leases in Redis.

Each stream key has, under `lrr:{key}:`,
- `session`: its checkpoint, in the same format as a checkpoint file (service/persistence.py);
- `lease`: `"<worker id>|<fencing token>|<worker URL>"`, the worker that owns the key, expiring
  unless that worker renews it;
- `fence`: the last fencing token handed out for the key (incremented by every new lease);
- `handover`: set by a worker the proxy routes the key to while another worker holds its lease;
- `corrupt`: a stored session that could not be restored, set aside (the key starts afresh).
`lrr:summaries` maps every stored key to the JSON summary of its last checkpoint (`GET /streams`).

Every write of a session is fenced: a Lua script writes it only while the writer's lease value is
the key's lease, so a worker that lost its lease (paused, partitioned) can never overwrite the
state of the key's new owner. Scripts run atomically in Redis; that is what makes the lease one.
Blocking client: the writer and restore threads call it (a 16 MB session must not stall the loop).
"""

from __future__ import annotations

import io
import json
from typing import Any

import redis

from lrr_service.service.persistence import (
    CheckpointError,
    FencedOut,
    SessionRecord,
    StoreUnreachable,
    check_writable,
    read_record,
    write_record,
)

SUMMARIES = "lrr:summaries"

_SAVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return 1
"""
_DELETE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
"""


def redis_key(key: str, part: str) -> str:
    """The Redis key holding `part` (session, lease, fence, handover) of stream key `key`."""
    return f"lrr:{key}:{part}"


class SessionStore:
    """Reads and writes session checkpoints in Redis, each write fenced by the writer's lease."""

    def __init__(self, url: str, max_record_bytes: int | None = None, timeout_seconds: float = 5.0) -> None:
        self.url = url
        self.max_record_bytes = max_record_bytes
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds, health_check_interval=10
        )
        self._save = self._redis.register_script(_SAVE)
        self._delete = self._redis.register_script(_DELETE)

    def save(self, record: SessionRecord, lease_value: str, summary: dict[str, Any]) -> None:
        """Write `record` if `lease_value` is still the key's lease; raises FencedOut if not,
        StoreUnreachable if Redis cannot be reached, CheckpointError if the record holds NaN or infinity."""
        check_writable(record)
        buffer = io.BytesIO()
        write_record(buffer, record)
        keys = [redis_key(record.key, "lease"), redis_key(record.key, "session"), SUMMARIES]
        written = self._call(self._save, keys, [lease_value, buffer.getbuffer(), record.key, json.dumps(summary)])
        if not written:
            raise FencedOut(f"not written: this worker no longer owns stream key {record.key!r}")

    def load(self, key: str) -> SessionRecord | None:
        """The stored session of `key`, or None if the store has none; raises CheckpointError if it is
        unreadable (or larger than any session within the server's limits), StoreUnreachable."""
        try:
            size = self._redis.strlen(redis_key(key, "session"))
            if not size:
                return None
            if self.max_record_bytes is not None and size > self.max_record_bytes:
                raise CheckpointError(f"stored session of {key!r} is {size} bytes, more than any session can need")
            data = self._redis.get(redis_key(key, "session"))
        except redis.RedisError as exc:
            raise StoreUnreachable(f"the session store at {self.url} cannot be reached ({exc})") from exc
        if not isinstance(data, bytes):  # gone since STRLEN
            return None
        record = read_record(io.BytesIO(data))
        if record.key != key:
            raise CheckpointError(f"the stored session of {key!r} holds the key {record.key!r}")
        return record

    def set_aside(self, key: str) -> str | None:
        """Rename the stored session of `key` to `lrr:{key}:corrupt` (kept for inspection); returns the new
        name, or None if Redis could not do it."""
        target = redis_key(key, "corrupt")
        try:
            self._redis.rename(redis_key(key, "session"), target)
        except redis.RedisError:
            return None
        return target

    def delete(self, key: str, lease_value: str) -> None:
        """Delete the stored session of `key` if `lease_value` is still its lease (FencedOut if not)."""
        keys = [redis_key(key, "lease"), redis_key(key, "session"), SUMMARIES]
        if not self._call(self._delete, keys, [lease_value, key]):
            raise FencedOut(f"not deleted: this worker no longer owns stream key {key!r}")

    def summaries(self) -> dict[str, dict[str, Any]]:
        """Every stored session's summary as of its last checkpoint, by key."""
        try:
            raw = self._redis.hgetall(SUMMARIES)
        except redis.RedisError as exc:
            raise StoreUnreachable(f"the session store at {self.url} cannot be reached ({exc})") from exc
        return {_text(k): json.loads(v) for k, v in raw.items()}

    def close(self) -> None:
        """Close the connections."""
        self._redis.close()

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> int:
        try:
            return int(script(keys=keys, args=args))
        except redis.RedisError as exc:
            raise StoreUnreachable(f"the session store at {self.url} cannot be reached ({exc})") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
