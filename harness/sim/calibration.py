"""Calibration file: what a real run on this machine measured about the core's accept capacity.

``harness load`` (or ``bench/bench_handshakes.py``) writes it; ``harness simulate --calibration FILE`` and
``harness.sim.predict`` read it. The format is defined here, once, as a pydantic model, so the writer and the
reader cannot disagree and a bad file is reported with the file and the field::

    {
      "format": "gg-harness-calibration",
      "version": 1,
      "handshake_ms": {"median": 18.5, "p95": 31.0},      # or "samples": [17.9, 18.2, ...], or both
      "accept_rate_per_s": 410.0,                          # handshakes per second the core sustained
      "concurrency": 8,                                    # optional: handshakes the core ran at once
      "connect_timeout_ms": 5000,                          # optional: the clients' connect timeout
      "backlog": 100,                                      # optional: the core's listen backlog (ss Send-Q)
      "syn_retries": 6,                                    # optional: the clients' tcp_syn_retries
      "accept_interval_ms": 40,                            # optional: an eager core's accept sweeps
      "outage_s": 0.23,                                    # optional: how long the measured restart kept
                                                           #   the core from accepting (stop + start)
      "devices": 2000, "profile": "qemu-aarch64", "source": "harness load run 20261123-...",
      "measured_at": "2026-11-23T04:45:01Z"                # optional, for people
    }

``handshake_ms`` is the *service* time: measure it with few concurrent clients, so that it holds no queueing.
``accept_rate_per_s`` is the throughput at saturation. ``median`` may also be spelled ``p50`` (the key
results.json uses). Unknown top-level keys are kept, so the writer can add context without breaking readers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import InputError
from harness.sim.config import ServiceTime

FORMAT = "gg-harness-calibration"


class HandshakeMs(BaseModel):
    """TLS handshake service time on the core, in milliseconds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    median: float | None = Field(
        default=None, gt=0, validation_alias=AliasChoices("median", "p50"), description="Median, ms"
    )
    p95: float | None = Field(default=None, gt=0, description="95th percentile, ms")
    p99: float | None = Field(default=None, gt=0, description="99th percentile, ms (informative)")
    samples: list[float] | None = Field(default=None, min_length=1, description="Measured handshakes, ms")

    @model_validator(mode="after")
    def _complete(self) -> HandshakeMs:
        if self.samples is not None:
            bad = next((s for s in self.samples if not (math.isfinite(s) and s > 0)), None)
            if bad is not None:
                raise ValueError(f"samples: every sample must be a number > 0 ms, got {bad!r}")
            return self
        if self.median is None or self.p95 is None:
            missing = "median" if self.median is None else "p95"
            raise ValueError(f"needs both median and p95 (or samples); {missing} is missing")
        if self.p95 < self.median:
            raise ValueError(f"p95 ({self.p95:g} ms) is below the median ({self.median:g} ms)")
        return self


class Calibration(BaseModel):
    """A calibration file (see the module docstring for the layout)."""

    model_config = ConfigDict(extra="allow")

    format: Literal["gg-harness-calibration"] = "gg-harness-calibration"
    version: Literal[1] = 1
    handshake_ms: HandshakeMs
    accept_rate_per_s: float = Field(gt=0, description="Handshakes per second the core sustained")
    concurrency: int | None = Field(default=None, ge=1, description="Handshakes in progress at once")
    connect_timeout_ms: float | None = Field(default=None, gt=0)
    backlog: int | None = Field(
        default=None, ge=0, description="The core's effective listen backlog (listen() capped at somaxconn)"
    )
    syn_retries: int | None = Field(
        default=None, ge=0, description="The clients' net.ipv4.tcp_syn_retries (Linux default 6)"
    )
    accept_interval_ms: float | None = Field(
        default=None, gt=0, description="An eager core's time between accept sweeps (fitted to SYN drops)"
    )
    outage_s: float | None = Field(
        default=None, ge=0, description="How long the measured disruption kept the core from accepting, s"
    )
    devices: int | None = Field(default=None, ge=1, description="Fleet size of the measuring run")
    profile: str = ""
    source: str = ""
    measured_at: str = ""

    def service_time(self) -> ServiceTime:
        """The handshake distribution the model draws from (samples when given, else median/p95)."""
        hs = self.handshake_ms
        if hs.samples:
            median = sorted(hs.samples)[len(hs.samples) // 2] / 1000
            return ServiceTime(median_s=median, p95_s=median, samples_s=tuple(s / 1000 for s in hs.samples))
        assert hs.median is not None and hs.p95 is not None  # the validator guarantees it
        return ServiceTime(median_s=hs.median / 1000, p95_s=hs.p95 / 1000)

    def model_concurrency(self) -> int:
        """Handshake slots for the model: the measured concurrency, or the fewest slots that reach the
        measured accept rate at the measured service time (Little's law: slots = rate x mean service)."""
        if self.concurrency is not None:
            return self.concurrency
        return max(1, math.ceil(self.accept_rate_per_s * self.service_time().mean_s - 1e-9))


def parse_calibration(data: Any, source: str) -> Calibration:
    """Validate calibration data; ``InputError`` names ``source`` and the offending field."""
    try:
        return Calibration.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        msg = str(first["msg"]).removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise InputError(f"{source}: {where}: {msg}{more}") from exc


def load_calibration(path: Path) -> Calibration:
    """Read a calibration file; every problem is an ``InputError`` naming the file (and field)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read calibration: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: (top level): expected a JSON object, got {type(data).__name__}")
    return parse_calibration(data, str(path))


def save_calibration(calibration: Calibration, path: Path) -> None:
    """Write ``calibration`` atomically (for ``harness load`` and benches that measure the core)."""
    from harness.report.atomic import write_text_atomic

    text = calibration.model_dump_json(indent=2, exclude_none=True, by_alias=False) + "\n"
    write_text_atomic(path, text)
