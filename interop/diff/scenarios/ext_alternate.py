"""RabbitMQ extension: alternate exchanges (the ``alternate-exchange`` exchange argument)."""

from __future__ import annotations

from ..harness import Context, Inbox, scenario
from .routing import _drain_all

EXT = ("ext", "alternate-exchange")


@scenario("alternate-exchange: unroutable messages go to the AE", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    x, ae = ctx.exchange("x"), ctx.exchange("ae")
    q, aeq = ctx.queue("q"), ctx.queue("aeq")
    ch.exchange_declare(ae, "fanout")
    ctx.attempt("declare_x", ch.exchange_declare, x, "direct", arguments={"alternate-exchange": ae})
    ch.queue_declare(q)
    ch.queue_declare(aeq)
    ch.queue_bind(q, x, "k")
    ch.queue_bind(aeq, ae, "")
    returned = Inbox()
    ch.add_on_return_callback(returned)
    ch.basic_publish(x, "k", b"routed")
    ch.basic_publish(x, "other", b"to-ae")
    ch.basic_publish(x, "other", b"to-ae-mandatory", mandatory=True)
    ctx.sync(ch)
    ctx.settle(conn)
    ctx.observe("returns", returned.summary("reply"))
    got = {}
    for alias, name in (("q", q), ("aeq", aeq)):
        ctx.wait_count(ch, name, 1 if alias == "q" else 2)
        msgs = []
        while True:
            m, p, b = ch.basic_get(name, auto_ack=True)
            if m is None:
                break
            msgs.append({"body": b, "exchange": m.exchange, "rk": m.routing_key})
        got[alias] = msgs
    ctx.observe("queues", got)


@scenario("alternate-exchange: missing AE, chains and cycles", tags=EXT)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    x_missing, x1, x2 = ctx.exchange("x_missing"), ctx.exchange("x1"), ctx.exchange("x2")
    nowhere = ctx.name("nowhere")
    q = ctx.queue("q")
    ch.queue_declare(q)
    ch.exchange_declare(x_missing, "direct", arguments={"alternate-exchange": nowhere})
    ch.exchange_declare(x1, "direct", arguments={"alternate-exchange": x2})
    ch.exchange_declare(x2, "direct", arguments={"alternate-exchange": x1})
    ch.queue_bind(q, x2, "k2")
    returned = Inbox()
    ch.add_on_return_callback(returned)
    ch.basic_publish(x_missing, "k", b"missing-ae", mandatory=True)
    ch.basic_publish(x1, "k2", b"via-x2", mandatory=True)
    ch.basic_publish(x1, "zz", b"cycle", mandatory=True)
    ctx.sync(ch)
    ctx.wait_until(lambda: len(returned) >= 2, conn, timeout=2)
    ctx.settle(conn)
    ctx.observe("returns", returned.summary("reply", "exchange", "rk"))
    ctx.wait_count(ch, q, 1, timeout=2)
    ctx.observe("q", _drain_all(ctx, ch, {"q": q}))
    ctx.observe("channel_open", ch.is_open)


@scenario("alternate-exchange: internal AE, confirms, headers unchanged", tags=EXT)
def _(ctx: Context) -> None:
    import pika
    conn = ctx.connection()
    ch = conn.channel()
    x, ae = ctx.exchange("x"), ctx.exchange("ae")
    aeq = ctx.queue("aeq")
    ch.exchange_declare(ae, "topic", internal=True)
    ch.exchange_declare(x, "fanout", arguments={"alternate-exchange": ae})
    ch.queue_declare(aeq)
    ch.queue_bind(aeq, ae, "a.*")
    ch.confirm_delivery()
    ctx.attempt("publish_confirmed", ch.basic_publish, x, "a.b", b"m",
                pika.BasicProperties(headers={"h": "v"}), mandatory=True)
    ctx.attempt("publish_unroutable_in_ae", ch.basic_publish, x, "zz", b"m2", mandatory=True)
    m = ctx.poll_get(ch, aeq)
    ctx.observe("aeq", {"body": m[2], "exchange": m[0].exchange, "rk": m[0].routing_key,
                        "headers": m[1].headers} if m else None)
