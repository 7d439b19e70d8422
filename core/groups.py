"""Resolving the grouping settings into channel index arrays for a given channel count."""

from __future__ import annotations

import numpy as np

from lrr_service.core.errors import SettingsError
from lrr_service.core.settings import LRRSettings


def resolve_groups(settings: LRRSettings, n_channels: int) -> list[np.ndarray]:
    """The groups as sorted int64 index arrays, validated against ``n_channels``.

    Explicit ``channel_groups`` win, then consecutive ``block_size`` blocks, then one
    group of every channel. Channels named by no explicit group are left untouched.
    """
    if settings.channel_groups is not None:
        if n_channels > 0 and not settings.channel_groups:
            raise SettingsError(
                f"channel_groups is an empty list but the data has {n_channels} channels; "
                "give at least one group, or null for one group of all channels"
            )
        groups = []
        for gi, group in enumerate(settings.channel_groups):
            bad = [i for i in group if i >= n_channels]
            if bad:
                raise SettingsError(
                    f"channel_groups[{gi}] holds out-of-range index {bad[0]}; "
                    f"with {n_channels} channels the valid range is 0..{n_channels - 1}"
                )
            groups.append(np.array(sorted(group), dtype=np.int64))
        return groups
    if n_channels == 0:
        return []
    size = settings.block_size or n_channels
    return [np.arange(start, min(start + size, n_channels), dtype=np.int64) for start in range(0, n_channels, size)]


def check_group_limit(channel_groups: object, max_channels: int) -> None:
    """Raise SettingsError unless `channel_groups` (raw, before LRRSettings) fits a `max_channels` limit.

    A limit on channels bounds the groups too: at most `max_channels` indices in all, each below it.
    Checked before the groups are normalised, so an oversized list costs O(number of groups) to refuse.
    """
    if not isinstance(channel_groups, (list, tuple)):
        return  # None, or a shape LRRSettings refuses with its own message
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
