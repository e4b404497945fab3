"""Exchanges through a real pika client: declare/delete rules, reply texts and routing per type.

Every expected reply code and text is the one RabbitMQ 3.10 gives (interop reference). Publishes go
through a confirm-mode channel, so once ``basic_publish`` returns the message has been routed and
``basic_get`` sees exactly what reached each queue.
"""

from __future__ import annotations

import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker
from pika_helpers import channel_error, connection_error


@pytest.fixture
def pub(connection):
    """A confirm-mode channel: basic_publish returns once the broker has routed the message."""
    ch = connection.channel()
    ch.confirm_delivery()
    return ch



def drain(channel, queue):
    """Bodies currently ready in ``queue``, taken with basic.get (auto-ack)."""
    bodies = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def declare_queues(channel, *names):
    for name in names:
        channel.queue_declare(name)


# -- default exchange ---------------------------------------------------------------------------


def test_default_exchange_routes_by_queue_name(channel, pub, unique):
    q1, q2 = unique("a"), unique("b")
    declare_queues(channel, q1, q2)
    pub.basic_publish("", q1, b"one")
    pub.basic_publish("", q2, b"two")
    pub.basic_publish("", unique("nobody"), b"lost")
    assert drain(channel, q1) == [b"one"]
    assert drain(channel, q2) == [b"two"]


def test_default_exchange_mandatory_to_missing_queue_is_returned(connection, channel, unique):
    returned = []
    channel.add_on_return_callback(lambda _ch, method, _props, body: returned.append((method, body)))
    name = unique("nobody")
    channel.basic_publish("", name, b"ret", mandatory=True)
    deadline_events(connection, lambda: returned)
    method, body = returned[0]
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key, body) == (
        312, "NO_ROUTE", "", name, b"ret")


def test_default_exchange_cannot_be_declared_deleted_or_bound(connection, unique):
    ch = connection.channel()
    text = "ACCESS_REFUSED - operation not permitted on the default exchange"
    channel_error(connection, lambda: ch.exchange_declare("", "direct", durable=True), 403, text)
    ch = connection.channel()
    channel_error(connection, lambda: ch.exchange_declare("", passive=True), 403, text)
    ch = connection.channel()
    channel_error(connection, lambda: ch.exchange_delete(""), 403, text)
    ch = connection.channel()
    q = unique()
    ch.queue_declare(q)
    channel_error(connection, lambda: ch.queue_bind(q, "", "rk"), 403, text)
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_unbind(q, "", q), 403, text)


def test_publish_to_amq_default_is_not_found(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    ch = connection.channel()

    def publish():
        ch.basic_publish("amq.default", q, b"x")
        ch.exchange_declare("amq.direct", passive=True)

    channel_error(connection, publish, 404, "NOT_FOUND - no exchange 'amq.default' in vhost '/'")
    assert channel.queue_declare(q, passive=True).method.message_count == 0


# -- predeclared exchanges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,type_",
    [("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
     ("amq.headers", "headers"), ("amq.match", "headers")],
)
def test_predeclared_exchanges_exist_and_are_durable(connection, name, type_):
    ch = connection.channel()
    ch.exchange_declare(name, passive=True)
    ch.exchange_declare(name, type_, durable=True)  # equivalent redeclare is fine
    channel_error(
        connection, lambda: ch.exchange_declare(name, type_, durable=False), 406,
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '{name}' in vhost '/': "
        "received 'false' but current is 'true'",
    )


def test_predeclared_exchange_redeclared_with_other_type(connection):
    ch = connection.channel()
    channel_error(
        connection, lambda: ch.exchange_declare("amq.direct", "fanout", durable=True), 406,
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.direct' in vhost '/': "
        "received 'fanout' but current is 'direct'",
    )


# -- declare ------------------------------------------------------------------------------------


def test_passive_declare_of_missing_exchange(connection, unique):
    ch = connection.channel()
    x = unique("x")
    channel_error(connection, lambda: ch.exchange_declare(x, passive=True), 404,
                  f"NOT_FOUND - no exchange '{x}' in vhost '/'")


def test_passive_declare_ignores_type_and_flags(connection, channel, unique):
    x = unique("x")
    channel.exchange_declare(x, "direct")
    channel.exchange_declare(x, "fanout", passive=True, durable=True, auto_delete=True)
    channel.exchange_declare(x, "x-nope", passive=True)
    assert connection.is_open


def test_redeclare_with_identical_properties(channel, unique):
    x = unique("x")
    args = {"alternate-exchange": "ae", "x-foo": "bar"}
    oks = [
        channel.exchange_declare(x, "topic", durable=True, auto_delete=True, internal=True, arguments=args),
        channel.exchange_declare(x, "topic", durable=True, auto_delete=True, internal=True, arguments=args),
        channel.exchange_declare(x, passive=True),
        # An argument RabbitMQ does not compare may differ or go.
        channel.exchange_declare(x, "topic", durable=True, auto_delete=True, internal=True,
                                 arguments={"alternate-exchange": "ae", "x-foo": "other"}),
        channel.exchange_declare(x, "topic", durable=True, auto_delete=True, internal=True,
                                 arguments={"alternate-exchange": "ae"}),
    ]
    assert all(isinstance(ok.method, pika.spec.Exchange.DeclareOk) for ok in oks)
    channel.exchange_delete(x)


@pytest.mark.parametrize(
    "first,second,text",
    [
        (dict(exchange_type="direct"), dict(exchange_type="fanout"),
         "inequivalent arg 'type' for exchange '{x}' in vhost '/': received 'fanout' but current is 'direct'"),
        (dict(durable=False), dict(durable=True),
         "inequivalent arg 'durable' for exchange '{x}' in vhost '/': received 'true' but current is 'false'"),
        (dict(durable=True), dict(durable=False),
         "inequivalent arg 'durable' for exchange '{x}' in vhost '/': received 'false' but current is 'true'"),
        (dict(auto_delete=False), dict(auto_delete=True),
         "inequivalent arg 'auto_delete' for exchange '{x}' in vhost '/': received 'true' but current is 'false'"),
        (dict(internal=False), dict(internal=True),
         "inequivalent arg 'internal' for exchange '{x}' in vhost '/': received 'true' but current is 'false'"),
        (dict(arguments={"alternate-exchange": "a"}), dict(arguments={"alternate-exchange": "b"}),
         "inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/': received 'b' but current is 'a'"),
        (dict(), dict(arguments={"alternate-exchange": "a"}),
         "inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/': "
         "received the value 'a' of type 'longstr' but current is none"),
        (dict(arguments={"alternate-exchange": "a"}), dict(),
         "inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/': "
         "received none but current is the value 'a' of type 'longstr'"),
    ],
    ids=["type", "durable", "durable-reverse", "auto_delete", "internal", "ae-differs", "ae-added", "ae-removed"],
)
def test_redeclare_inequivalent(connection, unique, first, second, text):
    x = unique("x")
    ch = connection.channel()
    ch.exchange_declare(x, **{"exchange_type": "direct", **first})
    channel_error(connection, lambda: ch.exchange_declare(x, **{"exchange_type": "direct", **second}),
                  406, "PRECONDITION_FAILED - " + text.format(x=x))
    # The exchange itself is unchanged by the failed redeclare.
    connection.channel().exchange_declare(x, **{"exchange_type": "direct", **first})


def test_reserved_amq_prefix(connection, unique):
    name = "amq." + unique("x")
    ch = connection.channel()
    channel_error(connection, lambda: ch.exchange_declare(name, "direct"), 403,
                  f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'")
    ch = connection.channel()
    channel_error(connection, lambda: ch.exchange_declare(name, passive=True), 404,
                  f"NOT_FOUND - no exchange '{name}' in vhost '/'")


def test_unknown_exchange_type_closes_the_connection(connection, unique):
    ch = connection.channel()
    connection_error(connection, lambda: ch.exchange_declare(unique("x"), "x-nope"), 503,
                     "COMMAND_INVALID - unknown exchange type 'x-nope'")


def test_empty_exchange_type_closes_the_connection(connection, unique):
    ch = connection.channel()
    connection_error(connection, lambda: ch.exchange_declare(unique("x"), ""), 503,
                     "COMMAND_INVALID - invalid exchange type ''")


# -- delete -------------------------------------------------------------------------------------


def test_delete_exchange(channel, unique):
    x = unique("x")
    channel.exchange_declare(x, "fanout")
    channel.exchange_delete(x)
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.exchange_declare(x, passive=True)
    assert info.value.reply_code == 404


def test_delete_missing_exchange_is_ok(connection, channel, unique):
    assert isinstance(channel.exchange_delete(unique("x")).method, pika.spec.Exchange.DeleteOk)
    assert isinstance(channel.exchange_delete(unique("x"), if_unused=True).method, pika.spec.Exchange.DeleteOk)
    assert channel.is_open and connection.is_open


def test_delete_if_unused_with_queue_binding(connection, channel, unique):
    x, q = unique("x"), unique()
    channel.exchange_declare(x, "direct")
    channel.queue_declare(q)
    channel.queue_bind(q, x, "rk")
    ch = connection.channel()
    channel_error(connection, lambda: ch.exchange_delete(x, if_unused=True), 406,
                  f"PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use")
    channel.queue_unbind(q, x, "rk")
    channel.exchange_delete(x, if_unused=True)
    with pytest.raises(ChannelClosedByBroker):
        channel.exchange_declare(x, passive=True)


def test_delete_if_unused_for_exchange_to_exchange_bindings(connection, channel, unique):
    source, dest = unique("src"), unique("dst")
    channel.exchange_declare(source, "fanout")
    channel.exchange_declare(dest, "fanout")
    channel.exchange_bind(dest, source)
    ch = connection.channel()
    channel_error(connection, lambda: ch.exchange_delete(source, if_unused=True), 406,
                  f"PRECONDITION_FAILED - exchange '{source}' in vhost '/' in use")
    # Being only a destination does not make an exchange "used".
    channel.exchange_delete(dest, if_unused=True)
    channel.exchange_delete(source, if_unused=True)


def test_delete_system_exchange_is_refused(connection):
    ch = connection.channel()
    channel_error(connection, lambda: ch.exchange_delete("amq.direct"), 403,
                  "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed")
    connection.channel().exchange_declare("amq.direct", passive=True)


def test_deleting_an_exchange_removes_its_bindings(channel, pub, unique):
    x, q = unique("x"), unique()
    channel.exchange_declare(x, "fanout")
    channel.queue_declare(q)
    channel.queue_bind(q, x)
    channel.exchange_delete(x)
    channel.exchange_declare(x, "fanout")  # a new exchange of the same name has no bindings
    pub.basic_publish(x, "", b"m")
    assert drain(channel, q) == []


# -- exchange-to-exchange bindings --------------------------------------------------------------


def test_exchange_to_exchange_bind_and_unbind(channel, pub, unique):
    source, dest, q = unique("src"), unique("dst"), unique()
    channel.exchange_declare(source, "direct")
    channel.exchange_declare(dest, "fanout")
    channel.queue_declare(q)
    channel.queue_bind(q, dest)
    channel.exchange_bind(dest, source, "k")
    pub.basic_publish(source, "k", b"routed")
    pub.basic_publish(source, "other", b"not-routed")
    assert drain(channel, q) == [b"routed"]
    channel.exchange_unbind(dest, source, "k")
    pub.basic_publish(source, "k", b"after-unbind")
    assert drain(channel, q) == []
    channel.exchange_unbind(dest, source, "k")  # a missing binding unbinds fine


def test_exchange_bind_missing_exchanges(connection, channel, unique):
    present, missing = unique("x"), unique("x2")
    channel.exchange_declare(present, "fanout")
    ch = connection.channel()
    channel_error(connection, lambda: ch.exchange_bind(present, missing), 404,
                  f"NOT_FOUND - no exchange '{missing}' in vhost '/'")
    ch = connection.channel()
    channel_error(connection, lambda: ch.exchange_bind(missing, present), 404,
                  f"NOT_FOUND - no exchange '{missing}' in vhost '/'")


def test_exchange_chain(channel, pub, unique):
    a, b, c = unique("a"), unique("b"), unique("c")
    qb, qc = unique("qb"), unique("qc")
    channel.exchange_declare(a, "topic")
    channel.exchange_declare(b, "direct")
    channel.exchange_declare(c, "fanout")
    declare_queues(channel, qb, qc)
    channel.exchange_bind(b, a, "log.#")
    channel.exchange_bind(c, b, "log.error")
    channel.queue_bind(qb, b, "log.info")
    channel.queue_bind(qc, c)
    pub.basic_publish(a, "log.error", b"e")
    pub.basic_publish(a, "log.info", b"i")
    pub.basic_publish(a, "audit.error", b"x")
    assert drain(channel, qb) == [b"i"]
    assert drain(channel, qc) == [b"e"]


def test_exchange_cycle_delivers_one_copy_per_queue(channel, pub, unique):
    a, b = unique("a"), unique("b")
    qa, qb = unique("qa"), unique("qb")
    channel.exchange_declare(a, "fanout")
    channel.exchange_declare(b, "fanout")
    declare_queues(channel, qa, qb)
    channel.exchange_bind(b, a)
    channel.exchange_bind(a, b)
    channel.queue_bind(qa, a)
    channel.queue_bind(qb, b)
    pub.basic_publish(a, "", b"from-a")
    pub.basic_publish(b, "", b"from-b")
    assert drain(channel, qa) == [b"from-a", b"from-b"]
    assert drain(channel, qb) == [b"from-a", b"from-b"]


def test_exchange_self_binding_does_not_loop(channel, pub, unique):
    a, q = unique("a"), unique()
    channel.exchange_declare(a, "fanout")
    channel.queue_declare(q)
    channel.exchange_bind(a, a)
    channel.queue_bind(q, a)
    pub.basic_publish(a, "", b"once")
    assert drain(channel, q) == [b"once"]


def test_exchange_diamond_delivers_one_copy(channel, pub, unique):
    top, left, right, q = unique("top"), unique("l"), unique("r"), unique()
    for name in (top, left, right):
        channel.exchange_declare(name, "fanout")
    channel.queue_declare(q)
    channel.exchange_bind(left, top)
    channel.exchange_bind(right, top)
    channel.queue_bind(q, left)
    channel.queue_bind(q, right)
    channel.queue_bind(q, top)
    pub.basic_publish(top, "", b"one-copy")
    assert drain(channel, q) == [b"one-copy"]


def test_deleting_a_destination_exchange_removes_the_binding(channel, pub, unique):
    source, dest, q = unique("src"), unique("dst"), unique()
    channel.exchange_declare(source, "fanout")
    channel.exchange_declare(dest, "fanout")
    channel.queue_declare(q)
    channel.exchange_bind(dest, source)
    channel.queue_bind(q, dest)
    channel.exchange_delete(dest)
    channel.exchange_declare(dest, "fanout")
    channel.queue_bind(q, dest)
    pub.basic_publish(source, "", b"m")
    assert drain(channel, q) == []
    # And the source is no longer "in use".
    channel.exchange_delete(source, if_unused=True)


# -- auto-delete and internal -------------------------------------------------------------------


def assert_exchange_gone(connection, name):
    ch = connection.channel()
    channel_error(connection, lambda: ch.exchange_declare(name, passive=True), 404,
                  f"NOT_FOUND - no exchange '{name}' in vhost '/'")


def test_auto_delete_exchange_goes_with_its_last_queue_binding(connection, channel, unique):
    x, q = unique("x"), unique()
    channel.exchange_declare(x, "direct", auto_delete=True)
    channel.queue_declare(q)
    channel.queue_bind(q, x, "a")
    channel.queue_bind(q, x, "b")
    channel.queue_unbind(q, x, "a")
    channel.exchange_declare(x, passive=True)  # one binding left
    channel.queue_unbind(q, x, "b")
    assert_exchange_gone(connection, x)


def test_auto_delete_exchange_goes_when_bound_queue_is_deleted(connection, channel, unique):
    x, q = unique("x"), unique()
    channel.exchange_declare(x, "fanout", auto_delete=True)
    channel.queue_declare(q)
    channel.queue_bind(q, x)
    channel.queue_delete(q)
    assert_exchange_gone(connection, x)


def test_auto_delete_exchange_without_bindings_stays(connection, unique):
    x = unique("x")
    ch = connection.channel()
    ch.exchange_declare(x, "fanout", auto_delete=True)
    ch.close()
    ok = connection.channel().exchange_declare(x, passive=True)
    assert isinstance(ok.method, pika.spec.Exchange.DeclareOk)
    connection.channel().exchange_delete(x)


def test_auto_delete_exchange_goes_with_its_last_exchange_binding(connection, channel, unique):
    x, dest = unique("x"), unique("dst")
    channel.exchange_declare(x, "fanout", auto_delete=True)
    channel.exchange_declare(dest, "fanout")
    channel.exchange_bind(dest, x)
    channel.exchange_unbind(dest, x)
    assert_exchange_gone(connection, x)
    connection.channel().exchange_declare(dest, passive=True)


def test_publish_to_internal_exchange_is_refused(connection, channel, unique):
    x = unique("x")
    channel.exchange_declare(x, "fanout", internal=True)
    ch = connection.channel()

    def publish():
        ch.basic_publish(x, "", b"m")
        ch.exchange_declare("amq.direct", passive=True)

    channel_error(connection, publish, 403, f"ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '/'")


def test_routing_through_an_internal_exchange(channel, pub, unique):
    public, internal, q = unique("pub"), unique("int"), unique()
    channel.exchange_declare(public, "direct")
    channel.exchange_declare(internal, "fanout", internal=True)
    channel.queue_declare(q)
    channel.exchange_bind(internal, public, "k")
    channel.queue_bind(q, internal)
    pub.basic_publish(public, "k", b"via-internal")
    assert drain(channel, q) == [b"via-internal"]


# -- routing per type ---------------------------------------------------------------------------


def test_direct_routing(channel, pub, unique):
    x, q1, q2 = unique("x"), unique("q1"), unique("q2")
    channel.exchange_declare(x, "direct")
    declare_queues(channel, q1, q2)
    channel.queue_bind(q1, x, "red")
    channel.queue_bind(q1, x, "green")
    channel.queue_bind(q2, x, "green")
    channel.queue_bind(q1, x, "red")  # the same binding twice is one binding
    for rk in ("red", "green", "blue", "Red"):
        pub.basic_publish(x, rk, rk.encode())
    assert drain(channel, q1) == [b"red", b"green"]
    assert drain(channel, q2) == [b"green"]


def test_fanout_routing_ignores_routing_key(channel, pub, unique):
    x, q1, q2 = unique("x"), unique("q1"), unique("q2")
    channel.exchange_declare(x, "fanout")
    declare_queues(channel, q1, q2)
    channel.queue_bind(q1, x, "ignored")
    channel.queue_bind(q1, x, "also-ignored")
    channel.queue_bind(q2, x)
    pub.basic_publish(x, "anything", b"a")
    pub.basic_publish(x, "", b"b")
    assert drain(channel, q1) == [b"a", b"b"]
    assert drain(channel, q2) == [b"a", b"b"]


def test_topic_routing(channel, pub, unique):
    x = unique("x")
    star, hash_, mixed, multi = unique("star"), unique("hash"), unique("mixed"), unique("multi")
    channel.exchange_declare(x, "topic")
    declare_queues(channel, star, hash_, mixed, multi)
    channel.queue_bind(star, x, "*.orange.*")
    channel.queue_bind(hash_, x, "lazy.#")
    channel.queue_bind(mixed, x, "#.rabbit")
    channel.queue_bind(multi, x, "*.*.rabbit")
    channel.queue_bind(multi, x, "lazy.#")
    channel.queue_bind(multi, x, "#")
    keys = ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", "lazy.brown.fox",
            "lazy", "rabbit", "quick.orange.male.rabbit", "orange", ""]
    for rk in keys:
        pub.basic_publish(x, rk, rk.encode())
    assert drain(channel, star) == [b"quick.orange.rabbit", b"lazy.orange.elephant", b"quick.orange.fox"]
    assert drain(channel, hash_) == [b"lazy.orange.elephant", b"lazy.brown.fox", b"lazy"]
    assert drain(channel, mixed) == [b"quick.orange.rabbit", b"rabbit", b"quick.orange.male.rabbit"]
    # Three patterns match some keys several times over: still one copy each.
    assert drain(channel, multi) == [k.encode() for k in keys]


def test_topic_unbind_one_of_two_patterns(channel, pub, unique):
    x, q = unique("x"), unique()
    channel.exchange_declare(x, "topic")
    channel.queue_declare(q)
    channel.queue_bind(q, x, "a.*")
    channel.queue_bind(q, x, "*.b")
    channel.queue_unbind(q, x, "a.*")
    for rk in ("a.b", "a.c", "c.b"):
        pub.basic_publish(x, rk, rk.encode())
    assert drain(channel, q) == [b"a.b", b"c.b"]


def test_headers_routing(channel, pub, unique):
    x = unique("x")
    q_all, q_any, q_all_x, q_any_x, q_default = (unique(n) for n in ("all", "any", "allx", "anyx", "dflt"))
    channel.exchange_declare(x, "headers")
    declare_queues(channel, q_all, q_any, q_all_x, q_any_x, q_default)
    channel.queue_bind(q_all, x, arguments={"x-match": "all", "format": "pdf", "type": "report"})
    channel.queue_bind(q_any, x, arguments={"x-match": "any", "format": "pdf", "type": "report"})
    channel.queue_bind(q_all_x, x, arguments={"x-match": "all-with-x", "x-kind": "a", "format": "pdf"})
    channel.queue_bind(q_any_x, x, arguments={"x-match": "any-with-x", "x-kind": "a"})
    channel.queue_bind(q_default, x, arguments={"format": "pdf", "type": "report"})  # x-match defaults to all
    messages = {
        "both": {"format": "pdf", "type": "report"},
        "format-only": {"format": "pdf"},
        "wrong": {"format": "zip", "type": "log"},
        "x-kind": {"format": "pdf", "x-kind": "a"},
        "none": None,
    }
    for body, headers in messages.items():
        pub.basic_publish(x, "", body.encode(), pika.BasicProperties(headers=headers))
    assert drain(channel, q_all) == [b"both"]
    assert drain(channel, q_any) == [b"both", b"format-only", b"x-kind"]
    assert drain(channel, q_default) == [b"both"]
    assert drain(channel, q_all_x) == [b"x-kind"]
    assert drain(channel, q_any_x) == [b"x-kind"]


def test_headers_x_headers_are_ignored_by_all_and_any(channel, pub, unique):
    x, q_all, q_any = unique("x"), unique("all"), unique("any")
    channel.exchange_declare(x, "headers")
    declare_queues(channel, q_all, q_any)
    channel.queue_bind(q_all, x, arguments={"x-match": "all", "x-kind": "a"})
    channel.queue_bind(q_any, x, arguments={"x-match": "any", "x-kind": "a"})
    pub.basic_publish(x, "", b"m", pika.BasicProperties(headers={"x-kind": "a"}))
    # "all" with only x- arguments has nothing to check: it matches; "any" has nothing to match.
    assert drain(channel, q_all) == [b"m"]
    assert drain(channel, q_any) == []


def test_headers_invalid_x_match_on_bind(connection, channel, unique):
    x, q = unique("x"), unique()
    channel.exchange_declare(x, "headers")
    channel.queue_declare(q)
    ch = connection.channel()
    channel_error(
        connection, lambda: ch.queue_bind(q, x, arguments={"x-match": "nope", "a": 1}), 406,
        "PRECONDITION_FAILED - Invalid x-match field value <<\"nope\">>; "
        "expected all, any, all-with-x, or any-with-x",
    )


def test_bind_missing_queue_or_exchange(connection, channel, unique):
    q, x = unique(), unique("x")
    channel.queue_declare(q)
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_bind(q, x, "rk"), 404, f"NOT_FOUND - no exchange '{x}' in vhost '/'")
    missing = unique("missing")
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_bind(missing, "amq.direct", "rk"), 404,
                  f"NOT_FOUND - no queue '{missing}' in vhost '/'")
    ch = connection.channel()
    channel_error(connection, lambda: ch.queue_bind(missing, x, "rk"), 404,
                  f"NOT_FOUND - no exchange '{x}' in vhost '/'")


def deadline_events(connection, condition, timeout=5.0):
    """Process I/O until ``condition()`` is truthy or the deadline passes (then fail)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the broker"
        connection.process_data_events(time_limit=0.05)
