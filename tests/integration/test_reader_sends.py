"""A reader sends the outputs its input wrote to (server/connection.py, ``_send_or_wake``): a
delivery leaves from the publisher's task when the consumer connection's writer is idle, and the
writer takes over whatever the socket did not accept. These tests make the socket refuse part of
the output, so both paths write to one consumer, and check that every frame arrives whole, once,
in order.
"""

from __future__ import annotations

import threading

import pika
from pamqp import commands as C

from pika_helpers import ping
from raw_amqp import Raw

COUNT = 3000
SIZE = 2000  # 6 MB in all: more than the sockets' buffers and the broker's output bound


def body(i: int) -> bytes:
    return b"%08d" % i + b"." * (SIZE - 8)


def read_deliveries(raw: Raw, count: int) -> list[tuple[int, bytes]]:
    """(delivery tag, body) of the next ``count`` deliveries, frame by frame."""
    got = []
    while len(got) < count:
        _, method = raw.frame(timeout=10)
        assert isinstance(method, C.Basic.Deliver), method
        _, header = raw.frame(timeout=10)
        assert header.body_size == SIZE
        _, content = raw.frame(timeout=10)
        got.append((method.delivery_tag, content.value))
    return got


def no_ack_consumer(port: int, queue: str) -> Raw:
    """A raw connection consuming ``queue`` (declared auto-delete) without acks on channel 1."""
    raw = Raw(port)
    raw.send(1, C.Channel.Open())
    assert isinstance(raw.method(), C.Channel.OpenOk)
    assert isinstance(raw.call(1, C.Queue.Declare(queue=queue, auto_delete=True)), C.Queue.DeclareOk)
    assert isinstance(raw.call(1, C.Basic.Consume(queue=queue, no_ack=True)), C.Basic.ConsumeOk)
    return raw


def assert_all_in_order(got: list[tuple[int, bytes]]) -> None:
    assert [tag for tag, _ in got] == list(range(1, COUNT + 1))
    assert [content for _, content in got] == [body(i) for i in range(COUNT)]


def test_deliveries_to_a_consumer_that_reads_late_arrive_whole_and_in_order(broker, unique):
    queue = unique("late-reader")
    consumer = no_ack_consumer(broker.port, queue)

    # The consumer reads nothing until everything is published: the broker's writes to it soon go
    # only part of the way, then not at all, and its output fills up to the bound.
    publisher = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    try:
        channel = publisher.channel()
        for i in range(COUNT):
            channel.basic_publish("", queue, body(i))
        ping(channel)  # every publish has been handled
        got = read_deliveries(consumer, COUNT)
    finally:
        publisher.close()
        consumer.close()
    assert_all_in_order(got)


def test_a_connection_consuming_its_own_publishes_gets_them_in_order(broker, unique):
    """Deliveries and the replies to the same read go into one output, sent from its own reader."""
    queue = unique("own-reader")
    raw = no_ack_consumer(broker.port, queue)
    batch = b"".join(raw.publish_frames(1, "", queue, body(i)) for i in range(COUNT))
    # The broker stops reading a connection whose replies are not read, so this client writes
    # and reads at once.
    sender = threading.Thread(target=raw.sock.sendall, args=(batch,))
    sender.start()
    try:
        got = read_deliveries(raw, COUNT)
    finally:
        sender.join()
        raw.close()
    assert_all_in_order(got)
