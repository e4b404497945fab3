"""Core: queue/exchange declaration, equivalence checks, argument validation, reserved names."""

from __future__ import annotations

from typing import Any

from ..harness import Context, scenario

CORE = ("core", "declare")


def _redeclare_queue(ctx: Context, logical: str, first: dict, second: dict, key: str) -> None:
    """Declare a queue with ``first``, redeclare with ``second`` on a fresh channel."""
    conn = ctx.connection()
    q = ctx.queue(logical)
    ch = conn.channel()
    ctx.attempt(f"{key}.first", ch.queue_declare, q, **first)
    ch2 = conn.channel()
    ctx.attempt(f"{key}.second", ch2.queue_declare, q, **second)


def _redeclare_exchange(ctx: Context, logical: str, first: dict, second: dict, key: str) -> None:
    conn = ctx.connection()
    x = ctx.exchange(logical)
    ch = conn.channel()
    ctx.attempt(f"{key}.first", ch.exchange_declare, x, **first)
    ch2 = conn.channel()
    ctx.attempt(f"{key}.second", ch2.exchange_declare, x, **second)


@scenario("queue.declare equivalence: durable", tags=CORE)
def _(ctx: Context) -> None:
    """Redeclaring with the other durable flag is 406 (both directions)."""
    _redeclare_queue(ctx, "q1", {}, {"durable": True}, "nondurable_then_durable")
    _redeclare_queue(ctx, "q2", {"durable": True}, {}, "durable_then_nondurable")


@scenario("queue.declare equivalence: auto_delete", tags=CORE)
def _(ctx: Context) -> None:
    _redeclare_queue(ctx, "q1", {}, {"auto_delete": True}, "plain_then_autodelete")
    _redeclare_queue(ctx, "q2", {"auto_delete": True}, {}, "autodelete_then_plain")


@scenario("queue.declare equivalence: exclusive (same connection)", tags=CORE)
def _(ctx: Context) -> None:
    _redeclare_queue(ctx, "q1", {"exclusive": True}, {}, "exclusive_then_plain")
    _redeclare_queue(ctx, "q2", {}, {"exclusive": True}, "plain_then_exclusive")


@scenario("queue.declare equivalence: validated arguments", tags=CORE)
def _(ctx: Context) -> None:
    """Each argument RabbitMQ checks for equivalence, changed, added and removed."""
    _redeclare_queue(ctx, "ttl", {"arguments": {"x-message-ttl": 1000}},
                     {"arguments": {"x-message-ttl": 2000}}, "ttl_differs")
    _redeclare_queue(ctx, "maxlen", {"arguments": {"x-max-length": 10}},
                     {"arguments": {"x-max-length": 20}}, "maxlen_differs")
    _redeclare_queue(ctx, "added", {}, {"arguments": {"x-max-length": 10}}, "arg_added")
    _redeclare_queue(ctx, "removed", {"arguments": {"x-max-length": 10}}, {}, "arg_removed")
    _redeclare_queue(ctx, "dlx", {"arguments": {"x-dead-letter-exchange": "a"}},
                     {"arguments": {"x-dead-letter-exchange": "b"}}, "dlx_differs")
    _redeclare_queue(ctx, "expires", {"arguments": {"x-expires": 100000}},
                     {"arguments": {"x-expires": 200000}}, "expires_differs")
    _redeclare_queue(ctx, "bytes", {"arguments": {"x-max-length-bytes": 1000}},
                     {"arguments": {"x-max-length-bytes": 2000}}, "maxbytes_differs")
    _redeclare_queue(ctx, "overflow", {"arguments": {"x-overflow": "drop-head"}},
                     {"arguments": {"x-overflow": "reject-publish"}}, "overflow_differs")


@scenario("queue.declare equivalence: unvalidated arguments", tags=CORE)
def _(ctx: Context) -> None:
    """Arguments RabbitMQ does not know are not part of equivalence."""
    _redeclare_queue(ctx, "foo", {"arguments": {"x-foo": "a"}},
                     {"arguments": {"x-foo": "b"}}, "unknown_differs")
    _redeclare_queue(ctx, "foo_added", {}, {"arguments": {"x-foo": "a"}}, "unknown_added")
    _redeclare_queue(ctx, "classic_added", {}, {"arguments": {"x-queue-type": "classic"}},
                     "queue_type_classic_added")


@scenario("queue.declare equivalence: identical redeclare and counts", tags=CORE)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    args = {"x-max-length": 100, "x-message-ttl": 600000}
    ctx.attempt("first", ch.queue_declare, q, durable=True, arguments=args)
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    ctx.wait_count(ch, q, 2)
    ctx.attempt("second", ch.queue_declare, q, durable=True, arguments=dict(args))


@scenario("queue.declare passive ignores other fields", tags=CORE)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    ctx.attempt("passive_with_other_props", ch.queue_declare, q, passive=True, durable=True,
                auto_delete=True, arguments={"x-max-length": 5})


@scenario("exchange.declare equivalence: type", tags=CORE)
def _(ctx: Context) -> None:
    _redeclare_exchange(ctx, "x", {"exchange_type": "direct"}, {"exchange_type": "fanout"}, "type")


@scenario("exchange.declare equivalence: durable, auto_delete, internal", tags=CORE)
def _(ctx: Context) -> None:
    _redeclare_exchange(ctx, "x1", {"exchange_type": "direct"},
                        {"exchange_type": "direct", "durable": True}, "durable")
    _redeclare_exchange(ctx, "x2", {"exchange_type": "direct"},
                        {"exchange_type": "direct", "auto_delete": True}, "auto_delete")
    _redeclare_exchange(ctx, "x3", {"exchange_type": "direct"},
                        {"exchange_type": "direct", "internal": True}, "internal")


@scenario("exchange.declare equivalence: arguments", tags=CORE)
def _(ctx: Context) -> None:
    _redeclare_exchange(ctx, "x1", {"exchange_type": "direct", "arguments": {"alternate-exchange": "a"}},
                        {"exchange_type": "direct", "arguments": {"alternate-exchange": "b"}},
                        "ae_differs")
    _redeclare_exchange(ctx, "x2", {"exchange_type": "direct"},
                        {"exchange_type": "direct", "arguments": {"alternate-exchange": "a"}},
                        "ae_added")
    _redeclare_exchange(ctx, "x3", {"exchange_type": "direct"},
                        {"exchange_type": "direct", "arguments": {"x-foo": "a"}}, "unknown_added")


@scenario("exchange.declare passive ignores type", tags=CORE)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    x = ctx.exchange()
    ch.exchange_declare(x, "direct")
    ctx.attempt("passive_fanout", ch.exchange_declare, x, "fanout", passive=True)
    ctx.attempt("passive_unknown_type", ch.exchange_declare, x, "x-nope", passive=True)


@scenario("exchange.declare unknown type is 503", tags=CORE + ("errors",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    x = ctx.exchange()
    ctx.attempt("declare", ch.exchange_declare, x, "x-nope")
    ctx.observe("connection_open_after", conn.is_open)


@scenario("reserved names are 403", tags=CORE + ("errors",))
def _(ctx: Context) -> None:
    """amq.* names for queues and exchanges, the default exchange, built-in exchanges."""
    conn = ctx.connection()
    suffix = ctx.token
    ctx.alias(f"amq.diff{suffix}", "<amq.reserved>")
    cases: list[tuple[str, Any]] = [
        ("exchange_declare_amq_prefix", lambda ch: ch.exchange_declare(f"amq.diff{suffix}", "direct")),
        ("queue_declare_amq_prefix", lambda ch: ch.queue_declare(f"amq.diff{suffix}")),
        ("exchange_declare_amq_direct_same", lambda ch: ch.exchange_declare("amq.direct", "direct", durable=True)),
        ("exchange_declare_amq_direct_other_type", lambda ch: ch.exchange_declare("amq.direct", "fanout", durable=True)),
        ("exchange_delete_amq_direct", lambda ch: ch.exchange_delete("amq.direct")),
        ("exchange_delete_default", lambda ch: ch.exchange_delete("")),
        ("queue_bind_default_exchange", lambda ch: ch.queue_bind(ctx_q, "", "rk")),
        ("queue_unbind_default_exchange", lambda ch: ch.queue_unbind(ctx_q, "", ctx_q)),
        ("exchange_declare_passive_amq_prefix_missing", lambda ch: ch.exchange_declare(f"amq.diff{suffix}", passive=True)),
        ("queue_declare_passive_amq_prefix_missing", lambda ch: ch.queue_declare(f"amq.diff{suffix}", passive=True)),
    ]
    ctx_q = ctx.queue()
    conn.channel().queue_declare(ctx_q)
    for key, op in cases:
        ch = conn.channel()
        ctx.attempt(key, op, ch)
        if ch.is_open:
            ch.close()


@scenario("publish to internal exchange is 403", tags=CORE + ("errors",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    x = ctx.exchange()
    ch.exchange_declare(x, "fanout", internal=True)

    def pub():
        ch.basic_publish(x, "", b"m")
        ctx.sync(ch)
    ctx.attempt("publish", pub)


@scenario("queue.declare argument validation", tags=CORE + ("errors",))
def _(ctx: Context) -> None:
    """Invalid values of arguments RabbitMQ validates: 406 with the argument named."""
    conn = ctx.connection()
    cases = {
        "max_length_string": {"x-max-length": "abc"},
        "max_length_negative": {"x-max-length": -1},
        "max_length_bytes_negative": {"x-max-length-bytes": -1},
        "message_ttl_negative": {"x-message-ttl": -1},
        "message_ttl_string": {"x-message-ttl": "1000"},
        "expires_zero": {"x-expires": 0},
        "expires_negative": {"x-expires": -5},
        "overflow_unknown": {"x-overflow": "nope"},
        "dlx_not_string": {"x-dead-letter-exchange": 5},
        "dlrk_without_dlx": {"x-dead-letter-routing-key": "rk"},
        "max_priority_negative": {"x-max-priority": -1},
        "max_priority_string": {"x-max-priority": "high"},
        "queue_type_unknown": {"x-queue-type": "nope"},
    }
    for key, args in cases.items():
        ch = conn.channel()
        ctx.attempt(key, ch.queue_declare, ctx.queue(key), arguments=args)
        if not conn.is_open:
            conn = ctx.connection()


@scenario("queue.declare server-named", tags=CORE)
def _(ctx: Context) -> None:
    """queue.declare('') names the queue amq.gen-<22 chars>; passive '' means the last one."""
    conn = ctx.connection()
    ch = conn.channel()
    ok = ch.queue_declare("", exclusive=True)
    name = ok.method.queue
    ctx.observe("declare_ok", ok)
    rest = name[len("amq.gen-"):]
    ctx.observe("shape", {"prefix": name.startswith("amq.gen-"), "suffix_len": len(rest),
                          "charset_ok": all(c.isalnum() or c in "-_" for c in rest)})
    ctx.attempt("passive_empty_after_declare", ch.queue_declare, "", passive=True)
    ch2 = conn.channel()
    name2 = ch2.queue_declare("", exclusive=True).method.queue
    ctx.adopt_queue(name2)
    fan = ctx.exchange("fan")           # private: never bind to shared built-in exchanges
    ch2.exchange_declare(fan, "fanout")
    ctx.attempt("bind_empty_uses_last", ch2.queue_bind, "", fan, "")
    ch2.basic_publish(fan, "", b"hello")
    ctx.observe("get_empty_name", ctx.attempt(None, ch2.basic_get, "", auto_ack=True))
    ctx.attempt("consume_empty_name", ch2.basic_consume, "", lambda *a: None)
    ctx.attempt("purge_empty_name", ch2.queue_purge, "")
    ctx.attempt("delete_empty_name", ch2.queue_delete, "")
    ctx.attempt("second_queue_gone", conn.channel().queue_declare, name2, passive=True)
    ch3 = conn.channel()
    ctx.attempt("bind_empty_fresh_channel", ch3.queue_bind, "", fan, "")


@scenario("consumer tag: server generated and reuse is 530", tags=CORE + ("errors",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    raw = ctx.raw()
    raw.open_channel(1)
    raw.open_channel(2)
    from pamqp import commands as C
    from ._util import raw_until
    ok = raw.call(1, C.Basic.Consume(queue=q, consumer_tag=""))
    tag = ok.get("consumer_tag", "")
    ctx.observe("generated", {"prefix": tag.startswith("amq.ctag-"), "len": len(tag),
                              "ok": ok.get("method")})
    ctag = ctx.name("ctag")
    ctx.observe("explicit", raw.call(1, C.Basic.Consume(queue=q, consumer_tag=ctag)))
    ctx.observe("same_tag_other_channel", raw.call(2, C.Basic.Consume(queue=q, consumer_tag=ctag)))
    raw.send_frame(1, C.Basic.Consume(queue=q, consumer_tag=ctag))
    ctx.observe("reuse_same_channel", raw_until(raw))
