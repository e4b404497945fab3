"""Hand-written ``struct`` fast paths for the AMQP 0-9-1 frames on the message hot path.

Every published message costs one ``basic.publish`` decode, one content-header decode and (usually)
one ``basic.deliver`` encode; confirms and acks add a few fixed-size frames. Going through pamqp's
generic, attribute-by-attribute marshaller for those costs several microseconds each, so this module
encodes and decodes exactly those frames with precompiled :class:`struct.Struct` objects, byte for
byte what pamqp produces (``tests/unit/test_codec.py`` proves it). Everything else -- rare methods,
full property decoding -- is delegated to pamqp.

Conventions:

* Encoders append complete frames (7-byte header, payload, frame-end octet) to a caller-owned
  ``bytearray`` so a connection can batch many frames into one socket send. An encoder that fails
  leaves ``out`` exactly as it found it (no half-written frame can corrupt the stream).
* Decoders take ``buf`` (``bytes``/``bytearray``/``memoryview``) and an ``offset`` and raise only
  :class:`ValueError` on truncated or malformed input, so the caller can map every decode failure to
  one connection error without catching ``IndexError``/``struct.error`` itself.
* Content properties travel as ``properties_raw``: the 2-byte property flags plus the property list,
  undecoded, forwarded byte for byte (RabbitMQ's rabbit_command_assembler does the same). Only the
  fields the broker acts on are peeked (:func:`peek_properties`, :func:`peek_headers`).
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands
from pamqp import decode as _pdecode
from pamqp import encode as _pencode

from ..broker.fields import TypedArray, TypedTable
from .fieldtable import encode_table as _typed_table
from .fieldtable import encode_typed_value as _typed_value
from .fieldtable import peek_headers_typed

__all__ = [
    "FRAME_METHOD",
    "FRAME_HEADER",
    "FRAME_BODY",
    "FRAME_HEARTBEAT",
    "FRAME_END",
    "FRAME_END_BYTE",
    "FRAME_HEADER_SIZE",
    "FRAME_OVERHEAD",
    "FRAME_MIN_SIZE",
    "HEARTBEAT_FRAME",
    "EMPTY_PROPERTIES",
    "CLASS_BASIC",
    "BASIC_PUBLISH",
    "BASIC_RETURN",
    "BASIC_DELIVER",
    "BASIC_GET_OK",
    "BASIC_ACK",
    "BASIC_REJECT",
    "BASIC_NACK",
    "decode_basic_publish",
    "decode_basic_ack",
    "decode_basic_nack",
    "decode_basic_reject",
    "decode_content_header",
    "write_method_frame",
    "write_deliver",
    "write_get_ok",
    "write_return",
    "write_content",
    "write_basic_ack",
    "write_basic_nack",
    "write_heartbeat",
    "peek_properties",
    "peek_headers",
    "decode_properties",
    "encode_properties",
]

# --------------------------------------------------------------------------------------------------
# Frame constants (AMQP 0-9-1 spec 4.2.3 "General Frame Format"; the constants of amqp0-9-1.xml)
# --------------------------------------------------------------------------------------------------

# Frame types: the spec constants frame-method / frame-header / frame-body / frame-heartbeat.
FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
# frame-end octet that closes every frame (spec 4.2.3); a mismatch is a connection error 501.
FRAME_END = 0xCE
FRAME_END_BYTE = b"\xce"
# type (1 octet) + channel (2 octets) + payload size (4 octets), spec 4.2.3.
FRAME_HEADER_SIZE = 7
# Header plus frame-end: payload bytes available in a frame are frame_max - FRAME_OVERHEAD.
FRAME_OVERHEAD = 8
# Smallest frame-max a peer may negotiate (spec constant "frame-min-size"); RabbitMQ enforces it too.
FRAME_MIN_SIZE = 4096
# The only heartbeat frame there is: channel 0, empty payload (spec 4.2.7), so it is a constant.
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"
# Property flags word with no property present: what an empty properties_raw must be on the wire.
EMPTY_PROPERTIES = b"\x00\x00"

# Class id of "basic" (amqp0-9-1.xml class index 60); the only class that carries content in 0-9-1.
CLASS_BASIC = 60

# Method ids packed as (class_id << 16) | method_id -- the 4 octets that open every method frame
# payload (spec 4.2.4), read as one big-endian long; same numbering as pamqp's ``.index``.
BASIC_PUBLISH = 0x003C0028
BASIC_RETURN = 0x003C0032
BASIC_DELIVER = 0x003C003C
BASIC_GET_OK = 0x003C0047
BASIC_ACK = 0x003C0050
BASIC_REJECT = 0x003C005A
BASIC_NACK = 0x003C0078

# --------------------------------------------------------------------------------------------------
# Precompiled structs. One Struct per frame *shape*, so a hot frame is built with one or two
# pack() calls instead of one per field. All AMQP integers are big-endian, unaligned (spec 4.2.5.1).
# The "_CE_" shapes begin with the 0xCE frame-end of the *previous* frame, saving a separate append
# per frame boundary when a method, header and body frames are written back to back.
# --------------------------------------------------------------------------------------------------

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
# type, channel, size, method id: the header of a method frame plus its class-id/method-id.
_METHOD_HDR = struct.Struct(">BHII")
# delivery-tag (domain "delivery-tag" = longlong, an unsigned 64-bit integer per spec 4.2.5.1)
# + one bit octet. pamqp packs it signed (">q"); the bytes agree for tags below 2**63.
# Consecutive bit arguments share that octet, the first one in the least significant bit
# (spec 4.2.5.2): multiple=1/requeue=2 for nack, mandatory=1/immediate=2 for publish.
_TAG_BITS = struct.Struct(">QB")
# frame-end, then content header frame header + class-id, weight, body-size (spec 4.2.6.1).
_CE_CONTENT_HDR = struct.Struct(">BBHIHHQ")
# The same without a previous frame to end (write_content).
_CONTENT_HDR = struct.Struct(">BHIHHQ")
# frame-end, then a body frame header (spec 4.2.6.2).
_CE_BODY_HDR = struct.Struct(">BBHI")
# basic.get-ok head: frame header, method id, delivery-tag, redelivered bit octet.
_GET_OK_HDR = struct.Struct(">BHIIQB")
# basic.get-ok tail: message-count, then frame-end + content header (as _CE_CONTENT_HDR).
_GET_OK_TAIL = struct.Struct(">IBBHIHHQ")
# basic.return head: frame header, method id, reply-code.
_RETURN_HDR = struct.Struct(">BHIIH")
# A whole basic.ack / basic.nack frame: header, method id, delivery-tag, bits, frame-end.
_ACK_FRAME = struct.Struct(">BHIIQBB")
# Content header fields: class-id, weight, body-size (spec 4.2.6.1).
_CONTENT_FIELDS = struct.Struct(">HHQ")

# basic.ack / basic.nack payload size: method id (4) + delivery-tag (8) + bit octet (1).
_ACK_PAYLOAD = 13
# Fixed part of a content header payload: class-id (2) + weight (2) + body-size (8).
_CONTENT_FIXED = 12

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
_PF_CONTINUATION = 0x0001
# Flags whose presence makes peek_properties walk the list; without any of them it returns at once.
_PF_PEEKED = _PF_DELIVERY_MODE | _PF_PRIORITY | _PF_EXPIRATION
# peek_properties result for "nothing the broker acts on": shared, so the fast path allocates nothing.
_NOTHING_PEEKED: tuple[int, None, None] = (0, None, None)

# --------------------------------------------------------------------------------------------------
# Shortstr cache
# --------------------------------------------------------------------------------------------------

# Encoded shortstr (length octet + UTF-8) per string. The same few exchange names, routing keys and
# consumer tags recur on every message, so encoding each once saves an encode + concat per frame.
_SS_CACHE: dict[str, bytes] = {}
# Bound on the cache; it is simply cleared when full (a workload with unbounded distinct routing keys
# then pays one encode per key, no worse than without a cache, and memory stays bounded).
_SS_CACHE_MAX = 4096
# Largest shortstr: its length is a single octet (spec 4.2.5.3).
_SHORTSTR_MAX = 255


# Decoded basic.publish arguments keyed by their raw bytes (exchange shortstr .. bit octet).
# Publishers send the same exchange, routing key and flags message after message, so one slice and
# one dict lookup replace two UTF-8 decodes and a tuple build; the cached tuple is immutable, so
# sharing it between messages is safe. Bounded and cleared like _SS_CACHE.
_PUBLISH_CACHE: dict[bytes, tuple[str, str, bool, bool]] = {}
_PUBLISH_CACHE_MAX = 4096


def _shortstr(value: str) -> bytes:
    """Encode ``value`` as a shortstr (cache miss path); ValueError if over 255 UTF-8 bytes."""
    raw = value.encode("utf-8")
    if len(raw) > _SHORTSTR_MAX:
        raise ValueError(f"shortstr exceeds 255 bytes ({len(raw)} bytes): {value[:40]!r}...")
    encoded = bytes((len(raw),)) + raw
    if len(_SS_CACHE) >= _SS_CACHE_MAX:
        _SS_CACHE.clear()
    _SS_CACHE[value] = encoded
    return encoded


def _bad(what: str, exc: BaseException | None = None) -> ValueError:
    """Build the ValueError every decoder raises (one place for the message format)."""
    return ValueError(f"malformed {what}" + (f": {exc}" if exc is not None else ""))


# --------------------------------------------------------------------------------------------------
# Decoders
# --------------------------------------------------------------------------------------------------


def decode_basic_publish(buf, offset: int, end: int | None = None) -> tuple[str, str, bool, bool]:
    """Decode basic.publish arguments starting at ``offset`` (just after the method id).

    Returns ``(exchange, routing_key, mandatory, immediate)``. The deprecated ticket short is
    skipped unread (RabbitMQ ignores it too). ``end`` bounds the frame payload (default
    ``len(buf)``): anything that would be read at or beyond it raises ValueError, as does
    invalid UTF-8. Bytes after the arguments are ignored.
    """
    if end is None:
        end = len(buf)
    try:
        pos = offset + 2  # skip reserved-1 (the deprecated ticket short)
        ex_end = pos + 1 + buf[pos]
        rk_end = ex_end + 1 + buf[ex_end]
        # Positions only grow, so checking the last octet read (the bits) covers every read.
        if rk_end >= end:
            raise _bad("basic.publish", EOFError("truncated"))
        key = buf[pos : rk_end + 1]
        if type(key) is not bytes:
            key = bytes(key)  # bytearray / memoryview slices are not (reliably) hashable
        hit = _PUBLISH_CACHE.get(key)
        if hit is not None:
            return hit
        bits = buf[rk_end]
        result = (
            str(buf[pos + 1 : ex_end], "utf-8"),
            str(buf[ex_end + 1 : rk_end], "utf-8"),
            bool(bits & 1),
            bool(bits & 2),
        )
    except (IndexError, TypeError, UnicodeDecodeError) as exc:
        raise _bad("basic.publish", exc) from exc
    if len(_PUBLISH_CACHE) >= _PUBLISH_CACHE_MAX:
        _PUBLISH_CACHE.clear()
    _PUBLISH_CACHE[key] = result
    return result


def decode_basic_ack(buf, offset: int, end: int | None = None) -> tuple[int, bool]:
    """Decode basic.ack arguments at ``offset``: ``(delivery_tag, multiple)``."""
    if end is None:
        end = len(buf)
    if offset + 9 > end:
        raise _bad("basic.ack", EOFError("truncated"))
    try:
        tag, bits = _TAG_BITS.unpack_from(buf, offset)
    except struct.error as exc:
        raise _bad("basic.ack", exc) from exc
    return tag, bool(bits & 1)


def decode_basic_nack(buf, offset: int, end: int | None = None) -> tuple[int, bool, bool]:
    """Decode basic.nack arguments at ``offset``: ``(delivery_tag, multiple, requeue)``."""
    if end is None:
        end = len(buf)
    if offset + 9 > end:
        raise _bad("basic.nack", EOFError("truncated"))
    try:
        tag, bits = _TAG_BITS.unpack_from(buf, offset)
    except struct.error as exc:
        raise _bad("basic.nack", exc) from exc
    return tag, bool(bits & 1), bool(bits & 2)


def decode_basic_reject(buf, offset: int, end: int | None = None) -> tuple[int, bool]:
    """Decode basic.reject arguments at ``offset``: ``(delivery_tag, requeue)``."""
    if end is None:
        end = len(buf)
    if offset + 9 > end:
        raise _bad("basic.reject", EOFError("truncated"))
    try:
        tag, bits = _TAG_BITS.unpack_from(buf, offset)
    except struct.error as exc:
        raise _bad("basic.reject", exc) from exc
    return tag, bool(bits & 1)


def decode_content_header(buf, offset: int, end: int) -> tuple[int, int, bytes]:
    """Decode a content header frame payload spanning ``buf[offset:end]``.

    Returns ``(class_id, body_size, properties_raw)`` where ``properties_raw`` is a copy of the
    property flags and property list, left undecoded. The weight field is ignored (spec 4.2.6.1:
    "must be zero"; RabbitMQ does not check it either). The caller checks ``class_id`` against the
    method (RabbitMQ answers a mismatch with 505 UNEXPECTED_FRAME).
    """
    # 12 fixed octets plus at least the 2-octet property flags word.
    if end - offset < _CONTENT_FIXED + 2 or end > len(buf) or offset < 0:
        raise _bad("content header", EOFError("truncated"))
    class_id, _weight, body_size = _CONTENT_FIELDS.unpack_from(buf, offset)
    return class_id, body_size, bytes(buf[offset + _CONTENT_FIXED : end])


# --------------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------------


def _write_bodies(out: bytearray, channel: int, body, frame_max: int) -> None:
    """Append the frame-end of the content header frame, then the body frames, then their end.

    Each body frame payload holds at most ``frame_max - 8`` bytes (spec 4.2.6.2); a frame_max of 0
    means "no limit" (connection.tune frame-max field), so the body then goes in one frame.
    """
    size = len(body)
    if not size:
        # No body frames for an empty body (spec 4.2.6.2: body frames carry body-size bytes in
        # total, so zero bytes means zero frames -- RabbitMQ sends none either).
        out.append(FRAME_END)
        return
    limit = frame_max - FRAME_OVERHEAD if frame_max else size
    if size <= limit:
        # Common case: the whole body fits in one frame; append it without slicing.
        out += _CE_BODY_HDR.pack(FRAME_END, FRAME_BODY, channel, size)
        out += body
        out.append(FRAME_END)
        return
    if limit <= 0:
        raise ValueError(f"frame_max {frame_max} leaves no room for a body frame payload")
    # memoryview slices: the body is copied once, into ``out``, never into intermediate chunks.
    view = memoryview(body)
    pack = _CE_BODY_HDR.pack
    for start in range(0, size, limit):
        chunk = view[start : start + limit]
        out += pack(FRAME_END, FRAME_BODY, channel, len(chunk))
        out += chunk
    out.append(FRAME_END)


def write_method_frame(out: bytearray, channel: int, method) -> None:
    """Append one method frame for any pamqp method object (``pamqp.base.Frame``), via pamqp.

    Byte-identical to ``pamqp.frame.marshal(method, channel)``; pamqp's validation errors
    (ValueError/TypeError) propagate and nothing is appended.
    """
    payload = method.marshal()
    try:
        head = _METHOD_HDR.pack(FRAME_METHOD, channel, len(payload) + 4, method.index)
    except struct.error as exc:
        raise ValueError(f"cannot encode method frame: {exc}") from exc
    out += head
    out += payload
    out.append(FRAME_END)


def write_deliver(
    out: bytearray,
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    properties_raw: bytes,
    body: bytes,
    frame_max: int,
) -> None:
    """Append basic.deliver + content header + body frames for one message.

    ``properties_raw`` is forwarded as is (an empty value is sent as "no properties");
    body frames carry at most ``frame_max - 8`` bytes each, and an empty body sends none.
    """
    ctag = _SS_CACHE.get(consumer_tag) or _shortstr(consumer_tag)
    ex = _SS_CACHE.get(exchange) or _shortstr(exchange)
    rk = _SS_CACHE.get(routing_key) or _shortstr(routing_key)
    props = properties_raw or EMPTY_PROPERTIES
    start = len(out)
    try:
        # payload: method id (4) + consumer-tag + delivery-tag (8) + bits (1) + exchange + key
        out += _METHOD_HDR.pack(
            FRAME_METHOD, channel, 13 + len(ctag) + len(ex) + len(rk), BASIC_DELIVER
        )
        out += ctag
        out += _TAG_BITS.pack(delivery_tag, 1 if redelivered else 0)
        out += ex
        out += rk
        out += _CE_CONTENT_HDR.pack(
            FRAME_END, FRAME_HEADER, channel, _CONTENT_FIXED + len(props), CLASS_BASIC, 0, len(body)
        )
        out += props
        size = len(body)
        if size and size <= frame_max - FRAME_OVERHEAD:
            # The common case, inlined from _write_bodies: one body frame.
            out += _CE_BODY_HDR.pack(FRAME_END, FRAME_BODY, channel, size)
            out += body
            out.append(FRAME_END)
        else:
            _write_bodies(out, channel, body, frame_max)
    except struct.error as exc:
        del out[start:]
        raise ValueError(f"cannot encode basic.deliver: {exc}") from exc
    except BaseException:
        del out[start:]
        raise


def write_deliver_head(
    out: bytearray,
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    properties_raw: bytes,
    body_size: int,
) -> None:
    """Everything :func:`write_deliver` writes for a body that fits in one frame, up to the body:
    basic.deliver, the content header and the body frame's 7-byte header. The caller sends the
    body and then one FRAME_END byte."""
    ctag = _SS_CACHE.get(consumer_tag) or _shortstr(consumer_tag)
    ex = _SS_CACHE.get(exchange) or _shortstr(exchange)
    rk = _SS_CACHE.get(routing_key) or _shortstr(routing_key)
    props = properties_raw or EMPTY_PROPERTIES
    out += _METHOD_HDR.pack(FRAME_METHOD, channel, 13 + len(ctag) + len(ex) + len(rk), BASIC_DELIVER)
    out += ctag
    out += _TAG_BITS.pack(delivery_tag, 1 if redelivered else 0)
    out += ex
    out += rk
    out += _CE_CONTENT_HDR.pack(
        FRAME_END, FRAME_HEADER, channel, _CONTENT_FIXED + len(props), CLASS_BASIC, 0, body_size
    )
    out += props
    out += _CE_BODY_HDR.pack(FRAME_END, FRAME_BODY, channel, body_size)


def write_get_ok(
    out: bytearray,
    channel: int,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    message_count: int,
    properties_raw: bytes,
    body: bytes,
    frame_max: int,
) -> None:
    """Append basic.get-ok + content header + body frames for one message."""
    ex = _SS_CACHE.get(exchange) or _shortstr(exchange)
    rk = _SS_CACHE.get(routing_key) or _shortstr(routing_key)
    props = properties_raw or EMPTY_PROPERTIES
    start = len(out)
    try:
        # payload: method id (4) + delivery-tag (8) + bits (1) + exchange + key + message-count (4)
        out += _GET_OK_HDR.pack(
            FRAME_METHOD,
            channel,
            17 + len(ex) + len(rk),
            BASIC_GET_OK,
            delivery_tag,
            1 if redelivered else 0,
        )
        out += ex
        out += rk
        out += _GET_OK_TAIL.pack(
            message_count,
            FRAME_END,
            FRAME_HEADER,
            channel,
            _CONTENT_FIXED + len(props),
            CLASS_BASIC,
            0,
            len(body),
        )
        out += props
        _write_bodies(out, channel, body, frame_max)
    except struct.error as exc:
        del out[start:]
        raise ValueError(f"cannot encode basic.get-ok: {exc}") from exc
    except BaseException:
        del out[start:]
        raise


def write_return(
    out: bytearray,
    channel: int,
    reply_code: int,
    reply_text: str,
    exchange: str,
    routing_key: str,
    properties_raw: bytes,
    body: bytes,
    frame_max: int,
) -> None:
    """Append basic.return + content header + body frames (an unroutable mandatory message)."""
    text = _SS_CACHE.get(reply_text) or _shortstr(reply_text)
    ex = _SS_CACHE.get(exchange) or _shortstr(exchange)
    rk = _SS_CACHE.get(routing_key) or _shortstr(routing_key)
    props = properties_raw or EMPTY_PROPERTIES
    start = len(out)
    try:
        # payload: method id (4) + reply-code (2) + reply-text + exchange + routing-key
        out += _RETURN_HDR.pack(
            FRAME_METHOD, channel, 6 + len(text) + len(ex) + len(rk), BASIC_RETURN, reply_code
        )
        out += text
        out += ex
        out += rk
        out += _CE_CONTENT_HDR.pack(
            FRAME_END, FRAME_HEADER, channel, _CONTENT_FIXED + len(props), CLASS_BASIC, 0, len(body)
        )
        out += props
        _write_bodies(out, channel, body, frame_max)
    except struct.error as exc:
        del out[start:]
        raise ValueError(f"cannot encode basic.return: {exc}") from exc
    except BaseException:
        del out[start:]
        raise


def write_content(
    out: bytearray, channel: int, properties_raw: bytes, body: bytes, frame_max: int
) -> None:
    """Append a content header frame and the body frames only (after a method written elsewhere)."""
    props = properties_raw or EMPTY_PROPERTIES
    start = len(out)
    try:
        out += _CONTENT_HDR.pack(
            FRAME_HEADER, channel, _CONTENT_FIXED + len(props), CLASS_BASIC, 0, len(body)
        )
        out += props
        _write_bodies(out, channel, body, frame_max)
    except struct.error as exc:
        del out[start:]
        raise ValueError(f"cannot encode content: {exc}") from exc
    except BaseException:
        del out[start:]
        raise


def write_basic_ack(out: bytearray, channel: int, delivery_tag: int, multiple: bool) -> None:
    """Append a basic.ack frame (server-to-client publisher confirm), one pack call."""
    try:
        frame = _ACK_FRAME.pack(
            FRAME_METHOD,
            channel,
            _ACK_PAYLOAD,
            BASIC_ACK,
            delivery_tag,
            1 if multiple else 0,
            FRAME_END,
        )
    except struct.error as exc:
        raise ValueError(f"cannot encode basic.ack: {exc}") from exc
    out += frame


def write_basic_nack(
    out: bytearray, channel: int, delivery_tag: int, multiple: bool, requeue: bool = False
) -> None:
    """Append a basic.nack frame (server-to-client negative confirm; requeue is meaningless there,
    RabbitMQ sends it as false, hence the default)."""
    try:
        frame = _ACK_FRAME.pack(
            FRAME_METHOD,
            channel,
            _ACK_PAYLOAD,
            BASIC_NACK,
            delivery_tag,
            (1 if multiple else 0) | (2 if requeue else 0),
            FRAME_END,
        )
    except struct.error as exc:
        raise ValueError(f"cannot encode basic.nack: {exc}") from exc
    out += frame


# --------------------------------------------------------------------------------------------------
# Replies that echo client-chosen names
# --------------------------------------------------------------------------------------------------
# pamqp validates queue names and consumer tags against an ASCII pattern when it marshals, but
# RabbitMQ accepts any UTF-8 shortstr; so the replies that carry such names are written here.

_METHOD_FRAME_HDR = struct.Struct(">BHIHH")
_DECLARE_OK_COUNTS = struct.Struct(">II")


def _write_named_method(out: bytearray, channel: int, class_id: int, method_id: int, args: bytes) -> None:
    out += _METHOD_FRAME_HDR.pack(FRAME_METHOD, channel, 4 + len(args), class_id, method_id)
    out += args
    out.append(FRAME_END)


def _sstr(value: str) -> bytes:
    return _SS_CACHE.get(value) or _shortstr(value)


def write_queue_declare_ok(out: bytearray, channel: int, queue: str, message_count: int, consumer_count: int) -> None:
    """queue.declare-ok (50, 11)."""
    _write_named_method(out, channel, 50, 11, _sstr(queue) + _DECLARE_OK_COUNTS.pack(message_count, consumer_count))


def write_consume_ok(out: bytearray, channel: int, consumer_tag: str) -> None:
    """basic.consume-ok (60, 21)."""
    _write_named_method(out, channel, 60, 21, _sstr(consumer_tag))


def write_cancel_ok(out: bytearray, channel: int, consumer_tag: str) -> None:
    """basic.cancel-ok (60, 31)."""
    _write_named_method(out, channel, 60, 31, _sstr(consumer_tag))


def write_cancel(out: bytearray, channel: int, consumer_tag: str, nowait: bool) -> None:
    """Server-sent basic.cancel (60, 30): the consumer's queue went away."""
    _write_named_method(out, channel, 60, 30, _sstr(consumer_tag) + (b"\x01" if nowait else b"\x00"))


def write_heartbeat(out: bytearray) -> None:
    """Append a heartbeat frame (always the same 8 bytes, spec 4.2.7)."""
    out += HEARTBEAT_FRAME


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


def peek_properties(properties_raw: bytes) -> tuple[int, int | None, str | None]:
    """Read only ``(delivery_mode, priority, expiration)`` from raw properties.

    ``delivery_mode`` is 0 when absent; ``priority`` and ``expiration`` are None when absent.
    Earlier properties are skipped by their length prefixes (the headers table in one step) and
    later ones are not looked at, so a malformed *later* property is not detected here (see
    :func:`decode_properties`). Raises ValueError on truncation, invalid UTF-8 in the expiration,
    or a set continuation bit (spec 4.2.6.1 allows more flag words, but basic has only 14
    properties so no peer, RabbitMQ included, ever sets it).
    """
    try:
        flags = _U16.unpack_from(properties_raw, 0)[0]
    except struct.error as exc:
        raise _bad("content properties", exc) from exc
    if flags & _PF_CONTINUATION:
        raise _bad("content properties", ValueError("continuation flag set"))
    if not flags & _PF_PEEKED:
        # Most messages (and every message with flags == 0) stop here without walking.
        return _NOTHING_PEEKED
    raw = properties_raw
    pos = 2
    delivery_mode = 0
    priority = None
    expiration = None
    try:
        if flags & _PF_CONTENT_TYPE:
            pos += 1 + raw[pos]
        if flags & _PF_CONTENT_ENCODING:
            pos += 1 + raw[pos]
        if flags & _PF_HEADERS:
            # Skip the table whole by its long length; its contents are decoded only on demand.
            pos += 4 + _U32.unpack_from(raw, pos)[0]
        if flags & _PF_DELIVERY_MODE:
            delivery_mode = raw[pos]
            pos += 1
        if flags & _PF_PRIORITY:
            priority = raw[pos]
            pos += 1
        if flags & _PF_EXPIRATION:
            if flags & _PF_CORRELATION_ID:
                pos += 1 + raw[pos]
            if flags & _PF_REPLY_TO:
                pos += 1 + raw[pos]
            start = pos + 1
            stop = start + raw[pos]
            if stop > len(raw):
                raise EOFError("expiration truncated")
            expiration = str(raw[start:stop], "utf-8")
    except (IndexError, struct.error, EOFError, TypeError, UnicodeDecodeError) as exc:
        raise _bad("content properties", exc) from exc
    return delivery_mode, priority, expiration


# Nesting limit for field tables/arrays when validating: a frame can hold thousands of nested empty
# tables, which would otherwise hit Python's recursion limit (RecursionError, not ValueError) in
# pamqp's recursive decoder. Real headers (x-death etc.) nest 2-3 deep; 64 is a broker safety bound.
_MAX_TABLE_DEPTH = 64
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
            _check_table(buf, inner_start, pos, depth + 1)
        elif kind == _ARRAY_TYPE:
            _check_array(buf, inner_start, pos, depth + 1)
    else:
        raise ValueError(f"unknown field type {bytes((kind,))!r}")
    if pos > end:
        raise EOFError("field value truncated")
    return pos


def _check_table(buf: bytes, pos: int, end: int, depth: int = 0) -> None:
    """Validate the entries of a field table occupying ``buf[pos:end]`` (no decode)."""
    if depth > _MAX_TABLE_DEPTH:
        raise ValueError("field tables nested too deeply")
    while pos < end:
        pos += 1 + buf[pos]  # field name shortstr
        if pos > end:
            raise EOFError("field name truncated")
        pos = _check_value(buf, pos, end, depth)


def _check_array(buf: bytes, pos: int, end: int, depth: int) -> None:
    """Validate the values of a field array occupying ``buf[pos:end]`` (no decode)."""
    if depth > _MAX_TABLE_DEPTH:
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
        _check_table(table, 4, len(table))
        return _pdecode.field_table(table)[1]
    except (
        ValueError,
        IndexError,
        KeyError,
        TypeError,
        EOFError,
        OverflowError,
        OSError,
        struct.error,
    ) as exc:
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
            _check_table(raw, start + 4, end)
        props = commands.Basic.Properties()
        pos = 2
        for name, flag, kind in _PROPERTY_SPECS:
            if flags & flag:
                consumed, value = _pdecode.by_type(raw[pos:], kind)
                pos += consumed
                setattr(props, name, value)
        if pos > len(raw):
            raise EOFError("property list truncated")
    except (
        ValueError,
        IndexError,
        KeyError,
        TypeError,
        EOFError,
        OverflowError,
        OSError,
        struct.error,
    ) as exc:
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
        parts.append(_SS_CACHE.get(key) or _shortstr(key))
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
