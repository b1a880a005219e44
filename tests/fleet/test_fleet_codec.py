"""The MQTT 3.1.1 codec and the telemetry payload, byte by byte (no broker)."""

from __future__ import annotations

import pytest

from harness.fleet import codec
from harness.fleet import payload as telemetry


def test_connect_packet_matches_the_spec() -> None:
    pkt = codec.connect("dev-1", keepalive=30, clean_session=True)
    assert pkt == b"\x10\x11\x00\x04MQTT\x04\x02\x00\x1e\x00\x05dev-1"
    assert codec.connect("d", clean_session=False)[9] == 0


@pytest.mark.parametrize("size", [0, 1, 120, 127 - 7, 128, 16_383, 16_384, 200_000])
def test_publish_round_trips_through_the_reader_at_length_boundaries(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for qos, pid in ((0, 0), (1, 65535)):
        (p,) = codec.Reader().feed(codec.publish("a/b", data, qos, pid))
        assert isinstance(p, codec.Publish)
        assert (p.topic, p.payload, p.qos, p.packet_id) == ("a/b", data, qos, pid)


def test_reader_reassembles_packets_split_anywhere() -> None:
    stream = (
        codec.publish("t", b"x" * 300, 1, 7)
        + b"\x20\x02\x00\x05"
        + codec.puback(3)
        + b"\x90\x04\x00\x09\x01\x80"
        + b"\xd0\x00"
    )
    reader = codec.Reader()
    got: list[codec.Packet] = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
    assert got[1:] == [
        codec.Connack(False, 5),
        codec.Ack(codec.PUBACK, 3),
        codec.Ack(codec.SUBACK, 9, (1, 0x80)),
        codec.Other(codec.PINGRESP),
    ]
    assert got[0] == codec.Publish("t", b"x" * 300, 1, 7, False, False)
    assert codec.Connack(False, 5).reason == "not authorized"


def test_reader_rejects_malformed_input() -> None:
    with pytest.raises(codec.ProtocolError, match="remaining length"):
        codec.Reader().feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(codec.ProtocolError, match="exceeds"):
        codec.Reader(max_packet=10).feed(b"\x30\x0b" + b"\x00" * 11)
    with pytest.raises(codec.ProtocolError, match="PUBACK"):
        codec.Reader().feed(b"\x40\x01\x00")


def test_subscribe_packet() -> None:
    assert codec.subscribe(1, [("relay/#", 1)]) == b"\x82\x0c\x00\x01\x00\x07relay/#\x01"


def test_telemetry_payload_round_trip_and_padding() -> None:
    data = telemetry.encode("dev-7", 42, 1_700_000_000_123_456_789, size=100)
    assert len(data) == 100
    assert telemetry.decode(data) == telemetry.Telemetry("dev-7", 42, 1_700_000_000_123_456_789)
    assert telemetry.decode(telemetry.encode("d", 0, 1)) == telemetry.Telemetry("d", 0, 1)
    assert telemetry.decode(b"hello") is None and telemetry.decode(b'{"d": 1}') is None
