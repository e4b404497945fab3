"""Probe an AMQP 0-9-1 broker and record exactly what it answers.

Run against real RabbitMQ to build the oracle reference, then against
amqp_broker to compare:

    python interop/probe_rabbitmq.py --host 127.0.0.1 --port 5672 > rabbit.jsonl
    python interop/probe_rabbitmq.py --host 127.0.0.1 --port 5673 > ours.jsonl
    diff <(jq -S -c . rabbit.jsonl) <(jq -S -c . ours.jsonl)

Prints one JSON line per case: {"case": ..., "desc": ..., "result": ...}.
Names used are deterministic ("probe.<case>...") so outputs of two brokers are
diffable; server-generated names are reduced to a shape check.

Most cases use pika's BlockingConnection (patched to capture class_id /
method_id of Channel.Close / Connection.Close); protocol-level cases use a
raw socket client built on pamqp.

Options: --only SUBSTR (repeatable) to run a subset, --markdown PATH to also
write a markdown table, --list to list case names.
"""
from __future__ import annotations

import argparse
import json
import re
import socket
import struct
import sys
import time
import traceback
from typing import Any, Callable

import pika
import pika.channel
import pika.connection
import pika.exceptions
import pika.spec
from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import header as pheader
from pamqp import body as pbody

# ---------------------------------------------------------------------------
# pika patching: capture Channel.Close / Connection.Close frames verbatim
# ---------------------------------------------------------------------------

_CAPTURE: list[dict] = []


def _method_name(class_id: int, method_id: int) -> str | None:
    cls = pika.spec.methods.get((class_id << 16) | method_id)
    return cls.NAME.lower() if cls else None


def _close_dict(kind: str, m, channel: int) -> dict:
    d = {
        "kind": kind,
        "reply_code": m.reply_code,
        "reply_text": m.reply_text,
        "class_id": m.class_id,
        "method_id": m.method_id,
        "method": _method_name(m.class_id, m.method_id),
    }
    if kind == "channel.close":
        d["channel"] = channel
    return d


_orig_ch_close = pika.channel.Channel._on_close_from_broker
_orig_conn_close = pika.connection.Connection._on_connection_close_from_broker


def _patched_ch_close(self, method_frame):
    _CAPTURE.append(_close_dict("channel.close", method_frame.method, self.channel_number))
    return _orig_ch_close(self, method_frame)


def _patched_conn_close(self, method_frame):
    _CAPTURE.append(_close_dict("connection.close", method_frame.method, 0))
    return _orig_conn_close(self, method_frame)


pika.channel.Channel._on_close_from_broker = _patched_ch_close
pika.connection.Connection._on_connection_close_from_broker = _patched_conn_close


def summ(obj) -> Any:
    """Summarise a pika method frame / method / properties into a dict."""
    if obj is None:
        return None
    if isinstance(obj, pika.frame.Method):
        obj = obj.method
    if isinstance(obj, pika.amqp_object.Method):
        d = {"method": obj.NAME.lower()}
        for k, v in vars(obj).items():
            d[k] = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        return d
    return obj


def attempt(fn: Callable[[], Any]) -> dict:
    """Run fn; return {"ok": True, "result": ...} or the broker close info."""
    n = len(_CAPTURE)
    try:
        r = fn()
        out: dict = {"ok": True}
        if r is not None:
            out["result"] = summ(r)
        return out
    except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as e:
        caps = _CAPTURE[n:]
        if caps:
            return caps[-1]
        return {"kind": type(e).__name__, "reply_code": e.reply_code, "reply_text": e.reply_text}
    except Exception as e:  # noqa: BLE001 - we want to record anything
        return {"exception": type(e).__name__, "detail": str(e)}


# ---------------------------------------------------------------------------
# Raw socket client (pamqp based)
# ---------------------------------------------------------------------------

FRAME_END = 0xCE
PROP_ORDER = ["content_type", "content_encoding", "headers", "delivery_mode", "priority",
              "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
              "user_id", "app_id", "cluster_id"]
PROP_WIRE = {"message_type": "type"}


def jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": v.hex()}
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return repr(v)


def describe(ch: int, value: Any) -> dict:
    if isinstance(value, pheader.ContentHeader):
        props = {k: jsonable(v) for k, v in value.properties if v is not None}
        return {"frame": "header", "channel": ch, "body_size": value.body_size, "properties": props}
    if isinstance(value, pbody.ContentBody):
        return {"frame": "body", "channel": ch, "body": jsonable(value.value)}
    if isinstance(value, bytes):
        return {"frame": "raw", "channel": ch, "bytes": jsonable(value)}
    d = {"frame": "method", "channel": ch, "method": value.name.lower()}
    for k, v in value:
        d[k] = jsonable(v)
    if value.name in ("Channel.Close", "Connection.Close"):
        d["close_of"] = _method_name(value.class_id, value.method_id)
    return d


class Raw:
    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False
        self.eof_at: float | None = None
        self.last_send = time.monotonic()
        self.start: Any = None
        self.tune: Any = None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        self.last_send = time.monotonic()
        self.sock.sendall(data)

    def send_frame(self, ch: int, value: Any) -> None:
        self.send(pframe.marshal(value, ch))

    def send_method_raw(self, ch: int, class_id: int, method_id: int, args: bytes = b"",
                        frame_type: int = 1, end: int = FRAME_END) -> None:
        payload = struct.pack(">HH", class_id, method_id) + args
        self.send(struct.pack(">BHI", frame_type, ch, len(payload)) + payload + bytes([end]))

    def send_raw_frame(self, frame_type: int, ch: int, payload: bytes, end: int = FRAME_END) -> None:
        self.send(struct.pack(">BHI", frame_type, ch, len(payload)) + payload + bytes([end]))

    def _fill(self, n: int, deadline: float) -> bool:
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                self.eof = True
                self.eof_at = time.monotonic()
                return False
            if not data:
                self.eof = True
                self.eof_at = time.monotonic()
                return False
            self.buf += data
        return True

    def recv(self, timeout: float = 3.0) -> dict:
        """Return one frame description, or {"eof": ...} / {"timeout": True}."""
        deadline = time.monotonic() + timeout
        if not self._fill(7, deadline):
            if self.buf and self.buf.startswith(b"AMQP") and len(self.buf) >= 8:
                pass
            else:
                return self._tail()
        if self.buf.startswith(b"AMQP"):
            self._fill(8, deadline)
            hdr, self.buf = self.buf[:8], self.buf[8:]
            return {"frame": "protocol-header", "bytes": list(hdr), "repr": repr(hdr)}
        ftype, ch, size = struct.unpack(">BHI", self.buf[:7])
        if not self._fill(7 + size + 1, deadline):
            return self._tail()
        raw = self.buf[: 8 + size]
        self.buf = self.buf[8 + size:]
        payload = raw[7:-1]
        if raw[-1] != FRAME_END:
            return {"frame": "bad-frame-end", "type": ftype, "channel": ch, "end": raw[-1]}
        if ftype == 1:
            value = pframe._unmarshal_method_frame(payload)
            return describe(ch, value) | {"_value": value}
        if ftype == 2:
            value = pframe._unmarshal_header_frame(payload)
            d = describe(ch, value)
            # pamqp fills in defaults for absent properties; report only the
            # properties whose presence bit is set on the wire.
            flags = struct.unpack(">H", payload[12:14])[0] if len(payload) >= 14 else 0
            present = [n for i, n in enumerate(PROP_ORDER) if flags & (1 << (15 - i))]
            d["properties"] = {k: v for k, v in d["properties"].items()
                               if PROP_WIRE.get(k, k) in present}
            d["present_flags"] = present
            return d
        if ftype == 3:
            return {"frame": "body", "channel": ch, "body": jsonable(payload)}
        if ftype == 8:
            return {"frame": "heartbeat", "channel": ch}
        return {"frame": "unknown", "type": ftype, "channel": ch, "payload": jsonable(payload)}

    def _tail(self) -> dict:
        if self.eof:
            d: dict = {"eof": True, "secs_after_last_send": round((self.eof_at or 0) - self.last_send)}
            if self.buf:
                d["trailing"] = jsonable(self.buf)
            return d
        return {"timeout": True}

    def recv_method(self, timeout: float = 3.0, skip_heartbeats: bool = True) -> dict:
        while True:
            f = self.recv(timeout)
            if f.get("frame") == "heartbeat" and skip_heartbeats:
                continue
            return f

    def handshake(self, user: str = "guest", password: str = "guest", vhost: str = "/",
                  capabilities: dict | None = None, mechanism: str = "PLAIN",
                  response: str | None = None, tune: dict | None = None,
                  open_connection: bool = True) -> dict:
        """Do the connection handshake; return the first unexpected frame or {"ok": True}."""
        self.send(b"AMQP\x00\x00\x09\x01")
        f = self.recv_method(5)
        if f.get("method") != "connection.start":
            return f
        self.start = f.pop("_value")
        caps = capabilities if capabilities is not None else {
            "authentication_failure_close": True, "basic.nack": True,
            "connection.blocked": True, "consumer_cancel_notify": True,
            "exchange_exchange_bindings": True, "publisher_confirms": True,
        }
        if response is None:
            response = f"\0{user}\0{password}"
        self.send_frame(0, C.Connection.StartOk(
            client_properties={"product": "amqp-probe", "capabilities": caps},
            mechanism=mechanism, response=response, locale="en_US"))
        f = self.recv_method(5)
        if f.get("method") != "connection.tune":
            return f
        self.tune = f.pop("_value")
        t = {"channel_max": self.tune.channel_max, "frame_max": self.tune.frame_max, "heartbeat": 0}
        if tune:
            t.update(tune)
        self.send_frame(0, C.Connection.TuneOk(**t))
        if not open_connection:
            return {"ok": True}
        self.send_frame(0, C.Connection.Open(virtual_host=vhost))
        f = self.recv_method(5)
        if f.get("method") != "connection.openok":
            return f
        return {"ok": True}

    def open_channel(self, ch: int) -> dict:
        self.send_frame(ch, C.Channel.Open())
        return self.clean(self.recv_method())

    @staticmethod
    def clean(f: dict) -> dict:
        f = dict(f)
        f.pop("_value", None)
        return f

    def call(self, ch: int, method: Any, timeout: float = 3.0) -> dict:
        self.send_frame(ch, method)
        return self.clean(self.recv_method(timeout))

    def ping(self, ch: int) -> dict:
        """Synchronous harmless round trip on a channel."""
        return self.call(ch, C.Exchange.Declare(exchange="amq.direct", exchange_type="direct",
                                                passive=True))

    def drain(self, timeout: float = 2.0, max_frames: int = 50) -> list[dict]:
        """Collect frames until EOF/timeout; reply close-ok to connection.close."""
        out: list[dict] = []
        for _ in range(max_frames):
            f = self.recv_method(timeout)
            out.append(self.clean(f))
            if "eof" in f or "timeout" in f:
                break
            if f.get("method") == "connection.close":
                try:
                    self.send_frame(0, C.Connection.CloseOk())
                except OSError:
                    pass
                nxt = self.recv_method(timeout)
                out.append(self.clean(nxt))
                break
        return out


# ---------------------------------------------------------------------------
# Probe context
# ---------------------------------------------------------------------------

class Probe:
    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.conns: list[pika.BlockingConnection] = []
        self.raws: list[Raw] = []

    def params(self, **kw) -> pika.ConnectionParameters:
        base = dict(host=self.host, port=self.port,
                    credentials=pika.PlainCredentials("guest", "guest"),
                    connection_attempts=1, socket_timeout=5, blocked_connection_timeout=10,
                    stack_timeout=10)
        base.update(kw)
        return pika.ConnectionParameters(**base)

    def conn(self, **kw) -> pika.BlockingConnection:
        c = pika.BlockingConnection(self.params(**kw))
        self.conns.append(c)
        return c

    def raw(self) -> Raw:
        r = Raw(self.host, self.port)
        self.raws.append(r)
        return r

    def cleanup(self, queues=(), exchanges=()) -> None:
        c = pika.BlockingConnection(self.params())
        try:
            for q in queues:
                ch = c.channel()
                try:
                    ch.queue_delete(q)
                    ch.close()
                except Exception:  # noqa: BLE001
                    pass
            for x in exchanges:
                ch = c.channel()
                try:
                    ch.exchange_delete(x)
                    ch.close()
                except Exception:  # noqa: BLE001
                    pass
        finally:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass

    def finish(self) -> None:
        for c in self.conns:
            try:
                if c.is_open:
                    c.close()
            except Exception:  # noqa: BLE001
                pass
        for r in self.raws:
            r.close()
        self.conns.clear()
        self.raws.clear()


CASES: list[tuple[str, str, Callable, tuple, tuple]] = []


def case(name: str, desc: str, queues=(), exchanges=()):
    def deco(fn):
        CASES.append((name, desc, fn, tuple(queues), tuple(exchanges)))
        return fn
    return deco


def sync_ping(ch) -> None:
    """A harmless synchronous round trip on a pika channel."""
    ch.exchange_declare("amq.direct", passive=True)


def publish_then_ping(ch, exchange, rk, body=b"x", **kw):
    def fn():
        ch.basic_publish(exchange, rk, body, **kw)
        sync_ping(ch)
    return fn


def collect(conn, ch, n: int, timeout: float = 3.0, box: list | None = None) -> list:
    """Wait until box (filled by a consume callback) has n items or timeout."""
    deadline = time.monotonic() + timeout
    while len(box) < n and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    return box


def shape(name: str, prefix: str) -> dict:
    rest = name[len(prefix):] if name.startswith(prefix) else None
    return {
        "prefix_ok": name.startswith(prefix),
        "total_len": len(name),
        "suffix_len": len(rest) if rest is not None else None,
        "suffix_charset": (sorted(set("A-Z" if c.isupper() else "a-z" if c.islower() else "0-9" if c.isdigit() else c for c in rest))
                           if rest is not None else None),
    }


# ---------------------------------------------------------------------------
# Cases: missing entities
# ---------------------------------------------------------------------------

Q = "probe.q"
Q2 = "probe.q2"
X = "probe.x"
X2 = "probe.x2"


@case("queue.declare passive missing", "queue.declare(passive) of a missing queue", [Q])
def _c(p: Probe):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare(Q, passive=True))


@case("exchange.declare passive missing", "exchange.declare(passive) of a missing exchange", exchanges=[X])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_declare(X, passive=True))


@case("basic.publish missing exchange", "publish to a missing exchange, then a sync round trip", exchanges=[X])
def _c(p):
    ch = p.conn().channel()
    return attempt(publish_then_ping(ch, X, "rk"))


@case("basic.publish missing exchange mandatory", "publish mandatory to missing exchange", exchanges=[X])
def _c(p):
    ch = p.conn().channel()
    return attempt(publish_then_ping(ch, X, "rk", mandatory=True))


@case("queue.bind missing exchange", "queue.bind of existing queue to missing exchange", [Q], [X])
def _c(p):
    ch = p.conn().channel()
    ch.queue_declare(Q)
    return attempt(lambda: ch.queue_bind(Q, X, "rk"))


@case("queue.bind missing queue", "queue.bind of missing queue to amq.direct", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_bind(Q, "amq.direct", "rk"))


@case("queue.bind missing both", "queue.bind where queue and exchange are both missing", [Q], [X])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_bind(Q, X, "rk"))


@case("queue.unbind missing queue", "queue.unbind of missing queue from amq.direct", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_unbind(Q, "amq.direct", "rk"))


@case("queue.unbind missing exchange", "queue.unbind of existing queue from missing exchange", [Q], [X])
def _c(p):
    ch = p.conn().channel()
    ch.queue_declare(Q)
    return attempt(lambda: ch.queue_unbind(Q, X, "rk"))


@case("queue.unbind missing binding", "queue.unbind where both exist but binding does not", [Q])
def _c(p):
    ch = p.conn().channel()
    ch.queue_declare(Q)
    return attempt(lambda: ch.queue_unbind(Q, "amq.direct", "nope"))


@case("exchange.bind missing source", "exchange.bind(destination=existing, source=missing)", exchanges=[X, X2])
def _c(p):
    ch = p.conn().channel()
    ch.exchange_declare(X, "direct")
    return attempt(lambda: ch.exchange_bind(destination=X, source=X2, routing_key="rk"))


@case("exchange.bind missing destination", "exchange.bind(destination=missing, source=existing)", exchanges=[X, X2])
def _c(p):
    ch = p.conn().channel()
    ch.exchange_declare(X, "direct")
    return attempt(lambda: ch.exchange_bind(destination=X2, source=X, routing_key="rk"))


@case("exchange.bind missing both", "exchange.bind where both are missing", exchanges=[X, X2])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_bind(destination=X2, source=X, routing_key="rk"))


@case("exchange.unbind missing binding", "exchange.unbind where both exist but binding does not", exchanges=[X, X2])
def _c(p):
    ch = p.conn().channel()
    ch.exchange_declare(X, "direct")
    ch.exchange_declare(X2, "direct")
    return attempt(lambda: ch.exchange_unbind(destination=X2, source=X, routing_key="rk"))


@case("basic.consume missing queue", "basic.consume on a missing queue", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.basic_consume(Q, lambda *a: None))


@case("basic.get missing queue", "basic.get on a missing queue", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.basic_get(Q))


@case("queue.purge missing queue", "queue.purge on a missing queue", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_purge(Q))


@case("queue.delete missing", "queue.delete of a missing queue (raw, to see delete-ok fields)", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    return {
        "plain": r.call(1, C.Queue.Delete(queue=Q)),
        "if_unused_if_empty": r.call(1, C.Queue.Delete(queue=Q, if_unused=True, if_empty=True)),
    }


@case("exchange.delete missing", "exchange.delete of a missing exchange (plain and if_unused)", exchanges=[X])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    return {
        "plain": r.call(1, C.Exchange.Delete(exchange=X)),
        "if_unused": r.call(1, C.Exchange.Delete(exchange=X, if_unused=True)),
    }


@case("queue.delete if_unused violated", "queue with a consumer (other channel), delete if_unused", [Q])
def _c(p):
    c = p.conn()
    ch1 = c.channel()
    ch1.queue_declare(Q)
    ch1.basic_consume(Q, lambda *a: None)
    ch2 = c.channel()
    return attempt(lambda: ch2.queue_delete(Q, if_unused=True))


@case("queue.delete if_empty violated", "queue with 1 ready message, delete if_empty", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare(Q)
    ch.basic_publish("", Q, b"m")
    return attempt(lambda: ch.queue_delete(Q, if_empty=True))


@case("queue.delete if_empty with only unacked", "1 message delivered but unacked (other channel), delete if_empty", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare(Q)
    ch.basic_publish("", Q, b"m")
    ch2 = c.channel()
    got = ch2.basic_get(Q, auto_ack=False)
    return {"get": summ(got[0]), "delete": attempt(lambda: ch.queue_delete(Q, if_empty=True))}


@case("queue.delete if_unused+if_empty both violated", "consumer and ready message, delete with both flags", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare(Q)
    ch.basic_publish("", Q, b"m")
    ch3 = c.channel()
    ch3.basic_qos(prefetch_count=1)
    ch3.basic_publish("", Q, b"m2")
    ch3.basic_consume(Q, lambda *a: None)
    c.process_data_events(time_limit=0.2)
    ch2 = c.channel()
    return attempt(lambda: ch2.queue_delete(Q, if_unused=True, if_empty=True))


@case("exchange.delete if_unused violated (queue binding)", "exchange with a queue bound to it, delete if_unused", [Q], [X])
def _c(p):
    ch = p.conn().channel()
    ch.exchange_declare(X, "direct")
    ch.queue_declare(Q)
    ch.queue_bind(Q, X, "rk")
    return attempt(lambda: ch.exchange_delete(X, if_unused=True))


@case("exchange.delete if_unused exchange only a destination", "X2 bound as destination of X; delete X2 if_unused", exchanges=[X, X2])
def _c(p):
    ch = p.conn().channel()
    ch.exchange_declare(X, "direct")
    ch.exchange_declare(X2, "direct")
    ch.exchange_bind(destination=X2, source=X, routing_key="rk")
    return attempt(lambda: ch.exchange_delete(X2, if_unused=True))


@case("exchange.delete if_unused exchange is e2e source", "X2 bound as destination of X; delete X if_unused", exchanges=[X, X2])
def _c(p):
    ch = p.conn().channel()
    ch.exchange_declare(X, "direct")
    ch.exchange_declare(X2, "direct")
    ch.exchange_bind(destination=X2, source=X, routing_key="rk")
    return attempt(lambda: ch.exchange_delete(X, if_unused=True))


# ---------------------------------------------------------------------------
# Redeclare with different properties
# ---------------------------------------------------------------------------

def redeclare_queue(p, first: dict, second: dict):
    c = p.conn()
    ch = c.channel()
    r1 = attempt(lambda: ch.queue_declare(Q, **first))
    ch2 = c.channel()
    r2 = attempt(lambda: ch2.queue_declare(Q, **second))
    return {"first": r1, "second": r2}


@case("queue redeclare durable differs", "declare durable=False then durable=True", [Q])
def _c(p):
    return redeclare_queue(p, {}, {"durable": True})


@case("queue redeclare durable differs (reverse)", "declare durable=True then durable=False", [Q])
def _c(p):
    return redeclare_queue(p, {"durable": True}, {})


@case("queue redeclare auto_delete differs", "declare auto_delete=False then True", [Q])
def _c(p):
    return redeclare_queue(p, {}, {"auto_delete": True})


@case("queue redeclare exclusive differs (excl then non-excl, same conn)", "exclusive=True then exclusive=False on same connection", [Q])
def _c(p):
    return redeclare_queue(p, {"exclusive": True}, {})


@case("queue redeclare exclusive differs (non-excl then excl, same conn)", "exclusive=False then exclusive=True on same connection", [Q])
def _c(p):
    return redeclare_queue(p, {}, {"exclusive": True})


@case("queue redeclare x-message-ttl differs", "x-message-ttl 1000 then 2000", [Q])
def _c(p):
    return redeclare_queue(p, {"arguments": {"x-message-ttl": 1000}}, {"arguments": {"x-message-ttl": 2000}})


@case("queue redeclare x-max-length differs", "x-max-length 10 then 20", [Q])
def _c(p):
    return redeclare_queue(p, {"arguments": {"x-max-length": 10}}, {"arguments": {"x-max-length": 20}})


@case("queue redeclare arg added", "no args then x-max-length 10", [Q])
def _c(p):
    return redeclare_queue(p, {}, {"arguments": {"x-max-length": 10}})


@case("queue redeclare arg removed", "x-max-length 10 then no args", [Q])
def _c(p):
    return redeclare_queue(p, {"arguments": {"x-max-length": 10}}, {})


@case("queue redeclare non-validated arg differs", "x-foo 'a' then x-foo 'b' (unknown args)", [Q])
def _c(p):
    return redeclare_queue(p, {"arguments": {"x-foo": "a"}}, {"arguments": {"x-foo": "b"}})


@case("queue redeclare non-validated arg added", "no args then x-foo 'a'", [Q])
def _c(p):
    return redeclare_queue(p, {}, {"arguments": {"x-foo": "a"}})


@case("queue redeclare x-queue-type classic added", "no args then x-queue-type=classic", [Q])
def _c(p):
    return redeclare_queue(p, {}, {"arguments": {"x-queue-type": "classic"}})


@case("queue redeclare x-dead-letter-exchange differs", "x-dead-letter-exchange 'a' then 'b'", [Q])
def _c(p):
    return redeclare_queue(p, {"arguments": {"x-dead-letter-exchange": "a"}},
                           {"arguments": {"x-dead-letter-exchange": "b"}})


@case("queue redeclare x-expires differs", "x-expires 100000 then 200000", [Q])
def _c(p):
    return redeclare_queue(p, {"arguments": {"x-expires": 100000}}, {"arguments": {"x-expires": 200000}})


@case("queue redeclare same props", "durable + args identical: declare-ok", [Q])
def _c(p):
    return redeclare_queue(p, {"durable": True, "arguments": {"x-max-length": 10}},
                           {"durable": True, "arguments": {"x-max-length": 10}})


@case("queue.declare invalid arg type", "x-max-length='abc' (string)", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare(Q, arguments={"x-max-length": "abc"}))


@case("queue.declare invalid arg value", "x-max-length=-1", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare(Q, arguments={"x-max-length": -1}))


@case("queue.declare invalid x-message-ttl", "x-message-ttl=-1", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare(Q, arguments={"x-message-ttl": -1}))


@case("queue.declare invalid x-expires 0", "x-expires=0", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare(Q, arguments={"x-expires": 0}))


@case("queue.declare invalid x-overflow", "x-overflow='nope'", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare(Q, arguments={"x-overflow": "nope"}))


@case("queue.declare unknown x-queue-type", "x-queue-type='nope'", [Q])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare(Q, arguments={"x-queue-type": "nope"}))


def redeclare_exchange(p, first: dict, second: dict):
    c = p.conn()
    ch = c.channel()
    r1 = attempt(lambda: ch.exchange_declare(X, **first))
    ch2 = c.channel()
    r2 = attempt(lambda: ch2.exchange_declare(X, **second))
    return {"first": r1, "second": r2}


@case("exchange redeclare type differs", "direct then fanout", exchanges=[X])
def _c(p):
    return redeclare_exchange(p, {"exchange_type": "direct"}, {"exchange_type": "fanout"})


@case("exchange redeclare durable differs", "durable=False then True", exchanges=[X])
def _c(p):
    return redeclare_exchange(p, {"exchange_type": "direct"}, {"exchange_type": "direct", "durable": True})


@case("exchange redeclare auto_delete differs", "auto_delete=False then True", exchanges=[X])
def _c(p):
    return redeclare_exchange(p, {"exchange_type": "direct"}, {"exchange_type": "direct", "auto_delete": True})


@case("exchange redeclare internal differs", "internal=False then True", exchanges=[X])
def _c(p):
    return redeclare_exchange(p, {"exchange_type": "direct"}, {"exchange_type": "direct", "internal": True})


@case("exchange redeclare arguments differ", "alternate-exchange 'a' then 'b'", exchanges=[X])
def _c(p):
    return redeclare_exchange(p, {"exchange_type": "direct", "arguments": {"alternate-exchange": "a"}},
                              {"exchange_type": "direct", "arguments": {"alternate-exchange": "b"}})


@case("exchange redeclare argument added", "no args then alternate-exchange 'a'", exchanges=[X])
def _c(p):
    return redeclare_exchange(p, {"exchange_type": "direct"},
                              {"exchange_type": "direct", "arguments": {"alternate-exchange": "a"}})


@case("exchange redeclare unknown argument added", "no args then x-foo 'a'", exchanges=[X])
def _c(p):
    return redeclare_exchange(p, {"exchange_type": "direct"},
                              {"exchange_type": "direct", "arguments": {"x-foo": "a"}})


@case("exchange redeclare passive with different type", "direct, then passive declare type=fanout", exchanges=[X])
def _c(p):
    return redeclare_exchange(p, {"exchange_type": "direct"}, {"exchange_type": "fanout", "passive": True})


@case("queue passive redeclare with different props", "declare, then passive declare durable=True + args", [Q])
def _c(p):
    return redeclare_queue(p, {}, {"passive": True, "durable": True, "arguments": {"x-max-length": 1}})


# ---------------------------------------------------------------------------
# Reserved names, types, internal, default exchange
# ---------------------------------------------------------------------------

@case("exchange.declare amq.foo", "declare exchange 'amq.foo' (reserved prefix)", exchanges=["amq.foo"])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_declare("amq.foo", "direct"))


@case("exchange.declare amq.foo passive", "passive declare of exchange 'amq.foo'")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_declare("amq.foo", "direct", passive=True))


@case("exchange.declare amq.direct same props", "redeclare amq.direct as durable direct")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_declare("amq.direct", "direct", durable=True))


@case("exchange.declare amq.direct different type", "redeclare amq.direct as fanout")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_declare("amq.direct", "fanout", durable=True))


@case("exchange.declare default exchange ''", "exchange.declare of '' (non-passive, direct, durable)")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_declare("", "direct", durable=True))


@case("exchange.declare default exchange '' passive", "passive exchange.declare of ''")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_declare("", passive=True))


@case("exchange.declare amq.default passive", "passive exchange.declare of 'amq.default'")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_declare("amq.default", passive=True))


@case("exchange.declare unknown type", "exchange type 'x-nope'", exchanges=[X])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_declare(X, "x-nope"))


@case("exchange.declare unknown type passive on existing", "existing direct exchange, passive declare type 'x-nope'", exchanges=[X])
def _c(p):
    ch = p.conn().channel()
    ch.exchange_declare(X, "direct")
    return attempt(lambda: ch.exchange_declare(X, "x-nope", passive=True))


@case("exchange.declare empty type", "exchange type '' (non-passive)", exchanges=[X])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    return r.call(1, C.Exchange.Declare(exchange=X, exchange_type=""))


@case("exchange.delete amq.direct", "delete built-in exchange amq.direct")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_delete("amq.direct"))


@case("exchange.delete default ''", "delete default exchange ''")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.exchange_delete(""))


@case("queue.declare amq.foo", "queue.declare of 'amq.foo'", ["amq.foo"])
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare("amq.foo"))


@case("queue.declare amq.foo passive", "passive queue.declare of 'amq.foo'")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare("amq.foo", passive=True))


@case("queue.declare passive empty name", "passive queue.declare of '' (no last queue on channel)")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare("", passive=True))


@case("publish to internal exchange", "publish to an internal=True exchange", exchanges=[X])
def _c(p):
    ch = p.conn().channel()
    ch.exchange_declare(X, "fanout", internal=True)
    return attempt(publish_then_ping(ch, X, "rk"))


@case("publish to amq.default", "publish to exchange 'amq.default' routed to an existing queue", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    r = attempt(publish_then_ping(ch, "amq.default", Q))
    ch2 = c.channel()
    q = attempt(lambda: ch2.queue_declare(Q, passive=True))
    return {"publish": r, "queue_after": q}


@case("queue.bind to default exchange", "queue.bind(queue, '', rk)", [Q])
def _c(p):
    ch = p.conn().channel()
    ch.queue_declare(Q)
    return attempt(lambda: ch.queue_bind(Q, "", "rk"))


@case("queue.unbind from default exchange", "queue.unbind(queue, '', queue)", [Q])
def _c(p):
    ch = p.conn().channel()
    ch.queue_declare(Q)
    return attempt(lambda: ch.queue_unbind(Q, "", Q))


@case("exchange.bind to internal source / dest", "bind internal exchange as source: allowed?", exchanges=[X, X2])
def _c(p):
    ch = p.conn().channel()
    ch.exchange_declare(X, "fanout", internal=True)
    ch.exchange_declare(X2, "fanout")
    return {"internal_as_destination": attempt(lambda: ch.exchange_bind(destination=X, source=X2)),
            "internal_as_source": attempt(lambda: ch.exchange_bind(destination=X2, source=X))}


# ---------------------------------------------------------------------------
# Exclusive queue from another connection
# ---------------------------------------------------------------------------

QX = "probe.excl"


def excl_other(p, op: Callable) -> dict:
    c1 = p.conn()
    ch1 = c1.channel()
    ch1.queue_declare(QX, exclusive=True)
    c2 = p.conn()
    ch2 = c2.channel()
    return attempt(lambda: op(ch2))


@case("exclusive other-conn declare", "queue.declare(exclusive=True) same name from another connection", [QX])
def _c(p):
    return excl_other(p, lambda ch: ch.queue_declare(QX, exclusive=True))


@case("exclusive other-conn declare non-exclusive", "queue.declare(exclusive=False) from another connection", [QX])
def _c(p):
    return excl_other(p, lambda ch: ch.queue_declare(QX))


@case("exclusive other-conn passive declare", "passive declare from another connection", [QX])
def _c(p):
    return excl_other(p, lambda ch: ch.queue_declare(QX, passive=True))


@case("exclusive other-conn consume", "basic.consume from another connection", [QX])
def _c(p):
    return excl_other(p, lambda ch: ch.basic_consume(QX, lambda *a: None))


@case("exclusive other-conn bind", "queue.bind from another connection", [QX])
def _c(p):
    return excl_other(p, lambda ch: ch.queue_bind(QX, "amq.direct", "rk"))


@case("exclusive other-conn unbind", "queue.unbind from another connection", [QX])
def _c(p):
    return excl_other(p, lambda ch: ch.queue_unbind(QX, "amq.direct", "rk"))


@case("exclusive other-conn delete", "queue.delete from another connection", [QX])
def _c(p):
    return excl_other(p, lambda ch: ch.queue_delete(QX))


@case("exclusive other-conn purge", "queue.purge from another connection", [QX])
def _c(p):
    return excl_other(p, lambda ch: ch.queue_purge(QX))


@case("exclusive other-conn get", "basic.get from another connection", [QX])
def _c(p):
    return excl_other(p, lambda ch: ch.basic_get(QX))


@case("exclusive other-conn publish", "publish to the exclusive queue via default exchange from another connection", [QX])
def _c(p):
    c1 = p.conn()
    ch1 = c1.channel()
    ch1.queue_declare(QX, exclusive=True)
    c2 = p.conn()
    ch2 = c2.channel()
    r = attempt(publish_then_ping(ch2, "", QX))
    q = attempt(lambda: ch1.queue_declare(QX, passive=True))
    return {"publish": r, "owner_sees": q}


@case("exclusive queue deleted on owner close", "owner connection closes; passive declare from other", [QX])
def _c(p):
    c1 = p.conn()
    ch1 = c1.channel()
    ch1.queue_declare(QX, exclusive=True)
    c1.close()
    ch2 = p.conn().channel()
    return attempt(lambda: ch2.queue_declare(QX, passive=True))


@case("exclusive consumer when queue has consumers", "consumer on ch1, exclusive consume on ch2", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    ch.basic_consume(Q, lambda *a: None)
    ch2 = c.channel()
    return attempt(lambda: ch2.basic_consume(Q, lambda *a: None, exclusive=True))


@case("consume when queue has exclusive consumer", "exclusive consumer on ch1, plain consume on ch2", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    ch.basic_consume(Q, lambda *a: None, exclusive=True)
    ch2 = c.channel()
    return attempt(lambda: ch2.basic_consume(Q, lambda *a: None))


@case("basic.get when queue has exclusive consumer", "exclusive consumer on ch1, basic.get on ch2", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    ch.basic_consume(Q, lambda *a: None, exclusive=True)
    ch2 = c.channel()
    return attempt(lambda: ch2.basic_get(Q))


@case("auto_delete queue after last consumer cancels", "declare auto_delete, consume, cancel, passive declare", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    before = attempt(lambda: ch.queue_declare(Q, auto_delete=True))
    tag = ch.basic_consume(Q, lambda *a: None)
    ch.basic_cancel(tag)
    ch2 = c.channel()
    return {"declare": before, "after_cancel_passive": attempt(lambda: ch2.queue_declare(Q, passive=True))}


@case("auto_delete queue never consumed", "declare auto_delete, no consumer, close connection, passive declare", [Q])
def _c(p):
    c = p.conn()
    c.channel().queue_declare(Q, auto_delete=True)
    c.close()
    ch = p.conn().channel()
    return attempt(lambda: ch.queue_declare(Q, passive=True))


@case("auto_delete exchange after last unbind", "auto_delete exchange, bind queue, unbind, passive declare", [Q], [X])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.exchange_declare(X, "direct", auto_delete=True)
    ch.queue_declare(Q)
    ch.queue_bind(Q, X, "rk")
    ch.queue_unbind(Q, X, "rk")
    ch2 = c.channel()
    return attempt(lambda: ch2.exchange_declare(X, passive=True))


@case("auto_delete exchange after bound queue deleted", "auto_delete exchange, bind queue, delete queue, passive declare", [Q], [X])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.exchange_declare(X, "direct", auto_delete=True)
    ch.queue_declare(Q)
    ch.queue_bind(Q, X, "rk")
    ch.queue_delete(Q)
    ch2 = c.channel()
    return attempt(lambda: ch2.exchange_declare(X, passive=True))


@case("mandatory to fanout with no bindings", "publish mandatory to a fresh fanout exchange", exchanges=[X])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.exchange_declare(X, "fanout")
    returned = []
    ch.add_on_return_callback(lambda _ch, method, props, body: returned.append(summ(method)))
    ch.basic_publish(X, "", b"x", mandatory=True)
    sync_ping(ch)
    c.process_data_events(time_limit=0.2)
    return returned


@case("queue.declare exclusive server-named: props", "declare '' (not exclusive, not auto_delete): allowed?")
def _c(p):
    ch = p.conn().channel()
    r = attempt(lambda: ch.queue_declare(""))
    name = r.get("result", {}).get("queue")
    if name:
        ch.queue_delete(name)
        r["result"]["queue"] = "amq.gen-<22 chars>" if re.fullmatch(
            r"amq\.gen-[A-Za-z0-9_\-]{22}", name) else name
    return r


# ---------------------------------------------------------------------------
# basic.* misuse
# ---------------------------------------------------------------------------

@case("basic.qos prefetch_size!=0", "basic.qos(prefetch_size=1)")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.basic_qos(prefetch_size=1))


@case("basic.qos global prefetch", "basic.qos(prefetch_count=5, global=True) (accepted?)")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.basic_qos(prefetch_count=5, global_qos=True))


@case("basic.publish immediate=true", "raw basic.publish with immediate=1 then ping", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(1, C.Basic.Publish(exchange="", routing_key=Q, immediate=True))
    r.send_frame(1, pheader.ContentHeader(0, 1, C.Basic.Properties()))
    r.send_frame(1, pbody.ContentBody(b"x"))
    r.send_frame(1, C.Exchange.Declare(exchange="amq.direct", passive=True))
    return r.drain()


@case("basic.consume duplicate tag", "raw: basic.consume twice with tag 'ctag1' on the same channel", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Queue.Declare(queue=Q))
    first = r.call(1, C.Basic.Consume(queue=Q, consumer_tag="ctag1"))
    r.send_frame(1, C.Basic.Consume(queue=Q, consumer_tag="ctag1"))
    return {"first": first, "second": r.drain()}


@case("basic.consume duplicate tag other channel", "same tag on two different channels is fine?", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.open_channel(2)
    r.call(1, C.Queue.Declare(queue=Q))
    return {"ch1": r.call(1, C.Basic.Consume(queue=Q, consumer_tag="ctag1")),
            "ch2": r.call(2, C.Basic.Consume(queue=Q, consumer_tag="ctag1"))}


@case("basic.cancel unknown tag", "basic.cancel of a tag that does not exist")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    return r.call(1, C.Basic.Cancel(consumer_tag="nope"))


@case("basic.ack unknown tag", "basic.ack(99) with nothing delivered, then ping")
def _c(p):
    ch = p.conn().channel()

    def fn():
        ch.basic_ack(99)
        sync_ping(ch)
    return attempt(fn)


@case("basic.ack twice", "get 1 msg (manual ack), ack it twice, then ping", [Q])
def _c(p):
    ch = p.conn().channel()
    ch.confirm_delivery()
    ch.queue_declare(Q)
    ch.basic_publish("", Q, b"m")
    m, _, _ = ch.basic_get(Q)

    def fn():
        ch.basic_ack(m.delivery_tag)
        ch.basic_ack(m.delivery_tag)
        sync_ping(ch)
    return attempt(fn)


@case("basic.ack tag from auto_ack get", "basic.get(no_ack=True) then ack its tag", [Q])
def _c(p):
    ch = p.conn().channel()
    ch.confirm_delivery()
    ch.queue_declare(Q)
    ch.basic_publish("", Q, b"m")
    m, _, _ = ch.basic_get(Q, auto_ack=True)

    def fn():
        ch.basic_ack(m.delivery_tag)
        sync_ping(ch)
    return {"tag": m.delivery_tag, "ack": attempt(fn)}


@case("basic.reject unknown tag", "basic.reject(42) with nothing delivered, then ping")
def _c(p):
    ch = p.conn().channel()

    def fn():
        ch.basic_reject(42, requeue=True)
        sync_ping(ch)
    return attempt(fn)


@case("basic.nack unknown tag", "basic.nack(42, multiple=False) with nothing delivered, then ping")
def _c(p):
    ch = p.conn().channel()

    def fn():
        ch.basic_nack(42, multiple=False)
        sync_ping(ch)
    return attempt(fn)


@case("basic.nack multiple tag 0 nothing outstanding", "basic.nack(0, multiple=True), then ping")
def _c(p):
    ch = p.conn().channel()

    def fn():
        ch.basic_nack(0, multiple=True)
        sync_ping(ch)
    return attempt(fn)


@case("basic.ack multiple tag 0 nothing outstanding", "basic.ack(0, multiple=True), then ping")
def _c(p):
    ch = p.conn().channel()

    def fn():
        ch.basic_ack(0, multiple=True)
        sync_ping(ch)
    return attempt(fn)


@case("basic.ack tag 0 not multiple", "basic.ack(0, multiple=False), then ping")
def _c(p):
    ch = p.conn().channel()

    def fn():
        ch.basic_ack(0, multiple=False)
        sync_ping(ch)
    return attempt(fn)


@case("basic.ack multiple tag 0 acks all outstanding", "get 3 (manual), ack(0, multiple=True), check queue", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare(Q)
    for i in range(3):
        ch.basic_publish("", Q, b"m%d" % i)
    tags = [ch.basic_get(Q)[0].delivery_tag for _ in range(3)]

    def fn():
        ch.basic_ack(0, multiple=True)
        sync_ping(ch)
    r = attempt(fn)
    c.channel().close()  # noop
    ch.close()  # if not acked, messages return to queue
    ch2 = c.channel()
    q = ch2.queue_declare(Q, passive=True)
    return {"tags": tags, "ack": r, "queue_after_channel_close": summ(q)}


@case("basic.ack multiple unknown higher tag", "get 2 (tags 1,2), ack(5, multiple=True), then ping", [Q])
def _c(p):
    ch = p.conn().channel()
    ch.confirm_delivery()
    ch.queue_declare(Q)
    for i in range(2):
        ch.basic_publish("", Q, b"m%d" % i)
    for _ in range(2):
        ch.basic_get(Q)

    def fn():
        ch.basic_ack(5, multiple=True)
        sync_ping(ch)
    return attempt(fn)


@case("basic.reject requeue=false drops", "get, reject(requeue=False), passive declare count", [Q])
def _c(p):
    ch = p.conn().channel()
    ch.confirm_delivery()
    ch.queue_declare(Q)
    ch.basic_publish("", Q, b"m")
    m, _, _ = ch.basic_get(Q)
    ch.basic_reject(m.delivery_tag, requeue=False)
    return summ(ch.queue_declare(Q, passive=True))


@case("basic.recover requeue=false", "basic.recover(requeue=False) with nothing outstanding")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.basic_recover(requeue=False))


@case("basic.recover-async", "raw basic.recover-async(requeue=True) then ping")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(1, C.Basic.RecoverAsync(requeue=True))
    return r.ping(1)


@case("channel.flow active=false", "raw channel.flow(active=False)")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(1, C.Channel.Flow(active=False))
    return r.drain()


@case("channel.flow active=true", "raw channel.flow(active=True)")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    return r.call(1, C.Channel.Flow(active=True))


@case("basic.get empty", "basic.get on an empty queue (raw: get-empty fields)", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Queue.Declare(queue=Q))
    return r.call(1, C.Basic.Get(queue=Q))


# ---------------------------------------------------------------------------
# tx / confirm
# ---------------------------------------------------------------------------

@case("tx.commit without tx.select", "tx.commit on non-transactional channel")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.tx_commit())


@case("tx.rollback without tx.select", "tx.rollback on non-transactional channel")
def _c(p):
    ch = p.conn().channel()
    return attempt(lambda: ch.tx_rollback())


@case("confirm.select then tx.select", "confirm mode then tx.select")
def _c(p):
    ch = p.conn().channel()
    ch.confirm_delivery()
    return attempt(lambda: ch.tx_select())


@case("tx.select then confirm.select", "tx mode then confirm.select")
def _c(p):
    ch = p.conn().channel()
    ch.tx_select()
    return attempt(lambda: ch.confirm_delivery())


@case("tx.select twice / confirm.select twice", "idempotent?")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.open_channel(2)
    return {"tx1": r.call(1, C.Tx.Select()), "tx2": r.call(1, C.Tx.Select()),
            "c1": r.call(2, C.Confirm.Select()), "c2": r.call(2, C.Confirm.Select())}


@case("tx publish then rollback", "tx.select, publish, rollback, count", [Q])
def _c(p):
    ch = p.conn().channel()
    ch.queue_declare(Q)
    ch.tx_select()
    ch.basic_publish("", Q, b"m")
    ch.tx_rollback()
    a = summ(ch.queue_declare(Q, passive=True))
    ch.basic_publish("", Q, b"m")
    ch.tx_commit()
    b = summ(ch.queue_declare(Q, passive=True))
    return {"after_rollback": a, "after_commit": b}


@case("confirm publish unroutable", "confirm mode, publish to '' with rk of missing queue (no mandatory): ack?", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Confirm.Select())
    r.send_frame(1, C.Basic.Publish(exchange="", routing_key=Q))
    r.send_frame(1, pheader.ContentHeader(0, 1, C.Basic.Properties()))
    r.send_frame(1, pbody.ContentBody(b"x"))
    r.send_frame(1, C.Basic.Publish(exchange="", routing_key=Q, mandatory=True))
    r.send_frame(1, pheader.ContentHeader(0, 1, C.Basic.Properties()))
    r.send_frame(1, pbody.ContentBody(b"y"))
    out = [r.clean(r.recv_method(2)) for _ in range(4)]
    return out


# ---------------------------------------------------------------------------
# mandatory return
# ---------------------------------------------------------------------------

@case("basic.publish mandatory unroutable", "publish mandatory to amq.direct with unbound rk (raw frames)")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(1, C.Basic.Publish(exchange="amq.direct", routing_key="probe.nobody", mandatory=True))
    r.send_frame(1, pheader.ContentHeader(0, 5, C.Basic.Properties(content_type="text/plain",
                                                                    message_id="mid1")))
    r.send_frame(1, pbody.ContentBody(b"hello"))
    return [r.clean(r.recv_method(2)) for _ in range(3)]


@case("basic.publish mandatory unroutable default exchange", "mandatory to '' with rk of missing queue (pika)", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    returned = []
    ch.add_on_return_callback(lambda _ch, method, props, body: returned.append(
        {"method": summ(method), "body": body.decode()}))
    ch.basic_publish("", Q, b"ret", mandatory=True)
    sync_ping(ch)
    c.process_data_events(time_limit=0.2)
    return returned


@case("basic.publish mandatory to missing queue in confirm mode", "return comes before ack? (raw)", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Confirm.Select())
    r.send_frame(1, C.Basic.Publish(exchange="", routing_key=Q, mandatory=True))
    r.send_frame(1, pheader.ContentHeader(0, 1, C.Basic.Properties()))
    r.send_frame(1, pbody.ContentBody(b"x"))
    return [r.clean(r.recv_method(2)) for _ in range(4)]


# ---------------------------------------------------------------------------
# Channel-level protocol errors (raw)
# ---------------------------------------------------------------------------

@case("channel.open twice", "channel.open on an already open channel")
def _c(p):
    r = p.raw()
    r.handshake()
    first = r.open_channel(1)
    r.send_frame(1, C.Channel.Open())
    return {"first": first, "second": r.drain()}


@case("method on unopened channel", "queue.declare on channel 5 never opened")
def _c(p):
    r = p.raw()
    r.handshake()
    r.send_frame(5, C.Queue.Declare(queue="", exclusive=True))
    return r.drain()


@case("method on channel closed by client", "channel.close/close-ok on ch 1, then queue.declare on ch 1")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    r.send_frame(1, C.Queue.Declare(queue="", exclusive=True))
    return r.drain()


@case("method on channel closed by server (after close-ok)", "404 on ch 1, close-ok, then queue.declare on ch 1")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Queue.Declare(queue="probe.nope", passive=True))
    r.send_frame(1, C.Channel.CloseOk())
    r.send_frame(1, C.Queue.Declare(queue="", exclusive=True))
    return r.drain()


@case("channel.close on unopened channel", "channel.close on channel 7 never opened")
def _c(p):
    r = p.raw()
    r.handshake()
    r.send_frame(7, C.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    return r.drain()


@case("channel.close-ok on unopened channel", "channel.close-ok on channel 7 never opened, then ping ch 1")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(7, C.Channel.CloseOk())
    return {"ping": r.ping(1), "rest": r.drain(1)}


@case("channel number > channel_max", "channel.open on channel_max+1 (channel_max negotiated = server's)")
def _c(p):
    r = p.raw()
    r.handshake()
    cm = r.tune.channel_max
    r.send_frame(cm + 1, C.Channel.Open())
    return {"channel_max": cm, "frames": r.drain()}


@case("channel number > negotiated channel_max (client lowered)", "tune-ok channel_max=10, open channel 11")
def _c(p):
    r = p.raw()
    r.handshake(tune={"channel_max": 10})
    r.send_frame(11, C.Channel.Open())
    return r.drain()


@case("channel.open on channel 0", "channel.open on channel 0")
def _c(p):
    r = p.raw()
    r.handshake()
    r.send_frame(0, C.Channel.Open())
    return r.drain()


@case("queue.declare on channel 0", "channel-class method on channel 0")
def _c(p):
    r = p.raw()
    r.handshake()
    r.send_frame(0, C.Queue.Declare(queue="", exclusive=True))
    return r.drain()


@case("frames after channel.close before close-ok", "404 on ch1, then send queue.declare on ch1 (ignored?), then close-ok, ping ch2")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.open_channel(2)
    err = r.call(1, C.Queue.Declare(queue="probe.nope", passive=True))
    r.send_frame(1, C.Queue.Declare(queue="probe.nope", passive=True))
    ping2 = r.ping(2)
    r.send_frame(1, C.Channel.CloseOk())
    reopen = r.open_channel(1)
    return {"error": err, "ping_other_channel": ping2, "reopen": reopen, "rest": r.drain(1)}


@case("channel.close by client", "client channel.close then reuse channel number")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    close_ok = r.call(1, C.Channel.Close(reply_code=200, reply_text="Normal shutdown", class_id=0, method_id=0))
    reopen = r.open_channel(1)
    return {"close_ok": close_ok, "reopen": reopen}


@case("connection.close by client", "client connection.close: close-ok then socket closes?")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(0, C.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    return r.drain()


# ---------------------------------------------------------------------------
# Connection negotiation (raw + pika)
# ---------------------------------------------------------------------------

@case("connection.start", "connection.start fields verbatim")
def _c(p):
    r = p.raw()
    r.send(b"AMQP\x00\x00\x09\x01")
    f = r.recv_method()
    f.pop("_value", None)
    return f


@case("connection.tune", "connection.tune fields verbatim")
def _c(p):
    r = p.raw()
    res = r.handshake(open_connection=False)
    return {"handshake": res, "tune": describe(0, r.tune)}


@case("connection.open-ok", "connection.open-ok fields (known_hosts)")
def _c(p):
    r = p.raw()
    r.send(b"AMQP\x00\x00\x09\x01")
    r.recv_method()
    r.send_frame(0, C.Connection.StartOk(client_properties={"product": "probe"}, mechanism="PLAIN",
                                         response="\0guest\0guest", locale="en_US"))
    r.recv_method()
    r.send_frame(0, C.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    r.send_frame(0, C.Connection.Open(virtual_host="/"))
    f = r.recv_method()
    f.pop("_value", None)
    return f


@case("channel.open-ok / close-ok", "raw channel.open-ok and channel.close-ok fields")
def _c(p):
    r = p.raw()
    r.handshake()
    return {"open_ok": r.open_channel(1),
            "close_ok": r.call(1, C.Channel.Close(reply_code=200, reply_text="x", class_id=0, method_id=0))}


@case("tune-ok channel_max=0", "client tune-ok channel_max=0 ('no limit')")
def _c(p):
    r = p.raw()
    res = r.handshake(tune={"channel_max": 0})
    return {"handshake": r.clean(res), "rest": r.drain(5)}


@case("tune-ok frame_max=0", "client tune-ok frame_max=0 ('no limit')")
def _c(p):
    r = p.raw()
    res = r.handshake(tune={"frame_max": 0})
    return {"handshake": r.clean(res), "rest": r.drain(5)}


@case("channel count limit", "tune-ok channel_max=2, open channels 1, 2, then 3")
def _c(p):
    r = p.raw()
    r.handshake(tune={"channel_max": 2})
    a = r.open_channel(1)
    b = r.open_channel(2)
    r.send_frame(3, C.Channel.Open())
    return {"ch1": a, "ch2": b, "ch3": r.drain()}


@case("tune-ok frame_max too large", "tune-ok frame_max = server frame_max * 2")
def _c(p):
    r = p.raw()
    res = r.handshake(tune={"frame_max": 262144})
    return {"handshake": r.clean(res), "rest": r.drain(5)}


@case("tune-ok frame_max too small", "tune-ok frame_max = 1024 (< 4096)")
def _c(p):
    r = p.raw()
    res = r.handshake(tune={"frame_max": 1024})
    return {"handshake": r.clean(res), "rest": r.drain(5)}


@case("tune-ok channel_max too large", "tune-ok channel_max = 5000 (> server 2047)")
def _c(p):
    r = p.raw()
    res = r.handshake(tune={"channel_max": 5000})
    return {"handshake": r.clean(res), "rest": r.drain(5)}


@case("tune-ok heartbeat 60", "tune-ok heartbeat=60: handshake ok?")
def _c(p):
    r = p.raw()
    return r.handshake(tune={"heartbeat": 60})


@case("wrong password (pika)", "pika with guest/wrong")
def _c(p):
    try:
        c = pika.BlockingConnection(p.params(credentials=pika.PlainCredentials("guest", "wrong")))
        c.close()
        return {"ok": True}
    except Exception as e:  # noqa: BLE001
        return {"exception": type(e).__name__, "args": [jsonable(a) for a in e.args]}


@case("wrong password (raw, authentication_failure_close=true)", "raw handshake with bad password, capability on")
def _c(p):
    r = p.raw()
    res = r.handshake(password="wrong")
    return [r.clean(res)] + r.drain(5)


@case("wrong password (raw, no capability)", "raw handshake with bad password, no capabilities")
def _c(p):
    r = p.raw()
    res = r.handshake(password="wrong", capabilities={})
    return [r.clean(res)] + r.drain(5)


@case("unknown user (raw)", "raw handshake with user 'nobody'")
def _c(p):
    r = p.raw()
    res = r.handshake(user="nobody", password="x")
    return [r.clean(res)] + r.drain(5)


@case("unknown auth mechanism (raw)", "start-ok mechanism 'FOO'")
def _c(p):
    r = p.raw()
    res = r.handshake(mechanism="FOO")
    return [r.clean(res)] + r.drain(5)


@case("malformed PLAIN response (raw)", "start-ok PLAIN response 'garbage'")
def _c(p):
    r = p.raw()
    res = r.handshake(response="garbage")
    return [r.clean(res)] + r.drain(5)


@case("AMQPLAIN mechanism (raw)", "start-ok mechanism AMQPLAIN with guest/guest table")
def _c(p):
    from pamqp import encode
    r = p.raw()
    tbl = encode.field_table({"LOGIN": "guest", "PASSWORD": "guest"})[4:]  # strip length
    res = r.handshake(mechanism="AMQPLAIN", response=tbl.decode("latin-1"))
    return r.clean(res)


@case("vhost does not exist (pika)", "pika virtual_host='nope'")
def _c(p):
    try:
        c = pika.BlockingConnection(p.params(virtual_host="nope"))
        c.close()
        return {"ok": True}
    except Exception as e:  # noqa: BLE001
        return {"exception": type(e).__name__, "args": [jsonable(a) for a in e.args],
                "captured": _CAPTURE[-1] if _CAPTURE else None}


@case("vhost does not exist (raw)", "raw connection.open virtual_host='nope'")
def _c(p):
    r = p.raw()
    res = r.handshake(vhost="nope")
    return [r.clean(res)] + r.drain(5)


@case("method before handshake done", "send channel.open (ch 1) right after protocol header")
def _c(p):
    r = p.raw()
    r.send(b"AMQP\x00\x00\x09\x01")
    r.recv_method()
    r.send_frame(1, C.Channel.Open())
    return r.drain(5)


@case("channel.open before connection.open", "handshake until tune-ok, then channel.open")
def _c(p):
    r = p.raw()
    r.handshake(open_connection=False)
    r.send_frame(1, C.Channel.Open())
    return r.drain(5)


# ---------------------------------------------------------------------------
# Raw framing errors
# ---------------------------------------------------------------------------

def raw_bytes_reply(p, data: bytes) -> dict:
    r = p.raw()
    r.send(data)
    deadline = time.monotonic() + 5
    got = b""
    closed = False
    while time.monotonic() < deadline:
        r.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = r.sock.recv(4096)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = "reset"
            break
        if not d:
            closed = True
            break
        got += d
    out = {"reply_len": len(got), "reply_repr": repr(got[:64]), "socket_closed": closed}
    if got[:1] == b"\x01" and len(got) >= 11:
        out["looks_like"] = "method frame class %d method %d (version %d-%d connection.start)" % (
            struct.unpack(">HH", got[7:11]) + (got[11], got[12]))
    return out


@case("protocol header AMQP 0-9-0", "send AMQP\\x00\\x00\\x09\\x00")
def _c(p):
    return raw_bytes_reply(p, b"AMQP\x00\x00\x09\x00")


@case("protocol header AMQP 0-8", "send AMQP\\x01\\x01\\x08\\x00")
def _c(p):
    return raw_bytes_reply(p, b"AMQP\x01\x01\x08\x00")


@case("protocol header AMQP 1.0", "send AMQP\\x00\\x01\\x00\\x00")
def _c(p):
    return raw_bytes_reply(p, b"AMQP\x00\x01\x00\x00")


@case("protocol header HTTP garbage", "send 'GET / HTTP/1.1...'")
def _c(p):
    return raw_bytes_reply(p, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


@case("frame larger than frame_max", "after handshake, method frame with payload frame_max+100 on ch 1")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    fm = r.tune.frame_max
    r.send_raw_frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00" * (fm + 100))
    return {"frame_max": fm, "frames": r.drain(5)}


def _body_frame_probe(p, payload_len: int) -> dict:
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Queue.Declare(queue=Q))
    r.send_frame(1, C.Basic.Publish(exchange="", routing_key=Q))
    r.send_frame(1, pheader.ContentHeader(0, payload_len, C.Basic.Properties()))
    r.send_raw_frame(3, 1, b"a" * payload_len)
    r.send_frame(1, C.Exchange.Declare(exchange="amq.direct", passive=True))
    return {"frame_max": r.tune.frame_max, "payload_len": payload_len, "frames": r.drain(5 if payload_len > 131072 else 1)}


@case("body frame payload = frame_max - 8", "whole frame == frame_max bytes (spec limit)", [Q])
def _c(p):
    return _body_frame_probe(p, 131072 - 8)


@case("body frame payload = frame_max - 7", "whole frame == frame_max + 1 bytes", [Q])
def _c(p):
    return _body_frame_probe(p, 131072 - 7)


@case("body frame payload = frame_max", "payload == frame_max (whole frame frame_max + 8)", [Q])
def _c(p):
    return _body_frame_probe(p, 131072)


@case("body frame payload = frame_max + 1", "payload == frame_max + 1", [Q])
def _c(p):
    return _body_frame_probe(p, 131073)


@case("unknown frame type", "frame type 9 on channel 0")
def _c(p):
    r = p.raw()
    r.handshake()
    r.send_raw_frame(9, 0, b"abcd")
    return r.drain()


@case("unknown frame type on channel 1", "frame type 9 on open channel 1")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_raw_frame(9, 1, b"abcd")
    return r.drain()


@case("bad frame-end byte", "valid channel.open on ch 1 with frame-end 0x00")
def _c(p):
    r = p.raw()
    r.handshake()
    payload = C.Channel.Open().marshal()
    r.send_raw_frame(1, 1, struct.pack(">HH", 20, 10) + payload, end=0x00)
    return r.drain(5)


@case("unknown class/method on open channel", "method frame class 99 method 99 on ch 1")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_method_raw(1, 99, 99, b"")
    return r.drain()


@case("unknown method of known class", "queue class (50) method 99 on ch 1")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_method_raw(1, 50, 99, b"")
    return r.drain()


@case("unknown class/method on channel 0", "method frame class 99 method 99 on ch 0")
def _c(p):
    r = p.raw()
    r.handshake()
    r.send_method_raw(0, 99, 99, b"")
    return r.drain()


@case("truncated method args", "queue.declare with truncated arguments on ch 1")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_method_raw(1, 50, 10, b"\x00\x00\x05ab")
    return r.drain()


@case("content header without publish", "content header frame on open ch 1 with no preceding publish")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(1, pheader.ContentHeader(0, 1, C.Basic.Properties()))
    return r.drain()


@case("body without publish", "body frame on open ch 1 with no preceding publish")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(1, pbody.ContentBody(b"x"))
    return r.drain()


@case("body frame on channel 0", "body frame on channel 0")
def _c(p):
    r = p.raw()
    r.handshake()
    r.send_frame(0, pbody.ContentBody(b"x"))
    return r.drain()


@case("content header on channel 0", "content header frame on channel 0")
def _c(p):
    r = p.raw()
    r.handshake()
    r.send_frame(0, pheader.ContentHeader(0, 1, C.Basic.Properties()))
    return r.drain()


@case("heartbeat on channel 1", "heartbeat frame with channel 1")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_raw_frame(8, 1, b"")
    return r.drain()


@case("method instead of content header", "publish then another method before header")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(1, C.Basic.Publish(exchange="", routing_key="x"))
    r.send_frame(1, C.Exchange.Declare(exchange="amq.direct", passive=True))
    return r.drain()


@case("body larger than declared body_size", "header body_size=1 then body of 3 bytes")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(1, C.Basic.Publish(exchange="", routing_key="x"))
    r.send_frame(1, pheader.ContentHeader(0, 1, C.Basic.Properties()))
    r.send_frame(1, pbody.ContentBody(b"abc"))
    r.send_frame(1, C.Exchange.Declare(exchange="amq.direct", passive=True))
    return r.drain()


@case("body split across frames", "body_size=3 sent as 'a','bc' then body of 0 bytes? (raw)", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Queue.Declare(queue=Q))
    r.send_frame(1, C.Basic.Publish(exchange="", routing_key=Q))
    r.send_frame(1, pheader.ContentHeader(0, 3, C.Basic.Properties()))
    r.send_raw_frame(3, 1, b"a")
    r.send_raw_frame(3, 1, b"bc")
    ping = r.ping(1)
    g = r.call(1, C.Basic.Get(queue=Q, no_ack=True))
    return {"ping": ping, "get": [g, r.clean(r.recv_method()), r.clean(r.recv_method())]}


@case("content header with wrong class id", "publish then content header with class 60->50")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.send_frame(1, C.Basic.Publish(exchange="", routing_key="x"))
    hdr = pheader.ContentHeader(0, 1, C.Basic.Properties()).marshal()
    hdr = struct.pack(">H", 50) + hdr[2:]
    r.send_raw_frame(2, 1, hdr)
    return r.drain()


# ---------------------------------------------------------------------------
# Server-generated names, counts, cancel notifications
# ---------------------------------------------------------------------------

@case("server-named queue", "queue.declare(''): name shape")
def _c(p):
    ch = p.conn().channel()
    names = [ch.queue_declare("", exclusive=True).method.queue for _ in range(3)]
    return {"lengths": sorted({len(n) for n in names}), "distinct": len(set(names)) == 3,
            "all_match_amq.gen-[A-Za-z0-9_-]{22}": all(
                bool(re.fullmatch(r"amq\.gen-[A-Za-z0-9_\-]{22}", n)) for n in names)}


@case("server consumer tag", "basic.consume without tag: tag shape")
def _c(p):
    ch = p.conn().channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    qn = r.call(1, C.Queue.Declare(queue="", exclusive=True))["queue"]
    tags = [r.call(1, C.Basic.Consume(queue=qn))["consumer_tag"] for _ in range(3)]
    return {"lengths": sorted({len(t) for t in tags}), "distinct": len(set(tags)) == 3,
            "all_match_amq.ctag-[A-Za-z0-9_-]{22}": all(
                bool(re.fullmatch(r"amq\.ctag-[A-Za-z0-9_\-]{22}", t)) for t in tags) and bool(q)}


@case("queue.declare '' then passive '' uses last queue", "raw: declare '' then passive declare '' on same channel")
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    a = r.call(1, C.Queue.Declare(queue="", exclusive=True))
    b = r.call(1, C.Queue.Declare(queue="", passive=True))
    return {"same_name": a.get("queue") == b.get("queue"), "second": {k: v for k, v in b.items() if k != "queue"}}


@case("consumer cancel notification on queue delete", "consumer on ch1, queue deleted from ch2 (raw frames)", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.open_channel(2)
    r.call(1, C.Queue.Declare(queue=Q))
    r.call(1, C.Basic.Consume(queue=Q, consumer_tag="ctag-x"))
    r.send_frame(2, C.Queue.Delete(queue=Q))
    frames = [r.clean(r.recv_method(2)) for _ in range(2)]
    after = r.call(1, C.Basic.Cancel(consumer_tag="ctag-x"))
    # relative order of the two frames (different channels) is racy: sort them
    frames.sort(key=lambda f: f.get("channel", 0))
    return {"frames (sorted by channel; order between channels is racy)": frames,
            "client_cancel_after": after}


@case("consumer cancel notification without capability", "same but client lacks consumer_cancel_notify", [Q])
def _c(p):
    r = p.raw()
    r.handshake(capabilities={})
    r.open_channel(1)
    r.open_channel(2)
    r.call(1, C.Queue.Declare(queue=Q))
    r.call(1, C.Basic.Consume(queue=Q, consumer_tag="ctag-x"))
    r.send_frame(2, C.Queue.Delete(queue=Q))
    return [r.clean(r.recv_method(1)) for _ in range(2)]


@case("consumer cancel via pika on_cancel", "pika add_on_cancel_callback when queue deleted from other conn", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    got = []
    ch.add_on_cancel_callback(lambda f: got.append(summ(f)))
    ch.basic_consume(Q, lambda *a: None, consumer_tag="ctag-y")
    p.conn().channel().queue_delete(Q)
    deadline = time.monotonic() + 3
    while not got and time.monotonic() < deadline:
        c.process_data_events(time_limit=0.05)
    return got


@case("message counts", "declare-ok / get-ok / purge-ok / delete-ok counts", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.confirm_delivery()
    out = {"declare": summ(ch.queue_declare(Q))}
    for i in range(3):
        ch.basic_publish("", Q, b"m%d" % i)
    out["after_3_publishes"] = summ(ch.queue_declare(Q, passive=True))
    out["redeclare_active"] = summ(ch.queue_declare(Q))
    m = ch.basic_get(Q)
    out["get_ok_1"] = summ(m[0])
    out["after_get_unacked"] = summ(ch.queue_declare(Q, passive=True))
    out["purge"] = summ(ch.queue_purge(Q))
    for i in range(2):
        ch.basic_publish("", Q, b"n%d" % i)
    ch2 = c.channel()
    ch2.basic_qos(prefetch_count=1)
    ch2.basic_consume(Q, lambda *a: None)
    c.process_data_events(time_limit=0.3)
    out["with_consumer_prefetch1"] = summ(ch.queue_declare(Q, passive=True))
    out["delete"] = summ(ch.queue_delete(Q))
    return out


@case("basic.get-ok fields", "raw get-ok fields incl. redelivered after requeue", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Queue.Declare(queue=Q))
    for b in (b"a", b"b"):
        r.send_frame(1, C.Basic.Publish(exchange="", routing_key=Q))
        r.send_frame(1, pheader.ContentHeader(0, 1, C.Basic.Properties()))
        r.send_frame(1, pbody.ContentBody(b))
    r.ping(1)
    g1 = [r.call(1, C.Basic.Get(queue=Q))] + [r.clean(r.recv_method()) for _ in range(2)]
    r.send_frame(1, C.Basic.Reject(delivery_tag=1, requeue=True))
    g2 = [r.call(1, C.Basic.Get(queue=Q))] + [r.clean(r.recv_method()) for _ in range(2)]
    return {"first_get": g1, "after_reject_requeue": g2}


# ---------------------------------------------------------------------------
# Redelivery order
# ---------------------------------------------------------------------------

def publish_n(ch, q, n=5):
    ch.confirm_delivery()
    for i in range(1, n + 1):
        ch.basic_publish("", q, b"m%d" % i)


def consume_into(ch, q, box, **kw):
    return ch.basic_consume(q, lambda _c, m, _p, b: box.append(
        (b.decode(), m.redelivered, m.delivery_tag)), **kw)


@case("redelivery: nack(requeue) while consumer active", "consumer A gets m1..m5, nacks m3 (requeue): who gets it?", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    publish_n(c.channel(), Q)
    box: list = []
    consume_into(ch, Q, box)
    collect(c, ch, 5, box=box)
    ch.basic_nack(box[2][2], requeue=True)
    collect(c, ch, 6, box=box)
    return box


@case("redelivery: nack m3 after cancel, ack others, second consumer", "A gets 1..5, cancel A, nack 3, ack rest; B consumes", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    publish_n(c.channel(), Q)
    box: list = []
    tag = consume_into(ch, Q, box)
    collect(c, ch, 5, box=box)
    ch.basic_cancel(tag)
    ch.basic_nack(box[2][2], requeue=True)
    for i in (0, 1, 3, 4):
        ch.basic_ack(box[i][2])
    sync_ping(ch)
    ch2 = c.channel()
    box2: list = []
    consume_into(ch2, Q, box2, auto_ack=True)
    collect(c, ch2, 1, box=box2)
    c.process_data_events(time_limit=0.3)
    return {"A": box, "B": box2}


@case("redelivery: nack 2 and 4 then channel close", "A gets 1..5, cancel, nack 4 then nack 2, close channel; B order", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    publish_n(c.channel(), Q)
    box: list = []
    tag = consume_into(ch, Q, box)
    collect(c, ch, 5, box=box)
    ch.basic_cancel(tag)
    ch.basic_nack(box[3][2], requeue=True)
    ch.basic_nack(box[1][2], requeue=True)
    sync_ping(ch)
    ch.close()
    ch2 = c.channel()
    box2: list = []
    consume_into(ch2, Q, box2, auto_ack=True)
    collect(c, ch2, 5, box=box2)
    return {"B": box2}


@case("redelivery: publish more then requeue", "A gets m1..m3 (prefetch 3), m4,m5 ready; nack m2 after cancel; B order", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    publish_n(c.channel(), Q)
    ch.basic_qos(prefetch_count=3)
    box: list = []
    tag = consume_into(ch, Q, box)
    collect(c, ch, 3, box=box)
    c.process_data_events(time_limit=0.2)
    ch.basic_cancel(tag)
    ch.basic_nack(box[1][2], requeue=True)
    sync_ping(ch)
    ch2 = c.channel()
    box2: list = []
    consume_into(ch2, Q, box2, auto_ack=True)
    collect(c, ch2, 3, box=box2)
    c.process_data_events(time_limit=0.2)
    return {"A": box, "B": box2}


@case("redelivery: nack multiple", "A gets 1..5, cancel, nack(tag5, multiple, requeue); B order", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    publish_n(c.channel(), Q)
    box: list = []
    tag = consume_into(ch, Q, box)
    collect(c, ch, 5, box=box)
    ch.basic_cancel(tag)
    ch.basic_nack(box[4][2], multiple=True, requeue=True)
    sync_ping(ch)
    ch2 = c.channel()
    box2: list = []
    consume_into(ch2, Q, box2, auto_ack=True)
    collect(c, ch2, 5, box=box2)
    return {"B": box2}


@case("basic.recover requeue=true with active consumer", "consumer gets 1..5 unacked, basic.recover(requeue=True)", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    publish_n(c.channel(), Q)
    box: list = []
    consume_into(ch, Q, box)
    collect(c, ch, 5, box=box)
    ch.basic_recover(requeue=True)
    collect(c, ch, 10, box=box)
    return box


@case("basic.recover requeue=true after ack of some", "consumer gets 1..5, ack m2 and m4, recover(requeue=True)", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    publish_n(c.channel(), Q)
    box: list = []
    consume_into(ch, Q, box)
    collect(c, ch, 5, box=box)
    ch.basic_ack(box[1][2])
    ch.basic_ack(box[3][2])
    ch.basic_recover(requeue=True)
    collect(c, ch, 8, box=box)
    return box


@case("basic.recover requeue=false with outstanding", "consumer gets 1..5 unacked, basic.recover(requeue=False)", [Q])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    publish_n(c.channel(), Q)
    box: list = []
    consume_into(ch, Q, box)
    collect(c, ch, 5, box=box)
    return {"recover": attempt(lambda: ch.basic_recover(requeue=False)), "box": box}


@case("delivery tags across consumers on a channel", "two consumers on one channel share tag sequence", [Q, Q2])
def _c(p):
    c = p.conn()
    ch = c.channel()
    ch.queue_declare(Q)
    ch.queue_declare(Q2)
    pub = c.channel()
    pub.confirm_delivery()
    box: list = []
    ch.basic_consume(Q, lambda _c, m, _p, b: box.append((m.consumer_tag, b.decode(), m.delivery_tag)),
                     consumer_tag="cA")
    ch.basic_consume(Q2, lambda _c, m, _p, b: box.append((m.consumer_tag, b.decode(), m.delivery_tag)),
                     consumer_tag="cB")
    pub.basic_publish("", Q, b"a1")
    pub.basic_publish("", Q2, b"b1")
    pub.basic_publish("", Q, b"a2")
    collect(c, ch, 3, box=box)
    return box


@case("deliver frame fields", "raw basic.deliver + header + body fields", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Queue.Declare(queue=Q))
    r.call(1, C.Basic.Consume(queue=Q, consumer_tag="t1"))
    r.send_frame(1, C.Basic.Publish(exchange="amq.default" if False else "", routing_key=Q))
    r.send_frame(1, pheader.ContentHeader(0, 2, C.Basic.Properties(
        content_type="text/plain", delivery_mode=2, headers={"h": 1}, priority=3,
        correlation_id="c", reply_to="r", expiration="60000", message_id="m", timestamp=None,
        message_type="t", user_id="guest", app_id="a")))
    r.send_frame(1, pbody.ContentBody(b"hi"))
    return [r.clean(r.recv_method()) for _ in range(3)]


@case("publish with wrong user_id", "user_id property != authenticated user", [Q])
def _c(p):
    ch = p.conn().channel()
    ch.queue_declare(Q)
    return attempt(publish_then_ping(ch, "", Q, properties=pika.BasicProperties(user_id="bob")))


@case("zero-length body publish", "header body_size=0, no body frame (raw)", [Q])
def _c(p):
    r = p.raw()
    r.handshake()
    r.open_channel(1)
    r.call(1, C.Queue.Declare(queue=Q))
    r.send_frame(1, C.Basic.Publish(exchange="", routing_key=Q))
    r.send_frame(1, pheader.ContentHeader(0, 0, C.Basic.Properties()))
    ping = r.ping(1)
    g = r.call(1, C.Basic.Get(queue=Q, no_ack=True))
    hdr = r.clean(r.recv_method())
    nxt = r.ping(1)
    return {"ping": ping, "get": g, "header": hdr, "next_frame_after_header": nxt}


# ---------------------------------------------------------------------------
# Runner / output
# ---------------------------------------------------------------------------

def run_case(p: Probe, name, desc, fn, queues, exchanges) -> dict:
    try:
        p.cleanup(queues, exchanges)
    except Exception:  # noqa: BLE001
        pass
    t0 = time.monotonic()
    try:
        res = fn(p)
    except Exception as e:  # noqa: BLE001
        res = {"probe_error": type(e).__name__, "detail": str(e),
               "trace": traceback.format_exc().splitlines()[-3:]}
    finally:
        p.finish()
        try:
            p.cleanup(queues, exchanges)
        except Exception:  # noqa: BLE001
            pass
    return {"case": name, "desc": desc, "result": jsonable(res),
            "elapsed_s": round(time.monotonic() - t0, 2)}


def _kv(d: dict, skip=("frame", "method", "channel")) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in d.items() if k not in skip)


def fmt_answer(res: Any) -> str:
    """Render one probe result compactly for the markdown table."""
    if isinstance(res, list):
        if res and all(isinstance(x, list) for x in res):
            return "`" + ", ".join("(" + ", ".join(json.dumps(y) for y in x) + ")" for x in res) + "`"
        return " → ".join(fmt_answer(x) for x in res) if res else "(nothing)"
    if not isinstance(res, dict):
        return "`" + json.dumps(res) + "`"
    close_kind = res.get("kind") if "reply_code" in res else (
        res.get("method") if res.get("method") in ("channel.close", "connection.close") else None)
    if close_kind:
        of = res.get("method") if "kind" in res else res.get("close_of")
        ch = f" on ch {res['channel']}" if res.get("channel") not in (None, 0) and close_kind == "channel.close" else ""
        return (f"**{close_kind}**{ch} {res['reply_code']} `{res['reply_text']}` "
                f"(class_id={res.get('class_id')}, method_id={res.get('method_id')}"
                f"{' = ' + of if of else ''})")
    if set(res) == {"ok"}:
        return "ok (no error)"
    if res.get("ok") is True and set(res) == {"ok", "result"}:
        return "ok: " + fmt_answer(res["result"])
    if "eof" in res:
        return f"TCP closed by server (~{res.get('secs_after_last_send', '?')}s after last send)"
    if res.get("timeout"):
        return "(nothing within timeout)"
    if res.get("frame") == "header":
        return f"header(body_size={res['body_size']}, props={json.dumps(res['properties'])})"
    if res.get("frame") == "body":
        return f"body({json.dumps(res['body'])})"
    if "method" in res and isinstance(res["method"], str):
        ch = f"ch{res['channel']} " if "channel" in res else ""
        return f"{ch}`{res['method']}({_kv(res)})`"
    if "exception" in res:
        return f"client exception {res['exception']}: `{json.dumps(res.get('args') or res.get('detail'))}`"
    if any(isinstance(v, (dict, list)) for v in res.values()):
        return "<br>".join(f"*{k}*: {fmt_answer(v) if isinstance(v, (dict, list)) else json.dumps(v)}"
                           for k, v in res.items())
    return "`" + json.dumps(res) + "`"


def to_markdown(rows: list[dict], version: str) -> str:
    lines = [f"# RabbitMQ reference answers ({version})", "",
             "Generated by `interop/probe_rabbitmq.py`. class_id/method_id are those of the "
             "Channel.Close / Connection.Close frame.", "",
             "| case | RabbitMQ's answer |", "|---|---|"]
    for r in rows:
        ans = fmt_answer(r["result"]).replace("\n", " ").replace("|", "\\|")
        lines.append(f"| {r['case']} <br><sub>{r['desc']}</sub> | {ans} |")
    return "\n".join(lines) + "\n"


def server_version(host, port) -> str:
    try:
        r = Raw(host, port)
        r.send(b"AMQP\x00\x00\x09\x01")
        f = r.recv_method()
        r.close()
        sp = f["_value"].server_properties
        g = lambda k: jsonable(sp.get(k))  # noqa: E731
        return f"{g('product')} {g('version')} (Erlang {g('platform')})"
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--only", action="append", default=[], help="run cases whose name contains this")
    ap.add_argument("--markdown", help="also write a markdown table to this path")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    import logging
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    if args.list:
        for name, desc, *_ in CASES:
            print(f"{name}\t{desc}")
        return 0
    p = Probe(args.host, args.port)
    rows = []
    for name, desc, fn, qs, xs in CASES:
        if args.only and not any(o in name for o in args.only):
            continue
        row = run_case(p, name, desc, fn, qs, xs)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(to_markdown(rows, server_version(args.host, args.port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
