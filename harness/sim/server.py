"""The core's connect-rate limit: a token bucket both engines share, so they limit in exactly the same way.

Time is passed in rather than read from a clock, which is what lets the cohort engine evaluate it ahead of a
simpy clock and the reference model evaluate it inside one.
"""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; a handshake needs one token to start.

    Reservations are FIFO: ``start_time`` never returns a time before the last reservation, so a later
    arrival cannot overtake an earlier one that is still waiting for its token.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self.stamp = 0.0

    def _level_at(self, t: float) -> float:
        return min(self.burst, self.level + (t - self.stamp) * self.rate)

    def ready(self) -> float:
        """When the next token is free (never before the last reservation)."""
        return self.stamp + (1.0 - self.level) / self.rate if self.level < 1.0 else self.stamp

    def start_time(self, t: float) -> float:
        """The earliest time at or after ``t`` when a token is free for this reservation."""
        return max(t, self.ready())

    def take(self, start: float) -> None:
        """Spend one token at ``start`` (a value ``start_time`` returned)."""
        self.level = self._level_at(start) - 1.0
        self.stamp = start
