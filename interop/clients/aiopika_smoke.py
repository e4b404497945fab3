"""aio-pika smoke scenario: python interop/clients/aiopika_smoke.py --host H --port P

Against any AMQP 0-9-1 broker (ours or RabbitMQ), with guest/guest on vhost "/":
- declares a topic exchange and a queue bound to it (publisher confirms on, qos 3);
- publishes 10 messages with every basic property and a header table of mixed types, each
  confirmed; a mandatory publish nobody routes must come back as basic.return (PublishError);
- consumes them with manual acks and checks bodies, every property, headers and order;
- basic.get + nack(requeue) must redeliver the message with redelivered=True; a 1 MiB body
  round-trips; a 404 (passive declare of a missing queue) closes the channel, which reopens;
- deletes the queue with if_empty (every ack settled) and the exchange.
Prints PASS and exits 0, or prints the failure and exits 1. Every wait is bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import uuid

import aio_pika
from aio_pika.exceptions import PublishError
from pamqp.commands import Basic

N = 10
TIMEOUT = 10.0


def expected_headers(i: int) -> dict:
    return {
        "x-index": i,
        "x-text": "héllo wörld",
        "x-flag": i % 2 == 0,
        "x-neg": -123456789012,
        "x-float": 1.5,
        "x-nested": {"k": "v", "n": 7},
        "x-list": [1, "two", False],
    }


def make_message(i: int, tag: str) -> aio_pika.Message:
    return aio_pika.Message(
        body=f"aio-pika message {i}".encode(),
        headers=expected_headers(i),
        content_type="text/plain",
        content_encoding="utf-8",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=i % 10,
        correlation_id=f"corr-{i}",
        reply_to=f"reply.{tag}",
        expiration=60,  # seconds -> "60000"
        message_id=f"{tag}-{i}",
        timestamp=dt.datetime(2024, 1, 2, 3, 4, 5 + i, tzinfo=dt.timezone.utc),
        type="smoke",
        user_id="guest",
        app_id="aiopika_smoke",
    )


def check_message(m: aio_pika.abc.AbstractIncomingMessage, i: int, tag: str, exchange: str) -> None:
    want = make_message(i, tag)
    got = {
        "body": m.body, "headers": m.headers, "content_type": m.content_type,
        "content_encoding": m.content_encoding, "delivery_mode": m.delivery_mode,
        "priority": m.priority, "correlation_id": m.correlation_id, "reply_to": m.reply_to,
        "expiration": m.expiration, "message_id": m.message_id,
        "timestamp": m.timestamp, "type": m.type, "user_id": m.user_id, "app_id": m.app_id,
        "exchange": m.exchange, "routing_key": m.routing_key,
    }
    exp = {
        "body": want.body, "headers": expected_headers(i), "content_type": "text/plain",
        "content_encoding": "utf-8", "delivery_mode": aio_pika.DeliveryMode.PERSISTENT,
        "priority": i % 10, "correlation_id": f"corr-{i}", "reply_to": f"reply.{tag}",
        "expiration": 60.0, "message_id": f"{tag}-{i}",
        "timestamp": dt.datetime(2024, 1, 2, 3, 4, 5 + i, tzinfo=dt.timezone.utc),
        "type": "smoke", "user_id": "guest", "app_id": "aiopika_smoke",
        "exchange": exchange, "routing_key": f"smoke.{i}.x",
    }
    # Timestamps are whole seconds on the wire; compare as epoch seconds, tz-agnostic.
    got["timestamp"] = got["timestamp"] and got["timestamp"].replace(tzinfo=dt.timezone.utc).timestamp()
    exp["timestamp"] = exp["timestamp"].timestamp()
    for key in exp:
        assert got[key] == exp[key], f"message {i}: {key} = {got[key]!r}, expected {exp[key]!r}"
    assert not m.redelivered, f"message {i}: redelivered on first delivery"


async def scenario(host: str, port: int) -> None:
    tag = uuid.uuid4().hex[:8]
    qname, xname = f"smoke.aiopika.{tag}", f"smoke.aiopika.x.{tag}"
    conn = await aio_pika.connect(host=host, port=port, login="guest", password="guest",
                                  virtualhost="/", timeout=TIMEOUT,
                                  client_properties={"connection_name": "aiopika_smoke"})
    async with conn:
        ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
        await ch.set_qos(prefetch_count=3)
        x = await ch.declare_exchange(xname, aio_pika.ExchangeType.TOPIC, auto_delete=False,
                                      timeout=TIMEOUT)
        q = await ch.declare_queue(qname, durable=False, auto_delete=False, timeout=TIMEOUT)
        await q.bind(x, routing_key="smoke.#", timeout=TIMEOUT)

        for i in range(N):
            confirm = await x.publish(make_message(i, tag), routing_key=f"smoke.{i}.x",
                                      timeout=TIMEOUT)
            assert isinstance(confirm, Basic.Ack), f"publish {i}: no basic.ack, got {confirm!r}"

        try:
            await x.publish(aio_pika.Message(b"nobody"), routing_key="nowhere", mandatory=True,
                            timeout=TIMEOUT)
        except PublishError as e:
            assert "NO_ROUTE" in str(e) or "312" in str(e), f"unexpected return: {e!r}"
        else:
            raise AssertionError("mandatory unroutable publish was not returned")

        declared = await ch.declare_queue(qname, passive=True, timeout=TIMEOUT)
        count = declared.declaration_result.message_count
        assert count == N, f"passive declare: message_count={count}, expected {N}"

        seen: list[int] = []

        async def consume() -> None:
            async with q.iterator() as it:
                async for m in it:
                    i = len(seen)
                    check_message(m, i, tag, xname)
                    await m.ack()
                    seen.append(i)
                    if len(seen) == N:
                        break

        await asyncio.wait_for(consume(), TIMEOUT)
        assert seen == list(range(N)), f"order: {seen}"

        # basic.get, nack with requeue, get again: redelivered
        await x.publish(aio_pika.Message(b"again", headers={"n": 1}), routing_key="smoke.again",
                        timeout=TIMEOUT)
        m1 = await q.get(timeout=TIMEOUT, fail=True)
        assert m1.body == b"again" and not m1.redelivered, (m1.body, m1.redelivered)
        await m1.nack(requeue=True)
        m2 = await q.get(timeout=TIMEOUT, fail=True)
        assert m2.body == b"again" and m2.redelivered, (m2.body, m2.redelivered)
        assert m2.headers == {"n": 1}, m2.headers
        await m2.ack()
        assert await q.get(timeout=TIMEOUT, fail=False) is None, "queue should be empty"

        # a 1 MiB body: several frames each way
        big = bytes((i * 31 + 7) & 0xFF for i in range(1024 * 1024 + 3))
        await x.publish(aio_pika.Message(big, message_id="big"), routing_key="smoke.big",
                        timeout=TIMEOUT)
        m3 = await q.get(timeout=TIMEOUT, fail=True)
        assert m3.body == big and m3.message_id == "big", f"large body: {len(m3.body)} bytes"
        await m3.ack()

        # a channel error (404) closes only that channel; reopening it carries on
        missing = f"smoke.aiopika.missing.{tag}"
        try:
            await ch.declare_queue(missing, passive=True, timeout=TIMEOUT)
        except aio_pika.exceptions.ChannelNotFoundEntity as e:
            assert f"NOT_FOUND - no queue '{missing}' in vhost '/'" in str(e), repr(e)
        else:
            raise AssertionError("passive declare of a missing queue succeeded")
        await ch.reopen()
        q = await ch.declare_queue(qname, passive=True, timeout=TIMEOUT)
        x = await ch.get_exchange(xname, ensure=True)

        await q.unbind(x, routing_key="smoke.#", timeout=TIMEOUT)
        await q.delete(if_unused=False, if_empty=True, timeout=TIMEOUT)
        await x.delete(if_unused=True, timeout=TIMEOUT)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    args = ap.parse_args(argv)
    try:
        asyncio.run(asyncio.wait_for(scenario(args.host, args.port), 60))
    except BaseException as e:  # noqa: BLE001 - report anything as a failure
        if isinstance(e, KeyboardInterrupt):
            raise
        import traceback
        traceback.print_exc()
        print(f"FAIL aio-pika {aio_pika.__version__}: {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"PASS aio-pika {aio_pika.__version__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
