"""Resolving the grouping settings into channel index arrays for a given channel count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lrr_service.core.channels import ChannelDescription
from lrr_service.core.errors import SettingsError
from lrr_service.core.settings import LRRSettings


@dataclass(frozen=True)
class Grouping:
    """The channel groups of a session and where they came from: `source` is `explicit` (index lists),
    `fields` (equal values of the description's fields), `block_size` or `all` (one group); `fallback`
    says why field grouping was not used, when it was asked for."""

    groups: list[np.ndarray]
    source: Literal["explicit", "fields", "block_size", "all"]
    fallback: str | None = None

    def same_groups(self, other: Grouping) -> bool:
        """Whether both partition the channels alike, whatever the order of groups and members."""
        return _partition(self.groups) == _partition(other.groups)

    def describe(self) -> dict[str, Any]:
        """The JSON view of GET /streams/{key}: source, fallback, group count and sizes."""
        return {
            "source": self.source,
            "fallback": self.fallback,
            "n_groups": len(self.groups),
            "sizes": [int(g.size) for g in self.groups],
        }


def resolve_groups(
    settings: LRRSettings, n_channels: int, channels: ChannelDescription | None = None
) -> list[np.ndarray]:
    """The groups as sorted int64 index arrays, validated against ``n_channels`` (see `resolve_grouping`)."""
    return resolve_grouping(settings, n_channels, channels).groups


def resolve_grouping(settings: LRRSettings, n_channels: int, channels: ChannelDescription | None = None) -> Grouping:
    """The groups for ``n_channels`` channels described by ``channels``, and their source.

    Explicit ``channel_groups`` win; field names group by the description's values (first appearance
    order), or, when the session has no description or it lacks a field, fall back like the reference:
    consecutive ``block_size`` blocks, then one group of every channel. Channels named by no explicit
    group are left untouched. Raises SettingsError if the groups do not fit ``n_channels``.
    """
    fields = settings.group_fields
    fallback = None
    if fields is not None:
        by_fields = channels.groups_by(fields) if channels is not None and len(channels) == n_channels else None
        if by_fields is not None:
            return Grouping(by_fields, "fields")
        fallback = _why_not_fields(fields, channels, n_channels)
    elif settings.channel_groups is not None:
        return Grouping(_explicit(settings.channel_groups, n_channels), "explicit")  # type: ignore[arg-type]
    if n_channels == 0:
        return Grouping([], "all", fallback)
    size = settings.block_size or n_channels
    groups = [np.arange(start, min(start + size, n_channels), dtype=np.int64) for start in range(0, n_channels, size)]
    return Grouping(groups, "block_size" if settings.block_size else "all", fallback)


def _explicit(channel_groups: tuple[tuple[int, ...], ...], n_channels: int) -> list[np.ndarray]:
    if n_channels > 0 and not channel_groups:
        raise SettingsError(
            f"channel_groups is an empty list but the data has {n_channels} channels; "
            "give at least one group, or null for one group of all channels"
        )
    groups = []
    for gi, group in enumerate(channel_groups):
        bad = [i for i in group if i >= n_channels]
        if bad:
            raise SettingsError(
                f"channel_groups[{gi}] holds out-of-range index {bad[0]}; "
                f"with {n_channels} channels the valid range is 0..{n_channels - 1}"
            )
        groups.append(np.array(sorted(group), dtype=np.int64))
    return groups


def _why_not_fields(fields: tuple[str, ...], channels: ChannelDescription | None, n_channels: int) -> str:
    """The fallback note: why grouping by `fields` was not possible."""
    asked = ", ".join(repr(f) for f in fields)
    if channels is None:
        return f"channel_groups names {asked} but the session has no channel description"
    if len(channels) != n_channels:
        return f"the channel description has {len(channels)} channels, the data {n_channels}"
    missing = [f for f in fields if channels.column(f) is None]
    held = sorted(channels.fields) + (["label"] if channels.labels is not None else [])
    return f"the channel description has no field {missing[0]!r} (it has {held})"


def _partition(groups: list[np.ndarray]) -> frozenset[tuple[int, ...]]:
    return frozenset(tuple(sorted(int(i) for i in g)) for g in groups)


def check_group_limit(channel_groups: object, max_channels: int) -> None:
    """Raise SettingsError unless `channel_groups` (raw, before LRRSettings) fits a `max_channels` limit.

    A limit on channels bounds the groups too: at most `max_channels` indices in all, each below it.
    Checked before the groups are normalised, so an oversized list costs O(number of groups) to refuse.
    """
    if not isinstance(channel_groups, (list, tuple)) or (channel_groups and isinstance(channel_groups[0], str)):
        return  # None, field names, or a shape LRRSettings refuses with its own message
    total = sum(len(group) if isinstance(group, (list, tuple)) else 1 for group in channel_groups)
    if total > max_channels:
        raise SettingsError(
            f"channel_groups names {total} channels in {len(channel_groups)} groups; expected at "
            f"most {max_channels} (the server's channel limit), each channel in one group"
        )
    for gi, group in enumerate(channel_groups):
        for index in group if isinstance(group, (list, tuple)) else ():
            if isinstance(index, int) and not isinstance(index, bool) and index >= max_channels:
                raise SettingsError(
                    f"channel_groups[{gi}] holds {index}; expected channel indices below "
                    f"{max_channels} (the server's channel limit)"
                )
