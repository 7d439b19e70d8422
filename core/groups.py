"""Resolving the grouping settings into channel index arrays for a given channel count."""

from __future__ import annotations

import numpy as np

from .errors import SettingsError
from .settings import LRRSettings


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
