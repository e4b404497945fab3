"""The ``x-consistent-hash`` exchange, as RabbitMQ 3.10's rabbitmq_consistent_hash_exchange plugin.

A binding's routing key is its weight: the destination gets that many consecutive buckets on a
ring, in binding order. A message goes to the destination owning bucket
``jump_consistent_hash(phash2(Value), Buckets)``, where Value is the routing key, or with the
exchange argument ``hash-header`` the ``{Type, Value}`` of that header (``undefined`` when the
message lacks it), or with ``hash-property`` one of correlation_id, message_id or timestamp.
The hash is Erlang's (:mod:`.erlang_hash`), so a key lands on the same queue as on RabbitMQ.

The plugin's quirks are kept: a destination bound twice gets buckets for its first binding only,
and removing either of its bindings removes all its buckets. After a restart the ring is rebuilt
from the bindings sorted as Erlang sorts them (the plugin's recovery does ``lists:usort``), so it
can differ from the ring before the restart when bindings were made out of that order.
"""

from __future__ import annotations

import calendar
import datetime
import re
from typing import Any, Iterable

from ..errors import INTERNAL_ERROR, ConnectionLevelError, precondition_failed
from ..erlang_text import erlang_binary
from .erlang_hash import UNDEFINED, Atom, jump_consistent_hash, phash2
from .exchange import _EMPTY, Exchange
from .message import Message
from .properties import properties_to_dict

# The properties ``hash-property`` may name (the plugin's ?PROPERTIES).
HASH_PROPERTIES = ("correlation_id", "message_id", "timestamp")

# list_to_integer/1's syntax: an optional sign and decimal digits, nothing else.
_INTEGER = re.compile(r"[+-]?[0-9]+\Z")

# Field-table type octet -> the type atom rabbit_binary_parser gives the value ({Type, Value}).
_TYPE_ATOMS = {
    "S": "longstr", "I": "signedint", "l": "long", "t": "bool", "d": "double", "f": "float",
    "T": "timestamp", "D": "decimal", "F": "table", "A": "array", "V": "void", "x": "binary",
    "b": "byte", "B": "unsignedbyte", "s": "short", "u": "unsignedshort", "i": "unsignedint",
}

# Hashes of routing keys kept per exchange (cleared when the ring changes or it grows past this):
# a workload reuses its keys, and one hash is ~30 us of Python.
_CACHE_LIMIT = 4096


def _longstr(arguments: dict, key: str) -> str | None:
    """The value of a longstr argument; a value of another type crashes the plugin's hash_args
    (case_clause), which RabbitMQ reports as 541 INTERNAL_ERROR on the connection."""
    value = arguments.get(key)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    raise ConnectionLevelError(INTERNAL_ERROR, "")


def _typed(kind: str | None, value: Any) -> tuple[Atom, Any]:
    """``{Type, Value}`` as rabbit_binary_parser decodes a field (an untyped value: longstr)."""
    return Atom(_TYPE_ATOMS.get(kind or "", "longstr")), _erlang_value(kind, value)


def _erlang_value(kind: str | None, value: Any) -> Any:
    """A decoded field value as the Erlang term RabbitMQ holds (binaries as bytes)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if value is None:
        return UNDEFINED
    if isinstance(value, datetime.datetime):
        return calendar.timegm(value.utctimetuple())
    if isinstance(value, dict):  # [{Key, Type, Value}]
        types = getattr(value, "types", {})
        return [(k.encode("utf-8"), *_typed(types.get(k), v)) for k, v in value.items()]
    if isinstance(value, list):  # [{Type, Value}]
        types = getattr(value, "types", [])
        return [_typed(types[i] if i < len(types) else None, item) for i, item in enumerate(value)]
    if hasattr(value, "as_tuple"):  # decimal.Decimal: {Scale, Unscaled}
        sign, digits, exponent = value.as_tuple()
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        return (-exponent if isinstance(exponent, int) else 0, unscaled)
    return value


class ConsistentHashExchange(Exchange):
    """Routes each message to one destination chosen by a weighted jump-consistent-hash ring."""

    type_name = "x-consistent-hash"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # bucket -> destination, buckets 0..len-1 (the plugin's bucket_map; a list here since the
        # buckets are always dense).
        self._ring: list[Any] = []
        header = _header_or_none(self.arguments, "hash-header")
        prop = _header_or_none(self.arguments, "hash-property")
        # What is hashed: ("key", None), ("header", name) or ("property", name).
        self._hash_on = ("header", header) if header is not None else (
            ("property", prop) if prop is not None else ("key", None))
        self._cache: dict[str, int] = {}

    @classmethod
    def validate_declare(cls, arguments: dict) -> None:
        """rabbit_exchange_type_consistent_hash:validate/1, at the declaration of a new exchange."""
        header = _longstr(arguments, "hash-header")
        prop = _longstr(arguments, "hash-property")
        if header is not None and prop is not None:
            raise precondition_failed("hash-header and hash-property are mutually exclusive")
        if prop is not None and prop not in HASH_PROPERTIES:
            raise precondition_failed(f"Unsupported property: {prop}")

    def validate_binding(self, routing_key: str, arguments: dict) -> None:
        if not _INTEGER.match(routing_key):
            # ~p prints the binary's octets as Latin-1 characters, which reach the client as
            # the original UTF-8 octets again.
            shown = erlang_binary(routing_key.encode("utf-8"), 36)
            shown = shown.encode("latin-1").decode("utf-8", "replace")
            raise ValueError(f"The binding key must be an integer: {shown}")
        if int(routing_key) < 1:
            raise ValueError("The binding key must be greater than 0")

    # -- the ring ------------------------------------------------------------------------------

    def _index(self, destination: Any, routing_key: str, arguments: dict) -> None:
        ring = self._ring
        if destination in ring:
            return  # the plugin adds no buckets for a second binding to the same destination
        ring.extend([destination] * int(routing_key))
        self._cache.clear()

    def _unindex(self, destination: Any, routing_key: str, arguments: dict) -> None:
        if destination in self._ring:
            # Its buckets go and the later ones move down (remove_binding/1).
            self._ring = [d for d in self._ring if d is not destination]
            self._cache.clear()

    def clear_bindings(self) -> None:
        super().clear_bindings()
        self._ring = []
        self._cache.clear()

    def recovered(self) -> None:
        """Rebuild the ring as the plugin does on boot: from the bindings in Erlang term order
        (``lists:usort`` of #binding{source, key, destination, args})."""
        self._ring = []
        self._cache.clear()
        for key in sorted(self.bindings, key=_binding_order):
            self._index(key[0], key[1], self.bindings[key])

    def ring(self) -> list[Any]:
        """The destination of each bucket, in bucket order."""
        return list(self._ring)

    # -- routing --------------------------------------------------------------------------------

    def route(self, message: Message) -> Iterable[Any]:
        ring = self._ring
        if not ring:
            return _EMPTY
        what, name = self._hash_on
        if what == "key":
            cache = self._cache
            key = message.routing_key
            bucket = cache.get(key)
            if bucket is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                bucket = cache[key] = jump_consistent_hash(phash2(key), len(ring))
        else:
            bucket = jump_consistent_hash(phash2(self._value(message, what, name)), len(ring))
        return (ring[bucket],)

    @staticmethod
    def _value(message: Message, what: str, name: str) -> Any:
        if what == "header":
            if message.headers is None or name not in message.headers:
                return UNDEFINED
            headers = properties_to_dict(message.properties_raw)["headers"]
            return _typed(headers.kind(name), headers[name])
        properties = properties_to_dict(message.properties_raw)
        value = properties.get(name)
        if value is None:
            return UNDEFINED
        if name == "timestamp":
            if isinstance(value, datetime.datetime):
                value = calendar.timegm(value.utctimetuple())
            return str(int(value)).encode("ascii")  # integer_to_binary(Timestamp)
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _header_or_none(arguments: dict, key: str) -> str | None:
    value = arguments.get(key)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _binding_order(key: tuple) -> tuple:
    destination, routing_key, frozen_arguments = key
    # #resource{virtual_host, kind, name}: 'exchange' sorts before 'queue'.
    kind = 0 if isinstance(destination, Exchange) else 1
    name = destination.name.encode("utf-8")
    return (routing_key.encode("utf-8"), kind, name, repr(frozen_arguments))
