"""RabbitMQ extensions: direct reply-to, queue types (classic/quorum/stream),
connection.update-secret, consumer timeout."""

from __future__ import annotations

import pika
from pamqp import commands as C

from ..harness import Context, Inbox, delivery, scenario
from ._util import raw_open, raw_until

REPLY_TO = "amq.rabbitmq.reply-to"


# ---------------------------------------------------------------------------------------------
# Direct reply-to
# ---------------------------------------------------------------------------------------------

@scenario("direct reply-to: RPC round trip", tags=("ext", "reply-to"))
def _(ctx: Context) -> None:
    client = ctx.connection()
    server = ctx.connection()
    cch, sch = client.channel(), server.channel()
    rpcq = ctx.queue("rpc")
    sch.queue_declare(rpcq)
    replies = Inbox()
    ctx.attempt("consume_reply_to", cch.basic_consume, REPLY_TO, replies, auto_ack=True)
    ctx.attempt("publish_request", cch.basic_publish, "", rpcq, b"request",
                pika.BasicProperties(reply_to=REPLY_TO, correlation_id="c1"))
    req = ctx.poll_get(sch, rpcq, auto_ack=True)
    if req is None:
        ctx.observe("request", None)
        return
    m, p, b = req
    ctx.observe("request", {"body": b, "reply_to": p.reply_to,
                            "reply_to_shape": (p.reply_to or "").startswith(REPLY_TO + ".")})
    sch.basic_publish("", p.reply_to, b"response", pika.BasicProperties(correlation_id="c1"))
    ctx.wait_until(lambda: len(replies) >= 1, client, server)
    ctx.observe("replies", replies.summary("exchange", "rk", "props"))
    # a reply to a reply-to name whose consumer is gone is dropped (mandatory: returned?)
    cch.close()
    returned = Inbox()
    sch.add_on_return_callback(returned)
    sch.basic_publish("", p.reply_to, b"late", mandatory=True)
    ctx.sync(sch)
    ctx.settle(server)
    ctx.observe("late_reply_returned", returned.summary("reply"))
    ctx.observe("server_channel_open", sch.is_open)


@scenario("direct reply-to: misuse", tags=("ext", "reply-to", "errors"))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    q = ctx.queue()
    conn.channel().queue_declare(q)
    ctx.attempt("consume_with_ack", conn.channel().basic_consume, REPLY_TO, lambda *a: None)
    ch = conn.channel()

    def publish_without_consumer():
        ch.basic_publish("", q, b"m", pika.BasicProperties(reply_to=REPLY_TO))
        ctx.sync(ch)
        return "accepted"
    ctx.attempt("publish_without_consumer", publish_without_consumer)
    ctx.attempt("passive_declare", conn.channel().queue_declare, REPLY_TO, passive=True)
    ctx.attempt("declare", conn.channel().queue_declare, REPLY_TO)
    ch = conn.channel()
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ctx.attempt("consume_twice", ch.basic_consume, REPLY_TO, lambda *a: None, auto_ack=True)
    ch = conn.channel()

    def bogus_reply():
        ch.basic_publish("", REPLY_TO + ".bogus", b"m")
        ctx.sync(ch)
        return "accepted"
    ctx.attempt("publish_to_bogus_reply_name", bogus_reply)


# ---------------------------------------------------------------------------------------------
# Queue types
# ---------------------------------------------------------------------------------------------

@scenario("x-queue-type: quorum declaration rules", tags=("ext", "quorum"))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    qq = {"x-queue-type": "quorum"}
    cases = {
        "durable": dict(durable=True, arguments=qq),
        "non_durable": dict(arguments=qq),
        "exclusive": dict(durable=True, exclusive=True, arguments=qq),
        "auto_delete": dict(durable=True, auto_delete=True, arguments=qq),
        "with_max_priority": dict(durable=True, arguments={**qq, "x-max-priority": 5}),
        "with_delivery_limit": dict(durable=True, arguments={**qq, "x-delivery-limit": 3}),
        "reject_publish_dlx": dict(durable=True, arguments={**qq, "x-overflow": "reject-publish-dlx"}),
        "classic_durable": dict(durable=True, arguments={"x-queue-type": "classic"}),
    }
    for key, kw in cases.items():
        ch = conn.channel()
        ctx.attempt(key, ch.queue_declare, ctx.queue(key), **kw)
        if not conn.is_open:
            conn = ctx.connection()
    name = ctx.queue("durable")
    ctx.attempt("redeclare_as_classic", conn.channel().queue_declare, name, durable=True,
                arguments={"x-queue-type": "classic"})
    ctx.attempt("redeclare_without_type", conn.channel().queue_declare, name, durable=True)
    ctx.attempt("passive", conn.channel().queue_declare, name, passive=True)


@scenario("x-queue-type: quorum delivery limit and x-delivery-count", tags=("ext", "quorum"))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 2})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"poison")
    seen = []
    for _ in range(5):
        got = ctx.poll_get(ch, q, auto_ack=False, timeout=2)
        if got is None:
            break
        m, p, b = got
        seen.append({"body": b, "redelivered": m.redelivered,
                     "x-delivery-count": (p.headers or {}).get("x-delivery-count")})
        ch.basic_reject(m.delivery_tag, requeue=True)
    ctx.observe("deliveries", seen)
    ctx.observe("count", ctx.queue_count(ch, q))


@scenario("x-queue-type: quorum basics (get, consume, requeue)", tags=("ext", "quorum"))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i, pika.BasicProperties(headers={"i": i}))
    m, p, b = ch.basic_get(q)
    ctx.observe("get", delivery(m, p, b, "count", "headers"))
    ch.basic_nack(m.delivery_tag, requeue=True)
    a = Inbox("headers")
    ch.basic_qos(prefetch_count=10)
    ch.basic_consume(q, a, auto_ack=True)
    ctx.wait_until(lambda: len(a) >= 3, conn)
    ctx.observe("consumed", a.summary())


@scenario("x-queue-type: stream", tags=("ext", "stream"))
def _(ctx: Context) -> None:
    """What RabbitMQ 3.10 does with a stream queue over AMQP 0-9-1 (each step on its own
    connection: some refusals are connection errors)."""
    q = ctx.queue()
    sq = {"x-queue-type": "stream"}

    def chan():
        return ctx.connection().channel()
    ctx.attempt("non_durable", chan().queue_declare, ctx.queue("nd"), arguments=sq)
    ctx.attempt("exclusive", chan().queue_declare, ctx.queue("ex"), durable=True, exclusive=True,
                arguments=sq)
    ctx.attempt("durable", chan().queue_declare, q, durable=True, arguments=sq)
    ch = chan()
    ch.confirm_delivery()
    ctx.attempt("publish", ch.basic_publish, "", q, b"s1")
    ctx.attempt("get", chan().basic_get, q)
    ctx.attempt("consume_no_qos", chan().basic_consume, q, lambda *a: None)
    ch = chan()
    ch.basic_qos(prefetch_count=10)
    ctx.attempt("consume_auto_ack", ch.basic_consume, q, lambda *a: None, auto_ack=True)
    ch = chan()
    ch.basic_qos(prefetch_count=10)
    a = Inbox("headers")
    ctx.attempt("consume_first", ch.basic_consume, q, a, arguments={"x-stream-offset": "first"})
    ctx.wait_until(lambda: len(a) >= 1, ch.connection, timeout=3)
    ctx.observe("consumed", [{"body": b, "offset_header": "x-stream-offset" in (p.headers or {})}
                             for _, p, b in a.items])
    ctx.attempt("purge", chan().queue_purge, q)


# ---------------------------------------------------------------------------------------------
# connection.update-secret, consumer timeout
# ---------------------------------------------------------------------------------------------

@scenario("connection.update-secret", tags=("ext", "update-secret"))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ctx.attempt("update_same_secret", conn.update_secret, "guest", "rotation")
    ctx.observe("open_after", conn.is_open)
    if conn.is_open:
        ctx.attempt("channel_after", lambda: conn.channel().queue_declare(ctx.queue(), exclusive=True))
    conn2 = ctx.connection()
    ctx.attempt("update_wrong_secret", conn2.update_secret, "not-the-password", "rotation")
    ctx.observe("open_after_wrong", conn2.is_open)
    r = raw_open(ctx)
    r.send_frame(0, C.Connection.UpdateSecret(new_secret="guest", reason="raw"))
    ctx.observe("raw", raw_until(r, stop=("connection.updatesecretok",)))


@scenario("consumer timeout: x-consumer-timeout argument", tags=("ext", "consumer-timeout"))
def _(ctx: Context) -> None:
    """RabbitMQ 3.10 has only the global consumer_timeout (default 30 min, checked about once a
    minute); the per-queue x-consumer-timeout argument arrived in 3.12. Core part recorded: the
    argument is accepted, and an unacked delivery stays unacked for a few seconds."""
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ctx.attempt("declare", ch.queue_declare, q, arguments={"x-consumer-timeout": 1000})
    ch.basic_publish("", q, b"slow")
    a = Inbox()
    ch.basic_consume(q, a)
    ctx.wait_until(lambda: len(a) >= 1, conn)
    ctx.settle(conn, seconds=3.0)
    ctx.observe("channel_open_after_3s", ch.is_open)
    ctx.attempt("ack_late", lambda: (ch.basic_ack(a.tags()[0]), ctx.sync(ch))[1])
    ctx.observe("count", ctx.queue_count(conn.channel(), q))
