"""LRRSettings: the engine's validated, immutable configuration, and the one declaration of each setting.

Every setting is declared once, here, with its default, its meaning and its bounds (`Spec`, in the
field's metadata). The engine validates against that declaration, and the service derives its
`LRR_` defaults and its REST body from it (service/schemas.py), so the three cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from lrr_service.core.channels import MAX_NAME_CHARS, is_field_name
from lrr_service.core.errors import SettingsError

InitDefault = Literal["identity", "car"]
INIT_DEFAULTS: tuple[InitDefault, ...] = ("identity", "car")


@dataclass(frozen=True)
class Spec:
    """What a setting means and which values it takes: for numbers, whether they are integers and
    their `ge` / `gt` bounds (finite always); whether None (unset) is allowed."""

    doc: str
    integer: bool = False
    ge: float | None = None
    gt: float | None = None
    optional: bool = False


def _setting(default: Any, doc: str, **bounds: Any) -> Any:
    """A dataclass field declaring a setting: its default and its Spec."""
    return field(default=default, metadata={"spec": Spec(doc, optional=default is None, **bounds)})


def setting_spec(name: str) -> Spec:
    """The declaration of the setting `name`."""
    spec: Spec = next(f for f in fields(LRRSettings) if f.name == name).metadata["spec"]
    return spec


@dataclass(frozen=True)
class LRRSettings:
    """How an LRR model groups channels, regularises and forgets.

    Validated on construction, so an instance is always usable; replace it
    (``dataclasses.replace``) rather than mutate it.
    """

    ridge_lambda: float = _setting(0.0, "L2 penalty added to each group's covariance diagonal.", ge=0)
    channel_groups: tuple[tuple[int, ...], ...] | str | tuple[str, ...] | None = _setting(
        None,
        "Explicit disjoint groups of channel indices (any order, non-contiguous allowed), or the name of a "
        "field of the channel description ('bank': regress within each bank), or a list of field names "
        "(grouped by their tuple); null, or a field the description lacks: block_size blocks, else one group.",
    )
    block_size: int | None = _setting(
        None, "Without explicit groups: consecutive blocks of this many channels.", integer=True, ge=1
    )
    incremental: bool = _setting(True, "Accumulate statistics across partial fits; false: each fit replaces them.")
    check_finite: bool = _setting(
        True,
        "Must be true: fit chunks holding NaN, infinity or samples beyond ±1e100 are always refused, since "
        "one would make the statistics, and every solve after it, worthless for good (core/samples.py).",
    )
    min_group_size: int = _setting(
        3, "Groups with fewer (non-flat) channels than this pass through untouched.", integer=True, ge=1
    )
    init_default: InitDefault = _setting(
        "identity", "Before any weights exist: identity passes data through, car is leave-one-out average reference."
    )
    half_life_samples: float | None = _setting(
        None, "Exponential forgetting: a sample's weight in the statistics halves every this many samples.", gt=0
    )

    def __post_init__(self) -> None:
        for name in ("ridge_lambda", "block_size", "min_group_size", "half_life_samples"):
            object.__setattr__(self, name, _checked_number(name, getattr(self, name)))
        if self.channel_groups is not None:
            object.__setattr__(self, "channel_groups", _normalise_groups(self.channel_groups))
        if not isinstance(self.incremental, bool):
            raise SettingsError(f"incremental must be true or false, got {self.incremental!r}")
        if self.check_finite is not True:
            raise SettingsError(
                f"check_finite must be true, got {self.check_finite!r}: a fit chunk holding NaN, infinity or a "
                "sample beyond ±1e100 would make the statistics non-finite for good, so such chunks are always "
                "refused (the check costs a dot product per chunk); leave check_finite out or set it to true"
            )
        if self.init_default not in INIT_DEFAULTS:
            raise SettingsError(f"init_default must be 'identity' or 'car', got {self.init_default!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``from_dict(to_dict())`` gives an equal instance."""
        d = asdict(self)
        if self.channel_groups is not None and not isinstance(self.channel_groups, str):
            d["channel_groups"] = [g if isinstance(g, str) else list(g) for g in self.channel_groups]
        return d

    @property
    def group_fields(self) -> tuple[str, ...] | None:
        """The channel description fields `channel_groups` groups by, or None when it is not field names."""
        groups = self.channel_groups
        if isinstance(groups, str):
            return (groups,)
        if groups and isinstance(groups[0], str):
            return groups
        return None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRRSettings:
        """Build from a mapping, refusing unknown keys so that typos are not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s) {unknown}; expected some of {sorted(known)}")
        return cls(**data)


def _checked_number(name: str, value: Any) -> Any:
    """`value` if it is a number its Spec allows (integer settings stay int, real ones become float)."""
    spec = setting_spec(name)
    if value is None and spec.optional:
        return None
    integer = spec.integer
    kind = "an integer" if integer else "a finite number"
    bound = f" >= {spec.ge:g}" if spec.ge is not None else f" > {spec.gt:g}" if spec.gt is not None else ""
    allowed = isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    if (
        isinstance(value, bool)
        or not allowed
        or (spec.ge is not None and value < spec.ge)
        or (spec.gt is not None and value <= spec.gt)
    ):
        unset = " or None" if spec.optional else ""
        raise SettingsError(f"{name} must be {kind}{bound}{unset}, got {value!r}")
    return value if integer else float(value)


def _normalise_groups(groups: object) -> tuple[tuple[int, ...], ...] | str | tuple[str, ...]:
    """Check what can be checked without a channel count: field names well formed; index groups non-empty,
    integer, disjoint."""
    if isinstance(groups, str) or (isinstance(groups, (list, tuple)) and groups and isinstance(groups[0], str)):
        return _field_names(groups)
    if isinstance(groups, bytes) or not hasattr(groups, "__iter__"):
        raise SettingsError(
            f"channel_groups must be a list of lists of channel indices, a field name or a list of field names, "
            f"got {groups!r}"
        )
    result: list[tuple[int, ...]] = []
    seen: dict[int, int] = {}
    for gi, group in enumerate(groups):
        if isinstance(group, str):
            raise SettingsError(
                f"channel_groups mixes index groups with the field name {group!r}; give either lists of channel "
                "indices or field names"
            )
        if isinstance(group, bytes) or not hasattr(group, "__iter__"):
            raise SettingsError(f"channel_groups[{gi}] must be a list of channel indices, got {group!r}")
        members = tuple(group)
        if not members:
            raise SettingsError(f"channel_groups[{gi}] is empty; every group needs at least one channel index")
        for idx in members:
            if isinstance(idx, bool) or (not isinstance(idx, (int,)) and not hasattr(idx, "__index__")):
                raise SettingsError(f"channel_groups[{gi}] holds {idx!r}; channel indices must be integers")
            i = int(idx)
            if i < 0:
                raise SettingsError(f"channel_groups[{gi}] holds {i}, an out-of-range index; indices must be >= 0")
            if i in seen:
                raise SettingsError(
                    f"channel {i} is in channel_groups[{seen[i]}] and channel_groups[{gi}]; groups must not overlap"
                )
            seen[i] = gi
        result.append(tuple(int(i) for i in members))
    return tuple(result)


def _field_names(groups: str | list[Any] | tuple[Any, ...]) -> str | tuple[str, ...]:
    """A field name, or a non-empty list of distinct ones, each 1-64 characters of [A-Za-z0-9_.-]."""
    names = (groups,) if isinstance(groups, str) else tuple(groups)
    for name in names:
        if not isinstance(name, str):
            raise SettingsError(
                f"channel_groups mixes field names with {name!r}; give either field names or lists of channel indices"
            )
        if not is_field_name(name):
            raise SettingsError(
                f"channel_groups names the field {name!r}; expected field names of 1-{MAX_NAME_CHARS} characters "
                "of [A-Za-z0-9_.-]"
            )
    if len(set(names)) != len(names):
        raise SettingsError(f"channel_groups names a field twice in {list(names)}; name each field once")
    return groups if isinstance(groups, str) else names
