"""Core: exclusive queues (405 RESOURCE_LOCKED from other connections) and exclusive consumers."""

from __future__ import annotations

from typing import Any, Callable

from ..harness import Context, scenario

CORE = ("core", "exclusive")


def _other_connection(op: Callable[[Any, str, str], Any]) -> Callable[[Context], None]:
    def run(ctx: Context) -> None:
        owner = ctx.connection()
        och = owner.channel()
        q, x = ctx.queue(), ctx.exchange()
        och.exchange_declare(x, "direct")
        och.queue_declare(q, exclusive=True)
        och.queue_bind(q, x, "rk")
        och.basic_publish("", q, b"m")
        ctx.wait_count(och, q, 1)
        other = ctx.connection()
        ch = other.channel()
        ctx.attempt("other_connection", op, ch, q, x)
        ctx.observe("other_connection_open", other.is_open)
        # the owner is unaffected and the queue is still there
        ctx.attempt("owner_passive", owner.channel().queue_declare, q, passive=True)
    return run


_METHODS: dict[str, Callable[[Any, str, str], Any]] = {
    "queue.declare exclusive": lambda ch, q, x: ch.queue_declare(q, exclusive=True),
    "queue.declare non-exclusive": lambda ch, q, x: ch.queue_declare(q),
    "queue.declare passive": lambda ch, q, x: ch.queue_declare(q, passive=True),
    "basic.consume": lambda ch, q, x: ch.basic_consume(q, lambda *a: None),
    "basic.get": lambda ch, q, x: ch.basic_get(q),
    "queue.bind": lambda ch, q, x: ch.queue_bind(q, x, "other"),
    "queue.unbind": lambda ch, q, x: ch.queue_unbind(q, x, "rk"),
    "queue.purge": lambda ch, q, x: ch.queue_purge(q),
    "queue.delete": lambda ch, q, x: ch.queue_delete(q),
}

for _name, _op in _METHODS.items():
    scenario(f"exclusive queue from another connection: {_name}", tags=CORE + ("errors",))(
        _other_connection(_op))


@scenario("exclusive queue: publish from another connection routes", tags=CORE)
def _(ctx: Context) -> None:
    owner = ctx.connection()
    och = owner.channel()
    q = ctx.queue()
    och.queue_declare(q, exclusive=True)
    other = ctx.connection()
    ch = other.channel()

    def pub():
        ch.basic_publish("", q, b"from-other")
        ctx.sync(ch)
    ctx.attempt("publish", pub)
    ctx.observe("owner_count", ctx.wait_count(och, q, 1))


@scenario("exclusive queue deleted when its connection closes", tags=CORE + ("lifecycle",))
def _(ctx: Context) -> None:
    owner = ctx.connection()
    och = owner.channel()
    q = ctx.queue()
    och.queue_declare(q, exclusive=True)
    other = ctx.connection()
    ctx.attempt("while_open", other.channel().queue_declare, q, passive=True)
    owner.close()
    ch = other.channel()

    def gone():
        c = other.channel()
        try:
            c.queue_declare(q, passive=True)
            c.close()
            return False
        except Exception:  # noqa: BLE001
            return True
    ctx.wait_until(gone)
    ctx.attempt("after_close", ch.queue_declare, q, passive=True)


@scenario("exclusive consumer conflicts are 403", tags=CORE + ("errors",))
def _(ctx: Context) -> None:
    conn = ctx.connection()
    q1, q2, q3 = ctx.queue("q1"), ctx.queue("q2"), ctx.queue("q3")
    ch = conn.channel()
    for q in (q1, q2, q3):
        ch.queue_declare(q)
    ch.basic_consume(q1, lambda *a: None)
    ctx.attempt("exclusive_when_consumers", conn.channel().basic_consume, q1, lambda *a: None,
                exclusive=True)
    ch.basic_consume(q2, lambda *a: None, exclusive=True)
    ctx.attempt("consume_when_exclusive", conn.channel().basic_consume, q2, lambda *a: None)
    ch.basic_consume(q3, lambda *a: None, exclusive=True)
    ctx.attempt("get_when_exclusive_consumer", conn.channel().basic_get, q3)
    ctx.attempt("exclusive_consumer_same_channel_again", conn.channel().basic_consume, q3,
                lambda *a: None, exclusive=True)
