"""LRRSettings: the engine's validated, immutable configuration."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from .errors import SettingsError

InitDefault = Literal["identity", "car"]


@dataclass(frozen=True)
class LRRSettings:
    """How an LRR model groups channels, regularises and forgets.

    Validated on construction, so an instance is always usable; replace it
    (``dataclasses.replace``) rather than mutate it.
    """

    ridge_lambda: float = 0.0
    """L2 penalty added to each group's covariance diagonal (>= 0)."""
    channel_groups: tuple[tuple[int, ...], ...] | None = None
    """Explicit groups of channel indices (any order, non-contiguous allowed, disjoint)."""
    block_size: int | None = None
    """Without explicit groups: consecutive blocks of this many channels; else one group."""
    incremental: bool = True
    """Accumulate statistics across partial fits; False replaces them at each fit."""
    check_finite: bool = True
    """Refuse fit chunks holding NaN, infinity or samples beyond ±1e100 (core.samples). Always true:
    a single such chunk would make the statistics, and every solve after it, worthless for good."""
    min_group_size: int = 3
    """Groups with fewer (non-flat) channels than this pass through untouched."""
    init_default: InitDefault = "identity"
    """Before any weights exist: pass data through, or leave-one-out average reference per group."""
    half_life_samples: float | None = None
    """Exponential forgetting: a sample's weight in the statistics halves every this many samples."""

    def __post_init__(self) -> None:
        _check_ridge(self.ridge_lambda)
        object.__setattr__(self, "ridge_lambda", float(self.ridge_lambda))
        if self.channel_groups is not None:
            object.__setattr__(self, "channel_groups", _normalise_groups(self.channel_groups))
        if self.block_size is not None:
            _check_int("block_size", self.block_size, minimum=1)
        _check_int("min_group_size", self.min_group_size, minimum=1)
        if not isinstance(self.incremental, bool):
            raise SettingsError(f"incremental must be true or false, got {self.incremental!r}")
        if self.check_finite is not True:
            raise SettingsError(
                f"check_finite must be true, got {self.check_finite!r}: a fit chunk holding NaN, infinity or a "
                "sample beyond ±1e100 would make the statistics non-finite for good, so such chunks are always "
                "refused (the check costs a dot product per chunk); leave check_finite out or set it to true"
            )
        if self.init_default not in ("identity", "car"):
            raise SettingsError(f"init_default must be 'identity' or 'car', got {self.init_default!r}")
        if self.half_life_samples is not None:
            h = self.half_life_samples
            if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h) or h <= 0:
                raise SettingsError(f"half_life_samples must be a positive number of samples or None, got {h!r}")
            object.__setattr__(self, "half_life_samples", float(h))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``from_dict(to_dict())`` gives an equal instance."""
        d = asdict(self)
        if self.channel_groups is not None:
            d["channel_groups"] = [list(g) for g in self.channel_groups]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LRRSettings":
        """Build from a mapping, refusing unknown keys so that typos are not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s) {unknown}; expected some of {sorted(known)}")
        return cls(**data)


def _check_ridge(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise SettingsError(f"ridge_lambda must be a finite number >= 0, got {value!r}")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingsError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _normalise_groups(groups: object) -> tuple[tuple[int, ...], ...]:
    """Check what can be checked without a channel count: non-empty, integer, disjoint."""
    if isinstance(groups, (str, bytes)) or not hasattr(groups, "__iter__"):
        raise SettingsError(f"channel_groups must be a list of lists of channel indices, got {groups!r}")
    result: list[tuple[int, ...]] = []
    seen: dict[int, int] = {}
    for gi, group in enumerate(groups):  # type: ignore[union-attr]
        if isinstance(group, (str, bytes)) or not hasattr(group, "__iter__"):
            raise SettingsError(f"channel_groups[{gi}] must be a list of channel indices, got {group!r}")
        members = tuple(group)
        if not members:
            raise SettingsError(f"channel_groups[{gi}] is empty; every group needs at least one channel index")
        for idx in members:
            if isinstance(idx, bool) or not isinstance(idx, (int,)) and not hasattr(idx, "__index__"):
                raise SettingsError(f"channel_groups[{gi}] holds {idx!r}; channel indices must be integers")
            i = int(idx)
            if i < 0:
                raise SettingsError(
                    f"channel_groups[{gi}] holds {i}, an out-of-range index; indices must be >= 0"
                )
            if i in seen:
                raise SettingsError(
                    f"channel {i} is in channel_groups[{seen[i]}] and channel_groups[{gi}]; "
                    "groups must not overlap"
                )
            seen[i] = gi
        result.append(tuple(int(i) for i in members))
    return tuple(result)
