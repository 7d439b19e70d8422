"""Session checkpoints: one `<key>.lrr.npz` file per session under the state dir, written atomically.

A file is an uncompressed `.npz` (zip of `.npy`) holding the engine's float64 arrays as
`engine__<name>` and a JSON document as the 0-d unicode array `__meta__`. It is read with
`np.load(allow_pickle=False)`: nothing is unpickled. Writes go to a temporary file in the
same directory, are fsynced, renamed over the old file, and the directory is fsynced.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lrr_service.service.keys import validate_key
from lrr_service.service.logs import log_event

FILE_FORMAT = "lrr-service-session/1"
SUFFIX = ".lrr.npz"
TEMP_SUFFIX = ".tmp"
CORRUPT_SUFFIX = ".corrupt"
META_ENTRY = "__meta__"
ARRAY_PREFIX = "engine__"
MAX_COUNTER = 2**62
"""Counters beyond this cannot come from real traffic."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back as a session."""


class FencedOut(CheckpointError):
    """A write to the shared store refused: the writer no longer holds the key's lease (service/store.py)."""


class StoreUnreachable(CheckpointError):
    """The shared store (Redis) could not be reached, or answered an error."""


@dataclass(frozen=True)
class SessionRecord:
    """Everything persisted about one session: the engine snapshot plus service-side facts."""

    key: str
    engine_meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    service_meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SetAside:
    """A checkpoint that could not be restored: where it was, where it went (None: it could not be
    moved, e.g. in a read-only state dir) and why."""

    path: Path
    moved_to: Path | None
    reason: str


@dataclass(frozen=True)
class LoadReport:
    """What `CheckpointStore.load_all` found: readable records, and files set aside with reasons."""

    records: list[SessionRecord]
    set_aside: list[SetAside]


class CheckpointStore:
    """Reads and writes session checkpoint files in one directory. Blocking: call from a worker thread."""

    def __init__(self, state_dir: Path, max_file_bytes: int | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.max_file_bytes = max_file_bytes
        """Larger files are not read (a session within the server's limits cannot need them); None: no limit."""

    def ensure_dir(self) -> list[tuple[Path, str]]:
        """Create the state dir and remove temporary files a crash may have left behind.

        Returns the temporary files that could not be removed (a read-only dir), with the error:
        they are never read, so they cost disk space only. Raises OSError if the dir cannot be made.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        kept = []
        for stale in self.state_dir.glob(f"*{SUFFIX}.*{TEMP_SUFFIX}"):
            try:
                stale.unlink(missing_ok=True)
            except OSError as exc:
                kept.append((stale, str(exc)))
        return kept

    def path_for(self, key: str) -> Path:
        """The checkpoint path of `key` (keys are validated, so they are safe file names)."""
        return self.state_dir / f"{validate_key(key)}{SUFFIX}"

    def save(self, record: SessionRecord) -> Path:
        """Atomically replace the checkpoint of `record.key`; the old file stays intact on failure.

        Refuses (CheckpointError) arrays holding NaN or infinity: such a file could not be restored.
        A state dir removed while the server runs is created again.
        """
        check_writable(record)
        if not self.state_dir.is_dir():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            log_event("state_dir_recreated", logging.WARNING, state_dir=str(self.state_dir))
        final = self.path_for(record.key)
        temp = final.with_name(f"{final.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
        try:
            with open(temp, "wb") as handle:
                write_record(handle, record)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._fsync_dir()
        return final

    def delete(self, key: str) -> None:
        """Remove the checkpoint of `key` if there is one (durably)."""
        path = self.path_for(key)
        if path.exists():
            path.unlink()
            self._fsync_dir()

    def load(self, path: Path) -> SessionRecord:
        """Read one checkpoint file; raises CheckpointError saying what is wrong with it.

        Only a regular file within `max_file_bytes` is opened: a FIFO would block the read for ever.
        """
        try:
            info = path.lstat()
        except OSError as exc:
            raise CheckpointError(f"unreadable checkpoint: {exc}") from exc
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError("not a regular file (a directory, link, FIFO or device); it was not opened")
        if self.max_file_bytes is not None and info.st_size > self.max_file_bytes:
            raise CheckpointError(
                f"{info.st_size} bytes, more than a session within the server's channel limit "
                f"can need ({self.max_file_bytes}); it was not read"
            )
        record = read_record(path)
        if path.name != f"{record.key}{SUFFIX}":
            raise CheckpointError(f"file name does not match the key {record.key!r} it holds")
        return record

    def load_all(self) -> LoadReport:
        """Read every checkpoint; a file that cannot be read is set aside (`set_aside`)."""
        records: list[SessionRecord] = []
        set_aside: list[SetAside] = []
        for path in sorted(self.state_dir.glob(f"*{SUFFIX}")):
            try:
                records.append(self.load(path))
            except CheckpointError as exc:
                set_aside.append(self.set_aside(path, str(exc)))
        return LoadReport(records, set_aside)

    def set_aside(self, path: Path, reason: str) -> SetAside:
        """Move a file that cannot be restored to `*.corrupt`; if even that fails, leave it and say why."""
        try:
            return SetAside(path, self.move_aside(path), reason)
        except OSError as exc:
            return SetAside(path, None, f"{reason}; it could not be moved aside either ({exc})")

    def move_aside(self, path: Path) -> Path:
        """Rename a bad checkpoint to `<name>.corrupt` (numbered if taken) so start-up can go on."""
        target = path.with_name(path.name + CORRUPT_SUFFIX)
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}.{n}")
            n += 1
        os.replace(path, target)
        self._fsync_dir()
        return target

    def _fsync_dir(self) -> None:
        """Make renames and unlinks in the state dir durable."""
        fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable(record: SessionRecord) -> None:
    """Raise CheckpointError if `record` holds NaN or infinity: such a checkpoint could not be restored."""
    bad = sorted(name for name, arr in record.arrays.items() if not np.isfinite(arr).all())
    if bad:
        raise CheckpointError(f"not written: the session's {', '.join(bad)} hold NaN or infinity")


def write_record(handle: BinaryIO, record: SessionRecord) -> None:
    """Write `record` in the checkpoint format (a file here, a Redis value in service/store.py)."""
    meta = {
        "format": FILE_FORMAT,
        "key": record.key,
        "engine": record.engine_meta,
        "service": record.service_meta,
        "arrays": sorted(record.arrays),
    }
    entries = {ARRAY_PREFIX + name: np.ascontiguousarray(arr) for name, arr in record.arrays.items()}
    entries[META_ENTRY] = np.array(json.dumps(meta))
    _write_npz(handle, entries)


def read_record(source: Path | BinaryIO) -> SessionRecord:
    """Read a checkpoint written by `write_record`; raises CheckpointError saying what is wrong with it."""
    try:
        with np.load(source, allow_pickle=False) as archive:
            meta = json.loads(str(archive[META_ENTRY][()]))
            if not isinstance(meta, dict) or meta.get("format") != FILE_FORMAT:
                raise CheckpointError(f"format is not {FILE_FORMAT!r}")
            key = validate_key(str(meta["key"]))
            engine_meta, service_meta, names = _checked_parts(meta)
            arrays = {name: np.array(archive[ARRAY_PREFIX + name]) for name in names}
    except CheckpointError:
        raise
    except Exception as exc:  # OSError, BadZipFile, JSON, KeyError...: any failure means unreadable
        raise CheckpointError(f"unreadable checkpoint: {type(exc).__name__}: {exc}") from exc
    return SessionRecord(key, engine_meta, arrays, service_meta)


def _write_npz(handle: BinaryIO, entries: dict[str, np.ndarray]) -> None:
    """What np.savez writes (an uncompressed zip of .npy members), without first copying each float
    array into one bytes object as it does: that copy holds the GIL (about 3 ms for 8 MB), so every
    session's transforms would stall at each checkpoint of a large session."""
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in entries.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                if array.dtype.kind != "f":
                    np.lib.format.write_array(member, array, allow_pickle=False)
                    continue
                np.lib.format.write_array_header_1_0(member, np.lib.format.header_data_from_array_1_0(array))
                member.write(array.data.cast("B"))  # C-contiguous: written as it is, CRC without the GIL


def _checked_parts(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(engine meta, service meta, array names) after checking their types, so a restore can trust them.

    Raises CheckpointError naming the first field that has the wrong type.
    """
    engine_meta = meta.get("engine")
    if not isinstance(engine_meta, dict):
        raise CheckpointError(f"'engine' is {_kind(engine_meta)}; expected an object (the engine snapshot)")
    service_meta = meta.get("service")
    if service_meta is None:
        service_meta = {}
    if not isinstance(service_meta, dict):
        raise CheckpointError(f"'service' is {_kind(service_meta)}; expected an object")
    created_at = service_meta.get("created_at")
    if created_at is not None and (
        isinstance(created_at, bool) or not isinstance(created_at, (int, float)) or not math.isfinite(created_at)
    ):
        raise CheckpointError(f"'service.created_at' is {_kind(created_at)}; expected a finite number (Unix seconds)")
    counters = service_meta.get("counters")
    if counters is not None:
        if not isinstance(counters, dict):
            raise CheckpointError(f"'service.counters' is {_kind(counters)}; expected an object of integers")
        for name, value in counters.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNTER:
                raise CheckpointError(
                    f"'service.counters.{name}' is {_kind(value)}; expected an integer from 0 to {MAX_COUNTER}"
                )
    names = meta.get("arrays")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise CheckpointError(f"'arrays' is {_kind(names)}; expected a list of array names")
    return engine_meta, service_meta, names


def _kind(value: object) -> str:
    """A short description of a JSON value for error messages (type and a bounded repr)."""
    if value is None:
        return "missing or null"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
