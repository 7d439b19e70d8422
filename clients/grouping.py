"""A session's channel groups as a client sees them: resolved from `GET /streams/{key}` with the server's own
rule (core/groups.py), the settings that ask for a grouping, and what the server says when it fell back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lrr_service.core.channels import ChannelDescription
from lrr_service.core.groups import resolve_groups
from lrr_service.core.settings import LRRSettings


def groups_for_settings(
    settings: Mapping[str, Any], n_channels: int, channels: ChannelDescription | None = None
) -> list[list[int]]:
    """The channel groups a session with these settings (``GET /streams/{key}``'s "settings") and this channel
    description forms for `n_channels` channels: its `channel_groups` (indices, or fields of `channels`), else
    `block_size` blocks, else one group of all."""
    engine_settings = LRRSettings(channel_groups=settings.get("channel_groups"), block_size=settings.get("block_size"))
    return [[int(c) for c in group] for group in resolve_groups(engine_settings, n_channels, channels)]


def session_groups(
    session: Mapping[str, Any], n_channels: int | None = None, channels: ChannelDescription | None = None
) -> list[list[int]]:
    """The groups of a session as ``GET /streams/{key}`` describes it (`LRRClient.info()`) with its channel
    description (`LRRClient.get_channels()`), for its "n_channels", or `n_channels` when given (a session not
    yet bound has none); [] when neither is known."""
    count = n_channels if n_channels is not None else session.get("n_channels")
    if not count:
        return []
    return groups_for_settings(session.get("settings") or {}, int(count), channels)


def settings_with_channel_groups(
    session: Mapping[str, Any] | None, channel_groups: str | list[str] | None
) -> dict[str, Any] | None:
    """The settings to PUT so the session (`GET /streams/{key}`, None when there is none) has `channel_groups`,
    its other settings kept; None when nothing needs to change."""
    current = dict(session.get("settings") or {}) if session is not None else {}
    if channel_groups is None or (session is not None and current.get("channel_groups") == channel_groups):
        return None
    return current | {"channel_groups": channel_groups}


def grouping_fallback(session: Mapping[str, Any]) -> str | None:
    """What `GET /streams/{key}` says when the session's channel_groups names fields it cannot resolve (it has no
    channel description, or one without those fields), and what it groups by instead; None when it did not fall
    back."""
    grouping = session.get("grouping")
    if not isinstance(grouping, Mapping) or not grouping.get("fallback"):
        return None
    instead = {"block_size": "in blocks of block_size channels", "all": "as one group of all channels"}
    what = instead.get(str(grouping.get("source")))
    return f"{grouping['fallback']}; it groups the channels {what} instead" if what else str(grouping["fallback"])
