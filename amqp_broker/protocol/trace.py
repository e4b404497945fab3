"""Frame tracing, the sans-IO half: cut a connection's byte stream into frames and describe each.

The server (server/trace.py) hands this module the bytes it passes to, and takes from, the
protocol layer: plaintext frames, whatever the transport (TCP or TLS) underneath. Nothing here
runs unless a trace is on, so none of it is on the hot path; it decodes with pamqp rather than
with the protocol layer's fast paths, as an independent reading of what went over the wire.

A frame is described as a JSON-ready dict:

    {"type": "method", "channel": 1, "size": 20, "method": "basic.publish", "class_id": 60,
     "method_id": 40, "fields": {"exchange": "", "routing_key": "q", ...}}
    {"type": "header", "channel": 1, "size": 22, "class_id": 60, "body_size": 5,
     "properties": {"content_type": "text/plain", "delivery_mode": 2}}
    {"type": "body", "channel": 1, "size": 5, "head": "hello"}
    {"type": "heartbeat", "channel": 0, "size": 0}
    {"type": "protocol-header", "version": "0-9-1"}

A frame that does not decode gets ``"error"`` with the reason instead of its fields.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import struct
from typing import Any

from pamqp import commands
from pamqp import frame as pframe

from .codec import FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD

__all__ = ["BODY_HEAD", "FrameSplitter", "describe_frame", "hide_login", "jsonable", "method_name"]

_FRAME_START = struct.Struct(">BHI")
_TYPES = {FRAME_METHOD: "method", FRAME_HEADER: "header", FRAME_BODY: "body", FRAME_HEARTBEAT: "heartbeat"}
# How many bytes of a body a trace line shows (the raw frame holds all of them).
BODY_HEAD = 32
# Basic's property flags, highest bit first, with pamqp's attribute names and the spec's.
_PROPERTY_FLAGS = (
    ("content_type", "content_type"), ("content_encoding", "content_encoding"),
    ("headers", "headers"), ("delivery_mode", "delivery_mode"), ("priority", "priority"),
    ("correlation_id", "correlation_id"), ("reply_to", "reply_to"), ("expiration", "expiration"),
    ("message_id", "message_id"), ("timestamp", "timestamp"), ("message_type", "type"),
    ("user_id", "user_id"), ("app_id", "app_id"), ("cluster_id", "cluster_id"),
)
# Deprecated fields every client sends as zero: noise in a trace.
_HIDDEN_FIELDS = frozenset({"ticket"})
# pamqp's argument names that are not the spec's.
_SPEC_NAMES = {"exchange_type": "type"}


class FrameSplitter:
    """Cuts one direction of a connection's stream into whole frames (raw bytes each), holding a
    frame split across reads until its end arrives. An AMQP protocol header (``AMQP`` + 4 bytes)
    counts as one frame: a client opens with it, and a broker answers a bad one with its own."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        buf = self.buf
        buf += data
        frames = []
        pos = 0
        end = len(buf)
        while end - pos >= 8:
            if buf[pos] == 0x41:  # "A": a protocol header, never a frame type
                frames.append(bytes(buf[pos:pos + 8]))
                pos += 8
                continue
            size = _FRAME_START.unpack_from(buf, pos)[2]
            stop = pos + 8 + size
            if stop > end:
                break
            frames.append(bytes(buf[pos:stop]))
            pos = stop
        del buf[:pos]
        return frames

    def resync(self, unhandled: bytes) -> None:
        """Start from the middle of a stream: ``unhandled`` is what was received but not yet
        handled when tracing began. Its whole frames are dropped (they arrived untraced); the
        incomplete one it ends with is kept, so what follows is cut at frame boundaries."""
        self.buf.clear()
        self.feed(unhandled)


def method_name(class_id: int, method_id: int) -> str:
    """``basic.publish``, ``queue.declare-ok``: the spec's names (``class.method``)."""
    try:
        name = commands.INDEX_MAPPING[(class_id << 16) | method_id].name
    except KeyError:
        return f"unknown({class_id},{method_id})"
    cls, _, meth = name.partition(".")
    out = []
    for i, ch in enumerate(meth):
        if ch.isupper() and i:
            out.append("-")
        out.append(ch.lower())
    return f"{cls.lower()}.{''.join(out)}"


def describe_frame(raw: bytes) -> dict:
    """What one frame (as :meth:`FrameSplitter.feed` returns it) says, JSON-ready."""
    if raw[:4] == b"AMQP":
        return {"type": "protocol-header", "channel": 0, "version": "-".join(str(b) for b in raw[5:8])}
    frame_type, channel, size = _FRAME_START.unpack_from(raw)
    info: dict[str, Any] = {"type": _TYPES.get(frame_type, f"unknown({frame_type})"), "channel": channel,
                            "size": size}
    payload = raw[7:-1]
    if frame_type == FRAME_METHOD and len(payload) >= 4:
        class_id, method_id = struct.unpack_from(">HH", payload)
        info.update(method=method_name(class_id, method_id), class_id=class_id, method_id=method_id)
    elif frame_type == FRAME_HEADER and len(payload) >= 14:
        class_id, _weight, body_size, flags = struct.unpack_from(">HHQH", payload)
        info.update(class_id=class_id, body_size=body_size)
    elif frame_type == FRAME_BODY:
        info["head"] = printable(payload[:BODY_HEAD])
        return info
    elif frame_type == FRAME_HEARTBEAT:
        return info
    try:
        _used, _channel, value = pframe.unmarshal(raw)
    except Exception as exc:  # anything a malformed frame makes the decoder raise
        info["error"] = f"{type(exc).__name__}: {exc}"
        return info
    if frame_type == FRAME_METHOD:
        info["fields"] = {_SPEC_NAMES.get(key, key): jsonable(val) for key, val in value
                          if key not in _HIDDEN_FIELDS}
        if info["method"] in ("connection.start-ok", "connection.secure-ok"):
            info["fields"]["response"] = "<hidden>"
    elif frame_type == FRAME_HEADER:
        properties = dict(value.properties)
        info["properties"] = {
            shown: jsonable(properties.get(name))
            for bit, (name, shown) in enumerate(_PROPERTY_FLAGS)
            if flags & (1 << (15 - bit))
        }
    return info


def hide_login(raw: bytes, info: dict) -> bytes:
    """``raw`` with a PLAIN/AMQPLAIN password in connection.start-ok overwritten by ``*`` of the same
    length (so frame sizes, and a pcap made from the trace, still hold together)."""
    if info.get("method") not in ("connection.start-ok", "connection.secure-ok"):
        return raw
    try:
        _used, _channel, value = pframe.unmarshal(raw)
    except Exception:
        return raw
    response = value.response
    if isinstance(response, str):
        response = response.encode("utf-8", "surrogateescape")
    if not response:
        return raw
    cut = response.rfind(b"\0") + 1  # PLAIN: \0user\0password; keep the user
    if cut == 0 and b"PASSWORD" in response:  # AMQPLAIN's table: hide its whole value
        cut = response.find(b"PASSWORD") + len(b"PASSWORD")
    masked = response[:cut] + b"*" * (len(response) - cut)
    return raw.replace(response, masked, 1)


def printable(data: bytes) -> str:
    """Bytes as text: printable ASCII as itself, the rest as ``\\xNN``."""
    return "".join(chr(b) if 32 <= b < 127 and b != 0x5C else f"\\x{b:02x}" for b in data)


def jsonable(value: Any) -> Any:
    """A decoded field value as JSON can carry it (bytes as text when UTF-8, else base64)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(data).decode("ascii")}
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return repr(value)
