"""py-amqp (the `amqp` package, kombu's transport) smoke scenario:
python interop/clients/pyamqp_smoke.py --host H --port P

Against any AMQP 0-9-1 broker (ours or RabbitMQ), with guest/guest on vhost "/":
- logs in with py-amqp's default mechanism choice (AMQPLAIN when the server offers it), then
  explicitly with AMQPLAIN and with PLAIN; a wrong password must be refused (403 ACCESS_REFUSED);
- declares a direct exchange and a bound queue, publishes 10 messages in confirm mode with every
  basic property and a header table of mixed types; a mandatory unroutable publish must come back
  as basic.return 312 NO_ROUTE;
- consumes them with prefetch 3 and manual acks, checking bodies, properties, headers and order;
- basic.get + reject(requeue) redelivers with redelivered=True;
- a transaction: rolled-back publishes vanish, committed ones arrive;
- heartbeats at 1 s keep an idle connection alive for 3.5 s; a 300 KB body goes through in
  several frames each way;
- deletes the queue with if_empty (every ack settled) and the exchange;
- (part "delete-order") deleting a queue consumed on the same channel: queue.delete-ok comes
  before the consumer's basic.cancel, as RabbitMQ orders them.
Prints PASS and exits 0, or prints the failure and exits 1. Every wait is bounded.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
import uuid

import amqp
from amqp import sasl

N = 10
TIMEOUT = 10.0


def connect(host: str, port: int, **kw) -> amqp.Connection:
    conn = amqp.Connection(host=f"{host}:{port}", virtual_host="/", connect_timeout=TIMEOUT,
                           read_timeout=TIMEOUT, write_timeout=TIMEOUT, heartbeat=0,
                           client_properties={"connection_name": "pyamqp_smoke"}, **kw)
    conn.connect()
    return conn


def expected_headers(i: int) -> dict:
    return {"x-index": i, "x-text": "héllo wörld", "x-flag": i % 2 == 0,
            "x-neg": -123456789012, "x-nested": {"k": "v", "n": 7}, "x-list": [1, "two", False]}


def properties(i: int, tag: str) -> dict:
    return dict(content_type="application/octet-stream", content_encoding="binary",
                application_headers=expected_headers(i), delivery_mode=2, priority=i % 10,
                correlation_id=f"corr-{i}", reply_to=f"reply.{tag}", expiration="60000",
                message_id=f"{tag}-{i}", timestamp=1700000000 + i, type="smoke", user_id="guest",
                app_id="pyamqp_smoke")


def body(i: int) -> bytes:
    return bytes([i]) * i + f"py-amqp message {i}".encode() + b"\x00\xff"


def drain_until(conn: amqp.Connection, done, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        try:
            conn.drain_events(timeout=min(left, 1.0))
        except TimeoutError:
            pass


def check_logins(host: str, port: int) -> None:
    # Default: py-amqp tries GSSAPI (soft), EXTERNAL, AMQPLAIN, PLAIN in that order and uses the
    # first the server lists: AMQPLAIN against RabbitMQ.
    with connect(host, port, userid="guest", password="guest") as c:
        mechs = c.mechanisms
        assert b"AMQPLAIN" in mechs and b"PLAIN" in mechs, f"server mechanisms: {mechs!r}"
        used = [a.mechanism for a in c.authentication if a.mechanism in mechs][0]
        assert used == b"AMQPLAIN", f"py-amqp logged in with {used!r}, expected AMQPLAIN"
        caps = c.server_capabilities
        for cap in ("publisher_confirms", "basic.nack", "consumer_cancel_notify",
                    "authentication_failure_close", "per_consumer_qos"):
            assert caps.get(cap) is True, f"server capability {cap}: {caps.get(cap)!r}"
    for method in ("AMQPLAIN", "PLAIN"):
        with connect(host, port, userid="guest", password="guest", login_method=method) as c:
            ch = c.channel()
            ch.close()
    try:
        with connect(host, port, authentication=(sasl.AMQPLAIN("guest", "wrong"),)):
            pass
    except amqp.exceptions.AccessRefused as e:
        assert e.reply_code == 403 and "ACCESS_REFUSED" in str(e), e
    else:
        raise AssertionError("AMQPLAIN login with a wrong password was accepted")


def check_heartbeats_and_large_body(host: str, port: int) -> None:
    """heartbeat=1 s negotiated both ways for 3.5 s of idling (py-amqp fails after two silent
    intervals; the broker drops a client silent for two); a 300 KB body, which travels as
    several body frames each way (py-amqp adopts the server's frame_max, 131072)."""
    conn = amqp.Connection(host=f"{host}:{port}", userid="guest", password="guest",
                           connect_timeout=TIMEOUT, read_timeout=TIMEOUT, heartbeat=1)
    conn.connect()
    with conn:
        assert conn.heartbeat == 1, f"negotiated heartbeat {conn.heartbeat}"
        assert conn.frame_max < 300 * 1024, f"frame_max {conn.frame_max}"
        ch = conn.channel()
        qname, _, _ = ch.queue_declare("", exclusive=True)
        big = bytes((i * 31 + 7) & 0xFF for i in range(300 * 1024 + 5))
        ch.basic_publish(amqp.Message(big, message_id="big"), exchange="", routing_key=qname)
        deadline = time.monotonic() + 3.5
        got = ch.basic_get(qname, no_ack=True)
        while got is None and time.monotonic() < deadline:
            got = ch.basic_get(qname, no_ack=True)
        assert got is not None and got.body == big and got.properties["message_id"] == "big", \
            f"large message: {None if got is None else len(got.body)} bytes"
        while time.monotonic() < deadline:  # idle: only heartbeats flow
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
            conn.heartbeat_tick()  # raises ConnectionForced if the broker fell silent
        ch.queue_declare(qname, passive=True)  # the broker kept us
        ch.close()


def check_delete_of_consumed_queue(host: str, port: int) -> None:
    """queue.delete on the channel that consumes the queue: RabbitMQ 3.10 answers delete-ok
    first and then sends that channel's consumer basic.cancel (a consumer on another channel
    gets its basic.cancel before the delete-ok). py-amqp shows the order: queue_delete() returns
    before the on_cancel callback runs (otherwise on_cancel runs inside queue_delete())."""
    with connect(host, port, userid="guest", password="guest") as conn:
        ch = conn.channel()
        qname, _, _ = ch.queue_declare("", exclusive=True)
        events: list[str] = []
        ch.basic_consume(qname, callback=lambda m: None,
                         on_cancel=lambda tag: events.append("basic.cancel"))
        ch.queue_delete(qname)
        events.append("queue.delete-ok")
        drain_until(conn, lambda: "basic.cancel" in events, "the server's basic.cancel")
        assert events == ["queue.delete-ok", "basic.cancel"], \
            f"queue.delete of a queue consumed on the same channel: frames in order {events}, " \
            "RabbitMQ sends queue.delete-ok before basic.cancel"
        ch.close()


def scenario(host: str, port: int) -> None:
    check_logins(host, port)
    check_heartbeats_and_large_body(host, port)
    tag = uuid.uuid4().hex[:8]
    qname, xname = f"smoke.pyamqp.{tag}", f"smoke.pyamqp.x.{tag}"
    with connect(host, port, userid="guest", password="guest") as conn:
        ch = conn.channel()
        ch.exchange_declare(xname, "direct", durable=False, auto_delete=False)
        name, count, consumers = ch.queue_declare(qname, durable=False, exclusive=False,
                                                  auto_delete=False)
        assert (name, count, consumers) == (qname, 0, 0), (name, count, consumers)
        ch.queue_bind(qname, xname, routing_key="rk")

        returned: list[tuple] = []
        ch.events["basic_return"].add(
            lambda exc, exchange, routing_key, msg: returned.append(
                (exc.reply_code, exc.reply_text, exchange, routing_key, msg.body)))
        ch.confirm_select()
        for i in range(N):
            ch.basic_publish_confirm(amqp.Message(body(i), **properties(i, tag)), exchange=xname,
                                     routing_key="rk", confirm_timeout=TIMEOUT)
        ch.basic_publish_confirm(amqp.Message(b"nobody"), exchange=xname, routing_key="nowhere",
                                 mandatory=True, confirm_timeout=TIMEOUT)
        assert returned == [(312, "NO_ROUTE", xname, "nowhere", b"nobody")], returned

        _, count, _ = ch.queue_declare(qname, passive=True)
        assert count == N, f"passive declare: message_count={count}, expected {N}"

        ch.basic_qos(0, 3, False)
        got: list[amqp.Message] = []
        unacked_max = [0]
        pending: list[int] = []

        def on_message(msg: amqp.Message) -> None:
            got.append(msg)
            pending.append(msg.delivery_tag)
            unacked_max[0] = max(unacked_max[0], len(pending))
            if len(pending) == 3 or len(got) == N:  # ack in batches: exercises prefetch + multiple
                ch.basic_ack(pending[-1], multiple=True)
                pending.clear()

        ctag = ch.basic_consume(qname, callback=on_message, no_ack=False)
        drain_until(conn, lambda: len(got) >= N, f"{N} deliveries")
        assert unacked_max[0] <= 3, f"prefetch 3 exceeded: {unacked_max[0]} unacked"
        for i, m in enumerate(got):
            assert m.body == body(i), f"message {i}: body {m.body!r}"
            want = properties(i, tag)
            for key, value in want.items():
                assert m.properties.get(key) == value, \
                    f"message {i}: {key} = {m.properties.get(key)!r}, expected {value!r}"
            info = m.delivery_info
            assert info["exchange"] == xname and info["routing_key"] == "rk" \
                and info["redelivered"] is False and info["consumer_tag"] == ctag, info
        ch.basic_cancel(ctag)

        # basic.get, reject with requeue, get again: redelivered
        ch.basic_publish_confirm(amqp.Message(b"again", application_headers={"n": 1}),
                                 exchange=xname, routing_key="rk", confirm_timeout=TIMEOUT)
        m1 = ch.basic_get(qname, no_ack=False)
        assert m1 is not None and m1.body == b"again" and not m1.delivery_info["redelivered"], m1
        assert m1.delivery_info["message_count"] == 0, m1.delivery_info
        ch.basic_reject(m1.delivery_tag, requeue=True)
        m2 = ch.basic_get(qname, no_ack=False)
        assert m2 is not None and m2.body == b"again" and m2.delivery_info["redelivered"], m2
        assert m2.headers == {"n": 1}, m2.headers
        ch.basic_ack(m2.delivery_tag)
        assert ch.basic_get(qname, no_ack=False) is None, "queue should be empty"

        # transactions on a second channel
        tx = conn.channel()
        tx.tx_select()
        tx.basic_publish(amqp.Message(b"rolled back"), exchange=xname, routing_key="rk")
        tx.tx_rollback()
        tx.basic_publish(amqp.Message(b"committed"), exchange=xname, routing_key="rk")
        tx.tx_commit()
        m3 = tx.basic_get(qname, no_ack=True)
        assert m3 is not None and m3.body == b"committed", m3 and m3.body
        assert tx.basic_get(qname, no_ack=True) is None, "rolled-back message was delivered"
        tx.tx_commit()
        tx.close()

        ch.queue_unbind(qname, xname, routing_key="rk")
        ch.queue_delete(qname, if_unused=False, if_empty=True)
        ch.exchange_delete(xname, if_unused=True)
        ch.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--part", choices=("all", "smoke", "delete-order"), default="all",
                    help="smoke: everything but the frame-order check of queue.delete on a "
                         "consumed queue; delete-order: only that check (tests run them apart)")
    args = ap.parse_args(argv)
    try:
        if args.part in ("all", "smoke"):
            scenario(args.host, args.port)
        if args.part in ("all", "delete-order"):
            check_delete_of_consumed_queue(args.host, args.port)
    except Exception as e:  # noqa: BLE001 - report anything as a failure
        traceback.print_exc()
        print(f"FAIL py-amqp {amqp.__version__}: {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"PASS py-amqp {amqp.__version__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
