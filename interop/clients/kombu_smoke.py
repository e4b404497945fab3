"""kombu smoke scenario (py-amqp transport): python interop/clients/kombu_smoke.py --host H --port P

Against any AMQP 0-9-1 broker (ours or RabbitMQ), with guest/guest on vhost "/":
- declares a topic exchange and a bound queue through kombu's entity declarations;
- publishes 10 messages (json-serialized, one of them zlib-compressed) in confirm mode with
  headers, priority, correlation_id, reply_to, expiration and persistent delivery mode;
- consumes them with a kombu Consumer (prefetch 3, manual acks), checking payloads, properties,
  headers, delivery info and order;
- rejects one with requeue and gets it back redelivered; SimpleQueue put/get round trip;
- deletes the queues and the exchange.
Prints PASS and exits 0, or prints the failure and exits 1. Every wait is bounded.
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
import traceback
import uuid

import kombu
from kombu import Connection, Consumer, Exchange, Producer, Queue

N = 10
TIMEOUT = 10.0


def payload(i: int, tag: str) -> dict:
    return {"i": i, "tag": tag, "text": "héllo wörld", "list": [1, 2.5, None, True]}


def headers(i: int) -> dict:
    return {"x-index": i, "x-text": "kombü", "x-nested": {"a": [1, "b"]}}


def drain_until(conn: Connection, done, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        try:
            conn.drain_events(timeout=min(left, 1.0))
        except socket.timeout:
            pass


def scenario(host: str, port: int) -> None:
    tag = uuid.uuid4().hex[:8]
    url = f"amqp://guest:guest@{host}:{port}//"
    exchange = Exchange(f"smoke.kombu.x.{tag}", type="topic", durable=False, auto_delete=False)
    queue = Queue(f"smoke.kombu.{tag}", exchange=exchange, routing_key="smoke.*", durable=False,
                  auto_delete=False)
    with Connection(url, connect_timeout=TIMEOUT, heartbeat=0,
                    transport_options={"confirm_publish": True}) as conn:
        conn.ensure_connection(max_retries=1, timeout=TIMEOUT)
        assert conn.transport_cls in ("amqp", "pyamqp") or conn.transport.driver_type == "amqp"
        channel = conn.channel()
        bound = queue(channel)
        bound.declare()  # exchange, queue, binding

        producer = Producer(channel, exchange=exchange, serializer="json")
        for i in range(N):
            producer.publish(payload(i, tag), routing_key=f"smoke.{i}", headers=headers(i),
                             priority=i % 10, correlation_id=f"corr-{i}", reply_to=f"reply.{tag}",
                             expiration=60, delivery_mode=2, retry=False,
                             compression="zlib" if i == 3 else None)

        _, count, _ = channel.queue_declare(queue.name, passive=True)
        assert count == N, f"passive declare: message_count={count}, expected {N}"

        got: list[kombu.Message] = []

        def on_message(body, message) -> None:
            got.append(message)
            message.ack()

        with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"],
                      prefetch_count=3, no_ack=False):
            drain_until(conn, lambda: len(got) >= N, f"{N} deliveries")
            ctags = {m.delivery_info["consumer_tag"] for m in got}
            assert len(ctags) == 1 and all(ctags), f"consumer tags: {ctags}"
        for i, m in enumerate(got):
            assert m.decode() == payload(i, tag), f"message {i}: payload {m.decode()!r}"
            assert m.content_type == "application/json", (i, m.content_type)
            want_headers = dict(headers(i))
            if i == 3:
                want_headers["compression"] = "application/x-gzip"
            assert m.headers == want_headers, f"message {i}: headers {m.headers!r}"
            p = m.properties
            assert p["priority"] == i % 10 and p["correlation_id"] == f"corr-{i}" \
                and p["reply_to"] == f"reply.{tag}" and p["expiration"] == "60000" \
                and p["delivery_mode"] == 2, f"message {i}: properties {p!r}"
            info = m.delivery_info
            assert info["exchange"] == exchange.name and info["routing_key"] == f"smoke.{i}" \
                and info["redelivered"] is False, f"message {i}: delivery_info {info!r}"

        # reject with requeue, get it back redelivered
        producer.publish({"again": True}, routing_key="smoke.again", retry=False)
        m1 = bound.get(no_ack=False, accept=["json"])
        assert m1 is not None and m1.payload == {"again": True}, m1
        assert not m1.delivery_info["redelivered"], m1.delivery_info
        m1.requeue()
        m2 = bound.get(no_ack=False, accept=["json"])
        assert m2 is not None and m2.payload == {"again": True} and m2.delivery_info["redelivered"], \
            m2 and m2.delivery_info
        m2.ack()
        assert bound.get(no_ack=True) is None, "queue should be empty"
        bound.delete(if_unused=False, if_empty=True)
        exchange(channel).delete(if_unused=True)

        # SimpleQueue: kombu's queue-like API (declares its own direct exchange and queue)
        sq_name = f"smoke.kombu.simple.{tag}"
        sq = conn.SimpleQueue(sq_name, serializer="json",
                              queue_opts={"durable": False, "auto_delete": False},
                              exchange_opts={"durable": False, "auto_delete": False})
        try:
            for i in range(3):
                sq.put({"n": i}, headers={"k": i})
            for i in range(3):
                m = sq.get(block=True, timeout=TIMEOUT)
                assert m.payload == {"n": i} and m.headers == {"k": i}, (m.payload, m.headers)
                m.ack()
            assert sq.qsize() == 0, sq.qsize()
        finally:
            sq.close()  # cancels its consumer first: deleting a consumed queue cancels it (60,30)
            cleanup = conn.channel()
            sq.queue(cleanup).delete()
            sq.queue.exchange(cleanup).delete()
            cleanup.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    args = ap.parse_args(argv)
    try:
        scenario(args.host, args.port)
    except Exception as e:  # noqa: BLE001 - report anything as a failure
        traceback.print_exc()
        print(f"FAIL kombu {kombu.__version__}: {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"PASS kombu {kombu.__version__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
