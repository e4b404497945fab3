"""A raw MQTT 3.1.1 client over a socket, for tests that must control every byte (keep-alive
silence, a second CONNECT, an unanswered delivery) and compare packets byte for byte."""

from __future__ import annotations

import socket
import struct
import time


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">H", len(data)) + data


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes(((kind << 4) | flags,)) + _remaining_length(len(body)) + body


def connect(client_id: str, clean: bool = True, username: str | None = None,
            password: str | None = None, keep_alive: int = 60, level: int = 4,
            name: str | None = None, will: tuple[str, bytes, int, bool] | None = None) -> bytes:
    """A CONNECT; ``will`` is (topic, payload, qos, retain)."""
    flags = 0x02 if clean else 0
    payload = _string(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _string(topic) + struct.pack(">H", len(message)) + message
    if username is not None:
        flags |= 0x80
        payload += _string(username)
    if password is not None:
        flags |= 0x40
        payload += _string(password)
    if name is None:
        name = "MQTT" if level == 4 else "MQIsdp"
    return packet(1, 0, _string(name) + bytes((level, flags)) + struct.pack(">H", keep_alive) + payload)


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 1, retain: bool = False,
            dup: bool = False) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = _string(topic) + (struct.pack(">H", packet_id) if qos else b"") + payload
    return packet(3, flags, body)


def subscribe(packet_id: int, *topics: tuple[str, int]) -> bytes:
    return packet(8, 2, struct.pack(">H", packet_id) + b"".join(_string(t) + bytes((q,)) for t, q in topics))


def unsubscribe(packet_id: int, *topics: str) -> bytes:
    return packet(10, 2, struct.pack(">H", packet_id) + b"".join(_string(t) for t in topics))


def puback(packet_id: int) -> bytes:
    return packet(4, 0, struct.pack(">H", packet_id))


PINGREQ = packet(12, 0, b"")
DISCONNECT = packet(14, 0, b"")
EOF = "EOF"


class Client:
    """One socket; :meth:`read` returns whole packets (as hex, for comparison) or EOF."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> "Client":
        self.sock.sendall(data)
        return self

    def read(self, count: int = 1, timeout: float = 10.0) -> list[str]:
        """The next ``count`` packets as hex strings; the list ends with EOF if the server closes
        the connection first."""
        packets: list[str] = []
        deadline = time.monotonic() + timeout
        while len(packets) < count:
            complete = self._take()
            if complete is not None:
                packets.append(complete.hex())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"got {packets} of {count} packets")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                packets.append(EOF)
                break
            self.buffer += data
        return packets

    def read_eof(self, timeout: float = 10.0) -> list[str]:
        """Every packet until the server closes the connection (the last item is EOF)."""
        packets: list[str] = []
        while not packets or packets[-1] != EOF:
            packets += self.read(1, timeout)
        return packets

    def _take(self) -> bytes | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        length = 0
        shift = 0
        i = 1
        while True:
            if i >= len(buf):
                return None
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        if len(buf) - i < length:
            return None
        self.buffer = buf[i + length:]
        return buf[:i + length]

    def close(self) -> None:
        self.sock.close()


def decode_publish(hex_packet: str) -> dict:
    """The fields of a PUBLISH given as hex, for readable assertions."""
    data = bytes.fromhex(hex_packet)
    first = data[0]
    assert first >> 4 == 3, f"not a PUBLISH: {hex_packet}"
    i = 1
    while data[i] & 0x80:
        i += 1
    i += 1
    (size,) = struct.unpack_from(">H", data, i)
    topic = data[i + 2:i + 2 + size].decode()
    i += 2 + size
    qos = (first >> 1) & 3
    packet_id = None
    if qos:
        (packet_id,) = struct.unpack_from(">H", data, i)
        i += 2
    return {"topic": topic, "qos": qos, "packet_id": packet_id, "dup": bool(first & 8),
            "retain": bool(first & 1), "payload": data[i:]}
