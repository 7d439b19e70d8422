"""Exceptions raised by the engine. Every one is a ValueError, so callers that
validate input can catch one type; each message says what was wrong and what was expected."""

from __future__ import annotations


class SettingsError(ValueError):
    """Settings that cannot describe a valid LRR model."""


class ShapeError(ValueError):
    """An array whose shape or dtype the engine cannot take."""


class ChannelCountError(ShapeError):
    """A chunk or weight matrix whose channel count differs from the one the engine is bound to."""

    def __init__(self, expected: int, got: int, what: str = "chunk") -> None:
        self.expected = expected
        self.got = got
        super().__init__(
            f"{what} has {got} channels but this model is bound to {expected}; "
            f"send {expected}-channel data, or reset() the model to start over with {got}"
        )


class WeightsError(ValueError):
    """A weight matrix that cannot be applied as LRR weights."""


class SnapshotError(ValueError):
    """A snapshot that does not describe a consistent engine state."""


class StatisticsError(ValueError):
    """Statistics holding NaN or infinity: no weights can be solved from them and they are not restored."""


class ChannelsMismatchError(ShapeError):
    """A channel description whose channel count differs from the data's or the engine's."""

    def __init__(self, described: int, got: int, what: str = "the data") -> None:
        self.described = described
        self.got = got
        super().__init__(
            f"the channel description has {described} channels but {what} has {got}; describe the {got} channels "
            "(or remove the description) before sending them"
        )
