"""``amqp-broker trace pcap FILE -o OUT.pcap``: a trace as a packet capture Wireshark reads.

Each connection becomes one TCP stream between the addresses of its name (``peer -> local``):
a synthesised handshake (SYN, SYN-ACK, ACK) before its first traced frame, each batch of frames
traced together as segments carrying them (at most :data:`SEGMENT` bytes each), sequence and
acknowledgement numbers counting every byte, and FIN/ACK both ways once its socket closed. Packets
are Ethernet/IPv4/TCP with valid checksums, timestamped as the trace. A host that is not an IPv4
address (an IPv6 peer) is given one from 10.0.0.0/8, the same one for every appearance.

Wireshark decodes AMQP on port 5672 by itself; for another port, tell it:
``tshark -r OUT.pcap -d tcp.port==PORT,amqp``.
"""

from __future__ import annotations

import base64
import ipaddress
import struct
from collections.abc import Iterable
from typing import BinaryIO

from .reader import endpoints, split_address

#: Most payload bytes per TCP segment (a large frame spans several, as on a real wire).
SEGMENT = 16384
_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)  # microseconds, Ethernet
_CLIENT_MAC = bytes.fromhex("020000000001")
_BROKER_MAC = bytes.fromhex("020000000002")
_SYN, _FIN, _PSH, _ACK = 0x02, 0x01, 0x08, 0x10
_ISN_CLIENT, _ISN_BROKER = 1000, 50000


class _Stream:
    """One connection's TCP state: addresses and the next sequence number each way."""

    def __init__(self, client: tuple[bytes, int], broker: tuple[bytes, int]):
        self.client = client
        self.broker = broker
        self.seq = {"in": _ISN_CLIENT + 1, "out": _ISN_BROKER + 1}
        self.closed = False


class PcapWriter:
    def __init__(self, out: BinaryIO):
        self.out = out
        self.out.write(_PCAP_HEADER)
        self.packets = 0
        self._hosts: dict[str, bytes] = {}

    def ip(self, host: str) -> bytes:
        known = self._hosts.get(host)
        if known is None:
            try:
                known = ipaddress.IPv4Address(host).packed
            except ValueError:
                known = bytes([10, 0, 0, len(self._hosts) + 1])
            self._hosts[host] = known
        return known

    def packet(self, ts: float, stream: _Stream, direction: str, flags: int, payload: bytes = b"") -> None:
        """One TCP segment ``direction`` ("in": client to broker) carrying ``payload``."""
        src, dst = (stream.client, stream.broker) if direction == "in" else (stream.broker, stream.client)
        other = "out" if direction == "in" else "in"
        seq = stream.seq[direction]
        ack = stream.seq[other] if flags & _ACK else 0
        tcp = struct.pack(">HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                          5 << 4, flags, 65535, 0, 0)
        pseudo = struct.pack(">4s4sBBH", src[0], dst[0], 0, 6, len(tcp) + len(payload))
        tcp = tcp[:16] + struct.pack(">H", _checksum(pseudo + tcp + payload)) + tcp[18:]
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), self.packets & 0xFFFF,
                         0x4000, 64, 6, 0, src[0], dst[0])
        ip = ip[:10] + struct.pack(">H", _checksum(ip)) + ip[12:]
        macs = (_BROKER_MAC + _CLIENT_MAC) if direction == "in" else (_CLIENT_MAC + _BROKER_MAC)
        frame = macs + b"\x08\x00" + ip + tcp + payload
        seconds = int(ts)
        micros = int(round((ts - seconds) * 1e6))
        if micros >= 1000000:
            seconds, micros = seconds + 1, micros - 1000000
        self.out.write(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
        self.packets += 1
        stream.seq[direction] = seq + len(payload) + (1 if flags & (_SYN | _FIN) else 0)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_pcap(records: Iterable[dict], out: BinaryIO, connection: str | None = None) -> dict:
    """Write the frames of ``records`` (of connections whose name contains ``connection``) to
    ``out``; returns ``{"packets": n, "frames": n, "connections": n, "ports": [broker ports]}``."""
    writer = PcapWriter(out)
    streams: dict[str, _Stream] = {}
    frames = 0
    ports: set[int] = set()
    batch: list[bytes] = []
    batch_key: tuple | None = None

    def flush() -> None:
        if not batch or batch_key is None:
            return
        stream, direction, ts = batch_key
        data = b"".join(batch)
        for pos in range(0, len(data), SEGMENT):
            writer.packet(ts, stream, direction, _PSH | _ACK, data[pos:pos + SEGMENT])
        batch.clear()

    for record in records:
        conn = record["conn"]
        if connection is not None and connection not in conn:
            continue
        stream = streams.get(conn)
        if stream is None:
            client, broker = (split_address(a) for a in endpoints(conn))
            ports.add(broker[1])
            stream = streams[conn] = _Stream((writer.ip(client[0]), client[1]),
                                             (writer.ip(broker[0]), broker[1]))
            ts = record["ts"]
            stream.seq = {"in": _ISN_CLIENT, "out": _ISN_BROKER}
            writer.packet(ts, stream, "in", _SYN)
            writer.packet(ts, stream, "out", _SYN | _ACK)
            writer.packet(ts, stream, "in", _ACK)
        if "event" in record:
            if record["event"] == "socket_closed" and not stream.closed:
                flush()
                batch_key = None
                stream.closed = True
                writer.packet(record["ts"], stream, "out", _FIN | _ACK)
                writer.packet(record["ts"], stream, "in", _FIN | _ACK)
                writer.packet(record["ts"], stream, "out", _ACK)
            continue
        raw = record.get("raw")
        direction = record.get("dir")
        if raw is None or direction not in ("in", "out"):
            continue
        # Frames written together (one read or write batch: same time, direction, connection)
        # go out as one segment, as they went over the wire.
        key = (stream, direction, record["ts"])
        if key != batch_key:
            flush()
            batch_key = key
        batch.append(base64.b64decode(raw))
        frames += 1
    flush()
    return {"packets": writer.packets, "frames": frames, "connections": len(streams),
            "ports": sorted(ports)}
