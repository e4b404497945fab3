"""Differential-testing harness: scenarios written once, run against two brokers.

A scenario is a function ``run(ctx)`` registered with ``@scenario("name", tags=...)``. It talks to
``ctx.host:ctx.port`` with pika (``ctx.connection()``) or raw frames (``ctx.raw()``), and records
what a client can observe with ``ctx.observe(key, value)``. The runner (``interop.diff.runner``)
runs every scenario against our broker and against RabbitMQ and diffs the two observation dicts.

Rules a scenario follows so it can run again and again against a long-lived RabbitMQ:

- every queue/exchange it creates is named by ``ctx.queue("q")`` / ``ctx.exchange("x")``: unique
  per run, deleted afterwards, and reported back under its stable alias (``<q>``, ``<x>``);
- observations are normalised when recorded: server-generated names (``amq.gen-…``,
  ``amq.ctag-…``, direct reply-to names) become numbered placeholders, AMQP timestamps become
  ``"<time>"``, bytes become text;
- anything timing-dependent polls against a deadline (``ctx.wait_until``), never a bare sleep.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import os
import re
import socket
import threading
import time
import traceback
import uuid
from typing import Any, Callable, Iterable

import pika
import pika.amqp_object
import pika.channel
import pika.connection
import pika.exceptions
import pika.frame
import pika.spec

# How long a scenario waits for something that should happen (a delivery, an expiry, a
# dead-lettered message). Generous: the answer normally comes in milliseconds.
DEADLINE = float(os.environ.get("DIFF_DEADLINE", "8"))
# How long to watch for something that should NOT happen (one more delivery past a prefetch
# limit, ...). A correct broker never does it; a wrong one does it at once.
SETTLE = float(os.environ.get("DIFF_SETTLE", "0.4"))
# A whole scenario on one broker: past this its sockets are shut down to unblock pika.
SCENARIO_TIMEOUT = float(os.environ.get("DIFF_SCENARIO_TIMEOUT", "90"))


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    fn: Callable[["Context"], None]
    tags: tuple[str, ...]
    doc: str
    module: str

    def matches(self, pattern: str) -> bool:
        """``-k`` selection: a substring of the name, or a tag."""
        p = pattern.lower()
        return p in self.name.lower() or p in (t.lower() for t in self.tags)


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, tags: Iterable[str] = ()) -> Callable:
    """Register ``fn(ctx)`` as the scenario ``name``."""
    def deco(fn: Callable[["Context"], None]) -> Callable[["Context"], None]:
        if name in SCENARIOS:
            raise ValueError(f"duplicate scenario name {name!r}")
        SCENARIOS[name] = Scenario(name, fn, tuple(tags), (fn.__doc__ or "").strip(), fn.__module__)
        return fn
    return deco


def load_all() -> dict[str, Scenario]:
    """Import every scenario module and return the registry."""
    from . import scenarios  # noqa: F401  (registers on import)
    return SCENARIOS


# ---------------------------------------------------------------------------------------------
# pika patch: keep the class_id/method_id of channel.close / connection.close from the broker
# ---------------------------------------------------------------------------------------------

_tls = threading.local()


@dataclasses.dataclass
class Close:
    scope: str            # "channel" or "connection"
    reply_code: int
    reply_text: str
    class_id: int
    method_id: int
    channel: int

    def as_obs(self) -> dict:
        return {"close": self.scope, "reply_code": self.reply_code, "reply_text": self.reply_text,
                "class_id": self.class_id, "method_id": self.method_id,
                "method": method_name(self.class_id, self.method_id)}


def method_name(class_id: int, method_id: int) -> str | None:
    cls = pika.spec.methods.get((class_id << 16) | method_id)
    return cls.NAME.lower() if cls else None


def _record_close(scope: str, method: Any, channel: int) -> None:
    ctx = getattr(_tls, "ctx", None)
    if ctx is not None:
        ctx.closes.append(Close(scope, method.reply_code, method.reply_text,
                                method.class_id, method.method_id, channel))


def _install_pika_patch() -> None:
    if getattr(pika.channel.Channel, "_diff_patched", False):
        return
    orig_ch = pika.channel.Channel._on_close_from_broker
    orig_conn = pika.connection.Connection._on_connection_close_from_broker

    def ch_close(self, method_frame):
        _record_close("channel", method_frame.method, self.channel_number)
        return orig_ch(self, method_frame)

    def conn_close(self, method_frame):
        _record_close("connection", method_frame.method, 0)
        return orig_conn(self, method_frame)

    pika.channel.Channel._on_close_from_broker = ch_close
    pika.connection.Connection._on_connection_close_from_broker = conn_close
    pika.channel.Channel._diff_patched = True


_install_pika_patch()


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

_VOLATILE = [
    # (regex, placeholder kind)
    (re.compile(r"amq\.rabbitmq\.reply-to\.[A-Za-z0-9_+/=.\-]+"), "reply-to"),
    (re.compile(r"amq\.gen-[A-Za-z0-9_\-]+"), "amq.gen"),
    (re.compile(r"amq\.ctag-[A-Za-z0-9_\-]+"), "amq.ctag"),
    (re.compile(r"\bctag\d+\.[0-9a-f]{32}\b"), "pika-ctag"),     # pika's client-side tags
]

PROPERTY_NAMES = ["content_type", "content_encoding", "headers", "delivery_mode", "priority",
                  "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
                  "user_id", "app_id", "cluster_id"]


class Closed:
    """What ``ctx.attempt`` returns when the broker closed the channel or connection."""

    def __init__(self, close: Close | None):
        self.close = close

    def __bool__(self) -> bool:  # a failed attempt is falsy
        return False


class Context:
    """One run of one scenario against one broker."""

    def __init__(self, host: str, port: int, label: str = "", user: str = "guest",
                 password: str = "guest", vhost: str = "/"):
        self.host = host
        self.port = port
        self.label = label
        self.user = user
        self.password = password
        self.vhost = vhost
        self.token = uuid.uuid4().hex[:10]
        self.observations: dict[str, Any] = {}
        self.closes: list[Close] = []
        self._aliases: dict[str, str] = {}
        self._placeholders: dict[str, str] = {}
        self._counters: dict[str, int] = {}
        self._queues: list[str] = []
        self._exchanges: list[str] = []
        self._conns: list[pika.BlockingConnection] = []
        self._raws: list[Any] = []
        self.timed_out = False
        # Once one wait in a scenario has run out its deadline, the scenario has diverged
        # already: later waits get a short one, so a missing feature costs one deadline, not ten.
        self.missed_deadline = False
        self.server_properties: dict | None = None

    # -- names ------------------------------------------------------------------------------

    def name(self, logical: str = "q") -> str:
        """A name unique to this run, reported in observations as ``<logical>``."""
        real = f"diff.{self.token}.{logical}"
        self._aliases[real] = f"<{logical}>"
        return real

    def alias(self, real: str, alias: str) -> str:
        """Report ``real`` (a run-unique string) as ``alias`` in observations."""
        self._aliases[real] = alias
        return real

    def queue(self, logical: str = "q") -> str:
        """A unique queue name, deleted when the scenario ends."""
        real = self.name(logical)
        self._queues.append(real)
        return real

    def exchange(self, logical: str = "x") -> str:
        """A unique exchange name, deleted when the scenario ends."""
        real = self.name(logical)
        self._exchanges.append(real)
        return real

    def adopt_queue(self, real: str) -> None:
        """Delete a server-named queue at the end too."""
        self._queues.append(real)

    # -- connections --------------------------------------------------------------------------

    def params(self, **kw: Any) -> pika.ConnectionParameters:
        base: dict[str, Any] = dict(
            host=self.host, port=self.port, virtual_host=self.vhost,
            credentials=pika.PlainCredentials(self.user, self.password),
            connection_attempts=1, socket_timeout=10, stack_timeout=15,
            blocked_connection_timeout=30, heartbeat=0)
        base.update(kw)
        return pika.ConnectionParameters(**base)

    def connection(self, **kw: Any) -> pika.BlockingConnection:
        """An open pika BlockingConnection, closed when the scenario ends."""
        conn = pika.BlockingConnection(self.params(**kw))
        self._conns.append(conn)
        if self.server_properties is None:
            self.server_properties = conn._impl.server_properties
        return conn

    def channel(self, **kw: Any) -> tuple[pika.BlockingConnection, Any]:
        """A new connection and a channel on it."""
        conn = self.connection(**kw)
        return conn, conn.channel()

    def raw(self, handshake: bool = True, **kw: Any):
        """A raw-frame client (``interop.probe_rabbitmq.Raw``), handshaken unless told not to."""
        from interop.probe_rabbitmq import Raw
        r = Raw(self.host, self.port)
        self._raws.append(r)
        if handshake:
            res = r.handshake(user=self.user, password=self.password, vhost=self.vhost, **kw)
            if not res.get("ok"):
                raise RuntimeError(f"raw handshake failed: {res}")
        return r

    # -- observing ----------------------------------------------------------------------------

    def observe(self, key: str, value: Any) -> Any:
        """Record ``value`` (normalised) under ``key``; returns the normalised value."""
        if key in self.observations:
            raise ValueError(f"observation {key!r} recorded twice")
        norm = self.norm(value)
        self.observations[key] = norm
        return norm

    def norm(self, v: Any) -> Any:
        """Normalise a value into JSON-able, broker-independent form."""
        if isinstance(v, Closed):
            return v.close.as_obs() if v.close else {"close": "unknown"}
        if isinstance(v, Close):
            return v.as_obs()
        if isinstance(v, (bytes, bytearray, memoryview)):
            b = bytes(v)
            try:
                return self._norm_str(b.decode("utf-8"))
            except UnicodeDecodeError:
                return {"hex": b.hex()}
        if isinstance(v, str):
            return self._norm_str(v)
        if isinstance(v, bool) or v is None or isinstance(v, int):
            return v
        if isinstance(v, float):
            return v
        if isinstance(v, (datetime.datetime, datetime.date)):
            return "<time>"
        if isinstance(v, decimal.Decimal):
            return {"decimal": str(v)}
        if isinstance(v, dict):
            return {self._norm_str(str(k)): self.norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [self.norm(x) for x in v]
        if isinstance(v, pika.spec.BasicProperties):
            return props_dict(v, self)
        if isinstance(v, pika.frame.Method):
            v = v.method
        if isinstance(v, pika.amqp_object.Method):
            d: dict[str, Any] = {"method": v.NAME.lower()}
            for k, x in vars(v).items():
                d[k] = self.norm(x)
            return d
        return self._norm_str(repr(v))

    def _norm_str(self, s: str) -> str:
        for real in sorted(self._aliases, key=len, reverse=True):
            if real in s:
                s = s.replace(real, self._aliases[real])
        for rx, kind in _VOLATILE:
            s = rx.sub(lambda m, kind=kind: self._placeholder(kind, m.group(0)), s)
        return s

    def _placeholder(self, kind: str, real: str) -> str:
        if real not in self._placeholders:
            n = self._counters.get(kind, 0) + 1
            self._counters[kind] = n
            self._placeholders[real] = f"<{kind}#{n}>"
        return self._placeholders[real]

    # -- doing --------------------------------------------------------------------------------

    def attempt(self, key: str | None, fn: Callable, *args: Any, **kw: Any) -> Any:
        """Call ``fn``; observe ``{"ok": result}`` or the broker's close; return the result.

        On a broker close, returns a falsy ``Closed``; on another client-side error, observes
        ``{"error": ExceptionName}`` and returns None. With ``key=None`` nothing is observed.
        """
        n = len(self.closes)
        try:
            r = fn(*args, **kw)
        except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as e:
            caps = self.closes[n:]
            close = caps[-1] if caps else Close(
                "connection" if isinstance(e, pika.exceptions.ConnectionClosedByBroker) else "channel",
                e.reply_code, e.reply_text, 0, 0, 0)
            if key is not None:
                self.observe(key, close.as_obs())
            return Closed(close)
        except pika.exceptions.AMQPError as e:
            if key is not None:
                self.observe(key, {"error": type(e).__name__})
            return None
        if key is not None:
            self.observe(key, {"ok": r})
        return r

    def sync(self, ch: Any) -> None:
        """A harmless synchronous round trip, to surface an asynchronous channel close."""
        ch.exchange_declare("amq.direct", passive=True)

    def wait_until(self, pred: Callable[[], Any], *conns: Any, timeout: float | None = None,
                   poll: float = 0.05) -> bool:
        """Poll ``pred`` (processing I/O on ``conns`` meanwhile) until true or the deadline."""
        deadline = time.monotonic() + self._budget(timeout)
        while True:
            if pred():
                return True
            if time.monotonic() >= deadline:
                ok = bool(pred())
                self.missed_deadline = self.missed_deadline or not ok
                return ok
            if conns:
                for c in conns:
                    c.process_data_events(time_limit=poll / max(1, len(conns)))
            else:
                time.sleep(poll)

    def _budget(self, timeout: float | None) -> float:
        t = DEADLINE if timeout is None else timeout
        return min(t, 1.0) if self.missed_deadline else t

    def settle(self, *conns: Any, seconds: float | None = None) -> None:
        """Process I/O for a short while: for checking that nothing (more) arrives. (Returns
        None.)"""
        end = time.monotonic() + (SETTLE if seconds is None else seconds)
        while (left := end - time.monotonic()) > 0:
            if conns:
                for c in conns:
                    c.process_data_events(time_limit=min(0.05, left))
            else:
                time.sleep(min(0.05, left))

    def poll_get(self, ch: Any, queue: str, timeout: float | None = None, auto_ack: bool = True):
        """basic.get until a message arrives or the deadline; returns (method, props, body) or None."""
        deadline = time.monotonic() + self._budget(timeout)
        while True:
            m, p, b = ch.basic_get(queue, auto_ack=auto_ack)
            if m is not None:
                return m, p, b
            if time.monotonic() >= deadline:
                self.missed_deadline = True
                return None
            time.sleep(0.05)

    def queue_count(self, ch: Any, queue: str) -> int:
        return ch.queue_declare(queue, passive=True).method.message_count

    def wait_count(self, ch: Any, queue: str, want: int, timeout: float | None = None) -> int:
        """Poll a queue's message count until it equals ``want`` or the deadline; return it."""
        last = [None]

        def check():
            last[0] = self.queue_count(ch, queue)
            return last[0] == want
        self.wait_until(check, timeout=timeout)
        return last[0]

    # -- teardown -----------------------------------------------------------------------------

    def abort(self) -> None:
        """Called from the watchdog thread: shut down every socket so pika calls return."""
        self.timed_out = True
        for c in list(self._conns):
            try:
                c._impl._transport._sock.shutdown(socket.SHUT_RDWR)
            except Exception:  # noqa: BLE001
                pass
        for r in list(self._raws):
            try:
                r.sock.shutdown(socket.SHUT_RDWR)
            except Exception:  # noqa: BLE001
                pass

    def finish(self) -> list[str]:
        """Close every connection, then delete every entity created. Returns cleanup problems."""
        problems: list[str] = []
        for c in self._conns:
            try:
                if c.is_open:
                    c.close()
            except Exception:  # noqa: BLE001
                pass
        for r in self._raws:
            r.close()
        self._conns.clear()
        self._raws.clear()
        if not (self._queues or self._exchanges):
            return problems
        try:
            conn = pika.BlockingConnection(self.params())
        except Exception as e:  # noqa: BLE001
            return [f"cleanup connection failed: {e!r}"]
        try:
            for kind, names in (("queue", self._queues), ("exchange", self._exchanges)):
                for real in dict.fromkeys(names):
                    try:
                        ch = conn.channel()
                        if kind == "queue":
                            ch.queue_delete(real)
                        else:
                            ch.exchange_delete(real)
                        ch.close()
                    except pika.exceptions.ChannelClosedByBroker as e:
                        if e.reply_code != 404:
                            problems.append(f"delete {kind} {real}: {e.reply_code} {e.reply_text}")
                    except Exception as e:  # noqa: BLE001
                        problems.append(f"delete {kind} {real}: {e!r}")
                        if not conn.is_open:
                            conn = pika.BlockingConnection(self.params())
        finally:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:  # noqa: BLE001
                pass
        return problems


# ---------------------------------------------------------------------------------------------
# Small helpers for scenarios
# ---------------------------------------------------------------------------------------------

def props_dict(p: Any, ctx: Context | None = None) -> dict:
    """The properties that are set, by AMQP name (pika's ``type`` is ``type``)."""
    out: dict[str, Any] = {}
    for name in PROPERTY_NAMES:
        v = getattr(p, name, None)
        if v is not None:
            out[name] = ctx.norm(v) if ctx else v
    return out


def delivery(method: Any, props: Any = None, body: bytes | None = None, *extra: str) -> dict:
    """A compact summary of a delivery / get-ok / return.

    Always the body and (for deliveries and get-ok) the redelivered flag; ``extra`` adds any of
    ``tag``, ``rk``, ``exchange``, ``ctag``, ``props``, ``headers``, ``count``, ``reply``.
    """
    d: dict[str, Any] = {}
    if body is not None:
        d["body"] = body
    if hasattr(method, "redelivered"):
        d["redelivered"] = method.redelivered
    for e in extra:
        if e == "tag":
            d["tag"] = method.delivery_tag
        elif e == "rk":
            d["rk"] = method.routing_key
        elif e == "exchange":
            d["exchange"] = method.exchange
        elif e == "ctag":
            d["ctag"] = method.consumer_tag
        elif e == "count":
            d["message_count"] = method.message_count
        elif e == "reply":
            d["reply_code"] = method.reply_code
            d["reply_text"] = method.reply_text
        elif e == "props":
            d["props"] = props_dict(props) if props is not None else None
        elif e == "headers":
            d["headers"] = props.headers if props is not None else None
        else:
            raise ValueError(f"unknown delivery field {e!r}")
    return d


class Inbox:
    """A consumer callback that keeps what it receives: ``ch.basic_consume(q, inbox)``."""

    def __init__(self, *extra: str):
        self.items: list[tuple[Any, Any, bytes]] = []
        self.extra = extra

    def __call__(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self.items.append((method, props, body))

    def __len__(self) -> int:
        return len(self.items)

    def bodies(self) -> list[bytes]:
        return [b for _, _, b in self.items]

    def summary(self, *extra: str) -> list[dict]:
        return [delivery(m, p, b, *(extra or self.extra)) for m, p, b in self.items]

    def tags(self) -> list[int]:
        return [m.delivery_tag for m, _, _ in self.items]

    def clear(self) -> None:
        self.items.clear()


def publish_n(ch: Any, exchange: str, rk: str, n: int, prefix: str = "m", start: int = 1,
              **kw: Any) -> list[bytes]:
    """Publish ``prefix1..prefixN``; returns the bodies."""
    bodies = [f"{prefix}{i}".encode() for i in range(start, start + n)]
    for b in bodies:
        ch.basic_publish(exchange, rk, b, **kw)
    return bodies


# ---------------------------------------------------------------------------------------------
# Running one scenario on one broker
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    scenario: str
    label: str
    observations: dict[str, Any]
    seconds: float
    traceback: str | None = None
    cleanup_problems: list[str] = dataclasses.field(default_factory=list)
    server_properties: dict | None = None


def run_one(sc: Scenario, host: str, port: int, label: str = "",
            timeout: float | None = None, **ctx_kw: Any) -> Outcome:
    """Run ``sc`` against ``host:port`` in the calling thread; never raises."""
    ctx = Context(host, port, label, **ctx_kw)
    _tls.ctx = ctx
    watchdog = threading.Timer(SCENARIO_TIMEOUT if timeout is None else timeout, ctx.abort)
    watchdog.daemon = True
    watchdog.start()
    t0 = time.monotonic()
    tb = None
    try:
        sc.fn(ctx)
    except Exception as e:  # noqa: BLE001 - an unexpected exception is itself an observation
        tb = traceback.format_exc()
        key = "!timeout" if ctx.timed_out else "!exception"
        if key in ctx.observations:
            key += "2"
        text = re.sub(r"0x[0-9a-fA-F]+", "0x?", f"{type(e).__name__}: {e}")
        ctx.observations[key] = ctx.norm("scenario exceeded its time limit" if ctx.timed_out else text)
    finally:
        watchdog.cancel()
        problems = ctx.finish()
        _tls.ctx = None
    return Outcome(sc.name, label, ctx.observations, time.monotonic() - t0, tb, problems,
                   ctx.server_properties)
