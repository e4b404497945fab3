"""RabbitMQ extensions: x-max-length, x-max-length-bytes and x-overflow."""

from __future__ import annotations

from pamqp import commands as C

from ..harness import Context, publish_n, scenario
from ._util import raw_open, raw_publish, raw_until
from .ext_dlx import dead

EXT = ("ext", "max-length")


def _bodies(ch, q) -> list:
    out = []
    while True:
        m, _, b = ch.basic_get(q, auto_ack=True)
        if m is None:
            return out
        out.append(b)


@scenario("x-max-length drop-head", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ctx.attempt("declare", ch.queue_declare, q, arguments={"x-max-length": 3})
    ch.confirm_delivery()
    publish_n(ch, "", q, 5)
    ctx.observe("count", ctx.queue_count(ch, q))
    ctx.observe("left", _bodies(ch, q))


@scenario("x-max-length counts ready messages only", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q, arguments={"x-max-length": 2})
    ch.confirm_delivery()
    publish_n(ch, "", q, 2)
    held = [ch.basic_get(q) for _ in range(2)]
    publish_n(ch, "", q, 3, start=3)
    ctx.observe("count_with_unacked", ctx.queue_count(ch, q))
    ch.basic_nack(held[-1][0].delivery_tag, multiple=True, requeue=True)
    ctx.sync(ch)
    ctx.observe("after_requeue", ctx.queue_count(ch, q))
    ctx.observe("left", _bodies(ch, q))


@scenario("x-max-length=0 and x-max-length-bytes", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q0, qb = ctx.queue("zero"), ctx.queue("bytes")
    ch.queue_declare(q0, arguments={"x-max-length": 0})
    ch.queue_declare(qb, arguments={"x-max-length-bytes": 10})
    ch.confirm_delivery()
    publish_n(ch, "", q0, 2)
    ctx.observe("zero_count", ctx.queue_count(ch, q0))
    for body in (b"aaaa", b"bbbb", b"cccc", b"dddd"):
        ch.basic_publish("", qb, body)
    ctx.observe("bytes_count", ctx.queue_count(ch, qb))
    ch.basic_publish("", qb, b"0123456789X")   # bigger than the limit on its own
    ctx.observe("bytes_left", _bodies(ch, qb))


@scenario("x-overflow reject-publish: nack to a confirming publisher", tags=EXT)
def _(ctx: Context) -> None:
    q = ctx.queue()
    ctx.connection().channel().queue_declare(
        q, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    r = raw_open(ctx)
    r.call(1, C.Confirm.Select())
    frames = []
    for i in range(4):
        raw_publish(r, 1, "", q, b"m%d" % i)
        frames += raw_until(r, stop=("basic.ack", "basic.nack"))
    ctx.observe("confirms", frames)
    conn = ctx.connection()
    ch = conn.channel()
    ch.basic_publish("", q, b"unconfirmed")   # silently dropped
    ctx.sync(ch)
    ctx.observe("left", _bodies(ch, q))
    raw_publish(r, 1, "", q, b"after-drain")
    ctx.observe("after_drain", raw_until(r, stop=("basic.ack", "basic.nack")))


@scenario("x-overflow reject-publish with mandatory and multiple queues", tags=EXT)
def _(ctx: Context) -> None:
    """A message routed to a full queue and a non-full one: acked? delivered to the other?"""
    conn = ctx.connection()
    ch = conn.channel()
    full, free = ctx.queue("full"), ctx.queue("free")
    x = ctx.exchange()
    ch.exchange_declare(x, "fanout")
    ch.queue_declare(full, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.queue_declare(free)
    ch.queue_bind(full, x)
    ch.queue_bind(free, x)
    r = raw_open(ctx)
    r.call(1, C.Confirm.Select())
    frames = []
    for i in range(2):
        raw_publish(r, 1, x, "", b"f%d" % i, mandatory=True)
        frames += raw_until(r, stop=("basic.ack", "basic.nack"))
    ctx.observe("confirms", frames)
    ctx.observe("full", _bodies(ch, full))
    ctx.observe("free", _bodies(ch, free))


@scenario("x-overflow reject-publish-dlx", tags=EXT + ("dlx",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q, dlq = ctx.queue("q"), ctx.queue("dlq")
    ch.queue_declare(dlq)
    ctx.attempt("declare", ch.queue_declare, q, arguments={
        "x-max-length": 1, "x-overflow": "reject-publish-dlx",
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    r = raw_open(ctx)
    r.call(1, C.Confirm.Select())
    frames = []
    for i in range(2):
        raw_publish(r, 1, "", q, b"m%d" % i)
        frames += raw_until(r, stop=("basic.ack", "basic.nack"))
    ctx.observe("confirms", frames)
    ctx.observe("q", _bodies(ch, q))
    ctx.observe("dead", dead(ctx, ch, dlq, timeout=2))


@scenario("x-overflow with exclusive/durable variants and redeclare", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    for key, args in (("drop_head", {"x-overflow": "drop-head"}),
                      ("reject_publish", {"x-overflow": "reject-publish"}),
                      ("reject_publish_dlx", {"x-overflow": "reject-publish-dlx"}),
                      ("max_length_bytes_string", {"x-max-length-bytes": "10"})):
        ch = conn.channel()
        ctx.attempt(key, ch.queue_declare, ctx.queue(key), arguments=args)
