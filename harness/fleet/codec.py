"""A small MQTT 3.1.1 codec (sans-IO): the packets a telemetry device needs, and an incremental reader.

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT. Being I/O-free it
runs under any event loop (asyncio in the harness, a native thread inside a locust worker) and is tested
without a broker. Anything else a broker sends is reported as an unexpected packet, never silently skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
PINGREQ_BYTES = b"\xc0\x00"
DISCONNECT_BYTES = b"\xe0\x00"
MAX_REMAINING = 268_435_455
SUBACK_FAILURE = 0x80
#: CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3).
CONNACK_CODES = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class ProtocolError(Exception):
    """The peer sent bytes that are not valid MQTT 3.1.1 for a client to receive."""


def _remaining(n: int) -> bytes:
    if n > MAX_REMAINING:
        raise ValueError(f"MQTT packet too large: {n} bytes")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def connect(client_id: str, keepalive: int = 30, clean_session: bool = True) -> bytes:
    body = b"\x00\x04MQTT\x04" + bytes([0x02 if clean_session else 0]) + struct.pack("!H", keepalive)
    body += _str(client_id)
    return b"\x10" + _remaining(len(body)) + body


def publish(
    topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, *, dup: bool = False, retain: bool = False
) -> bytes:
    header = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    t = topic.encode()
    var = struct.pack("!H", len(t)) + t + (struct.pack("!H", packet_id) if qos else b"")
    return bytes([header]) + _remaining(len(var) + len(payload)) + var + payload


class PublishEncoder:
    """PUBLISH packets for one topic and QoS with the fixed parts encoded once (the hot path of a device
    publishing telemetry): only the remaining length, the packet id and the payload differ per message."""

    __slots__ = ("_first", "_topic", "_var_len", "qos")

    def __init__(self, topic: str, qos: int = 0) -> None:
        t = topic.encode()
        self.qos = qos
        self._first = bytes([0x30 | (qos << 1)])
        self._topic = struct.pack("!H", len(t)) + t
        self._var_len = len(self._topic) + (2 if qos else 0)

    def __call__(self, payload: bytes, packet_id: int = 0) -> bytes:
        n = self._var_len + len(payload)
        if n < 128:
            length = _SMALL[n]
        elif n < 16384:
            length = bytes(((n & 0x7F) | 0x80, n >> 7))
        else:
            length = _remaining(n)
        if self.qos:
            return b"".join((self._first, length, self._topic, _PID.pack(packet_id), payload))
        return b"".join((self._first, length, self._topic, payload))


_PID = struct.Struct("!H")
_SMALL = [bytes((i,)) for i in range(128)]


def puback(packet_id: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", packet_id)


def subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_str(f) + bytes([q]) for f, q in filters)
    return b"\x82" + _remaining(len(body)) + body


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    code: int

    @property
    def reason(self) -> str:
        return CONNACK_CODES.get(self.code, f"return code {self.code}")


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int
    dup: bool
    retain: bool


@dataclass(frozen=True, slots=True)
class Ack:
    """PUBACK or SUBACK (``granted`` holds SUBACK's return codes)."""

    kind: int
    packet_id: int
    granted: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Other:
    """PINGRESP, or a packet a client does not expect (``kind`` says which)."""

    kind: int


Packet = Connack | Publish | Ack | Other


class Reader:
    """Feed it bytes as they arrive; it returns every complete packet and keeps the rest."""

    def __init__(self, max_packet: int = 1 << 20) -> None:
        self._buf = bytearray()
        self.max_packet = max_packet

    def feed(self, data: bytes, on_puback: Callable[[int], None] | None = None) -> list[Packet]:
        """Complete packets in arrival order. With ``on_puback``, PUBACKs are handed to it (packet id)
        as they are parsed instead of being returned: no object per acknowledged message."""
        buf = self._buf
        buf += data
        out: list[Packet] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            first = buf[pos]
            # remaining length: up to 4 bytes, 7 bits each, least significant first
            length, shift, i, complete = 0, 0, pos + 1, False
            while i < end:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:
                    raise ProtocolError("malformed remaining length (more than 4 bytes)")
            if not complete:
                break
            if length > self.max_packet:
                raise ProtocolError(f"packet of {length} bytes exceeds the {self.max_packet}-byte limit")
            if end - i < length:
                break
            if first == 0x40 and on_puback is not None:
                if length != 2:
                    raise ProtocolError("malformed PUBACK")
                on_puback((buf[i] << 8) | buf[i + 1])
            else:
                out.append(self._parse(first, bytes(buf[i : i + length])))
            pos = i + length
        if pos:
            del buf[:pos]
        return out

    @staticmethod
    def _parse(first: int, body: bytes) -> Packet:
        kind = first >> 4
        if kind == PUBLISH:
            qos = (first >> 1) & 3
            if qos == 3 or len(body) < 2:
                raise ProtocolError("malformed PUBLISH")
            tlen = (body[0] << 8) | body[1]
            pos = 2 + tlen
            pid = 0
            if qos:
                pid = (body[pos] << 8) | body[pos + 1]
                pos += 2
            return Publish(
                body[2 : 2 + tlen].decode(errors="replace"),
                body[pos:],
                qos,
                pid,
                bool(first & 0x08),
                bool(first & 0x01),
            )
        if kind == PUBACK:
            if len(body) != 2:
                raise ProtocolError("malformed PUBACK")
            return Ack(PUBACK, (body[0] << 8) | body[1])
        if kind == CONNACK:
            if len(body) != 2:
                raise ProtocolError("malformed CONNACK")
            return Connack(bool(body[0] & 1), body[1])
        if kind == SUBACK:
            if len(body) < 3:
                raise ProtocolError("malformed SUBACK")
            return Ack(SUBACK, (body[0] << 8) | body[1], tuple(body[2:]))
        return Other(kind)
