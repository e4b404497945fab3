"""Core: consumers, qos, acknowledgements, redelivery order and flags, requeue on close."""

from __future__ import annotations

from typing import Any

from ..harness import Context, Inbox, delivery, publish_n, scenario

CORE = ("core", "consume")


def _setup(ctx: Context, n: int = 0, logical: str = "q", **declare: Any):
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue(logical)
    ch.queue_declare(q, **declare)
    if n:
        publish_n(ch, "", q, n)
        ctx.wait_count(ch, q, n)
    return conn, ch, q


@scenario("qos per-consumer (global=false)", tags=CORE + ("qos",))
def _(ctx: Context) -> None:
    """prefetch_count=2 applies to each consumer on the channel separately."""
    conn, ch, q = _setup(ctx, 6)
    ctx.attempt("qos", ch.basic_qos, prefetch_count=2)
    a, b = Inbox(), Inbox()
    ch.basic_consume(q, a)
    ch.basic_consume(q, b)
    ctx.wait_until(lambda: len(a) + len(b) >= 4, conn)
    ctx.settle(conn)
    ctx.observe("delivered", {"a": len(a), "b": len(b)})
    ctx.observe("ready_left", ctx.queue_count(conn.channel(), q))
    ch.basic_ack(a.tags()[0])
    ctx.wait_until(lambda: len(a) + len(b) >= 5, conn)
    ctx.settle(conn)
    ctx.observe("after_one_ack", {"a": len(a), "b": len(b)})


@scenario("qos global=true (shared by the channel)", tags=CORE + ("qos",))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 6)
    ctx.attempt("qos", ch.basic_qos, prefetch_count=3, global_qos=True)
    a, b = Inbox(), Inbox()
    ch.basic_consume(q, a)
    ch.basic_consume(q, b)
    ctx.wait_until(lambda: len(a) + len(b) >= 3, conn)
    ctx.settle(conn)
    ctx.observe("delivered_total", len(a) + len(b))
    ctx.observe("ready_left", ctx.queue_count(conn.channel(), q))


@scenario("qos global and per-consumer combined", tags=CORE + ("qos",))
def _(ctx: Context) -> None:
    """global=true 3 and global=false 2, in both orders. Per-consumer then global: each consumer
    at most 2, the channel at most 3. RabbitMQ 3.10: a global=false qos *after* a global one
    lifts the channel-wide limit (rabbit_limiter:unlimit_prefetch in basic.qos global=false)."""
    for key, order in (("global_then_per_consumer", (True, False)),
                       ("per_consumer_then_global", (False, True))):
        conn, ch, q = _setup(ctx, 8, logical=key)
        for g in order:
            ch.basic_qos(prefetch_count=3 if g else 2, global_qos=g)
        a, b = Inbox(), Inbox()
        ch.basic_consume(q, a)
        ctx.wait_until(lambda: len(a) >= 2, conn)
        ctx.settle(conn)
        ch.basic_consume(q, b)
        ctx.wait_until(lambda: len(a) + len(b) >= 3, conn)
        ctx.settle(conn)
        ctx.observe(key, {"a": len(a), "b": len(b)})


@scenario("qos changed after consume", tags=CORE + ("qos",))
def _(ctx: Context) -> None:
    """A per-consumer prefetch applies to consumers created after it."""
    conn, ch, q = _setup(ctx, 6)
    ch.basic_qos(prefetch_count=1)
    a = Inbox()
    ch.basic_consume(q, a)
    ctx.wait_until(lambda: len(a) >= 1, conn)
    ch.basic_qos(prefetch_count=3)
    ctx.settle(conn)
    ctx.observe("a_after_raise", len(a))
    b = Inbox()
    ch.basic_consume(q, b)
    ctx.wait_until(lambda: len(b) >= 3, conn)
    ctx.settle(conn)
    ctx.observe("b", len(b))
    ch.basic_ack(a.tags()[0])
    ctx.wait_until(lambda: len(a) >= 2, conn)
    ctx.settle(conn)
    ctx.observe("a_after_ack", len(a))


@scenario("qos prefetch with basic.get and unlimited", tags=CORE + ("qos",))
def _(ctx: Context) -> None:
    """basic.get ignores the prefetch limit; prefetch_count=0 is unlimited."""
    conn, ch, q = _setup(ctx, 5)
    ch.basic_qos(prefetch_count=1, global_qos=True)
    got = [ch.basic_get(q)[2] for _ in range(3)]
    ctx.observe("gets", got)
    c2 = conn.channel()
    c2.basic_qos(prefetch_count=0)
    a = Inbox()
    c2.basic_consume(q, a)
    ctx.wait_until(lambda: len(a) >= 2, conn)
    ctx.settle(conn)
    ctx.observe("unlimited", a.bodies())


@scenario("prefetch 1 round robin and ack order", tags=CORE + ("qos",))
def _(ctx: Context) -> None:
    """Two consumers on separate channels with prefetch 1, acking as they go."""
    conn, ch, q = _setup(ctx)
    seen: list = []
    chans = []
    for name in ("a", "b"):
        c = conn.channel()
        c.basic_qos(prefetch_count=1)

        def cb(chan, method, props, body, name=name):
            seen.append((name, body))
            chan.basic_ack(method.delivery_tag)
        c.basic_consume(q, cb)
        chans.append(c)
    publish_n(ch, "", q, 6)
    ctx.wait_until(lambda: len(seen) >= 6, conn)
    ctx.observe("bodies_in_order", sorted(b for _, b in seen) == [f"m{i}".encode() for i in range(1, 7)])
    # (how many each gets depends on ack timing; that both take part does not)
    ctx.observe("both_consumed", {n: any(x == n for x, _ in seen) for n in ("a", "b")})


@scenario("ack multiple and tag 0", tags=CORE + ("ack",))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 6)
    a = Inbox("tag")
    ch.basic_consume(q, a)
    ctx.wait_until(lambda: len(a) >= 6, conn)
    ctx.observe("tags", a.tags())
    ch.basic_ack(3, multiple=True)
    ch.basic_ack(5)
    ctx.sync(ch)
    ch2 = conn.channel()
    ctx.observe("counts_after_partial", ch2.queue_declare(q, passive=True))
    ch.basic_ack(0, multiple=True)
    ctx.sync(ch)
    ch.close()
    ctx.observe("after_close_all_acked", ctx.queue_count(conn.channel(), q))


@scenario("delivery tags shared by consumers on a channel", tags=CORE + ("ack",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q1, q2 = ctx.queue("q1"), ctx.queue("q2")
    ch.queue_declare(q1)
    ch.queue_declare(q2)
    a, b = Inbox(), Inbox()
    ch.basic_consume(q1, a)
    ch.basic_consume(q2, b)
    ch.basic_publish("", q1, b"1")
    ctx.wait_until(lambda: len(a) >= 1, conn)
    ch.basic_publish("", q2, b"2")
    ctx.wait_until(lambda: len(b) >= 1, conn)
    ch.basic_publish("", q1, b"3")
    ctx.wait_until(lambda: len(a) >= 2, conn)
    ctx.observe("a_tags", a.tags())
    ctx.observe("b_tags", b.tags())
    ch.basic_publish("", q2, b"4")
    ctx.wait_until(lambda: len(b) >= 2, conn)
    ctx.observe("b_tags_after", b.tags())


@scenario("nack requeue with consumer active: redelivered in place", tags=CORE + ("ack", "redelivery"))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 5)
    ch.basic_qos(prefetch_count=5)
    a = Inbox()
    ch.basic_consume(q, a)
    ctx.wait_until(lambda: len(a) >= 5, conn)
    ch.basic_nack(a.tags()[2], requeue=True)
    ctx.wait_until(lambda: len(a) >= 6, conn)
    ctx.settle(conn)
    ctx.observe("sequence", a.summary())


@scenario("requeue order after cancel: nack 2 and 4, then a new consumer", tags=CORE + ("ack", "redelivery"))
def _(ctx: Context) -> None:
    """Requeued messages go back to their original positions, ahead of newer ones."""
    conn, ch, q = _setup(ctx, 5)
    ch.basic_qos(prefetch_count=3)
    a = Inbox()
    tag = ch.basic_consume(q, a)
    ctx.wait_until(lambda: len(a) >= 3, conn)
    ctx.settle(conn)
    ch.basic_cancel(tag)
    ch.basic_nack(a.tags()[2], requeue=True)   # m3
    ch.basic_ack(a.tags()[0])                  # m1
    ch.basic_reject(a.tags()[1], requeue=True)  # m2
    ctx.sync(ch)
    publish_n(ch, "", q, 2, start=6)
    ctx.wait_count(ch, q, 6)
    b = Inbox()
    conn.channel().basic_consume(q, b, auto_ack=True)
    ctx.wait_until(lambda: len(b) >= 6, conn)
    ctx.observe("b_sees", b.summary())


@scenario("nack multiple requeue and requeue=false", tags=CORE + ("ack", "redelivery"))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 6)
    got = [ch.basic_get(q) for _ in range(6)]
    ch.basic_nack(got[2][0].delivery_tag, multiple=True, requeue=True)    # m1..m3 back
    ch.basic_nack(got[4][0].delivery_tag, multiple=True, requeue=False)   # m4, m5 dropped
    ch.basic_reject(got[5][0].delivery_tag, requeue=False)               # m6 dropped
    ctx.sync(ch)
    ctx.observe("count", ch.queue_declare(q, passive=True))
    ctx.observe("left", [delivery(*ch.basic_get(q, auto_ack=True)) for _ in range(4)])


@scenario("basic.recover requeue=true", tags=CORE + ("ack", "redelivery"))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 5)
    a = Inbox("tag")
    ch.basic_consume(q, a)
    ctx.wait_until(lambda: len(a) >= 5, conn)
    ch.basic_ack(a.tags()[1])
    ch.basic_ack(a.tags()[3])
    ctx.attempt("recover", ch.basic_recover, requeue=True)
    ctx.wait_until(lambda: len(a) >= 8, conn)
    ctx.settle(conn)
    ctx.observe("sequence", a.summary())


@scenario("basic.get fields, get-empty and redelivered", tags=CORE + ("get",))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 3)
    m, p, b = ch.basic_get(q)
    ctx.observe("first", delivery(m, p, b, "tag", "rk", "exchange", "count"))
    ch.basic_reject(m.delivery_tag, requeue=True)
    ctx.sync(ch)
    m, p, b = ch.basic_get(q, auto_ack=True)
    ctx.observe("after_requeue", delivery(m, p, b, "tag", "rk", "exchange", "count"))
    ch.basic_get(q, auto_ack=True)
    m, p, b = ch.basic_get(q, auto_ack=True)
    ctx.observe("last", delivery(m, p, b, "tag", "count"))
    from ._util import raw_open
    from pamqp import commands as C
    r = raw_open(ctx)
    ctx.observe("get_empty", r.call(1, C.Basic.Get(queue=q)))


@scenario("unacked messages requeued on channel close", tags=CORE + ("redelivery",))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 4)
    c1 = conn.channel()
    a = Inbox()
    c1.basic_consume(q, a)
    ctx.wait_until(lambda: len(a) >= 4, conn)
    c1.basic_ack(a.tags()[1])
    c1.close()
    ctx.observe("count_after_close", ctx.wait_count(ch, q, 3))
    ctx.observe("redelivered", [delivery(*ch.basic_get(q, auto_ack=True)) for _ in range(3)])


@scenario("unacked messages requeued on connection close", tags=CORE + ("redelivery",))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 4)
    other = ctx.connection()
    c1 = other.channel()
    got = [c1.basic_get(q) for _ in range(3)]
    c1.basic_ack(got[0][0].delivery_tag)
    other.close()
    ctx.observe("count_after_close", ctx.wait_count(ch, q, 3))
    ctx.observe("then", [delivery(*ch.basic_get(q, auto_ack=True)) for _ in range(3)])


@scenario("basic.cancel keeps unacked messages with the channel", tags=CORE + ("redelivery",))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 3)
    a = Inbox()
    tag = ch.basic_consume(q, a)
    ctx.wait_until(lambda: len(a) >= 3, conn)
    ctx.attempt("cancel", ch.basic_cancel, tag)
    ctx.observe("after_cancel", conn.channel().queue_declare(q, passive=True))
    ch.basic_ack(a.tags()[0])
    ctx.sync(ch)
    ch.close()
    ctx.observe("after_close", conn.channel().queue_declare(q, passive=True))


@scenario("basic.cancel of an unknown tag", tags=CORE)
def _(ctx: Context) -> None:
    from ._util import raw_open
    from pamqp import commands as C
    r = raw_open(ctx)
    ctx.observe("cancel", r.call(1, C.Basic.Cancel(consumer_tag="nope")))


@scenario("consumer cancel notification on queue delete", tags=CORE + ("lifecycle",))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx)
    cancelled: list = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method))
    tag = ch.basic_consume(q, lambda *a: None, consumer_tag=ctx.name("ctag"))
    ctx.observe("tag", tag)
    ctx.connection().channel().queue_delete(q)
    ctx.wait_until(lambda: cancelled, conn)
    ctx.observe("cancel", cancelled)
    ctx.observe("channel_open", ch.is_open)
    from ._util import raw_open, raw_until
    from pamqp import commands as C
    # raw, to see the method exactly
    q2 = ctx.queue("q2")
    conn.channel().queue_declare(q2)
    r = raw_open(ctx)
    r.call(1, C.Basic.Consume(queue=q2, consumer_tag="c1"))
    ctx.connection().channel().queue_delete(q2)
    ctx.observe("raw_cancel", raw_until(r, stop=("basic.cancel",)))


@scenario("consumer_count and message_count in declare-ok", tags=CORE + ("counts",))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 3)
    ctx.observe("no_consumers", ch.queue_declare(q, passive=True))
    ch.basic_qos(prefetch_count=1)
    a = Inbox()
    ch.basic_consume(q, a)
    ctx.wait_until(lambda: len(a) >= 1, conn)
    conn.channel().basic_consume(q, lambda *x: None)
    ctx.wait_count(ch, q, 0)
    ctx.settle(conn)
    ctx.observe("two_consumers", conn.channel().queue_declare(q, passive=True))


@scenario("message counts in get-ok, purge-ok, delete-ok", tags=CORE + ("counts",))
def _(ctx: Context) -> None:
    conn, ch, q = _setup(ctx, 5)
    ctx.observe("get_ok_count", ch.basic_get(q)[0].message_count)
    ctx.observe("purge_ok", ch.queue_purge(q))
    publish_n(ch, "", q, 3)
    ctx.wait_count(ch, q, 3)
    ctx.observe("delete_ok", ch.queue_delete(q))
