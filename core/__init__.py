"""The pure core of lrr-service: the LRR engine and the codecs. No I/O, no asyncio."""

from .engine import LRR, Solution, validate_weights
from .errors import ChannelCountError, SettingsError, ShapeError, SnapshotError, StatisticsError, WeightsError
from .samples import MAX_FIT_MAGNITUDE, BadSample, first_bad_sample
from .settings import LRRSettings
from .statistics import Statistics

__all__ = [
    "LRR",
    "LRRSettings",
    "Solution",
    "Statistics",
    "ChannelCountError",
    "SettingsError",
    "ShapeError",
    "SnapshotError",
    "StatisticsError",
    "WeightsError",
    "MAX_FIT_MAGNITUDE",
    "BadSample",
    "first_bad_sample",
    "validate_weights",
]
