"""The bulk engine's per-message path without a broker: pre-encoded payloads and PUBLISH packets are byte for
byte the plain encoders' output, PUBACKs parsed without objects, and the fleet's one publish timer sends
every device's slots in order, holds them back (never skips them) while the in-flight window is full, and
never spins when telemetry ends with the window full."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from harness.fleet import codec
from harness.fleet import payload as telemetry
from harness.fleet.device import SimDevice
from harness.fleet.engine import FleetControl, new_event_loop
from harness.fleet.plan import DeviceSpec, FleetConfig
from harness.fleet.sinks import Recorder
from harness.records import Measurement


@pytest.mark.parametrize("size", [0, 48, 64, 100, 1000, 20_000])
def test_payload_encoder_matches_encode(size: int) -> None:
    enc = telemetry.Encoder("dev-load-0001", size)
    for seq in (0, 9, 10, 99_999, 123_456_789):
        for t in (1, 1_795_432_444_837_515_000):
            assert enc(seq, t) == telemetry.encode("dev-load-0001", seq, t, size)


@pytest.mark.parametrize("n", [0, 100, 104, 127, 128, 16_383, 16_384, 70_000])
def test_publish_encoder_matches_publish(n: int) -> None:
    data = b"y" * n
    for qos in (0, 1):
        assert codec.PublishEncoder("relay/a/telemetry", qos)(data, 513) == codec.publish(
            "relay/a/telemetry", data, qos, 513 if qos else 0
        )


def test_reader_hands_pubacks_to_the_callback_and_returns_the_rest_split_anywhere() -> None:
    stream = codec.puback(1) + codec.publish("t", b"x" * 200, 1, 7) + codec.puback(65535) + b"\xd0\x00"
    acks: list[int] = []
    got: list[codec.Packet] = []
    reader = codec.Reader()
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1], acks.append)
    assert acks == [1, 65535]
    assert [type(p) for p in got] == [codec.Publish, codec.Other]
    with pytest.raises(codec.ProtocolError, match="PUBACK"):
        codec.Reader().feed(b"\x40\x03\x00\x01\x00", acks.append)


class _Client:
    """An in-memory bulk-engine client: records what was published, acknowledges on request."""

    engine = "asyncio"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.unacked: list[Callable[[BaseException | None], None]] = []
        self.connected = True
        self.close_reason = ""

    def publish_with(
        self, encoder: codec.PublishEncoder, data: bytes, done: Callable[[BaseException | None], None] | None
    ) -> None:
        self.sent.append(data)
        if done is not None:
            self.unacked.append(done)

    def ack_all(self) -> None:
        pending, self.unacked = self.unacked, []
        for done in pending:
            done(None)


def _run(rate: float, duration: float, max_inflight: int, ack: bool, devices: int = 20) -> list[SimDevice]:
    cfg = FleetConfig(devices=devices, rate=rate, qos=1, duration_s=duration, max_inflight=max_inflight)
    loop = new_event_loop()
    records: list[Measurement] = []

    async def main() -> list[SimDevice]:
        ctl = FleetControl(loop, loop.time(), devices)
        devs = []
        for i in range(devices):
            spec = DeviceSpec(
                i, f"d{i}", "", "", "asyncio", f"relay/d{i}/telemetry", None, 0.0, i / devices / rate, i
            )
            dev = SimDevice(spec, cfg, ctl, Recorder([records.append]))
            dev.client = _Client()  # type: ignore[assignment]
            ctl.devices.append(dev)
            devs.append(dev)
        tasks = [loop.create_task(d._session(d.client)) for d in devs]  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # connected before telemetry starts, as in a run
        ctl.pub_start = loop.time()
        ctl.pub_end = ctl.pub_start + duration
        ctl.wake_all()
        end = ctl.pub_end + 0.3
        while loop.time() < end:  # the loop keeps turning: nothing spins
            if ack:
                for d in devs:
                    d.client.ack_all()  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        ctl.publish_over = True
        ctl.stopping = True
        ctl.wake_all()
        for d in devs:
            d.client.ack_all()  # type: ignore[union-attr]
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return devs

    try:
        return loop.run_until_complete(asyncio.wait_for(main(), 30))
    finally:
        loop.close()


def test_every_slot_is_sent_once_in_order_from_the_fleet_timer() -> None:
    devs = _run(rate=50, duration=0.6, max_inflight=100, ack=True)
    for d in devs:
        seqs = [telemetry.decode(p).seq for p in d.client.sent]  # type: ignore[union-attr]
        assert seqs == list(range(30)), d.spec.thing
        assert d.inflight == 0


def test_a_full_window_holds_slots_back_and_never_spins_past_the_end() -> None:
    devs = _run(rate=100, duration=0.3, max_inflight=3, ack=False)
    for d in devs:
        # nothing acknowledged during telemetry: the window's 3 messages only, the rest held back, not skipped
        assert len(d.client.sent) == 3  # type: ignore[union-attr]
        assert d.seq == 3
        assert d._next_slot == 3
