"""RabbitMQ extension: dead-lettering (x-dead-letter-exchange / -routing-key) and x-death."""

from __future__ import annotations

from typing import Any

import pika

from ..harness import Context, scenario

EXT = ("ext", "dlx")


def dead(ctx: Context, ch: Any, dlq: str, timeout: float | None = None) -> Any:
    """The next dead-lettered message in ``dlq`` (exchange, key, properties with x-death), or
    None if none arrives in time."""
    got = ctx.poll_get(ch, dlq, timeout=timeout)
    if got is None:
        return None
    m, p, b = got
    from ..harness import props_dict
    return {"body": b, "exchange": m.exchange, "rk": m.routing_key, "redelivered": m.redelivered,
            "props": props_dict(p)}


def _setup(ctx: Context, qargs: dict, dlx_type: str = "fanout", bind_key: str = "#"):
    conn = ctx.connection()
    ch = conn.channel()
    dlx, q, dlq = ctx.exchange("dlx"), ctx.queue("q"), ctx.queue("dlq")
    ch.exchange_declare(dlx, dlx_type)
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, dlx, bind_key if dlx_type != "fanout" else "")
    args = {"x-dead-letter-exchange": dlx}
    args.update(qargs)
    ctx.attempt("declare_q", ch.queue_declare, q, arguments=args)
    return conn, ch, q, dlq, dlx


@scenario("dead-lettering: reject requeue=false", tags=EXT)
def _(ctx: Context) -> None:
    conn, ch, q, dlq, dlx = _setup(ctx, {})
    props = pika.BasicProperties(headers={"app": "h"}, message_id="mid", content_type="text/plain")
    ch.basic_publish("", q, b"rejected", props)
    m = ctx.poll_get(ch, q, auto_ack=False)
    ch.basic_reject(m[0].delivery_tag, requeue=False)
    ctx.observe("dead", dead(ctx, ch, dlq))
    ctx.observe("q_count", ctx.queue_count(ch, q))


@scenario("dead-lettering: nack multiple requeue=false, counts per queue", tags=EXT)
def _(ctx: Context) -> None:
    conn, ch, q, dlq, dlx = _setup(ctx, {})
    for i in range(3):
        ch.basic_publish("", q, b"n%d" % i)
    ctx.wait_count(ch, q, 3)
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[-1], multiple=True, requeue=False)
    ctx.wait_count(ch, dlq, 3)
    ctx.observe("dead", [dead(ctx, ch, dlq) for _ in range(3)])


@scenario("dead-lettering: x-dead-letter-routing-key and the default exchange", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    dlx = ctx.exchange("dlx")
    q1, q2, dlq, dlq2 = ctx.queue("q1"), ctx.queue("q2"), ctx.queue("dlq"), ctx.queue("dlq2")
    ch.exchange_declare(dlx, "direct")
    ch.queue_declare(dlq)
    ch.queue_declare(dlq2)
    ch.queue_bind(dlq, dlx, "dead-key")
    ch.queue_declare(q1, arguments={"x-dead-letter-exchange": dlx,
                                    "x-dead-letter-routing-key": "dead-key"})
    ch.queue_declare(q2, arguments={"x-dead-letter-exchange": "",
                                    "x-dead-letter-routing-key": dlq2})
    ch.basic_publish("", q1, b"to-dlx")
    ch.basic_publish("", q2, b"to-default")
    for q in (q1, q2):
        m = ctx.poll_get(ch, q, auto_ack=False)
        ch.basic_reject(m[0].delivery_tag, requeue=False)
    ctx.observe("dlq", dead(ctx, ch, dlq))
    ctx.observe("dlq2", dead(ctx, ch, dlq2))


@scenario("dead-lettering: expired by x-message-ttl", tags=EXT + ("ttl",))
def _(ctx: Context) -> None:
    conn, ch, q, dlq, dlx = _setup(ctx, {"x-message-ttl": 100})
    ch.basic_publish("", q, b"expired", pika.BasicProperties(headers={"k": 1}))
    ctx.observe("dead", dead(ctx, ch, dlq))


@scenario("dead-lettering: expired by per-message expiration", tags=EXT + ("ttl",))
def _(ctx: Context) -> None:
    conn, ch, q, dlq, dlx = _setup(ctx, {})
    ch.basic_publish("", q, b"expired", pika.BasicProperties(expiration="100", priority=3))
    ctx.observe("dead", dead(ctx, ch, dlq))


@scenario("dead-lettering: max-length drop-head", tags=EXT + ("max-length",))
def _(ctx: Context) -> None:
    conn, ch, q, dlq, dlx = _setup(ctx, {"x-max-length": 2})
    for i in range(1, 5):
        ch.basic_publish("", q, b"m%d" % i)
    ctx.wait_count(ch, dlq, 2)
    ctx.observe("dead", [dead(ctx, ch, dlq) for _ in range(2)])
    ctx.observe("q_left", [ch.basic_get(q, auto_ack=True)[2] for _ in range(2)])


@scenario("dead-lettering: x-death accumulates across queues and rounds", tags=EXT)
def _(ctx: Context) -> None:
    """q1 dead-letters to q2 and q2 back to q1 (both via the default exchange); rejected
    three times the message carries one x-death entry per (queue, reason) with counts."""
    conn = ctx.connection()
    ch = conn.channel()
    q1, q2 = ctx.queue("q1"), ctx.queue("q2")
    ch.queue_declare(q1, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q2})
    ch.queue_declare(q2, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q1})
    ch.basic_publish("", q1, b"ping-pong", pika.BasicProperties(headers={"orig": True}))
    rounds = []
    for q in (q1, q2, q1):
        m = ctx.poll_get(ch, q, auto_ack=False)
        if m is None:
            rounds.append(None)
            break
        rounds.append({"rk": m[0].routing_key, "headers": m[1].headers})
        ch.basic_reject(m[0].delivery_tag, requeue=False)
    ctx.observe("rounds", rounds)
    ctx.observe("final", dead(ctx, ch, q2))


@scenario("dead-lettering: TTL cycle is broken, missing DLX drops", tags=EXT + ("ttl",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q1, q2, q3 = ctx.queue("q1"), ctx.queue("q2"), ctx.queue("q3")
    nowhere = ctx.name("nowhere")
    ch.queue_declare(q1, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                    "x-dead-letter-routing-key": q2})
    ch.queue_declare(q2, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                    "x-dead-letter-routing-key": q1})
    ch.queue_declare(q3, arguments={"x-dead-letter-exchange": nowhere})
    ch.confirm_delivery()
    ch.basic_publish("", q1, b"cycle")

    def both_empty():
        return ctx.queue_count(ch, q1) == 0 and ctx.queue_count(ch, q2) == 0
    ctx.wait_until(both_empty)
    ctx.settle(conn, seconds=0.5)        # several TTL periods: a loop would show up again
    ctx.observe("settled_empty", both_empty() and both_empty())
    ch.basic_publish("", q3, b"to-missing-dlx")
    m = ctx.poll_get(ch, q3, auto_ack=False)
    ch.basic_reject(m[0].delivery_tag, requeue=False)
    ctx.sync(ch)
    ctx.observe("q3_count", ctx.queue_count(ch, q3))
    ctx.observe("channel_open", ch.is_open)


@scenario("dead-lettering: requeue=true and channel close don't dead-letter", tags=EXT)
def _(ctx: Context) -> None:
    conn, ch, q, dlq, dlx = _setup(ctx, {})
    ch.basic_publish("", q, b"m1")
    ch.basic_publish("", q, b"m2")
    c2 = conn.channel()
    a = c2.basic_get(q) if ctx.wait_count(ch, q, 2) == 2 else None
    b = c2.basic_get(q)
    c2.basic_reject(a[0].delivery_tag, requeue=True)
    c2.close()
    ctx.wait_count(ch, q, 2)
    ctx.settle(conn)
    ctx.observe("dlq_count", ctx.queue_count(ch, dlq))
    ctx.observe("q", [ch.basic_get(q, auto_ack=True)[0].redelivered for _ in range(2)])
    ctx.observe("b_body", b[2] if b else None)
