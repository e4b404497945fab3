"""``amqp-broker trace show FILE``: a trace as a conversation, one line per frame or event.

    c1 = 127.0.0.1:40702 -> 127.0.0.1:5672
      +0.000000 c1      client --> broker  protocol-header 0-9-1
      +0.000254 c1 ch0  client <-- broker  connection.start product='amqp_broker' ...
      +0.002110 c1 ch1  client --> broker  basic.publish routing_key='q'
      +0.002110 c1 ch1  client --> broker    content header body_size=11 content_type='text/plain'
      +0.002110 c1 ch1  client --> broker    content body 11 B 'hello world'

Times are offsets from the first line shown. Method fields are shown when they say something: a
false flag, an empty table and the deprecated reserved fields are left out, and the handshake's
property tables are cut down to the client's or server's product, version and platform.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from ..protocol.trace import BODY_HEAD
from .reader import endpoints

# Of the big tables in the handshake, what a reader of a trace wants.
_IDENTITY = ("product", "version", "platform", "cluster_name", "connection_name")
# Fields no one needs to see in a conversation (deprecated, or reserved and always empty).
_NOISE = frozenset({"ticket", "insist", "capabilities", "known_hosts", "out_of_band", "channel_id",
                    "locales", "locale"})
_DIRECTION = {"in": "client --> broker", "out": "client <-- broker"}


def conversation(records: Iterable[dict], connection: str | None = None,
                 channel: int | None = None, events: bool = True) -> Iterator[str]:
    """The lines of ``show`` for ``records``: only those of connections whose name contains
    ``connection`` (or whose label, ``c1``..., is it), and of ``channel`` (events and
    connection-level frames are on channel 0: with a channel, events are left out)."""
    labels: dict[str, str] = {}
    start: float | None = None
    for record in records:
        conn = record["conn"]
        label = labels.get(conn)
        if label is None:
            label = labels[conn] = f"c{len(labels) + 1}"
            if _selected(conn, label, connection):
                client, broker = endpoints(conn)
                yield f"{label} = {client} -> {broker}"
        if not _selected(conn, label, connection):
            continue
        is_event = "event" in record
        if channel is not None and (is_event or record.get("channel") != channel):
            continue
        if is_event and not events:
            continue
        if start is None:
            start = record["ts"]
        offset = f"+{record['ts'] - start:.6f}"
        if is_event:
            yield f"  {offset} {label:<3}      {'event':<17}  {_event_text(record)}"
        else:
            ch = f"ch{record.get('channel', 0)}"
            direction = _DIRECTION.get(record.get("dir", ""), "?")
            yield f"  {offset} {label:<3} {ch:<4} {direction}  {frame_text(record)}"


def _selected(conn: str, label: str, wanted: str | None) -> bool:
    return wanted is None or wanted == label or wanted in conn


def _event_text(record: dict) -> str:
    details = {k: v for k, v in record.items() if k not in ("ts", "conn", "event")}
    return " ".join([record["event"], *(f"{k}={_value(v)}" for k, v in details.items())])


def frame_text(record: dict) -> str:
    """One frame record as ``method field=value ...`` (or a header, body, heartbeat)."""
    kind = record.get("type")
    error = f" (undecodable: {record['error']})" if "error" in record else ""
    if kind == "method":
        return " ".join([record.get("method", "?"), *_fields(record.get("fields") or {})]) + error
    if kind == "header":
        properties = record.get("properties") or {}
        parts = [f"body_size={record.get('body_size')}"]
        parts += [f"{k}={_value(v)}" for k, v in properties.items()]
        return "  content header " + " ".join(parts) + error
    if kind == "body":
        more = "..." if record.get("size", 0) > BODY_HEAD else ""
        return f"  content body {record.get('size', 0)} B {_quote(record.get('head', ''))}{more}"
    if kind == "protocol-header":
        return f"protocol-header {record.get('version', '?')}"
    if kind == "heartbeat":
        return "heartbeat"
    return f"{kind} frame, {record.get('size', 0)} B{error}"


def _fields(fields: dict) -> list[str]:
    parts = []
    for key, value in fields.items():
        if key in _NOISE or value is False or value == {} or value is None:
            continue
        if key in ("server_properties", "client_properties") and isinstance(value, dict):
            for name in _IDENTITY:
                if name in value:
                    parts.append(f"{name}={_value(value[name])}")
            continue
        if value is True:
            parts.append(key)
        else:
            parts.append(f"{key}={_value(value)}")
    return parts


def _value(value: Any) -> str:
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, dict):
        if set(value) == {"base64"}:
            return f"<{value['base64']}>"
        return "{" + ", ".join(f"{_quote(str(k))}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "\\'") + "'"


def write_conversation(out: TextIO, records: Iterable[dict], **filters: Any) -> int:
    """Write ``show``'s lines to ``out``; returns how many frame and event lines there were."""
    shown = 0
    for line in conversation(records, **filters):
        out.write(line + "\n")
        if line.startswith("  "):
            shown += 1
    return shown
