"""ezmsg AxisArray messages as the service's 2-D frames and back, and a channel axis as a channel description.

Pure: numpy only. AxisArray messages and their axes are read by duck typing (`data`, `dims`, `axes`,
`get_axis_idx`, `stream_dim`), so this module imports without ezmsg; `clients/ezmsg_unit.py` builds on it.
The grouping rules mirror ezmsg-sigproc's `ChannelGroupSpec` (explicit index lists, a field name, a tuple
of field names, a callable), as ezmsg-learn's LRRUnit takes them.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from lrr_service.core.channels import LABEL_FIELD, MAX_FIELDS, MAX_TEXT_CHARS, ChannelDescription, is_field_name

MAX_PIECE_BYTES: Final = 4 << 20
"""Samples sent in one frame at most (4 MiB, a quarter of the server's default frame limit)."""

GroupCallable = Callable[[Any, str], "Sequence[Sequence[int]] | None"]


# -- the channel axis ---------------------------------------------------------------------------


def feature_dim(message: Any) -> str:
    """The channel axis when none is configured: the last dimension that is not the message's declared
    stream dimension (`stream_dim`, ezmsg >= 3.10), else the last dimension, as ezmsg-learn's LRRUnit."""
    dims = list(message.dims)
    stream_dim = getattr(message, "stream_dim", None)
    candidates = [dim for dim in dims if dim != stream_dim]
    return str(candidates[-1] if candidates else dims[-1])


def channel_axis(message: Any, axis: str | None) -> tuple[str, int]:
    """The channel axis' name and index in `message.dims` (`axis`, or feature_dim when None); ValueError
    naming the dims when the message has no such dimension."""
    name = axis or feature_dim(message)
    if name not in message.dims:
        raise ValueError(f"the message has no dimension {name!r} (its dims are {list(message.dims)}); set axis")
    return name, list(message.dims).index(name)


@dataclass(frozen=True)
class Samples:
    """A message's data as (samples, channels): every dimension but the channel axis flattened into samples."""

    array: np.ndarray
    """(samples, channels), C order; a view of the message's data when its layout allows, else a copy."""
    axis_index: int
    moved_shape: tuple[int, ...]
    """The data's shape with the channel axis moved last."""

    @property
    def n_channels(self) -> int:
        return self.moved_shape[-1]

    @property
    def empty(self) -> bool:
        """No channel or no sample: nothing to send (the message passes through unchanged)."""
        return 0 in self.moved_shape

    def restore(self, output: np.ndarray) -> np.ndarray:
        """`output` (samples, channels) back in the message's layout: same shape, channel axis where it was."""
        return np.ascontiguousarray(np.moveaxis(output.reshape(self.moved_shape), -1, self.axis_index))


def as_samples(data: np.ndarray, axis_index: int) -> Samples:
    """`data` with its axis `axis_index` moved last and the other axes flattened into rows."""
    array = np.asarray(data)
    moved = np.moveaxis(array, axis_index, -1)
    shape = tuple(int(size) for size in moved.shape)
    if 0 in shape:
        return Samples(np.empty((0, shape[-1]), dtype=array.dtype), axis_index, shape)
    return Samples(np.ascontiguousarray(moved.reshape(-1, shape[-1])), axis_index, shape)


def pieces(samples: np.ndarray, max_bytes: int = MAX_PIECE_BYTES) -> list[np.ndarray]:
    """`samples` split by rows into consecutive pieces of at most `max_bytes` (at least one row each)."""
    row_bytes = max(1, samples.shape[1] * samples.itemsize)
    rows = max(1, max_bytes // row_bytes)
    return [samples[start : start + rows] for start in range(0, samples.shape[0], rows)]


# -- channel_groups ------------------------------------------------------------------------------

GroupKind = Literal["none", "fields", "explicit", "callable"]


@dataclass(frozen=True)
class GroupSpec:
    """LRRUnit's `channel_groups`, classified: what the service is told, and what must be resolved here."""

    kind: GroupKind
    fields: tuple[str, ...] = ()
    explicit: tuple[tuple[int, ...], ...] = ()
    function: GroupCallable | None = None

    @classmethod
    def parse(cls, spec: object) -> GroupSpec:
        """Classify a ChannelGroupSpec (None, "bank", ("array", "bank"), [[0, 1, 2], ...], or a callable
        `fn(message, axis) -> groups | None`); ValueError for anything else, or field names mixed with
        index groups."""
        if spec is None:
            return cls("none")
        if isinstance(spec, str):
            return cls("fields", fields=(spec,))
        if callable(spec):
            return cls("callable", function=spec)
        if isinstance(spec, np.ndarray):
            spec = spec.tolist()
        if not isinstance(spec, Sequence):
            raise ValueError(
                f"channel_groups must be None, a field name, a sequence of field names, a sequence of index "
                f"groups or a callable, got {type(spec).__name__}"
            )
        items = list(spec)
        if items and all(isinstance(item, str) for item in items):
            return cls("fields", fields=tuple(items))
        if any(isinstance(item, str) for item in items):
            raise ValueError(f"channel_groups mixes field names with index groups: {spec!r}")
        return cls("explicit", explicit=tuple(_index_group(item) for item in items))

    def wire(self, resolved: list[list[int]] | None = None) -> str | list[str] | list[list[int]] | None:
        """The `channel_groups` setting sent to the service (`resolved`: a callable's groups, None: none)."""
        if self.kind == "fields":
            return self.fields[0] if len(self.fields) == 1 else list(self.fields)
        if self.kind == "explicit":
            return [list(group) for group in self.explicit]
        if self.kind == "callable":
            return resolved
        return None


def _index_group(item: object) -> tuple[int, ...]:
    """One explicit group as a tuple of ints; ValueError if it is not a sequence of integers."""
    values = np.asarray(item).reshape(-1)
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"channel_groups holds {item!r}; expected sequences of channel indices (integers)")
    return tuple(int(value) for value in values)


def check_groups(groups: Sequence[Sequence[int]], n_channels: int) -> list[list[int]]:
    """`groups` as lists of ints, refused like ezmsg-learn's LRRUnit refuses them: ValueError for an index out
    of range, a channel in two groups, or no group at all while there are channels."""
    checked = [list(_index_group(group)) for group in groups]
    if not checked and n_channels > 0:
        raise ValueError(
            f"channel_groups is empty but the input has {n_channels} channels; pass channel_groups=None for one "
            "group of all channels, or give non-empty index groups"
        )
    seen: set[int] = set()
    for number, group in enumerate(checked):
        bad = [index for index in group if not 0 <= index < n_channels]
        if bad:
            raise ValueError(
                f"channel_groups[{number}] holds out-of-range index {bad[0]} (valid range: 0..{n_channels - 1})"
            )
        twice = sorted(seen.intersection(group)) or sorted(i for i in set(group) if group.count(i) > 1)
        if twice:
            raise ValueError(f"channel groups overlap: channel {twice[0]} is in more than one place")
        seen.update(group)
    return checked


# -- the channel description -----------------------------------------------------------------------


def axis_fingerprint(coordinate_axis: object) -> Hashable | None:
    """A cheap digest of a coordinate axis' values (ezmsg >= 3.10 caches one on the axis; else crc32 of the
    bytes), equal for equal values; None when it cannot be digested (compare the descriptions instead)."""
    cached = getattr(coordinate_axis, "fingerprint", None)
    if cached is not None:
        return ("ezmsg", cached)
    data = getattr(coordinate_axis, "data", None)
    if not isinstance(data, np.ndarray) or data.dtype.hasobject:
        return None
    contiguous = np.ascontiguousarray(data)
    return ("crc32", contiguous.dtype, contiguous.shape, zlib.crc32(contiguous.data))


def describe_axis(
    coordinate_axis: object, n_channels: int, group_fields: Sequence[str] = ()
) -> ChannelDescription | None:
    """The channel description of a channel axis: labels and per-channel fields of a structured
    CoordinateAxis (a plain array of names gives labels only); None when the axis has no per-channel
    values of the data's channel count.

    A field whose values are not JSON scalars (sub-arrays, NaN, bytes that are not UTF-8, over-long text) or
    whose name the service refuses is left out, unless `group_fields` names it: then each channel carries
    the number of its value's class (first appearance order), which groups exactly alike. A string field
    named `label` becomes the labels. At most 32 fields, those in `group_fields` first.
    """
    data = getattr(coordinate_axis, "data", None)
    if not isinstance(data, np.ndarray) or data.ndim != 1 or data.shape[0] != n_channels or n_channels == 0:
        return None
    names = data.dtype.names
    if names is None:
        if LABEL_FIELD in group_fields:
            return None  # the reference finds no field 'label' on an unstructured axis: it falls back
        names_only = _text(data)
        return ChannelDescription.from_dict({"labels": names_only}) if names_only is not None else None
    labels: list[str] | None = None
    fields: dict[str, list[Any]] = {}
    for name in sorted(names, key=lambda field: field not in group_fields):
        column = data[name]
        if name == LABEL_FIELD and labels is None and column.ndim == 1:
            labels = _text(column)
            if labels is not None:
                continue
        values = _scalars(column) if is_field_name(name) else None
        if values is None and name in group_fields:
            values = _classes(column)
        if values is not None and len(fields) < MAX_FIELDS:
            fields[name] = values
    if labels is None and not fields:
        return None
    return ChannelDescription.from_dict({"labels": labels, "fields": fields})


def _text(values: np.ndarray) -> list[str] | None:
    """Per-channel strings (str, or bytes decoded as UTF-8) of at most MAX_TEXT_CHARS each; None otherwise."""
    if values.ndim != 1:
        return None
    out: list[str] = []
    for item in values.tolist():
        try:
            value = item.decode() if isinstance(item, bytes) else item
        except UnicodeDecodeError:
            return None
        if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
            return None
        out.append(value)
    return out


def _scalars(values: np.ndarray) -> list[Any] | None:
    """Per-channel JSON scalars (str, int, finite float, bool, None); None if any value is not one."""
    if values.ndim != 1:
        return None
    if values.dtype.kind in "SU":
        return _text(values)
    if values.dtype.kind not in "biufO":
        return None
    out: list[Any] = []
    for item in values.tolist():
        value = item.item() if isinstance(item, np.generic) else item
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            return None
        if value is not None and not isinstance(value, (str, int, float, bool)):
            return None
        out.append(value)
    return out


def _classes(values: np.ndarray) -> list[int]:
    """For each channel, the number of its value's class in order of first appearance (NaNs are one class)."""
    numbers: dict[Hashable, int] = {}
    return [numbers.setdefault(_key(value), len(numbers)) for value in values.tolist()]


def _key(value: object) -> Hashable:
    """A hashable stand-in for a value: lists become tuples, every NaN the same key."""
    if isinstance(value, list):
        return tuple(_key(item) for item in value)
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return value if isinstance(value, Hashable) else repr(value)
