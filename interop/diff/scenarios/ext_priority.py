"""RabbitMQ extensions: priority queues (x-max-priority), consumer priorities (x-priority),
single active consumer (x-single-active-consumer)."""

from __future__ import annotations

import pika

from ..harness import Context, Inbox, publish_n, scenario

EXT = ("ext", "priority")


def _publish_priorities(ch, q, prios) -> None:
    for i, p in enumerate(prios):
        props = pika.BasicProperties(priority=p) if p is not None else None
        ch.basic_publish("", q, f"p{p}-{i}".encode(), props)


@scenario("x-max-priority: delivery order", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ctx.attempt("declare", ch.queue_declare, q, arguments={"x-max-priority": 10})
    ch.confirm_delivery()
    _publish_priorities(ch, q, [1, 5, None, 9, 5, 10, 200, 0, 9])
    ctx.observe("count", ctx.queue_count(ch, q))
    a = Inbox()
    ch.basic_consume(q, a, auto_ack=True)
    ctx.wait_until(lambda: len(a) >= 9, conn)
    ctx.observe("order", a.bodies())


@scenario("x-max-priority: requeued message keeps its priority", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    ch.confirm_delivery()
    _publish_priorities(ch, q, [1, 3, 5])
    m = ch.basic_get(q)
    ctx.observe("first", m[2])
    ch.basic_publish("", q, b"p4-new", pika.BasicProperties(priority=4))
    ch.basic_reject(m[0].delivery_tag, requeue=True)
    ctx.sync(ch)
    ctx.observe("order", [(ch.basic_get(q, auto_ack=True)[2]) for _ in range(4)])


@scenario("x-max-priority: limits and validation", tags=EXT + ("errors",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    for key, value in (("p255", 255), ("p256", 256), ("p0", 0), ("p1", 1), ("negative", -1),
                       ("string", "10")):
        ch = conn.channel()
        ctx.attempt(key, ch.queue_declare, ctx.queue(key), arguments={"x-max-priority": value})
    ch = conn.channel()
    q = ctx.queue("q255")
    ch.queue_declare(q, arguments={"x-max-priority": 255})
    ch.confirm_delivery()
    _publish_priorities(ch, q, [0, 255, 128, 254])
    ctx.observe("order_255", [ch.basic_get(q, auto_ack=True)[2] for _ in range(4)])


@scenario("priority property ignored without x-max-priority", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    ch.confirm_delivery()
    _publish_priorities(ch, q, [1, 9, 5])
    ctx.observe("order", [ch.basic_get(q, auto_ack=True)[2] for _ in range(3)])


@scenario("consumer priorities (x-priority)", tags=EXT + ("consumer-priority",))
def _(ctx: Context) -> None:
    """The highest-priority consumer with capacity gets every message."""
    conn = ctx.connection()
    q = ctx.queue()
    setup = conn.channel()
    setup.queue_declare(q)
    lo_ch, hi_ch = conn.channel(), conn.channel()
    lo_ch.basic_qos(prefetch_count=10)
    hi_ch.basic_qos(prefetch_count=2)
    lo, hi = Inbox(), Inbox()
    ctx.attempt("consume_low", lo_ch.basic_consume, q, lo, arguments={"x-priority": 1})
    ctx.attempt("consume_high", hi_ch.basic_consume, q, hi, arguments={"x-priority": 10})
    publish_n(setup, "", q, 5)
    ctx.wait_until(lambda: len(lo) + len(hi) >= 5, conn)
    ctx.settle(conn)
    ctx.observe("first_five", {"high": hi.bodies(), "low": lo.bodies()})
    for t in hi.tags():
        hi_ch.basic_ack(t)
    publish_n(setup, "", q, 2, start=6)
    ctx.wait_until(lambda: len(lo) + len(hi) >= 7, conn)
    ctx.settle(conn)
    ctx.observe("after_high_acks", {"high": hi.bodies(), "low": lo.bodies()})


@scenario("consumer priorities: invalid x-priority", tags=EXT + ("consumer-priority", "errors"))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    q = ctx.queue()
    conn.channel().queue_declare(q)
    for key, value in (("string", "high"), ("negative", -5), ("big", 2 ** 40)):
        ch = conn.channel()
        ctx.attempt(key, ch.basic_consume, q, lambda *a: None, arguments={"x-priority": value})
        if not conn.is_open:
            conn = ctx.connection()


@scenario("single active consumer", tags=EXT + ("sac",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    q = ctx.queue()
    setup = conn.channel()
    ctx.attempt("declare", setup.queue_declare, q, arguments={"x-single-active-consumer": True})
    a_ch, b_ch = conn.channel(), conn.channel()
    a, b = Inbox(), Inbox()
    a_tag = a_ch.basic_consume(q, a)
    b_ch.basic_consume(q, b)
    publish_n(setup, "", q, 4)
    ctx.wait_until(lambda: len(a) + len(b) >= 4, conn)
    ctx.settle(conn)
    ctx.observe("first", {"a": a.bodies(), "b": b.bodies()})
    ctx.observe("declare_ok", setup.queue_declare(q, passive=True))
    a_ch.basic_ack(a.tags()[0]) if a.tags() else None
    a_ch.basic_cancel(a_tag)
    publish_n(setup, "", q, 2, start=5)
    ctx.wait_until(lambda: len(b) >= 2, conn)
    ctx.settle(conn)
    ctx.observe("after_cancel", {"a": a.bodies(), "b": b.bodies()})
    a_ch.close()    # a's unacked m2..m4 go back, to the now-active consumer b
    ctx.wait_until(lambda: len(b) >= 5, conn)
    ctx.settle(conn)
    ctx.observe("after_close", [{"body": bb, "redelivered": m.redelivered} for m, _, bb in b.items])


@scenario("single active consumer: validation and equivalence", tags=EXT + ("sac", "errors"))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    q = ctx.queue()
    ctx.attempt("string", conn.channel().queue_declare, ctx.queue("s"),
                arguments={"x-single-active-consumer": "yes"})
    conn.channel().queue_declare(q, arguments={"x-single-active-consumer": True})
    ctx.attempt("redeclare_false", conn.channel().queue_declare, q,
                arguments={"x-single-active-consumer": False})
    ctx.attempt("redeclare_missing", conn.channel().queue_declare, q)
    ctx.attempt("exclusive_consume", conn.channel().basic_consume, q, lambda *a: None,
                exclusive=True)
