"""AMQP 0-9-1 basic properties as data: raw property bytes to values and back.

A message's content-header properties travel as ``properties_raw``: the 2-byte property flags and
the property list, undecoded, forwarded byte for byte (RabbitMQ's rabbit_command_assembler does
the same). This module reads them: :func:`peek_properties` only the fields the broker acts on
(delivery mode, priority, expiration), :func:`peek_headers` only the headers table (for headers
exchanges and dead-lettering), :func:`decode_properties` all of them; and writes them back for
the rare paths that rewrite a message (:func:`encode_properties`, :func:`properties_from_dict`).

It is a data format, not framing, so the core uses it directly (:class:`~.message.Message`); the
protocol layer uses it too, when it builds a message from a publish. Values are pamqp's. Every
decoder raises only ValueError on malformed input.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands
from pamqp import decode as _pdecode
from pamqp import encode as _pencode

from .fields import TypedArray, TypedTable
from .fieldtable import encode_table as _typed_table
from .fieldtable import encode_typed_value as _typed_value
from .fieldtable import peek_headers_typed

__all__ = [
    "peek_properties",
    "peek_headers",
    "decode_properties",
    "encode_properties",
    "properties_to_dict",
    "properties_from_dict",
]

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
# Largest shortstr: its length is a single octet (spec 4.2.5.3).
_SHORTSTR_MAX = 255
# What pamqp's decoders and the checks here raise on malformed input (pamqp has no one base
# class for it); the public decoders turn each into ValueError.
_DECODE_ERRORS = (
    ValueError, IndexError, KeyError, TypeError, EOFError, OverflowError, OSError, struct.error,
)

# Property flag bits of basic.properties (spec 4.2.6.1, most significant bit = first property);
# bit 0 is the continuation flag, bit 1 is unused by the 14 basic properties.
_PF_CONTENT_TYPE = 0x8000
_PF_CONTENT_ENCODING = 0x4000
_PF_HEADERS = 0x2000
_PF_DELIVERY_MODE = 0x1000
_PF_PRIORITY = 0x0800
_PF_CORRELATION_ID = 0x0400
_PF_REPLY_TO = 0x0200
_PF_EXPIRATION = 0x0100
_PF_MESSAGE_ID = 0x0080
_PF_TIMESTAMP = 0x0040
# type, user_id, app_id, cluster_id: the shortstrs after the timestamp, in wire order.
_PF_LATER_SHORTSTRS = (0x0020, 0x0010, 0x0008, 0x0004)
_PF_CONTINUATION = 0x0001
# peek_properties result for "no properties": shared, so that path allocates nothing.
_NOTHING_PEEKED: tuple[int, None, None] = (0, None, None)


def _bad(what: str, exc: BaseException | None = None) -> ValueError:
    """Build the ValueError every decoder raises (one place for the message format)."""
    return ValueError(f"malformed {what}" + (f": {exc}" if exc is not None else ""))


def _shortstr(value: str) -> bytes:
    """Encode a field-table name as a shortstr; ValueError if over 255 UTF-8 bytes."""
    raw = value.encode("utf-8")
    if len(raw) > _SHORTSTR_MAX:
        raise ValueError(f"shortstr exceeds 255 bytes ({len(raw)} bytes): {value[:40]!r}...")
    return bytes((len(raw),)) + raw


def peek_properties(properties_raw: bytes) -> tuple[int, int | None, str | None]:
    """Read ``(delivery_mode, priority, expiration)`` from raw properties, and check the whole
    property list on the way: every length within the data, the headers table well formed (only
    when present: :func:`check_table`), nothing after the last property. RabbitMQ decodes every
    publish's properties and refuses malformed ones (541 INTERNAL_ERROR); forwarding them as they
    are would hand a consumer bytes its client cannot decode.

    ``delivery_mode`` is 0 when absent; ``priority`` and ``expiration`` are None when absent.
    Raises ValueError on any malformation, invalid UTF-8 in the expiration, or a set continuation
    bit (spec 4.2.6.1 allows more flag words, but basic has only 14 properties so no peer,
    RabbitMQ included, ever sets it).
    """
    raw = properties_raw
    try:
        flags = _U16.unpack_from(raw, 0)[0]
        if flags & _PF_CONTINUATION:
            raise ValueError("continuation flag set")
        if not flags and len(raw) == 2:
            return _NOTHING_PEEKED
        if flags == _PF_DELIVERY_MODE and len(raw) == 3:
            return raw[2], None, None  # the commonest case: delivery mode alone
        pos = 2
        delivery_mode = 0
        priority = None
        expiration = None
        if flags & _PF_CONTENT_TYPE:
            pos += 1 + raw[pos]
        if flags & _PF_CONTENT_ENCODING:
            pos += 1 + raw[pos]
        if flags & _PF_HEADERS:
            start = pos + 4
            pos = start + _U32.unpack_from(raw, pos)[0]
            if pos > len(raw):
                raise EOFError("headers table truncated")
            check_table(raw, start, pos)
        if flags & _PF_DELIVERY_MODE:
            delivery_mode = raw[pos]
            pos += 1
        if flags & _PF_PRIORITY:
            priority = raw[pos]
            pos += 1
        if flags & _PF_CORRELATION_ID:
            pos += 1 + raw[pos]
        if flags & _PF_REPLY_TO:
            pos += 1 + raw[pos]
        if flags & _PF_EXPIRATION:
            start = pos + 1
            pos = start + raw[pos]
            if pos > len(raw):
                raise EOFError("expiration truncated")
            expiration = str(raw[start:pos], "utf-8")
        if flags & _PF_MESSAGE_ID:
            pos += 1 + raw[pos]
        if flags & _PF_TIMESTAMP:
            pos += 8
        for flag in _PF_LATER_SHORTSTRS:
            if flags & flag:
                pos += 1 + raw[pos]
        if pos != len(raw):
            raise EOFError("property list truncated" if pos > len(raw) else "bytes after the last property")
    except (IndexError, struct.error, EOFError, TypeError, UnicodeDecodeError) as exc:
        raise _bad("content properties", exc) from exc
    return delivery_mode, priority, expiration


# Where each property sits: its flag and its size (an int: fixed; "s": shortstr; "t": table), in
# wire order up to user_id.
_LAYOUT_TO_USER_ID = (
    (_PF_CONTENT_TYPE, "s"), (_PF_CONTENT_ENCODING, "s"), (_PF_HEADERS, "t"),
    (_PF_DELIVERY_MODE, 1), (_PF_PRIORITY, 1), (_PF_CORRELATION_ID, "s"), (_PF_REPLY_TO, "s"),
    (_PF_EXPIRATION, "s"), (_PF_MESSAGE_ID, "s"), (_PF_TIMESTAMP, 8), (_PF_LATER_SHORTSTRS[0], "s"),
)


def peek_user_id(properties_raw: bytes) -> str | None:
    """The user_id property of raw properties already checked by :func:`peek_properties`, or
    None. Octets that are not UTF-8 (RabbitMQ takes any) come back replaced, so they name no
    user rather than failing the decode of the whole list."""
    raw = properties_raw
    flags = _U16.unpack_from(raw, 0)[0]
    if not flags & _PF_LATER_SHORTSTRS[1]:
        return None
    pos = 2
    for flag, size in _LAYOUT_TO_USER_ID:
        if flags & flag:
            if size == "s":
                pos += 1 + raw[pos]
            elif size == "t":
                pos += 4 + _U32.unpack_from(raw, pos)[0]
            else:
                pos += size
    return str(raw[pos + 1 : pos + 1 + raw[pos]], "utf-8", "replace")


# Nesting limit for field tables/arrays when validating: a frame can hold thousands of nested empty
# tables, which would otherwise hit Python's recursion limit (RecursionError, not ValueError) in
# pamqp's recursive decoder. Real headers (x-death etc.) nest 2-3 deep; 64 is a broker safety bound.
MAX_TABLE_DEPTH = 64
# Fixed value sizes per field type octet, per RabbitMQ's field-table grammar (AMQP 0-9-1 errata,
# rabbit_binary_parser) plus what pamqp also accepts ('L', and 0x00 as void seen "in the wild").
_FIXED_FIELD_SIZE = {
    ord("t"): 1,  # boolean
    ord("b"): 1,  # short-short-int
    ord("B"): 1,  # short-short-uint
    ord("s"): 2,  # short-int
    ord("u"): 2,  # short-uint
    ord("I"): 4,  # long-int
    ord("i"): 4,  # long-uint
    ord("l"): 8,  # long-long-int
    ord("L"): 8,  # long-long-uint (spec grammar; RabbitMQ never sends it)
    ord("f"): 4,  # float
    ord("d"): 8,  # double
    ord("D"): 5,  # decimal: scale octet + long
    ord("T"): 8,  # timestamp
    ord("V"): 0,  # void
    0: 0,  # void, as pamqp tolerates
}
# Types holding a 4-octet length then that many bytes.
_LONG_STRING_TYPES = frozenset((ord("S"), ord("x")))
_TABLE_TYPE = ord("F")
_ARRAY_TYPE = ord("A")


def _check_value(buf: bytes, pos: int, end: int, depth: int) -> int:
    """Validate one typed field value at ``pos``; return the position after it."""
    if pos >= end:
        raise EOFError("field value truncated")
    kind = buf[pos]
    pos += 1
    size = _FIXED_FIELD_SIZE.get(kind)
    if size is not None:
        pos += size
    elif kind in _LONG_STRING_TYPES or kind == _TABLE_TYPE or kind == _ARRAY_TYPE:
        if pos + 4 > end:
            raise EOFError("field length truncated")
        inner_start = pos + 4
        pos = inner_start + _U32.unpack_from(buf, pos)[0]
        if pos > end:
            raise EOFError("field value truncated")
        if kind == _TABLE_TYPE:
            check_table(buf, inner_start, pos, depth + 1)
        elif kind == _ARRAY_TYPE:
            _check_array(buf, inner_start, pos, depth + 1)
    else:
        raise ValueError(f"unknown field type {bytes((kind,))!r}")
    if pos > end:
        raise EOFError("field value truncated")
    return pos


def check_table(buf: bytes, pos: int, end: int, depth: int = 0) -> None:
    """Validate the entries of a field table occupying ``buf[pos:end]`` (no decode): every length
    within the table, known field types, nesting at most MAX_TABLE_DEPTH deep. The one check
    every field table passes, on every path (properties here, method arguments in the protocol's
    method_layout); ValueError or EOFError when malformed."""
    if depth > MAX_TABLE_DEPTH:
        raise ValueError("field tables nested too deeply")
    while pos < end:
        pos += 1 + buf[pos]  # field name shortstr
        if pos > end:
            raise EOFError("field name truncated")
        pos = _check_value(buf, pos, end, depth)


def _check_array(buf: bytes, pos: int, end: int, depth: int) -> None:
    """Validate the values of a field array occupying ``buf[pos:end]`` (no decode)."""
    if depth > MAX_TABLE_DEPTH:
        raise ValueError("field arrays nested too deeply")
    while pos < end:
        pos = _check_value(buf, pos, end, depth)


def _headers_span(raw, flags: int) -> tuple[int, int]:
    """Return (start, end) of the headers table (its length prefix included) in ``raw``."""
    pos = 2
    if flags & _PF_CONTENT_TYPE:
        pos += 1 + raw[pos]
    if flags & _PF_CONTENT_ENCODING:
        pos += 1 + raw[pos]
    end = pos + 4 + _U32.unpack_from(raw, pos)[0]
    if end > len(raw):
        raise EOFError("headers table truncated")
    return pos, end


def peek_headers(properties_raw) -> dict | None:
    """Decode only the headers table of raw properties (pamqp's field-table decoder).

    Returns None when the headers property is absent. The table is structurally validated first
    (pamqp silently accepts some truncated values), so malformed input raises ValueError.
    """
    try:
        flags = _U16.unpack_from(properties_raw, 0)[0]
        if flags & _PF_CONTINUATION:
            raise ValueError("continuation flag set")
        if not flags & _PF_HEADERS:
            return None
        start, end = _headers_span(properties_raw, flags)
        table = bytes(properties_raw[start:end])
        check_table(table, 4, len(table))
        return _pdecode.field_table(table)[1]
    except _DECODE_ERRORS as exc:
        raise _bad("headers table", exc) from exc


# Attribute name, flag bit and pamqp type name of each basic property, in wire order.
_PROPERTY_SPECS: tuple[tuple[str, int, str], ...] = tuple(
    (name, commands.Basic.Properties.flags[name], commands.Basic.Properties.amqp_type(name))
    for name in commands.Basic.Properties.attributes()
)


def decode_properties(properties_raw) -> commands.Basic.Properties:
    """Fully decode raw properties into a ``pamqp.commands.Basic.Properties``.

    Values are decoded by pamqp's decoders; unlike pamqp's own ``unmarshal`` this checks that no
    property runs past the end of the data and that the headers table is well formed, raising
    ValueError otherwise. Bytes after the last property are ignored.
    """
    raw = bytes(properties_raw)
    try:
        flags = _U16.unpack_from(raw, 0)[0]
        if flags & _PF_CONTINUATION:
            raise ValueError("continuation flag set")
        if flags & _PF_HEADERS:
            start, end = _headers_span(raw, flags)
            check_table(raw, start + 4, end)
        props = commands.Basic.Properties()
        pos = 2
        for name, flag, kind in _PROPERTY_SPECS:
            if flags & flag:
                consumed, value = _pdecode.by_type(raw[pos:], kind)
                pos += consumed
                setattr(props, name, value)
        if pos > len(raw):
            raise EOFError("property list truncated")
    except _DECODE_ERRORS as exc:
        raise _bad("content properties", exc) from exc
    return props


def _encode_field_value(value: Any) -> bytes:
    """Encode one typed field value; pamqp's encoding except for the cases noted inline."""
    if isinstance(value, float):
        # pamqp writes Python floats as 'f' (32-bit), silently losing precision; a Python float is
        # a double, and pika/RabbitMQ use 'd' for it, so re-encoded headers keep their value.
        return b"d" + struct.pack(">d", value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        # pamqp only accepts bytearray here ('x'); bytes and memoryview are the same thing to the
        # wire (pika sends bytes as 'x' too), and pamqp *decodes* non-UTF-8 'S' values as bytes,
        # so without this a decoded table could not be re-encoded.
        data = bytes(value)
        return b"x" + _U32.pack(len(data)) + data
    if isinstance(value, dict):
        return b"F" + _encode_table(value)
    if isinstance(value, list):
        if isinstance(value, TypedArray):
            return _typed_value("A", value, _encode_field_value)
        data = b"".join([_encode_field_value(item) for item in value])
        return b"A" + _U32.pack(len(data)) + data
    return _pencode.encode_table_value(value)


def _encode_table(value: dict) -> bytes:
    """Encode a field table, keeping the dict's order (pamqp sorts keys; RabbitMQ and a decoded
    table keep wire order) and allowing names up to the shortstr limit (pamqp cuts at 128)."""
    if not value:
        return b"\x00\x00\x00\x00"
    if not isinstance(value, dict):
        raise TypeError(f"dict required, received {type(value)}")
    if isinstance(value, TypedTable):
        # Headers the broker rewrote: every value keeps its original wire type (see fieldtable).
        return _typed_table(value, _encode_field_value)
    parts = []
    for key, item in value.items():
        parts.append(_shortstr(key))
        parts.append(_encode_field_value(item))
    data = b"".join(parts)
    return _U32.pack(len(data)) + data


def encode_properties(props: commands.Basic.Properties) -> bytes:
    """Encode a ``pamqp.commands.Basic.Properties`` into raw properties (flags + property list).

    Identical to ``props.marshal()`` (a property is present when not None and not ``''``), except
    inside the headers table, where floats are written as doubles, bytes/memoryview as 'x' byte
    arrays, key order is preserved and keys up to 255 bytes are kept (see ``_encode_field_value``).
    Raises ValueError when a value cannot be encoded.
    """
    flags = 0
    parts = []
    try:
        for name, flag, kind in _PROPERTY_SPECS:
            value = getattr(props, name)
            if value is None or value == "":
                continue
            flags |= flag
            if name == "headers":
                parts.append(_encode_table(value))
            else:
                parts.append(_pencode.by_type(value, kind))
    except (TypeError, AttributeError, struct.error, OverflowError) as exc:
        raise ValueError(f"cannot encode content properties: {exc}") from exc
    return _U16.pack(flags) + b"".join(parts)


def properties_to_dict(properties_raw: bytes) -> dict:
    """Every set property by its AMQP name, for the rare paths that rewrite properties."""
    properties = decode_properties(properties_raw)
    values = {}
    for name in properties.__slots__:
        value = getattr(properties, name)
        if value is not None:
            values[name] = value
    if "headers" in values:
        # Typed, so that re-encoding keeps every value's type and order (RabbitMQ does).
        values["headers"] = peek_headers_typed(properties_raw, _headers_span)
    return values


def properties_from_dict(values: dict) -> bytes:
    """The inverse of :func:`properties_to_dict`."""
    return encode_properties(commands.Basic.Properties(**values))
