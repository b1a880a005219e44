"""Pass/fail judgements on a load run: explicit thresholds (``harness load --max-loss ...``) and the
expectations the load scenarios hold every core to. Each failure is one sentence that says what broke,
by how much, and which devices were worst, so a report reader does not have to open the CSV first.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from harness.fleet.ledger import DeviceCounts, LedgerSummary


@dataclass(frozen=True)
class CheckOutcome:
    id: str
    ok: bool
    message: str
    requirement: str


@dataclass(frozen=True)
class Thresholds:
    """Limits a run must stay within; None = not checked (the default: a load run only measures)."""

    max_loss_pct: float | None = None
    max_duplicates: int | None = None
    min_connected_pct: float | None = None
    max_latency_p99_ms: float | None = None
    max_connect_p99_ms: float | None = None
    max_reconnect_p99_s: float | None = None

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def evaluate(self, s: LedgerSummary, qos: int) -> list[CheckOutcome]:
        out: list[CheckOutcome] = []
        if self.max_loss_pct is not None:
            msg = loss_problem(s, qos, self.max_loss_pct)
            out.append(
                CheckOutcome(
                    "load.max_loss",
                    msg is None,
                    msg or _loss_text(s),
                    f"at most {self.max_loss_pct:g} % of expected deliveries lost",
                )
            )
        if self.max_duplicates is not None:
            ok = s.duplicates <= self.max_duplicates
            out.append(
                CheckOutcome(
                    "load.max_duplicates",
                    ok,
                    f"{s.duplicates} duplicate deliveries (limit {self.max_duplicates})"
                    + ("" if ok else f"; worst publishers: {_worst(s, 'duplicates')}"),
                    f"at most {self.max_duplicates} duplicate deliveries",
                )
            )
        if self.min_connected_pct is not None:
            pct = 100.0 * s.connected / s.devices if s.devices else 0.0
            ok = pct >= self.min_connected_pct
            never = [_never_why(r) for r in s.rows if not r.connects][:5]
            out.append(
                CheckOutcome(
                    "load.min_connected",
                    ok,
                    f"{s.connected} of {s.devices} devices connected "
                    f"({pct:.1f} %, limit {self.min_connected_pct:g} %)"
                    + ("" if ok else f"; never connected: {', '.join(never)}"),
                    f"at least {self.min_connected_pct:g} % of devices connect",
                )
            )
        for name, value, limit, unit, what in (
            (
                "load.max_latency_p99",
                s.latency_ms.get("p99"),
                self.max_latency_p99_ms,
                "ms",
                "end-to-end latency p99",
            ),
            (
                "load.max_connect_p99",
                s.connect_ms.get("p99"),
                self.max_connect_p99_ms,
                "ms",
                "connect latency p99",
            ),
            (
                "load.max_reconnect_p99",
                s.storm.t99_s if s.storm else None,
                self.max_reconnect_p99_s,
                "s",
                "time until 99 % reconnected",
            ),
        ):
            if limit is None:
                continue
            ok = value is not None and value <= limit
            shown = "no sample" if value is None else f"{value:g} {unit}"
            out.append(
                CheckOutcome(
                    name, ok, f"{what}: {shown} (limit {limit:g} {unit})", f"{what} at most {limit:g} {unit}"
                )
            )
        return out


def loss_problem(s: LedgerSummary, qos: int, max_pct: float = 0.0) -> str | None:
    """Why the run lost too much, or None. Expected deliveries are counted from sequence numbers."""
    if s.expected == 0:
        if s.published and s.subscribers:
            return (
                f"QoS {qos}: {s.published} messages published but no subscriber was subscribed to receive any"
            )
        return None
    pct = 100.0 * s.lost / s.expected
    if s.lost == 0 or pct <= max_pct:
        return None
    text = f"QoS {qos}: {_loss_text(s)} (limit {max_pct:g} %); worst publishers: {_worst(s, 'lost')}"
    if s.subscribe_downgraded:
        text += (
            f"; subscriptions granted below QoS {qos}: {len(s.subscribe_downgraded)} "
            f"({', '.join(s.subscribe_downgraded[:3])})"
        )
    if s.publish_failed:
        text += f"; {s.publish_failed} publishes never acknowledged"
    return text


def _loss_text(s: LedgerSummary) -> str:
    pct = 100.0 * s.lost / s.expected if s.expected else 0.0
    return f"{s.lost} of {s.expected} expected deliveries lost ({pct:.2f} %)"


def _worst(s: LedgerSummary, attr: str, n: int = 3) -> str:
    rows = sorted((r for r in s.rows if getattr(r, attr)), key=lambda r: -int(getattr(r, attr)))[:n]
    return ", ".join(f"{r.device} ({getattr(r, attr)})" for r in rows) or "none"


def _never_why(row: DeviceCounts) -> str:
    """A device that never connected, and what failed: discovery (e.g. a revoked certificate) or connect."""
    if row.discover_failures and not row.connect_failures:
        return f"{row.device} ({row.discover_failures} failed discoveries)"
    if row.connect_failures:
        return f"{row.device} ({row.connect_failures} failed connects)"
    return row.device


def describe(s: LedgerSummary) -> str:
    """A few lines for a report's evidence field."""
    lines = [
        f"devices {s.devices}: connected {s.connected}, never connected {s.failed}, "
        f"failed connect attempts {s.connect_attempts_failed}, disconnects {s.disconnects}",
        f"connect ms p50/p95/p99: {_p(s.connect_ms)}; discover ms: {_p(s.discover_ms)} "
        f"({s.discover_failed} failed)",
        f"published {s.published} ({s.published_msg_s:.1f} msg/s, {s.publish_failed} unacknowledged), "
        f"received {s.received} ({s.throughput_msg_s:.1f} msg/s) by {s.subscribers} subscriber(s)",
        f"expected {s.expected}, lost {s.lost}, duplicates {s.duplicates}; "
        f"latency ms p50/p95/p99: {_p(s.latency_ms)}",
    ]
    if s.storm is not None:
        st = s.storm
        lines.append(
            f"storm {st.kind} (core op {st.op_s:g} s): {st.reconnected} of {st.devices} reconnected; "
            f"t50/t95/t99 {st.t50_s}/{st.t95_s}/{st.t99_s} s; peak {st.peak_connect_rate_s:g} connects/s, "
            f"{st.attempts} attempts (peak {st.peak_attempt_rate_s:g}/s)"
        )
    return "\n".join(lines)


def _p(p: dict[str, float | None]) -> str:
    return "/".join("-" if p.get(k) is None else f"{p[k]:g}" for k in ("p50", "p95", "p99"))
