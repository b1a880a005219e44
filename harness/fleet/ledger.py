"""Per-device accounting of a load run, computed from the measurement records alone.

Every engine (asyncio, SDK slice, locust workers in other processes) emits the same ``Measurement`` records;
the ledger reads them back, so counts never depend on which engine ran a device or where. Loss and
duplicates come from sequence numbers: a subscriber should get every message a publisher sent on a
matching topic while the subscriber was subscribed (from its SUBACK to its disconnect); what it did not get
is lost, and every extra copy of a sequence number is a duplicate.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.fleet.stats import peak_rate, percentiles
from harness.fleet.topics import topic_matches
from harness.records import Measurement

#: ``request_type`` of fleet-level events (a storm), beside ``MQTT`` and ``HTTPS``.
FLEET = "FLEET"
_INF = 1 << 62
_NS = 1_000_000_000
#: Most points of a time series in the report (a long run gets wider bins).
MAX_POINTS = 600


@dataclass
class DeviceCounts:
    """One row of the per-device CSV. ``lost``/``duplicates`` count this device's messages as a publisher
    (summed over the subscribers that should have got them); ``rx_*`` count it as a subscriber."""

    device: str
    engine: str = ""
    discover_failures: int = 0
    connects: int = 0
    connect_failures: int = 0
    first_connect_ms: float | None = None
    disconnects: int = 0
    subscribed_qos: int | None = None
    published: int = 0
    publish_failed: int = 0
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    rx_expected: int = 0
    rx_lost: int = 0
    rx_duplicates: int = 0

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


CSV_FIELDS = list(DeviceCounts.__dataclass_fields__)


@dataclass
class StormSummary:
    """L3: how a fleet that was connected came back after the core restarted or rotated its certificate."""

    kind: str
    started_ns: int
    op_s: float
    devices: int = 0
    reconnected: int = 0
    t50_s: float | None = None
    t95_s: float | None = None
    t99_s: float | None = None
    peak_connect_rate_s: float = 0.0
    attempts: int = 0
    peak_attempt_rate_s: float = 0.0
    #: Each reconnected device's first reconnect, seconds after the storm began, sorted (not in the JSON:
    #: the fleet model's validation and the report's plots read it).
    reconnect_times_s: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("started_ns")
        data.pop("reconnect_times_s")
        return data

    def saturated_rate(self, fraction: float = 0.95) -> float | None:
        """Reconnects per second from the core's return (the end of its restart) until ``fraction`` of the
        fleet was back: the core's accept rate, when the storm kept it saturated all along.

        Robust to how the core interleaves handshakes: one serving them in turn and one progressing all of
        them at once (every handshake finishing near the end) reach ``fraction`` at the same time.
        """
        n = self.devices
        need = max(1, math.ceil(fraction * n - 1e-9))
        times = self.reconnect_times_s
        if n < 10 or len(times) < need:
            return None
        span = times[need - 1] - self.op_s
        return need / span if span > 0 else None


@dataclass
class LedgerSummary:
    """Fleet totals (the results.json ``load`` block) and the per-device rows behind them."""

    devices: int
    connected: int
    failed: int
    connect_attempts_failed: int
    published: int
    publish_failed: int
    received: int
    expected: int
    lost: int
    duplicates: int
    foreign: int
    throughput_msg_s: float
    published_msg_s: float
    latency_ms: dict[str, float | None]
    connect_ms: dict[str, float | None]
    discover_ms: dict[str, float | None]
    discover_failed: int
    publish_ack_ms: dict[str, float | None]
    subscribers: int
    subscribe_downgraded: list[str]
    disconnects: int
    storm: StormSummary | None
    rows: list[DeviceCounts] = field(default_factory=list)
    #: Per-second time series from the first record: ``t_s``, ``connected``, ``published_msg_s``,
    #: ``received_msg_s`` (the report's plots; at most ``MAX_POINTS`` points, wider bins for long runs).
    series: dict[str, list[float]] = field(default_factory=dict)
    #: Delivery latency histogram: (upper bound in ms, count) over power-of-two bins.
    latency_histogram: list[tuple[float, int]] = field(default_factory=list)

    def load_block(self) -> dict[str, Any]:
        """The results.json ``load`` block fields this ledger knows (``generator`` is added by the runner)."""
        block: dict[str, Any] = {
            "devices": self.devices,
            "connected": self.connected,
            "failed": self.failed,
            "published": self.published,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "throughput_msg_s": round(self.throughput_msg_s, 1),
            "latency_ms": self.latency_ms,
            "connect_ms": self.connect_ms,
            "expected": self.expected,
            "publish_failed": self.publish_failed,
            "published_msg_s": round(self.published_msg_s, 1),
            "connect_attempts_failed": self.connect_attempts_failed,
            "discover_ms": self.discover_ms,
            "discover_failed": self.discover_failed,
            "publish_ack_ms": self.publish_ack_ms,
            "subscribers": self.subscribers,
            "subscribe_downgraded": len(self.subscribe_downgraded),
            "disconnects": self.disconnects,
            "foreign": self.foreign,
        }
        if self.storm is not None:
            block["storm"] = self.storm.to_json()
        if self.series.get("t_s"):
            block["series"] = self.series
        if self.latency_histogram:
            block["latency_histogram"] = [[ub, n] for ub, n in self.latency_histogram]
        return block


class _Publisher:
    __slots__ = ("sent", "seqs", "sorted", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.sent = array("q")
        self.seqs = array("q")
        self.sorted = True


class Ledger:
    """A measurement sink: ``add`` every record (any order across devices), then ``summary()``."""

    def __init__(self, devices: Iterable[str] = ()) -> None:
        self.rows: dict[str, DeviceCounts] = {d: DeviceCounts(d) for d in devices}
        self._pubs: dict[str, _Publisher] = {}
        self._windows: dict[str, list[list[Any]]] = {}  # subscriber -> [[filter, start_ns, end_ns]]
        self._rx: dict[tuple[str, str], bytearray] = {}  # (subscriber, publisher) -> copies per seq
        self._latency = array("d")
        self._connect = array("d")
        self._connect_ns = array("q")  # when each successful connect (in ``_connect``) completed
        self._discover = array("d")
        self._ack = array("d")
        self._connect_ok_ns: dict[str, list[int]] = {}
        self._attempt_ns: list[int] = []
        self._downgraded: list[str] = []
        self._storm: Measurement | None = None
        self.foreign = 0
        self.discover_failed = 0
        self._first_pub = _INF
        self._last_pub = 0
        self._last_rx = 0
        #: Events per whole second of wall time (Unix seconds): connect, disconnect, published, received.
        self._per_s: dict[str, Counter[int]] = {
            k: Counter() for k in ("connect", "disconnect", "published", "received")
        }

    def _row(self, device: str) -> DeviceCounts:
        row = self.rows.get(device)
        if row is None:
            row = self.rows[device] = DeviceCounts(device)
        return row

    def __call__(self, m: Measurement) -> None:
        self.add(m)

    def add(self, m: Measurement) -> None:
        name, ctx = m.name, m.context
        if name == "receive":
            self._receive(m, ctx)
        elif name == "publish":
            self._publish(m, ctx)
        elif name == "connect":
            self._connect_record(m, ctx)
        elif name == "subscribe":
            row = self._row(ctx["device"])
            if m.exception is None:
                granted = int(ctx.get("granted", ctx.get("qos", 0)))
                row.subscribed_qos = granted
                if granted < int(ctx.get("qos", 0)):
                    self._downgraded.append(row.device)
                self._windows.setdefault(row.device, []).append([ctx["filter"], int(ctx["t_ns"]), _INF])
        elif name == "disconnect":
            row = self._row(ctx["device"])
            row.disconnects += 1
            self._per_s["disconnect"][int(ctx["t_ns"]) // _NS] += 1
            for w in self._windows.get(row.device, ()):
                if w[2] == _INF:
                    w[2] = int(ctx["t_ns"])
        elif name == "discover":
            if m.exception is None:
                self._discover.append(m.response_time)
            else:
                self.discover_failed += 1
                if "device" in ctx:
                    self._row(ctx["device"]).discover_failures += 1
        elif m.request_type == FLEET and name.startswith("storm"):
            self._storm = m

    def _receive(self, m: Measurement, ctx: dict[str, Any]) -> None:
        receiver = ctx["device"]
        row = self._row(receiver)
        row.received += 1
        sender = ctx.get("from")
        if m.exception is not None or sender is None:
            self.foreign += 1
            return
        seq = int(ctx["seq"])
        key = (receiver, sender)
        counts = self._rx.get(key)
        if counts is None:
            counts = self._rx[key] = bytearray()
        if seq >= len(counts):
            counts.extend(bytes(seq + 1 - len(counts) + 64))
        if counts[seq] < 255:
            counts[seq] += 1
        self._latency.append(m.response_time)
        t = int(ctx["sent_ns"]) + int(m.response_time * 1e6)
        self._per_s["received"][t // _NS] += 1
        if t > self._last_rx:
            self._last_rx = t

    def _publish(self, m: Measurement, ctx: dict[str, Any]) -> None:
        device = ctx["device"]
        row = self._row(device)
        if ctx.get("sent") is False:  # never left the device (send buffer full): not published, not expected
            row.publish_failed += 1
            return
        row.published += 1
        if m.exception is not None:
            row.publish_failed += 1
        elif int(ctx.get("qos", 0)):
            self._ack.append(m.response_time)
        pub = self._pubs.get(device)
        if pub is None:
            pub = self._pubs[device] = _Publisher(ctx["topic"])
        sent = int(ctx["sent_ns"])
        self._per_s["published"][sent // _NS] += 1
        if pub.sent and sent < pub.sent[-1]:
            pub.sorted = False
        pub.sent.append(sent)
        pub.seqs.append(int(ctx["seq"]))
        self._first_pub = min(self._first_pub, sent)
        self._last_pub = max(self._last_pub, sent)

    def _connect_record(self, m: Measurement, ctx: dict[str, Any]) -> None:
        row = self._row(ctx["device"])
        if ctx.get("engine"):
            row.engine = str(ctx["engine"])
        t = int(ctx["t_ns"])
        self._attempt_ns.append(t)
        if m.exception is not None:
            row.connect_failures += 1
            return
        row.connects += 1
        if row.first_connect_ms is None:
            row.first_connect_ms = round(m.response_time, 2)
        self._connect.append(m.response_time)
        self._connect_ns.append(t)
        self._per_s["connect"][t // _NS] += 1
        self._connect_ok_ns.setdefault(row.device, []).append(t)

    # -- summary ----------------------------------------------------------------------------------

    def summary(self) -> LedgerSummary:
        expected_total = lost_total = dup_total = 0
        for pub in self._pubs.values():
            if not pub.sorted:
                order = sorted(range(len(pub.sent)), key=pub.sent.__getitem__)
                pub.sent = array("q", (pub.sent[i] for i in order))
                pub.seqs = array("q", (pub.seqs[i] for i in order))
                pub.sorted = True
        for (receiver, sender), counts in self._rx.items():
            dups = sum(c - 1 for c in counts if c > 1)
            if dups:
                self._row(receiver).rx_duplicates += dups
                self._row(sender).duplicates += dups
                dup_total += dups
        for receiver, windows in self._windows.items():
            rrow = self._row(receiver)
            for sender, pub in self._pubs.items():
                spans = [(w[1], w[2]) for w in windows if topic_matches(w[0], pub.topic)]
                if not spans:
                    continue
                expected: set[int] = set()
                for start, end in spans:
                    lo = bisect.bisect_left(pub.sent, start)
                    hi = bisect.bisect_left(pub.sent, end)
                    expected.update(pub.seqs[lo:hi])
                if not expected:
                    continue
                counts = self._rx.get((receiver, sender), bytearray())
                n = len(counts)
                missing = sum(1 for s in expected if s >= n or counts[s] == 0)
                rrow.rx_expected += len(expected)
                rrow.rx_lost += missing
                self._row(sender).lost += missing
                expected_total += len(expected)
                lost_total += missing
        rows = sorted(self.rows.values(), key=lambda r: r.device)
        connected = sum(1 for r in rows if r.connects)
        published = sum(r.published for r in rows)
        received = sum(r.received for r in rows) - self.foreign
        window_s = (self._last_rx - self._first_pub) / 1e9 if self._last_rx > self._first_pub else 0.0
        pub_window_s = (self._last_pub - self._first_pub) / 1e9 if self._last_pub > self._first_pub else 0.0
        return LedgerSummary(
            devices=len(rows),
            connected=connected,
            failed=len(rows) - connected,
            connect_attempts_failed=sum(r.connect_failures for r in rows),
            published=published,
            publish_failed=sum(r.publish_failed for r in rows),
            received=received,
            expected=expected_total,
            lost=lost_total,
            duplicates=dup_total,
            foreign=self.foreign,
            throughput_msg_s=received / window_s if window_s > 0 else 0.0,
            published_msg_s=published / pub_window_s if pub_window_s > 0 else 0.0,
            latency_ms=percentiles(self._latency),
            connect_ms=percentiles(self._connect),
            discover_ms=percentiles(self._discover),
            discover_failed=self.discover_failed,
            publish_ack_ms=percentiles(self._ack),
            subscribers=len(self._windows),
            subscribe_downgraded=sorted(set(self._downgraded)),
            disconnects=sum(r.disconnects for r in rows),
            storm=self._storm_summary(),
            rows=rows,
            series=self._series(),
            latency_histogram=latency_histogram(self._latency),
        )

    def _series(self) -> dict[str, list[float]]:
        """Connections online, publishes and deliveries per second, from the first second with an event."""
        per = self._per_s
        seconds = [k for c in per.values() for k in c]
        if not seconds:
            return {}
        first, last = min(seconds), max(seconds)
        width = max(1, -(-(last - first + 1) // MAX_POINTS))
        t: list[float] = []
        online: list[float] = []
        pub: list[float] = []
        rx: list[float] = []
        level = 0
        for start in range(first, last + 1, width):
            span = range(start, min(start + width, last + 1))
            level += sum(per["connect"][k] - per["disconnect"][k] for k in span)
            t.append(float(start - first))
            online.append(float(level))
            pub.append(round(sum(per["published"][k] for k in span) / len(span), 1))
            rx.append(round(sum(per["received"][k] for k in span) / len(span), 1))
        return {"t_s": t, "connected": online, "published_msg_s": pub, "received_msg_s": rx}

    def _storm_summary(self) -> StormSummary | None:
        m = self._storm
        if m is None:
            return None
        start = int(m.context["t_ns"])
        out = StormSummary(
            kind=m.name.partition(":")[2] or m.name, started_ns=start, op_s=round(m.response_time / 1000.0, 3)
        )
        deltas: list[float] = []
        after: list[int] = []
        for times in self._connect_ok_ns.values():
            if not any(t < start for t in times):
                continue
            out.devices += 1
            later = [t for t in times if t >= start]
            after += later
            if later:
                deltas.append((min(later) - start) / 1e9)
        out.reconnected = len(deltas)
        deltas.sort()
        out.reconnect_times_s = deltas
        n = out.devices
        for q, attr in ((50, "t50_s"), (95, "t95_s"), (99, "t99_s")):
            need = max(1, -(-q * n // 100))
            if n and len(deltas) >= need:
                setattr(out, attr, round(deltas[need - 1], 3))
        out.peak_connect_rate_s = peak_rate(after, start)
        attempts = [t for t in self._attempt_ns if t >= start]
        out.attempts = len(attempts)
        out.peak_attempt_rate_s = peak_rate(attempts, start)
        return out

    def connect_samples_ms(self, before_ns: int | None = None) -> list[float]:
        """Response times of successful connects (those completed before ``before_ns`` when given): the
        ramp's connects, made at a known rate, are the handshake service time a calibration states."""
        if before_ns is None:
            return list(self._connect)
        return [ms for ms, t in zip(self._connect, self._connect_ns, strict=True) if t < before_ns]


def latency_histogram(values_ms: Iterable[float]) -> list[tuple[float, int]]:
    """Counts over power-of-two bins (upper bounds 0.25 ms, 0.5 ms, 1 ms, ...), empty end bins cut."""
    counts: Counter[int] = Counter()
    for v in values_ms:
        counts[max(-2, math.ceil(math.log2(v))) if v > 0 else -2] += 1
    if not counts:
        return []
    lo, hi = min(counts), max(counts)
    return [(2.0**k, counts[k]) for k in range(lo, hi + 1)]


def ledger_from(records: Iterable[Measurement], devices: Iterable[str] = ()) -> Ledger:
    ledger = Ledger(devices)
    for m in records:
        ledger.add(m)
    return ledger
