"""x-delayed-message: the rabbitmq-delayed-message-exchange plugin's behaviour, over pika.

The live RabbitMQ has no such plugin, so the expectations are the plugin's source and documented
behaviour (README "Differences from RabbitMQ's plugins" lists where this broker departs from it).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.request

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from amqp_broker.testing import BrokerThread
from interop.crash.broker_proc import BrokerProcess

logging.getLogger("pika").setLevel(logging.CRITICAL)


def _connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, heartbeat=0, blocked_connection_timeout=30))


def _delayed(ch, name: str, kind: str = "direct", **kwargs) -> None:
    ch.exchange_declare(name, "x-delayed-message", arguments={"x-delayed-type": kind}, **kwargs)


def _props(delay, **kwargs) -> pika.BasicProperties:
    headers = kwargs.pop("headers", {})
    if delay is not None:
        headers["x-delay"] = delay
    return pika.BasicProperties(headers=headers, **kwargs)


def _receive(ch, queue: str, count: int, timeout: float = 10.0) -> list[tuple[str, float, dict]]:
    """(body, seconds since the call, headers) of the next ``count`` messages of ``queue``."""
    start = time.monotonic()
    got = []
    for method, props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=timeout):
        assert method is not None, f"only {len(got)} of {count} messages arrived: {got}"
        got.append((body.decode(), time.monotonic() - start, props.headers))
        if len(got) == count:
            break
    ch.cancel()
    return got


@pytest.fixture(scope="module")
def ours():
    with BrokerThread(management=True) as running:
        yield running


@pytest.fixture
def ch(ours):
    conn = _connect(ours.port)
    yield conn.channel()
    if conn.is_open:
        conn.close()


# -- declaration ----------------------------------------------------------------------------------


@pytest.mark.parametrize("arguments, code, text", [
    ({}, 406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"),
    ({"x-delayed-type": 5}, 406,
     "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"),
    ({"x-delayed-type": "x-delayed-message"}, 406,
     "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"),
    ({"x-delayed-type": "nope"}, 503, "COMMAND_INVALID - unknown exchange type 'nope'"),
    # The delayed type's own checks run too (rabbit_exchange_type_consistent_hash:validate/1).
    ({"x-delayed-type": "x-consistent-hash", "hash-property": "app_id"}, 406,
     "PRECONDITION_FAILED - Unsupported property: app_id"),
])
def test_declare_errors(ours, unique, arguments, code, text):
    conn = _connect(ours.port)
    with pytest.raises((ChannelClosedByBroker, ConnectionClosedByBroker)) as info:
        conn.channel().exchange_declare(unique("dx"), "x-delayed-message", arguments=arguments)
    assert (info.value.reply_code, info.value.reply_text) == (code, text)
    if conn.is_open:
        conn.close()


def test_binding_checks_are_the_delayed_types(ch, unique):
    exchange = unique("dx")
    _delayed(ch, exchange, "headers", auto_delete=True)
    queue = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_bind(queue, exchange, "", arguments={"x-match": "some"})
    assert info.value.reply_code == 406


# -- delaying ---------------------------------------------------------------------------------


def test_messages_arrive_in_delay_order_with_x_delay_negated(ch, unique):
    exchange = unique("dx")
    _delayed(ch, exchange, auto_delete=True)
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, exchange, "rk")
    for delay in (600, 200, 400):
        ch.basic_publish(exchange, "rk", str(delay).encode(), _props(delay))
    ch.basic_publish(exchange, "rk", b"missing", _props(None, headers={"other": 1}))
    ch.basic_publish(exchange, "rk", b"negative", _props(-500))
    ch.basic_publish(exchange, "rk", b"zero", _props(0))
    ch.basic_publish(exchange, "rk", b"no-headers", None)
    got = _receive(ch, queue, 7)
    assert [body for body, _, _ in got] == ["missing", "negative", "zero", "no-headers", "200", "400", "600"]
    for body, elapsed, headers in got[4:]:
        # Held at least its delay (measured from after the publishes, so a little less).
        assert elapsed >= int(body) / 1000 - 0.15, (body, elapsed)
        assert headers["x-delay"] == -int(body)
    assert got[1][2] == {"x-delay": -500}  # a negative delay is routed at once, header untouched


def test_string_delays(ch, unique):
    """get_delay/1 parses a longstr of digits (binary_to_integer); other text is no delay."""
    exchange = unique("dx")
    _delayed(ch, exchange, "fanout", auto_delete=True)
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, exchange, "")
    ch.basic_publish(exchange, "", b"string", _props("300"))
    ch.basic_publish(exchange, "", b"word", _props("soon"))
    got = _receive(ch, queue, 2)
    assert [body for body, _, _ in got] == ["word", "string"]
    assert got[1][2]["x-delay"] == -300


@pytest.mark.parametrize("kind, bind_key, bind_args, routing_key, headers", [
    ("direct", "a.b", None, "a.b", {}),
    ("topic", "a.*", None, "a.b", {}),
    ("fanout", "", None, "anything", {}),
    ("headers", "", {"x-match": "all", "color": "red"}, "", {"color": "red"}),
])
def test_routes_as_the_delayed_type_when_due(ch, unique, kind, bind_key, bind_args, routing_key, headers):
    exchange = unique("dx")
    _delayed(ch, exchange, kind, auto_delete=True)
    hit = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(hit, exchange, bind_key, arguments=bind_args)
    ch.basic_publish(exchange, routing_key, b"match", _props(100, headers=dict(headers)))
    if kind != "fanout":
        ch.basic_publish(exchange, "z.z", b"miss", _props(50, headers={"color": "blue"}))
    ch.basic_publish(exchange, routing_key, b"after", _props(200, headers=dict(headers)))
    assert [body for body, _, _ in _receive(ch, hit, 2)] == ["match", "after"]
    assert ch.queue_declare(hit, passive=True).method.message_count == 0


def test_delayed_consistent_hash_picks_the_plain_rings_queue(ch, unique):
    """x-delayed-type x-consistent-hash: when due, each key reaches the queue an x-consistent-hash
    exchange with the same bindings picks at once."""
    delayed, plain = unique("dx"), unique("chx")
    ch.exchange_declare(delayed, "x-delayed-message", auto_delete=True,
                        arguments={"x-delayed-type": "x-consistent-hash"})
    ch.exchange_declare(plain, "x-consistent-hash", auto_delete=True)
    pairs = []
    for weight in ("1", "2", "3"):
        via_delayed = ch.queue_declare("", exclusive=True).method.queue
        via_plain = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(via_delayed, delayed, weight)
        ch.queue_bind(via_plain, plain, weight)
        pairs.append((via_delayed, via_plain))
    keys = [f"key-{i}" for i in range(60)]
    for key in keys:
        ch.basic_publish(delayed, key, key.encode(), _props(100))
        ch.basic_publish(plain, key, key.encode())
    for via_delayed, via_plain in pairs:
        count = ch.queue_declare(via_plain, passive=True).method.message_count
        plain_keys = sorted(body for body, _, _ in _receive(ch, via_plain, count))
        assert sorted(body for body, _, _ in _receive(ch, via_delayed, count)) == plain_keys
        assert ch.queue_declare(via_delayed, passive=True).method.message_count == 0


def test_routing_uses_the_bindings_at_the_end_of_the_delay(ch, unique):
    exchange = unique("dx")
    _delayed(ch, exchange, auto_delete=True)
    early = ch.queue_declare("", exclusive=True).method.queue
    late = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(early, exchange, "k")
    ch.basic_publish(exchange, "k", b"m", _props(300))
    ch.queue_bind(late, exchange, "k")
    ch.queue_unbind(early, exchange, "k")
    assert [body for body, _, _ in _receive(ch, late, 1)] == ["m"]
    assert ch.queue_declare(early, passive=True).method.message_count == 0


def test_mandatory_delayed_message_is_returned_and_still_delivered(ch, unique):
    """The plugin's route/2 answers [] for a held message: RabbitMQ returns a mandatory one with
    NO_ROUTE at once, and delivers it when the delay ends (the plugin's README: the mandatory
    flag is not supported)."""
    exchange = unique("dx")
    _delayed(ch, exchange, auto_delete=True)
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, exchange, "k")
    ch.confirm_delivery()  # pika then raises UnroutableError for a returned publish
    with pytest.raises(pika.exceptions.UnroutableError) as returned:
        ch.basic_publish(exchange, "k", b"delayed", _props(200), mandatory=True)
    [message] = returned.value.messages
    assert (message.method.reply_code, message.method.reply_text, message.body) == (312, "NO_ROUTE", b"delayed")
    ch.basic_publish(exchange, "k", b"now", _props(None), mandatory=True)
    assert [body for body, _, _ in _receive(ch, queue, 2)] == ["now", "delayed"]


def test_alternate_exchange_gets_held_messages_at_once(ch, unique):
    """As with the plugin (a known limitation upstream): routed nowhere now, a held message goes to the
    alternate exchange immediately, and to the bound queues later."""
    exchange, alternate = unique("dx"), unique("ae")
    ch.exchange_declare(alternate, "fanout", auto_delete=True)
    ae_queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(ae_queue, alternate, "")
    ch.exchange_declare(exchange, "x-delayed-message", auto_delete=True,
                        arguments={"x-delayed-type": "direct", "alternate-exchange": alternate})
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, exchange, "k")
    ch.basic_publish(exchange, "k", b"m", _props(150))
    assert [body for body, _, _ in _receive(ch, ae_queue, 1)] == ["m"]
    assert [body for body, _, _ in _receive(ch, queue, 1)] == ["m"]


def test_exchange_to_exchange_after_the_delay(ch, unique):
    exchange, downstream = unique("dx"), unique("down")
    _delayed(ch, exchange, "topic", auto_delete=True)
    ch.exchange_declare(downstream, "fanout", auto_delete=True)
    ch.exchange_bind(downstream, exchange, "#")
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, downstream, "")
    ch.basic_publish(exchange, "a.b", b"m", _props(100))
    [(body, _, headers)] = _receive(ch, queue, 1)
    assert (body, headers) == ("m", {"x-delay": -100})


def test_confirm_comes_at_publish(ch, unique):
    exchange = unique("dx")
    _delayed(ch, exchange, auto_delete=True)
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, exchange, "k")
    ch.confirm_delivery()
    start = time.monotonic()
    ch.basic_publish(exchange, "k", b"m", _props(5000))  # returns once confirmed
    assert time.monotonic() - start < 2.0
    ch.exchange_delete(exchange)


# -- the management count ---------------------------------------------------------------------------


def _exchange_json(broker: BrokerThread, name: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{broker.management_port}/api/exchanges/%2F/{name}",
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_messages_delayed_in_the_management_api(ours, ch, unique):
    exchange = unique("dx")
    _delayed(ch, exchange)
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, exchange, "k")
    ch.confirm_delivery()
    assert _exchange_json(ours, exchange)["messages_delayed"] == 0
    for delay in (60_000, 60_000, 150):
        ch.basic_publish(exchange, "k", b"m", _props(delay))
    assert _exchange_json(ours, exchange)["messages_delayed"] == 3
    _receive(ch, queue, 1)
    assert _exchange_json(ours, exchange)["messages_delayed"] == 2
    # Deleting the exchange drops what it held.
    ch.exchange_delete(exchange)
    _delayed(ch, exchange)
    assert _exchange_json(ours, exchange)["messages_delayed"] == 0
    ch.exchange_delete(exchange)


# -- durability -------------------------------------------------------------------------------------


def _wait_committed(ch, queue: str) -> None:
    """Publish a persistent marker to a durable queue with a confirm: the confirm comes once its
    store batch is on disk, and that batch holds (or follows) every write before it."""
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"marker", pika.BasicProperties(delivery_mode=2))


def test_held_messages_survive_sigkill(tmp_path):
    broker = BrokerProcess(str(tmp_path / "data"), log_path=str(tmp_path / "broker.log")).start()
    try:
        conn = _connect(broker.port)
        ch = conn.channel()
        _delayed(ch, "dx", durable=True)
        ch.queue_declare("out", durable=True)
        ch.queue_bind("out", "dx", "k")
        ch.queue_declare("marker", durable=True)
        for delay in (2500, 1500, 2000):
            ch.basic_publish("dx", "k", f"persistent-{delay}".encode(), _props(delay, delivery_mode=2))
        ch.basic_publish("dx", "k", b"transient", _props(1000, delivery_mode=1))
        _wait_committed(ch, "marker")
        broker.kill9()
        broker.start()
        conn = _connect(broker.port)
        ch = conn.channel()
        got = _receive(ch, "out", 3)
        assert [body for body, _, _ in got] == ["persistent-1500", "persistent-2000", "persistent-2500"]
        assert [headers["x-delay"] for _, _, headers in got] == [-1500, -2000, -2500]
        assert ch.queue_declare("out", durable=True).method.message_count == 0  # no transient one
        conn.close()
    finally:
        if broker.running:
            broker.kill9()


def test_held_messages_survive_a_clean_restart_and_a_deleted_exchange_forgets_them(tmp_path):
    data_dir = str(tmp_path / "data")
    with BrokerThread(data_dir=data_dir, management=True) as broker:
        with _connect(broker.port) as conn:
            ch = conn.channel()
            _delayed(ch, "dx", "fanout", durable=True)
            _delayed(ch, "gone", durable=True)
            _delayed(ch, "transient-exchange")
            ch.queue_declare("out", durable=True)
            ch.queue_bind("out", "dx", "")
            ch.basic_publish("dx", "", b"soon", _props(300, delivery_mode=2))
            ch.basic_publish("dx", "", b"later", _props(60_000, delivery_mode=2))
            ch.basic_publish("gone", "", b"dropped", _props(60_000, delivery_mode=2))
            ch.basic_publish("transient-exchange", "", b"lost", _props(60_000, delivery_mode=2))
            ch.exchange_delete("gone")
    time.sleep(0.4)  # "soon" falls due while the broker is down: it is released on start
    with BrokerThread(data_dir=data_dir, management=True) as broker:
        with _connect(broker.port) as conn:
            ch = conn.channel()
            assert [body for body, _, _ in _receive(ch, "out", 1)] == ["soon"]
            assert _exchange_json(broker, "dx")["messages_delayed"] == 1
            _delayed(ch, "gone", durable=True)
            assert _exchange_json(broker, "gone")["messages_delayed"] == 0
