"""RabbitMQ's consumer-side extensions through real clients: single active consumer, direct
reply-to, consumer timeout, connection.update-secret, and consumer priorities next to SAC.

Every expectation (codes, texts, class/method ids, frame order, delivery tags) was first observed
on RabbitMQ 3.10.8 with the same pika calls or raw frames; the consumer-timeout text with
``rabbitmqctl eval 'application:set_env(rabbit, consumer_timeout, 2000).'`` (RabbitMQ noticed it on
its 60 s channel tick, with class and method id 0). pika refuses to send a few of these frames, and
cannot show class/method ids or cross-method frame order, so those cases use a tiny raw client.
"""

from __future__ import annotations

import time

import pika
import pytest
from pamqp import commands as C
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pika.exceptions import ChannelClosedByBroker, UnroutableError

from amqp_broker.testing import BrokerThread
from pika_helpers import channel_error, ping, settle, wait_for
from raw_amqp import Raw

RT = "amq.rabbitmq.reply-to"
SAC = {"x-single-active-consumer": True}


# -- helpers ------------------------------------------------------------------------------------


def recorder(box, name):
    """A consumer callback appending (name, body, delivery_tag, redelivered) to ``box``."""
    return lambda _ch, m, _p, body: box.append((name, body.decode(), m.delivery_tag, m.redelivered))


class _UncheckedDeclare(C.Queue.Declare):
    """queue.declare without pamqp's name check (reply names contain '+', '/' and '=')."""

    def validate(self) -> None:
        pass


def declare_frame(name, **kwargs):
    method = _UncheckedDeclare(**kwargs)
    method.queue = name
    return method


def describe(frames):
    """A readable summary of raw frames: method names with their key fields, bodies as text."""
    out = []
    for channel, value in frames:
        if isinstance(value, C.Basic.Deliver):
            out.append((channel, "deliver", value.consumer_tag, value.delivery_tag))
        elif isinstance(value, C.Basic.Return):
            out.append((channel, "return", value.reply_code, value.reply_text))
        elif isinstance(value, C.Basic.Ack):
            out.append((channel, "ack", value.delivery_tag))
        elif isinstance(value, ContentBody):
            out.append((channel, "body", bytes(value.value).decode()))
        elif isinstance(value, ContentHeader):
            continue
        else:
            out.append((channel, value.name))
    return out


@pytest.fixture
def raw(broker):
    client = Raw(broker.port)
    yield client
    client.close()


@pytest.fixture
def pub(connection):
    """A confirm-mode channel: basic_publish returns once the message is routed."""
    ch = connection.channel()
    ch.confirm_delivery()
    return ch


# -- single active consumer ---------------------------------------------------------------------


def test_sac_only_the_first_registered_consumer_gets_messages(connection, pub, unique):
    q = unique()
    pub.queue_declare(q, arguments=SAC)
    box = []
    # Priorities do not choose the first active consumer in RabbitMQ 3.10: registration does.
    for name, priority in (("A", 0), ("B", 5), ("C", 10)):
        args = {"x-priority": priority} if priority else None
        connection.channel().basic_consume(q, recorder(box, name), consumer_tag=name, arguments=args)
    assert pub.queue_declare(q, passive=True).method.consumer_count == 3
    for i in range(4):
        pub.basic_publish("", q, b"m%d" % i)
    wait_for(connection, lambda: len(box) == 4)
    settle(connection)
    assert box == [("A", "m0", 1, False), ("A", "m1", 2, False), ("A", "m2", 3, False), ("A", "m3", 4, False)]


def test_sac_successor_is_highest_priority_then_registration_order(connection, pub, unique):
    q = unique()
    pub.queue_declare(q, arguments=SAC)
    box = []
    channels = {}
    for name, priority in (("A", 0), ("B", 5), ("C", 10), ("D", 10), ("E", 0)):
        channels[name] = ch = connection.channel()
        ch.basic_consume(q, recorder(box, name), consumer_tag=name,
                         arguments={"x-priority": priority} if priority else None)
    active = []
    for name in ("A", "C", "D", "B"):
        channels[name].basic_cancel(name)
        pub.basic_publish("", q, b"after-" + name.encode())
        wait_for(connection, lambda: len(box) == len(active) + 1)
        active.append(box[-1][0])
    assert active == ["C", "D", "B", "E"]
    assert pub.queue_declare(q, passive=True).method.consumer_count == 1


def test_sac_closing_the_active_channel_requeues_to_the_next_consumer(connection, pub, unique):
    q = unique()
    pub.queue_declare(q, arguments=SAC)
    box = []
    a = connection.channel()
    a.basic_consume(q, recorder(box, "A"), consumer_tag="A")
    connection.channel().basic_consume(q, recorder(box, "B"), consumer_tag="B")
    for i in range(3):
        pub.basic_publish("", q, b"m%d" % i)
    wait_for(connection, lambda: len(box) == 3)
    a.close()
    wait_for(connection, lambda: len(box) == 6)
    settle(connection)
    assert box[3:] == [("B", "m0", 1, True), ("B", "m1", 2, True), ("B", "m2", 3, True)]


def test_sac_cancel_leaves_unacked_messages_with_the_old_consumer(connection, pub, unique):
    q = unique()
    pub.queue_declare(q, arguments=SAC)
    box = []
    a = connection.channel()
    a.basic_consume(q, recorder(box, "A"), consumer_tag="A")
    connection.channel().basic_consume(q, recorder(box, "B"), consumer_tag="B")
    pub.basic_publish("", q, b"m0")
    pub.basic_publish("", q, b"m1")
    wait_for(connection, lambda: len(box) == 2)
    a.basic_cancel("A")
    pub.basic_publish("", q, b"m2")
    wait_for(connection, lambda: len(box) == 3)
    settle(connection)
    assert box == [("A", "m0", 1, False), ("A", "m1", 2, False), ("B", "m2", 1, False)]
    a.basic_ack(2, multiple=True)  # still the old channel's to settle
    ping(a)
    assert pub.queue_declare(q, passive=True).method.message_count == 0


def test_sac_next_consumer_takes_over_when_the_connection_goes(connection, pub, params, unique):
    q = unique()
    pub.queue_declare(q, arguments=SAC)
    other = pika.BlockingConnection(params)
    box = []
    try:
        other.channel().basic_consume(q, recorder(box, "A"), consumer_tag="A")
        connection.channel().basic_consume(q, recorder(box, "B"), consumer_tag="B")
        pub.basic_publish("", q, b"m0")
        wait_for(other, lambda: len(box) == 1)
    finally:
        other.close()
    wait_for(connection, lambda: len(box) == 2)
    assert box == [("A", "m0", 1, False), ("B", "m0", 1, True)]


def test_sac_exclusive_consumer_is_refused_even_on_an_unused_queue(connection, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q, arguments=SAC)
    channel_error(connection, lambda: ch.basic_consume(q, lambda *_: None, exclusive=True), 403,
                  f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use")


def test_sac_consumer_priority_is_validated_as_on_any_queue(connection, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q, arguments=SAC)
    ch.basic_consume(q, lambda *_: None)
    ch2 = connection.channel()
    channel_error(connection, lambda: ch2.basic_consume(q, lambda *_: None, arguments={"x-priority": "high"}),
                  406, f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': "
                  '"expected integer, got longstr"')
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1


def test_sac_false_is_an_ordinary_round_robin_queue(connection, pub, unique):
    q = unique()
    pub.queue_declare(q, arguments={"x-single-active-consumer": False})
    box = []
    ch = connection.channel()
    ch.basic_consume(q, recorder(box, "A"), consumer_tag="A")
    ch.basic_consume(q, recorder(box, "B"), consumer_tag="B")
    for i in range(4):
        pub.basic_publish("", q, b"m%d" % i)
    wait_for(connection, lambda: len(box) == 4)
    assert [name for name, *_ in box] == ["A", "B", "A", "B"]


def test_sac_queue_delete_cancels_waiting_consumers_too(connection, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q, arguments=SAC)
    cancelled = []
    for tag in ("A", "B"):
        c = connection.channel()
        c.basic_consume(q, lambda *_: None, consumer_tag=tag)
        c.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    ch.queue_delete(q)
    wait_for(connection, lambda: len(cancelled) == 2)
    assert sorted(cancelled) == ["A", "B"]


def test_sac_cancel_ok_precedes_deliveries_to_the_successor_on_the_same_channel(raw, unique):
    """A deliberate difference: RabbitMQ 3.10 does not run the queue after a basic.cancel, so the
    successor gets the waiting m1 only at the next queue event, and a publish then crashed the
    queue process (badmatch in rabbit_amqqueue_process:attempt_delivery, seen on 3.10.8). We hand
    ready messages to the successor at once, after the cancel-ok."""
    q = unique()
    raw.call(1, C.Channel.Open())
    raw.call(1, C.Queue.Declare(queue=q, auto_delete=True, arguments=SAC))
    raw.call(1, C.Basic.Qos(prefetch_count=1))
    assert isinstance(raw.call(1, C.Basic.Consume(queue=q, consumer_tag="A")), C.Basic.ConsumeOk)
    assert isinstance(raw.call(1, C.Basic.Consume(queue=q, consumer_tag="B")), C.Basic.ConsumeOk)
    raw.publish(1, "", q, b"m0")
    raw.publish(1, "", q, b"m1")
    assert describe(raw.frames()) == [(1, "deliver", "A", 1), (1, "body", "m0")]
    raw.send(1, C.Basic.Cancel(consumer_tag="A"))
    assert describe(raw.frames()) == [(1, "Basic.CancelOk"), (1, "deliver", "B", 2), (1, "body", "m1")]


# -- direct reply-to ----------------------------------------------------------------------------


def test_direct_reply_to_round_trip(connection, params, unique):
    q = unique("rpc")
    client = connection.channel()
    client.queue_declare(q)
    replies = []
    ctag = client.basic_consume(
        RT, lambda _ch, m, p, body: replies.append((m, p, body)), auto_ack=True)
    assert ctag.startswith("ctag") or ctag.startswith("amq.ctag-")
    client.basic_publish("", q, b"request", pika.BasicProperties(reply_to=RT, correlation_id="c1"))

    server_conn = pika.BlockingConnection(params)
    try:
        server = server_conn.channel()
        deadline = time.monotonic() + 5
        while True:
            method, props, body = server.basic_get(q, auto_ack=True)
            if method is not None:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert body == b"request" and props.correlation_id == "c1"
        assert props.reply_to.startswith(RT + ".") and len(props.reply_to) > len(RT) + 1
        server.basic_publish("", props.reply_to, b"reply",
                             pika.BasicProperties(correlation_id=props.correlation_id))
        wait_for(connection, lambda: replies)
    finally:
        server_conn.close()
    method, rprops, body = replies[0]
    assert (body, rprops.correlation_id, rprops.reply_to) == (b"reply", "c1", None)
    assert (method.consumer_tag, method.exchange, method.routing_key) == (ctag, "", props.reply_to)
    assert (method.delivery_tag, method.redelivered) == (1, False)


def test_reply_consumer_must_be_no_ack(connection):
    ch = connection.channel()
    channel_error(connection, lambda: ch.basic_consume(RT, lambda *_: None, auto_ack=False), 406,
                  "PRECONDITION_FAILED - reply consumer cannot acknowledge")


def test_second_reply_consumer_on_a_channel_is_refused(connection):
    ch = connection.channel()
    ch.basic_consume(RT, lambda *_: None, auto_ack=True)
    channel_error(connection, lambda: ch.basic_consume(RT, lambda *_: None, auto_ack=True), 406,
                  "PRECONDITION_FAILED - reply consumer already set")


def test_publishing_with_reply_to_needs_a_reply_consumer(connection, unique):
    ch = connection.channel()

    def publish():
        ch.basic_publish("", unique(), b"x", pika.BasicProperties(reply_to=RT))
        ping(ch)

    channel_error(connection, publish, 406, "PRECONDITION_FAILED - fast reply consumer does not exist")


def test_missing_reply_consumer_error_names_basic_publish(raw, unique):
    raw.call(1, C.Channel.Open())
    raw.publish(1, "", unique(), reply_to=RT)
    channel, close = raw.frame()
    assert channel == 1 and isinstance(close, C.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406, "PRECONDITION_FAILED - fast reply consumer does not exist", 60, 40)


def test_exchange_and_internal_checks_come_before_the_reply_consumer_check(connection, unique):
    name, internal = unique("nox"), unique("internal")
    ch = connection.channel()
    ch.exchange_declare(internal, "direct", internal=True, auto_delete=False)
    try:
        channel_error(connection, lambda: (ch.basic_publish(name, "k", b"x", pika.BasicProperties(reply_to=RT)),
                                           ping(ch)),
                      404, f"NOT_FOUND - no exchange '{name}' in vhost '/'")
        ch = connection.channel()
        channel_error(connection, lambda: (ch.basic_publish(internal, "k", b"x",
                                                            pika.BasicProperties(reply_to=RT)), ping(ch)),
                      403, f"ACCESS_REFUSED - cannot publish to internal exchange '{internal}' in vhost '/'")
    finally:
        connection.channel().exchange_delete(internal)


def test_reply_consumer_check_comes_before_the_user_id_check(connection, unique):
    ch = connection.channel()
    channel_error(connection, lambda: (ch.basic_publish("", unique(), b"x",
                                                        pika.BasicProperties(reply_to=RT, user_id="bob")),
                                       ping(ch)),
                  406, "PRECONDITION_FAILED - fast reply consumer does not exist")


def test_only_the_exact_pseudo_queue_name_is_rewritten(connection, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q, exclusive=True)
    for reply_to in (RT + ".foo", RT + "x", "amq.rabbitmq.reply"):
        ch.basic_publish("", q, b"x", pika.BasicProperties(reply_to=reply_to))
        ping(ch)
        deadline = time.monotonic() + 5
        while (got := ch.basic_get(q, auto_ack=True))[0] is None:
            assert time.monotonic() < deadline
        assert got[1].reply_to == reply_to


def test_reply_to_pseudo_queue_declare_answers_one_consumer(connection):
    ch = connection.channel()
    for kwargs in ({"passive": True}, {}, {"durable": True, "exclusive": True, "arguments": {"x-max-length": 3}}):
        ok = ch.queue_declare(RT, **kwargs).method
        assert (ok.queue, ok.message_count, ok.consumer_count) == (RT, 0, 1)
    # It becomes the channel's most recent queue, so '' names it (and basic.get finds no queue).
    channel_error(connection, lambda: ch.queue_purge(""), 404,
                  f"NOT_FOUND - no queue '{RT}' in vhost '/'")


def test_reply_names_under_the_prefix_are_404_unless_live(connection, unique):
    ch = connection.channel()
    for name in (RT + ".bogus", RT + "x"):
        for passive in (True, False):
            channel_error(connection, lambda: ch.queue_declare(name, passive=passive), 404,
                          f"NOT_FOUND - no queue '{name}' in vhost '/'")
            ch = connection.channel()


def test_live_reply_name_declares_until_cancelled(connection, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q, exclusive=True)
    tag = ch.basic_consume(RT, lambda *_: None, auto_ack=True)
    ch.basic_publish("", q, b"x", pika.BasicProperties(reply_to=RT))
    ping(ch)
    name = ch.basic_get(q, auto_ack=True)[1].reply_to
    other = connection.channel()
    ok = other.queue_declare(name, passive=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (name, 0, 1)
    ch.basic_cancel(tag)
    channel_error(connection, lambda: other.queue_declare(name, passive=True), 404,
                  f"NOT_FOUND - no queue '{name}' in vhost '/'")


def test_reply_to_pseudo_queue_is_not_a_queue_for_get_bind_purge(connection):
    for op in (lambda ch: ch.basic_get(RT), lambda ch: ch.queue_bind(RT, "amq.direct", "k"),
               lambda ch: ch.queue_purge(RT)):
        ch = connection.channel()
        channel_error(connection, lambda: op(ch), 404, f"NOT_FOUND - no queue '{RT}' in vhost '/'")
    assert connection.channel().queue_delete(RT).method.message_count == 0


def _reply_name(raw, channel, queue):
    """Publish with reply_to=RT from ``channel`` (which consumes RT) and read back the new name
    (with basic.get on channel 9, so that ``channel``'s delivery tags stay untouched)."""
    if not getattr(raw, "reader_open", False):
        assert isinstance(raw.call(9, C.Channel.Open()), C.Channel.OpenOk)
        raw.reader_open = True
    raw.publish(channel, "", queue, reply_to=RT)
    deadline = time.monotonic() + 5
    while True:
        raw.send(9, C.Basic.Get(queue=queue, no_ack=True))
        _, got = raw.frame()
        if isinstance(got, C.Basic.GetOk):
            _, header = raw.frame()
            raw.frame()
            return header.properties.reply_to
        assert time.monotonic() < deadline


def test_mandatory_reply_is_delivered_and_still_returned_as_unroutable(raw, broker, unique):
    q = unique()
    raw.call(1, C.Channel.Open())
    raw.call(1, C.Queue.Declare(queue=q, exclusive=True))
    raw.call(1, C.Basic.Consume(queue=RT, consumer_tag="rc", no_ack=True))
    name = _reply_name(raw, 1, q)
    server = Raw(broker.port)
    try:
        server.call(1, C.Channel.Open())
        server.call(1, C.Confirm.Select())
        server.publish(1, "", name, b"reply", mandatory=True)
        assert describe(server.frames()) == [(1, "return", 312, "NO_ROUTE"), (1, "body", "reply"),
                                             (1, "ack", 1)]
        assert describe(raw.frames()) == [(1, "deliver", "rc", 1), (1, "body", "reply")]
        # Through another exchange the name is just a routing key: returned, not delivered.
        server.publish(1, "amq.direct", name, b"direct", mandatory=True)
        assert describe(server.frames()) == [(1, "return", 312, "NO_ROUTE"), (1, "body", "direct"),
                                             (1, "ack", 2)]
        assert raw.frames() == []
        # Stale (after the consumer's channel closed) or made-up names: returned if mandatory,
        # else dropped without a word.
        raw.call(1, C.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        server.publish(1, "", name, b"stale", mandatory=True)
        server.publish(1, "", name, b"stale-quiet")
        server.publish(1, "", RT + ".garbage", b"garbage", mandatory=True)
        server.publish(1, "", RT, b"bare", mandatory=True)
        assert describe(server.frames()) == [
            (1, "return", 312, "NO_ROUTE"), (1, "body", "stale"), (1, "ack", 3),
            (1, "ack", 4),
            (1, "return", 312, "NO_ROUTE"), (1, "body", "garbage"), (1, "ack", 5),
            (1, "return", 312, "NO_ROUTE"), (1, "body", "bare"), (1, "ack", 6),
        ]
    finally:
        server.close()


def test_reply_deliveries_borrow_the_next_delivery_tag(raw, broker, unique):
    q, work = unique(), unique("work")
    raw.call(1, C.Channel.Open())
    raw.call(1, C.Queue.Declare(queue=q, exclusive=True))
    raw.call(1, C.Queue.Declare(queue=work, exclusive=True))
    raw.call(1, C.Basic.Consume(queue=RT, consumer_tag="rc", no_ack=True))
    name = _reply_name(raw, 1, q)
    raw.publish(1, "", work, b"w1")
    assert isinstance(raw.call(1, C.Basic.Consume(queue=work, consumer_tag="normal")), C.Basic.ConsumeOk)
    assert describe(raw.frames()) == [(1, "deliver", "normal", 1), (1, "body", "w1")]
    server = Raw(broker.port)
    try:
        server.call(1, C.Channel.Open())
        server.publish(1, "", name, b"r1")
        assert describe(raw.frames()) == [(1, "deliver", "rc", 2), (1, "body", "r1")]
        raw.publish(1, "", work, b"w2")
        assert describe(raw.frames()) == [(1, "deliver", "normal", 2), (1, "body", "w2")]
        server.publish(1, "", name, b"r2")
        assert describe(raw.frames()) == [(1, "deliver", "rc", 3), (1, "body", "r2")]
    finally:
        server.close()
    raw.send(1, C.Basic.Ack(delivery_tag=2))
    raw.send(1, C.Basic.Ack(delivery_tag=1))
    raw.send(1, C.Basic.Ack(delivery_tag=3))  # a reply's tag was never a delivery to ack
    channel, close = raw.frame()
    assert channel == 1 and isinstance(close, C.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406, "PRECONDITION_FAILED - unknown delivery tag 3", 60, 80)


def test_reply_to_own_channel_comes_after_the_return_and_confirm(raw, unique):
    q = unique()
    raw.call(1, C.Channel.Open())
    raw.call(1, C.Queue.Declare(queue=q, exclusive=True))
    raw.call(1, C.Confirm.Select())
    raw.call(1, C.Basic.Consume(queue=RT, consumer_tag="rc", no_ack=True))
    name = _reply_name(raw, 1, q)
    raw.frames()  # the confirm of that publish
    raw.publish(1, "", name, b"self", mandatory=True)
    assert describe(raw.frames()) == [(1, "return", 312, "NO_ROUTE"), (1, "body", "self"), (1, "ack", 2),
                                      (1, "deliver", "rc", 1), (1, "body", "self")]
    raw.publish(1, "", name, b"self-quiet")
    assert describe(raw.frames()) == [(1, "ack", 3), (1, "deliver", "rc", 1), (1, "body", "self-quiet")]


def test_transactional_reply_arrives_at_publish_and_returns_at_commit(raw, broker, unique):
    q = unique()
    raw.call(1, C.Channel.Open())
    raw.call(1, C.Queue.Declare(queue=q, exclusive=True))
    raw.call(1, C.Basic.Consume(queue=RT, consumer_tag="rc", no_ack=True))
    name = _reply_name(raw, 1, q)
    server = Raw(broker.port)
    try:
        server.call(1, C.Channel.Open())
        server.call(1, C.Tx.Select())
        server.publish(1, "", name, b"tx-reply", mandatory=True)
        assert describe(raw.frames()) == [(1, "deliver", "rc", 1), (1, "body", "tx-reply")]
        server.send(1, C.Tx.Commit())
        assert describe(server.frames()) == [(1, "return", 312, "NO_ROUTE"), (1, "body", "tx-reply"),
                                             (1, "Tx.CommitOk")]
    finally:
        server.close()


def test_cancelled_reply_consumer_gets_nothing_and_can_be_set_again(connection, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q, exclusive=True)
    got = []
    tag = ch.basic_consume(RT, lambda _c, m, _p, body: got.append(body), auto_ack=True)
    ch.basic_publish("", q, b"x", pika.BasicProperties(reply_to=RT))
    ping(ch)
    old = ch.basic_get(q, auto_ack=True)[1].reply_to
    ch.basic_cancel(tag)
    ch.basic_publish("", old, b"late")
    settle(connection)
    assert got == []
    ch.basic_consume(RT, lambda _c, m, _p, body: got.append(body), auto_ack=True)
    ch.basic_publish("", q, b"x", pika.BasicProperties(reply_to=RT))
    ping(ch)
    new = ch.basic_get(q, auto_ack=True)[1].reply_to
    assert new != old
    ch.basic_publish("", new, b"fresh")
    wait_for(connection, lambda: got)
    assert got == [b"fresh"]


def test_reply_consumer_tag_reuse_of_a_queue_consumer_closes_the_connection(raw, unique):
    q = unique()
    raw.call(1, C.Channel.Open())
    raw.call(1, C.Queue.Declare(queue=q, exclusive=True))
    raw.call(1, C.Basic.Consume(queue=q, consumer_tag="dup"))
    raw.send(1, C.Basic.Consume(queue=RT, consumer_tag="dup", no_ack=True))
    channel, close = raw.frame()
    assert channel == 0 and isinstance(close, C.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        530, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'", 60, 20)


def test_mandatory_publish_with_confirm_through_pika(connection, unique):
    """pika's view: a mandatory reply is delivered and the publisher gets UnroutableError."""
    q = unique()
    client = connection.channel()
    client.queue_declare(q, exclusive=True)
    got = []
    client.basic_consume(RT, lambda _c, m, _p, body: got.append(body), auto_ack=True)
    client.basic_publish("", q, b"x", pika.BasicProperties(reply_to=RT))
    ping(client)
    name = client.basic_get(q, auto_ack=True)[1].reply_to
    server = connection.channel()
    server.confirm_delivery()
    with pytest.raises(UnroutableError):
        server.basic_publish("", name, b"reply", mandatory=True)
    wait_for(connection, lambda: got)
    assert got == [b"reply"]


# -- consumer timeout ---------------------------------------------------------------------------


TIMEOUT_TEXT = (
    "PRECONDITION_FAILED - delivery acknowledgement on channel {n} timed out. Timeout value used: "
    "{t} ms. This timeout value can be configured, see consumers doc guide to learn more"
)


@pytest.fixture(scope="module")
def timeout_broker():
    """A broker whose consumer timeout is 300 ms."""
    with BrokerThread(consumer_timeout_ms=300) as running:
        yield running


def _params(broker):
    return pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0)


def test_unacked_delivery_times_out_and_closes_the_channel(timeout_broker, unique):
    q = unique()
    conn = pika.BlockingConnection(_params(timeout_broker))
    try:
        setup = conn.channel()
        setup.queue_declare(q)
        setup.confirm_delivery()
        setup.basic_publish("", q, b"m0")
        ch = conn.channel()
        box = []
        ch.basic_consume(q, recorder(box, "A"))
        started = time.monotonic()
        wait_for(conn, lambda: not ch.is_open, timeout=10)
        assert time.monotonic() - started >= 0.3
        assert box == [("A", "m0", 1, False)]
        # The message was requeued as on any channel close.
        deadline = time.monotonic() + 5
        while (got := setup.basic_get(q, auto_ack=True))[0] is None:
            assert time.monotonic() < deadline
        assert got[0].redelivered and got[2] == b"m0"
        assert setup.is_open  # other channels carry on
    finally:
        conn.close()


def test_consumer_timeout_close_text_and_ids(timeout_broker, unique):
    q = unique()
    raw = Raw(timeout_broker.port)
    try:
        raw.call(3, C.Channel.Open())
        raw.call(3, C.Queue.Declare(queue=q, exclusive=True))
        raw.publish(3, "", q, b"m0")
        raw.send(3, C.Basic.Consume(queue=q, consumer_tag="c"))
        frames = []
        while not any(isinstance(v, C.Channel.Close) for _, v in frames):
            channel, value = raw.frame(timeout=10)
            assert value is not None, "no channel.close"
            frames.append((channel, value))
        channel, close = frames[-1]
        assert channel == 3
        assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
            406, TIMEOUT_TEXT.format(n=3, t=300), 0, 0)
    finally:
        raw.close()


def test_unacked_basic_get_times_out_too(timeout_broker, unique):
    q = unique()
    conn = pika.BlockingConnection(_params(timeout_broker))
    try:
        ch = conn.channel()
        ch.queue_declare(q)
        ch.confirm_delivery()
        ch.basic_publish("", q, b"m0")
        closed = []
        ch._impl.add_on_close_callback(lambda _ch, reason: closed.append(reason))  # not on BlockingChannel
        assert ch.basic_get(q, auto_ack=False)[0] is not None
        wait_for(conn, lambda: closed, timeout=10)
        assert isinstance(closed[0], ChannelClosedByBroker)
        assert (closed[0].reply_code, closed[0].reply_text) == (
            406, TIMEOUT_TEXT.format(n=ch.channel_number, t=300))
    finally:
        conn.close()


def test_prompt_acks_and_no_ack_consumers_never_time_out(timeout_broker, unique):
    q, q2 = unique(), unique("noack")
    conn = pika.BlockingConnection(_params(timeout_broker))
    try:
        pub = conn.channel()
        pub.queue_declare(q)
        pub.queue_declare(q2)
        acking, noack = conn.channel(), conn.channel()
        box, box2 = [], []

        def on_message(ch, method, _props, body):
            box.append(body)
            ch.basic_ack(method.delivery_tag)

        acking.basic_consume(q, on_message)
        noack.basic_consume(q2, lambda _c, _m, _p, body: box2.append(body), auto_ack=True)
        # Keep traffic flowing for well over the timeout; every delivery is acked at once.
        end = time.monotonic() + 1.2
        while time.monotonic() < end:
            pub.basic_publish("", q, b"m")
            pub.basic_publish("", q2, b"m")
            conn.process_data_events(time_limit=0.05)
        settle(conn, 0.5)
        assert acking.is_open and noack.is_open and len(box) > 10 and len(box2) > 10
    finally:
        conn.close()


def test_consumer_timeout_zero_disables_it(unique):
    q = unique()
    with BrokerThread(consumer_timeout_ms=0) as running:
        assert running.call(lambda: running.server.broker.consumer_timeouts) is None
        conn = pika.BlockingConnection(_params(running))
        try:
            ch = conn.channel()
            ch.queue_declare(q)
            ch.confirm_delivery()
            ch.basic_publish("", q, b"m")
            box = []
            ch.basic_consume(q, recorder(box, "A"))
            wait_for(conn, lambda: box)
            settle(conn, 1.0)  # over three times what the 300 ms broker allows
            assert ch.is_open
        finally:
            conn.close()


def test_settings_reach_the_broker(timeout_broker):
    timeouts = timeout_broker.call(lambda: timeout_broker.server.broker.consumer_timeouts)
    assert timeouts.timeout_ms == 300
    with BrokerThread() as running:
        assert running.call(lambda: running.server.broker.consumer_timeouts.timeout_ms) == 1800000


# -- connection.update-secret -------------------------------------------------------------------


def test_update_secret_is_accepted_for_internal_users(connection):
    # RabbitMQ's internal backend cannot expire, so any new secret is accepted unchecked.
    connection.update_secret("not-the-password", "rotation")
    ch = connection.channel()
    assert ch.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")
    connection.update_secret("", "")
    assert connection.channel().is_open


def test_update_secret_before_connection_open_is_a_channel_error(broker):
    raw = Raw(broker.port, open_connection=False)
    try:
        raw.send(0, C.Connection.UpdateSecret(new_secret="x", reason="y"))
        channel, close = raw.frame()
        assert channel == 0 and isinstance(close, C.Connection.Close)
        assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
            504, "CHANNEL_ERROR - unexpected method in connection state opening", 10, 70)
    finally:
        raw.close()


def test_update_secret_on_a_channel_is_command_invalid(raw):
    raw.call(1, C.Channel.Open())
    raw.send(1, C.Connection.UpdateSecret(new_secret="x", reason="y"))
    channel, close = raw.frame()
    assert channel == 0 and isinstance(close, C.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        503, "COMMAND_INVALID - unimplemented method", 10, 70)
