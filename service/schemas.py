"""Request bodies of the REST API (pydantic, validated with field errors -> 422), and the pydantic
form of the engine's settings, derived from their one declaration in core/settings.py.

`setting_fields` turns each LRRSettings field (type, default, meaning, bounds) into a pydantic
field, for the REST body here and for the `LRR_` defaults of service/config.py.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from lrr_service.core.channels import MAX_NAME_CHARS, ChannelDescription, ChannelDescriptionError
from lrr_service.core.errors import SettingsError
from lrr_service.core.groups import check_group_limit
from lrr_service.core.settings import LRRSettings, Spec
from lrr_service.core.vocabulary import ErrorCode
from lrr_service.service.errors import ServiceError

_FIELD_NAME = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"^[A-Za-z0-9_.-]+$")]
JSON_TYPES: dict[str, Any] = {
    "channel_groups": list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]]
    | _FIELD_NAME
    | Annotated[list[_FIELD_NAME], Field(min_length=1)],
}
"""Settings whose JSON form differs from the engine's type (index groups and field name lists are lists)."""


def setting_fields(*, all_optional: bool) -> dict[str, Any]:
    """One pydantic field per engine setting: its type, its default (None for all when `all_optional`: a
    REST body's omitted fields take the server's defaults), its description and its bounds."""
    hints = typing.get_type_hints(LRRSettings)
    result: dict[str, Any] = {}
    for setting in dataclasses.fields(LRRSettings):
        spec: Spec = setting.metadata["spec"]
        value_type = JSON_TYPES[setting.name] if setting.name in JSON_TYPES else _without_none(hints[setting.name])
        bounds: dict[str, Any] = {
            name: bound for name, bound in (("ge", spec.ge), ("gt", spec.gt)) if bound is not None
        }
        default: Any = None if all_optional else setting.default
        optional = all_optional or spec.optional
        result[setting.name] = (
            Optional[value_type] if optional else value_type,  # noqa: UP045 (a runtime type)
            Field(default, description=spec.doc, **bounds),
        )
    return result


def _without_none(hint: Any) -> Any:
    """`T` of `T | None`; any other hint unchanged."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (kept,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return kept
    return hint


class _SettingsBodyBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    def to_settings(self, defaults: dict[str, Any], max_channels: int) -> LRRSettings:
        """The engine settings: the given fields over `defaults`; raises InvalidSettingsError if they are
        inconsistent or the groups name more channels, or higher ones, than the server's `max_channels`."""
        settings = {**defaults, **self.model_dump(exclude_unset=True)}
        try:
            check_group_limit(settings["channel_groups"], max_channels)
            return LRRSettings.from_dict(settings)
        except SettingsError as exc:
            raise InvalidSettingsError(str(exc)) from None


SessionSettingsBody = create_model(
    "SessionSettingsBody",
    __base__=_SettingsBodyBase,
    __doc__="PUT /streams/{key}: the engine settings; omitted fields take the server's defaults (LRR_*).",
    **setting_fields(all_optional=True),
)


class InvalidSettingsError(ServiceError):
    """Settings the engine refuses, answered like a body validation error: FastAPI's list of field
    errors, naming the setting the message is about."""

    code = ErrorCode.BAD_SETTINGS

    def body(self) -> dict[str, Any]:
        fields = SessionSettingsBody.model_fields
        named = [name for name in fields if name in self.message]
        field = min(named, key=self.message.index) if named else "body"
        return {"detail": [{"loc": ["body", field], "msg": self.message, "type": "value_error"}]}


ChannelValue = str | int | float | bool | None


class ChannelsBody(BaseModel):
    """PUT /streams/{key}/channels: labels and named per-channel fields, one entry per channel (docs/service.md)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    labels: list[str] | None = Field(None, description="One label per channel.")
    fields: dict[str, list[ChannelValue]] | None = Field(
        None,
        description="Per-channel values by field name (e.g. bank, array, x, y); channel_groups may name a field.",
    )

    def to_description(self, max_channels: int) -> ChannelDescription:
        """The description; raises ServiceError bad_channels (422) if it breaks its contract."""
        try:
            return ChannelDescription.from_dict(self.model_dump(exclude_unset=True), max_channels=max_channels)
        except ChannelDescriptionError as exc:
            raise ServiceError(str(exc), code=ErrorCode.BAD_CHANNELS) from None
