"""Headers-exchange matching, with RabbitMQ 3.10+ semantics.

This mirrors ``rabbit_exchange_type_headers.erl`` (``validate_binding/2`` and
``headers_match/2``):

* ``x-match`` is ``all`` (the default when absent), ``any``, ``all-with-x`` or ``any-with-x``;
  anything else is refused when the binding is made (:func:`parse_binding_arguments` raises
  :class:`ValueError` with RabbitMQ's text, which the broker answers with 406 PRECONDITION_FAILED).
* The ``x-match`` argument itself never takes part in matching. Other binding arguments whose
  key starts with ``x-`` are ignored by ``all``/``any`` and count with the ``-with-x`` variants.
  Message headers only ever meet binding arguments of the same key, so an ``x-`` header is
  ignored exactly when the binding's ``x-`` arguments are.
* A binding argument whose value is void (``None``) matches on the presence of the header,
  whatever its value. Otherwise the header must be present with an equal value.
* ``all`` with no argument left to compare matches every message; ``any`` matches none.

Values are compared like Erlang's ``==`` on the decoded AMQP values: the wire type does not
matter for numbers (a short 1 equals a long 1, and 1 equals 1.0), but a boolean is never equal
to a number, a decimal only equals a decimal of the same scale and digits, and a long string
equals a byte array with the same bytes (both are binaries in RabbitMQ).
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Mapping
from typing import Any

from .fields import field_type_name

__all__ = ["HeadersBinding", "parse_binding_arguments", "X_MATCH_MODES"]

# Why: the binding argument that selects the match mode (RabbitMQ's name; part of the AMQP spec).
X_MATCH = "x-match"

# Why: the four modes RabbitMQ 3.10+ accepts; the value is (require all, count x- arguments).
X_MATCH_MODES: dict[str, tuple[bool, bool]] = {
    "all": (True, False),
    "any": (False, False),
    "all-with-x": (True, True),
    "any-with-x": (False, True),
}

# Why: RabbitMQ's reply texts for a refused x-match (validate_binding/2), verbatim apart from the
# Erlang ~tp rendering of the offending term, which _erl_term approximates.
_BAD_VALUE = "Invalid x-match field value {value}; expected all, any, all-with-x, or any-with-x"
_BAD_TYPE = "Invalid x-match field type {type} (value {value}); expected longstr"

# Why: marks a void binding argument, which matches on presence; a private sentinel so that no
# decoded header value can be mistaken for it.
_PRESENT = object()


class HeadersBinding:
    """The precomputed arguments of one headers-exchange binding.

    Build it with :func:`parse_binding_arguments` when the binding is made, then call
    :meth:`matches` per message.
    """

    __slots__ = ("require_all", "with_x", "_pairs")

    def __init__(self, require_all: bool, with_x: bool, pairs: tuple[tuple[str, Any], ...]):
        """Keep the mode and the ``(key, expected value or _PRESENT)`` pairs to compare."""
        self.require_all = require_all
        self.with_x = with_x
        self._pairs = pairs

    def matches(self, headers: Mapping[str, Any] | None) -> bool:
        """Whether a message with these headers (``None`` for none) is routed by the binding."""
        if headers is None:
            headers = {}
        if self.require_all:
            for key, expected in self._pairs:
                if key not in headers:
                    return False
                if expected is not _PRESENT and not values_equal(expected, headers[key]):
                    return False
            return True
        for key, expected in self._pairs:
            if key in headers and (
                expected is _PRESENT or values_equal(expected, headers[key])
            ):
                return True
        return False

    def __repr__(self) -> str:
        mode = ("all" if self.require_all else "any") + ("-with-x" if self.with_x else "")
        pairs = {k: (None if v is _PRESENT else v) for k, v in self._pairs}
        return f"HeadersBinding({mode!r}, {pairs!r})"


def parse_binding_arguments(arguments: Mapping[str, Any] | None) -> HeadersBinding:
    """Validate a headers binding's arguments and precompute what matching needs.

    Raises :class:`ValueError` with RabbitMQ's reply text (without the ``PRECONDITION_FAILED -``
    prefix) when ``x-match`` is present but is not one of the four modes, or is not a string.
    """
    if arguments is None:
        arguments = {}
    if X_MATCH in arguments:
        mode = _x_match_mode(arguments[X_MATCH])
    else:
        mode = "all"
    require_all, with_x = X_MATCH_MODES[mode]
    pairs = tuple(
        (key, _PRESENT if value is None else value)
        for key, value in arguments.items()
        if key != X_MATCH and (with_x or not key.startswith("x-"))
    )
    return HeadersBinding(require_all, with_x, pairs)


def _x_match_mode(value: Any) -> str:
    """The x-match mode named by ``value``, or :class:`ValueError` in RabbitMQ's words."""
    if isinstance(value, str):
        if value in X_MATCH_MODES:
            return value
        raise ValueError(_BAD_VALUE.format(value=_erl_term(value)))
    if isinstance(value, bytes):
        # pamqp hands a long string that is not valid UTF-8 over as bytes: still a longstr.
        raise ValueError(_BAD_VALUE.format(value=_erl_term(value)))
    raise ValueError(_BAD_TYPE.format(type=field_type_name(value), value=_erl_term(value)))


def values_equal(expected: Any, actual: Any) -> bool:
    """Whether a binding value and a header value are equal, as RabbitMQ's ``==`` sees them.

    Python's ``==`` except that booleans only equal booleans, decimals only equal decimals of
    the same scale and digits, strings equal byte strings with the same UTF-8 bytes, and
    arrays and tables compare element by element under the same rules.
    """
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, (str, bytes, bytearray)):
        if not isinstance(actual, (str, bytes, bytearray)):
            return False
        return _binary(expected) == _binary(actual)
    if isinstance(expected, decimal.Decimal) or isinstance(actual, decimal.Decimal):
        return (
            isinstance(expected, decimal.Decimal)
            and isinstance(actual, decimal.Decimal)
            and expected.as_tuple() == actual.as_tuple()
        )
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(expected) == len(actual)
            and all(values_equal(a, b) for a, b in zip(expected, actual))
        )
    if isinstance(expected, Mapping):
        return (
            isinstance(actual, Mapping)
            and expected.keys() == actual.keys()
            and all(values_equal(v, actual[k]) for k, v in expected.items())
        )
    return expected == actual


def _binary(value: str | bytes | bytearray) -> bytes:
    """The bytes RabbitMQ would hold for a long string or byte array."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _erl_term(value: Any) -> str:
    """An approximation of how Erlang's ``~tp`` prints the decoded value."""
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, bytes, bytearray)):
        return _erl_binary(_binary(value))
    if isinstance(value, datetime.datetime):
        return str(int(value.timestamp()))
    if isinstance(value, decimal.Decimal):
        sign, digits, exponent = value.as_tuple()
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        return f"{{{-exponent if isinstance(exponent, int) else 0},{unscaled}}}"
    return repr(value)


# Why: the characters Erlang's io_lib prints as themselves inside a string (printable range
# latin1, RabbitMQ's default), plus the control characters it prints as escapes.
_ERL_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\b": "\\b",
    "\f": "\\f",
    "\x1b": "\\e",
}


def _erl_binary(data: bytes) -> str:
    """Render a binary like ``~tp``: ``<<"foo">>``, ``<<"é"/utf8>>``, or ``<<1,2,3>>``."""
    if not data:
        return "<<>>"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(
        32 <= ord(c) <= 126 or 160 <= ord(c) <= 255 or c in _ERL_ESCAPES for c in text
    ):
        body = "".join(_ERL_ESCAPES.get(c, c) for c in text)
        suffix = "/utf8" if any(ord(c) > 127 for c in text) else ""
        return f'<<"{body}"{suffix}>>'
    return "<<" + ",".join(str(b) for b in data) + ">>"
