"""Fault injection: make the broker misbehave on purpose, so that a client's recovery code can be
tested against a real broker ("close channel 1 with 406 after the third publish", "stop sending
heartbeats now", "restart").

:class:`Faults` is the one door: the pytest fixtures (through ``BrokerThread.faults``), the
management API (``/api/amqp-broker/faults``) and the control endpoint (``amqp-broker ctl fault``) all call
:meth:`Faults.arm`, :meth:`Faults.list` and :meth:`Faults.release` and nothing else.

A fault is a *kind* (``close_channel``, ``silence``, ``hold_deliveries``...; see :data:`KINDS`),
its parameters, a *target* (which connections, channels, queues, consumers it acts on: every one
unless narrowed) and optionally a *trigger*: ``on`` a client method ("basic.publish",
"basic.consume"...) matching the target, firing on every ``after``-th match, ``times`` times. A
fault without a trigger acts at once. Kinds that are a state (silence, held deliveries, withheld
confirms...) last until released; a triggered one then covers the connection that fired it.

Where each acts, so that the broker core stays free of frames and sockets:

* frames in: while any fault is armed, every connection reads through a :class:`ConnectionFaults`
  hook (``ServerConnection.fault_hook``) that scans the frames for trigger methods, hands the
  input to the protocol in pieces cut right after a firing method (for basic.publish: after its
  content), and fires the fault in between. With no fault armed the hook is None: the reader
  pays one attribute test per read, the protocol nothing;
* frames out: the writer waits while its connection is silenced; the heartbeat timer sends none
  while heartbeats are stopped;
* deliveries and confirms: the core channel's sink (the protocol's ChannelState) is wrapped in a
  :class:`FaultSink` for as long as a delivery or confirm fault covers the channel, so an
  unaffected channel's calls go straight to its ChannelState as always;
* the socket: a reset closes it with SO_LINGER 0, which makes the kernel send RST.
"""

from __future__ import annotations

import itertools
import logging
import re
import socket
import struct
from typing import TYPE_CHECKING, Any

import trio
from pamqp import commands

from ..broker.admin import AdminError
from ..errors import CONNECTION_FORCED, REPLY_NAMES
from ..protocol.channel import CHANNEL_HANDLERS
from ..protocol.codec import (
    BASIC_PUBLISH,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_METHOD,
    decode_basic_publish,
)
from ..protocol.state import AWAIT_HEADER, OPEN

if TYPE_CHECKING:  # pragma: no cover
    from ..protocol.channel import ChannelState
    from .connection import ServerConnection
    from .listener import BrokerServer

log = logging.getLogger("amqp_broker.faults")

# Each kind's parameters: name -> (type, default). None as a default means "derived".
KINDS: dict[str, dict[str, tuple[type, Any]]] = {
    "close_connection": {"code": (int, CONNECTION_FORCED), "text": (str, None)},
    "close_channel": {"code": (int, 406), "text": (str, None)},
    "silence": {},
    "stop_heartbeats": {},
    "hold_deliveries": {},
    "delay_deliveries": {"seconds": (float, 1.0)},
    "block": {"reason": (str, "low on memory")},
    "unblock": {},
    "cancel_consumer": {},
    "nack_confirms": {"count": (int, 0)},
    "withhold_confirms": {},
    "reset": {},
    "restart": {"keep_transient": (bool, False)},
}

#: Kinds that are a state, lasting until :meth:`Faults.release`.
STATES = frozenset({"silence", "stop_heartbeats", "hold_deliveries", "delay_deliveries",
                    "nack_confirms", "withhold_confirms"})
#: States that act through the channels' sinks.
SINK_STATES = frozenset({"hold_deliveries", "delay_deliveries", "nack_confirms", "withhold_confirms"})

#: What a fault may be narrowed to. ``connection`` matches a connection's name
#: ("127.0.0.1:50000 -> 127.0.0.1:5672"), its peer address or the connection_name its client
#: announced; the others match the objects (and the trigger method's fields) of the same name.
TARGETS: dict[str, type] = {"connection": str, "vhost": str, "channel": int, "queue": str,
                            "exchange": str, "routing_key": str, "consumer_tag": str}

FRAME = struct.Struct(">BHI")
METHOD_INDEX = struct.Struct(">I")
BODY_SIZE = struct.Struct(">Q")


class FaultError(AdminError):
    """A fault that cannot be armed (``bad_request``) or found (``not_found``)."""


def _spec_name(method: type) -> str:
    """The spec's name of a pamqp method class: "basic.publish", "channel.close-ok"."""
    class_name, _, method_name = method.name.partition(".")
    return f"{class_name.lower()}.{re.sub(r'(?<!^)(?=[A-Z])', '-', method_name).lower()}"


#: The methods a client sends, by their spec names: what a trigger may wait for.
CLIENT_METHODS: dict[int, str] = {
    method.index: _spec_name(method)
    for method in (*CHANNEL_HANDLERS, commands.Connection.StartOk, commands.Connection.TuneOk,
                   commands.Connection.Open, commands.Connection.Close,
                   commands.Connection.CloseOk, commands.Connection.UpdateSecret)
}
METHOD_NAMES = frozenset(CLIENT_METHODS.values())


def method_name(index: int) -> str | None:
    """"basic.publish" for basic.publish's class and method id; None for a method clients do
    not send."""
    return CLIENT_METHODS.get(index)


class Event:
    """A client method the protocol has just handled, as triggers see it."""

    __slots__ = ("method", "channel", "fields")

    def __init__(self, method: str, channel: int, fields: dict[str, Any]):
        self.method = method
        self.channel = channel
        self.fields = fields


class Fault:
    """One armed (or active, or spent) fault."""

    def __init__(self, fault_id: str, kind: str, params: dict, target: dict, on: str | None,
                 after: int, times: int):
        self.id = fault_id
        self.kind = kind
        self.params = params
        self.target = target
        self.on = on
        self.after = after
        self.times = times
        self.seen = 0
        self.fired = 0
        # armed: waits for its trigger; active: a state in force; fired: done; released.
        self.state = "armed" if on else ("active" if kind in STATES else "fired")
        # A triggered state covers the connection that fired it, not every one.
        self.only: "ServerConnection | None" = None
        # nack_confirms: confirms still to nack (0: all).
        self.left = params.get("count", 0)

    @property
    def live(self) -> bool:
        return self.state in ("armed", "active")

    def record(self) -> dict:
        return {
            "id": self.id, "fault": self.kind, "state": self.state, "on": self.on,
            "after": self.after, "times": self.times, "seen": self.seen, "fired": self.fired,
            **{k: v for k, v in self.target.items() if v is not None}, **self.params,
        }


class Faults:
    """The faults of one broker server; see the module docstring."""

    def __init__(self, server: "BrokerServer"):
        self.server = server
        self.faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)

    # -- the door ------------------------------------------------------------------------------

    def arm(self, fault: str, *, on: str | None = None, after: int = 1, times: int = 1,
            **options: Any) -> dict:
        """Arm (or, without ``on``, inject at once) a fault of kind ``fault``; returns its record
        (``id`` for :meth:`release`). ``options`` are the kind's parameters (:data:`KINDS`) and
        the target's narrowing (:data:`TARGETS`)."""
        if fault not in KINDS:
            raise FaultError("bad_request", f"unknown fault {fault!r}; one of {', '.join(KINDS)}")
        spec = KINDS[fault]
        params: dict[str, Any] = {}
        target: dict[str, Any] = dict.fromkeys(TARGETS)
        for key, value in options.items():
            if value is None:
                continue
            if key in spec:
                params[key] = _typed(key, value, spec[key][0])
            elif key in TARGETS:
                target[key] = _typed(key, value, TARGETS[key])
            else:
                raise FaultError("bad_request", f"{fault}: unknown option {key!r}")
        for key, (_, default) in spec.items():
            params.setdefault(key, default)
        if fault in ("close_connection", "close_channel") and params["text"] is None:
            name = REPLY_NAMES.get(params["code"], "ERROR")
            params["text"] = f"{name} - closed by fault injection"
        if on is not None:
            on = on.lower().replace("_", "-")
            if on not in METHOD_NAMES:
                raise FaultError("bad_request", f"{on!r} is no method a client sends (e.g. basic.publish, "
                                                "basic.consume, queue.declare, connection.open)")
        after = _typed("after", after, int)
        times = _typed("times", times, int)
        if after < 1 or times < 1:
            raise FaultError("bad_request", "after and times must be at least 1")
        if fault == "close_channel" and on is None and target["channel"] is None:
            raise FaultError("bad_request", "close_channel needs a channel (or a trigger)")
        if fault == "delay_deliveries" and params["seconds"] < 0:
            raise FaultError("bad_request", "seconds must not be negative")
        record = Fault(str(next(self._ids)), fault, params, target, on, after, times)
        if on is None:
            if fault not in STATES:
                hit = self._inject(record, None, None)
                if not hit and fault != "restart":
                    raise FaultError("not_found", f"{fault}: no connection matches {_describe(target)}")
            record.fired = 1  # at once: a one-shot is done, a state in force
        self.faults[record.id] = record
        log.info("fault %s armed: %s", record.id, record.record())
        self._sync_all()
        return record.record()

    def list(self) -> list[dict]:
        """Every fault not yet released, oldest first."""
        return [f.record() for f in self.faults.values()]

    def get(self, fault_id: str) -> dict:
        """One fault's record."""
        return self._fault(fault_id).record()

    def release(self, fault_id: str | None = None) -> int:
        """End a fault (or, without an id, every one): an armed one is disarmed, a state is lifted
        (held deliveries and withheld confirms go out, silence ends). Returns how many."""
        chosen = list(self.faults.values()) if fault_id is None else [self._fault(fault_id)]
        for fault in chosen:
            del self.faults[fault.id]
            was_active = fault.state == "active"
            fault.state = "released"
            if was_active and fault.kind in SINK_STATES:
                for conn in list(self.server.connections):
                    for channel in list(conn.protocol.channels.values()):
                        sink = _sink_of(channel)
                        if isinstance(sink, FaultSink):
                            sink.release(fault)
        self._sync_all()
        return len(chosen)

    # -- per connection --------------------------------------------------------------------------

    def hook_for(self, conn: "ServerConnection") -> "ConnectionFaults | None":
        """The hook a new connection reads through: None while no fault is live."""
        if not any(f.live for f in self.faults.values()):
            return None
        hook = ConnectionFaults(self, conn)
        hook.sync()
        return hook

    def _sync_all(self) -> None:
        """Attach or drop the connections' hooks and bring their states up to date."""
        live = any(f.live for f in self.faults.values())
        for conn in list(self.server.connections):
            hook = conn.fault_hook
            if live and hook is None:
                hook = conn.fault_hook = ConnectionFaults(self, conn)
            if hook is not None:
                hook.sync()
                if not live:
                    # Safe even in the middle of the hook's receive(): that one finishes, and
                    # the protocol has all input once it returns.
                    conn.fault_hook = None

    def _fault(self, fault_id: str) -> Fault:
        fault = self.faults.get(str(fault_id))
        if fault is None:
            raise FaultError("not_found", f"fault {fault_id!r} not found")
        return fault

    def covers(self, fault: Fault, conn: "ServerConnection", event: Event | None = None) -> bool:
        """Whether ``fault`` (armed or active) concerns ``conn`` (``event``: the method about to
        be handled, whose connection.open names the vhost before the connection has one)."""
        if fault.only is not None and fault.only is not conn:
            return False
        protocol = conn.protocol
        wanted = fault.target["connection"]
        if wanted is not None:
            session = protocol.session
            names = {protocol.peer, f"{protocol.peer} -> {protocol.local}",
                     str(protocol.client_properties.get("connection_name") or "")}
            if session is not None:
                names.add(session.name)
            if wanted not in names:
                return False
        vhost = fault.target["vhost"]
        if vhost is not None:
            session = protocol.session
            if session is not None:
                return session.vhost.name == vhost
            return event is not None and event.fields.get("virtual_host") == vhost
        return True

    def active(self, conn: "ServerConnection", kinds: frozenset | set) -> list[Fault]:
        return [f for f in self.faults.values()
                if f.state == "active" and f.kind in kinds and self.covers(f, conn)]

    # -- triggers --------------------------------------------------------------------------------

    def watched(self, conn: "ServerConnection") -> set[str]:
        """The methods armed triggers wait for on ``conn`` (before connection.open, whatever
        vhost they name: the connection has none yet)."""
        opening = conn.protocol.session is None
        return {f.on for f in self.faults.values()
                if f.state == "armed" and f.on and (opening or self.covers(f, conn))}

    def observe(self, conn: "ServerConnection", event: Event) -> list[Fault]:
        """Count ``event`` for the triggers it matches; the faults that fire now."""
        firing = []
        for fault in list(self.faults.values()):
            if fault.state != "armed" or fault.on != event.method or not self.covers(fault, conn, event):
                continue
            target = fault.target
            if target["channel"] is not None and event.channel != target["channel"]:
                continue
            if any(target[key] is not None and key in event.fields and event.fields[key] != target[key]
                   for key in ("queue", "exchange", "routing_key", "consumer_tag")):
                continue
            fault.seen += 1
            if fault.seen % fault.after == 0:
                firing.append(fault)
        return firing

    def fire(self, fault: Fault, conn: "ServerConnection", event: Event) -> None:
        fault.fired += 1
        log.info("fault %s fires on %s (%s on channel %d)", fault.id, conn.peer, event.method,
                 event.channel)
        if fault.kind in STATES:
            fault.state = "active"
            fault.only = conn
        elif fault.fired >= fault.times:
            fault.state = "fired"
        try:
            self._inject(fault, conn, event)
        except Exception:  # a fault must break the client's connection, never the broker
            log.exception("fault %s failed", fault.id)
        self._sync_all()

    # -- the faults themselves -------------------------------------------------------------------

    def _targets(self, fault: Fault, conn: "ServerConnection | None") -> list["ServerConnection"]:
        if conn is not None:
            return [conn]
        return [c for c in self.server.connections
                if c.protocol.state == OPEN and self.covers(fault, c)]

    def _inject(self, fault: Fault, conn: "ServerConnection | None", event: Event | None) -> int:
        """Do a one-shot fault (or start a triggered state); returns how many objects it hit."""
        kind = fault.kind
        params = fault.params
        if kind == "restart":
            return self._restart(params["keep_transient"])
        if kind in STATES:
            return 1  # in force through the hooks and sinks (see _sync_all)
        hit = 0
        for target in self._targets(fault, conn):
            protocol = target.protocol
            if kind == "close_connection":
                if protocol.state == OPEN:
                    protocol.close(params["code"], params["text"])
                    _unhold(target)
                    hit += 1
            elif kind == "close_channel":
                number = fault.target["channel"]
                if number is None and event is not None:
                    number = event.channel
                hit += _close_channel(target, number, params["code"], params["text"])
            elif kind == "block":
                if protocol.state == OPEN:
                    protocol.notify_blocked(params["reason"])
                    hit += 1
            elif kind == "unblock":
                if protocol.state == OPEN:
                    protocol.notify_unblocked()
                    hit += 1
            elif kind == "cancel_consumer":
                hit += _cancel_consumers(target, fault.target, event)
            elif kind == "reset":
                _reset(target)
                hit += 1
        return hit

    def _restart(self, keep_transient: bool) -> int:
        """What clients see of a RabbitMQ restart: 320 to every connection, then (unless kept)
        the non-durable queues are gone; the listener goes on accepting."""
        from .listener import SHUTDOWN_TEXT  # RabbitMQ's words; a real shutdown's too

        connections = list(self.server.connections)
        for conn in connections:
            conn.force_close(SHUTDOWN_TEXT)
        if not keep_transient:
            admin = self.server.admin
            for queue in [q for q in admin.queues() if not q["durable"]]:
                try:
                    admin.delete_queue(queue["vhost"], queue["name"])
                except AdminError:
                    pass  # gone with its connection (exclusive, auto-delete)
        return len(connections)


class ConnectionFaults:
    """One connection's fault hook (``ServerConnection.fault_hook``): its reads go through
    :meth:`receive`, its writer and heartbeat timer consult :attr:`silent` and
    :attr:`no_heartbeats`."""

    def __init__(self, faults: Faults, conn: "ServerConnection"):
        self.faults = faults
        self.conn = conn
        protocol = conn.protocol
        # The input from the start of the first frame not yet scanned; its first ``fed`` bytes
        # are the protocol's already (a frame it holds part of when the hook arrived mid-stream).
        self.buf = bytearray(protocol._tail)
        self.fed = len(self.buf)
        self.pos = 0
        self.skip = 8 if protocol.state == AWAIT_HEADER else 0  # the protocol header
        # channel -> [publish fields, body bytes still to come, or None before the header]
        self.publishing: dict[int, list] = {}
        self.silent = False
        self.no_heartbeats = False
        self._unsilenced = trio.Event()

    def sync(self) -> None:
        """Apply the states in force to this connection (called whenever faults change)."""
        faults = self.faults
        conn = self.conn
        silent = bool(faults.active(conn, {"silence"}))
        self.no_heartbeats = silent or bool(faults.active(conn, {"stop_heartbeats"}))
        if self.silent and not silent:
            self._unsilenced.set()
            self._unsilenced = trio.Event()
            conn._wake()
        self.silent = silent
        sink_faults = faults.active(conn, SINK_STATES)
        for channel in list(conn.protocol.channels.values()):
            core = channel.core
            if core is None:
                continue
            covering = [f for f in sink_faults
                        if f.target["channel"] is None or f.target["channel"] == channel.number]
            sink = core.sink
            if covering and not isinstance(sink, FaultSink):
                core.sink = FaultSink(faults, conn, channel)
            elif not covering and isinstance(sink, FaultSink) and not sink.holding():
                core.sink = sink.inner

    async def quiet(self) -> None:
        """The writer's wait while the connection is silenced, until released or the client
        hangs up (then there is nothing to keep quiet for)."""
        from .connection import peer_hung_up

        conn = self.conn
        sock = _socket_of(conn)
        # The reader may be parked too (waiting for output to drain) and miss the hang-up.
        while self.silent and not conn._input_closed.is_set() and not (sock and peer_hung_up(sock)):
            with trio.move_on_after(0.5):
                await self._unsilenced.wait()

    # -- input -----------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """The reader's input: scanned for trigger methods, handed to the protocol in pieces,
        faults fired between them."""
        faults = self.faults
        conn = self.conn
        protocol = conn.protocol
        buf = self.buf
        buf += data
        pos = self.pos
        if self.skip:
            taken = min(self.skip, len(buf) - pos)
            pos += taken
            self.skip -= taken
        watched = faults.watched(conn)
        end_all = len(buf)
        while end_all - pos >= 8:
            frame_type, channel, size = FRAME.unpack_from(buf, pos)
            end = pos + 8 + size
            if end > end_all:
                break
            event = self._event(frame_type, channel, buf, pos + 7, end - 1, watched) if watched else None
            pos = end
            if event is None:
                continue
            firing = faults.observe(conn, event)
            if firing:
                self._feed(pos)
                for fault in firing:
                    faults.fire(fault, conn, event)
                watched = faults.watched(conn)
                if protocol.finished:
                    break
        self._feed(end_all)
        del buf[:pos]
        self.fed -= pos
        self.pos = 0
        self.sync()  # channels opened by this input get the sinks the states in force ask for

    def _feed(self, upto: int) -> None:
        if upto <= self.fed:
            return
        chunk = bytes(self.buf[self.fed:upto])
        self.fed = upto
        protocol = self.conn.protocol
        if protocol.held_input is not None:
            # The protocol stopped at a hold (flow control) in an earlier piece: what follows
            # waits behind it, in order.
            protocol.held_input += chunk
        else:
            protocol.receive_data(chunk)

    def _event(self, frame_type: int, channel: int, buf: bytearray, start: int, end: int,
               watched: set[str]) -> Event | None:
        """The method this frame completes, if a trigger waits for its name."""
        if frame_type == FRAME_METHOD and end - start >= 4:
            index = METHOD_INDEX.unpack_from(buf, start)[0]
            if index == BASIC_PUBLISH:
                if "basic.publish" in watched:
                    try:
                        exchange, routing_key, _, _ = decode_basic_publish(bytes(buf[start + 4:end]), 0)
                    except ValueError:
                        return None
                    self.publishing[channel] = [{"exchange": exchange, "routing_key": routing_key}, None]
                return None
            name = method_name(index)
            if name not in watched:
                return None
            method = commands.INDEX_MAPPING[index]()  # a client method: pamqp knows it
            try:
                method.unmarshal(bytes(buf[start + 4:end]))
            except Exception:  # malformed: the protocol will say so; no trigger
                return None
            fields = {key: getattr(method, key)
                      for key in ("queue", "exchange", "routing_key", "consumer_tag", "virtual_host")
                      if hasattr(method, key)}
            return Event(name, channel, fields)
        publishing = self.publishing.get(channel)
        if publishing is None:
            return None
        if frame_type == FRAME_HEADER and publishing[1] is None and end - start >= 12:
            publishing[1] = BODY_SIZE.unpack_from(buf, start + 4)[0]
        elif frame_type == FRAME_BODY and publishing[1] is not None:
            publishing[1] -= end - start
        else:
            return None
        if publishing[1] > 0:
            return None
        del self.publishing[channel]
        return Event("basic.publish", channel, publishing[0])


class FaultSink:
    """A channel's sink while delivery or confirm faults cover it: deliveries and confirms pass
    through the faults in force, the rest goes straight to the channel's own sink."""

    def __init__(self, faults: Faults, conn: "ServerConnection", inner: "ChannelState"):
        self.faults = faults
        self.conn = conn
        self.inner = inner
        # Deliveries held back: [fault, args]; confirms withheld: [fault, sequence, ack].
        self.held: list[list] = []
        self.withheld: list[list] = []

    def holding(self) -> bool:
        return bool(self.held or self.withheld)

    def _covering(self, kinds: set[str]) -> list[Fault]:
        number = self.inner.number
        return [f for f in self.faults.active(self.conn, kinds)
                if f.target["channel"] is None or f.target["channel"] == number]

    # DeliverySink

    def deliver(self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Any) -> None:
        args = (consumer_tag, delivery_tag, redelivered, message)
        consumer = self.inner.core.consumers.get(consumer_tag)
        queue = consumer.queue.name if consumer is not None else None
        for fault in self._covering({"hold_deliveries", "delay_deliveries"}):
            target = fault.target
            if target["consumer_tag"] not in (None, consumer_tag) or target["queue"] not in (None, queue):
                continue
            item = [fault, args]
            self.held.append(item)
            if fault.kind == "delay_deliveries":
                timers = self.faults.server.broker.timers
                timers.call_later(fault.params["seconds"], lambda: self._let_go([item]))
            return
        self.inner.deliver(*args)

    def confirm(self, sequence: int, ack: bool) -> None:
        for fault in self._covering({"nack_confirms", "withhold_confirms"}):
            if fault.kind == "withhold_confirms":
                self.withheld.append([fault, sequence, ack])
                return
            if fault.left:
                fault.left -= 1
                if not fault.left:
                    fault.state = "fired"
            self.inner.confirm(sequence, False)
            return
        if self.withheld:
            self.withheld.append([None, sequence, ack])  # keeps its place behind withheld ones
            return
        self.inner.confirm(sequence, ack)

    def release(self, fault: Fault) -> None:
        """``fault`` was lifted: what it held goes out, in order."""
        self._let_go([item for item in self.held if item[0] is fault])
        if any(item[0] is fault for item in self.withheld):
            for item in self.withheld:
                if item[0] is fault:
                    item[0] = None
            inner = self.inner
            while self.withheld and self.withheld[0][0] is None:
                _, sequence, ack = self.withheld.pop(0)
                if self._open():
                    inner.confirm(sequence, ack)
            if self._open():
                inner.flush_confirms()

    def _let_go(self, items: list[list]) -> None:
        for item in items:
            try:
                self.held.remove(item)
            except ValueError:
                continue  # let go already (released before its delay ran out)
            if self._open():
                self.inner.deliver(*item[1])

    def _open(self) -> bool:
        inner = self.inner
        protocol = self.conn.protocol
        return (inner.core.open and not inner.closing and protocol.state == OPEN
                and protocol.channels.get(inner.number) is inner)

    def basic_return(self, reply_code: int, reply_text: str, message: Any) -> None:
        self.inner.basic_return(reply_code, reply_text, message)

    def flush_confirms(self) -> None:
        self.inner.flush_confirms()

    def cancel_notify(self, consumer_tag: str) -> None:
        self.inner.cancel_notify(consumer_tag)

    def writable(self) -> bool:
        return self.inner.writable()

    def headroom(self) -> int:
        return self.inner.headroom()

    def fail(self, error: Any) -> None:
        self.inner.fail(error)


# -- one-shot faults -------------------------------------------------------------------------------

def _sink_of(channel: "ChannelState") -> Any:
    return channel.core.sink if channel.core is not None else None


def _unhold(conn: "ServerConnection") -> None:
    """A connection held by flow control must read our close's answer."""
    if conn._held is not None:
        conn._held.cancel()
    conn._wake()


def _close_channel(conn: "ServerConnection", number: int | None, code: int, text: str) -> int:
    """Server-sent channel.close with any code (the protocol's own errors pick channel or
    connection by the code; a fault may not want that)."""
    protocol = conn.protocol
    channel = protocol.channels.get(number) if number else None
    if channel is None or channel.closing or protocol.state != OPEN:
        return 0
    protocol.confirms.flush()  # confirms of what the channel did before precede its close
    channel.core.close()
    channel.closing = True
    channel.content = None
    protocol.confirms.discard(channel)
    protocol.send_method(number, commands.Channel.Close(reply_code=code, reply_text=text,
                                                        class_id=0, method_id=0))
    return 1


def _cancel_consumers(conn: "ServerConnection", target: dict, event: Event | None) -> int:
    """Server-sent basic.cancel, as when the queue is deleted: the consumer is gone from its
    queue, its unacked messages stay with the channel, and a client that announced
    consumer_cancel_notify is told."""
    protocol = conn.protocol
    queue = target["queue"]
    tag = target["consumer_tag"]
    number = target["channel"]
    if event is not None:
        number = number or event.channel or None
        queue = queue or event.fields.get("queue") or None
        tag = tag or event.fields.get("consumer_tag") or None
    hit = 0
    for channel in list(protocol.channels.values()):
        core = channel.core
        if core is None or channel.closing or (number is not None and channel.number != number):
            continue
        for consumer in list(core.consumers.values()):
            if tag is not None and consumer.tag != tag:
                continue
            if queue is not None and consumer.queue.name != queue:
                continue
            consumer.queue.remove_consumer(consumer)
            core.consumer_cancelled_by_server(consumer)
            hit += 1
    return hit


def _reset(conn: "ServerConnection") -> None:
    """Drop the connection as a crashed host or a middlebox would: RST, no close frame."""
    sock = _socket_of(conn)
    if sock is None:
        raise FaultError("bad_request", f"connection {conn.peer} has no TCP socket to reset")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass  # closed already: nothing left to reset
    conn.protocol.connection_lost("connection reset (fault injection)")
    # trio's close wakes the reader and the writer (ClosedResourceError); the kernel sends RST.
    sock.close()
    conn._wake()


def _socket_of(conn: "ServerConnection") -> Any:
    """The TCP socket under the connection's stream (under TLS too); None for a stream without
    one (a memory stream in unit tests)."""
    try:
        return conn.raw_socket  # type: ignore[attr-defined]  # where the transport names it
    except AttributeError:
        return getattr(conn.stream, "socket", None)


def _typed(key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FaultError("bad_request", f"{key} must be {kind.__name__}, got {value!r}")
    return value


def _describe(target: dict) -> str:
    narrowed = {k: v for k, v in target.items() if v is not None}
    return ", ".join(f"{k}={v!r}" for k, v in narrowed.items()) or "(any)"
