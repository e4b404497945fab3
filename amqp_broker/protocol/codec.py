"""Hand-written ``struct`` fast paths for the AMQP 0-9-1 frames on the message hot path.

Every published message costs one ``basic.publish`` decode, one content-header decode and (usually)
one ``basic.deliver`` encode; confirms and acks add a few fixed-size frames. Going through pamqp's
generic, attribute-by-attribute marshaller for those costs several microseconds each, so this module
encodes and decodes exactly those frames with precompiled :class:`struct.Struct` objects, byte for
byte what pamqp produces (``tests/unit/test_codec.py`` proves it). Everything else -- rare methods --
is delegated to pamqp.

Conventions:

* Encoders append complete frames (7-byte header, payload, frame-end octet) to a caller-owned
  ``bytearray`` so a connection can batch many frames into one socket send. An encoder that fails
  leaves ``out`` exactly as it found it (no half-written frame can corrupt the stream).
* Decoders take ``buf`` (``bytes``/``bytearray``/``memoryview``) and an ``offset`` and raise only
  :class:`ValueError` on truncated or malformed input, so the caller can map every decode failure to
  one connection error without catching ``IndexError``/``struct.error`` itself.
* Content properties travel as ``properties_raw``: the 2-byte property flags plus the property list,
  undecoded, forwarded byte for byte (RabbitMQ's rabbit_command_assembler does the same). Reading
  them is :mod:`amqp_broker.broker.properties`' job, not the frames'.
"""

from __future__ import annotations

import struct
from typing import Final

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
    "decode_content_header",
    "write_method_frame",
    "write_deliver",
    "write_get_ok",
    "write_return",
    "write_basic_ack",
    "write_basic_nack",
    "write_deliver_head",
]

# --------------------------------------------------------------------------------------------------
# Frame constants (AMQP 0-9-1 spec 4.2.3 "General Frame Format"; the constants of amqp0-9-1.xml)
# --------------------------------------------------------------------------------------------------

# Frame types: the spec constants frame-method / frame-header / frame-body / frame-heartbeat.
FRAME_METHOD: Final = 1
FRAME_HEADER: Final = 2
FRAME_BODY: Final = 3
FRAME_HEARTBEAT: Final = 8
# frame-end octet that closes every frame (spec 4.2.3); a mismatch is a connection error 501.
FRAME_END: Final = 0xCE
FRAME_END_BYTE: Final = b"\xce"
# type (1 octet) + channel (2 octets) + payload size (4 octets), spec 4.2.3.
FRAME_HEADER_SIZE: Final = 7
# Header plus frame-end: payload bytes available in a frame are frame_max - FRAME_OVERHEAD.
FRAME_OVERHEAD: Final = 8
# Smallest frame-max a peer may negotiate (spec constant "frame-min-size"); RabbitMQ enforces it too.
FRAME_MIN_SIZE: Final = 4096
# The only heartbeat frame there is: channel 0, empty payload (spec 4.2.7), so it is a constant.
HEARTBEAT_FRAME: Final = b"\x08\x00\x00\x00\x00\x00\x00\xce"
# Property flags word with no property present: what an empty properties_raw must be on the wire.
EMPTY_PROPERTIES: Final = b"\x00\x00"

# Class id of "basic" (amqp0-9-1.xml class index 60); the only class that carries content in 0-9-1.
CLASS_BASIC: Final = 60

# Method ids packed as (class_id << 16) | method_id -- the 4 octets that open every method frame
# payload (spec 4.2.4), read as one big-endian long; same numbering as pamqp's ``.index``.
BASIC_PUBLISH: Final = 0x003C0028
BASIC_RETURN: Final = 0x003C0032
BASIC_DELIVER: Final = 0x003C003C
BASIC_GET_OK: Final = 0x003C0047
BASIC_ACK: Final = 0x003C0050
BASIC_REJECT: Final = 0x003C005A
BASIC_NACK: Final = 0x003C0078

# --------------------------------------------------------------------------------------------------
# Precompiled structs. One Struct per frame *shape*, so a hot frame is built with one or two
# pack() calls instead of one per field. All AMQP integers are big-endian, unaligned (spec 4.2.5.1).
# The "_CE_" shapes begin with the 0xCE frame-end of the *previous* frame, saving a separate append
# per frame boundary when a method, header and body frames are written back to back.
# --------------------------------------------------------------------------------------------------

# type, channel, size, method id: the header of a method frame plus its class-id/method-id.
_METHOD_HDR: Final = struct.Struct(">BHII")
# delivery-tag (domain "delivery-tag" = longlong, an unsigned 64-bit integer per spec 4.2.5.1)
# + one bit octet. pamqp packs it signed (">q"); the bytes agree for tags below 2**63.
# Consecutive bit arguments share that octet, the first one in the least significant bit
# (spec 4.2.5.2): multiple=1/requeue=2 for nack, mandatory=1/immediate=2 for publish.
_TAG_BITS: Final = struct.Struct(">QB")
# frame-end, then content header frame header + class-id, weight, body-size (spec 4.2.6.1).
_CE_CONTENT_HDR: Final = struct.Struct(">BBHIHHQ")
# frame-end, then a body frame header (spec 4.2.6.2).
_CE_BODY_HDR: Final = struct.Struct(">BBHI")
# basic.get-ok head: frame header, method id, delivery-tag, redelivered bit octet.
_GET_OK_HDR: Final = struct.Struct(">BHIIQB")
# basic.get-ok tail: message-count, then frame-end + content header (as _CE_CONTENT_HDR).
_GET_OK_TAIL: Final = struct.Struct(">IBBHIHHQ")
# basic.return head: frame header, method id, reply-code.
_RETURN_HDR: Final = struct.Struct(">BHIIH")
# A whole basic.ack / basic.nack frame: header, method id, delivery-tag, bits, frame-end.
_ACK_FRAME: Final = struct.Struct(">BHIIQBB")
# Content header fields: class-id, weight, body-size (spec 4.2.6.1).
_CONTENT_FIELDS: Final = struct.Struct(">HHQ")

# basic.ack / basic.nack payload size: method id (4) + delivery-tag (8) + bit octet (1).
_ACK_PAYLOAD: Final = 13
# Fixed part of a content header payload: class-id (2) + weight (2) + body-size (8).
_CONTENT_FIXED: Final = 12

# --------------------------------------------------------------------------------------------------
# Shortstr cache
# --------------------------------------------------------------------------------------------------

# Encoded shortstr (length octet + UTF-8) per string. The same few exchange names, routing keys and
# consumer tags recur on every message, so encoding each once saves an encode + concat per frame.
_SS_CACHE: Final[dict[str, bytes]] = {}
# Bound on the cache; it is simply cleared when full (a workload with unbounded distinct routing keys
# then pays one encode per key, no worse than without a cache, and memory stays bounded).
_SS_CACHE_MAX: Final = 4096
# Largest shortstr: its length is a single octet (spec 4.2.5.3).
_SHORTSTR_MAX: Final = 255


# Decoded basic.publish arguments keyed by their raw bytes (exchange shortstr .. bit octet).
# Publishers send the same exchange, routing key and flags message after message, so one slice and
# one dict lookup replace two UTF-8 decodes and a tuple build; the cached tuple is immutable, so
# sharing it between messages is safe. Bounded and cleared like _SS_CACHE.
_PUBLISH_CACHE: Final[dict[bytes, tuple[str, str, bool, bool]]] = {}
_PUBLISH_CACHE_MAX: Final = 4096


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


def decode_content_header(buf, offset: int, end: int) -> tuple[int, int, bytes]:
    """Decode a content header frame payload spanning ``buf[offset:end]``.

    Returns ``(class_id, body_size, properties_raw)`` where ``properties_raw`` is a copy of the
    property flags and property list, left undecoded. The caller checks the weight (spec 4.2.6.1:
    "must be zero"; RabbitMQ answers another with 505 UNEXPECTED_FRAME) and ``class_id`` against
    the method (a mismatch is a 505 too).
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


class DeliverHead:
    """What :func:`write_deliver` encoded last on one channel for the same consumer tag, exchange
    and routing key (the same ``str`` objects): the method frame up to the delivery tag, and the
    two names after it. Deliveries of one publisher's run of messages to one consumer repeat all
    three, so the frame header and the names are encoded once for the run, not per message."""

    __slots__ = ("consumer_tag", "exchange", "routing_key", "head", "names")

    def __init__(self) -> None:
        self.consumer_tag: str | None = None
        self.exchange: str | None = None
        self.routing_key: str | None = None
        self.head = b""
        self.names = b""


def write_deliver(
    out: bytearray,
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    properties_raw: bytes,
    body: bytes | bytearray | memoryview,
    frame_max: int,
    last: DeliverHead | None = None,
) -> None:
    """Append basic.deliver + content header + body frames for one message.

    ``properties_raw`` is forwarded as is (an empty value is sent as "no properties");
    body frames carry at most ``frame_max - 8`` bytes each, and an empty body sends none.
    ``last``, the channel's :class:`DeliverHead`, is reused when it matches and updated when not.
    """
    props = properties_raw or EMPTY_PROPERTIES
    start = len(out)
    try:
        if (last is not None and consumer_tag is last.consumer_tag and exchange is last.exchange
                and routing_key is last.routing_key):
            head = last.head
            names = last.names
        else:
            ctag = _SS_CACHE.get(consumer_tag) or _shortstr(consumer_tag)
            ex = _SS_CACHE.get(exchange) or _shortstr(exchange)
            rk = _SS_CACHE.get(routing_key) or _shortstr(routing_key)
            # payload: method id (4) + consumer-tag + delivery-tag (8) + bits (1) + exchange + key
            head = _METHOD_HDR.pack(
                FRAME_METHOD, channel, 13 + len(ctag) + len(ex) + len(rk), BASIC_DELIVER
            ) + ctag
            names = ex + rk
            if last is not None:
                last.consumer_tag = consumer_tag
                last.exchange = exchange
                last.routing_key = routing_key
                last.head = head
                last.names = names
        out += head
        out += _TAG_BITS.pack(delivery_tag, 1 if redelivered else 0)
        out += names
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


# write_deliver_head, write_get_ok and write_return repeat write_deliver's steps (cached
# shortstrs, the frame packs, the roll-back on failure) on purpose: each is a hot frame written per
# message, and a shared helper would cost a Python call per message (tests/perf counts them).
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
    start = len(out)
    try:
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
    except struct.error as exc:
        del out[start:]
        raise ValueError(f"cannot encode basic.deliver: {exc}") from exc
    except BaseException:
        del out[start:]
        raise


def write_get_ok(
    out: bytearray,
    channel: int,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    message_count: int,
    properties_raw: bytes,
    body: bytes | bytearray | memoryview,
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
    body: bytes | bytearray | memoryview,
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

_METHOD_FRAME_HDR: Final = struct.Struct(">BHIHH")
_DECLARE_OK_COUNTS: Final = struct.Struct(">II")


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
