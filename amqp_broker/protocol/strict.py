"""Strict mode: AMQP 0-9-1 rules a client breaks without RabbitMQ noticing, reported (and, when
asked, answered with the spec's close code).

RabbitMQ 3.10 accepts a number of frames the specification (amqp0-9-1.xml, its PDF and
RabbitMQ's errata) forbids: a deprecated ``ticket`` that is not zero, a queue name with a space in
it, a priority of 200, a frame longer than the negotiated frame_max by up to 8 octets. A client
written against RabbitMQ never finds out, and then fails on a stricter peer. Strict mode is a lint
for client authors: each rule in :data:`RULES` is something RabbitMQ accepts silently (checked
live, see tests/strict), and each hit is

* noted on the connection (:meth:`ViolationReporter.note_violation`): counted per rule, logged
  the first time a rule is hit on a connection and summarised with counts when it ends, handed to
  every listener in ``violation_listeners`` (the frame trace hooks in there);
* with ``strict = "close"``, answered as the spec says for that rule: channel.close (a soft
  error, e.g. 406 for a queue name outside the spec's syntax) or connection.close (502
  SYNTAX_ERROR for a field with an illegal value, ...), instead of handling the frame.

When strict mode is off nothing here runs: the server builds a plain
:class:`~amqp_broker.protocol.connection.Connection`, and only ``strict != "off"`` swaps in
:class:`StrictConnection`, which looks at every frame on its own before the usual handling (and
so forgoes the fast publish/ack runs: it is a debugging mode).
"""

from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass
from typing import Any, Callable

from pamqp import commands

from ..broker.properties import MAX_TABLE_DEPTH, peek_properties
from ..errors import (
    FRAME_ERROR,
    NOT_ALLOWED,
    PRECONDITION_FAILED,
    SYNTAX_ERROR,
    ChannelError,
    ConnectionLevelError,
)
from .codec import FRAME_HEADER, FRAME_METHOD
from .connection import Connection
from .framing import FRAME_HEADER_FIELDS, METHOD_INDEX
from .method_layout import check_arguments
from .state import AWAIT_OPEN, AWAIT_START_OK, CLOSED, OPEN

log = logging.getLogger("amqp_broker.strict")


@dataclass(frozen=True)
class Rule:
    """One spec rule RabbitMQ does not enforce."""

    name: str
    spec: str  # where the spec says so
    summary: str  # what a client did wrong
    rabbitmq: str  # what RabbitMQ 3.10.8 does with it (checked live by tests/strict)
    reply_code: int  # the close strict=close answers with
    channel_scope: bool = False  # channel.close (a soft error) rather than connection.close


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("reserved-ticket",
         'amqp0-9-1.xml: reserved-1 of exchange.*, queue.*, basic.consume/publish/get '
         '("Deprecated: ticket, must be zero")',
         "a non-zero ticket", "ignores it", SYNTAX_ERROR),
    Rule("reserved-open-field",
         'amqp0-9-1.xml: connection.open reserved-1/-2 ("capabilities", "insist") and channel.open '
         'reserved-1 ("out-of-band"), "must be zero"',
         "a non-empty/set reserved field of connection.open or channel.open", "ignores it",
         SYNTAX_ERROR),
    Rule("exchange-reserved-bit",
         'amqp0-9-1.xml: exchange.declare reserved-2/-3 ("Deprecated: auto-delete/internal, '
         'must be zero")',
         "exchange.declare with auto-delete or internal set",
         "gives the bits their AMQP 0-8 meaning (an extension)", SYNTAX_ERROR),
    Rule("name-syntax",
         'amqp0-9-1.xml: exchange.declare/queue.declare rule "syntax" '
         '(on-failure precondition-failed); domains exchange-name/queue-name: at most 127 '
         'octets of ^[a-zA-Z0-9-_.:]*$',
         "an exchange or queue name outside the spec's syntax",
         "accepts any UTF-8 name up to 255 octets", PRECONDITION_FAILED, channel_scope=True),
    Rule("channel-max",
         "amqp0-9-1.xml: connection.tune-ok channel-max, \"the maximum total number of channels "
         "that the client will use\"; spec 4.2.3 (channel numbers 1..channel-max)",
         "a channel numbered above the negotiated channel_max",
         "opens it (it limits how many channels are open, not their numbers)", NOT_ALLOWED),
    Rule("frame-max",
         'amqp0-9-1.xml: connection.tune frame-max "the largest frame size", spec 4.2.3: a frame is '
         "7 octets of header, the payload and the frame-end octet",
         "a frame of more than frame_max octets in all",
         "accepts payloads up to frame_max (8 octets more than the spec)", FRAME_ERROR),
    Rule("property-flag-reserved",
         "spec 4.2.6.1: basic has 14 property flags (bits 15..2); bit 0 is the continuation flag, "
         "bit 1 names no property",
         "a content header with property flag bit 1 set", "ignores the bit", SYNTAX_ERROR),
    Rule("reserved-property",
         'amqp0-9-1.xml: basic property 14 "reserved" ("Deprecated: cluster-id, must be empty")',
         "a non-empty cluster-id (reserved) property", "stores and delivers it", SYNTAX_ERROR),
    Rule("priority-range",
         'amqp0-9-1.xml: basic property priority "message priority, 0 to 9"',
         "a priority above 9", "accepts 0..255 (and caps it at the queue's x-max-priority)",
         SYNTAX_ERROR),
    Rule("field-type",
         "spec 4.2.5.5 field-value types (t b B U u I i L l f d D s S A T F V); RabbitMQ's "
         "errata section 3 lists 'x' (byte array) as its own",
         "a field table or array value of type 'x' (byte array), not an AMQP 0-9-1 type",
         "accepts it in arguments and headers", SYNTAX_ERROR),
    Rule("shortstr",
         'spec 4.2.5.3: "Short strings can carry up to 255 octets of UTF-8 data, but may not '
         'contain binary zero octets"',
         "a short string with a zero octet (method arguments, properties), or a property that "
         "is not UTF-8", "accepts both (it refuses some arguments that are not UTF-8, with 501)",
         SYNTAX_ERROR),
    Rule("locale",
         'amqp0-9-1.xml: connection.start-ok locale "must be one of those specified by the server"',
         "a start-ok locale the server did not offer (it offers en_US)", "ignores it",
         SYNTAX_ERROR),
)}

# -- the checks (raw bytes in, violations out; nothing here raises on malformed input) ---------

# queue-name and exchange-name domains (amqp0-9-1.xml): the regexp and the length assert.
_NAME_RE = re.compile(rb"[a-zA-Z0-9\-_.:]*\Z")
_NAME_MAX = 127
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

_EXCHANGE_DECLARE = (40 << 16) | 10
_QUEUE_DECLARE = (50 << 16) | 10
_CHANNEL_OPEN = (20 << 16) | 10
_CONNECTION_OPEN = (10 << 16) | 40
_CONNECTION_START_OK = (10 << 16) | 11
# Methods whose first argument is the deprecated ticket.
_TICKET_METHODS = frozenset(
    index for index, cls in commands.INDEX_MAPPING.items() if list(cls.__slots__[:1]) == ["ticket"]
)
_OFFERED_LOCALES = (b"en_US",)

# Fixed value sizes of the field types RabbitMQ reads (rabbit_binary_parser), as in
# amqp_broker.broker.properties; 'x' is the one that is not AMQP 0-9-1.
_FIXED = {ord(c): n for c, n in (("t", 1), ("b", 1), ("B", 1), ("s", 2), ("u", 2), ("I", 4),
                                   ("i", 4), ("l", 8), ("L", 8), ("f", 4), ("d", 8), ("D", 5),
                                   ("T", 8), ("V", 0))}
_BYTE_ARRAY = ord("x")


def table_types_outside_spec(buf: Any, pos: int, end: int, depth: int = 0) -> list[str]:
    """Field names whose value (in a table at ``buf[pos:end]``, nested ones included) has a
    type outside AMQP 0-9-1's; a malformed table yields what was found before the damage (the
    normal path refuses it)."""
    found: list[str] = []
    try:
        while pos < end and depth <= MAX_TABLE_DEPTH:
            name = bytes(buf[pos + 1 : pos + 1 + buf[pos]]).decode("utf-8", "replace")
            pos += 1 + buf[pos]
            pos = _value_types(buf, pos, end, depth, name, found)
    except (IndexError, struct.error, ValueError):
        pass
    return found


def _value_types(buf: Any, pos: int, end: int, depth: int, name: str, found: list[str]) -> int:
    kind = buf[pos]
    pos += 1
    size = _FIXED.get(kind)
    if size is not None:
        return pos + size
    length = _U32.unpack_from(buf, pos)[0]
    inner, pos = pos + 4, pos + 4 + length
    if kind == _BYTE_ARRAY:
        found.append(name)
    elif kind == ord("F"):
        found += table_types_outside_spec(buf, inner, pos, depth + 1)
    elif kind == ord("A"):
        while inner < pos and depth < MAX_TABLE_DEPTH:
            inner = _value_types(buf, inner, pos, depth + 1, name, found)
    elif kind != ord("S"):
        raise ValueError("unknown field type")
    return pos


def _shortstr(buf: Any, pos: int) -> tuple[bytes, int]:
    length = buf[pos]
    return bytes(buf[pos + 1 : pos + 1 + length]), pos + 1 + length


def method_violations(state: Any, index: int, channel: int, buf: Any, start: int, end: int,
                      channel_max: int) -> list[tuple[str, str]]:
    """(rule, detail) of each violation in the method frame payload ``buf[start:end]`` (after
    its class and method id); ``state`` is the connection's before handling it."""
    out: list[tuple[str, str]] = []
    try:
        if index in _TICKET_METHODS:
            ticket = _U16.unpack_from(buf, start)[0]
            if ticket:
                out.append(("reserved-ticket", f"{_name(index)} with ticket {ticket}"))
            if index == _EXCHANGE_DECLARE:
                name, pos = _shortstr(buf, start + 2)
                _, pos = _shortstr(buf, pos)  # type
                bits = buf[pos]
                _check_name(out, "exchange.declare", "exchange", name, allow_empty=False)
                if bits & 0x0C:
                    which = [f for f, bit in (("auto-delete", 4), ("internal", 8)) if bits & bit]
                    out.append(("exchange-reserved-bit",
                                f"exchange.declare with {' and '.join(which)} set"))
            elif index == _QUEUE_DECLARE:
                name, _ = _shortstr(buf, start + 2)
                _check_name(out, "queue.declare", "queue", name, allow_empty=True)
        elif index == _CHANNEL_OPEN:
            if channel > channel_max:
                out.append(("channel-max",
                            f"channel.open on channel {channel}, above the negotiated "
                            f"channel_max ({channel_max})"))
            oob, _ = _shortstr(buf, start)
            if oob:
                out.append(("reserved-open-field", f"channel.open with out-of-band {oob!r}"))
        elif index == _CONNECTION_OPEN:
            _, pos = _shortstr(buf, start)
            capabilities, pos = _shortstr(buf, pos)
            if capabilities:
                out.append(("reserved-open-field",
                            f"connection.open with capabilities {capabilities!r}"))
            if pos < end and buf[pos] & 1:
                out.append(("reserved-open-field", "connection.open with insist set"))
        elif index == _CONNECTION_START_OK and state == AWAIT_START_OK:
            _check_locale(out, buf, start, end)
        _check_arguments(out, index, buf, start, end)
    except (IndexError, struct.error):
        pass  # malformed: the normal path answers it as RabbitMQ does
    return out


def _check_locale(out: list, buf: Any, pos: int, end: int) -> None:
    length = _U32.unpack_from(buf, pos)[0]  # client-properties table
    _, pos = _shortstr(buf, pos + 4 + length)  # mechanism
    length = _U32.unpack_from(buf, pos)[0]  # response
    locale, _ = _shortstr(buf, pos + 4 + length)
    if locale not in _OFFERED_LOCALES:
        out.append(("locale", f"connection.start-ok with locale {locale!r}, offered: en_US"))


def _check_name(out: list, method: str, what: str, name: bytes, allow_empty: bool) -> None:
    if (not name and not allow_empty) or len(name) > _NAME_MAX or not _NAME_RE.match(name):
        out.append(("name-syntax", f"{method} of {what} {name.decode('utf-8', 'replace')!r}"))


def _named_layout(method_class: Any) -> tuple:
    """(argument name, size or kind) in wire order, as method_layout's, with the names."""
    layout: list = []
    bits = 0
    for name in method_class.__slots__:
        kind = method_class.amqp_type(name)
        if kind == "bit":
            if bits % 8 == 0:
                layout.append((name, 1))
            bits += 1
            continue
        bits = 0
        layout.append((name, _FIXED_ARGUMENT.get(kind, kind)))
    return tuple(layout)


_FIXED_ARGUMENT = {"octet": 1, "short": 2, "long": 4, "longlong": 8, "timestamp": 8}
_NAMED_LAYOUTS = {index: _named_layout(cls) for index, cls in commands.INDEX_MAPPING.items()}


def _check_arguments(out: list, index: int, buf: Any, pos: int, end: int) -> None:
    """The rules every argument of its type obeys: shortstrs without zero octets, field tables
    with AMQP 0-9-1 value types only."""
    for name, part in _NAMED_LAYOUTS.get(index, ()):
        if part.__class__ is int:
            pos += part
        elif part == "shortstr":
            value, pos = _shortstr(buf, pos)
            if b"\x00" in value:
                out.append(("shortstr", f"{_name(index)} {name.replace('_', '-')} {value!r} "
                                        "holds a zero octet"))
        else:
            start = pos + 4
            pos = start + _U32.unpack_from(buf, pos)[0]
            if part == "table" and pos <= end:
                for field in table_types_outside_spec(buf, start, pos):
                    out.append(("field-type", f"{_name(index)} argument {field!r} of type 'x'"))


def _check_property(out: list, where: str, value: bytes) -> None:
    """A shortstr property: UTF-8 without zero octets. (In method arguments only zero octets are
    looked for: RabbitMQ refuses some arguments that are not UTF-8 itself, with 501.)"""
    if b"\x00" in value:
        out.append(("shortstr", f"{where} {value!r} holds a zero octet"))
        return
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        out.append(("shortstr", f"{where} {value!r} is not UTF-8"))


def _name(index: int) -> str:
    cls = commands.INDEX_MAPPING.get(index)
    return cls.name.lower() if cls is not None else f"method {index >> 16}/{index & 0xFFFF}"


# Basic property flags (spec 4.2.6.1) and the pamqp type of each, in wire order.
_PROPERTIES = tuple(
    (name, commands.Basic.Properties.flags[name], commands.Basic.Properties.amqp_type(name))
    for name in commands.Basic.Properties.attributes()
)
_FLAG_RESERVED = 0x0002


def header_violations(buf: Any, start: int, end: int) -> list[tuple[str, str]]:
    """(rule, detail) of each violation in a content header payload ``buf[start:end]``."""
    out: list[tuple[str, str]] = []
    try:
        if end - start < 14 or _U16.unpack_from(buf, start)[0] != 60:
            return out  # the normal path refuses it
        flags = _U16.unpack_from(buf, start + 12)[0]
        if flags & _FLAG_RESERVED:
            out.append(("property-flag-reserved", f"property flags {flags:#06x} have bit 1 set"))
        if flags & 1:
            return out  # a continuation word: refused by the normal path, as by RabbitMQ
        pos = start + 14
        for name, flag, kind in _PROPERTIES:
            if not flags & flag:
                continue
            if kind == "shortstr":
                value, pos = _shortstr(buf, pos)
                if name == "cluster_id" and value:
                    out.append(("reserved-property", f"cluster-id {value!r}"))
                _check_property(out, f"property {name.replace('_', '-')}", value)
            elif kind == "table":
                inner = pos + 4
                pos = inner + _U32.unpack_from(buf, pos)[0]
                for field in table_types_outside_spec(buf, inner, min(pos, end)):
                    out.append(("field-type", f"header {field!r} of type 'x'"))
            elif kind == "octet":
                if name == "priority" and buf[pos] > 9:
                    out.append(("priority-range", f"priority {buf[pos]}"))
                pos += 1
            else:  # timestamp
                pos += 8
    except (IndexError, struct.error):
        pass
    return out


class StrictConnection(Connection):
    """A Connection that checks every frame against :data:`RULES` before handling it.

    Frames are handed to the normal parser one at a time, so that a violation is noted (and, in
    close mode, answered) before the frame it is in has any effect, and none after it is read
    yet. With ``close`` set, a violation replaces the frame's handling with the rule's close.
    """

    def __init__(self, *args: Any, strict: str = "report", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.strict_close = strict == "close"
        # After a hold (flow control, a full output) the held frame is parsed again: its
        # violations were noted already.
        self._strict_seen: bytes | None = None
        self._strict_summarised = False

    def _parse(self, buf: bytes, pos: int) -> int:
        end_all = len(buf)
        parse_one = super()._parse
        while end_all - pos >= 7:
            frame_type, channel, size = FRAME_HEADER_FIELDS.unpack_from(buf, pos)
            end = pos + 7 + size
            if size > self.frame_max or (end < end_all and buf[end] != 0xCE):
                return parse_one(buf, pos)  # the framing error, as without strict mode
            if end >= end_all:
                break
            frame = bytes(buf[pos : end + 1])
            if frame == self._strict_seen:
                self._strict_seen = None
            elif self._check_frame(frame_type, channel, frame, size):
                pos = end + 1
                if self.state == CLOSED:
                    return end_all
                continue
            parse_one(frame, 0)
            if self.held_input is not None:
                self._strict_seen = frame
                return pos
            pos = end + 1
            if self.state == CLOSED:
                return end_all
        return pos

    def _check_frame(self, frame_type: int, channel: int, frame: bytes, size: int) -> bool:
        """Note the frame's violations; True when strict=close answered one (the frame is then
        not handled)."""
        state = self.state
        if state < AWAIT_START_OK or state > OPEN:
            return False
        found: list[tuple[str, str]] = []
        class_id = method_id = 0
        if state >= AWAIT_OPEN and size + 8 > self.frame_max:
            found.append(("frame-max", f"a frame of {size + 8} octets in all, frame_max is "
                                       f"{self.frame_max}"))
        if frame_type == FRAME_METHOD and size >= 4:
            index = METHOD_INDEX.unpack_from(frame, 7)[0]
            class_id, method_id = index >> 16, index & 0xFFFF
            if not _well_formed(check_arguments, index, frame, 11, 7 + size):
                return False  # answered by the normal path, as RabbitMQ answers it
            found += method_violations(state, index, channel, frame, 11, 7 + size, self.channel_max)
        elif frame_type == FRAME_HEADER and state == OPEN and channel:
            class_id, method_id = 60, 40
            if size >= 14 and not _well_formed(peek_properties, frame[19 : 7 + size]):
                return False
            found += header_violations(frame, 7, 7 + size)
        for rule, detail in found:
            self.note_violation(rule, detail, channel)
        if not found or not self.strict_close:
            return False
        rule = RULES[found[0][0]]
        text = f"strict mode: {found[0][1]} ({rule.name})"
        if rule.channel_scope and channel in self.channels:
            self._fail(ChannelError(rule.reply_code, text), channel, class_id, method_id)
        elif state < AWAIT_OPEN:
            # Before tune-ok the normal close path drops the socket without a word (as RabbitMQ
            # does); a lint names what it refused.
            reply_text = ConnectionLevelError(rule.reply_code, text).reply_text
            self.send_method(0, commands.Connection.Close(
                reply_code=rule.reply_code, reply_text=reply_text, class_id=class_id,
                method_id=method_id))
            self._terminate(text)
        else:
            self._fail(ConnectionLevelError(rule.reply_code, text), channel, class_id, method_id)
        return True

    def _describe_session(self, session: Any) -> None:
        super()._describe_session(session)
        # The live dict: the management API shows the counts as they grow.
        session.details["strict_violations"] = self.violations

    def _release(self) -> None:
        if self.violations and not self._strict_summarised:
            self._strict_summarised = True
            log.warning("%s: strict: connection ends after %d violation(s): %s", self.peer,
                        sum(self.violations.values()), self.violation_summary())
        super()._release()


def _well_formed(check: Callable[..., Any], *args: Any) -> bool:
    try:
        check(*args)
    except Exception:  # noqa: BLE001 - any failure: the normal path has the answer for it
        return False
    return True


def connection_class(strict: str) -> type[Connection]:
    """The protocol class for the ``strict`` setting (the plain one when it is off)."""
    return Connection if strict == "off" else StrictConnection
