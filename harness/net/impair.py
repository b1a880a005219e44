"""Impairment specs: ``delay=100ms,jitter=10ms,loss=2%,duplicate=1%,reorder=5%,rate=1mbit`` -> ``tc netem``.

One spelling for profiles, scenarios and ``harness load --impair``. Parsing is strict: an unknown field, a
value without its unit or out of range is an :class:`InputError` naming the field and what is allowed, so a
typo never silently runs an unimpaired load. A spec applies to each direction of a link (``delay=100ms``
adds about 200 ms to a round trip).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from harness.errors import InputError

#: field -> (unit kind, what the field does); the order is the order of ``str(spec)``.
FIELDS: dict[str, tuple[str, str]] = {
    "delay": ("time", "added one-way latency"),
    "jitter": ("time", "random variation of the delay (needs delay)"),
    "loss": ("percent", "packets dropped at random"),
    "duplicate": ("percent", "packets sent twice"),
    "reorder": ("percent", "packets sent at once, ahead of delayed ones (needs delay)"),
    "rate": ("rate", "bandwidth limit"),
}
_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_RATE_UNITS = {"kbit": 1, "mbit": 1000, "gbit": 1_000_000}
_NUMBER = r"(\d+(?:\.\d+)?)"
MAX_DELAY_MS = 10_000.0


def _allowed() -> str:
    return ", ".join(f"{k} ({kind})" for k, (kind, _) in FIELDS.items())


def _fail(source: str, field: str, msg: str) -> InputError:
    where = f"{source}: " if source else ""
    return InputError(f"{where}impairment field {field!r}: {msg}")


@dataclass(frozen=True)
class Impairment:
    """What netem does to every packet of one direction of a link. All zero = no impairment."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    duplicate_pct: float = 0.0
    reorder_pct: float = 0.0
    rate_kbit: int = 0

    @classmethod
    def parse(cls, text: str, *, source: str = "--impair") -> Impairment:
        """Parse ``k=v,k=v``; ``none`` or an empty string is no impairment. ``source`` names the origin."""
        text = text.strip()
        if text in ("", "none"):
            return cls()
        values: dict[str, float] = {}
        for part in text.split(","):
            key, sep, raw = part.strip().partition("=")
            key = key.strip().lower()
            if not sep or not key:
                raise _fail(source, part.strip(), f"expected FIELD=VALUE; allowed fields: {_allowed()}")
            if key not in FIELDS:
                raise _fail(source, key, f"unknown; allowed fields: {_allowed()}")
            if key in values:
                raise _fail(source, key, "given twice")
            values[key] = _value(source, key, raw.strip().lower())
        spec = cls(
            delay_ms=values.get("delay", 0.0),
            jitter_ms=values.get("jitter", 0.0),
            loss_pct=values.get("loss", 0.0),
            duplicate_pct=values.get("duplicate", 0.0),
            reorder_pct=values.get("reorder", 0.0),
            rate_kbit=int(values.get("rate", 0)),
        )
        spec.check(source)
        return spec

    def check(self, source: str = "") -> None:
        """Combinations netem cannot do, named like a parse error."""
        if self.jitter_ms and not self.delay_ms:
            raise _fail(source, "jitter", "needs a delay (jitter varies the delay); add delay=...")
        if self.reorder_pct and not self.delay_ms:
            raise _fail(source, "reorder", "needs a delay (reordered packets skip it); add delay=...")
        if self.jitter_ms > self.delay_ms:
            raise _fail(source, "jitter", f"{self.jitter_ms:g}ms exceeds the delay {self.delay_ms:g}ms")

    @property
    def is_none(self) -> bool:
        return self == Impairment()

    def netem_args(self) -> list[str]:
        """The arguments after ``tc qdisc replace dev X root netem`` (``limit`` keeps queues bounded)."""
        args = ["limit", "10000"]
        if self.delay_ms:
            args += ["delay", _ms(self.delay_ms)]
            if self.jitter_ms:
                args += [_ms(self.jitter_ms), "distribution", "normal"]
        if self.loss_pct:
            args += ["loss", f"{self.loss_pct:g}%"]
        if self.duplicate_pct:
            args += ["duplicate", f"{self.duplicate_pct:g}%"]
        if self.reorder_pct:
            args += ["reorder", f"{self.reorder_pct:g}%"]
        if self.rate_kbit:
            args += ["rate", f"{self.rate_kbit}kbit"]
        return args

    def to_json(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __str__(self) -> str:
        if self.is_none:
            return "none"
        parts = []
        for key, value, unit in (
            ("delay", self.delay_ms, "ms"),
            ("jitter", self.jitter_ms, "ms"),
            ("loss", self.loss_pct, "%"),
            ("duplicate", self.duplicate_pct, "%"),
            ("reorder", self.reorder_pct, "%"),
            ("rate", self.rate_kbit, "kbit"),
        ):
            if value:
                parts.append(f"{key}={value:g}{unit}")
        return ",".join(parts)


def _ms(value: float) -> str:
    return f"{value * 1000:g}us" if value < 1 else f"{value:g}ms"


def _value(source: str, key: str, raw: str) -> float:
    kind = FIELDS[key][0]
    if kind == "time":
        m = re.fullmatch(_NUMBER + r"(us|ms|s)", raw)
        if not m:
            raise _fail(source, key, f"{raw!r} is not a time; write e.g. 100ms, 1.5s or 500us")
        ms = float(m.group(1)) * _TIME_UNITS[m.group(2)]
        if ms > MAX_DELAY_MS:
            raise _fail(source, key, f"{raw} is above the allowed {MAX_DELAY_MS / 1000:g}s")
        return ms
    if kind == "percent":
        m = re.fullmatch(_NUMBER + r"%", raw)
        if not m:
            raise _fail(source, key, f"{raw!r} is not a percentage; write e.g. 2% or 0.5%")
        pct = float(m.group(1))
        if pct > 100:
            raise _fail(source, key, f"{raw} is above 100%")
        return pct
    m = re.fullmatch(_NUMBER + r"(kbit|mbit|gbit)", raw)
    if not m:
        raise _fail(source, key, f"{raw!r} is not a rate; write e.g. 512kbit, 1mbit or 1gbit")
    kbit = float(m.group(1)) * _RATE_UNITS[m.group(2)]
    if kbit < 8:
        raise _fail(source, key, f"{raw} is below the allowed 8kbit")
    return float(int(kbit))
