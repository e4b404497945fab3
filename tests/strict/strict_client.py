"""A raw-socket AMQP client for strict-mode tests: it sends the exact bytes a rule is about (to
RabbitMQ and to our broker alike) and reports what came back, as an observation both can be
compared by."""

from __future__ import annotations

import os
import socket
import struct
import time
from urllib.parse import urlparse

from pamqp import commands as C
from pamqp import frame as pframe

RABBIT_URL = os.environ.get("AMQP_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
ACCEPTED = ("accepted",)


def rabbitmq_address() -> tuple[str, int]:
    u = urlparse(RABBIT_URL if "://" in RABBIT_URL else f"amqp://{RABBIT_URL}")
    return u.hostname or "127.0.0.1", u.port or 5672


def server_product(host: str, port: int) -> str:
    """The product a broker names in connection.start (OSError when nothing answers)."""
    client = Client(host, port)
    try:
        client.sock.sendall(b"AMQP\x00\x00\x09\x01")
        start = client.next()
        product = (start.server_properties or {}).get("product", "") if start is not None else ""
        return product.decode() if isinstance(product, bytes) else str(product)
    finally:
        client.sock.close()


def node_violations(running) -> dict[str, int]:
    """The node's strict-mode counts of an in-process broker (amqp_broker.testing.BrokerThread)."""
    return dict(running.server.broker.counters.strict_violations)


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"


def method(channel: int, class_id: int, method_id: int, args: bytes) -> bytes:
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def sstr(value: bytes) -> bytes:
    return bytes((len(value),)) + value


def header(channel: int, body_size: int, properties: bytes) -> bytes:
    return frame(2, channel, struct.pack(">HHQ", 60, 0, body_size) + properties)


def publish(channel: int, routing_key: bytes, properties: bytes, body: bytes = b"z") -> bytes:
    """basic.publish to the default exchange with raw properties (flags included)."""
    return (method(channel, 60, 40, b"\x00\x00" + sstr(b"") + sstr(routing_key) + b"\x00")
            + header(channel, len(body), properties) + frame(3, channel, body))


class Client:
    """One connection; ``open()`` runs the handshake with the given tune values and locale."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def open(self, channel_max=0, frame_max=0, locale="en_US", vhost_open=True, channel=True):
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        assert isinstance(self.next(), C.Connection.Start)
        self.send(0, C.Connection.StartOk(client_properties={}, mechanism="PLAIN",
                                          response="\0guest\0guest", locale=locale))
        tune = self.next()
        assert isinstance(tune, C.Connection.Tune), tune
        self.send(0, C.Connection.TuneOk(channel_max=channel_max or tune.channel_max,
                                         frame_max=frame_max or tune.frame_max, heartbeat=0))
        if vhost_open:
            self.send(0, C.Connection.Open(virtual_host="/"))
            assert isinstance(self.next(), C.Connection.OpenOk)
        if channel:
            self.sock.sendall(method(1, 20, 10, sstr(b"")))
            assert isinstance(self.next(), C.Channel.OpenOk)
        return self

    def send(self, channel: int, *values) -> None:
        self.sock.sendall(b"".join(pframe.marshal(v, channel) for v in values))

    def next_frame(self, timeout: float = 10.0):
        """(channel, pamqp object) of the next frame but heartbeats; (None, None) when the
        broker closed the socket."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < 7 or len(self.buf) < 8 + struct.unpack_from(">I", self.buf, 3)[0]:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return None, None
            self.buf += data
        consumed, channel, value = pframe.unmarshal(self.buf)
        self.buf = self.buf[consumed:]
        if value.name == "Heartbeat":
            return self.next_frame(timeout)
        return channel, value

    def next(self, timeout: float = 10.0):
        return self.next_frame(timeout)[1]

    def observe(self, channel: int = 1):
        """What the broker made of the frames sent so far: ACCEPTED when a channel.flow
        (active) on ``channel`` is answered (every reply before it skipped), else the
        ("connection.close" | "channel.close", code, class id, method id, text) that came."""
        self.sock.sendall(method(channel, 20, 20, b"\x01"))
        while True:
            number, value = self.next_frame()
            if value is None:
                return ("socket closed",)
            if isinstance(value, C.Channel.FlowOk) and number == channel:
                return ACCEPTED
            if isinstance(value, (C.Connection.Close, C.Channel.Close)):
                kind = "connection.close" if isinstance(value, C.Connection.Close) else "channel.close"
                if kind == "connection.close":
                    self.send(0, C.Connection.CloseOk())
                else:
                    self.send(number, C.Channel.CloseOk())
                return (kind, value.reply_code, value.class_id, value.method_id, value.reply_text)

    def close(self) -> None:
        try:
            self.send(0, C.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
            self.next(2.0)
        except OSError:
            pass
        self.sock.close()
