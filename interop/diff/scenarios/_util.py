"""Helpers shared by scenario modules (raw-frame outcomes, common set-ups)."""

from __future__ import annotations

from typing import Any

from pamqp import body as pbody
from pamqp import commands as C
from pamqp import header as pheader

from ..harness import Context


def compact(f: dict) -> Any:
    """A raw frame description (from ``Raw.recv``) reduced to what is stable and observable."""
    f = {k: v for k, v in f.items() if k != "_value"}
    if "eof" in f:
        return "eof"
    if f.get("timeout"):
        return "timeout"
    kind = f.pop("frame", None)
    if kind == "method":
        return f
    if kind == "header":
        f.pop("present_flags", None)
        return {"header": f}
    if kind == "body":
        return {"body": f.get("body")}
    return {kind or "frame": f}


def raw_until(r: Any, stop: tuple[str, ...] = (), timeout: float = 3.0, max_frames: int = 40) -> list:
    """Read frames until a close (answered with close-ok), one of ``stop`` methods, EOF or
    timeout. The connection.close-ok reply is followed by reading until EOF."""
    out: list = []
    for _ in range(max_frames):
        f = r.recv_method(timeout)
        out.append(compact(f))
        if "eof" in f or f.get("timeout"):
            break
        m = f.get("method")
        if m == "channel.close":
            try:
                r.send_frame(f["channel"], C.Channel.CloseOk())
            except OSError:
                pass
            break
        if m == "connection.close":
            try:
                r.send_frame(0, C.Connection.CloseOk())
            except OSError:
                pass
            # RabbitMQ closes the socket ~3 s after a frame error, without reading close-ok
            nxt = r.recv_method(max(timeout, 8.0))
            out.append(compact(nxt))
            break
        if m in stop:
            break
    return out


def raw_ping(r: Any, ch: int = 1, timeout: float = 3.0) -> list:
    """Send a harmless synchronous method and read up to its reply (or a close)."""
    r.send_frame(ch, C.Exchange.Declare(exchange="amq.direct", exchange_type="direct", passive=True))
    return raw_until(r, stop=("exchange.declareok",), timeout=timeout)


def raw_publish(r: Any, ch: int, exchange: str, rk: str, body: bytes = b"x",
                mandatory: bool = False, immediate: bool = False,
                props: C.Basic.Properties | None = None) -> None:
    r.send_frame(ch, C.Basic.Publish(exchange=exchange, routing_key=rk, mandatory=mandatory,
                                     immediate=immediate))
    r.send_frame(ch, pheader.ContentHeader(0, len(body), props or C.Basic.Properties()))
    if body:
        r.send_frame(ch, pbody.ContentBody(body))


def raw_open(ctx: Context, channels: tuple[int, ...] = (1,)) -> Any:
    r = ctx.raw()
    for ch in channels:
        res = r.open_channel(ch)
        if res.get("method") != "channel.openok":
            raise RuntimeError(f"channel.open {ch} failed: {res}")
    return r
