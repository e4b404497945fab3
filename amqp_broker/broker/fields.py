"""Field tables that remember each value's AMQP type, for headers the broker rewrites.

RabbitMQ keeps header values with their wire type (``{Key, long, 1}``) and writes them back with
the same type and in the same order. A plain decoded ``dict`` loses the width of integers (``b``,
``s``, ``I``, ``l`` all decode to ``int``), so re-encoding one would change the types a Java or .NET
client sees (``x-death``'s ``count`` must stay a long: clients cast it to ``Long``). A
:class:`TypedTable` is a ``dict`` of the decoded values, so everything that reads headers keeps
working, plus the type octet of every entry, which the protocol layer's encoder honours.

Type octets are RabbitMQ's (rabbit_binary_generator): ``S`` longstr, ``l`` long, ``I`` signedint,
``T`` timestamp, ``F`` table, ``A`` array, and so on.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Mapping
from typing import Any, Iterable

# The type octets RabbitMQ uses for the values it adds itself (rabbit_dead_letter, rabbit_fifo).
LONGSTR = "S"
LONG = "l"
TIMESTAMP = "T"
TABLE = "F"
ARRAY = "A"


def field_type_name(value: Any) -> str:
    """RabbitMQ's name for the field-table type ``value`` most likely arrived as, as its reply
    texts print it (``expected integer, got binary``, ``Invalid x-match field type long``)."""
    if value is None:
        return "void"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        # pika, the usual client, sends ints as signed 32-bit when they fit, else 64-bit.
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, bytearray):
        return "binary"
    if isinstance(value, (str, bytes)):
        # pamqp hands over a long string that is not valid UTF-8 as bytes.
        return "longstr"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


class TypedTable(dict):
    """A field table: key -> decoded value in wire order, with ``types``: key -> type octet.

    Keys without a recorded type are encoded the way an untyped value is (see the codec)."""

    __slots__ = ("types",)

    def __init__(self, entries: Iterable[tuple[str, str | None, Any]] = ()):
        super().__init__()
        self.types: dict[str, str | None] = {}
        for key, kind, value in entries:
            self[key] = value
            self.types[key] = kind

    def set(self, key: str, kind: str | None, value: Any) -> None:
        """Set ``key``: replaced where it is when present, else appended at the end (as
        rabbit_misc:set_table_value, i.e. lists:keystore, does)."""
        self[key] = value
        self.types[key] = kind

    def remove(self, key: str) -> None:
        """Delete ``key`` if present."""
        self.pop(key, None)
        self.types.pop(key, None)

    def kind(self, key: str) -> str | None:
        """The type octet of ``key`` (None when absent or untyped)."""
        return self.types.get(key)

    def entries(self) -> list[tuple[str, str | None, Any]]:
        """``(key, type, value)`` triples in order."""
        types = self.types
        return [(key, types.get(key), value) for key, value in self.items()]

    def copy(self) -> "TypedTable":  # type: ignore[override]
        return TypedTable(self.entries())

    def sorted(self) -> "TypedTable":
        """A copy sorted by key, as rabbit_misc:sort_field_table/1 (lists:keysort on the binary
        key: bytewise, which is code point order) leaves every table RabbitMQ rewrites."""
        return TypedTable(sorted(self.entries(), key=lambda entry: entry[0].encode("utf-8")))


class TypedArray(list):
    """A field array: decoded values, with ``types``: the type octet of each, by position."""

    __slots__ = ("types",)

    def __init__(self, items: Iterable[tuple[str | None, Any]] = ()):
        super().__init__()
        self.types: list[str | None] = []
        for kind, value in items:
            self.append(value)
            self.types.append(kind)

    def items_typed(self) -> list[tuple[str | None, Any]]:
        """``(type, value)`` pairs in order."""
        types = self.types
        return [(types[i] if i < len(types) else None, value) for i, value in enumerate(self)]
