"""Request bodies of the REST API (pydantic, validated with field errors -> 422)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lrr_service.core.groups import check_group_limit
from lrr_service.core.errors import SettingsError
from lrr_service.core.settings import LRRSettings
from lrr_service.core.vocabulary import ErrorCode
from lrr_service.service.errors import ServiceError

ChannelIndex = Annotated[int, Field(ge=0)]


class SessionSettingsBody(BaseModel):
    """PUT /streams/{key}: the engine settings; omitted fields take the server's defaults (LRR_*)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ridge_lambda: float | None = Field(None, ge=0, description="Ridge penalty added to each group's covariance.")
    channel_groups: list[Annotated[list[ChannelIndex], Field(min_length=1)]] | None = Field(
        None, description="Explicit disjoint groups of channel indices; null = block_size blocks or one group."
    )
    block_size: int | None = Field(None, ge=1, description="Consecutive blocks of this many channels.")
    incremental: bool | None = Field(None, description="Accumulate statistics across chunks (false: replace).")
    check_finite: bool | None = Field(
        None, description="Must be true (the default): fit chunks holding NaN, infinity or |x| > 1e100 are refused."
    )
    min_group_size: int | None = Field(None, ge=1, description="Smaller groups pass through untouched.")
    init_default: Literal["identity", "car"] | None = Field(None, description="Output before any weights exist.")
    half_life_samples: float | None = Field(None, gt=0, description="Exponential forgetting half-life (samples).")

    @field_validator("ridge_lambda", "half_life_samples")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        """JSON cannot carry NaN/Infinity portably; refuse them explicitly anyway."""
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def to_settings(self, defaults: dict[str, Any], max_channels: int) -> LRRSettings:
        """The engine settings: the given fields over `defaults`; raises InvalidSettingsError if they are
        inconsistent or the groups name more channels, or higher ones, than the server's `max_channels`."""
        settings = {**defaults, **self.model_dump(exclude_unset=True)}
        try:
            check_group_limit(settings["channel_groups"], max_channels)
            return LRRSettings.from_dict(settings)
        except SettingsError as exc:
            raise InvalidSettingsError(str(exc)) from None


class InvalidSettingsError(ServiceError):
    """Settings the engine refuses, answered like a body validation error: FastAPI's list of field
    errors, naming the setting the message is about."""

    code = ErrorCode.BAD_SETTINGS

    def body(self) -> dict[str, Any]:
        fields = SessionSettingsBody.model_fields
        named = [name for name in fields if name in self.message]
        field = min(named, key=self.message.index) if named else "body"
        return {"detail": [{"loc": ["body", field], "msg": self.message, "type": "value_error"}]}
