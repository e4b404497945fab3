"""Blocking raw-socket AMQP 0-9-1 connection for set-up (handshake, declare, bind, consume, close).

pamqp builds and parses the set-up frames; once set up, a worker takes over the socket and the
bytes already received (``leftover``) and runs its hot loop on raw frames (see ``wire.py``).
"""

from __future__ import annotations

import socket
import time

from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import heartbeat as pheartbeat

from . import wire


class AMQPError(Exception):
    def __init__(self, text: str, code: int = 0):
        super().__init__(text)
        self.code = code


CLIENT_PROPERTIES = {
    "product": "interop.bench",
    "platform": "Python",
    "capabilities": {
        "publisher_confirms": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "exchange_exchange_bindings": True,
        "authentication_failure_close": True,
    },
}


class Conn:
    def __init__(self, host: str, port: int, user: str = "guest", password: str = "guest",
                 vhost: str = "/", frame_max: int = 131072, name: str = "interop.bench",
                 timeout: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.frame_max = frame_max
        self.closed = False
        props = dict(CLIENT_PROPERTIES, connection_name=name)
        try:
            self.sock.sendall(wire.PROTOCOL_HEADER)
            self._expect(0, C.Connection.Start)
            self.send(0, C.Connection.StartOk(client_properties=props, mechanism="PLAIN",
                                              response=f"\0{user}\0{password}", locale="en_US"))
            tune = self._expect(0, C.Connection.Tune)
            fm = tune.frame_max or frame_max
            self.frame_max = min(fm, frame_max) if frame_max else fm
            self.channel_max = tune.channel_max
            self.send(0, C.Connection.TuneOk(channel_max=tune.channel_max or 2047,
                                             frame_max=self.frame_max, heartbeat=0))
            self.send(0, C.Connection.Open(virtual_host=vhost))
            self._expect(0, C.Connection.OpenOk)
        except BaseException:
            self.sock.close()
            raise

    # -- frames --
    def send(self, channel: int, method) -> None:
        self.sock.sendall(pframe.marshal(method, channel))

    def _read_frame(self):
        while True:
            if len(self.buf) >= 7:
                size = int.from_bytes(self.buf[3:7], "big")
                if len(self.buf) >= size + 8:
                    n, ch, fr = pframe.unmarshal(bytes(self.buf[: size + 8]))
                    del self.buf[:n]
                    return ch, fr
            elif self.buf[:1] == b"A" and len(self.buf) >= 8:  # protocol header: refused version
                raise AMQPError(f"broker refused the protocol: {bytes(self.buf[:8])!r}")
            data = self.sock.recv(65536)
            if not data:
                raise AMQPError("connection closed by the broker")
            self.buf += data

    def _expect(self, channel: int, *kinds):
        """next method on any channel; raises AMQPError on channel/connection close"""
        while True:
            ch, fr = self._read_frame()
            if isinstance(fr, pheartbeat.Heartbeat):
                continue
            if isinstance(fr, C.Connection.Close):
                try:
                    self.send(0, C.Connection.CloseOk())
                finally:
                    self.closed = True
                raise AMQPError(f"connection.close {fr.reply_code} {fr.reply_text}", fr.reply_code)
            if isinstance(fr, C.Channel.Close):
                self.send(ch, C.Channel.CloseOk())
                raise AMQPError(f"channel.close {fr.reply_code} {fr.reply_text}", fr.reply_code)
            if isinstance(fr, C.Connection.Blocked) or isinstance(fr, C.Connection.Unblocked):
                continue
            if isinstance(fr, kinds):
                return fr
            raise AMQPError(f"unexpected frame {fr!r} on channel {ch}")

    def rpc(self, channel: int, method, reply):
        self.send(channel, method)
        return self._expect(channel, reply)

    # -- helpers --
    def channel_open(self, channel: int = 1) -> None:
        self.rpc(channel, C.Channel.Open(), C.Channel.OpenOk)

    def queue_declare(self, channel: int, name: str, durable: bool = False, passive: bool = False,
                      exclusive: bool = False, auto_delete: bool = False):
        return self.rpc(channel, C.Queue.Declare(queue=name, durable=durable, passive=passive,
                                                 exclusive=exclusive, auto_delete=auto_delete),
                        C.Queue.DeclareOk)

    def exchange_declare(self, channel: int, name: str, kind: str, durable: bool = False,
                         auto_delete: bool = False, passive: bool = False):
        return self.rpc(channel, C.Exchange.Declare(exchange=name, exchange_type=kind, durable=durable,
                                                    auto_delete=auto_delete, passive=passive),
                        C.Exchange.DeclareOk)

    def queue_bind(self, channel: int, queue: str, exchange: str, key: str):
        return self.rpc(channel, C.Queue.Bind(queue=queue, exchange=exchange, routing_key=key),
                        C.Queue.BindOk)

    def basic_qos(self, channel: int, prefetch: int):
        return self.rpc(channel, C.Basic.Qos(prefetch_count=prefetch), C.Basic.QosOk)

    def basic_consume(self, channel: int, queue: str, tag: str, no_ack: bool):
        return self.rpc(channel, C.Basic.Consume(queue=queue, consumer_tag=tag, no_ack=no_ack),
                        C.Basic.ConsumeOk)

    def confirm_select(self, channel: int):
        return self.rpc(channel, C.Confirm.Select(), C.Confirm.SelectOk)

    def queue_delete(self, channel: int, name: str):
        return self.rpc(channel, C.Queue.Delete(queue=name), C.Queue.DeleteOk)

    def exchange_delete(self, channel: int, name: str):
        return self.rpc(channel, C.Exchange.Delete(exchange=name), C.Exchange.DeleteOk)

    def leftover(self) -> bytes:
        """bytes received past the last parsed frame (handed to a Scanner)"""
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def close(self, timeout: float = 10.0) -> str | None:
        """connection.close handshake; returns a warning text when the broker did not answer"""
        if self.closed:
            self.sock.close()
            return None
        self.closed = True
        try:
            self.sock.settimeout(timeout)
            self.send(0, C.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ch, fr = self._read_frame()
                if isinstance(fr, (C.Connection.CloseOk, C.Connection.Close)):
                    if isinstance(fr, C.Connection.Close):
                        self.send(0, C.Connection.CloseOk())
                    return None
            return "no connection.close-ok"
        except (OSError, AMQPError) as e:
            return f"close: {e}"
        finally:
            self.sock.close()


def raw_close(sock: socket.socket, scanner: wire.Scanner | None, timeout: float = 10.0,
              channel: bool = True) -> str | None:
    """channel.close then connection.close on a socket in raw mode, skipping whatever still
    arrives (deliveries, acks); returns a warning text when the broker did not answer in time"""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    sc = scanner or wire.Scanner(0, size=1 << 20)
    steps = []
    if channel:
        steps.append((pframe.marshal(C.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 1),
                      wire.CHANNEL_CLOSE_OK))
    steps.append((pframe.marshal(C.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 0),
                  wire.CONNECTION_CLOSE_OK))
    try:
        for data, want in steps:
            sock.sendall(data)
            while True:
                got = None
                for ch, m, payload in sc.others:
                    if m == want:
                        got = m
                    elif m == wire.CONNECTION_CLOSE:
                        sock.sendall(pframe.marshal(C.Connection.CloseOk(), 0))
                        return "connection.close %d %s while closing" % wire.parse_close(payload)
                    elif m == wire.CHANNEL_CLOSE and want == wire.CHANNEL_CLOSE_OK:
                        got = m  # both sides closing at once: treat as closed
                sc.others.clear()
                if got:
                    break
                if time.monotonic() > deadline:
                    return "broker did not answer the close in %.0f s" % timeout
                try:
                    n = sc.recv(sock)
                except socket.timeout:
                    return "broker did not answer the close in %.0f s" % timeout
                if n == 0:
                    return None if want == wire.CONNECTION_CLOSE_OK else "connection lost while closing"
                sc.feed()
        return None
    except OSError as e:
        return f"close: {e}"
    finally:
        sock.close()
