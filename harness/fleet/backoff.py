"""Reconnect backoff policies of client devices, as compared in "Exponential Backoff And Jitter"
(AWS Architecture Blog, 2015): how long a device waits before its next connection attempt.

Each device owns a :class:`Backoff` with its own seeded RNG, so a run is reproducible and two devices never
share a random stream. ``none`` retries at once; the others grow from ``base_s`` and are capped at ``cap_s``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, get_args

from harness.errors import InputError

PolicyName = Literal["none", "fixed", "exponential", "full-jitter", "equal-jitter", "decorrelated-jitter"]
POLICIES: tuple[str, ...] = get_args(PolicyName)
#: Short aliases accepted on the command line.
ALIASES = {
    "full": "full-jitter",
    "equal": "equal-jitter",
    "decorrelated": "decorrelated-jitter",
    "exp": "exponential",
}


@dataclass(frozen=True)
class BackoffPolicy:
    """A policy and its parameters (seconds). ``attempt`` counts failures since the last success, from 0."""

    name: PolicyName = "full-jitter"
    base_s: float = 0.5
    cap_s: float = 30.0

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise InputError(f"backoff policy {self.name!r}: allowed: {', '.join(POLICIES)}")
        if self.base_s < 0 or self.cap_s < 0:
            raise InputError(
                f"backoff {self.name}: base and cap must be >= 0 (got {self.base_s}, {self.cap_s})"
            )
        if self.cap_s < self.base_s:
            raise InputError(f"backoff {self.name}: cap {self.cap_s} s is below base {self.base_s} s")

    @classmethod
    def parse(cls, text: str, *, base_s: float | None = None, cap_s: float | None = None) -> BackoffPolicy:
        """``NAME`` or ``NAME:BASE:CAP`` (seconds), e.g. ``full-jitter:0.5:30``; aliases full/equal/..."""
        parts = text.strip().split(":")
        name = ALIASES.get(parts[0], parts[0])
        if name not in POLICIES or len(parts) not in (1, 3):
            raise InputError(
                f"--backoff {text!r}: expected NAME or NAME:BASE:CAP with NAME one of {', '.join(POLICIES)}"
            )
        base, cap = cls.base_s, cls.cap_s
        if len(parts) == 3:
            try:
                base, cap = float(parts[1]), float(parts[2])
            except ValueError:
                raise InputError(f"--backoff {text!r}: BASE and CAP must be numbers of seconds") from None
        base = base_s if base_s is not None else base
        cap = cap_s if cap_s is not None else cap
        return cls(name, base, max(cap, base))  # type: ignore[arg-type]

    def start(self, seed: int) -> Backoff:
        return Backoff(self, random.Random(seed))

    def __str__(self) -> str:
        return f"{self.name}:{self.base_s:g}:{self.cap_s:g}"


class Backoff:
    """One device's backoff state: ``next_delay()`` after each failure, ``reset()`` after a success."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng
        self.attempt = 0
        self._prev = policy.base_s

    def reset(self) -> None:
        self.attempt = 0
        self._prev = self.policy.base_s

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; advances the attempt counter."""
        p = self.policy
        exp = min(p.cap_s, p.base_s * 2.0 ** min(self.attempt, 62))
        self.attempt += 1
        if p.name == "none":
            return 0.0
        if p.name == "fixed":
            return p.base_s
        if p.name == "exponential":
            return exp
        if p.name == "full-jitter":
            return self.rng.uniform(0.0, exp)
        if p.name == "equal-jitter":
            return exp / 2 + self.rng.uniform(0.0, exp / 2)
        # decorrelated jitter: sleep = min(cap, random_between(base, sleep * 3))
        self._prev = min(p.cap_s, self.rng.uniform(p.base_s, max(p.base_s, self._prev * 3)))
        return self._prev
