"""A session's channel description: labels and named per-channel fields (e.g. `bank`, `array`, `x`).

It is what lets `channel_groups` name a field ("bank": regress within each bank) instead of listing
indices, as ezmsg's structured channel axes do. Pure and immutable; every way in (REST JSON, the
`channels` field of a chunk frame, a checkpoint) goes through `ChannelDescription.from_dict`, whose
limits bound what a peer can make the server hold (docs/protocol.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import numpy as np

Value = str | int | float | bool | None
"""A per-channel value: a JSON scalar (floats finite)."""

LABEL_FIELD: Final = "label"
"""The name under which the labels can also be grouped by."""
MAX_FIELDS: Final = 32
MAX_NAME_CHARS: Final = 64
MAX_TEXT_CHARS: Final = 256
FIELD_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def is_field_name(name: object) -> bool:
    """Whether `name` may name a per-channel field: 1-MAX_NAME_CHARS characters of [A-Za-z0-9_.-]."""
    return isinstance(name, str) and 1 <= len(name) <= MAX_NAME_CHARS and set(name) <= FIELD_NAME_CHARS


class ChannelDescriptionError(ValueError):
    """A channel description breaks its contract; the message says what was wrong and what is expected."""


@dataclass(frozen=True)
class ChannelDescription:
    """Labels and named per-channel fields of `n_channels` channels, each field one value per channel."""

    n_channels: int
    labels: tuple[str, ...] | None = None
    fields: Mapping[str, tuple[Value, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def __len__(self) -> int:
        return self.n_channels

    @classmethod
    def from_dict(cls, data: object, *, max_channels: int | None = None) -> ChannelDescription:
        """Validate `{"labels": [...] | null, "fields": {name: [value per channel]}}` (both optional, at least one
        present); raises ChannelDescriptionError saying what is wrong."""
        if not isinstance(data, Mapping):
            raise ChannelDescriptionError(f"a channel description must be a map, got {_kind(data)}")
        unknown = sorted(str(key) for key in data if key not in ("labels", "fields"))
        if unknown:
            raise ChannelDescriptionError(
                f"unknown key(s) {unknown} in the channel description; expected labels, fields"
            )
        labels = _labels(data.get("labels"))
        fields = _fields(data.get("fields"))
        lengths = ({"labels": len(labels)} if labels is not None else {}) | {
            f"fields.{k}": len(v) for k, v in fields.items()
        }
        if not lengths:
            raise ChannelDescriptionError("the channel description holds neither labels nor fields; give at least one")
        counts = set(lengths.values())
        if len(counts) > 1:
            shown = ", ".join(f"{name} has {count}" for name, count in lengths.items())
            raise ChannelDescriptionError(f"every list must have one entry per channel, but {shown}")
        (n_channels,) = counts
        if n_channels == 0:
            raise ChannelDescriptionError("the channel description has no channels; expected one entry per channel")
        if max_channels is not None and n_channels > max_channels:
            raise ChannelDescriptionError(
                f"the channel description has {n_channels} channels; expected at most {max_channels} "
                "(the server's channel limit)"
            )
        return cls(n_channels, labels, MappingProxyType(fields))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; `from_dict(to_dict())` gives an equal description."""
        return {
            "labels": list(self.labels) if self.labels is not None else None,
            "fields": {name: list(values) for name, values in self.fields.items()},
        }

    def summary(self) -> dict[str, Any]:
        """What GET /streams/{key} shows of it: the count and what it holds, not the values."""
        return {"n_channels": self.n_channels, "labels": self.labels is not None, "fields": sorted(self.fields)}

    def column(self, name: str) -> tuple[Value, ...] | None:
        """The values of field `name` (`label`: the labels, unless a field has that name), None if absent."""
        if name in self.fields:
            return self.fields[name]
        if name == LABEL_FIELD and self.labels is not None:
            return self.labels
        return None

    def groups_by(self, names: Sequence[str]) -> list[np.ndarray] | None:
        """Channels grouped by equal values of the fields `names` (by their tuple for several), in order of
        first appearance; None when any of them is absent. Values of different JSON types never match."""
        columns = [self.column(name) for name in names]
        present = [column for column in columns if column is not None]
        if not names or len(present) != len(columns):
            return None
        members: dict[tuple[Any, ...], list[int]] = {}
        for index, values in enumerate(zip(*present, strict=True)):
            members.setdefault(tuple((type(v).__name__, v) for v in values), []).append(index)
        return [np.array(indices, dtype=np.int64) for indices in members.values()]


def _labels(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = _list(value, "labels")
    for i, label in enumerate(items):
        if not isinstance(label, str) or len(label) > MAX_TEXT_CHARS:
            raise ChannelDescriptionError(
                f"labels[{i}] is {_kind(label)}; expected a string of at most {MAX_TEXT_CHARS} characters"
            )
    return tuple(items)


def _fields(value: object) -> dict[str, tuple[Value, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ChannelDescriptionError(f"fields must be a map of field name to per-channel values, got {_kind(value)}")
    if len(value) > MAX_FIELDS:
        raise ChannelDescriptionError(f"fields has {len(value)} entries; expected at most {MAX_FIELDS}")
    result: dict[str, tuple[Value, ...]] = {}
    for name, values in value.items():
        if not is_field_name(name):
            raise ChannelDescriptionError(
                f"field name {name!r} is not allowed; expected 1-{MAX_NAME_CHARS} characters of [A-Za-z0-9_.-]"
            )
        items = _list(values, f"fields.{name}")
        for i, item in enumerate(items):
            if not _is_value(item):
                raise ChannelDescriptionError(
                    f"fields.{name}[{i}] is {_kind(item)}; expected a string (at most {MAX_TEXT_CHARS} characters), "
                    "a finite number, true, false or null"
                )
        result[name] = tuple(items)
    return result


def _list(value: object, name: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ChannelDescriptionError(f"{name} must be a list with one entry per channel, got {_kind(value)}")
    return list(value)


def _is_value(item: object) -> bool:
    if item is None or isinstance(item, (bool, int)):
        return True
    if isinstance(item, float):
        return math.isfinite(item)
    return isinstance(item, str) and len(item) <= MAX_TEXT_CHARS


def _kind(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
