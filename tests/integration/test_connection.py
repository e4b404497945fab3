"""Connections over real sockets: pika's three adapters, login and vhost errors, heartbeats,
dead peers, garbage on the wire, and connection churn."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time
from typing import Any

import pika
import pika.exceptions
import pytest
from pamqp import commands, frame, heartbeat
from pika.adapters.asyncio_connection import AsyncioConnection

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
LOGIN_REFUSED = (
    "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
)


class RawClient:
    """A minimal AMQP client on a plain socket, for what pika cannot be made to do."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_method(self, channel: int, method: Any) -> None:
        self.send(frame.marshal(method, channel))

    def read_frame(self, timeout: float = 5.0) -> tuple[int, Any] | None:
        """The next frame, or None at EOF; raises TimeoutError when nothing complete arrives."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf.startswith(b"AMQP") and len(self.buf) >= 8:
                header, self.buf = self.buf[:8], self.buf[8:]
                return 0, header
            if len(self.buf) >= 7:
                size = struct.unpack_from(">I", self.buf, 3)[0] + 8
                if len(self.buf) >= size:
                    _, channel, value = frame.unmarshal(self.buf[:size])
                    self.buf = self.buf[size:]
                    return channel, value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete frame")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buf += data

    def read_method(self, timeout: float = 5.0) -> tuple[int, Any] | None:
        """Like :meth:`read_frame`, skipping heartbeats."""
        while True:
            got = self.read_frame(timeout)
            if got is None or not isinstance(got[1], heartbeat.Heartbeat):
                return got

    def handshake(self, heartbeat_seconds: int = 0, vhost: str = "/") -> None:
        self.send(PROTOCOL_HEADER)
        assert self.read_method()[1].name == "Connection.Start"
        self.send_method(
            0,
            commands.Connection.StartOk(
                client_properties={"capabilities": {"authentication_failure_close": True}},
                mechanism="PLAIN",
                response="\0guest\0guest",
                locale="en_US",
            ),
        )
        assert self.read_method()[1].name == "Connection.Tune"
        self.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=heartbeat_seconds))
        self.send_method(0, commands.Connection.Open(virtual_host=vhost))
        assert self.read_method()[1].name == "Connection.OpenOk"

    def call(self, channel: int, method: Any) -> Any:
        self.send_method(channel, method)
        got = self.read_method()
        assert got is not None and got[0] == channel, got
        return got[1]

    def read_until_eof(self, timeout: float) -> list[Any]:
        """Every frame until the broker closes the socket (TimeoutError if it does not)."""
        frames = []
        while True:
            got = self.read_frame(timeout)
            if got is None:
                return frames
            frames.append(got[1])

    def close(self) -> None:
        self.sock.close()


def poll(predicate, timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Bounded polling of broker state (no event to await for "the broker has noticed")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- the three pika adapters ----------------------------------------------------------------------


def test_blocking_connection_round_trip(params, unique):
    queue = unique()
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    assert ch.queue_declare(queue, exclusive=True).method.queue == queue
    ch.basic_publish("", queue, b"blocking", pika.BasicProperties(content_type="text/plain"))
    for method, props, body in ch.consume(queue, inactivity_timeout=5):
        assert body == b"blocking" and props.content_type == "text/plain"
        ch.basic_ack(method.delivery_tag)
        break
    ch.cancel()
    ch.close()
    conn.close()
    assert conn.is_closed


def test_select_connection_round_trip(params, unique):
    queue = unique()
    result: dict[str, Any] = {}

    def on_open(conn):
        conn.channel(on_open_callback=on_channel)

    def on_channel(ch):
        result["channel"] = ch
        ch.queue_declare(queue, exclusive=True, callback=on_declared)

    def on_declared(_frame):
        ch = result["channel"]
        ch.basic_publish("", queue, b"select")
        ch.basic_consume(queue, on_message)

    def on_message(ch, method, _props, body):
        result["body"] = body
        ch.basic_ack(method.delivery_tag)
        ch.connection.close()

    def on_open_error(conn, error):
        result["error"] = error
        conn.ioloop.stop()

    def on_closed(conn, reason):
        result["reason"] = reason
        conn.ioloop.stop()

    conn = pika.SelectConnection(
        params, on_open_callback=on_open, on_open_error_callback=on_open_error, on_close_callback=on_closed
    )
    timer = conn.ioloop.call_later(10, conn.ioloop.stop)  # the bound: never hang the suite
    conn.ioloop.start()
    conn.ioloop.remove_timeout(timer)
    assert "error" not in result
    assert result["body"] == b"select"
    reason = result["reason"]
    assert isinstance(reason, pika.exceptions.ConnectionClosedByClient) and reason.reply_code == 200


def test_asyncio_connection_round_trip(params, unique):
    queue = unique()
    result: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    def on_open(conn):
        conn.channel(on_open_callback=on_channel)

    def on_channel(ch):
        result["channel"] = ch
        ch.queue_declare(queue, exclusive=True, callback=on_declared)

    def on_declared(_frame):
        ch = result["channel"]
        ch.basic_publish("", queue, b"asyncio")
        ch.basic_consume(queue, on_message)

    def on_message(ch, method, _props, body):
        result["body"] = body
        ch.basic_ack(method.delivery_tag)
        ch.connection.close()

    def on_open_error(_conn, error):
        result["error"] = error
        loop.stop()

    def on_closed(_conn, reason):
        result["reason"] = reason
        loop.stop()

    try:
        AsyncioConnection(
            params,
            on_open_callback=on_open,
            on_open_error_callback=on_open_error,
            on_close_callback=on_closed,
            custom_ioloop=loop,
        )
        timer = loop.call_later(10, loop.stop)  # the bound: never hang the suite
        loop.run_forever()
        timer.cancel()
    finally:
        loop.close()
    assert "error" not in result
    assert result["body"] == b"asyncio"
    reason = result["reason"]
    assert isinstance(reason, pika.exceptions.ConnectionClosedByClient) and reason.reply_code == 200


# -- login and vhost errors ------------------------------------------------------------------------


def test_wrong_password_is_refused_with_403(broker):
    params = pika.ConnectionParameters(
        "127.0.0.1", broker.port, credentials=pika.PlainCredentials("guest", "wrong"), heartbeat=0
    )
    with pytest.raises((pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)) as info:
        pika.BlockingConnection(params)
    assert f"(403) '{LOGIN_REFUSED}'" in str(info.value)


def test_unknown_user_is_refused_with_403(broker):
    params = pika.ConnectionParameters(
        "127.0.0.1", broker.port, credentials=pika.PlainCredentials("nobody", "guest"), heartbeat=0
    )
    with pytest.raises((pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)) as info:
        pika.BlockingConnection(params)
    assert f"(403) '{LOGIN_REFUSED}'" in str(info.value)


def test_missing_vhost_is_530(broker):
    params = pika.ConnectionParameters("127.0.0.1", broker.port, virtual_host="nope", heartbeat=0)
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        pika.BlockingConnection(params)
    assert "(530) 'NOT_ALLOWED - vhost nope not found'" in str(info.value)


# -- heartbeats ------------------------------------------------------------------------------------


def test_pika_heartbeat_1_keeps_an_idle_connection_alive(broker, unique):
    params = pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=1)
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        before = conn._impl.frames_received
        conn.sleep(3.0)  # idle, but pika's I/O loop runs: it sends and receives heartbeats
        received = conn._impl.frames_received - before
        assert received >= 2, f"the broker sent {received} heartbeat(s) in 3 s"
        assert conn.is_open
        assert ch.queue_declare(unique(), exclusive=True).method.message_count == 0
    finally:
        conn.close()


def test_broker_sends_heartbeats_to_a_quiet_client(broker):
    client = RawClient(broker.port)
    try:
        client.handshake(heartbeat_seconds=1)
        beats = 0
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            client.send(heartbeat.Heartbeat().marshal())  # we stay alive ourselves
            try:
                got = client.read_frame(timeout=0.3)
            except TimeoutError:
                continue
            assert got is not None, "the broker closed a connection that sent heartbeats"
            assert isinstance(got[1], heartbeat.Heartbeat) and got[0] == 0
            beats += 1
        assert beats >= 3
    finally:
        client.close()


def test_silent_client_is_dropped_and_its_state_released(broker, connection, unique):
    shared, excl = unique("shared"), unique("excl")
    ch = connection.channel()
    ch.queue_declare(shared)
    ch.basic_publish("", shared, b"unacked")

    client = RawClient(broker.port)
    client.handshake(heartbeat_seconds=1)
    assert client.call(1, commands.Channel.Open()).name == "Channel.OpenOk"
    assert client.call(1, commands.Queue.Declare(queue=excl, exclusive=True)).name == "Queue.DeclareOk"
    client.send_method(1, commands.Basic.Get(queue=shared))
    assert client.read_method()[1].name == "Basic.GetOk"
    silent_since = time.monotonic()
    # Now we say nothing at all, not even heartbeats. The broker's own heartbeats may arrive.
    try:
        frames = client.read_until_eof(timeout=6)
    finally:
        client.close()
    gone_after = time.monotonic() - silent_since
    assert 1.5 <= gone_after <= 4.0, gone_after
    assert all(f.name in ("ContentHeader", "ContentBody", "Heartbeat") for f in frames)

    # The exclusive queue died with its connection...
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        connection.channel().queue_declare(excl, passive=True)
    assert info.value.reply_code == 404
    assert info.value.reply_text == f"NOT_FOUND - no queue '{excl}' in vhost '/'"
    # ...and its unacked message is back, marked redelivered.
    method, _props, body = ch.basic_get(shared, auto_ack=True)
    assert body == b"unacked" and method.redelivered is True


# -- garbage never disturbs other connections ------------------------------------------------------


def _garbage_connections(port: int, stop: threading.Event, done: list[str], errors: list[str]) -> None:
    rng = random.Random(1234)
    kind = 0
    while not stop.is_set():
        client = RawClient(port)
        try:
            if kind == 0:  # random junk after a good handshake
                client.handshake()
                client.send(b"\x09" + rng.randbytes(199))
                frames = client.read_until_eof(timeout=5)
                close = frames[0] if frames else None
                if not (close is not None and close.name == "Connection.Close" and close.reply_code == 501):
                    errors.append(f"junk: {frames!r}")
                done.append("junk")
            elif kind == 1:  # not AMQP at all
                client.send(b"HELO example.org\r\n")
                frames = client.read_until_eof(timeout=5)
                if frames != [PROTOCOL_HEADER]:
                    errors.append(f"bad header: {frames!r}")
                done.append("header")
            else:  # half a frame, then hang up
                client.handshake()
                client.send_method(1, commands.Channel.Open())
                data = frame.marshal(commands.Queue.Declare(queue="half.frame"), 1)
                client.send(data[: len(data) // 2])
                done.append("half")
        except Exception as exc:  # reported to the test thread
            errors.append(f"{kind}: {exc!r}")
        finally:
            client.close()
        kind = (kind + 1) % 3


def test_garbage_on_other_connections_never_disturbs_a_working_one(broker, connection, unique):
    queue = unique()
    ch = connection.channel()
    ch.queue_declare(queue, exclusive=True)
    stop = threading.Event()
    done: list[str] = []
    errors: list[str] = []
    thread = threading.Thread(target=_garbage_connections, args=(broker.port, stop, done, errors), daemon=True)
    thread.start()
    try:
        sent = 0
        deadline = time.monotonic() + 20
        while (sent < 100 or len(done) < 30) and time.monotonic() < deadline:
            body = b"m%d" % sent
            ch.basic_publish("", queue, body)
            method, _props, got = ch.basic_get(queue, auto_ack=True)
            assert got == body and method.message_count == 0
            sent += 1
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    assert sent >= 100 and {"junk", "header", "half"} <= set(done) and len(done) >= 30
    # Consuming works too after all that.
    ch.basic_publish("", queue, b"last")
    for _method, _props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=5):
        assert body == b"last"
        break
    ch.cancel()
    assert connection.is_open


# -- churn -------------------------------------------------------------------------------------------


def test_200_connections_opened_and_closed_leave_nothing_behind(fresh_broker):
    params = pika.ConnectionParameters("127.0.0.1", fresh_broker.port, heartbeat=0)
    for i in range(200):
        if i % 2:
            conn = pika.BlockingConnection(params)
            conn.channel().queue_declare(f"churn.{i}", exclusive=True)
            conn.close()
        else:  # hang up without connection.close
            client = RawClient(fresh_broker.port)
            client.handshake()
            client.call(1, commands.Channel.Open())
            client.call(1, commands.Queue.Declare(queue=f"churn.{i}", exclusive=True))
            client.close()

    server = fresh_broker.server
    assert poll(lambda: fresh_broker.call(lambda: len(server.connections)) == 0), fresh_broker.call(
        lambda: len(server.connections)
    )
    assert fresh_broker.call(lambda: len(server.broker.sessions)) == 0
    queues = fresh_broker.call(lambda: sorted(server.broker.vhosts["/"].queues))
    assert not [name for name in queues if name.startswith("churn.")]


def test_dead_peer_that_stopped_reading_is_dropped_even_with_a_full_send_buffer(fresh_broker):
    """A peer that neither reads nor sends: the writer is stuck in send(), the heartbeat timer must
    still end the connection."""
    port = fresh_broker.port
    client = RawClient(port)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.handshake(heartbeat_seconds=1)
    client.call(1, commands.Channel.Open())
    client.call(1, commands.Queue.Declare(queue="flood"))
    client.send_method(1, commands.Basic.Consume(queue="flood", consumer_tag="c", no_ack=True))
    # From now on the raw client reads nothing and sends nothing.
    server = fresh_broker.server
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))
    try:
        ch = conn.channel()
        body = b"f" * 200_000
        for _ in range(100):  # 20 MB: far more than the socket buffers and the write high-water mark
            ch.basic_publish("", "flood", body)
        ch.queue_declare("flood", passive=True)  # a round trip: every publish has been routed
        assert fresh_broker.call(lambda: len(server.connections)) == 2
        # Dead after two silent heartbeat intervals, however full its buffers are.
        assert poll(lambda: fresh_broker.call(lambda: len(server.connections)) == 1, timeout=6)
    finally:
        conn.close()
        client.close()
