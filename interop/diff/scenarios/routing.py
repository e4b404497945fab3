"""Core: direct, fanout, topic and headers routing, exchange-to-exchange bindings, lifecycle."""

from __future__ import annotations

from typing import Any

from ..harness import Context, Inbox, scenario

CORE = ("core", "routing")


def _drain_all(ctx: Context, ch: Any, queues: dict[str, str]) -> dict[str, list]:
    """Every message in each queue (by alias), via basic.get."""
    out: dict[str, list] = {}
    for alias, q in queues.items():
        got = []
        while True:
            m, p, b = ch.basic_get(q, auto_ack=True)
            if m is None:
                break
            got.append(b)
        out[alias] = got
    return out


def _route(ctx: Context, ex_type: str, bindings: dict[str, list[tuple[str, dict | None]]],
           messages: list[tuple[str, dict | None, bytes]], ex_args: dict | None = None) -> dict:
    """Declare an exchange of ``ex_type`` and queues bound as given, publish, return routing."""
    import pika
    conn = ctx.connection()
    ch = conn.channel()
    x = ctx.exchange()
    ch.exchange_declare(x, ex_type, arguments=ex_args)
    queues = {}
    for alias, binds in bindings.items():
        q = ctx.queue(alias)
        queues[alias] = q
        ch.queue_declare(q)
        for rk, args in binds:
            ch.queue_bind(q, x, rk, arguments=args)
    ch.confirm_delivery()
    for rk, headers, body in messages:
        ch.basic_publish(x, rk, body, pika.BasicProperties(headers=headers))
    return _drain_all(ctx, ch, queues)


@scenario("direct routing", tags=CORE)
def _(ctx: Context) -> None:
    got = _route(ctx, "direct", {
        "a": [("k1", None)], "b": [("k1", None), ("k2", None)], "c": [("", None)], "d": [],
    }, [("k1", None, b"1"), ("k2", None, b"2"), ("", None, b"3"), ("K1", None, b"4"),
        ("k3", None, b"5")])
    ctx.observe("routed", got)


@scenario("fanout routing ignores the key", tags=CORE)
def _(ctx: Context) -> None:
    got = _route(ctx, "fanout", {"a": [("x", None)], "b": [("", None), ("y", None)]},
                 [("", None, b"1"), ("anything", None, b"2")])
    ctx.observe("routed", got)


TOPIC_PATTERNS = ["#", "*", "a.*", "a.#", "a.*.c", "a.#.c", "#.c", "*.*", "a.b.c", "#.#",
                  "*.#", "a..c", "", "a.*.#", "#.b.#"]
TOPIC_KEYS = ["", "a", "a.b", "a.b.c", "a.b.b.c", "a.c", "b.c", "c", "a..c", ".", "a.", ".a",
              "x.b.y", "a.b.c.d"]


@scenario("topic routing patterns", tags=CORE)
def _(ctx: Context) -> None:
    bindings = {f"p{i}": [(p, None)] for i, p in enumerate(TOPIC_PATTERNS)}
    messages = [(k, None, k.encode() or b"<empty>") for k in TOPIC_KEYS]
    got = _route(ctx, "topic", bindings, messages)
    ctx.observe("routed", {f"{TOPIC_PATTERNS[int(a[1:])]!r}": v for a, v in got.items()})


@scenario("topic: one copy per queue across matching bindings", tags=CORE)
def _(ctx: Context) -> None:
    got = _route(ctx, "topic", {"q": [("a.*", None), ("#", None), ("a.b", None)]},
                 [("a.b", None, b"once"), ("z", None, b"z")])
    ctx.observe("routed", got)


@scenario("headers routing", tags=CORE)
def _(ctx: Context) -> None:
    bindings = {
        "all": [("", {"x-match": "all", "a": 1, "b": "two"})],
        "any": [("", {"x-match": "any", "a": 1, "b": "two"})],
        "default": [("", {"a": 1})],
        "empty": [("", {})],
        "empty_any": [("", {"x-match": "any"})],
        "all_x": [("", {"x-match": "all-with-x", "x-h": "v"})],
        "any_x": [("", {"x-match": "any-with-x", "x-h": "v", "z": "no"})],
        "plain_x": [("", {"x-match": "all", "x-h": "v"})],
        "str_one": [("", {"a": "1"})],
    }
    messages = [
        ("", {"a": 1, "b": "two"}, b"a1b2"),
        ("", {"a": 1}, b"a1"),
        ("", {"b": "two", "c": 3}, b"b2c3"),
        ("", {"a": "1"}, b"a_str1"),
        ("", None, b"none"),
        ("", {"x-h": "v"}, b"xh"),
        ("rk-ignored", {"a": 1, "b": "other"}, b"a1bother"),
    ]
    ctx.observe("routed", _route(ctx, "headers", bindings, messages))


@scenario("headers binding x-match invalid", tags=CORE + ("errors",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    x = ctx.exchange()
    q = ctx.queue()
    ch.exchange_declare(x, "headers")
    ch.queue_declare(q)
    ctx.attempt("bad_x_match", ch.queue_bind, q, x, "", arguments={"x-match": "some"})


@scenario("exchange-to-exchange bindings", tags=CORE + ("e2e",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    src, mid, fan = ctx.exchange("src"), ctx.exchange("mid"), ctx.exchange("fan")
    ch.exchange_declare(src, "topic")
    ch.exchange_declare(mid, "direct")
    ch.exchange_declare(fan, "fanout")
    q1, q2, q3 = ctx.queue("q1"), ctx.queue("q2"), ctx.queue("q3")
    for q in (q1, q2, q3):
        ch.queue_declare(q)
    ctx.attempt("bind_src_mid", ch.exchange_bind, mid, src, "a.*")
    ch.exchange_bind(fan, src, "#")
    ch.queue_bind(q1, mid, "a.b")
    ch.queue_bind(q2, fan, "")
    ch.queue_bind(q3, src, "a.b")
    # a cycle: fan -> src
    ch.exchange_bind(src, fan, "")
    ch.confirm_delivery()
    for rk in ("a.b", "a.c", "z"):
        ch.basic_publish(src, rk, rk.encode())
    ch.basic_publish(fan, "a.b", b"via-fan")
    qs = {"q1": q1, "q2": q2, "q3": q3}
    ctx.observe("routed", _drain_all(ctx, ch, qs))
    ctx.attempt("unbind", ch.exchange_unbind, mid, src, "a.*")
    ch.basic_publish(src, "a.b", b"after-unbind")
    ctx.observe("after_unbind", _drain_all(ctx, ch, qs))


@scenario("default exchange and amq.default", tags=CORE)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"via-default")
    a = Inbox("exchange", "rk")
    ch.basic_consume(q, a, auto_ack=True)
    ctx.wait_until(lambda: len(a) >= 1, conn)
    ctx.observe("deliveries", a.summary())
    c2 = conn.channel()
    c2.confirm_delivery()
    ctx.attempt("publish_amq_default", c2.basic_publish, "amq.default", q, b"via-amq.default")
    ctx.attempt("passive_amq_default", conn.channel().exchange_declare, "amq.default", passive=True)
    ctx.attempt("passive_default", conn.channel().exchange_declare, "", passive=True)
    for name in ("amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"):
        ctx.attempt(f"builtin_{name}", conn.channel().exchange_declare, name, passive=True)


# ---------------------------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------------------------

def _exists(ctx: Context, conn: Any, kind: str, name: str) -> bool:
    ch = conn.channel()
    try:
        if kind == "queue":
            ch.queue_declare(name, passive=True)
        else:
            ch.exchange_declare(name, passive=True)
        ch.close()
        return True
    except Exception:  # noqa: BLE001
        return False


def _gone(ctx: Context, conn: Any, kind: str, name: str) -> bool:
    """Whether it disappears within the deadline (deletion may be asynchronous)."""
    return ctx.wait_until(lambda: not _exists(ctx, conn, kind, name))


@scenario("auto-delete queue lifecycle", tags=CORE + ("lifecycle",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q1, q2, q3, q4 = (ctx.queue(f"q{i}") for i in range(1, 5))
    # never consumed: survives its declaring connection
    other = ctx.connection()
    other.channel().queue_declare(q1, auto_delete=True)
    other.close()
    ctx.settle()
    ctx.observe("never_consumed_survives", _exists(ctx, conn, "queue", q1))
    # last consumer cancels
    ch.queue_declare(q2, auto_delete=True)
    t1 = ch.basic_consume(q2, lambda *a: None)
    t2 = ch.basic_consume(q2, lambda *a: None)
    ch.basic_cancel(t1)
    ctx.observe("one_of_two_cancelled_exists", _exists(ctx, conn, "queue", q2))
    ch.basic_cancel(t2)
    ctx.observe("last_cancel_deletes", _gone(ctx, conn, "queue", q2))
    # consumer's channel closes
    c3 = conn.channel()
    c3.queue_declare(q3, auto_delete=True)
    c3.basic_consume(q3, lambda *a: None)
    c3.close()
    ctx.observe("channel_close_deletes", _gone(ctx, conn, "queue", q3))
    # consumer's connection closes
    other = ctx.connection()
    oc = other.channel()
    oc.queue_declare(q4, auto_delete=True)
    oc.basic_consume(q4, lambda *a: None)
    other.close()
    ctx.observe("connection_close_deletes", _gone(ctx, conn, "queue", q4))


@scenario("auto-delete exchange lifecycle", tags=CORE + ("lifecycle",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    x1, x2, x3, x4, dst = (ctx.exchange(n) for n in ("x1", "x2", "x3", "x4", "dst"))
    q1, q2 = ctx.queue("q1"), ctx.queue("q2")
    ch.queue_declare(q1)
    ch.queue_declare(q2)
    ch.exchange_declare(dst, "fanout")
    ch.exchange_declare(x1, "direct", auto_delete=True)
    ctx.observe("never_bound_survives", _exists(ctx, conn, "exchange", x1))
    ch.exchange_declare(x2, "direct", auto_delete=True)
    ch.queue_bind(q1, x2, "a")
    ch.queue_bind(q1, x2, "b")
    ch.queue_unbind(q1, x2, "a")
    ctx.observe("one_of_two_unbound_exists", _exists(ctx, conn, "exchange", x2))
    ch.queue_unbind(q1, x2, "b")
    ctx.observe("last_unbind_deletes", _gone(ctx, conn, "exchange", x2))
    ch.exchange_declare(x3, "direct", auto_delete=True)
    ch.queue_bind(q2, x3, "a")
    ch.queue_delete(q2)
    ctx.observe("bound_queue_deleted_deletes", _gone(ctx, conn, "exchange", x3))
    ch.exchange_declare(x4, "direct", auto_delete=True)
    ch.exchange_bind(dst, x4, "k")
    ch.exchange_unbind(dst, x4, "k")
    ctx.observe("e2e_source_unbind_deletes", _gone(ctx, conn, "exchange", x4))
