"""Queues through a real pika client: declare/equivalence/arguments, exclusive, auto-delete, bind,
purge and delete, with RabbitMQ 3.10's exact reply codes and texts (interop reference).
"""

from __future__ import annotations

import decimal
import re
import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker
from pika_helpers import channel_error, get_soon, ready_soon, wait_for

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. "
    "It could be originally declared on another connection or the exclusive property value "
    "does not match that of the original declaration."
)


@pytest.fixture
def pub(connection):
    """A confirm-mode channel: basic_publish returns once the message is enqueued."""
    ch = connection.channel()
    ch.confirm_delivery()
    return ch


@pytest.fixture
def other(params):
    """A second connection, for exclusivity checks."""
    conn = pika.BlockingConnection(params)
    yield conn
    if conn.is_open:
        conn.close()


def counts(channel, queue):
    ok = channel.queue_declare(queue, passive=True).method
    return ok.message_count, ok.consumer_count


def assert_queue_gone(connection, queue, timeout=5.0):
    """Passive declare must give 404; polled, since RabbitMQ deletes a queue whose last consumer
    or owner went away asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        ch = connection.channel()
        try:
            ch.queue_declare(queue, passive=True)
        except ChannelClosedByBroker as exc:
            assert (exc.reply_code, exc.reply_text) == (404, f"NOT_FOUND - no queue '{queue}' in vhost '/'")
            assert connection.is_open
            return
        ch.close()
        assert time.monotonic() < deadline, f"queue {queue} still exists"
        time.sleep(0.01)


# -- declare ------------------------------------------------------------------------------------


def test_server_named_queue(channel):
    names = {channel.queue_declare("", exclusive=True).method.queue for _ in range(5)}
    assert len(names) == 5
    for name in names:
        assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", name), name
        channel.queue_declare(name, passive=True)


def test_server_named_non_exclusive_queue(channel):
    ok = channel.queue_declare("").method
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", ok.queue)
    assert (ok.message_count, ok.consumer_count) == (0, 0)
    channel.queue_delete(ok.queue)


def test_declare_ok_counts(connection, channel, pub, unique):
    q = unique()
    ok = channel.queue_declare(q).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)
    for i in range(3):
        pub.basic_publish("", q, b"m%d" % i)
    ok = channel.queue_declare(q).method  # an active (non-passive) redeclare reports counts too
    assert (ok.message_count, ok.consumer_count) == (3, 0)
    method, _, _ = channel.basic_get(q)
    assert method.message_count == 2
    assert counts(channel, q) == (2, 0)  # the unacked message is not counted
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    got = []
    consumer.basic_consume(q, lambda _c, m, _p, b: got.append(b))
    wait_for(connection, lambda: got)
    assert counts(channel, q) == (1, 1)


def test_passive_declare(connection, channel, unique):
    q = unique()
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_declare(q, passive=True), 404,
                  f"NOT_FOUND - no queue '{q}' in vhost '/'")
    channel.queue_declare(q)
    # Passive ignores every other field.
    ok = channel.queue_declare(q, passive=True, durable=True, auto_delete=True,
                               arguments={"x-max-length": 5}).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)


def test_passive_declare_of_empty_name(connection):
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_declare("", passive=True), 404,
                  "NOT_FOUND - no queue '' in vhost '/'")


def test_reserved_amq_prefix(connection, unique):
    name = "amq." + unique()
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_declare(name), 403,
                  f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'")
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_declare(name, passive=True), 404,
                  f"NOT_FOUND - no queue '{name}' in vhost '/'")


def test_redeclare_with_same_properties(channel, unique):
    q = unique()
    args = {"x-message-ttl": 60000, "x-max-length": 10, "x-foo": "bar"}
    channel.queue_declare(q, durable=True, arguments=args)
    ok = channel.queue_declare(q, durable=True, arguments=args).method
    assert ok.queue == q
    channel.queue_delete(q)


@pytest.mark.parametrize(
    "first,second,text",
    [
        (dict(durable=False), dict(durable=True),
         "inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'true' but current is 'false'"),
        (dict(durable=True), dict(durable=False),
         "inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'false' but current is 'true'"),
        (dict(auto_delete=False), dict(auto_delete=True),
         "inequivalent arg 'auto_delete' for queue '{q}' in vhost '/': received 'true' but current is 'false'"),
        (dict(arguments={"x-message-ttl": 1000}), dict(arguments={"x-message-ttl": 2000}),
         "inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': received '2000' but current is '1000'"),
        (dict(arguments={"x-max-length": 10}), dict(arguments={"x-max-length": 20}),
         "inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': received '20' but current is '10'"),
        (dict(arguments={"x-max-length": 10}), dict(arguments={"x-max-length": 2**40}),
         "inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': received '1099511627776' but current is '10'"),
        (dict(), dict(arguments={"x-max-length": 10}),
         "inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': "
         "received the value '10' of type 'signedint' but current is none"),
        (dict(arguments={"x-max-length": 10}), dict(),
         "inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': "
         "received none but current is the value '10' of type 'signedint'"),
        (dict(arguments={"x-dead-letter-exchange": "a"}), dict(arguments={"x-dead-letter-exchange": "b"}),
         "inequivalent arg 'x-dead-letter-exchange' for queue '{q}' in vhost '/': received 'b' but current is 'a'"),
        (dict(arguments={"x-expires": 100000}), dict(arguments={"x-expires": 200000}),
         "inequivalent arg 'x-expires' for queue '{q}' in vhost '/': received '200000' but current is '100000'"),
    ],
    ids=["durable", "durable-reverse", "auto_delete", "ttl", "max-length", "int-widths", "arg-added", "arg-removed",
         "dlx", "expires"],
)
def test_redeclare_inequivalent(connection, unique, first, second, text):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q, **first)
    channel_error(connection, lambda: ch.queue_declare(q, **second), 406,
                  "PRECONDITION_FAILED - " + text.format(q=q))
    ch = connection.channel()
    ch.queue_declare(q, **first)  # unchanged by the failed redeclare
    ch.queue_delete(q)


def test_redeclare_with_unchecked_arguments(channel, unique):
    q, q2 = unique(), unique("q2")
    oks = [
        channel.queue_declare(q, arguments={"x-foo": "a"}),
        channel.queue_declare(q, arguments={"x-foo": "b"}),
        channel.queue_declare(q),
        channel.queue_declare(q2),
        channel.queue_declare(q2, arguments={"x-foo": "a"}),
    ]
    assert [ok.method.queue for ok in oks] == [q, q, q, q2, q2]


def test_redeclare_adding_default_queue_type(channel, unique):
    q, q2 = unique(), unique("q2")
    oks = [
        channel.queue_declare(q),
        channel.queue_declare(q, arguments={"x-queue-type": "classic"}),
        channel.queue_declare(q2, arguments={"x-queue-type": "classic"}),
        channel.queue_declare(q2),
    ]
    assert [ok.method.queue for ok in oks] == [q, q, q2, q2]


def test_redeclare_with_other_queue_type(connection, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q, durable=True)
    channel_error(connection, lambda: ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"}), 406,
                  f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{q}' in vhost '/': "
                  "received the value 'quorum' of type 'longstr' but current is none")
    ch = connection.channel()
    q2 = unique("q2")
    ch.queue_declare(q2, arguments={"x-queue-type": "classic"})
    channel_error(connection, lambda: ch.queue_declare(q2, arguments={"x-queue-type": "stream"}), 406,
                  f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{q2}' in vhost '/': "
                  "received 'stream' but current is 'classic'")
    cleanup = connection.channel()
    cleanup.queue_delete(q)
    cleanup.queue_delete(q2)


@pytest.mark.parametrize(
    "arguments,problem",
    [
        ({"x-max-length": "abc"}, "'x-max-length' for queue '{q}' in vhost '/': \"expected integer, got longstr\""),
        ({"x-max-length": -1}, "'x-max-length' for queue '{q}' in vhost '/': {{value_negative,-1}}"),
        ({"x-message-ttl": -1}, "'x-message-ttl' for queue '{q}' in vhost '/': {{value_negative,-1}}"),
        ({"x-expires": 0}, "'x-expires' for queue '{q}' in vhost '/': {{value_zero,0}}"),
        ({"x-overflow": "nope"}, "'x-overflow' for queue '{q}' in vhost '/': invalid_overflow"),
        ({"x-queue-type": "nope"}, "'x-queue-type' for queue '{q}' in vhost '/': \"unsupported queue type 'nope'\""),
        # pika sends bytes as a byte array ('x'): RabbitMQ 3.10.8 names its type binary.
        ({"x-message-ttl": b"abc"}, "'x-message-ttl' for queue '{q}' in vhost '/': \"expected integer, got binary\""),
        ({"x-message-ttl": decimal.Decimal("1.5")},
         "'x-message-ttl' for queue '{q}' in vhost '/': \"expected integer, got decimal\""),
        ({"x-single-active-consumer": b"abc"},
         "'x-single-active-consumer' for queue '{q}' in vhost '/': {{unacceptable_type,binary}}"),
    ],
    ids=["max-length-type", "max-length-negative", "ttl-negative", "expires-zero", "overflow", "queue-type",
         "ttl-binary", "ttl-decimal", "single-active-binary"],
)
def test_invalid_arguments(connection, unique, arguments, problem):
    q = unique()
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_declare(q, arguments=arguments), 406,
                  "PRECONDITION_FAILED - invalid arg " + problem.format(q=q))
    assert_queue_gone(connection, q)


# -- exclusive ----------------------------------------------------------------------------------


@pytest.fixture
def exclusive_queue(channel, unique):
    q = unique("excl")
    channel.queue_declare(q, exclusive=True)
    return q


@pytest.mark.parametrize(
    "operation",
    ["declare-exclusive", "declare", "passive", "consume", "bind", "delete", "purge", "get"],
)
def test_exclusive_queue_from_another_connection(other, exclusive_queue, operation):
    q = exclusive_queue
    ch = other.channel()
    calls = {
        "declare-exclusive": lambda: ch.queue_declare(q, exclusive=True),
        "declare": lambda: ch.queue_declare(q),
        "passive": lambda: ch.queue_declare(q, passive=True),
        "consume": lambda: ch.basic_consume(q, lambda *_: None),
        "bind": lambda: ch.queue_bind(q, "amq.fanout"),
        "delete": lambda: ch.queue_delete(q),
        "purge": lambda: ch.queue_purge(q),
        "get": lambda: ch.basic_get(q),
    }
    channel_error(other, calls[operation], 405, LOCKED.format(q=q))


def test_exclusive_queue_unbind_from_another_connection(other, channel, exclusive_queue):
    q = exclusive_queue
    ch = other.channel()
    # Unbinding a binding that does not exist answers unbind-ok, even for a locked queue...
    ch.queue_unbind(q, "amq.direct", q)
    # ...but removing one that exists needs exclusive access.
    channel.queue_bind(q, "amq.direct", q)
    channel_error(other, lambda: ch.queue_unbind(q, "amq.direct", q), 405, LOCKED.format(q=q))
    pub = other.channel()
    pub.confirm_delivery()
    pub.basic_publish("amq.direct", q, b"still-bound")
    assert counts(channel, q) == (1, 0)


def test_exclusive_queue_publish_from_another_connection(other, channel, exclusive_queue):
    q = exclusive_queue
    ch = other.channel()
    ch.confirm_delivery()
    ch.basic_publish("", q, b"from-other")
    assert counts(channel, q) == (1, 0)
    method, _, body = channel.basic_get(q, auto_ack=True)
    assert (body, method.message_count) == (b"from-other", 0)


def test_exclusive_mismatch_on_the_same_connection(connection, unique):
    q1, q2 = unique("a"), unique("b")
    ch = connection.channel()
    ch.queue_declare(q1, exclusive=True)
    channel_error(connection, lambda: ch.queue_declare(q1, exclusive=False), 405, LOCKED.format(q=q1))
    ch = connection.channel()
    ch.queue_declare(q2)
    channel_error(connection, lambda: ch.queue_declare(q2, exclusive=True), 405, LOCKED.format(q=q2))
    connection.channel().queue_delete(q2)


def test_exclusive_queue_usable_from_another_channel_of_the_owner(connection, exclusive_queue):
    ch = connection.channel()
    assert ch.queue_declare(exclusive_queue, exclusive=True).method.queue == exclusive_queue
    assert ch.queue_declare(exclusive_queue, passive=True).method.queue == exclusive_queue
    assert ch.queue_purge(exclusive_queue).method.message_count == 0


def test_exclusive_queue_deleted_when_owner_closes(params, other, unique):
    q = unique("excl")
    owner = pika.BlockingConnection(params)
    owner.channel().queue_declare(q, exclusive=True)
    other.channel().queue_declare(q + ".probe")  # make sure `other` is up before the close
    owner.close()
    assert_queue_gone(other, q)
    other.channel().queue_delete(q + ".probe")


# -- auto-delete --------------------------------------------------------------------------------


def test_auto_delete_queue_goes_with_its_last_consumer(connection, channel, unique):
    q = unique()
    channel.queue_declare(q, auto_delete=True)
    tag1 = channel.basic_consume(q, lambda *_: None)
    tag2 = channel.basic_consume(q, lambda *_: None)
    channel.basic_cancel(tag1)
    assert counts(channel, q) == (0, 1)
    channel.basic_cancel(tag2)
    assert_queue_gone(connection, q)


def test_auto_delete_queue_goes_when_consumer_channel_closes(connection, channel, unique):
    q = unique()
    channel.queue_declare(q, auto_delete=True)
    ch = connection.channel()
    ch.basic_consume(q, lambda *_: None)
    ch.close()
    assert_queue_gone(connection, q)


def test_auto_delete_queue_never_consumed_stays(params, unique):
    q = unique()
    first = pika.BlockingConnection(params)
    first.channel().queue_declare(q, auto_delete=True)
    first.close()
    second = pika.BlockingConnection(params)
    try:
        ch = second.channel()
        ok = ch.queue_declare(q, passive=True).method
        assert (ok.message_count, ok.consumer_count) == (0, 0)
        ch.queue_delete(q)
    finally:
        second.close()


# -- bind / unbind ------------------------------------------------------------------------------


def test_unbind_missing_things_is_ok(channel, unique):
    q = unique()
    channel.queue_declare(q)
    oks = [
        channel.queue_unbind(unique("missing"), "amq.direct", "rk"),
        channel.queue_unbind(q, unique("missing-x"), "rk"),
        channel.queue_unbind(q, "amq.direct", "never-bound"),
    ]
    assert all(isinstance(ok.method, pika.spec.Queue.UnbindOk) for ok in oks)
    assert channel.is_open


def test_bind_is_idempotent_and_unbind_stops_routing(channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    channel.queue_bind(q, "amq.direct", q)
    channel.queue_bind(q, "amq.direct", q)
    pub.basic_publish("amq.direct", q, b"1")
    channel.queue_unbind(q, "amq.direct", q)
    pub.basic_publish("amq.direct", q, b"2")
    assert counts(channel, q) == (1, 0)


def test_bind_with_different_arguments_are_distinct_bindings(channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    channel.queue_bind(q, "amq.direct", q, arguments={"a": 1})
    channel.queue_bind(q, "amq.direct", q, arguments={"a": 2})
    pub.basic_publish("amq.direct", q, b"one-copy")
    channel.queue_unbind(q, "amq.direct", q, arguments={"a": 1})
    pub.basic_publish("amq.direct", q, b"still-bound")
    channel.queue_unbind(q, "amq.direct", q, arguments={"a": 2})
    pub.basic_publish("amq.direct", q, b"unbound")
    assert counts(channel, q) == (2, 0)


# -- purge --------------------------------------------------------------------------------------


def test_purge_returns_count_and_leaves_unacked(connection, pub, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    for i in range(4):
        pub.basic_publish("", q, b"m%d" % i)
    method, _, body = ch.basic_get(q)
    assert body == b"m0"
    assert ch.queue_purge(q).method.message_count == 3
    assert ch.queue_purge(q).method.message_count == 0
    ch.close()  # the unacked message goes back
    check = connection.channel()
    ready_soon(check, q, 1)
    method, _, body = get_soon(check, q)
    assert (body, method.redelivered) == (b"m0", True)


def test_purge_missing_queue(connection, unique):
    q = unique()
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_purge(q), 404, f"NOT_FOUND - no queue '{q}' in vhost '/'")


# -- delete -------------------------------------------------------------------------------------


def test_delete_returns_ready_count(channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    for i in range(3):
        pub.basic_publish("", q, b"m%d" % i)
    channel.basic_get(q)  # one unacked: not counted
    assert channel.queue_delete(q).method.message_count == 2
    assert channel.queue_delete(q).method.message_count == 0  # missing: delete-ok, 0


def test_delete_if_unused_with_consumer(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.basic_consume(q, lambda *_: None)
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_delete(q, if_unused=True), 406,
                  f"PRECONDITION_FAILED - queue '{q}' in vhost '/' in use")


def test_delete_if_empty_with_ready_message(connection, channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    pub.basic_publish("", q, b"m")
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_delete(q, if_empty=True), 406,
                  f"PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty")


def test_delete_if_empty_with_only_unacked(connection, channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    pub.basic_publish("", q, b"m")
    getter = connection.channel()
    method, _, _ = getter.basic_get(q)
    assert (method.delivery_tag, method.message_count) == (1, 0)
    assert channel.queue_delete(q, if_empty=True).method.message_count == 0
    assert_queue_gone(connection, q)


def test_delete_if_unused_and_if_empty_both_violated(connection, channel, pub, unique):
    q = unique()
    channel.queue_declare(q)
    pub.basic_publish("", q, b"m")
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    got = []
    consumer.basic_consume(q, lambda _c, m, _p, b: got.append(b))
    wait_for(connection, lambda: got)
    pub.basic_publish("", q, b"m2")
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_delete(q, if_unused=True, if_empty=True), 406,
                  f"PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty")


def test_delete_cancels_consumers(connection, params, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method))
    tag = ch.basic_consume(q, lambda *_: None, consumer_tag="ctag-" + q)
    deleter = pika.BlockingConnection(params)
    try:
        assert deleter.channel().queue_delete(q).method.message_count == 0
    finally:
        deleter.close()
    wait_for(connection, lambda: cancelled)
    assert cancelled[0].consumer_tag == tag
    assert ch.consumer_tags == []
    assert_queue_gone(connection, q)


def test_delete_removes_bindings(channel, pub, unique):
    q, x = unique(), unique("x")
    channel.exchange_declare(x, "fanout")
    channel.queue_declare(q)
    channel.queue_bind(q, x)
    channel.queue_delete(q)
    channel.queue_declare(q)
    pub.basic_publish(x, "", b"x")
    assert counts(channel, q) == (0, 0)
    channel.queue_delete(q)


# -- the empty queue name: "the queue last declared on this channel" ------------------------------


def test_empty_queue_name_without_a_declared_queue(connection):
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_purge(""), 404, "NOT_FOUND - no previously declared queue")
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_bind("", "amq.direct", "rk"), 404,
                  "NOT_FOUND - no previously declared queue")


def test_empty_queue_name_means_the_last_declared_queue(connection, pub, unique):
    ch = connection.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind("", "amq.direct", unique("rk"))
    ch.queue_bind("", "amq.direct", "")  # both empty: the routing key is the queue's name too
    pub.basic_publish("amq.direct", q, b"by-name")
    assert counts(ch, q) == (1, 0)
    assert ch.queue_purge("").method.message_count == 1
    ch.queue_unbind("", "amq.direct", q)
    pub.basic_publish("amq.direct", q, b"unbound")
    assert counts(ch, q) == (0, 0)
    pub.basic_publish("", q, b"m")
    ch.queue_declare(q, passive=True)  # a passive declare also sets it
    assert ch.queue_delete("").method.message_count == 1
    assert_queue_gone(connection, q)
