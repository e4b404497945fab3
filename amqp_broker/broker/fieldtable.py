"""Typed field tables: decode keeping each value's type octet, encode writing it back unchanged.

The decoded values are the ones pamqp gives (so a :class:`~amqp_broker.broker.fields.TypedTable`
compares equal to ``properties.peek_headers``' dict); only the types are extra. Used where the broker
rewrites a message's headers (dead-lettering, quorum queues' x-delivery-count) so every value the
broker did not change reaches the consumer byte for byte as RabbitMQ would send it.
"""

from __future__ import annotations

import datetime
import decimal
import struct
from typing import Any

from .fields import TypedArray, TypedTable

_U32 = struct.Struct(">I")

# type octet -> (struct, python decode) for fixed-width values (AMQP 0-9-1 errata / RabbitMQ's
# rabbit_binary_parser; 'L' as pamqp reads it).
_FIXED: dict[str, struct.Struct] = {
    "b": struct.Struct(">b"),
    "B": struct.Struct(">B"),
    "s": struct.Struct(">h"),
    "u": struct.Struct(">H"),
    "I": struct.Struct(">i"),
    "i": struct.Struct(">I"),
    "l": struct.Struct(">q"),
    "L": struct.Struct(">Q"),
    "f": struct.Struct(">f"),
    "d": struct.Struct(">d"),
    "T": struct.Struct(">Q"),
}


def _decode_value(buf: bytes, pos: int) -> tuple[str, Any, int]:
    kind = chr(buf[pos])
    pos += 1
    fixed = _FIXED.get(kind)
    if fixed is not None:
        value = fixed.unpack_from(buf, pos)[0]
        pos += fixed.size
        if kind == "T":
            value = datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
        return kind, value, pos
    if kind == "t":
        return kind, bool(buf[pos]), pos + 1
    if kind == "S" or kind == "x":
        size = _U32.unpack_from(buf, pos)[0]
        data = bytes(buf[pos + 4:pos + 4 + size])
        if len(data) != size:
            raise ValueError("field value truncated")
        if kind == "S":
            try:
                return kind, data.decode("utf-8"), pos + 4 + size
            except UnicodeDecodeError:
                return kind, data, pos + 4 + size
        return kind, bytearray(data), pos + 4 + size
    if kind == "F":
        size = _U32.unpack_from(buf, pos)[0]
        return kind, decode_table(buf, pos + 4, pos + 4 + size), pos + 4 + size
    if kind == "A":
        size = _U32.unpack_from(buf, pos)[0]
        end = pos + 4 + size
        pos += 4
        items = []
        while pos < end:
            item_kind, item, pos = _decode_value(buf, pos)
            items.append((item_kind, item))
        return kind, TypedArray(items), end
    if kind == "D":
        scale = buf[pos]
        raw = _U32.unpack_from(buf, pos + 1)[0]
        return kind, decimal.Decimal(raw) * (decimal.Decimal(10) ** -scale), pos + 5
    if kind == "V" or kind == "\x00":
        return kind, None, pos
    raise ValueError(f"unknown field type {kind!r}")


def decode_table(buf: bytes, pos: int, end: int) -> TypedTable:
    """Decode the entries of a field table occupying ``buf[pos:end]`` (after its length)."""
    entries = []
    while pos < end:
        size = buf[pos]
        key = bytes(buf[pos + 1:pos + 1 + size]).decode("utf-8", "replace")
        pos += 1 + size
        kind, value, pos = _decode_value(buf, pos)
        entries.append((key, kind, value))
    if pos != end:
        raise ValueError("field table overruns its length")
    return TypedTable(entries)


def encode_typed_value(kind: str, value: Any, untyped: Any) -> bytes:
    """Encode ``value`` as field type ``kind``; ``untyped(value)`` encodes values of no known type."""
    fixed = _FIXED.get(kind)
    if fixed is not None:
        if kind == "T" and isinstance(value, datetime.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=datetime.timezone.utc)
            value = int(value.timestamp())
        return kind.encode() + fixed.pack(value)
    if kind == "t":
        return b"t\x01" if value else b"t\x00"
    if kind == "S" or kind == "x":
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return kind.encode() + _U32.pack(len(data)) + data
    if kind == "F" and isinstance(value, dict):
        return b"F" + encode_table(value, untyped)
    if kind == "A" and isinstance(value, list):
        return b"A" + _encode_array(value, untyped)
    if kind == "D" and isinstance(value, decimal.Decimal):
        sign, digits, exponent = value.as_tuple()
        scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        raw = int(value.scaleb(scale))
        return b"D" + bytes((scale,)) + _U32.pack(raw)
    if kind == "V" or kind == "\x00":
        return kind.encode()
    return untyped(value)


def _encode_array(value: list, untyped: Any) -> bytes:
    types = getattr(value, "types", None)
    parts = []
    for index, item in enumerate(value):
        kind = types[index] if types is not None and index < len(types) else None
        parts.append(encode_typed_value(kind, item, untyped) if kind else untyped(item))
    data = b"".join(parts)
    return _U32.pack(len(data)) + data


def encode_table(value: dict, untyped: Any) -> bytes:
    """Encode a field table (length prefix included), using recorded types where there are any."""
    types = getattr(value, "types", None) or {}
    parts = []
    for key, item in value.items():
        name = key.encode("utf-8")
        parts.append(bytes((len(name),)) + name)
        kind = types.get(key)
        parts.append(encode_typed_value(kind, item, untyped) if kind else untyped(item))
    data = b"".join(parts)
    return _U32.pack(len(data)) + data


def peek_headers_typed(properties_raw: bytes, span: Any) -> TypedTable | None:
    """The headers table of raw properties as a TypedTable; ``span`` is codec's _headers_span."""
    flags = struct.unpack_from(">H", properties_raw, 0)[0]
    if not flags & 0x2000:
        return None
    start, end = span(properties_raw, flags)
    return decode_table(bytes(properties_raw), start + 4, end)
