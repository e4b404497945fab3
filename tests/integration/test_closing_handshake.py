"""The closing handshake at the socket, as RabbitMQ's rabbit_reader does it: after close-ok (ours
or the client's) the broker keeps reading and discarding until the client closes its side, so
frames a client pipelined behind its close never make the kernel reset the connection (a reset
reaches the client as EPIPE/ECONNRESET and can destroy our close or close-ok frame unread).

Where RabbitMQ 3.10.8 differs: it never half-closes (its socket stays open until the client
closes, then it closes with SO_LINGER 0, a reset), and after a frame error it stops reading and
resets after ~3 s. We send FIN right after our last frame and close with a FIN once the client's
arrives.
"""

from __future__ import annotations

import socket
import time

import pika
from pamqp import commands as C
from pamqp import frame as pframe

from raw_amqp import Raw
from test_connection import PROTOCOL_HEADER, RawClient, poll

from amqp_broker.server import connection as server_connection

# ~4 MB of publishes on channel 1, routed nowhere: more than a read's worth, so a broker that
# stopped reading would leave most of it unread.
BURST = Raw.publish_frames(1, "", "closing.nowhere", b"b" * 16000) * 250
CLOSE = pframe.marshal(C.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 0)
CLOSE_OK = pframe.marshal(C.Connection.CloseOk(), 0)


def open_raw(port: int) -> tuple[Raw, str]:
    """A raw client with channel 1 open, and its address as the broker names the peer."""
    raw = Raw(port)
    assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
    return raw, "%s:%d" % raw.sock.getsockname()[:2]


def connected(broker, peer: str) -> bool:
    """Whether the broker still holds the socket of ``peer``."""
    return broker.call(lambda: any(conn.peer == peer for conn in broker.server.connections))


def read_eof(raw: Raw, timeout: float = 5.0) -> bytes:
    """What the next recv returns: b'' for the broker's FIN (a reset raises)."""
    assert raw.buf == b"", raw.buf
    raw.sock.settimeout(timeout)
    return raw.sock.recv(65536)


def finish(broker, raw: Raw, peer: str) -> None:
    """The broker still reads whatever the client sends, and lets go once the client's side is
    closed."""
    raw.sock.sendall(BURST)  # discarded, not answered with a reset
    assert connected(broker, peer)
    raw.sock.shutdown(socket.SHUT_WR)
    assert poll(lambda: not connected(broker, peer))
    assert raw.sock.recv(65536) == b""
    raw.close()


def test_client_close_followed_by_a_burst_gets_close_ok_then_a_clean_eof(broker):
    raw, peer = open_raw(broker.port)
    raw.sock.sendall(CLOSE + BURST)  # pipelined behind the close, as amqplib's channels do
    assert isinstance(raw.method(), C.Connection.CloseOk)
    assert read_eof(raw) == b""
    finish(broker, raw, peer)


def test_a_client_that_never_closes_its_side_is_let_go_after_the_linger_timeout(broker, monkeypatch):
    monkeypatch.setattr(server_connection, "LINGER_TIMEOUT", 0.2)
    raw, peer = open_raw(broker.port)
    raw.sock.sendall(CLOSE)
    assert isinstance(raw.method(), C.Connection.CloseOk)
    assert read_eof(raw) == b""
    assert poll(lambda: not connected(broker, peer))  # the client still has its side open
    raw.close()


def test_a_closed_client_that_reads_nothing_is_let_go_after_the_linger_timeout(broker, monkeypatch, unique):
    """Our close-ok is stuck behind deliveries the client never reads: the writer cannot flush,
    and the connection must still end."""
    monkeypatch.setattr(server_connection, "LINGER_TIMEOUT", 0.2)
    queue = unique("flood")
    publisher = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
    try:
        ch = publisher.channel()
        ch.queue_declare(queue, auto_delete=True)
        body = b"f" * 200_000
        for _ in range(50):  # 10 MB: more than the socket buffers
            ch.basic_publish("", queue, body)
        ch.queue_declare(queue, passive=True)  # a round trip: every publish is routed
        client = RawClient(broker.port)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.handshake()
        peer = "%s:%d" % client.sock.getsockname()[:2]
        client.call(1, C.Channel.Open())
        client.send_method(1, C.Basic.Consume(queue=queue, consumer_tag="c", no_ack=True))
        client.send(CLOSE)  # and from now on reads nothing
        assert connected(broker, peer)
        assert poll(lambda: not connected(broker, peer))
        client.close()
    finally:
        publisher.close()


def test_connection_error_while_the_client_keeps_writing(broker):
    """A connection error (504, the broker waits for close-ok): the close frame arrives intact
    however much the client writes before and after answering it."""
    raw, peer = open_raw(broker.port)
    raw.sock.sendall(pframe.marshal(C.Channel.Open(), 1) + BURST)  # channel 1 is open: 504
    channel, close = raw.frame()
    assert channel == 0 and isinstance(close, C.Connection.Close)
    assert (close.reply_code, close.class_id, close.method_id) == (504, 20, 10)
    raw.sock.sendall(BURST)
    assert connected(broker, peer)
    raw.sock.sendall(CLOSE_OK + BURST)
    assert read_eof(raw) == b""
    finish(broker, raw, peer)


def test_frame_error_sends_close_then_reads_until_the_client_closes(broker):
    """A frame error ends the connection without waiting for close-ok; the close frame must still
    reach a client that is in the middle of a burst."""
    raw, peer = open_raw(broker.port)
    bad = bytearray(pframe.marshal(C.Basic.Qos(), 1))
    bad[-1] = 0  # not the frame-end octet
    raw.sock.sendall(bytes(bad) + BURST)
    channel, close = raw.frame()
    assert channel == 0 and isinstance(close, C.Connection.Close) and close.reply_code == 501
    assert read_eof(raw) == b""
    raw.sock.sendall(CLOSE_OK)
    finish(broker, raw, peer)


def test_320_on_shutdown_reaches_a_client_that_keeps_writing(fresh_broker):
    raw, peer = open_raw(fresh_broker.port)
    raw.sock.sendall(BURST)
    fresh_broker.call(fresh_broker.server.shutdown)
    channel, close = raw.frame()
    assert channel == 0 and isinstance(close, C.Connection.Close) and close.reply_code == 320
    raw.sock.sendall(BURST + CLOSE_OK + BURST)
    assert read_eof(raw) == b""
    assert connected(fresh_broker, peer)  # until the client closes (or the shutdown grace ends)
    raw.sock.shutdown(socket.SHUT_WR)
    assert poll(lambda: not fresh_broker._thread.is_alive())
    raw.close()


def test_shutdown_reads_the_close_ok_of_a_publisher_held_by_flow_control(fresh_broker):
    """A publisher held by a resource alarm is not read, but its close-ok must be: shutdown ends
    it as soon as the client answers, not after the shutdown grace."""
    raw, peer = open_raw(fresh_broker.port)
    server = fresh_broker.server
    raw.publish(1, "", "closing.nowhere")  # alarms hold connections that publish
    assert isinstance(raw.call(1, C.Basic.Qos(prefetch_count=1)), C.Basic.QosOk)
    fresh_broker.call(setattr, server, "memory_limit", 1)  # any RSS is above one byte
    assert poll(lambda: fresh_broker.call(lambda: server.flow.active))
    raw.publish(1, "", "closing.nowhere")  # read, then held unprocessed

    def held():
        return any(conn.peer == peer and conn._held is not None for conn in server.connections)

    assert poll(lambda: fresh_broker.call(held))  # the reader waits on the alarm
    fresh_broker.call(server.shutdown)
    channel, close = raw.frame()
    assert channel == 0 and isinstance(close, C.Connection.Close) and close.reply_code == 320
    raw.sock.sendall(CLOSE_OK)
    started = time.monotonic()
    assert read_eof(raw) == b""
    assert time.monotonic() - started < 1.0  # the shutdown grace is 2 s
    raw.close()


def test_refused_login_with_pipelined_frames_ends_with_a_clean_eof(broker):
    """Without authentication_failure_close a refused login gets no close frame (as RabbitMQ), just
    the end of the stream; frames pipelined behind start-ok must not turn that into a reset."""
    client = RawClient(broker.port)
    client.send(PROTOCOL_HEADER)
    assert client.read_method()[1].name == "Connection.Start"
    peer = "%s:%d" % client.sock.getsockname()[:2]
    client.send(b"".join([
        pframe.marshal(C.Connection.StartOk(client_properties={}, mechanism="PLAIN",
                                            response="\0guest\0wrong", locale="en_US"), 0),
        pframe.marshal(C.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0), 0),
        pframe.marshal(C.Connection.Open(virtual_host="/"), 0),
        BURST,
    ]))
    assert client.buf == b""
    assert client.sock.recv(65536) == b""  # FIN, not a reset
    client.send(BURST)  # still read and discarded
    assert connected(broker, peer)
    client.sock.shutdown(socket.SHUT_WR)
    assert poll(lambda: not connected(broker, peer))
    client.close()


def test_pika_closes_cleanly_right_after_a_burst_on_several_channels(broker, unique):
    params = pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0)
    body = b"p" * 32000
    for _ in range(3):
        conn = pika.BlockingConnection(params)
        channels = [conn.channel() for _ in range(8)]
        for _ in range(40):
            for ch in channels:
                ch.basic_publish("", unique("nowhere"), body)
        conn.close()  # raises on a reset or a missing close-ok
        assert conn.is_closed
