"""Reconnection policy: how often and how long a client retries a dropped connection."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ReconnectPolicy:
    """Exponential backoff bounded both by attempts and by total waiting time.

    The first retry waits `initial_delay`, each next one `factor` times longer, never more
    than `max_delay`; retrying stops after `max_attempts` tries or `max_elapsed` seconds.
    """

    max_attempts: int = 10
    initial_delay: float = 0.05
    max_delay: float = 2.0
    factor: float = 2.0
    max_elapsed: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0, got {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.max_elapsed < 0:
            raise ValueError("delays must be >= 0 seconds")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")

    def delays(self) -> Iterator[float]:
        """The waits before each retry, in order; stops when either bound would be passed."""
        delay, waited = self.initial_delay, 0.0
        for _ in range(self.max_attempts):
            if waited + delay > self.max_elapsed:
                return
            yield delay
            waited += delay
            delay = min(delay * self.factor, self.max_delay)


class RetryBudget:
    """The reconnect attempts left to one channel (pure logic, no I/O): spent by retries, renewed by progress.

    `renew()` whenever the connection proves useful (a reply arrived) or a new connection supervisor
    starts, so an earlier exhausted budget never leaves a later connection without retries.
    """

    def __init__(self, policy: ReconnectPolicy) -> None:
        self._policy = policy
        self._delays: Iterator[float] | None = None

    def renew(self) -> None:
        """Give back the whole budget of the policy."""
        self._delays = None

    def next_delay(self) -> float | None:
        """How long to wait before the next attempt, or None once the budget is spent."""
        if self._delays is None:
            self._delays = iter(self._policy.delays())
        return next(self._delays, None)


NO_RECONNECT = ReconnectPolicy(max_attempts=0)


def as_policy(reconnect: bool | ReconnectPolicy) -> ReconnectPolicy:
    """Accept True (default policy), False (never retry) or an explicit policy."""
    if isinstance(reconnect, ReconnectPolicy):
        return reconnect
    return ReconnectPolicy() if reconnect else NO_RECONNECT
