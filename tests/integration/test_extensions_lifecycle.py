"""RabbitMQ's message-lifecycle extensions through pika: alternate exchanges, message TTL,
x-expires, dead-lettering (x-death), length limits with x-overflow, quorum and stream queues.

Every expectation here was first observed on RabbitMQ 3.10.8 with the same pika calls (the probe
scripts are summarised in each test's docstring). Header tables are compared *with their AMQP field
types and wire order* — RabbitMQ sorts the headers table after dead-lettering, writes x-death's
``count`` as a long, and so on — by decoding the raw content-header bytes pika received.

TTL tests use TTLs of 50-300 ms and poll with deadlines; where something must *not* happen within
a window, ``SETTLE`` bounds the wait.
"""

from __future__ import annotations

import time

import pika
import pytest
from pika.exceptions import (
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
    NackError,
    UnroutableError,
)

from amqp_broker.broker import properties as basic_properties
from amqp_broker.broker.fields import TypedArray, TypedTable

SETTLE = 0.3  # seconds to watch for something that must NOT happen
T = "TIME"  # stands for an x-death timestamp (checked separately)


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def raw_properties(monkeypatch):
    """Keep the raw content-header property bytes pika decodes, for type-exact comparisons."""
    original = pika.spec.BasicProperties.decode

    def decode(self, encoded, offset=0):
        self._raw = bytes(encoded[offset:])
        return original(self, encoded, offset)

    monkeypatch.setattr(pika.spec.BasicProperties, "decode", decode)


def _show(value):
    if isinstance(value, TypedTable):
        return [(k, t, _show(v)) for k, t, v in value.entries()]
    if isinstance(value, TypedArray):
        return [(t, _show(v)) for t, v in value.items_typed()]
    if hasattr(value, "isoformat"):
        return T
    return value


def typed(props) -> dict:
    """Every property pika received, headers as [(key, type octet, value)] in wire order."""
    values = basic_properties.properties_to_dict(props._raw)
    values.pop("cluster_id", None)
    if "headers" in values:
        values["headers"] = _show(values["headers"])
    return values


def death(reason, queue, rks, exchange="", count=1, original_expiration=None, first=True):
    """One x-death table as RabbitMQ writes it: construction order for the first entry ever,
    sorted by key for every later one."""
    entries = [
        ("count", "l", count),
        ("reason", "S", reason),
        ("queue", "S", queue),
        ("time", "T", T),
        ("exchange", "S", exchange),
        ("routing-keys", "A", [("S", k) for k in rks]),
    ]
    if original_expiration is not None:
        entries.append(("original-expiration", "S", original_expiration))
    if not first:
        entries.sort(key=lambda e: e[0])
    return ("F", entries)


def dl_headers(deaths, first_reason, first_queue, first_exchange="", extra=()):
    """The headers of a dead-lettered message: sorted by key, as RabbitMQ leaves them."""
    headers = list(extra) + [
        ("x-death", "A", deaths),
        ("x-first-death-exchange", "S", first_exchange),
        ("x-first-death-queue", "S", first_queue),
        ("x-first-death-reason", "S", first_reason),
    ]
    return sorted(headers, key=lambda e: e[0])


def get_within(ch, queue, timeout=3.0, auto_ack=True):
    """basic.get until a message arrives (or the deadline passes: None)."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method is not None:
            return method, props, body
        if time.monotonic() > deadline:
            return None, None, None
        time.sleep(0.01)


def count(ch, queue):
    return ch.queue_declare(queue, passive=True).method.message_count


def exists(connection, queue):
    """Whether ``queue`` exists, asked with queue.bind: a (passive) declare would count as use and
    restart its x-expires countdown (in RabbitMQ too)."""
    ch = connection.channel()
    try:
        ch.queue_bind(queue, "amq.direct", "existence-probe")
    except ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    ch.queue_unbind(queue, "amq.direct", "existence-probe")
    ch.close()
    return True


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def closes_channel(connection, fn, code, text):
    ch = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        fn(ch)
    assert (info.value.reply_code, info.value.reply_text) == (code, text)


def closes_connection(params, fn, code, text):
    conn = pika.BlockingConnection(params)
    try:
        with pytest.raises(ConnectionClosedByBroker) as info:
            fn(conn, conn.channel())
        assert (info.value.reply_code, info.value.reply_text) == (code, text)
    finally:
        if conn.is_open:
            conn.close()


def dlx_args(target, **more):
    """Dead-letter through the default exchange straight into ``target``."""
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": target, **more}


@pytest.fixture
def confirm(connection):
    ch = connection.channel()
    ch.confirm_delivery()
    return ch


def publish_result(ch, exchange, routing_key, body=b"x", mandatory=False, properties=None):
    try:
        ch.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
        return "ack"
    except UnroutableError:
        return "returned"
    except NackError:
        return "nack"


# -- alternate exchanges ---------------------------------------------------------------------------


def test_alternate_exchange_chain_takes_unroutable_messages(channel, confirm, unique):
    """X -AE-> AE (direct, nothing bound) -AE-> AE2 (fanout) -> QA: routed, acked, not returned;
    delivered with the exchange and key it was published with."""
    x, ae, ae2, q, qa = unique("x"), unique("ae"), unique("ae2"), unique("q"), unique("qa")
    channel.exchange_declare(ae2, "fanout", auto_delete=True)
    channel.exchange_declare(ae, "direct", auto_delete=True, arguments={"alternate-exchange": ae2})
    channel.exchange_declare(x, "direct", auto_delete=True, arguments={"alternate-exchange": ae})
    channel.queue_declare(q, auto_delete=True)
    channel.queue_declare(qa, auto_delete=True)
    channel.queue_bind(q, x, "k")
    channel.queue_bind(qa, ae2)
    assert publish_result(confirm, x, "k", b"1", mandatory=True) == "ack"
    assert publish_result(confirm, x, "zz", b"2", mandatory=True) == "ack"
    method, _, body = get_within(channel, qa)
    assert (body, method.exchange, method.routing_key, method.redelivered) == (b"2", x, "zz", False)
    assert count(channel, q) == 1
    # The chain routes nowhere once QA is unbound: mandatory returns it, from X.
    channel.queue_unbind(qa, ae2)
    with pytest.raises(UnroutableError) as info:
        confirm.basic_publish(x, "zz", b"3", mandatory=True)
    (returned,) = info.value.messages
    method = returned.method
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key, returned.body) == (
        312, "NO_ROUTE", x, "zz", b"3")


def test_alternate_exchange_cycle_and_missing_are_unroutable(channel, confirm, unique):
    c1, c2, m = unique("c1"), unique("c2"), unique("m")
    channel.exchange_declare(c1, "direct", auto_delete=True, arguments={"alternate-exchange": c2})
    channel.exchange_declare(c2, "direct", auto_delete=True, arguments={"alternate-exchange": c1})
    channel.exchange_declare(m, "direct", auto_delete=True, arguments={"alternate-exchange": "no-such-exchange"})
    assert publish_result(confirm, c1, "zz", mandatory=True) == "returned"
    assert publish_result(confirm, m, "zz", mandatory=True) == "returned"


def test_alternate_exchange_applies_per_exchange_in_the_binding_graph(channel, confirm, unique):
    """RabbitMQ's route1/process_alternate: X2 routes to Q directly *and* to Y, which routes nowhere
    and so hands the message to its own AE — both queues get it."""
    x2, y, f, q, qa = unique("x2"), unique("y"), unique("f"), unique("q"), unique("qa")
    channel.queue_declare(q, auto_delete=True)
    channel.queue_declare(qa, auto_delete=True)
    channel.exchange_declare(f, "fanout", auto_delete=True)
    channel.queue_bind(qa, f)
    channel.exchange_declare(y, "direct", arguments={"alternate-exchange": f})
    channel.exchange_declare(x2, "fanout", auto_delete=True)
    channel.exchange_bind(y, x2)
    channel.queue_bind(q, x2)
    assert publish_result(confirm, x2, "k", mandatory=True) == "ack"
    assert (count(channel, q), count(channel, qa)) == (1, 1)
    channel.exchange_delete(y)


def test_alternate_exchange_may_be_internal(channel, confirm, unique):
    internal, x, qa = unique("in"), unique("xi"), unique("qa")
    channel.exchange_declare(internal, "fanout", internal=True, auto_delete=True)
    channel.queue_declare(qa, auto_delete=True)
    channel.queue_bind(qa, internal)
    channel.exchange_declare(x, "direct", auto_delete=True, arguments={"alternate-exchange": internal})
    assert publish_result(confirm, x, "zz", mandatory=True) == "ack"
    assert count(channel, qa) == 1


def test_alternate_exchange_argument_must_be_a_string(connection, unique):
    name = unique("bad")
    closes_channel(
        connection, lambda ch: ch.exchange_declare(name, "direct", arguments={"alternate-exchange": 5}),
        406, f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in exchange '{name}' in vhost '/'",
    )


# -- per-message expiration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expiration, problem",
    [
        ("abc", "no_integer"),
        ("", "no_integer"),
        (" 5", "no_integer"),
        ("-", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("1.5", '{leftover_string,".5"}'),
        ("5 ", '{leftover_string," "}'),
        ("0x10", '{leftover_string,"x10"}'),
        ('1"2', '{leftover_string,"\\"2"}'),
        ("315360000001", "{value_too_large,315360000001}"),
    ],
)
def test_invalid_expiration_closes_the_channel(connection, unique, expiration, problem):
    q = unique("exp")

    def publish(ch):
        ch.queue_declare(q, auto_delete=True)
        ch.basic_publish("", q, b"x", pika.BasicProperties(expiration=expiration))
        ch.queue_declare(q, passive=True)

    closes_channel(connection, publish, 406, f"PRECONDITION_FAILED - invalid expiration '{expiration}': {problem}")


@pytest.mark.parametrize("expiration", ["+5000", "-0", "007", "315360000000"])
def test_expiration_values_rabbitmq_accepts(channel, unique, expiration):
    q = unique("exp")
    channel.queue_declare(q, auto_delete=True)
    channel.basic_publish("", q, b"x", pika.BasicProperties(expiration=expiration))
    method, _, _ = get_within(channel, q, 1)
    assert method is not None or expiration == "-0"


def test_bad_exchange_is_reported_before_bad_expiration(connection):
    closes_channel(
        connection,
        lambda ch: (ch.basic_publish("nope", "q", b"x", pika.BasicProperties(expiration="abc")),
                    ch.queue_declare("", exclusive=True)),
        404, "NOT_FOUND - no exchange 'nope' in vhost '/'",
    )


# -- message TTL -----------------------------------------------------------------------------------------


def test_ttl_expiry_dead_letters_proactively_with_exact_headers(channel, unique):
    """Queue TTL 100 ms and no consumer: every message is dead-lettered around its deadline (the
    lower of x-message-ttl and its expiration), reason expired; a per-message expiration becomes
    original-expiration and the copy has no expiration left."""
    a, b = unique("a"), unique("b")
    channel.queue_declare(b, auto_delete=True)
    channel.queue_declare(a, auto_delete=True, arguments={"x-message-ttl": 150, **dlx_args(b)})
    started = time.monotonic()
    channel.basic_publish("", a, b"queue-ttl")
    channel.basic_publish("", a, b"msg-ttl", pika.BasicProperties(expiration="50"))
    channel.basic_publish("", a, b"msg-ttl-longer", pika.BasicProperties(expiration="5000", priority=3))
    got = [get_within(channel, b, 3) for _ in range(3)]
    elapsed = time.monotonic() - started
    assert 0.12 <= elapsed < 2.0
    assert [body for _, _, body in got] == [b"queue-ttl", b"msg-ttl", b"msg-ttl-longer"]
    for (method, props, body), expiration in zip(got, [None, "50", "5000"]):
        assert (method.exchange, method.routing_key) == ("", b)
        expected = {"headers": dl_headers([death("expired", a, [a], original_expiration=expiration)], "expired", a)}
        if body == b"msg-ttl-longer":
            expected["priority"] = 3
        assert typed(props) == expected
    assert count(channel, a) == 0


def test_expired_messages_are_not_delivered_to_basic_get(channel, unique):
    q = unique("q")
    channel.queue_declare(q, auto_delete=True, arguments={"x-message-ttl": 50})
    channel.basic_publish("", q, b"old")
    time.sleep(0.1)
    channel.basic_publish("", q, b"new")
    assert [get_within(channel, q, 0.2)[2] for _ in range(2)] == [b"new", None]


def test_ttl_zero_expires_unless_a_consumer_takes_it_at_once(connection, channel, unique):
    """x-message-ttl 0: without a consumer the message is gone at once (dead-lettered when there is
    a DLX); a consumer with prefetch 1 gets the first and the rest are dead-lettered."""
    dl, t0, t0d = unique("dl"), unique("t0"), unique("t0d")
    channel.queue_declare(dl, auto_delete=True)
    channel.queue_declare(t0, auto_delete=True, arguments={"x-message-ttl": 0})
    channel.queue_declare(t0d, auto_delete=True, arguments={"x-message-ttl": 0, **dlx_args(dl)})
    channel.basic_publish("", t0, b"a")
    channel.basic_publish("", t0d, b"b")
    assert (count(channel, t0), count(channel, t0d), count(channel, dl)) == (0, 0, 1)
    got = []
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(t0d, lambda _c, m, p, body: got.append(body))
    for i in range(3):
        channel.basic_publish("", t0d, f"c{i}".encode())
    assert wait_for(lambda: (connection.process_data_events(0.01), count(channel, dl) == 3)[1])
    assert got == [b"c0"]
    # Per-message expiration "0" on a plain queue: gone at once too.
    plain = unique("p")
    channel.queue_declare(plain, auto_delete=True)
    channel.basic_publish("", plain, b"e0", pika.BasicProperties(expiration="0"))
    assert count(channel, plain) == 0


def test_per_message_ttl_waits_behind_a_live_head(channel, unique):
    """Classic queues expire at the head only: a short TTL behind a long-lived message stays (and is
    counted) until the head is gone, then it is dropped without being delivered."""
    q = unique("q")
    channel.queue_declare(q, auto_delete=True)
    channel.basic_publish("", q, b"long")
    channel.basic_publish("", q, b"short", pika.BasicProperties(expiration="50"))
    time.sleep(0.2)
    assert count(channel, q) == 2
    assert get_within(channel, q, 0.2)[2] == b"long"
    assert get_within(channel, q, 0.2)[2] is None
    assert count(channel, q) == 0


def test_requeued_message_past_its_ttl_is_dead_lettered(channel, unique):
    q, dl = unique("q"), unique("dl")
    channel.queue_declare(dl, auto_delete=True)
    channel.queue_declare(q, auto_delete=True, arguments={"x-message-ttl": 100, **dlx_args(dl)})
    channel.basic_publish("", q, b"held")
    method, _, _ = get_within(channel, q, 1, auto_ack=False)
    time.sleep(0.2)
    assert count(channel, dl) == 0  # unacked messages do not expire
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, props, body = get_within(channel, dl, 2)
    assert body == b"held" and props.headers["x-death"][0]["reason"] == "expired"


# -- x-expires -----------------------------------------------------------------------------------------------


def test_x_expires_deletes_an_unused_queue(connection, channel, unique):
    """Deleted x-expires ms after its last use (declare, passive declare, basic.get); a consumer
    keeps it alive and the countdown restarts when the consumer goes. Its messages are not
    dead-lettered."""
    plain, passive, got, consumed = (unique(n) for n in ("plain", "passive", "get", "consumed"))
    dl = unique("dl")
    channel.queue_declare(dl, auto_delete=True)
    for q in (plain, passive, got, consumed):
        channel.queue_declare(q, arguments={"x-expires": 400, **dlx_args(dl)})
    channel.basic_publish("", plain, b"dropped")
    tag = channel.basic_consume(consumed, lambda *a: None)
    started = time.monotonic()
    time.sleep(0.25)
    channel.queue_declare(passive, passive=True)
    channel.basic_get(got)
    time.sleep(max(0, started + 0.55 - time.monotonic()))
    assert not exists(connection, plain)
    assert exists(connection, passive) and exists(connection, got) and exists(connection, consumed)
    channel.basic_cancel(tag)
    cancelled = time.monotonic()
    assert wait_for(lambda: not exists(connection, consumed), 2)
    assert time.monotonic() - cancelled >= 0.3
    assert wait_for(lambda: not exists(connection, passive) and not exists(connection, got), 2)
    assert count(channel, dl) == 0


# -- dead-lettering ----------------------------------------------------------------------------------------


def test_reject_dead_letters_with_rabbitmq_headers(channel, unique):
    """basic.reject(requeue=false): x-death, x-first-death-*, headers sorted, CC removed because a
    dead-letter routing key is set (but listed in routing-keys), expiration moved to
    original-expiration, other properties and user headers (with their types) kept."""
    a, b = unique("a"), unique("b")
    channel.queue_declare(b, auto_delete=True)
    channel.queue_declare(a, auto_delete=True, arguments=dlx_args(b))
    props = pika.BasicProperties(
        headers={"z": 1, "a": "s", "CC": ["foo"]}, expiration="60000", content_type="text/plain", priority=3
    )
    channel.basic_publish("", a, b"body", props)
    method, _, _ = get_within(channel, a, auto_ack=False)
    channel.basic_reject(method.delivery_tag, requeue=False)
    method, props, body = get_within(channel, b)
    assert (method.exchange, method.routing_key, method.redelivered, body) == ("", b, False, b"body")
    assert typed(props) == {
        "content_type": "text/plain",
        "priority": 3,
        "headers": dl_headers(
            [death("rejected", a, [a, "foo"], original_expiration="60000")], "rejected", a,
            extra=[("z", "I", 1), ("a", "S", "s")],
        ),
    }


def test_x_death_history_through_three_queues(channel, unique):
    """A -> B -> C -> A -> B by rejection. Each new entry goes first; a repeat increments count and
    moves to the front; and, RabbitMQ's group_by_queue_and_reason quirk, the other entries come out
    reversed whenever there were two or more."""
    a, b, c = unique("a"), unique("b"), unique("c")
    channel.queue_declare(b, auto_delete=True, arguments=dlx_args(c))
    channel.queue_declare(c, auto_delete=True, arguments=dlx_args(a))
    channel.queue_declare(a, auto_delete=True, arguments=dlx_args(b))
    channel.basic_publish("", a, b"m", pika.BasicProperties(expiration="60000"))
    histories = []
    for q in (a, b, c, a, b):
        method, props, _ = get_within(channel, q, auto_ack=False)
        if q != a or histories:
            histories.append(typed(props)["headers"])
        channel.basic_reject(method.delivery_tag, requeue=False)
    method, props, _ = get_within(channel, c)
    histories.append(typed(props)["headers"])
    d_a = death("rejected", a, [a], original_expiration="60000")
    d_a2 = death("rejected", a, [a], count=2, original_expiration="60000", first=False)
    d_b = death("rejected", b, [b], first=False)
    d_b2 = death("rejected", b, [b], count=2, first=False)
    d_c = death("rejected", c, [c], first=False)
    expected = [[d_a], [d_b, d_a], [d_c, d_a, d_b], [d_a2, d_b, d_c], [d_b2, d_c, d_a2]]
    assert histories == [dl_headers(deaths, "rejected", a) for deaths in expected]


def test_dead_letter_exchange_gets_the_original_routing_key(channel, unique):
    dlx, q, target = unique("dlx"), unique("q"), unique("t")
    channel.exchange_declare(dlx, "topic", auto_delete=True)
    channel.queue_declare(target, auto_delete=True)
    channel.queue_bind(target, dlx, "orig.#")
    channel.queue_declare(q, auto_delete=True, arguments={"x-dead-letter-exchange": dlx})
    channel.basic_publish("", q, b"m")
    # Published to the default exchange with key q; the copy keeps key q, so bind on it.
    channel.queue_bind(target, dlx, q)
    method, _, _ = get_within(channel, q, auto_ack=False)
    channel.basic_nack(method.delivery_tag, requeue=False)
    method, props, _ = get_within(channel, target)
    assert (method.exchange, method.routing_key) == (dlx, q)
    assert props.headers["x-death"][0]["routing-keys"] == [q]


def test_missing_dead_letter_exchange_drops(channel, unique):
    q = unique("q")
    channel.queue_declare(q, auto_delete=True, arguments={"x-dead-letter-exchange": unique("none")})
    channel.basic_publish("", q, b"m")
    method, _, _ = get_within(channel, q, auto_ack=False)
    channel.basic_reject(method.delivery_tag, requeue=False)
    assert count(channel, q) == 0


def test_expired_dead_letter_cycle_is_dropped_but_rejected_one_is_not(channel, unique):
    """rabbit_dead_letter:is_cycle: expiring back into the same queue is a cycle (dropped);
    rejecting into it is not (and the count goes up)."""
    s, r = unique("s"), unique("r")
    channel.queue_declare(s, auto_delete=True, arguments={"x-message-ttl": 50, **dlx_args(s)})
    channel.basic_publish("", s, b"cycle")
    time.sleep(SETTLE)
    assert count(channel, s) == 0
    channel.queue_declare(r, auto_delete=True, arguments=dlx_args(r))
    channel.basic_publish("", r, b"rej")
    for expected in (1, 2):
        method, props, _ = get_within(channel, r, auto_ack=False)
        if expected == 2:
            assert typed(props)["headers"] == dl_headers([death("rejected", r, [r])], "rejected", r)
        channel.basic_reject(method.delivery_tag, requeue=False)
    method, props, _ = get_within(channel, r)
    assert typed(props)["headers"] == dl_headers([death("rejected", r, [r], count=2, first=False)], "rejected", r)


def test_dead_letter_argument_checks(connection, unique):
    q = unique("q")
    closes_channel(
        connection, lambda ch: ch.queue_declare(q, arguments={"x-dead-letter-routing-key": "k"}),
        406, f"PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue '{q}' in vhost '/': routing_key_but_no_dlx_defined",
    )
    closes_channel(
        connection, lambda ch: ch.queue_declare(q, arguments={"x-max-length": -1, "x-dead-letter-exchange": 5}),
        406, f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '{q}' in vhost '/'",
    )


# -- length limits ------------------------------------------------------------------------------------------


def test_max_length_drop_head_dead_letters_maxlen(channel, confirm, unique):
    a, dl = unique("a"), unique("dl")
    channel.queue_declare(dl, auto_delete=True)
    channel.queue_declare(a, auto_delete=True, arguments={"x-max-length": 2, **dlx_args(dl)})
    for i in range(4):
        confirm.basic_publish("", a, f"m{i}".encode())
    assert count(channel, a) == 2
    for body in (b"m0", b"m1"):
        method, props, got = get_within(channel, dl)
        assert got == body
        assert typed(props)["headers"] == dl_headers([death("maxlen", a, [a])], "maxlen", a)
    assert [get_within(channel, a)[2] for _ in range(2)] == [b"m2", b"m3"]


def test_max_length_bytes_counts_body_bytes(channel, confirm, unique):
    """Limit 10 bytes, bodies 5, 6, 4, 11: each publish drops from the head until within it, the
    11-byte one included (RabbitMQ ends with an empty queue)."""
    q = unique("q")
    channel.queue_declare(q, auto_delete=True, arguments={"x-max-length-bytes": 10})
    for body, left in ((b"12345", 1), (b"123456", 1), (b"1234", 2), (b"12345678901", 0)):
        confirm.basic_publish("", q, body)
        assert count(channel, q) == left


def test_max_length_zero_drop_head_still_feeds_a_waiting_consumer(connection, channel, unique):
    q = unique("q")
    channel.queue_declare(q, auto_delete=True, arguments={"x-max-length": 0})
    channel.basic_publish("", q, b"gone")
    assert count(channel, q) == 0
    got = []
    consumer = connection.channel()
    consumer.basic_consume(q, lambda _c, m, p, body: got.append(body), auto_ack=True)
    channel.basic_publish("", q, b"taken")
    assert wait_for(lambda: (connection.process_data_events(0.01), got)[1])
    assert got == [b"taken"]


def test_reject_publish_nacks_and_keeps_the_queue(connection, channel, confirm, unique):
    """x-overflow reject-publish: the refused message is nacked (not returned: it was routed),
    even with a consumer waiting; routed to two queues of which one refuses, it is nacked too."""
    rp = unique("rp")
    confirm.queue_declare(rp, auto_delete=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    assert [publish_result(confirm, "", rp, f"r{i}".encode(), mandatory=True) for i in range(3)] == ["ack", "nack", "nack"]
    assert count(channel, rp) == 1
    x, q1, q2 = unique("x"), unique("q1"), unique("q2")
    confirm.exchange_declare(x, "fanout", auto_delete=True)
    confirm.queue_declare(q1, auto_delete=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    confirm.queue_declare(q2, auto_delete=True)
    confirm.queue_bind(q1, x)
    confirm.queue_bind(q2, x)
    assert publish_result(confirm, x, "", b"f", mandatory=True) == "nack"
    assert count(channel, q2) == 1
    got = []
    consumer = connection.channel()
    consumer.basic_consume(q1, lambda _c, m, p, body: got.append(body), auto_ack=True)
    assert publish_result(confirm, "", q1, b"c") == "nack"
    connection.process_data_events(SETTLE)
    assert got == []


def test_reject_publish_dlx_nacks_and_dead_letters(channel, confirm, unique):
    rd, dl = unique("rd"), unique("dl")
    channel.queue_declare(dl, auto_delete=True)
    confirm.queue_declare(rd, auto_delete=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx", **dlx_args(dl)})
    assert [publish_result(confirm, "", rd, f"d{i}".encode()) for i in range(3)] == ["ack", "nack", "nack"]
    for body in (b"d1", b"d2"):
        method, props, got = get_within(channel, dl)
        assert got == body
        assert typed(props)["headers"] == dl_headers([death("maxlen", rd, [rd])], "maxlen", rd)
    assert [get_within(channel, rd, 0.2)[2] for _ in range(2)] == [b"d0", None]


def test_reject_publish_in_a_transaction_fails_the_commit(connection, channel, unique):
    rp, other = unique("rp"), unique("other")
    channel.queue_declare(rp, auto_delete=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    channel.queue_declare(other, auto_delete=True)
    tx = connection.channel()
    tx.tx_select()
    tx.basic_publish("", other, b"kept")
    tx.basic_publish("", rp, b"refused")
    with pytest.raises(ChannelClosedByBroker) as info:
        tx.tx_commit()
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - partial tx completion")
    assert (count(channel, other), count(channel, rp)) == (1, 0)


# -- queue types ----------------------------------------------------------------------------------------------


QUORUM = {"x-queue-type": "quorum"}
STREAM = {"x-queue-type": "stream"}


@pytest.mark.parametrize(
    "kwargs, text",
    [
        (dict(durable=False), "invalid property 'non-durable' for queue '{q}' in vhost '/'"),
        (dict(durable=True, exclusive=True), "invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
        (dict(durable=True, auto_delete=True), "invalid property 'auto-delete' for queue '{q}' in vhost '/'"),
        (dict(durable=False, exclusive=True, auto_delete=True), "invalid property 'auto-delete' for queue '{q}' in vhost '/'"),
        (dict(durable=False, exclusive=True), "invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
        (dict(durable=False, arguments={"x-max-priority": 5}),
         "invalid arg 'x-max-priority' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"),
        (dict(durable=True, arguments={"x-queue-mode": "lazy", "x-max-priority": 5}),
         "invalid arg 'x-queue-mode' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"),
        (dict(durable=True, arguments={"x-max-priority": 5, "x-queue-mode": "lazy"}),
         "invalid arg 'x-max-priority' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"),
        (dict(durable=False, arguments={"x-max-length": -1}),
         "invalid arg 'x-max-length' for queue '{q}' in vhost '/': {{value_negative,-1}}"),
    ],
)
def test_quorum_declare_checks(connection, unique, kwargs, text):
    q = unique("qq")
    arguments = {**kwargs.pop("arguments", {}), **QUORUM}
    closes_channel(connection, lambda ch: ch.queue_declare(q, arguments=arguments, **kwargs),
                   406, "PRECONDITION_FAILED - " + text.format(q=q))


def test_queue_type_argument_rules(connection, channel, unique):
    closes_channel(connection, lambda ch: ch.queue_declare("", durable=False, arguments=QUORUM),
                   406, "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue")
    q = unique("c")
    closes_channel(connection, lambda ch: ch.queue_declare(q, arguments={"x-delivery-limit": 5}),
                   406, f"PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue '{q}' in vhost '/' of queue type rabbit_classic_queue")
    # An existing queue is only compared, not checked again.
    channel.queue_declare(q, auto_delete=True)
    channel.queue_declare(q, auto_delete=True, arguments={"x-delivery-limit": 3})
    # Accepted by quorum queues in 3.10.
    ok = unique("qq")
    channel.queue_declare(ok, durable=True, arguments={
        **QUORUM, "x-overflow": "reject-publish-dlx", "x-message-ttl": 100, "x-expires": 10000,
        "x-delivery-limit": "a", "x-max-in-memory-length": 2, "x-foo": 1})
    channel.queue_delete(ok)


def test_quorum_delivery_count_and_delivery_limit(channel, unique):
    """Every delivery from a quorum queue carries x-delivery-count (a long, 0 the first time,
    headers re-sorted); past x-delivery-limit the message is dead-lettered, reason delivery_limit,
    without that header."""
    q, dl = unique("qq"), unique("dl")
    channel.queue_declare(dl, auto_delete=True)
    channel.queue_declare(q, durable=True, arguments={**QUORUM, "x-delivery-limit": 2, **dlx_args(dl)})
    channel.basic_publish("", q, b"m", pika.BasicProperties(headers={"zz": 1, "a": 2}))
    seen = []
    for _ in range(3):
        method, props, _ = get_within(channel, q, auto_ack=False)
        seen.append((method.redelivered, typed(props)["headers"]))
        channel.basic_nack(method.delivery_tag, requeue=True)
    assert seen == [
        (redelivered, [("a", "I", 2), ("x-delivery-count", "l", n), ("zz", "I", 1)])
        for redelivered, n in ((False, 0), (True, 1), (True, 2))
    ]
    assert get_within(channel, q, 0.2)[0] is None
    method, props, body = get_within(channel, dl)
    assert typed(props)["headers"] == dl_headers(
        [death("delivery_limit", q, [q])], "delivery_limit", q, extra=[("zz", "I", 1), ("a", "I", 2)])
    channel.queue_delete(q)


@pytest.mark.parametrize("limit, counts", [(0, [0, None]), (-1, [0, None]), ("a", [0, 1, 2]), (1, [0, 1, None])])
def test_quorum_delivery_limit_values(channel, unique, limit, counts):
    q = unique("ql")
    channel.queue_declare(q, durable=True, arguments={**QUORUM, "x-delivery-limit": limit})
    channel.basic_publish("", q, b"x")
    seen = []
    for _ in counts:
        method, props, _ = get_within(channel, q, 0.3, auto_ack=False)
        if method is None:
            seen.append(None)
            break
        seen.append(props.headers["x-delivery-count"])
        channel.basic_nack(method.delivery_tag, requeue=True)
    assert seen == counts
    channel.queue_delete(q)


def test_quorum_returns_come_first_in_return_order(connection, channel, unique):
    q = unique("qq")
    channel.queue_declare(q, durable=True, arguments=QUORUM)
    channel.basic_publish("", q, b"m")
    other = connection.channel()
    get_within(other, q, auto_ack=False)
    other.close()  # a channel closing with it unacked counts as a return too
    method, props, _ = get_within(channel, q, auto_ack=False)
    assert (method.redelivered, props.headers) == (True, {"x-delivery-count": 1})
    channel.basic_ack(method.delivery_tag)
    for i in range(3):
        channel.basic_publish("", q, f"o{i}".encode())
    tags = [get_within(channel, q, auto_ack=False)[0].delivery_tag for _ in range(3)]
    channel.basic_nack(tags[2], requeue=True)
    channel.basic_nack(tags[0], requeue=True)
    assert [get_within(channel, q)[2] for _ in range(2)] == [b"o2", b"o0"]
    channel.basic_ack(tags[1])
    assert count(channel, q) == 0
    channel.queue_delete(q)


def test_quorum_refuses_global_qos_consumers(params, channel, unique):
    q = unique("qq")
    channel.queue_declare(q, durable=True, arguments=QUORUM)

    def consume(conn, ch):
        ch.basic_qos(prefetch_count=5, global_qos=True)
        ch.basic_consume(q, lambda *a: None)

    closes_connection(params, consume, 540, f"NOT_IMPLEMENTED - queue '{q}' in vhost '/' does not support global qos")
    channel.queue_delete(q)


def test_quorum_reject_publish_dlx_acts_as_drop_head(channel, confirm, unique):
    q, dl = unique("qq"), unique("dl")
    channel.queue_declare(dl, auto_delete=True)
    confirm.queue_declare(q, durable=True, arguments={
        **QUORUM, "x-max-length": 1, "x-overflow": "reject-publish-dlx", **dlx_args(dl)})
    assert [publish_result(confirm, "", q, f"m{i}".encode()) for i in range(3)] == ["ack"] * 3
    assert [(b, p.headers["x-death"][0]["reason"]) for _, p, b in (get_within(channel, dl) for _ in range(2))] == [
        (b"m0", "maxlen"), (b"m1", "maxlen")]
    method, props, body = get_within(channel, q)
    assert (body, props.headers) == (b"m2", {"x-delivery-count": 0})
    channel.queue_delete(q)


def test_stream_queue_over_amqp_0_9_1(params, connection, channel, unique):
    """What RabbitMQ 3.10 serves of a stream through AMQP 0-9-1: declare and publish, no ready count,
    consumers with a prefetch and manual acks reading from an offset, x-stream-offset on each
    delivery; basic.get, queue.purge, auto-ack and nack are refused."""
    s = unique("s")
    closes_channel(connection, lambda ch: ch.queue_declare(s, arguments=STREAM),
                   406, f"PRECONDITION_FAILED - invalid property 'non-durable' for queue '{s}' in vhost '/'")
    closes_channel(connection, lambda ch: ch.queue_declare(s, durable=True, arguments={**STREAM, "x-message-ttl": 2}),
                   406, f"PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '{s}' in vhost '/' of queue type rabbit_stream_queue")
    channel.queue_declare(s, durable=True, arguments=STREAM)
    for i in range(3):
        channel.basic_publish("", s, f"s{i}".encode(), pika.BasicProperties(headers={"zz": 1, "a": 2}))
    assert count(channel, s) == 0
    closes_connection(params, lambda conn, ch: ch.basic_get(s), 540,
                      f"NOT_IMPLEMENTED - basic.get not supported by stream queues queue '{s}' in vhost '/'")
    closes_connection(params, lambda conn, ch: ch.queue_purge(s), 540,
                      f"NOT_IMPLEMENTED - queue.purge not supported by stream queues queue '{s}' in vhost '/'")
    closes_channel(connection, lambda ch: ch.basic_consume(s, lambda *a: None), 406,
                   f"PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '{s}' in vhost '/''")

    def auto_ack(conn, ch):
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume(s, lambda *a: None, auto_ack=True)

    closes_connection(params, auto_ack, 540,
                      f"NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue '{s}' in vhost '/'")
    got = []
    reader = connection.channel()
    reader.basic_qos(prefetch_count=10)
    reader.basic_consume(s, lambda _c, m, p, body: got.append((body, m.redelivered, typed(p)["headers"])),
                         arguments={"x-stream-offset": 1})
    nexter = connection.channel()
    nexter.basic_qos(prefetch_count=10)
    later = []
    nexter.basic_consume(s, lambda _c, m, p, body: later.append(body))
    channel.basic_publish("", s, b"s3")
    assert wait_for(lambda: (connection.process_data_events(0.01), len(got) == 3 and later)[1])
    assert got == [
        (b"s1", False, [("a", "I", 2), ("x-stream-offset", "l", 1), ("zz", "I", 1)]),
        (b"s2", False, [("a", "I", 2), ("x-stream-offset", "l", 2), ("zz", "I", 1)]),
        (b"s3", False, [("x-stream-offset", "l", 3)]),
    ]
    assert later == [b"s3"]
    channel.queue_delete(s)


def test_stream_nack_closes_the_connection(params, unique):
    s = unique("s")

    def nack(conn, ch):
        ch.queue_declare(s, durable=True, arguments=STREAM)
        ch.basic_publish("", s, b"x")
        ch.basic_qos(prefetch_count=1)
        tags = []
        ch.basic_consume(s, lambda _c, m, p, b: tags.append(m.delivery_tag), arguments={"x-stream-offset": "first"})
        while not tags:
            conn.process_data_events(0.01)
        ch.basic_nack(tags[0], requeue=True)
        conn.process_data_events(1)

    closes_connection(params, nack, 540,
                      f"NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues queue '{s}' in vhost '/'")
