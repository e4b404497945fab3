"""How rabbitmqctl 3.10 prints values, tables and JSON: the one place that knows it.

rabbitmqctl's table formatter prints top-level strings as they are, booleans as ``true``/``false``,
absent values as nothing, and structured values the way Erlang terms print: a field table is
``[{"x-max-length",10},{"x-dead-letter-exchange","dlx"}]``, user tags ``[administrator, monitoring]``,
a protocol ``{0,9,1}``. Its JSON formatter prints one row per line between ``[`` and ``]``, a
field table as ``[[key, type, value], ...]`` triples.

Values arrive here as the JSON of :class:`~amqp_broker.broker.admin.Admin` snapshots, where AMQP
field types are already gone: the type of a JSON triple is read back from the value (a 32-bit
integer is ``signedint``, a larger one ``long``), which is what the usual clients send.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Sequence, TextIO


@dataclass(frozen=True)
class Cell:
    """A value with its table text and its JSON value given separately."""

    text: str
    json: Any


@dataclass(frozen=True)
class Table:
    """An AMQP field table (``sort``: by key, as RabbitMQ keeps binding arguments)."""

    value: dict
    sort: bool = False


class _Proplist(list):
    """Pairs that the JSON formatter writes as one object, duplicate keys included (how
    RabbitMQ's JSON shows an array inside a field table: ``{"signedint":1,"longstr":"two"}``)."""


# -- Erlang-style text ---------------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def erlang_string(text: str) -> str:
    """A string as a double-quoted Erlang binary prints: ``"a\\"b"``."""
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def erlang_term(value: Any) -> str:
    """A field-table value as rabbitmqctl prints it inside a table."""
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return erlang_string(value)
    if isinstance(value, dict):
        return table_text(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(erlang_term(v) for v in value) + "]"
    return erlang_string(str(value))


def table_text(table: dict, sort: bool = False) -> str:
    """A field table: ``[]`` or ``[{"key",value},...]``."""
    items = sorted(table.items()) if sort else table.items()
    return "[" + ",".join("{" + erlang_string(str(k)) + "," + erlang_term(v) + "}" for k, v in items) + "]"


def tags_text(tags: Iterable[str]) -> str:
    """User tags: ``[administrator, monitoring]``."""
    return "[" + ", ".join(tags) + "]"


# -- JSON triples --------------------------------------------------------------------------------

def amqp_type(value: Any) -> str:
    """The AMQP field type RabbitMQ names for a value, read back from its JSON form."""
    if value is None:
        return "void"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, (list, tuple)):
        return "array"
    return "longstr"


def json_field(value: Any) -> Any:
    """A field-table value as RabbitMQ's JSON formatter writes it (tables as triples)."""
    if value is None:
        return "undefined"
    if isinstance(value, dict):
        return table_json(value)
    if isinstance(value, (list, tuple)):
        return _Proplist((amqp_type(v), json_field(v)) for v in value)
    return value


def table_json(table: dict, sort: bool = False) -> list:
    """A field table as ``[[key, type, value], ...]``."""
    items = sorted(table.items()) if sort else table.items()
    return [[str(k), amqp_type(v), json_field(v)] for k, v in items]


def _json_text(value: Any) -> str:
    if isinstance(value, _Proplist):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _json_text(v) for k, v in value) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + _json_text(v)
                              for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


# -- cells ---------------------------------------------------------------------------------------

def cell_text(value: Any) -> str:
    """A top-level value in a table row."""
    if isinstance(value, Cell):
        return value.text
    if isinstance(value, Table):
        return table_text(value.value, value.sort)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return tags_text(str(v) for v in value)
    return str(value)


def cell_json(value: Any) -> Any:
    """A top-level value in a JSON row."""
    if isinstance(value, Cell):
        return value.json
    if isinstance(value, Table):
        return table_json(value.value, value.sort)
    if value is None:
        return ""  # what rabbitmqctl's JSON shows for an absent value, as its table does
    return value


# -- pids ----------------------------------------------------------------------------------------
# rabbitmqctl names connections, channels and queues by Erlang pid, and scripts pass a pid from
# list_connections back to close_connection. Ours are made from the object's name, so the same
# object always has the same pid and a pid can be matched back to its object.

_PID = re.compile(r"^(?:#PID)?<(?:.*\.)?(\d+)\.(\d+)\.(\d+)>$")


def pid(node: str, identity: str, number: int = 0) -> str:
    """An Erlang-looking pid for the object called ``identity`` (``number``: a channel's)."""
    return f"<{node}.{zlib.crc32(identity.encode('utf-8'))}.{number}.0>"


def parse_pid(text: str) -> tuple[int, int] | None:
    """(identity hash, number) of a pid printed by :func:`pid`, or None if ``text`` is none."""
    match = _PID.match(text.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def identity_hash(identity: str) -> int:
    return zlib.crc32(identity.encode("utf-8"))


# -- output --------------------------------------------------------------------------------------

def write_table(out: TextIO, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                headers: bool = True, streamed: bool = True) -> None:
    """Tab-separated rows under a header row of the column names; no header row when there
    are no rows. rabbitmqctl streams the object listings (queues, exchanges...) and prints
    nothing for none, but prints an empty line for an empty list of permissions (``streamed``
    False)."""
    if not rows:
        if not streamed:
            out.write("\n")
        return
    if headers:
        out.write("\t".join(columns) + "\n")
    for row in rows:
        out.write("\t".join(cell_text(v) for v in row) + "\n")


def write_json_rows(out: TextIO, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                    streamed: bool = True) -> None:
    """``[`` / one object per line, the later ones led by a comma / ``]``, as rabbitmqctl; an
    empty list that is not streamed is ``[]``."""
    if not rows and not streamed:
        out.write("[]\n")
        return
    out.write("[\n")
    for index, row in enumerate(rows):
        obj = {column: cell_json(value) for column, value in zip(columns, row)}
        out.write(("," if index else "") + _json_text(obj) + "\n")
    out.write("]\n")


def write_json(out: TextIO, value: Any) -> None:
    """One JSON value on one line."""
    out.write(_json_text(value) + "\n")
