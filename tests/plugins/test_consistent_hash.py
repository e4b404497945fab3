"""x-consistent-hash: the same queue as RabbitMQ for every key, and the ring's properties.

The differential scenarios (chx_scenarios.py) run on our broker and on the RabbitMQ at
127.0.0.1:5672 (with rabbitmq_consistent_hash_exchange enabled) and must observe the same thing:
which queue each of thousands of keys reached, and every error. When that RabbitMQ is not
running they compare against its recorded observations (chx_rabbitmq_expectations.json) and
say so loudly.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections import Counter

import pika
import pytest

import chx_scenarios
from amqp_broker.testing import BrokerThread

logging.getLogger("pika").setLevel(logging.CRITICAL)  # the error scenarios provoke closes


def _live_rabbitmq() -> str | None:
    """Why the live RabbitMQ cannot serve as the oracle, or None when it can."""
    try:
        conn = chx_scenarios.connect(5672)
    except Exception as exc:  # noqa: BLE001 - anything means "not there"
        return f"nothing answers on 127.0.0.1:5672 ({type(exc).__name__})"
    try:
        product = conn._impl.server_properties.get("product")
        if product not in ("RabbitMQ", b"RabbitMQ"):
            return f"{product!r} answers on 127.0.0.1:5672, not RabbitMQ"
        ch = conn.channel()
        try:
            ch.exchange_declare("test.chx.probe", "x-consistent-hash", auto_delete=True)
            ch.exchange_delete("test.chx.probe")
        except pika.exceptions.AMQPError:
            return "RabbitMQ on 127.0.0.1:5672 lacks rabbitmq_consistent_hash_exchange"
        return None
    finally:
        if conn.is_open:
            conn.close()


@pytest.fixture(scope="module")
def oracle():
    """(source, run): run(scenario) gives RabbitMQ's observations, live or recorded."""
    why = _live_rabbitmq()
    if why is None:
        return "the live RabbitMQ", lambda name: chx_scenarios.SCENARIOS[name](5672)
    recorded = json.loads(chx_scenarios.EXPECTATIONS.read_text())
    message = f"{why}: comparing against the recorded {chx_scenarios.EXPECTATIONS.name}"
    sys.__stderr__.write("\n" + "!" * 100 + f"\nWARNING: {message}\n" + "!" * 100 + "\n")
    warnings.warn(message, UserWarning, stacklevel=1)
    return "RabbitMQ's recorded observations", recorded.__getitem__


@pytest.fixture(scope="module")
def ours():
    with BrokerThread() as running:
        yield running


@pytest.mark.parametrize("scenario", list(chx_scenarios.SCENARIOS))
def test_same_as_rabbitmq(scenario, ours, oracle):
    source, theirs = oracle
    expected = json.loads(json.dumps(theirs(scenario)))  # JSON-normalised, as recorded
    mine = json.loads(json.dumps(chx_scenarios.SCENARIOS[scenario](ours.port)))
    if isinstance(expected, dict) and all(isinstance(v, (int, str)) for v in expected.values()):
        differing = {k: (expected.get(k), mine.get(k)) for k in expected.keys() | mine.keys()
                     if expected.get(k) != mine.get(k)}
        assert not differing, f"{len(differing)} differ from {source}: {dict(list(differing.items())[:10])}"
    assert mine == expected, f"differs from {source}"


def _ring(ch, exchange: str, weights: list[int]) -> list[str]:
    queues = []
    for weight in weights:
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, exchange, str(weight))
        queues.append(queue)
    return queues


def _counts(ch, queues: list[str]) -> list[int]:
    return [ch.queue_declare(q, passive=True).method.message_count for q in queues]


def test_distribution_follows_weights_over_100000_keys(ours, unique):
    conn = chx_scenarios.connect(ours.port)
    ch = conn.channel()
    exchange = unique("chx")
    ch.exchange_declare(exchange, "x-consistent-hash", auto_delete=True)
    weights = [1, 2, 3, 4]
    queues = _ring(ch, exchange, weights)
    for i in range(100_000):
        ch.basic_publish(exchange, f"order-{i}", b"")
    ch.confirm_delivery()  # a round trip after the last publish: every message is routed
    counts = _counts(ch, queues)
    assert sum(counts) == 100_000
    for count, weight in zip(counts, weights):
        share = count / 100_000
        assert abs(share - weight / sum(weights)) < 0.01, (counts, weights)
    conn.close()


def test_adding_a_queue_moves_only_its_share_of_keys(ours, unique):
    """Jump consistent hashing: a new destination takes about 1/n of the keys, all from the
    others, and no key moves between the old destinations."""
    conn = chx_scenarios.connect(ours.port)
    ch = conn.channel()
    ch.confirm_delivery()
    exchange = unique("chx")
    ch.exchange_declare(exchange, "x-consistent-hash", auto_delete=True)
    queues = _ring(ch, exchange, [10, 10, 10])
    keys = [f"user-{i}" for i in range(4000)]

    def where() -> dict[str, str]:
        for key in keys:
            ch.basic_publish(exchange, key, key.encode())
        reached = {}
        for queue in queues:
            while True:
                method, _props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                reached[body.decode()] = queue
        assert len(reached) == len(keys)
        return reached

    before = where()
    queues += _ring(ch, exchange, [10])
    after = where()
    moved = [key for key in keys if before[key] != after[key]]
    assert all(after[key] == queues[3] for key in moved)
    assert 0.2 < len(moved) / len(keys) < 0.3, len(moved)
    conn.close()


def test_same_key_same_queue_after_a_restart(tmp_path):
    """The ring of a durable exchange is rebuilt from its durable bindings on start."""
    keys = [f"k{i}" for i in range(600)]

    def publish_and_collect(port: int) -> dict[str, str]:
        with chx_scenarios.connect(port) as conn:
            ch = conn.channel()
            ch.confirm_delivery()
            for key in keys:
                ch.basic_publish("chx", key, key.encode())
            reached = {}
            for queue in ("q-a", "q-b", "q-c"):
                while True:
                    method, _props, body = ch.basic_get(queue, auto_ack=True)
                    if method is None:
                        break
                    reached[body.decode()] = queue
            return reached

    data_dir = str(tmp_path / "data")
    with BrokerThread(data_dir=data_dir) as broker:
        with chx_scenarios.connect(broker.port) as conn:
            ch = conn.channel()
            ch.exchange_declare("chx", "x-consistent-hash", durable=True)
            for queue, weight in (("q-a", "1"), ("q-b", "2"), ("q-c", "3")):
                ch.queue_declare(queue, durable=True)
                ch.queue_bind(queue, "chx", weight)
        before = publish_and_collect(broker.port)
    with BrokerThread(data_dir=data_dir) as broker:
        after = publish_and_collect(broker.port)
    assert Counter(before.values()).keys() == {"q-a", "q-b", "q-c"}
    assert after == before


def test_restart_rebuilds_the_ring_in_erlang_binding_order(tmp_path):
    """The plugin keeps its ring in RAM and rebuilds it on boot from the bindings sorted as Erlang
    sorts them (lists:usort: routing key, then destination), not in the order they were made."""
    keys = [f"k{i}" for i in range(300)]

    def collect(port: int, exchange: str) -> dict[str, str]:
        with chx_scenarios.connect(port) as conn:
            ch = conn.channel()
            ch.confirm_delivery()
            for key in keys:
                ch.basic_publish(exchange, key, key.encode())
            reached = {}
            for queue in ("q-a", "q-b", "sorted-a", "sorted-b"):
                while True:
                    method, _props, body = ch.basic_get(queue, auto_ack=True)
                    if method is None:
                        break
                    reached[body.decode()] = queue.removeprefix("sorted-").removeprefix("q-")
            return reached

    data_dir = str(tmp_path / "data")
    with BrokerThread(data_dir=data_dir) as broker:
        with chx_scenarios.connect(broker.port) as conn:
            ch = conn.channel()
            for exchange, prefix, order in (("made", "q-", ("b", "a")), ("sorted", "sorted-", ("a", "b"))):
                ch.exchange_declare(exchange, "x-consistent-hash", durable=True)
                for letter in order:
                    ch.queue_declare(prefix + letter, durable=True)
                    ch.queue_bind(prefix + letter, exchange, "2")
        made_before = collect(broker.port, "made")
        in_sorted_order = collect(broker.port, "sorted")
    assert made_before != in_sorted_order
    with BrokerThread(data_dir=data_dir) as broker:
        assert collect(broker.port, "made") == in_sorted_order
