"""Core: every error code the broker emits, with its text and close scope."""

from __future__ import annotations

import struct
from typing import Any, Callable

from pamqp import body as pbody
from pamqp import commands as C
from pamqp import header as pheader

from ..harness import Context, scenario
from ._util import compact, raw_open, raw_ping, raw_publish, raw_until

CORE = ("core", "errors")


def _each_on_fresh_channel(ctx: Context, cases: dict[str, Callable[[Any], Any]]) -> None:
    conn = ctx.connection()
    for key, op in cases.items():
        ch = conn.channel()
        ctx.attempt(key, op, ch)
        if ch.is_open:
            ch.close()
        if not conn.is_open:
            conn = ctx.connection()


@scenario("404 missing entities", tags=CORE)
def _(ctx: Context) -> None:
    """Each method naming a missing queue or exchange."""
    q, x, x2 = ctx.queue("missing_q"), ctx.exchange("missing_x"), ctx.exchange("missing_x2")
    real_q, real_x = ctx.queue("real_q"), ctx.exchange("real_x")
    setup = ctx.connection().channel()
    setup.queue_declare(real_q)
    setup.exchange_declare(real_x, "direct")

    def publish(ch, exchange):
        ch.basic_publish(exchange, "rk", b"m")
        ctx.sync(ch)

    _each_on_fresh_channel(ctx, {
        "queue_declare_passive": lambda ch: ch.queue_declare(q, passive=True),
        "exchange_declare_passive": lambda ch: ch.exchange_declare(x, passive=True),
        "queue_bind_missing_exchange": lambda ch: ch.queue_bind(real_q, x, "rk"),
        "queue_bind_missing_queue": lambda ch: ch.queue_bind(q, real_x, "rk"),
        "queue_bind_missing_both": lambda ch: ch.queue_bind(q, x, "rk"),
        "queue_unbind_missing_queue": lambda ch: ch.queue_unbind(q, real_x, "rk"),
        "queue_unbind_missing_exchange": lambda ch: ch.queue_unbind(real_q, x, "rk"),
        "queue_unbind_missing_binding": lambda ch: ch.queue_unbind(real_q, real_x, "nope"),
        "exchange_bind_missing_source": lambda ch: ch.exchange_bind(real_x, x, "rk"),
        "exchange_bind_missing_destination": lambda ch: ch.exchange_bind(x, real_x, "rk"),
        "exchange_unbind_missing_binding": lambda ch: ch.exchange_unbind(real_x, "amq.direct", "rk"),
        "basic_consume": lambda ch: ch.basic_consume(q, lambda *a: None),
        "basic_get": lambda ch: ch.basic_get(q),
        "queue_purge": lambda ch: ch.queue_purge(q),
        "queue_delete": lambda ch: ch.queue_delete(q),
        "queue_delete_if_empty_if_unused": lambda ch: ch.queue_delete(q, if_unused=True, if_empty=True),
        "exchange_delete": lambda ch: ch.exchange_delete(x2),
        "exchange_delete_if_unused": lambda ch: ch.exchange_delete(x2, if_unused=True),
        "basic_publish": lambda ch: publish(ch, x),
    })


@scenario("406 delete if_unused / if_empty", tags=CORE)
def _(ctx: Context) -> None:
    conn = ctx.connection()
    ch = conn.channel()
    q1, q2, q3 = ctx.queue("q1"), ctx.queue("q2"), ctx.queue("q3")
    x1, x2, x3 = ctx.exchange("x1"), ctx.exchange("x2"), ctx.exchange("x3")
    for q in (q1, q2, q3):
        ch.queue_declare(q)
    ch.basic_consume(q1, lambda *a: None)
    ch.basic_publish("", q2, b"m")
    ctx.wait_count(ch, q2, 1)
    # q3: a message delivered but unacked: the queue counts as empty for if_empty
    ch.basic_publish("", q3, b"m")
    ctx.wait_count(ch, q3, 1)
    got = ch.basic_get(q3)
    for x in (x1, x2, x3):
        ch.exchange_declare(x, "direct")
    ch.queue_bind(q1, x1, "rk")
    ch.exchange_bind(x3, x2, "rk")
    _each_on_fresh_channel(ctx, {
        "queue_if_unused_with_consumer": lambda c: c.queue_delete(q1, if_unused=True),
        "queue_if_empty_with_ready": lambda c: c.queue_delete(q2, if_empty=True),
        "queue_if_unused_if_empty_both_violated": lambda c: c.queue_delete(q1, if_unused=True, if_empty=True),
        "exchange_if_unused_with_queue_binding": lambda c: c.exchange_delete(x1, if_unused=True),
        "exchange_if_unused_source_of_e2e": lambda c: c.exchange_delete(x2, if_unused=True),
        "exchange_if_unused_only_destination": lambda c: c.exchange_delete(x3, if_unused=True),
        "queue_if_empty_only_unacked": lambda c: c.queue_delete(q3, if_empty=True),
    })
    ctx.observe("held_tag", got[0].delivery_tag if got[0] else None)


@scenario("406 unknown delivery tag", tags=CORE)
def _(ctx: Context) -> None:
    """ack/nack/reject of tags never delivered, acked twice, or from an auto-ack get."""
    conn = ctx.connection()
    q = ctx.queue()
    conn.channel().queue_declare(q)

    def act(fn: Callable[[Any], Any], setup: int = 0, auto_ack: bool = False):
        def run(ch):
            for _ in range(setup):
                ch.basic_publish("", q, b"m")
            ctx.wait_count(ch, q, setup)
            for _ in range(setup):
                ch.basic_get(q, auto_ack=auto_ack)
            fn(ch)
            ctx.sync(ch)
            return "no error"
        return run

    def twice(ch):
        ch.basic_ack(1)
        ch.basic_ack(1)

    _each_on_fresh_channel(ctx, {
        "ack_99": act(lambda ch: ch.basic_ack(99)),
        "reject_42": act(lambda ch: ch.basic_reject(42)),
        "nack_42": act(lambda ch: ch.basic_nack(42, requeue=False)),
        "ack_0_multiple_nothing_outstanding": act(lambda ch: ch.basic_ack(0, multiple=True)),
        "nack_0_multiple_nothing_outstanding": act(lambda ch: ch.basic_nack(0, multiple=True)),
        "ack_0_not_multiple": act(lambda ch: ch.basic_ack(0)),
        "ack_twice": act(twice, setup=1),
        "ack_of_auto_ack_get": act(lambda ch: ch.basic_ack(1), setup=1, auto_ack=True),
        "ack_multiple_above_highest": act(lambda ch: ch.basic_ack(5, multiple=True), setup=2),
    })
    ctx.observe("left_in_queue", ctx.queue_count(ctx.connection().channel(), q))


@scenario("406 tx and confirm mode errors", tags=CORE + ("tx", "confirm"))
def _(ctx: Context) -> None:
    def confirm_then_tx(ch):
        ch.confirm_delivery()
        return ch.tx_select()

    def tx_then_confirm(ch):
        ch.tx_select()
        return ch.confirm_delivery()

    def tx_twice(ch):
        ch.tx_select()
        return ch.tx_select()

    def confirm_twice(ch):
        ch.confirm_delivery()
        ch._impl.confirm_delivery(lambda *a: None)  # pika refuses the second itself; go raw
        return "sent"

    _each_on_fresh_channel(ctx, {
        "commit_without_select": lambda ch: ch.tx_commit(),
        "rollback_without_select": lambda ch: ch.tx_rollback(),
        "tx_after_confirm": confirm_then_tx,
        "confirm_after_tx": tx_then_confirm,
        "tx_select_twice": tx_twice,
    })
    r = raw_open(ctx)
    r.call(1, C.Confirm.Select())
    ctx.observe("raw_confirm_select_twice", r.call(1, C.Confirm.Select()))


@scenario("540 not implemented: immediate, prefetch_size, recover requeue=false, flow", tags=CORE)
def _(ctx: Context) -> None:
    """Each is a connection-level 540 NOT_IMPLEMENTED."""
    q = ctx.queue()
    ctx.connection().channel().queue_declare(q)
    r = raw_open(ctx)
    raw_publish(r, 1, "", q, b"x", immediate=True)
    ctx.observe("publish_immediate", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(1, C.Basic.Qos(prefetch_size=1))
    ctx.observe("qos_prefetch_size", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(1, C.Basic.Recover(requeue=False))
    ctx.observe("recover_requeue_false", raw_until(r))
    r = raw_open(ctx)
    _send_recover_async(r, False)
    ctx.observe("recover_async_requeue_false", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(1, C.Channel.Flow(active=False))
    ctx.observe("flow_false", raw_until(r))
    r = raw_open(ctx)
    ctx.observe("flow_true", r.call(1, C.Channel.Flow(active=True)))
    _send_recover_async(r, True)
    ctx.observe("recover_async_requeue_true", raw_ping(r))
    ctx.observe("recover_requeue_true", r.call(1, C.Basic.Recover(requeue=True)))


def _send_recover_async(r: Any, requeue: bool) -> None:
    import warnings
    with warnings.catch_warnings():      # deprecated in 0-9-1, still answered by RabbitMQ
        warnings.simplefilter("ignore", DeprecationWarning)
        r.send_frame(1, C.Basic.RecoverAsync(requeue=requeue))


@scenario("530 unknown vhost", tags=CORE)
def _(ctx: Context) -> None:
    r = ctx.raw(handshake=False)
    res = r.handshake(vhost=f"nope-{ctx.token}")
    res.pop("_value", None)
    res.pop("frame", None)
    ctx.alias(f"nope-{ctx.token}", "<vhost>")
    ctx.observe("open", res)
    r.send_frame(0, C.Connection.CloseOk())
    ctx.observe("after", raw_until(r, timeout=3)[-1:])


@scenario("403 wrong credentials", tags=CORE)
def _(ctx: Context) -> None:
    r = ctx.raw(handshake=False)
    res = r.handshake(password="wrong")
    res.pop("_value", None)
    res.pop("frame", None)
    ctx.observe("bad_password", res)
    r = ctx.raw(handshake=False)
    ctx.alias(f"nobody-{ctx.token}", "<user>")
    res = r.handshake(user=f"nobody-{ctx.token}")
    res.pop("_value", None)
    res.pop("frame", None)
    ctx.observe("unknown_user", res)


@scenario("406 user_id mismatch", tags=CORE)
def _(ctx: Context) -> None:
    import pika
    conn = ctx.connection()
    ch = conn.channel()
    q = ctx.queue()
    ch.queue_declare(q)

    def pub(user):
        ch.basic_publish("", q, b"m", pika.BasicProperties(user_id=user))
        ctx.sync(ch)
        return "ok"
    ctx.alias(ctx.user, "<user>")
    ctx.attempt("matching", pub, ctx.user)
    ctx.attempt("other_user", pub, "bob")


# ---------------------------------------------------------------------------------------------
# Channel and frame errors (raw frames)
# ---------------------------------------------------------------------------------------------

@scenario("504 channel errors", tags=CORE + ("framing",))
def _(ctx: Context) -> None:
    r = raw_open(ctx)
    r.send_frame(1, C.Channel.Open())
    ctx.observe("open_twice", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(5, C.Queue.Declare(queue=""))
    ctx.observe("method_on_unopened_channel", raw_until(r))
    r = raw_open(ctx)
    ctx.observe("client_close", r.call(1, C.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)))
    r.send_frame(1, C.Queue.Declare(queue=""))
    ctx.observe("method_after_client_close", raw_until(r))
    r = raw_open(ctx)
    ctx.observe("reopen_after_close", [r.call(1, C.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)),
                                       r.open_channel(1)])
    r = raw_open(ctx)
    r.send_frame(0, C.Channel.Open())
    ctx.observe("open_channel_zero", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(7, C.Channel.Close(reply_code=200, reply_text="x", class_id=0, method_id=0))
    ctx.observe("close_unopened_channel", raw_until(r))


@scenario("505 unexpected frames", tags=CORE + ("framing",))
def _(ctx: Context) -> None:
    r = raw_open(ctx)
    r.send_frame(1, pheader.ContentHeader(0, 1, C.Basic.Properties()))
    ctx.observe("header_without_publish", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(1, pbody.ContentBody(b"abc"))
    ctx.observe("body_without_publish", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(1, C.Basic.Publish(exchange="amq.direct", routing_key="rk"))
    r.send_frame(1, C.Exchange.Declare(exchange="amq.direct", passive=True))
    ctx.observe("method_instead_of_header", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(1, C.Basic.Publish(exchange="amq.direct", routing_key="rk"))
    r.send_frame(1, pheader.ContentHeader(0, 3, C.Basic.Properties()))
    r.send_frame(1, C.Exchange.Declare(exchange="amq.direct", passive=True))
    ctx.observe("method_instead_of_body", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(0, pbody.ContentBody(b"abc"))
    ctx.observe("body_on_channel_zero", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(0, pheader.ContentHeader(0, 1, C.Basic.Properties()))
    ctx.observe("header_on_channel_zero", raw_until(r))


@scenario("501 frame errors", tags=CORE + ("framing",))
def _(ctx: Context) -> None:
    r = raw_open(ctx)
    payload = pframe_payload(C.Channel.Open())
    r.send_raw_frame(1, 2, payload, end=0x00)
    ctx.observe("bad_frame_end", raw_until(r))
    r = raw_open(ctx)
    r.send_raw_frame(9, 0, b"")
    ctx.observe("unknown_frame_type", raw_until(r))
    r = raw_open(ctx)
    r.send_raw_frame(8, 1, b"")
    ctx.observe("heartbeat_on_channel_1", raw_until(r))
    r = raw_open(ctx)
    fm = r.tune.frame_max
    r.send_raw_frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00" * (fm + 100))
    ctx.observe("frame_larger_than_frame_max", raw_until(r, timeout=5))
    r = raw_open(ctx)
    r.send_raw_frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00\x00\x01")
    ctx.observe("truncated_method_args", raw_until(r))


@scenario("540/503 unknown class or method", tags=CORE + ("framing",))
def _(ctx: Context) -> None:
    r = raw_open(ctx)
    r.send_method_raw(1, 99, 99)
    ctx.observe("unknown_class", raw_until(r))
    r = raw_open(ctx)
    r.send_method_raw(1, 50, 99)
    ctx.observe("unknown_method_of_queue", raw_until(r))
    r = raw_open(ctx)
    r.send_method_raw(0, 99, 99)
    ctx.observe("unknown_class_channel_zero", raw_until(r))
    r = raw_open(ctx)
    r.send_frame(0, C.Queue.Declare(queue=""))
    ctx.observe("queue_declare_on_channel_zero", raw_until(r))


def pframe_payload(method: Any) -> bytes:
    """The payload of a method frame (class id, method id, arguments)."""
    from pamqp import frame as pframe
    data = pframe.marshal(method, 1)
    return data[7:-1]


HEADERS_BAD = (("amqp_0_9_0", b"AMQP\x00\x00\x09\x00"), ("amqp_1_0", b"AMQP\x00\x01\x00\x00"),
               ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
HEADERS_LEGACY = (("amqp_0_8", b"AMQP\x01\x01\x08\x00"), ("amqp_1_1_0_9", b"AMQP\x01\x01\x00\x09"))


@scenario("protocol header mismatch", tags=CORE + ("framing",))
def _(ctx: Context) -> None:
    """A wrong protocol header: the server answers its own header and closes."""
    ctx.observe("replies", _header_replies(ctx, HEADERS_BAD))


@scenario("protocol header: legacy AMQP 0-8 / 0-9 headers", tags=CORE + ("framing",))
def _(ctx: Context) -> None:
    """RabbitMQ also speaks AMQP 0-8 (and takes the pre-standard header AMQP 1 1 0 9 for 0-9-1):
    it answers connection.start instead of its own protocol header."""
    ctx.observe("replies", _header_replies(ctx, HEADERS_LEGACY))


def _header_replies(ctx: Context, headers) -> dict:
    import socket
    import time
    out = {}
    for key, hdr in headers:
        s = socket.create_connection((ctx.host, ctx.port), timeout=2)
        s.sendall(hdr)
        got = b""
        deadline = time.monotonic() + 2
        closed = False
        while time.monotonic() < deadline:
            try:
                d = s.recv(4096)
            except socket.timeout:
                break
            except OSError:     # RabbitMQ resets the connection rather than closing it
                closed = True
                break
            if not d:
                closed = True
                break
            got += d
        s.close()
        if got.startswith(b"AMQP"):
            reply: object = {"protocol_header": list(got[:8])}
        elif got[:1] == b"\x01" and len(got) >= 13:
            cls, meth = struct.unpack(">HH", got[7:11])
            reply = {"method_frame": [cls, meth], "version": [got[11], got[12]]}
        else:
            reply = {"bytes": len(got)}
        out[key] = {"reply": reply, "closed": closed}
    return out


@scenario("connection.close by client", tags=CORE + ("framing",))
def _(ctx: Context) -> None:
    r = raw_open(ctx)
    r.send_frame(0, C.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    # (RabbitMQ then waits for the client to close the socket; we don't look at that)
    ctx.observe("client_close", raw_until(r, stop=("connection.closeok",))[0])


@scenario("tune-ok frame_max out of range", tags=CORE + ("framing", "handshake"))
def _(ctx: Context) -> None:
    """Before connection.open RabbitMQ does not send connection.close: it closes the socket
    (after a 3 s delay)."""
    for key, fm in (("frame_max_too_small", 1024), ("frame_max_too_large", 131072 * 2)):
        r = ctx.raw(handshake=False)
        res = compact_res(r.handshake(tune={"frame_max": fm}))
        if res.get("eof"):
            ctx.observe(key, ["eof"])         # closed without a word (RabbitMQ, after ~3 s)
            continue
        out = [res]
        if res.get("method") == "connection.close":
            r.send_frame(0, C.Connection.CloseOk())
            out.append(compact(r.recv_method(8)))
        ctx.observe(key, out)


@scenario("channel.open above negotiated channel_max", tags=CORE + ("framing",))
def _(ctx: Context) -> None:
    """The client lowers channel_max to 2, opens channel 5 (a number above the maximum: RabbitMQ
    3.10 allows it), then more channels than the maximum (refused)."""
    def brief(frames):
        return [f if isinstance(f, str) else {k: f[k] for k in ("method", "reply_code", "reply_text")
                                                if k in f} for f in frames]
    r = ctx.raw(tune={"channel_max": 2})
    r.send_frame(5, C.Channel.Open())
    ctx.observe("channel_number_5", brief(raw_until(r, stop=("channel.openok",))))
    r = ctx.raw(tune={"channel_max": 2})
    r.open_channel(1)
    r.open_channel(2)
    r.send_frame(3, C.Channel.Open())
    ctx.observe("third_channel", brief(raw_until(r, stop=("channel.openok",))))


@scenario("connection.start: capabilities, mechanisms, tune", tags=CORE + ("handshake",))
def _(ctx: Context) -> None:
    r = ctx.raw(handshake=False)
    r.handshake(open_connection=False)
    st, tune = r.start, r.tune
    sp = st.server_properties
    ctx.observe("version", [st.version_major, st.version_minor])
    ctx.observe("capabilities", dict(sorted(sp.get("capabilities", {}).items())))
    # The order RabbitMQ lists its mechanisms in differs from node to node (it comes from its
    # plugin registry); clients pick by their own preference, so only the set is compared.
    ctx.observe("mechanisms", sorted(st.mechanisms.split()))
    ctx.observe("locales", st.locales)
    ctx.observe("server_property_keys", sorted(sp))
    ctx.observe("tune", {"channel_max": tune.channel_max, "frame_max": tune.frame_max,
                         "heartbeat": tune.heartbeat})
    r.send_frame(0, C.Connection.Open(virtual_host="/"))
    ctx.observe("open_ok", compact_res(r.recv_method()))


@scenario("connection.start: product identification", tags=CORE + ("handshake",))
def _(ctx: Context) -> None:
    r = ctx.raw(handshake=False)
    r.handshake(open_connection=False)
    sp = r.start.server_properties
    ctx.observe("product", {k: sp.get(k) for k in ("product", "platform", "copyright",
                                                   "information", "cluster_name")})


def compact_res(res: dict) -> Any:
    res = {k: v for k, v in res.items() if k not in ("_value", "frame", "secs_after_last_send")}
    return res
