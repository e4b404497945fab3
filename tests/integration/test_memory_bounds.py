"""Memory stays bounded whatever a client does: oversized messages are refused before their body,
the memory alarm holds publishers (in the middle of a body too) and tells them so, memory of
aborted uploads goes back to the OS so the alarm clears, and replies a client does not read wait
in its socket rather than in the broker.
"""

from __future__ import annotations

import select
import socket
import time

import pika
import pytest
from pamqp import commands as C
from pamqp import frame as pframe
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from amqp_broker.testing import BrokerThread
from interop.crash.broker_proc import BrokerProcess
from pika_helpers import ping, poll
from raw_amqp import Raw

MiB = 1 << 20
BODY_FRAME = 131072 - 8  # the largest body frame under the default frame_max
GETS = 10_000


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def send_until_held(sock: socket.socket, data: bytes, stall: float = 2.0) -> int:
    """Send ``data``; returns how many bytes went out before the broker stopped reading (no
    progress for ``stall`` seconds), or all of them."""
    view = memoryview(data)
    sent = 0
    while sent < len(data):
        _, writable, _ = select.select([], [sock], [], stall)
        if not writable:
            break
        sock.setblocking(False)
        try:
            sent += sock.send(view[sent:sent + MiB])
        except BlockingIOError:
            pass
        finally:
            sock.setblocking(True)
    return sent


def body_frames(channel: int, size: int, fill: bytes = b"b") -> bytes:
    chunk = pframe.marshal(ContentBody(fill * BODY_FRAME), channel)
    whole, rest = divmod(size, BODY_FRAME)
    return chunk * whole + (pframe.marshal(ContentBody(fill * rest), channel) if rest else b"")


def announce(raw: Raw, channel: int, routing_key: str, body_size: int) -> None:
    raw.send(channel, C.Basic.Publish(exchange="", routing_key=routing_key),
             ContentHeader(0, body_size, C.Basic.Properties()))


def test_an_announced_2_gib_body_is_refused_at_once_and_the_connection_goes_on(broker, unique):
    raw = Raw(broker.port)
    queue = unique()
    assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
    announce(raw, 1, queue, 2 * 1024 * MiB)  # and no body at all
    channel, close = raw.frame()
    assert channel == 1 and isinstance(close, C.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406, "PRECONDITION_FAILED - message size 2147483648 is larger than configured max size 134217728",
        60, 40)
    raw.send(1, ContentBody(b"x" * 1000), C.Channel.CloseOk())  # late body frames are dropped
    assert isinstance(raw.call(2, C.Channel.Open()), C.Channel.OpenOk)
    assert isinstance(raw.call(2, C.Queue.Declare(queue=queue)), C.Queue.DeclareOk)
    raw.publish(2, "", queue, b"small")
    assert isinstance(raw.call(2, C.Basic.Get(queue=queue, no_ack=True)), C.Basic.GetOk)
    raw.close()


def test_max_message_size_is_configurable_and_inclusive():
    with BrokerThread(max_message_size=1000) as small:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", small.port, heartbeat=0))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("sized")
        ch.basic_publish("", "sized", b"x" * 1000)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.basic_publish("", "sized", b"x" * 1001)
        assert refused.value.args == (
            406, "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000")
        assert conn.channel().queue_declare("sized", passive=True).method.message_count == 1
        conn.close()


def test_the_alarm_holds_a_publisher_in_the_middle_of_a_body_and_tells_it(fresh_broker, unique):
    server = fresh_broker.server
    raw = Raw(fresh_broker.port, capabilities={"connection.blocked": True})
    queue = unique()
    assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
    assert isinstance(raw.call(1, C.Queue.Declare(queue=queue)), C.Queue.DeclareOk)
    body_size = 64 * MiB
    announce(raw, 1, queue, body_size)
    first = 8 * BODY_FRAME
    raw.sock.sendall(body_frames(1, first))  # the first MiB is read and gathered
    fresh_broker.call(setattr, server, "memory_limit", 1)  # any RSS is above one byte
    poll(lambda: fresh_broker.call(lambda: server.flow.active), what="the alarm")
    rest = body_frames(1, body_size - first)
    sent = send_until_held(raw.sock, rest)
    # Held: the socket's buffers fill up and the broker reads no more of the body.
    assert sent < 24 * MiB, sent
    channel, blocked = raw.frame()
    assert channel == 0 and isinstance(blocked, C.Connection.Blocked)
    assert blocked.reason == "low on memory"

    fresh_broker.call(setattr, server, "memory_limit", 0)
    channel, unblocked = raw.frame(timeout=15)
    assert channel == 0 and isinstance(unblocked, C.Connection.Unblocked)
    raw.sock.settimeout(30)
    raw.sock.sendall(rest[sent:])
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", fresh_broker.port, heartbeat=0))
    ch = conn.channel()
    poll(lambda: ch.queue_declare(queue, passive=True).method.message_count == 1, what="the message")
    method, _props, body = ch.basic_get(queue, auto_ack=True)
    assert len(body) == body_size and body == b"b" * body_size
    conn.close()
    raw.close()


def test_aborted_uploads_give_their_memory_back_and_the_alarm_clears(tmp_path):
    """Three uploads of 100 MiB messages cut off after 60 MiB set off the alarm; once they are
    gone, the broker's RSS falls back near where it started (free heap pages are given back), the
    alarm clears, and publishing works again. A publisher that arrives during the alarm and
    announced the capability is told it is blocked, as RabbitMQ tells it."""
    broker = BrokerProcess(str(tmp_path / "data"), log_path=str(tmp_path / "broker.log"),
                           extra_args=["--memory-high-watermark", str(150 * MiB)])
    broker.start()
    try:
        pid = broker.proc.pid
        baseline = rss(pid)
        upload = body_frames(1, 60 * MiB, b"u")
        uploads = []
        for _ in range(3):
            raw = Raw(broker.port)
            assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
            announce(raw, 1, "uploads", 100 * MiB)
            send_until_held(raw.sock, upload)
            uploads.append(raw)
        poll(lambda: "memory alarm set" in broker.log_tail(), what="the memory alarm")

        events = []
        late = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
        late.add_on_connection_blocked_callback(lambda c, f: events.append(f.method.NAME))
        late.add_on_connection_unblocked_callback(lambda c, f: events.append(f.method.NAME))
        late_ch = late.channel()
        late_ch.queue_declare("late")
        late_ch.basic_publish("", "late", b"during the alarm")
        poll(lambda: late.process_data_events(0) or events, what="connection.blocked")
        assert events == ["Connection.Blocked"]

        for raw in uploads:
            raw.close()
        poll(lambda: "memory alarm cleared" in broker.log_tail(), what="the alarm to clear")
        poll(lambda: rss(pid) < baseline + 40 * MiB, what=f"RSS back near {baseline}")
        poll(lambda: late.process_data_events(0) or len(events) == 2, what="connection.unblocked")
        assert events == ["Connection.Blocked", "Connection.Unblocked"]
        late_ch.confirm_delivery()
        late_ch.basic_publish("", "late", b"after the alarm")
        assert late_ch.queue_declare("late", passive=True).method.message_count == 2
        late.close()
        assert "Traceback" not in broker.log_tail(100_000)
    finally:
        assert broker.stop() == 0


def test_replies_a_client_does_not_read_wait_in_its_socket(fresh_broker, unique):
    """basic.get replies share the output bound with deliveries: a client that sends 10,000 gets
    without reading one reply does not make the broker buffer 40 MB of replies."""
    queue = unique()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", fresh_broker.port, heartbeat=0))
    ch = conn.channel()
    ch.queue_declare(queue)
    body = b"g" * 4000
    for _ in range(GETS):
        ch.basic_publish("", queue, body)
    assert ch.queue_declare(queue, passive=True).method.message_count == GETS

    raw = Raw(fresh_broker.port)
    # A fixed receive buffer (no autotuning up to 32 MB on loopback): the replies that do not fit
    # in the kernel's buffers are the broker's to hold or not.
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
    gets = pframe.marshal(C.Basic.Get(queue=queue, no_ack=True), 1) * GETS
    raw.sock.settimeout(30)
    raw.sock.sendall(gets)  # the broker goes on reading them only as replies drain

    def answered():
        return GETS - ch.queue_declare(queue, passive=True).method.message_count

    # Every reply taken is a message gone from the queue. With nothing read by the client, the
    # broker answers what the kernel's socket buffers (a few MB here) and its own output bound
    # (WRITE_HIGH_WATER, plus one batch in flight) take, then stops: over a second the count stays
    # put, far below the 40 MB of replies asked for.
    first = poll(answered, what="the first replies")
    time.sleep(0.5)
    settled = answered()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert answered() == settled
        time.sleep(0.05)
    assert first <= settled < 10 * MiB // len(body), settled

    received = 0
    data = b""
    while received < GETS:  # read the replies: every get is answered, in order
        chunk = raw.sock.recv(1 << 20)
        assert chunk
        data += chunk
        pos = 0
        while len(data) - pos >= 7:
            size = int.from_bytes(data[pos + 3:pos + 7], "big")
            if len(data) - pos < size + 8:
                break
            if data[pos] == 1:
                received += 1
            pos += size + 8
        data = data[pos:]
    assert ch.queue_declare(queue, passive=True).method.message_count == 0
    conn.close()
    raw.close()


def test_a_transaction_stops_growing_while_the_alarm_holds_its_publisher(fresh_broker, unique):
    """What a channel keeps until tx.commit grows only by publishes, and the alarm holds those.
    (Publishes waiting for their confirm are bounded by the store's flow control instead: over
    32 MiB waiting for the disk holds publishers, see test_memory_and_flow.)"""
    server = fresh_broker.server
    queue = unique()
    events = []
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", fresh_broker.port, heartbeat=0))
    conn.add_on_connection_blocked_callback(lambda c, f: events.append(f.method.NAME))
    tx = conn.channel()
    tx.queue_declare(queue, durable=True)
    tx.tx_select()
    for _ in range(3):
        tx.basic_publish("", queue, b"in the transaction")
    ping(tx)  # a round trip on the same channel: the three publishes are handled before it

    def pending():
        return sum(len(ch.core.tx or ()) for c in server.connections for ch in c.protocol.channels.values())

    assert fresh_broker.call(pending) == 3
    fresh_broker.call(setattr, server, "memory_limit", 1)
    poll(lambda: fresh_broker.call(lambda: server.flow.active), what="the alarm")
    for _ in range(100):
        tx.basic_publish("", queue, b"held")
    poll(lambda: conn.process_data_events(0) or events, what="connection.blocked")
    assert fresh_broker.call(pending) == 3  # nothing more taken into the transaction
    fresh_broker.call(setattr, server, "memory_limit", 0)
    tx.tx_commit()
    assert tx.queue_declare(queue, passive=True).method.message_count == 103
    conn.close()
