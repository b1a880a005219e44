"""Per-device loss and duplicate counting from sequence numbers (the ledger), without any broker."""

from __future__ import annotations

from pathlib import Path

from harness.fleet.ledger import FLEET, Ledger, ledger_from
from harness.fleet.sinks import JsonlSink, read_jsonl
from harness.fleet.stats import peak_rate, percentile, percentiles
from harness.fleet.topics import topic_matches
from harness.records import Measurement

MS = 1_000_000  # ns per ms


def pub(device: str, seq: int, sent: int, topic: str | None = None, error: str | None = None) -> Measurement:
    return Measurement(
        "MQTT",
        "publish",
        1.0,
        60,
        error,
        {
            "device": device,
            "seq": seq,
            "sent_ns": sent,
            "qos": 1,
            "topic": topic or f"relay/{device}/telemetry",
        },
    )


def rx(receiver: str, sender: str, seq: int, sent: int, latency_ms: float = 2.0) -> Measurement:
    return Measurement(
        "MQTT",
        "receive",
        latency_ms,
        60,
        None,
        {
            "device": receiver,
            "from": sender,
            "seq": seq,
            "sent_ns": sent,
            "qos": 1,
            "topic": f"relay/{sender}/telemetry",
        },
    )


def sub(device: str, at: int, topic_filter: str = "relay/#", granted: int = 1) -> Measurement:
    return Measurement(
        "MQTT",
        "subscribe",
        1.0,
        0,
        None,
        {"device": device, "filter": topic_filter, "qos": 1, "granted": granted, "t_ns": at},
    )


def conn(device: str, at: int, ok: bool = True, ms: float = 10.0) -> Measurement:
    return Measurement(
        "MQTT",
        "connect",
        ms,
        0,
        None if ok else "refused",
        {"device": device, "engine": "asyncio", "attempt": 1, "t_ns": at},
    )


def test_loss_and_duplicates_per_device_from_sequence_numbers() -> None:
    records = [conn("a", 0), conn("s", 0), sub("s", 1)]
    records += [pub("a", i, 100 + i) for i in range(10)]
    records += [rx("s", "a", i, 100 + i) for i in range(10) if i not in (3, 7)]
    records += [rx("s", "a", 5, 105), rx("s", "a", 5, 105)]  # two extra copies of seq 5
    s = ledger_from(records, ["a", "s", "idle"]).summary()
    assert (s.published, s.expected, s.lost, s.duplicates) == (10, 10, 2, 2)
    assert s.received == 10
    rows = {r.device: r for r in s.rows}
    assert (rows["a"].published, rows["a"].lost, rows["a"].duplicates) == (10, 2, 2)
    assert (rows["s"].received, rows["s"].rx_expected, rows["s"].rx_lost, rows["s"].rx_duplicates) == (
        10,
        10,
        2,
        2,
    )
    assert (s.connected, s.failed) == (2, 1) and rows["idle"].connects == 0


def test_only_messages_sent_while_subscribed_are_expected() -> None:
    records = [pub("a", i, 100 + i) for i in range(10)]
    records += [sub("s", 105)]  # subscribed after seq 0..4 were sent
    records += [rx("s", "a", i, 100 + i) for i in (5, 6, 8)]
    records += [Measurement("MQTT", "disconnect", 0.0, 0, "dropped", {"device": "s", "t_ns": 108})]
    records += [sub("s", 200), pub("a", 10, 300), rx("s", "a", 10, 300)]
    s = ledger_from(records).summary()
    # windows [105, 108) and [200, inf): seqs 5, 6, 7 and 10 expected, 7 missing; 0-4 were sent too early
    assert (s.expected, s.lost, s.duplicates) == (4, 1, 0)


def test_a_message_on_a_topic_outside_the_filter_is_not_expected() -> None:
    records = [sub("s", 0, "relay/a/#"), pub("a", 0, 10), pub("b", 0, 10, topic="relay/b/telemetry")]
    s = ledger_from(records).summary()
    assert (s.expected, s.lost) == (1, 1)
    assert {r.device: r.lost for r in s.rows} == {"a": 1, "b": 0, "s": 0}


def test_out_of_order_completion_and_unsent_publishes() -> None:
    records = [sub("s", 0), pub("a", 1, 20), pub("a", 0, 10), rx("s", "a", 1, 20), rx("s", "a", 0, 10)]
    records.append(
        Measurement(
            "MQTT",
            "publish",
            0.0,
            60,
            "send buffer full",
            {"device": "a", "seq": 2, "sent_ns": 30, "qos": 1, "topic": "relay/a/telemetry", "sent": False},
        )
    )
    s = ledger_from(records).summary()
    assert (s.published, s.publish_failed, s.expected, s.lost) == (2, 1, 2, 0)


def test_foreign_payloads_and_downgraded_subscriptions_are_reported() -> None:
    records = [
        sub("s", 0, granted=0),
        Measurement("MQTT", "receive", 0.0, 5, "not fleet telemetry", {"device": "s", "topic": "x"}),
    ]
    s = ledger_from(records).summary()
    assert s.foreign == 1 and s.received == 0 and s.subscribe_downgraded == ["s"]


def test_storm_reconnect_percentiles_and_peak_rate() -> None:
    t0 = 1_000 * MS
    records = [conn(f"d{i}", 0) for i in range(10)]
    records.append(Measurement(FLEET, "storm:restart", 250.0, 0, None, {"t_ns": t0}))
    # d0..d8 come back 100, 200, ... 900 ms after the storm; d9 never does; failed attempts in between
    records += [conn(f"d{i}", t0 + (i + 1) * 100 * MS) for i in range(9)]
    records += [conn("d9", t0 + 50 * MS * k, ok=False) for k in range(1, 20)]
    s = ledger_from(records).summary()
    st = s.storm
    assert st is not None and st.kind == "restart" and st.op_s == 0.25
    assert (st.devices, st.reconnected) == (10, 9)
    assert (st.t50_s, st.t95_s, st.t99_s) == (0.5, None, None)  # 95 % of 10 needs 10 devices back
    assert st.peak_connect_rate_s == 9.0 and st.attempts == 28


def test_percentiles_are_nearest_rank_and_none_without_samples() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0}
    assert peak_rate([0, 1, 2, 1_500_000_000], 0) == 3.0


def test_topic_filters() -> None:
    assert topic_matches("relay/#", "relay/a/telemetry")
    assert topic_matches("relay/+/telemetry", "relay/a/telemetry")
    assert not topic_matches("relay/+", "relay/a/telemetry")
    assert topic_matches("#", "a") and not topic_matches("#", "$SYS/x")
    assert topic_matches("a/b", "a/b") and not topic_matches("a/b", "a/b/c")


def test_records_round_trip_through_jsonl(tmp_path: Path) -> None:
    records = [sub("s", 0), pub("a", 0, 10), rx("s", "a", 0, 10)]
    sink = JsonlSink(tmp_path / "m.jsonl")
    for m in records:
        sink(m)
    sink.close()
    back = list(read_jsonl(tmp_path / "m.jsonl"))
    assert back == records
    direct, replayed = Ledger(), ledger_from(back)
    for m in records:
        direct.add(m)
    assert direct.summary().load_block() == replayed.summary().load_block()
