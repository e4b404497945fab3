"""Definitions files: RabbitMQ's ``definitions.json`` as text, read and written.

The JSON side of :mod:`amqp_broker.definitions`: how field-table values are shown (as RabbitMQ's
management API shows them), how a file is written (keys sorted, replaced atomically, ``-`` for
standard output) and read (``-`` for standard input), the typed access to its entries that names
an entry at fault, and the one error type of definitions.
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import sys
from dataclasses import dataclass
from typing import Any


class DefinitionsError(ValueError):
    """A definitions file cannot be read or applied; the message names the entry at fault."""


_MISSING: Any = object()


def json_value(value: Any) -> Any:
    """A field-table value as JSON, the way RabbitMQ's rabbit_misc:amqp_table/1 shows it."""
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return value


def json_table(table: dict | None) -> dict:
    """A field table (None for none) as JSON."""
    return json_value(table or {})


def dumps(data: dict) -> str:
    """JSON text of a definitions object: keys sorted (as RabbitMQ writes them), indented."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_definitions_file(data: dict, path: str) -> None:
    """Write ``data`` to ``path`` (``-`` is standard output), replacing the file atomically."""
    text = dumps(data)
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise DefinitionsError(f"cannot write {path}: {exc.strerror or exc}") from None


def read_definitions_file(path: str) -> dict:
    """Read a definitions file (``-`` is standard input); :class:`DefinitionsError` if unusable."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as exc:
        raise DefinitionsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DefinitionsError(f"{path} is not UTF-8 text: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefinitionsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DefinitionsError(
            f"{path}: expected a JSON object with users, vhosts, queues, ..., "
            f"got {json_type(data)}"
        )
    return data


def json_type(value: Any) -> str:
    """What a JSON value is, for an error message (\"a string\", \"an object\", ...)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


@dataclass
class Entry:
    """One entry of a list, and how to name it in an error."""

    where: str
    raw: dict

    def fail(self, problem: str) -> DefinitionsError:
        """The error for ``problem`` with this entry, named as the file has it."""
        return DefinitionsError(f"{self.where}: {problem}")

    def get(self, key: str, kind: type, default: Any = _MISSING) -> Any:
        """The value of ``key``, of type ``kind``; ``default`` when absent or null (if given)."""
        value = self.raw.get(key, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise self.fail(f"'{key}' is missing")
            return default
        if not isinstance(value, kind):
            wanted = "true or false" if kind is bool else "a string"
            raise self.fail(f"'{key}' must be {wanted}, got {json_type(value)}")
        return value

    def text(self, key: str, default: Any = _MISSING) -> str:
        """A string value (see :meth:`get`)."""
        return self.get(key, str, default)

    def flag(self, key: str, default: bool = False) -> bool:
        """A boolean value, false when absent."""
        return self.get(key, bool, default)

    def table(self, key: str) -> dict:
        """An object value (an arguments table), empty when absent."""
        # RabbitMQ's args/1 takes a missing or empty-list "arguments" as an empty table.
        value = self.raw.get(key)
        if value is None or value == []:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"'{key}' must be an object, got {json_type(value)}")
        return value


def entries(data: dict, key: str) -> list[tuple[int, dict]]:
    """The objects of the list ``data[key]`` with their indexes (none when absent or null)."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DefinitionsError(f"'{key}' must be a list, got {json_type(value)}")
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise DefinitionsError(f"{key}[{index}]: expected an object, got {json_type(item)}")
        out.append((index, item))
    return out
