"""A minimal AMQP client on a plain socket, for the frames pika will not send or does not show
(class/method ids, cross-method frame order, methods pika refuses). Sends pamqp frames, reads
frames one at a time."""

from __future__ import annotations

import socket
import struct
import time

from pamqp import commands as C
from pamqp import frame as pframe
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from pika_helpers import SETTLE

DEFAULT_CAPABILITIES = {"consumer_cancel_notify": True, "publisher_confirms": True, "basic.nack": True}
_EOF = object()


class Raw:
    def __init__(self, port, capabilities=None, open_connection=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        assert isinstance(self.method(), C.Connection.Start)
        caps = DEFAULT_CAPABILITIES if capabilities is None else capabilities
        self.send(0, C.Connection.StartOk(client_properties={"capabilities": caps}, mechanism="PLAIN",
                                          response="\0guest\0guest", locale="en_US"))
        tune = self.method()
        self.send(0, C.Connection.TuneOk(channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0))
        if open_connection:
            self.send(0, C.Connection.Open(virtual_host="/"))
            assert isinstance(self.method(), C.Connection.OpenOk)

    def send(self, channel, *values):
        self.sock.sendall(b"".join(pframe.marshal(v, channel) for v in values))

    @staticmethod
    def publish_frames(channel, exchange, routing_key, body=b"x", mandatory=False, **properties):
        """The bytes of one basic.publish with its content (to pipeline several in one write)."""
        return b"".join(pframe.marshal(v, channel) for v in (
            C.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory),
            ContentHeader(0, len(body), C.Basic.Properties(**properties)),
            ContentBody(body),
        ))

    def publish(self, channel, exchange, routing_key, body=b"x", mandatory=False, **properties):
        self.sock.sendall(self.publish_frames(channel, exchange, routing_key, body, mandatory, **properties))

    def _next(self, timeout):
        """(channel, pamqp object) of the next non-heartbeat frame; (None, None) on timeout,
        (None, _EOF) when the broker closed the socket."""
        deadline = time.monotonic() + timeout
        while True:
            while len(self.buf) < 7 or len(self.buf) < 8 + struct.unpack_from(">I", self.buf, 3)[0]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, None
                self.sock.settimeout(remaining)
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    return None, None
                if not data:
                    return None, _EOF
                self.buf += data
            consumed, channel, value = pframe.unmarshal(self.buf)
            self.buf = self.buf[consumed:]
            if value.name != "Heartbeat":
                return channel, value

    def frame(self, timeout=5.0):
        """(channel, pamqp object) of the next frame (heartbeats skipped); (None, None) on timeout."""
        channel, value = self._next(timeout)
        assert value is not _EOF, "connection closed by the broker"
        return channel, value

    def frames(self, timeout=SETTLE):
        """Every frame arriving until ``timeout`` passes without one, or the socket closes."""
        out = []
        while True:
            channel, value = self._next(timeout)
            if value is None or value is _EOF:
                return out
            out.append((channel, value))

    def method(self, timeout=5.0):
        """The next frame's pamqp object; None on timeout."""
        return self.frame(timeout)[1]

    def call(self, channel, method):
        self.send(channel, method)
        return self.method()

    def close(self):
        self.sock.close()
