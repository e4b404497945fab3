"""JSON encoding of definition records whose values may be bytes, decimals or timestamps.

Queue, exchange and binding arguments are AMQP field-table values; JSON alone cannot carry bytes,
``Decimal`` or ``datetime`` (nor tell a list from a tuple), so those are tagged: ``{"$b": base64}``,
``{"$d": "1.50"}``, ``{"$t": iso-8601}``. Everything else is plain JSON, so the file stays readable
with the ``sqlite3`` shell.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
from typing import Any


def _tag(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _tag(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, decimal.Decimal):
        return {"$d": str(value)}
    if isinstance(value, datetime.datetime):
        return {"$t": value.isoformat()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a value of type {type(value).__name__}")


def _untag(value: dict) -> Any:
    # json's object_hook: called by the C decoder for every object, innermost first, so no Python
    # walk over the whole record (a restart reads 100,000 of them).
    if len(value) == 1:
        (key, inner), = value.items()
        if key == "$b":
            return base64.b64decode(inner)
        if key == "$d":
            return decimal.Decimal(inner)
        if key == "$t":
            return datetime.datetime.fromisoformat(inner)
    return value


def dumps(record: Any) -> str:
    """Encode a record (dicts, lists, scalars, bytes, Decimal, datetime) as JSON text."""
    return json.dumps(_tag(record), separators=(",", ":"), sort_keys=True)


def loads(text: str) -> Any:
    """Decode what :func:`dumps` produced."""
    return json.loads(text, object_hook=_untag)
