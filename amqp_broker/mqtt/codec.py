"""MQTT 3.1 / 3.1.1 packets: parsing bytes into packet objects and encoding the server's packets.

Pure functions and small records; nothing here knows sockets or the broker. The parser accepts
what RabbitMQ 3.10's rabbit_mqtt_frame accepts (protocol level 3 named "MQIsdp", level 4 named
"MQTT"), and raises :class:`ProtocolError` for anything else, upon which the connection is
closed without an answer, as RabbitMQ does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

# CONNACK return codes.
ACCEPTED = 0
REFUSED_PROTOCOL_VERSION = 1
REFUSED_IDENTIFIER = 2
REFUSED_SERVER_UNAVAILABLE = 3
REFUSED_BAD_CREDENTIALS = 4
REFUSED_NOT_AUTHORIZED = 5

#: Protocol level -> the protocol name a CONNECT must carry with it.
PROTOCOL_NAMES = {3: "MQIsdp", 4: "MQTT"}
#: The largest remaining length the variable-length encoding can express (256 MiB - 1).
MAX_REMAINING_LENGTH = 0x0FFFFFFF

_U16 = struct.Struct(">H")


class ProtocolError(Exception):
    """The bytes are not an MQTT packet this server accepts; the connection is to be closed."""


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(slots=True)
class Connect:
    protocol_level: int
    client_id: str
    clean_session: bool
    keep_alive: int
    username: str | None = None
    password: str | None = None
    will: Will | None = None


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    # (topic filter, requested QoS) in the order the client sent them.
    topics: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topics: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PubAck:
    packet_id: int


@dataclass(slots=True)
class Simple:
    """A packet without a body: PINGREQ or DISCONNECT."""

    type: int


Packet = Connect | Publish | Subscribe | Unsubscribe | PubAck | Simple


class Parser:
    """Incremental parser: feed bytes, take the complete packets out."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        """The packets completed by ``data`` (possibly none); ProtocolError for bad input."""
        buf = self.buffer
        buf += data
        packets: list[Packet] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            first = buf[pos]
            length = 0
            shift = 0
            i = pos + 1
            complete = False
            while i < end:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:
                    raise ProtocolError("malformed remaining length")
            if not complete:
                break
            if end - i < length:
                break
            packets.append(_decode(first, bytes(buf[i:i + length])))
            pos = i + length
        if pos:
            del buf[:pos]
        return packets


def _decode(first: int, body: bytes) -> Packet:
    kind = first >> 4
    flags = first & 0x0F
    try:
        if kind == PUBLISH:
            return _decode_publish(flags, body)
        if kind == PUBACK:
            if len(body) != 2:
                raise ProtocolError("PUBACK of the wrong length")
            return PubAck(_U16.unpack(body)[0])
        if kind == CONNECT:
            return _decode_connect(body)
        if kind == SUBSCRIBE:
            packet_id, pos = _U16.unpack_from(body, 0)[0], 2
            topics = []
            while pos < len(body):
                topic, pos = _string(body, pos)
                topics.append((topic, body[pos] & 0x03))
                pos += 1
            if not topics:
                raise ProtocolError("SUBSCRIBE without topics")
            return Subscribe(packet_id, topics)
        if kind == UNSUBSCRIBE:
            packet_id, pos = _U16.unpack_from(body, 0)[0], 2
            names = []
            while pos < len(body):
                topic, pos = _string(body, pos)
                names.append(topic)
            return Unsubscribe(packet_id, names)
        if kind in (PINGREQ, DISCONNECT):
            return Simple(kind)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed packet of type {kind}: {exc}") from None
    # PUBREC/PUBREL/PUBCOMP (QoS 2 is answered as QoS 1, so a client never needs them), and
    # packets only a server sends.
    raise ProtocolError(f"unexpected packet type {kind}")


def _string(body: bytes, pos: int) -> tuple[str, int]:
    (size,) = _U16.unpack_from(body, pos)
    pos += 2
    if pos + size > len(body):
        raise ProtocolError("string runs past the packet")
    return body[pos:pos + size].decode("utf-8"), pos + size


def _decode_publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 0x03
    topic, pos = _string(body, 0)
    packet_id = None
    if qos:
        (packet_id,) = _U16.unpack_from(body, pos)
        pos += 2
    return Publish(topic, body[pos:], qos, bool(flags & 0x01), bool(flags & 0x08), packet_id)


def _decode_connect(body: bytes) -> Connect:
    name, pos = _string(body, 0)
    level = body[pos]
    connect_flags = body[pos + 1]
    (keep_alive,) = _U16.unpack_from(body, pos + 2)
    pos += 4
    if PROTOCOL_NAMES.get(level) != name:
        raise ProtocolError(f"unsupported protocol {name!r} level {level}")
    client_id, pos = _string(body, pos)
    will = None
    if connect_flags & 0x04:
        topic, pos = _string(body, pos)
        (size,) = _U16.unpack_from(body, pos)
        payload = body[pos + 2:pos + 2 + size]
        pos += 2 + size
        will = Will(topic, payload, (connect_flags >> 3) & 0x03, bool(connect_flags & 0x20))
    username = password = None
    if connect_flags & 0x80:
        username, pos = _string(body, pos)
    if connect_flags & 0x40:
        password, pos = _string(body, pos)
    return Connect(level, client_id, bool(connect_flags & 0x02), keep_alive, username, password, will)


# -- encoding -----------------------------------------------------------------------------------


def _remaining_length(out: bytearray, length: int) -> None:
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def write_connack(out: bytearray, session_present: bool, code: int) -> None:
    out += bytes((CONNACK << 4, 2, 1 if session_present else 0, code))


def write_puback(out: bytearray, packet_id: int) -> None:
    out += bytes((PUBACK << 4, 2)) + _U16.pack(packet_id)


def write_suback(out: bytearray, packet_id: int, granted: list[int]) -> None:
    out.append(SUBACK << 4)
    _remaining_length(out, 2 + len(granted))
    out += _U16.pack(packet_id)
    out += bytes(granted)


def write_unsuback(out: bytearray, packet_id: int) -> None:
    out += bytes((UNSUBACK << 4, 2)) + _U16.pack(packet_id)


def write_pingresp(out: bytearray) -> None:
    out += bytes((PINGRESP << 4, 0))


def write_publish(
    out: bytearray, topic: bytes, payload: bytes, qos: int, packet_id: int | None,
    retain: bool = False, dup: bool = False,
) -> None:
    """A PUBLISH of ``payload`` on ``topic`` (already UTF-8)."""
    out.append((PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0))
    _remaining_length(out, 2 + len(topic) + (2 if qos else 0) + len(payload))
    out += _U16.pack(len(topic))
    out += topic
    if qos:
        out += _U16.pack(packet_id)
    out += payload
