"""The pure core of lrr-service: the LRR engine and the codecs. No I/O, no asyncio."""

from lrr_service.core.engine import LRR, Solution, validate_weights
from lrr_service.core.errors import (
    ChannelCountError,
    SettingsError,
    ShapeError,
    SnapshotError,
    StatisticsError,
    WeightsError,
)
from lrr_service.core.samples import MAX_FIT_MAGNITUDE, BadSample, first_bad_sample
from lrr_service.core.settings import LRRSettings
from lrr_service.core.statistics import Statistics

__all__ = [
    "LRR",
    "MAX_FIT_MAGNITUDE",
    "BadSample",
    "ChannelCountError",
    "LRRSettings",
    "SettingsError",
    "ShapeError",
    "SnapshotError",
    "Solution",
    "Statistics",
    "StatisticsError",
    "WeightsError",
    "first_bad_sample",
    "validate_weights",
]
