"""The pure core of lrr-service: the LRR engine and the codecs. No I/O, no asyncio."""

from .engine import LRR, Solution, first_non_finite, validate_weights
from .errors import ChannelCountError, SettingsError, ShapeError, SnapshotError, WeightsError
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
    "WeightsError",
    "first_non_finite",
    "validate_weights",
]
