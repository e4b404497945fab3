"""The basic class through a real pika client: qos, consume/cancel, round-robin, publish/return,
get, ack/nack/reject, requeue order and redelivered flags, recover, and close-time requeue.

The redelivery scenarios mirror the interop reference (RabbitMQ 3.10.8) case by case. A few methods
pika refuses to send (a reused consumer tag, immediate=true, cancel of an unknown tag) go through a
tiny raw pamqp client instead.
"""

from __future__ import annotations

import re

import pika
import pytest
from pamqp import commands as C
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from pika_helpers import (
    channel_error, connection_error, get_soon, ping, ready_count, ready_soon, SETTLE, settle, wait_for,
)
from raw_amqp import Raw


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def pub(connection):
    """A confirm-mode channel: basic_publish returns once the message is enqueued."""
    ch = connection.channel()
    ch.confirm_delivery()
    return ch


def publish_n(pub, queue, n=5, start=1):
    for i in range(start, start + n):
        pub.basic_publish("", queue, b"m%d" % i)


def consume_into(channel, queue, box, **kwargs):
    """basic.consume appending (body, redelivered, delivery_tag) for every delivery to ``box``."""
    return channel.basic_consume(
        queue, lambda _ch, m, _p, body: box.append((body.decode(), m.redelivered, m.delivery_tag)), **kwargs)


def collect(connection, box, n):
    wait_for(connection, lambda: len(box) >= n)
    return box


@pytest.fixture
def raw(broker):
    client = Raw(broker.port)
    yield client
    client.close()


# -- qos ----------------------------------------------------------------------------------------


def test_prefetch_per_consumer(connection, pub, unique):
    q1, q2 = unique("a"), unique("b")
    ch = connection.channel()
    for q in (q1, q2):
        ch.queue_declare(q)
        publish_n(pub, q, 5)
    ch.basic_qos(prefetch_count=2)  # global=false: a limit for each new consumer
    box1, box2 = [], []
    consume_into(ch, q1, box1)
    consume_into(ch, q2, box2)
    wait_for(connection, lambda: len(box1) == 2 and len(box2) == 2)
    settle(connection)
    assert [b for b, _, _ in box1] == ["m1", "m2"]
    assert [b for b, _, _ in box2] == ["m1", "m2"]
    ch.basic_ack(box1[0][2])
    wait_for(connection, lambda: len(box1) == 3)
    settle(connection)
    assert (len(box1), len(box2)) == (3, 2)


def test_prefetch_per_consumer_on_one_queue(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q, 10)
    ch.basic_qos(prefetch_count=2, global_qos=False)
    box1, box2 = [], []
    consume_into(ch, q, box1)
    consume_into(ch, q, box2)
    wait_for(connection, lambda: len(box1) + len(box2) == 4)
    settle(connection)
    assert (len(box1), len(box2)) == (2, 2)
    assert ready_count(pub, q) == 6


def test_prefetch_global_is_shared_by_the_channel(connection, pub, unique):
    q1, q2 = unique("a"), unique("b")
    ch = connection.channel()
    for q in (q1, q2):
        ch.queue_declare(q)
        publish_n(pub, q, 5)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    box1, box2 = [], []
    consume_into(ch, q1, box1)
    consume_into(ch, q2, box2)
    wait_for(connection, lambda: len(box1) + len(box2) == 3)
    settle(connection)
    assert len(box1) + len(box2) == 3
    # Acking one frees exactly one slot on the channel.
    ch.basic_ack((box1 or box2)[0][2])
    wait_for(connection, lambda: len(box1) + len(box2) == 4)
    settle(connection)
    assert len(box1) + len(box2) == 4
    ch.basic_ack(0, multiple=True)
    wait_for(connection, lambda: len(box1) + len(box2) == 7)
    settle(connection)
    assert len(box1) + len(box2) == 7


def test_prefetch_global_and_per_consumer_together(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q, 10)
    ch.basic_qos(prefetch_count=2, global_qos=False)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    box1, box2 = [], []
    consume_into(ch, q, box1)
    consume_into(ch, q, box2)
    wait_for(connection, lambda: len(box1) + len(box2) == 3)
    settle(connection)
    assert sorted((len(box1), len(box2))) == [1, 2]
    assert ready_count(pub, q) == 7


def test_prefetch_one_never_holds_two(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q, 8)
    ch.basic_qos(prefetch_count=1)
    box = []
    consume_into(ch, q, box)
    acked = 0
    while acked < 8:
        wait_for(connection, lambda: len(box) > acked)
        ping(ch)
        connection.process_data_events(time_limit=0.02)
        assert len(box) == acked + 1, "a prefetch-1 consumer got a second unacked message"
        ch.basic_ack(box[-1][2])
        acked += 1
    assert [b for b, _, _ in box] == ["m%d" % i for i in range(1, 9)]


def test_prefetch_size_is_not_implemented(connection):
    ch = connection.channel()
    connection_error(connection, lambda: ch.basic_qos(prefetch_size=1), 540,
                     "NOT_IMPLEMENTED - prefetch_size!=0 (1)")


# -- consume / cancel ---------------------------------------------------------------------------


def test_server_generated_consumer_tag(raw, unique):
    # pika makes up its own tags, so this goes raw: an empty consumer tag asks the server for one.
    q = unique()
    raw.call(1, C.Channel.Open())
    raw.call(1, C.Queue.Declare(queue=q, auto_delete=True))
    tags = {raw.call(1, C.Basic.Consume(queue=q, consumer_tag="")).consumer_tag for _ in range(3)}
    assert len(tags) == 3
    for tag in tags:
        assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag), tag


def test_consume_no_ack(connection, channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    publish_n(pub, q, 3)
    box = []
    consume_into(channel, q, box, auto_ack=True)
    collect(connection, box, 3)
    assert box == [("m1", False, 1), ("m2", False, 2), ("m3", False, 3)]
    channel.close()
    assert ready_count(pub, q) == 0  # nothing was left unacked to come back


def test_consume_missing_queue(connection, unique):
    q = unique()
    ch = connection.channel()
    channel_error(connection, lambda: ch.basic_consume(q, lambda *_: None), 404,
                  f"NOT_FOUND - no queue '{q}' in vhost '/'")


def test_exclusive_consumer(connection, unique):
    q = unique()
    ch1 = connection.channel()
    ch1.queue_declare(q)
    ch1.basic_consume(q, lambda *_: None, exclusive=True)
    text = f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"
    ch2 = connection.channel()
    channel_error(connection, lambda: ch2.basic_consume(q, lambda *_: None, exclusive=True), 403, text)
    ch3 = connection.channel()
    channel_error(connection, lambda: ch3.basic_consume(q, lambda *_: None), 403, text)
    # basic.get is still allowed.
    assert connection.channel().basic_get(q) == (None, None, None)


def test_exclusive_consume_when_queue_has_consumers(connection, unique):
    q = unique()
    ch1 = connection.channel()
    ch1.queue_declare(q)
    ch1.basic_consume(q, lambda *_: None)
    ch2 = connection.channel()
    channel_error(connection, lambda: ch2.basic_consume(q, lambda *_: None, exclusive=True), 403,
                  f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use")


def test_exclusive_consumer_cancel_frees_the_queue(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    tag = channel.basic_consume(q, lambda *_: None, exclusive=True)
    channel.basic_cancel(tag)
    assert channel.basic_consume(q, lambda *_: None, exclusive=True, consumer_tag="again") == "again"
    assert channel.queue_declare(q, passive=True).method.consumer_count == 1


def test_reused_consumer_tag_closes_the_connection(raw, unique):
    q = unique()
    assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
    raw.call(1, C.Queue.Declare(queue=q, auto_delete=True))
    ok = raw.call(1, C.Basic.Consume(queue=q, consumer_tag="ctag1"))
    assert isinstance(ok, C.Basic.ConsumeOk) and ok.consumer_tag == "ctag1"
    raw.send(1, C.Basic.Consume(queue=q, consumer_tag="ctag1"))
    channel, close = raw.frame()
    assert channel == 0 and isinstance(close, C.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        530, "NOT_ALLOWED - attempt to reuse consumer tag 'ctag1'", 60, 20)


def test_same_consumer_tag_on_two_channels(connection, unique):
    q = unique()
    ch1, ch2 = connection.channel(), connection.channel()
    ch1.queue_declare(q)
    assert ch1.basic_consume(q, lambda *_: None, consumer_tag="same") == "same"
    assert ch2.basic_consume(q, lambda *_: None, consumer_tag="same") == "same"
    assert ch1.queue_declare(q, passive=True).method.consumer_count == 2


def test_cancel_unknown_tag_answers_cancel_ok(raw):
    raw.call(1, C.Channel.Open())
    ok = raw.call(1, C.Basic.Cancel(consumer_tag="nope"))
    assert isinstance(ok, C.Basic.CancelOk) and ok.consumer_tag == "nope"


def test_cancel_stops_deliveries(connection, channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    box = []
    tag = consume_into(channel, q, box, auto_ack=True)
    pub.basic_publish("", q, b"m1")
    collect(connection, box, 1)
    channel.basic_cancel(tag)
    pub.basic_publish("", q, b"m2")
    settle(connection)
    assert box == [("m1", False, 1)]
    assert ready_count(pub, q) == 1


def test_cancel_keeps_unacked_messages_unacked(connection, channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    publish_n(pub, q, 2)
    box = []
    tag = consume_into(channel, q, box)
    collect(connection, box, 2)
    channel.basic_cancel(tag)
    assert ready_count(pub, q) == 0
    channel.basic_ack(box[1][2])
    channel.close()
    method, _, body = get_soon(pub, q)
    assert (body, method.redelivered, method.message_count) == (b"m1", True, 0)


def test_round_robin_across_three_consumers(connection, pub, unique):
    q = unique()
    pub.queue_declare(q)
    boxes = [[], [], []]
    for box in boxes:
        ch = connection.channel()
        ch.basic_consume(q, lambda _ch, _m, _p, body, box=box: box.append(body), auto_ack=True)
    publish_n(pub, q, 9)
    wait_for(connection, lambda: sum(map(len, boxes)) == 9)
    assert boxes == [[b"m1", b"m4", b"m7"], [b"m2", b"m5", b"m8"], [b"m3", b"m6", b"m9"]]


def test_round_robin_skips_a_full_consumer(connection, pub, unique):
    q = unique()
    pub.queue_declare(q)
    busy_ch, free_ch = connection.channel(), connection.channel()
    busy_ch.basic_qos(prefetch_count=1)
    busy, free = [], []
    consume_into(busy_ch, q, busy)
    consume_into(free_ch, q, free, auto_ack=True)
    publish_n(pub, q, 5)
    wait_for(connection, lambda: len(busy) + len(free) == 5)
    assert [b for b, _, _ in busy] == ["m1"]
    assert [b for b, _, _ in free] == ["m2", "m3", "m4", "m5"]


# -- publish ------------------------------------------------------------------------------------


def test_mandatory_unroutable_is_returned(connection, channel, unique):
    returned = []
    channel.add_on_return_callback(lambda _ch, method, props, body: returned.append((method, props, body)))
    rk = unique("nobody")
    channel.basic_publish("amq.direct", rk, b"hello", pika.BasicProperties(content_type="text/plain",
                                                                           message_id="mid1"), mandatory=True)
    wait_for(connection, lambda: returned)
    method, props, body = returned[0]
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key) == (
        312, "NO_ROUTE", "amq.direct", rk)
    assert (props.content_type, props.message_id, body) == ("text/plain", "mid1", b"hello")


def test_mandatory_to_fanout_without_bindings(connection, channel, unique):
    x = unique("x")
    channel.exchange_declare(x, "fanout")
    returned = []
    channel.add_on_return_callback(lambda _ch, method, _p, body: returned.append((method, body)))
    channel.basic_publish(x, "", b"r", mandatory=True)
    wait_for(connection, lambda: returned)
    method, body = returned[0]
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key, body) == (
        312, "NO_ROUTE", x, "", b"r")


def test_mandatory_routable_is_not_returned(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    returned = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.basic_publish("", q, b"kept", mandatory=True)
    channel.basic_publish("", unique("nobody"), b"dropped")  # not mandatory: silently dropped
    ping(channel)
    settle(connection)
    assert returned == []
    method, _, body = channel.basic_get(q, auto_ack=True)
    assert body == b"kept"


def test_publish_to_missing_exchange(connection, unique):
    x = unique("x")
    ch = connection.channel()

    def publish():
        ch.basic_publish(x, "rk", b"m", mandatory=True)
        ping(ch)

    channel_error(connection, publish, 404, f"NOT_FOUND - no exchange '{x}' in vhost '/'")


def test_publish_immediate_is_not_implemented(raw, unique):
    raw.call(1, C.Channel.Open())
    raw.send(1, C.Basic.Publish(exchange="", routing_key=unique(), immediate=True),
             ContentHeader(0, 1, C.Basic.Properties()), ContentBody(b"x"))
    channel, close = raw.frame()
    assert channel == 0 and isinstance(close, C.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        540, "NOT_IMPLEMENTED - immediate=true", 60, 40)


# -- get ----------------------------------------------------------------------------------------


def test_get_ok_and_get_empty(channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    assert channel.basic_get(q) == (None, None, None)
    publish_n(pub, q, 3)
    for i, remaining in ((1, 2), (2, 1), (3, 0)):
        method, _, body = channel.basic_get(q)
        assert (method.delivery_tag, method.redelivered, method.exchange, method.routing_key,
                method.message_count, body) == (i, False, "", q, remaining, b"m%d" % i)
    assert channel.basic_get(q) == (None, None, None)
    assert ready_count(channel, q) == 0


def test_get_missing_queue(connection, unique):
    q = unique()
    ch = connection.channel()
    channel_error(connection, lambda: ch.basic_get(q), 404, f"NOT_FOUND - no queue '{q}' in vhost '/'")


def test_get_after_reject_requeue_is_redelivered(channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    pub.basic_publish("", q, b"a")
    pub.basic_publish("", q, b"b")
    method, _, body = channel.basic_get(q)
    assert (method.delivery_tag, method.redelivered, method.message_count, body) == (1, False, 1, b"a")
    channel.basic_reject(method.delivery_tag, requeue=True)
    method, _, body = channel.basic_get(q)
    assert (method.delivery_tag, method.redelivered, method.message_count, body) == (2, True, 1, b"a")


# -- ack / nack / reject ------------------------------------------------------------------------


def test_ack_multiple(channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    publish_n(pub, q, 4)
    tags = [channel.basic_get(q)[0].delivery_tag for _ in range(4)]
    assert tags == [1, 2, 3, 4]
    channel.basic_ack(3, multiple=True)
    channel.close()  # only tag 4 is still unacked
    method, _, body = get_soon(pub, q)
    assert (body, method.redelivered, method.message_count) == (b"m4", True, 0)


def test_ack_multiple_zero_acks_everything(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q, 3)
    assert [ch.basic_get(q)[0].delivery_tag for _ in range(3)] == [1, 2, 3]
    ch.basic_ack(0, multiple=True)
    ping(ch)
    ch.close()
    assert ready_count(pub, q) == 0


def test_nack_multiple_without_requeue_drops(channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    publish_n(pub, q, 3)
    for _ in range(3):
        channel.basic_get(q)
    channel.basic_nack(2, multiple=True, requeue=False)
    channel.close()
    method, _, body = get_soon(pub, q)
    assert (body, method.redelivered, method.message_count) == (b"m3", True, 0)


def test_reject_without_requeue_drops(channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    pub.basic_publish("", q, b"m")
    method, _, _ = channel.basic_get(q)
    channel.basic_reject(method.delivery_tag, requeue=False)
    ok = channel.queue_declare(q, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (0, 0)


def test_reject_requeue_goes_back_to_the_head(channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    publish_n(pub, q, 3)
    method, _, _ = channel.basic_get(q)
    channel.basic_reject(method.delivery_tag, requeue=True)
    got = [channel.basic_get(q, auto_ack=True) for _ in range(3)]
    assert [(b, m.redelivered) for m, _, b in got] == [(b"m1", True), (b"m2", False), (b"m3", False)]


@pytest.mark.parametrize(
    "action,text",
    [
        (lambda ch: ch.basic_ack(99), "PRECONDITION_FAILED - unknown delivery tag 99"),
        (lambda ch: ch.basic_ack(0), "PRECONDITION_FAILED - unknown delivery tag 0"),
        (lambda ch: ch.basic_reject(42), "PRECONDITION_FAILED - unknown delivery tag 42"),
        (lambda ch: ch.basic_nack(42, multiple=False), "PRECONDITION_FAILED - unknown delivery tag 42"),
        (lambda ch: ch.basic_nack(42, multiple=True), "PRECONDITION_FAILED - unknown delivery tag 42"),
    ],
    ids=["ack", "ack-zero", "reject", "nack", "nack-multiple"],
)
def test_unknown_delivery_tag(connection, action, text):
    ch = connection.channel()

    def call():
        action(ch)
        ping(ch)

    channel_error(connection, call, 406, text)


def test_multiple_with_tag_zero_and_nothing_outstanding_is_fine(connection, channel):
    channel.basic_ack(0, multiple=True)
    channel.basic_nack(0, multiple=True)
    ping(channel)
    assert channel.is_open and connection.is_open


def test_ack_twice(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    pub.basic_publish("", q, b"m")
    method, _, _ = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)

    def again():
        ch.basic_ack(method.delivery_tag)
        ping(ch)

    channel_error(connection, again, 406, "PRECONDITION_FAILED - unknown delivery tag 1")


def test_ack_of_auto_ack_delivery(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    pub.basic_publish("", q, b"m")
    method, _, _ = ch.basic_get(q, auto_ack=True)
    assert method.delivery_tag == 1

    def ack():
        ch.basic_ack(1)
        ping(ch)

    channel_error(connection, ack, 406, "PRECONDITION_FAILED - unknown delivery tag 1")


def test_ack_multiple_of_unknown_higher_tag(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q, 2)
    ch.basic_get(q)
    ch.basic_get(q)

    def ack():
        ch.basic_ack(5, multiple=True)
        ping(ch)

    channel_error(connection, ack, 406, "PRECONDITION_FAILED - unknown delivery tag 5")
    # Nothing was acked: both messages come back.
    ready_soon(pub, q, 2)


def test_ack_multiple_of_an_already_acked_tag(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q, 3)
    for _ in range(3):
        ch.basic_get(q)
    ch.basic_ack(2)

    def ack():
        ch.basic_ack(2, multiple=True)
        ping(ch)

    channel_error(connection, ack, 406, "PRECONDITION_FAILED - unknown delivery tag 2")
    ready_soon(pub, q, 2)


# -- redelivery order (each mirrors an interop reference case) ----------------------------------


def test_redelivery_nack_requeue_while_consumer_active(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q)
    box = []
    consume_into(ch, q, box)
    collect(connection, box, 5)
    ch.basic_nack(box[2][2], requeue=True)
    collect(connection, box, 6)
    assert box == [("m1", False, 1), ("m2", False, 2), ("m3", False, 3), ("m4", False, 4),
                   ("m5", False, 5), ("m3", True, 6)]


def test_redelivery_nack_after_cancel_to_second_consumer(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q)
    box = []
    tag = consume_into(ch, q, box)
    collect(connection, box, 5)
    ch.basic_cancel(tag)
    ch.basic_nack(box[2][2], requeue=True)
    for i in (0, 1, 3, 4):
        ch.basic_ack(box[i][2])
    ping(ch)
    ch2 = connection.channel()
    box2 = []
    consume_into(ch2, q, box2, auto_ack=True)
    collect(connection, box2, 1)
    settle(connection)
    assert box2 == [("m3", True, 1)]


def test_redelivery_nack_two_then_channel_close(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q)
    box = []
    tag = consume_into(ch, q, box)
    collect(connection, box, 5)
    ch.basic_cancel(tag)
    ch.basic_nack(box[3][2], requeue=True)
    ch.basic_nack(box[1][2], requeue=True)
    ping(ch)
    ch.close()
    ch2 = connection.channel()
    box2 = []
    consume_into(ch2, q, box2, auto_ack=True)
    collect(connection, box2, 5)
    assert box2 == [("m1", True, 1), ("m2", True, 2), ("m3", True, 3), ("m4", True, 4), ("m5", True, 5)]


def test_redelivery_requeue_keeps_position_before_newer_messages(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q)
    ch.basic_qos(prefetch_count=3)
    box = []
    tag = consume_into(ch, q, box)
    collect(connection, box, 3)
    settle(connection)
    assert box == [("m1", False, 1), ("m2", False, 2), ("m3", False, 3)]
    ch.basic_cancel(tag)
    ch.basic_nack(box[1][2], requeue=True)
    ping(ch)
    ch2 = connection.channel()
    box2 = []
    consume_into(ch2, q, box2, auto_ack=True)
    collect(connection, box2, 3)
    settle(connection)
    assert box2 == [("m2", True, 1), ("m4", False, 2), ("m5", False, 3)]


def test_redelivery_nack_multiple(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q)
    box = []
    tag = consume_into(ch, q, box)
    collect(connection, box, 5)
    ch.basic_cancel(tag)
    ch.basic_nack(box[4][2], multiple=True, requeue=True)
    ping(ch)
    ch2 = connection.channel()
    box2 = []
    consume_into(ch2, q, box2, auto_ack=True)
    collect(connection, box2, 5)
    assert box2 == [("m1", True, 1), ("m2", True, 2), ("m3", True, 3), ("m4", True, 4), ("m5", True, 5)]


def test_recover_requeue_with_active_consumer(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q)
    box = []
    consume_into(ch, q, box)
    collect(connection, box, 5)
    ch.basic_recover(requeue=True)
    collect(connection, box, 10)
    assert box == [("m%d" % i, False, i) for i in range(1, 6)] + [("m%d" % i, True, i + 5) for i in range(1, 6)]


def test_recover_requeue_after_some_acks(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q)
    box = []
    consume_into(ch, q, box)
    collect(connection, box, 5)
    ch.basic_ack(box[1][2])
    ch.basic_ack(box[3][2])
    ch.basic_recover(requeue=True)
    collect(connection, box, 8)
    assert box[5:] == [("m1", True, 6), ("m3", True, 7), ("m5", True, 8)]


def test_recover_without_requeue_is_not_implemented(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q)
    box = []
    consume_into(ch, q, box)
    collect(connection, box, 5)
    connection_error(connection, lambda: ch.basic_recover(requeue=False), 540, "NOT_IMPLEMENTED - requeue=false")


def test_unacked_requeued_in_order_when_channel_closes(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q, 5)
    ch.basic_qos(prefetch_count=3)
    box = []
    consume_into(ch, q, box)
    collect(connection, box, 3)
    ch.basic_ack(box[1][2])
    collect(connection, box, 4)  # the ack freed a slot: m4 is delivered too
    settle(connection)
    assert [b for b, _, _ in box] == ["m1", "m2", "m3", "m4"]
    ch.close()
    ch2 = connection.channel()
    box2 = []
    consume_into(ch2, q, box2, auto_ack=True)
    collect(connection, box2, 4)
    settle(connection)
    assert box2 == [("m1", True, 1), ("m3", True, 2), ("m4", True, 3), ("m5", False, 4)]


def test_unacked_requeued_in_order_when_connection_closes(params, connection, pub, unique):
    q = unique()
    pub.queue_declare(q)
    publish_n(pub, q, 5)
    first = pika.BlockingConnection(params)
    ch = first.channel()
    box = []
    consume_into(ch, q, box)
    collect(first, box, 5)
    ch.basic_ack(box[2][2])
    first.close()
    ch2 = connection.channel()
    box2 = []
    consume_into(ch2, q, box2, auto_ack=True)
    collect(connection, box2, 4)
    settle(connection)
    assert box2 == [("m1", True, 1), ("m2", True, 2), ("m4", True, 3), ("m5", True, 4)]


def test_delivery_tags_are_shared_by_consumers_on_a_channel(connection, pub, unique):
    q1, q2 = unique("a"), unique("b")
    ch = connection.channel()
    ch.queue_declare(q1)
    ch.queue_declare(q2)
    box = []
    ch.basic_consume(q1, lambda _c, m, _p, b: box.append((m.consumer_tag, b.decode(), m.delivery_tag)),
                     consumer_tag="cA")
    ch.basic_consume(q2, lambda _c, m, _p, b: box.append((m.consumer_tag, b.decode(), m.delivery_tag)),
                     consumer_tag="cB")
    pub.basic_publish("", q1, b"a1")
    pub.basic_publish("", q2, b"b1")
    pub.basic_publish("", q1, b"a2")
    collect(connection, box, 3)
    assert box == [("cA", "a1", 1), ("cB", "b1", 2), ("cA", "a2", 3)]
    # basic.get on the same channel continues the same sequence.
    ch.basic_cancel("cA")
    pub.basic_publish("", q1, b"a3")
    method, _, _ = ch.basic_get(q1)
    assert method.delivery_tag == 4


def test_get_and_consume_with_empty_queue_name(connection, pub, unique):
    ch = connection.channel()
    channel_error(connection, lambda: ch.basic_get(""), 404, "NOT_FOUND - no previously declared queue")
    ch = connection.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    publish_n(pub, q, 2)
    method, _, body = ch.basic_get("", auto_ack=True)
    assert (body, method.routing_key, method.message_count) == (b"m1", q, 1)
    box = []
    consume_into(ch, "", box, auto_ack=True)
    collect(connection, box, 1)
    assert box == [("m2", False, 2)]


# -- consumer priorities (x-priority; the broker announces consumer_priorities) -------------------


def test_consumer_priority_goes_first(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    low, high = [], []
    ch.basic_consume(q, lambda _c, _m, _p, b: low.append(b), auto_ack=True, arguments={"x-priority": 1})
    ch.basic_consume(q, lambda _c, _m, _p, b: high.append(b), auto_ack=True, arguments={"x-priority": 10})
    publish_n(pub, q, 4)
    wait_for(connection, lambda: len(high) == 4)
    settle(connection)
    assert (low, high) == ([], [b"m1", b"m2", b"m3", b"m4"])


def test_lower_priority_gets_messages_while_higher_is_full(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    ch.basic_qos(prefetch_count=2)
    low, high = [], []
    consume_into(ch, q, low, arguments={"x-priority": -5})
    consume_into(ch, q, high, arguments={"x-priority": 2**40})
    publish_n(pub, q, 6)
    wait_for(connection, lambda: len(low) + len(high) == 4)
    settle(connection)
    assert ([b for b, _, _ in high], [b for b, _, _ in low]) == (["m1", "m2"], ["m3", "m4"])
    ch.basic_ack(high[0][2])
    wait_for(connection, lambda: len(high) == 3)
    settle(connection)
    assert ([b for b, _, _ in high], len(low)) == (["m1", "m2", "m5"], 2)


def test_equal_priorities_round_robin(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    boxes = [[], [], []]
    for box, priority in zip(boxes, (3, 3, 1)):
        ch.basic_consume(q, lambda _c, _m, _p, b, box=box: box.append(b), auto_ack=True,
                         arguments={"x-priority": priority})
    publish_n(pub, q, 4)
    wait_for(connection, lambda: sum(map(len, boxes)) == 4)
    settle(connection)
    assert boxes == [[b"m1", b"m3"], [b"m2", b"m4"], []]


@pytest.mark.parametrize("value,type_name", [("abc", "longstr"), (True, "bool"), (None, "void"), ({"a": 1}, "table")])
def test_invalid_consumer_priority(connection, unique, value, type_name):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    channel_error(connection, lambda: ch.basic_consume(q, lambda *_: None, arguments={"x-priority": value}), 406,
                  f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': "
                  f"\"expected integer, got {type_name}\"")


# -- global prefetch and basic.get (RabbitMQ's limiter quirks, observed on 3.10.8) ----------------


def test_global_prefetch_counts_gets_unacked_when_it_is_set(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q, 8)
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(2)]
    ch.basic_qos(prefetch_count=3, global_qos=True)  # starts from the 2 unacked gets
    box = []
    consume_into(ch, q, box)
    wait_for(connection, lambda: box)
    settle(connection)
    assert [b for b, _, _ in box] == ["m3"]
    for tag in tags:  # acking those gets does not give their slots back
        ch.basic_ack(tag)
    settle(connection)
    assert len(box) == 1
    ch.basic_ack(box[0][2])  # a consumer ack does
    wait_for(connection, lambda: len(box) == 2)
    settle(connection)
    assert [b for b, _, _ in box] == ["m3", "m4"]


def test_global_prefetch_ignores_gets_made_after_it(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_n(pub, q, 8)
    ch.basic_qos(prefetch_count=2, global_qos=True)
    for _ in range(2):
        ch.basic_get(q)
    box = []
    consume_into(ch, q, box)
    wait_for(connection, lambda: len(box) == 2)
    settle(connection)
    assert [b for b, _, _ in box] == ["m3", "m4"]


# -- server-sent basic.cancel (raw frames, as in the interop reference) ---------------------------


def test_queue_delete_sends_cancel_to_consumers(raw, unique):
    q = unique()
    raw.call(1, C.Channel.Open())
    raw.call(2, C.Channel.Open())
    raw.call(1, C.Queue.Declare(queue=q))
    raw.call(1, C.Basic.Consume(queue=q, consumer_tag="ctag-x"))
    raw.send(2, C.Queue.Delete(queue=q))
    # Two channels: RabbitMQ gives no order between the cancel and the delete-ok (either is seen).
    frames = dict(raw.frame() for _ in range(2))
    assert {ch: f.name for ch, f in frames.items()} == {1: "Basic.Cancel", 2: "Queue.DeleteOk"}
    cancel, delete_ok = frames[1], frames[2]
    assert (cancel.consumer_tag, cancel.nowait, delete_ok.message_count) == ("ctag-x", True, 0)
    # The consumer is gone, so cancelling it now is the unknown-tag case: cancel-ok all the same.
    ok = raw.call(1, C.Basic.Cancel(consumer_tag="ctag-x"))
    assert isinstance(ok, C.Basic.CancelOk) and ok.consumer_tag == "ctag-x"


def test_no_cancel_notification_without_the_capability(broker, unique):
    raw = Raw(broker.port, capabilities={})
    try:
        q = unique()
        raw.call(1, C.Channel.Open())
        raw.call(2, C.Channel.Open())
        raw.call(1, C.Queue.Declare(queue=q))
        raw.call(1, C.Basic.Consume(queue=q, consumer_tag="ctag-x"))
        raw.send(2, C.Queue.Delete(queue=q))
        channel, frame = raw.frame()
        assert (channel, frame.name) == (2, "Queue.DeleteOk")
        assert raw.frame(timeout=SETTLE) == (None, None)
    finally:
        raw.close()
