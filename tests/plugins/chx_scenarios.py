"""x-consistent-hash scenarios run the same way on our broker and on RabbitMQ; each returns
JSON-able observations (which queue each key reached, what each declaration or binding answered).

Run as a script to re-record RabbitMQ's observations (the fallback when RabbitMQ is not running):

    python -m tests.plugins.chx_scenarios 127.0.0.1:5672
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import pika
from pika.exceptions import AMQPChannelError, AMQPConnectionError

EXPECTATIONS = Path(__file__).with_name("chx_rabbitmq_expectations.json")
KEYS = 2000
HOST = "127.0.0.1"


def connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        HOST, port, heartbeat=0, blocked_connection_timeout=60, connection_attempts=1))


def _name(what: str) -> str:
    return f"test.chx.{what}.{uuid.uuid4().hex[:8]}"


def _drain(channel: Any, queues: list[str], expected: int) -> dict[str, int]:
    """body -> index of the queue it reached, reading until ``expected`` messages arrived."""
    reached: dict[str, int] = {}
    for index, queue in enumerate(queues):
        count = channel.queue_declare(queue, passive=True).method.message_count
        for _ in range(count):
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            reached[body.decode()] = index
    assert len(reached) == expected, (len(reached), expected)
    return reached


def _ring(channel: Any, exchange: str, weights: list[tuple[int, str]], arguments: dict | None = None) -> list[str]:
    """Declare ``exchange`` and one exclusive queue per (queue number, weight) binding."""
    channel.exchange_declare(exchange, "x-consistent-hash", arguments=arguments)
    queues: dict[int, str] = {}
    for number, weight in weights:
        if number not in queues:
            queues[number] = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queues[number], exchange, weight)
    return [queues[n] for n in sorted(queues)]


def _publish_all(channel: Any, exchange: str, messages: list[tuple[str, str, pika.BasicProperties | None]]) -> None:
    channel.confirm_delivery()
    for routing_key, body, props in messages:
        channel.basic_publish(exchange, routing_key, body.encode(), props)


def routing_key_hash(port: int) -> dict:
    """Weights 1, 2, 3: the queue of each of 2000 routing keys."""
    with connect(port) as conn:
        ch = conn.channel()
        x = _name("rk")
        try:
            queues = _ring(ch, x, [(0, "1"), (1, "2"), (2, "3")])
            _publish_all(ch, x, [(f"key-{i}", f"key-{i}", None) for i in range(KEYS)])
            return _drain(ch, queues, KEYS)
        finally:
            ch.exchange_delete(x)


def rebinding(port: int) -> dict:
    """Unbinding the middle queue shifts the later buckets down; a second binding of a queue adds
    no buckets."""
    with connect(port) as conn:
        ch = conn.channel()
        x = _name("rebind")
        try:
            queues = _ring(ch, x, [(0, "2"), (1, "3"), (0, "7"), (2, "4")])
            ch.queue_unbind(queues[1], x, "3")
            _publish_all(ch, x, [(f"k{i}", f"k{i}", None) for i in range(500)])
            return _drain(ch, queues, 500)
        finally:
            ch.exchange_delete(x)


def header_hash(port: int) -> dict:
    """hash-header: string, integer and boolean values, and messages without the header (they all
    hash as ``undefined``, so they share one queue)."""
    with connect(port) as conn:
        ch = conn.channel()
        x = _name("hdr")
        try:
            queues = _ring(ch, x, [(0, "5"), (1, "5"), (2, "5")], {"hash-header": "shard"})
            messages = []
            for i in range(300):
                messages.append(("same", f"s{i}", pika.BasicProperties(headers={"shard": f"v{i}"})))
            for i in range(100):
                messages.append(("same", f"i{i}", pika.BasicProperties(headers={"shard": i * 7919})))
            messages.append(("same", "big", pika.BasicProperties(headers={"shard": 2 ** 40})))
            messages.append(("same", "true", pika.BasicProperties(headers={"shard": True})))
            for i in range(20):
                messages.append((f"rk{i}", f"none{i}", pika.BasicProperties(headers={"other": i})))
            messages.append(("same", "no-headers", None))
            _publish_all(ch, x, messages)
            return _drain(ch, queues, len(messages))
        finally:
            ch.exchange_delete(x)


def property_hash(port: int) -> dict:
    """hash-property: message_id, correlation_id and timestamp, each with some messages lacking it."""
    out = {}
    with connect(port) as conn:
        ch = conn.channel()
        for prop in ("message_id", "correlation_id", "timestamp"):
            x = _name(prop)
            try:
                queues = _ring(ch, x, [(0, "3"), (1, "3"), (2, "3")], {"hash-property": prop})
                messages = []
                for i in range(200):
                    value: Any = 1600000000 + i * 3601 if prop == "timestamp" else f"{prop}-{i}"
                    messages.append(("same", f"{prop}{i}", pika.BasicProperties(**{prop: value})))
                for i in range(5):
                    messages.append((f"rk{i}", f"without{i}", None))
                _publish_all(ch, x, messages)
                out[prop] = _drain(ch, queues, len(messages))
            finally:
                ch.exchange_delete(x)
    return out


def exchange_destinations(port: int) -> dict:
    """Exchange-to-exchange bindings: the ring holds exchanges, each fans out to its queue."""
    with connect(port) as conn:
        ch = conn.channel()
        x = _name("e2e")
        fanouts = [_name(f"f{i}") for i in range(2)]
        try:
            ch.exchange_declare(x, "x-consistent-hash")
            queues = []
            for fanout, weight in zip(fanouts, ("1", "3")):
                ch.exchange_declare(fanout, "fanout")
                ch.exchange_bind(fanout, x, weight)
                queue = ch.queue_declare("", exclusive=True).method.queue
                ch.queue_bind(queue, fanout, "")
                queues.append(queue)
            _publish_all(ch, x, [(f"e{i}", f"e{i}", None) for i in range(400)])
            return _drain(ch, queues, 400)
        finally:
            for name in [x, *fanouts]:
                ch.exchange_delete(name)


def _outcome(port: int, action: Callable[[Any, str], None]) -> str:
    x = _name("err")
    conn = connect(port)
    try:
        ch = conn.channel()
        try:
            action(ch, x)
            return "ok"
        except AMQPChannelError as exc:
            return f"channel {exc.args[0]} {exc.args[1]}"
        except AMQPConnectionError as exc:
            return f"connection {exc.args[0]} {exc.args[1]}"
    finally:
        if conn.is_open:
            conn.close()
        with connect(port) as cleanup:
            cleanup.channel().exchange_delete(x)


def _declare(arguments: dict) -> Callable[[Any, str], None]:
    return lambda ch, x: ch.exchange_declare(x, "x-consistent-hash", arguments=arguments)


def _bind(key: str) -> Callable[[Any, str], None]:
    def bind(ch: Any, x: str) -> None:
        ch.exchange_declare(x, "x-consistent-hash")
        ch.queue_bind(ch.queue_declare("", exclusive=True).method.queue, x, key)
    return bind


def _bind_exchange(ch: Any, x: str) -> None:
    ch.exchange_declare(x, "x-consistent-hash")
    ch.exchange_bind("amq.fanout", x, "ten")


def _redeclare(first: dict, second: dict) -> Callable[[Any, str], None]:
    def redeclare(ch: Any, x: str) -> None:
        ch.exchange_declare(x, "x-consistent-hash", arguments=first)
        ch.exchange_declare(x, "x-consistent-hash", arguments=second)
    return redeclare


ERROR_CASES: dict[str, Callable[[Any, str], None]] = {
    "both-arguments": _declare({"hash-header": "h", "hash-property": "message_id"}),
    "unsupported-property": _declare({"hash-property": "app_id"}),
    "header-not-a-string": _declare({"hash-header": 5}),
    "empty-header-name": _declare({"hash-header": ""}),
    "timestamp-property": _declare({"hash-property": "timestamp"}),
    "redeclare-other-arguments": _redeclare({"hash-header": "a"}, {"hash-property": "nope"}),
    "bind-word": _bind("abc"),
    "bind-zero": _bind("0"),
    "bind-negative": _bind("-3"),
    "bind-plus": _bind("+5"),
    "bind-leading-zeros": _bind("007"),
    "bind-space": _bind(" 5"),
    "bind-underscore": _bind("1_0"),
    "bind-empty": _bind(""),
    "bind-quote": _bind('a"b\tc'),
    "bind-unicode": _bind("é"),
    "bind-control": _bind("abc\x01"),
    "bind-exchange-word": _bind_exchange,
}


def errors(port: int) -> dict:
    return {name: _outcome(port, action) for name, action in ERROR_CASES.items()}


SCENARIOS: dict[str, Callable[[int], Any]] = {
    "routing_key_hash": routing_key_hash,
    "rebinding": rebinding,
    "header_hash": header_hash,
    "property_hash": property_hash,
    "exchange_destinations": exchange_destinations,
    "errors": errors,
}


if __name__ == "__main__":
    HOST, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:5672").partition(":")
    recorded = {name: scenario(int(port or 5672)) for name, scenario in SCENARIOS.items()}
    EXPECTATIONS.write_text(json.dumps(recorded, indent=0, sort_keys=True) + "\n")
    print(f"recorded {len(recorded)} scenarios in {EXPECTATIONS}")
