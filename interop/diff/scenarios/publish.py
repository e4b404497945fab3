"""Core: publisher confirms, transactions, mandatory returns, message properties round trip."""

from __future__ import annotations

import datetime
import decimal
import hashlib
from typing import Any

import pika
from pamqp import commands as C

from ..harness import Context, Inbox, delivery, props_dict, scenario
from ._util import raw_open, raw_ping, raw_publish, raw_until

CORE = ("core", "publish")


# ---------------------------------------------------------------------------------------------
# Confirms
# ---------------------------------------------------------------------------------------------

@scenario("confirms: ack per publish, routed and unroutable", tags=CORE + ("confirm",))
def _(ctx: Context) -> None:
    q = ctx.queue()
    ctx.connection().channel().queue_declare(q)
    r = raw_open(ctx)
    ctx.observe("select_ok", r.call(1, C.Confirm.Select()))
    raw_publish(r, 1, "", q, b"routed")
    ctx.observe("routed", raw_until(r, stop=("basic.ack", "basic.nack")))
    raw_publish(r, 1, "amq.direct", "nowhere", b"unroutable")
    ctx.observe("unroutable", raw_until(r, stop=("basic.ack", "basic.nack")))
    raw_publish(r, 1, "", q, b"persistent", props=C.Basic.Properties(delivery_mode=2))
    ctx.observe("persistent_to_transient_queue", raw_until(r, stop=("basic.ack", "basic.nack")))


@scenario("confirms: mandatory return comes before the ack", tags=CORE + ("confirm", "mandatory"))
def _(ctx: Context) -> None:
    q = ctx.queue()
    r = raw_open(ctx)
    r.call(1, C.Confirm.Select())
    raw_publish(r, 1, "", q, b"nobody", mandatory=True)
    ctx.observe("frames", raw_until(r, stop=("basic.ack", "basic.nack")))


@scenario("confirms: many publishes all acked", tags=CORE + ("confirm",))
def _(ctx: Context) -> None:
    """Acks may be coalesced (multiple=true); what matters is every tag is acked once."""
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    r = raw_open(ctx)
    r.call(1, C.Confirm.Select())
    n = 50
    for i in range(n):
        raw_publish(r, 1, "", q, b"m%d" % i)
    acked: set[int] = set()
    nacked: set[int] = set()
    dup = False
    frames = 0
    while len(acked | nacked) < n and frames < 200:
        f = r.recv_method(5)
        frames += 1
        if f.get("method") not in ("basic.ack", "basic.nack"):
            ctx.observe("unexpected", {k: v for k, v in f.items() if k != "_value"})
            break
        tag = f["delivery_tag"]
        tags = set(range(max(acked | nacked | {0}) + 1, tag + 1)) if f.get("multiple") else {tag}
        dup = dup or bool(tags & (acked | nacked))
        (acked if f["method"] == "basic.ack" else nacked).update(tags)
    ctx.observe("acked", sorted(acked) == list(range(1, n + 1)))
    ctx.observe("nacked", sorted(nacked))
    ctx.observe("duplicates", dup)
    ctx.observe("count", ctx.wait_count(ch, q, n))


@scenario("confirms: publish to missing exchange closes the channel, no ack", tags=CORE + ("confirm",))
def _(ctx: Context) -> None:
    x = ctx.exchange()
    r = raw_open(ctx)
    r.call(1, C.Confirm.Select())
    raw_publish(r, 1, x, "rk", b"m")
    ctx.observe("frames", raw_until(r, stop=("basic.ack", "basic.nack")))


@scenario("confirms: pika confirm_delivery with mandatory", tags=CORE + ("confirm", "mandatory"))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    ch.confirm_delivery()
    ctx.attempt("routed", ch.basic_publish, "", q, b"m", mandatory=True)
    ctx.attempt("unroutable_mandatory", ch.basic_publish, "", ctx.name("nope"), b"m", mandatory=True)
    ctx.attempt("unroutable_plain", ch.basic_publish, "", ctx.name("nope"), b"m")


# ---------------------------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------------------------

@scenario("tx: publish commit and rollback", tags=CORE + ("tx",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    ctx.attempt("select", ch.tx_select)
    ch.basic_publish("", q, b"rolled-back")
    ctx.observe("count_before_rollback", ctx.queue_count(conn.channel(), q))
    ctx.attempt("rollback", ch.tx_rollback)
    ctx.observe("count_after_rollback", ctx.queue_count(conn.channel(), q))
    ch.basic_publish("", q, b"c1")
    ch.basic_publish("", q, b"c2")
    ctx.attempt("commit", ch.tx_commit)
    ctx.observe("count_after_commit", ctx.queue_count(conn.channel(), q))
    ctx.attempt("empty_commit", ch.tx_commit)
    ctx.observe("bodies", [ch.basic_get(q, auto_ack=True)[2] for _ in range(2)])


@scenario("tx: acks are transactional too", tags=CORE + ("tx",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    for b in (b"a", b"b", b"c"):
        ch.basic_publish("", q, b)
    ctx.wait_count(ch, q, 3)
    ch.tx_select()
    got = [ch.basic_get(q) for _ in range(3)]
    ch.basic_ack(got[0][0].delivery_tag)
    ch.tx_rollback()
    ch.basic_ack(got[1][0].delivery_tag)
    ch.basic_reject(got[2][0].delivery_tag, requeue=True)
    ch.tx_commit()
    ctx.observe("ready_after_commit", ctx.queue_count(conn.channel(), q))
    ch.close()
    c2 = conn.channel()
    ctx.observe("after_close", [delivery(*c2.basic_get(q, auto_ack=True)) for _ in range(2)])
    ctx.observe("then_empty", c2.basic_get(q)[0] is None)


@scenario("tx: mandatory return at commit", tags=CORE + ("tx", "mandatory"))
def _(ctx: Context) -> None:
    r = raw_open(ctx)
    r.call(1, C.Tx.Select())
    raw_publish(r, 1, "amq.direct", "nowhere", b"m", mandatory=True)
    ctx.observe("before_commit", raw_ping(r, timeout=1))
    r.send_frame(1, C.Tx.Commit())
    ctx.observe("commit", raw_until(r, stop=("tx.commitok",)))


# ---------------------------------------------------------------------------------------------
# Mandatory
# ---------------------------------------------------------------------------------------------

@scenario("mandatory returns: NO_ROUTE", tags=CORE + ("mandatory",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    x = ctx.exchange()
    ch.exchange_declare(x, "fanout")
    q = ctx.queue()
    returned = Inbox()
    ch.add_on_return_callback(returned)
    props = pika.BasicProperties(content_type="text/plain", headers={"h": "v"}, message_id="id1")
    ch.basic_publish("amq.direct", "nowhere", b"r1", props, mandatory=True)
    ch.basic_publish("", q, b"r2", mandatory=True)
    ch.basic_publish(x, "any", b"r3", mandatory=True)
    ch.basic_publish("amq.direct", "nowhere", b"dropped")          # not mandatory: silent
    ctx.sync(ch)
    ctx.wait_until(lambda: len(returned) >= 3, conn)
    ctx.settle(conn)
    ctx.observe("returns", returned.summary("reply", "exchange", "rk", "props"))
    ch.queue_declare(q)
    ch.basic_publish("", q, b"routed", mandatory=True)
    ctx.sync(ch)
    ctx.settle(conn)
    ctx.observe("routed_not_returned", len(returned))
    ctx.observe("channel_open", ch.is_open)


@scenario("mandatory returns: raw frames", tags=CORE + ("mandatory",))
def _(ctx: Context) -> None:
    r = raw_open(ctx)
    raw_publish(r, 1, "amq.direct", "nowhere", b"body", mandatory=True,
                props=C.Basic.Properties(content_type="application/json", delivery_mode=2))
    ctx.observe("frames", raw_until(r, stop=(), timeout=1)[:3])


# ---------------------------------------------------------------------------------------------
# Properties and bodies
# ---------------------------------------------------------------------------------------------

def typed(v: Any) -> Any:
    """A header value with its decoded type, so a type change shows as a difference."""
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": v}
    if isinstance(v, float):
        return {"float": repr(v)}
    if isinstance(v, decimal.Decimal):
        return {"decimal": str(v)}
    if isinstance(v, datetime.datetime):
        return {"timestamp": v.replace(tzinfo=None).isoformat()}
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, str):
        return {"str": v}
    if v is None:
        return {"void": None}
    if isinstance(v, dict):
        return {"table": {k: typed(x) for k, x in v.items()}}
    if isinstance(v, list):
        return {"array": [typed(x) for x in v]}
    return {type(v).__name__: repr(v)}


HEADERS = {
    "str": "héllo wörld",
    "empty": "",
    "int": 42,
    "negative": -7,
    "big": 2 ** 40,
    "true": True,
    "false": False,
    "decimal": decimal.Decimal("3.14"),
    "time": datetime.datetime(2020, 1, 2, 3, 4, 5),
    "bytes": b"\x00\x01\xff",
    "void": None,
    "table": {"nested": "yes", "n": 1, "deeper": {"x": [1, "two"]}},
    "array": [1, "two", True, {"k": "v"}, [3]],
}


@scenario("properties and headers round trip", tags=CORE + ("properties",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", headers=HEADERS,
        delivery_mode=2, priority=5, correlation_id="corr-1", reply_to="reply-q",
        expiration="600000", message_id="msg-1", timestamp=1700000000, type="kind",
        user_id=ctx.alias(ctx.user, "<user>"), app_id="diff", cluster_id="cluster")
    ch.basic_publish("", q, b"body", props)
    a = Inbox()
    ch.basic_consume(q, a, auto_ack=True)
    ctx.wait_until(lambda: len(a) >= 1, conn)
    m, p, b = a.items[0]
    got = props_dict(p)
    got["headers"] = typed(got.get("headers"))
    ctx.observe("delivered_props", got)
    ctx.observe("delivery", delivery(m, p, b, "rk", "exchange"))


@scenario("properties: none set, and raw presence flags", tags=CORE + ("properties",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    r = raw_open(ctx)
    raw_publish(r, 1, "", q, b"plain")
    raw_publish(r, 1, "", q, b"", props=C.Basic.Properties(headers={}))
    raw_publish(r, 1, "", q, b"", props=C.Basic.Properties(delivery_mode=1, priority=0))
    raw_ping(r)
    r.send_frame(1, C.Basic.Consume(queue=q, no_ack=True, consumer_tag="c"))
    frames = [f for f in raw_until(r, stop=(), timeout=1) if f != "timeout"]
    ctx.observe("frames", frames)


@scenario("bodies: empty, binary, multi-frame", tags=CORE + ("properties",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    bodies = [b"", bytes(range(256)), b"x" * 131072, bytes(i % 251 for i in range(1_000_003))]
    for b in bodies:
        ch.basic_publish("", q, b)
    a = Inbox()
    ch.basic_consume(q, a, auto_ack=True)
    ctx.wait_until(lambda: len(a) >= len(bodies), conn, timeout=20)
    ctx.observe("received", [{"len": len(b), "sha1": hashlib.sha1(b).hexdigest()[:12]}
                             for b in a.bodies()])
    ctx.observe("intact", a.bodies() == bodies)
