"""RabbitMQ extensions: x-message-ttl, per-message expiration, x-expires."""

from __future__ import annotations

import pika

from ..harness import Context, Inbox, delivery, scenario

EXT = ("ext", "ttl")


@scenario("x-message-ttl: messages expire", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q, keep = ctx.queue("q"), ctx.queue("keep")
    ctx.attempt("declare", ch.queue_declare, q, arguments={"x-message-ttl": 200})
    ch.queue_declare(keep, arguments={"x-message-ttl": 600000})
    ch.confirm_delivery()      # publishes have reached the queue before we count
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i)
        ch.basic_publish("", keep, b"k%d" % i)
    ctx.observe("count_eventually", ctx.wait_count(ch, q, 0))
    ctx.observe("get_after", ch.basic_get(q)[0] is None)
    ctx.observe("long_ttl_count", ctx.queue_count(ch, keep))
    m, p, b = ch.basic_get(keep, auto_ack=True)
    ctx.observe("long_ttl_props", delivery(m, p, b, "props"))


@scenario("x-message-ttl=0: only to a waiting consumer", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q, arguments={"x-message-ttl": 0})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"nobody-waiting")
    ctx.observe("no_consumer_count", ctx.wait_count(ch, q, 0))
    a = Inbox()
    ch.basic_consume(q, a, auto_ack=True)
    ch.basic_publish("", q, b"consumer-waiting")
    ctx.wait_until(lambda: len(a) >= 1, conn)
    ctx.settle(conn)
    ctx.observe("consumer_got", a.bodies())


@scenario("per-message expiration", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q, q2 = ctx.queue("q"), ctx.queue("q2")
    ch.queue_declare(q)
    ch.queue_declare(q2, arguments={"x-message-ttl": 600000})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="200"))
    ctx.observe("short_count", ctx.wait_count(ch, q, 0))
    ch.basic_publish("", q2, b"min-of-both", pika.BasicProperties(expiration="200"))
    ctx.observe("queue_ttl_longer_count", ctx.wait_count(ch, q2, 0))
    ch.basic_publish("", q, b"zero", pika.BasicProperties(expiration="0"))
    ch.basic_publish("", q, b"long", pika.BasicProperties(expiration="600000"))
    ctx.wait_count(ch, q, 1)
    m, p, b = ch.basic_get(q, auto_ack=True)
    ctx.observe("long_delivered", delivery(m, p, b, "props"))


@scenario("per-message expiration: invalid values", tags=EXT + ("errors",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    q = ctx.queue()
    conn.channel().queue_declare(q)
    for key, exp in (("letters", "abc"), ("negative", "-1"), ("float", "1.5"), ("empty", ""),
                     ("spaces", " 100")):
        ch = conn.channel()

        def pub():
            ch.basic_publish("", q, b"m", pika.BasicProperties(expiration=exp))
            ctx.sync(ch)
            return "accepted"
        ctx.attempt(key, pub)
        if not conn.is_open:
            conn = ctx.connection()
    ctx.observe("count", ctx.queue_count(conn.channel(), q))


@scenario("expiry happens at the head of the queue only", tags=EXT)
def _(ctx: Context) -> None:
    """A short-TTL message behind a long-TTL one is only dropped once it reaches the head."""
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"long", pika.BasicProperties(expiration="600000"))
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="100"))
    ctx.wait_count(ch, q, 2)
    ctx.settle(conn, seconds=0.5)  # past the short TTL: the short message must still be counted
    ctx.observe("count_after_short_ttl", ctx.queue_count(ch, q))
    ctx.observe("first", ch.basic_get(q, auto_ack=True)[2])
    ctx.observe("second", ch.basic_get(q, auto_ack=True)[2])


@scenario("x-expires: unused queue is deleted", tags=EXT + ("lifecycle",))
def _(ctx: Context) -> None:
    """Polled (by passive declare) less often than x-expires, an unused queue goes away; one
    with a consumer stays. Passive declares more frequent than x-expires renew the lease."""
    conn = ctx.connection()
    ch = conn.channel()
    q, busy, polled = ctx.queue("q"), ctx.queue("busy"), ctx.queue("polled")
    ctx.attempt("declare", ch.queue_declare, q, arguments={"x-expires": 200})
    ch.queue_declare(busy, arguments={"x-expires": 200})
    ch.basic_consume(busy, lambda *a: None)
    ch.queue_declare(polled, arguments={"x-expires": 1000})

    def exists(name):
        c = conn.channel()
        try:
            c.queue_declare(name, passive=True)
            c.close()
            return True
        except pika.exceptions.ChannelClosedByBroker:
            return False
    ctx.observe("unused_deleted", ctx.wait_until(lambda: not exists(q), poll=0.5))
    ctx.observe("with_consumer_survives", exists(busy))
    alive = all(exists(polled) for _ in range(8) if not ctx.settle(conn, seconds=0.25))
    ctx.observe("passive_declare_every_250ms_renews", alive)
