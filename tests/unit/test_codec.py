"""Unit tests for amqp_broker.protocol.codec: every fast path byte-identical to pamqp.

Expected bytes always come from pamqp (``pamqp.frame.marshal`` of ``pamqp.commands`` objects,
``pamqp.header.ContentHeader`` and ``pamqp.body.ContentBody``), and decoders are fed frames pamqp
marshalled and checked against what ``pamqp.frame.unmarshal`` reads back.
"""

from __future__ import annotations

import datetime
import decimal
import pathlib
import random
import struct
import sys

import pytest

try:
    import amqp_broker  # noqa: F401
except ImportError:  # running ./.venv/bin/pytest on a checkout that is not pip-installed
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from pamqp import body as pbody
from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import header as pheader
from pamqp import heartbeat as pheartbeat

from amqp_broker.broker import properties as basic_properties
from amqp_broker.protocol import codec

UTC = datetime.timezone.utc

BODY_SIZES = [0, 1, 4088, 4089, 100000]
FRAME_MAXES = [4096, 131072]
NAMES = [
    ("", ""),
    ("amq.direct", "orders.created"),
    ("exchänge-ü", "ключ.路由.🐇"),
    ("x" * 255, "k" * 255),  # the longest shortstr
]
BIG_TAGS = [0, 1, 255, 2**32, 2**63 - 1, 2**63, 2**64 - 1]

FULL_PROPS = C.Basic.Properties(
    content_type="application/json",
    content_encoding="gzip",
    headers={"a": 1, "b": "two", "c": {"d": [1, 2]}},
    delivery_mode=2,
    priority=7,
    correlation_id="corr-1",
    reply_to="amq.rabbitmq.reply-to",
    expiration="60000",
    message_id="msg-1",
    timestamp=datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    message_type="order",
    user_id="guest",
    app_id="tests",
)
PROPS_CASES = [C.Basic.Properties(), C.Basic.Properties(delivery_mode=1), FULL_PROPS]


@pytest.fixture
def lenient(monkeypatch):
    """Turn off pamqp's exchange-name validation (ASCII-only regex, 127 chars: stricter than
    RabbitMQ, which takes any UTF-8 shortstr) so pamqp can produce the frames we compare to."""
    for cls in (C.Basic.Deliver, C.Basic.GetOk, C.Basic.Return, C.Basic.Publish):
        monkeypatch.setattr(cls, "validate", lambda self: None)


def signed64(tag: int) -> int:
    """pamqp packs 'longlong' with '>q' (signed); the same 8 bytes for an unsigned tag >= 2**63."""
    return tag - 2**64 if tag >= 2**63 else tag


def pamqp_content(channel, props, body, frame_max):
    """Content header + body frames exactly as pamqp marshals them."""
    out = pframe.marshal(pheader.ContentHeader(0, len(body), props), channel)
    step = frame_max - codec.FRAME_OVERHEAD
    for start in range(0, len(body), step):
        out += pframe.marshal(pbody.ContentBody(body[start : start + step]), channel)
    return out


def make_body(size: int) -> bytes:
    """A deterministic, non-repeating-looking body so misplaced chunks are caught."""
    return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(size))


def pamqp_read_properties(raw: bytes) -> C.Basic.Properties:
    """Wrap raw properties in a content header frame and let pamqp.frame.unmarshal decode it."""
    payload = struct.pack(">HHQ", 60, 0, 0) + raw
    frame = struct.pack(">BHI", 2, 1, len(payload)) + payload + b"\xce"
    return pframe.unmarshal(frame)[2].properties


def unmarshal_all(data: bytes):
    """Split a byte stream into pamqp frame objects, checking the whole stream is consumed."""
    frames = []
    view = bytes(data)
    while view:
        consumed, channel, obj = pframe.unmarshal(view)
        frames.append((channel, obj))
        view = view[consumed:]
    return frames


# ---------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------


def test_method_ids_match_pamqp():
    assert codec.BASIC_PUBLISH == C.Basic.Publish.index
    assert codec.BASIC_RETURN == C.Basic.Return.index
    assert codec.BASIC_DELIVER == C.Basic.Deliver.index
    assert codec.BASIC_GET_OK == C.Basic.GetOk.index
    assert codec.BASIC_ACK == C.Basic.Ack.index
    assert codec.BASIC_NACK == C.Basic.Nack.index
    assert codec.BASIC_REJECT == C.Basic.Reject.index
    assert codec.CLASS_BASIC == C.Basic.frame_id


def test_frame_constants_match_pamqp():
    from pamqp import constants

    assert codec.FRAME_METHOD == constants.FRAME_METHOD
    assert codec.FRAME_HEADER == constants.FRAME_HEADER
    assert codec.FRAME_BODY == constants.FRAME_BODY
    assert codec.FRAME_HEARTBEAT == constants.FRAME_HEARTBEAT
    assert codec.FRAME_END == constants.FRAME_END
    assert codec.FRAME_END_BYTE == constants.FRAME_END_CHAR
    assert codec.FRAME_HEADER_SIZE == constants.FRAME_HEADER_SIZE
    assert codec.FRAME_OVERHEAD == constants.FRAME_HEADER_SIZE + 1
    assert codec.FRAME_MIN_SIZE == constants.FRAME_MIN_SIZE
    assert codec.HEARTBEAT_FRAME == pframe.marshal(pheartbeat.Heartbeat(), 0)
    assert codec.EMPTY_PROPERTIES == C.Basic.Properties().marshal()


# ---------------------------------------------------------------------------------------------
# encoders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        C.Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=60),
        C.Connection.Start(server_properties={"product": "amqp_broker", "capabilities": {"x": True}}),
        C.Connection.Close(reply_code=320, reply_text="CONNECTION_FORCED - bye", class_id=0, method_id=0),
        C.Channel.OpenOk(),
        C.Channel.Close(reply_code=404, reply_text="NOT_FOUND - no queue 'q'", class_id=50, method_id=10),
        C.Queue.DeclareOk(queue="amq.gen-abc", message_count=3, consumer_count=1),
        C.Basic.ConsumeOk(consumer_tag="ctag-1"),
        C.Basic.QosOk(),
        C.Basic.GetEmpty(),
        C.Confirm.SelectOk(),
        C.Basic.Deliver("c", 9, True, "ex", "rk"),
    ],
    ids=lambda m: m.name,
)
@pytest.mark.parametrize("channel", [0, 1, 65535])
def test_write_method_frame(method, channel):
    out = bytearray(b"prefix")
    codec.write_method_frame(out, channel, method)
    assert bytes(out) == b"prefix" + pframe.marshal(method, channel)


def test_write_method_frame_bad_channel_appends_nothing():
    out = bytearray(b"x")
    with pytest.raises(ValueError):
        codec.write_method_frame(out, 65536, C.Channel.OpenOk())
    assert out == b"x"


@pytest.mark.parametrize("body_size", BODY_SIZES)
@pytest.mark.parametrize("frame_max", FRAME_MAXES)
@pytest.mark.parametrize("redelivered", [False, True])
@pytest.mark.parametrize("names", NAMES, ids=["empty", "ascii", "unicode", "max"])
def test_write_deliver(lenient, body_size, frame_max, redelivered, names):
    exchange, routing_key = names
    body = make_body(body_size)
    props = FULL_PROPS if body_size % 2 else C.Basic.Properties()
    out = bytearray(b"\x01\x02")
    codec.write_deliver(
        out, 7, "ctag.ü", 42, redelivered, exchange, routing_key, props.marshal(), body, frame_max
    )
    expected = pframe.marshal(C.Basic.Deliver("ctag.ü", 42, redelivered, exchange, routing_key), 7)
    expected += pamqp_content(7, props, body, frame_max)
    assert bytes(out) == b"\x01\x02" + expected
    # And pamqp reads it back as the same frames, every body frame within frame_max.
    frames = unmarshal_all(out[2:])
    assert all(len(pframe.marshal(obj, ch)) <= frame_max for ch, obj in frames)
    assert b"".join(obj.value for _, obj in frames[2:]) == body
    assert len(frames) == 2 + -(-body_size // (frame_max - 8))


def test_write_deliver_reuses_a_channels_last_head_only_for_the_same_names():
    """With a DeliverHead, a delivery repeating the last consumer tag, exchange and routing key
    reuses their encoding; any other is encoded afresh (and becomes the last). Every frame is
    pamqp's."""
    last = codec.DeliverHead()
    ctag_a, ctag_b, exchange = "ctag-a", "ctag-b", "ex"
    key_1, key_2 = "key.one", "key.two.longer"
    steps = [(ctag_a, key_1), (ctag_a, key_1), (ctag_a, key_2), (ctag_b, key_2), (ctag_b, key_2),
             (ctag_a, key_1)]
    out = bytearray()
    expected = b""
    for tag, (ctag, key) in enumerate(steps, 1):
        codec.write_deliver(out, 3, ctag, tag, tag % 2 == 0, exchange, key, b"\x00\x00", b"body%d" % tag,
                            4096, last)
        assert (last.consumer_tag, last.routing_key) == (ctag, key)
        expected += pframe.marshal(C.Basic.Deliver(ctag, tag, tag % 2 == 0, exchange, key), 3)
        expected += pamqp_content(3, C.Basic.Properties(), b"body%d" % tag, 4096)
    assert bytes(out) == expected
    # Equal but not the same strings: encoded afresh, same bytes.
    again = bytearray()
    codec.write_deliver(again, 3, "".join(["ctag-", "a"]), 6, False, exchange, "".join(["key.", "one"]),
                        b"\x00\x00", b"body6", 4096, last)
    assert bytes(again) == bytes(pframe.marshal(C.Basic.Deliver(ctag_a, 6, False, exchange, key_1), 3)
                                 + pamqp_content(3, C.Basic.Properties(), b"body6", 4096))


@pytest.mark.parametrize("tag", BIG_TAGS)
def test_write_deliver_delivery_tags(tag):
    out = bytearray()
    codec.write_deliver(out, 1, "c", tag, False, "e", "r", b"\x00\x00", b"abc", 4096)
    expected = pframe.marshal(C.Basic.Deliver("c", signed64(tag), False, "e", "r"), 1)
    expected += pamqp_content(1, C.Basic.Properties(), b"abc", 4096)
    assert bytes(out) == expected
    # pamqp decodes the tag as signed; the wire bytes are the unsigned tag.
    assert struct.unpack_from(">Q", out, 7 + 4 + 2)[0] == tag


def test_write_deliver_empty_properties_raw_sends_no_properties():
    a, b = bytearray(), bytearray()
    codec.write_deliver(a, 1, "c", 1, False, "e", "r", b"", b"x", 4096)
    codec.write_deliver(b, 1, "c", 1, False, "e", "r", codec.EMPTY_PROPERTIES, b"x", 4096)
    assert a == b


@pytest.mark.parametrize("body_type", [bytes, bytearray, memoryview])
def test_write_deliver_body_types(body_type):
    body = make_body(10000)
    out = bytearray()
    codec.write_deliver(out, 1, "c", 1, False, "e", "r", b"\x00\x00", body_type(body), 4096)
    expected = pframe.marshal(C.Basic.Deliver("c", 1, False, "e", "r"), 1)
    assert bytes(out) == expected + pamqp_content(1, C.Basic.Properties(), body, 4096)


def test_frame_max_zero_means_unlimited():
    body = make_body(300000)
    out = bytearray()
    codec.write_deliver(out, 3, "c", 1, False, "e", "r", b"\x00\x00", body, 0)
    frames = unmarshal_all(out)
    assert len(frames) == 3 and frames[2][1].value == body


@pytest.mark.parametrize("body_size", [1, 16384, 65536, 4096 - 8])
@pytest.mark.parametrize("props", PROPS_CASES, ids=["none", "dm", "full"])
@pytest.mark.parametrize("names", NAMES, ids=["empty", "ascii", "unicode", "max"])
@pytest.mark.parametrize("redelivered", [False, True])
def test_write_deliver_head_then_body_is_write_deliver(body_size, props, names, redelivered):
    """The large-body path (head, then the body as its own buffer, then frame-end) sends exactly
    the bytes write_deliver does, for any body that fits one frame."""
    exchange, routing_key = names
    body = make_body(body_size)
    frame_max = max(body_size + 8, 4096)
    head = bytearray(b"z")
    codec.write_deliver_head(head, 7, "ctag", 2**40, redelivered, exchange, routing_key, props.marshal(), len(body))
    whole = bytearray(b"z")
    codec.write_deliver(whole, 7, "ctag", 2**40, redelivered, exchange, routing_key, props.marshal(), body, frame_max)
    assert bytes(head) + body + codec.FRAME_END_BYTE == bytes(whole)


@pytest.mark.parametrize("body_size", BODY_SIZES)
@pytest.mark.parametrize("frame_max", FRAME_MAXES)
@pytest.mark.parametrize("redelivered", [False, True])
@pytest.mark.parametrize("names", NAMES, ids=["empty", "ascii", "unicode", "max"])
def test_write_get_ok(lenient, body_size, frame_max, redelivered, names):
    exchange, routing_key = names
    body = make_body(body_size)
    props = FULL_PROPS if body_size % 2 else C.Basic.Properties()
    out = bytearray(b"z")
    codec.write_get_ok(
        out, 2, 77, redelivered, exchange, routing_key, 12345, props.marshal(), body, frame_max
    )
    expected = pframe.marshal(C.Basic.GetOk(77, redelivered, exchange, routing_key, 12345), 2)
    assert bytes(out) == b"z" + expected + pamqp_content(2, props, body, frame_max)


@pytest.mark.parametrize("tag", BIG_TAGS)
@pytest.mark.parametrize("message_count", [0, 2**32 - 1])
def test_write_get_ok_numbers(tag, message_count):
    out = bytearray()
    codec.write_get_ok(out, 1, tag, True, "e", "r", message_count, b"\x00\x00", b"", 4096)
    expected = pframe.marshal(C.Basic.GetOk(signed64(tag), True, "e", "r", message_count), 1)
    assert bytes(out) == expected + pamqp_content(1, C.Basic.Properties(), b"", 4096)


@pytest.mark.parametrize("body_size", BODY_SIZES)
@pytest.mark.parametrize("frame_max", FRAME_MAXES)
@pytest.mark.parametrize("names", NAMES, ids=["empty", "ascii", "unicode", "max"])
@pytest.mark.parametrize("reply", [(312, "NO_ROUTE"), (313, "NO_CONSUMERS – ünïcode"), (0, "")])
def test_write_return(lenient, body_size, frame_max, names, reply):
    exchange, routing_key = names
    body = make_body(body_size)
    props = FULL_PROPS if body_size % 2 else C.Basic.Properties()
    out = bytearray()
    codec.write_return(out, 5, reply[0], reply[1], exchange, routing_key, props.marshal(), body, frame_max)
    expected = pframe.marshal(C.Basic.Return(reply[0], reply[1], exchange, routing_key), 5)
    assert bytes(out) == expected + pamqp_content(5, props, body, frame_max)


@pytest.mark.parametrize("tag", BIG_TAGS)
@pytest.mark.parametrize("multiple", [False, True])
def test_write_basic_ack(tag, multiple):
    out = bytearray(b"q")
    codec.write_basic_ack(out, 9, tag, multiple)
    assert bytes(out) == b"q" + pframe.marshal(C.Basic.Ack(signed64(tag), multiple), 9)


@pytest.mark.parametrize("tag", BIG_TAGS)
@pytest.mark.parametrize("multiple", [False, True])
@pytest.mark.parametrize("requeue", [False, True])
def test_write_basic_nack(tag, multiple, requeue):
    out = bytearray()
    codec.write_basic_nack(out, 9, tag, multiple, requeue)
    assert bytes(out) == pframe.marshal(C.Basic.Nack(signed64(tag), multiple, requeue), 9)


def test_write_basic_nack_default_requeue_false():
    out = bytearray()
    codec.write_basic_nack(out, 1, 5, True)
    assert bytes(out) == pframe.marshal(C.Basic.Nack(5, True, False), 1)


def test_stream_of_mixed_frames_unmarshals():
    out = bytearray()
    codec.write_basic_ack(out, 1, 1, False)
    codec.write_deliver(out, 1, "c", 2, False, "e", "r", FULL_PROPS.marshal(), make_body(9000), 4096)
    out += codec.HEARTBEAT_FRAME
    codec.write_return(out, 2, 312, "NO_ROUTE", "e", "r", b"\x00\x00", b"", 4096)
    codec.write_basic_nack(out, 1, 3, True)
    kinds = [type(obj).__name__ for _, obj in unmarshal_all(out)]
    assert kinds == [
        "Ack", "Deliver", "ContentHeader", "ContentBody", "ContentBody", "ContentBody",
        "Heartbeat", "Return", "ContentHeader", "Nack",
    ]


# ---- encoder errors: ValueError, and `out` left untouched --------------------------------------


def _writers(a):
    """(name, arguments it uses, call) for each message writer, with arguments from ``a``."""
    return [
        (
            "deliver",
            {"channel", "ctag", "tag", "ex", "rk", "fm"},
            lambda out: codec.write_deliver(
                out, a["channel"], a["ctag"], a["tag"], False, a["ex"], a["rk"], b"\x00\x00", b"b", a["fm"]
            ),
        ),
        (
            "get_ok",
            {"channel", "tag", "ex", "rk", "fm"},
            lambda out: codec.write_get_ok(
                out, a["channel"], a["tag"], False, a["ex"], a["rk"], 0, b"\x00\x00", b"b", a["fm"]
            ),
        ),
        (
            "return",  # the consumer-tag slot doubles as the reply text here
            {"channel", "ctag", "ex", "rk", "fm"},
            lambda out: codec.write_return(
                out, a["channel"], 312, a["ctag"], a["ex"], a["rk"], b"\x00\x00", b"b", a["fm"]
            ),
        ),
        (
            "deliver_head",
            {"channel", "ctag", "tag", "ex", "rk"},
            lambda out: codec.write_deliver_head(
                out, a["channel"], a["ctag"], a["tag"], False, a["ex"], a["rk"], b"\x00\x00", 1
            ),
        ),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"ex": "e" * 256},
        {"rk": "é" * 128},  # 256 UTF-8 bytes
        {"ctag": "c" * 300},
        {"tag": 2**64},
        {"tag": -1},
        {"channel": 65536},
        {"channel": -1},
        {"fm": 8},
        {"fm": -5},
    ],
    ids=str,
)
def test_writers_reject_bad_input_atomically(bad):
    args = dict(channel=1, ctag="c", tag=1, ex="e", rk="r", fm=4096)
    args.update(bad)
    (field,) = bad
    for name, uses, write in _writers(args):
        out = bytearray(b"keep")
        if field in uses:
            with pytest.raises(ValueError):
                write(out)
            assert out == b"keep", name
        else:
            write(out)  # the bad value is not an argument of this writer


@pytest.mark.parametrize("tag", [2**64, -1])
def test_ack_nack_reject_bad_tags(tag):
    out = bytearray(b"k")
    with pytest.raises(ValueError):
        codec.write_basic_ack(out, 1, tag, False)
    with pytest.raises(ValueError):
        codec.write_basic_nack(out, 1, tag, False)
    assert out == b"k"


def test_write_deliver_bad_frame_max_leaves_out_untouched():
    out = bytearray(b"k")
    with pytest.raises(ValueError):
        codec.write_deliver(out, 1, "c", 1, False, "e", "r", b"\x00\x00", b"body", 5)
    assert out == b"k"


def test_shortstr_cache_is_bounded_and_correct():
    codec._SS_CACHE.clear()
    for i in range(codec._SS_CACHE_MAX + 500):
        out = bytearray()
        codec.write_deliver(out, 1, "c", 1, False, "e", f"key.{i}", b"\x00\x00", b"", 4096)
        assert len(codec._SS_CACHE) <= codec._SS_CACHE_MAX
    # A cached value is what a fresh encode gives.
    out1, out2 = bytearray(), bytearray()
    codec.write_deliver(out1, 1, "c", 1, False, "e", "key.1", b"\x00\x00", b"", 4096)
    codec._SS_CACHE.clear()
    codec.write_deliver(out2, 1, "c", 1, False, "e", "key.1", b"\x00\x00", b"", 4096)
    assert out1 == out2


# ---------------------------------------------------------------------------------------------
# decoders
# ---------------------------------------------------------------------------------------------


def _buffers(frame: bytes):
    """(buf, offset, end) triples: payload-only as bytes/bytearray/memoryview, and a whole frame."""
    payload = frame[7:-1]
    return [
        (payload, 4, None),
        (bytearray(payload), 4, None),
        (memoryview(payload), 4, None),
        (b"junk" + frame + b"next-frame", 4 + 7 + 4, 4 + len(frame) - 1),
        (memoryview(b"junk" + frame), 4 + 7 + 4, 4 + len(frame) - 1),
    ]


@pytest.mark.parametrize("names", NAMES, ids=["empty", "ascii", "unicode", "max"])
@pytest.mark.parametrize("mandatory", [False, True])
@pytest.mark.parametrize("immediate", [False, True])
def test_decode_basic_publish(lenient, names, mandatory, immediate):
    exchange, routing_key = names
    frame = pframe.marshal(C.Basic.Publish(0, exchange, routing_key, mandatory, immediate), 1)
    obj = pframe.unmarshal(frame)[2]
    for buf, offset, end in _buffers(frame):
        got = codec.decode_basic_publish(buf, offset, end)
        assert got == (obj.exchange, obj.routing_key, obj.mandatory, obj.immediate)
        assert got == (exchange, routing_key, mandatory, immediate)


def test_decode_basic_publish_cache_bounded_and_keyed_on_flags():
    codec._PUBLISH_CACHE.clear()
    for i in range(codec._PUBLISH_CACHE_MAX + 100):
        payload = pframe.marshal(C.Basic.Publish(0, "ex", f"rk.{i}", bool(i & 1), False), 1)[7:-1]
        assert codec.decode_basic_publish(payload, 4) == ("ex", f"rk.{i}", bool(i & 1), False)
        assert len(codec._PUBLISH_CACHE) <= codec._PUBLISH_CACHE_MAX
    for mandatory in (False, True, False):
        payload = pframe.marshal(C.Basic.Publish(0, "ex", "rk", mandatory, not mandatory), 1)[7:-1]
        for buf in (payload, bytearray(payload), memoryview(bytearray(payload))):
            assert codec.decode_basic_publish(buf, 4) == ("ex", "rk", mandatory, not mandatory)


def test_decode_basic_publish_truncated(lenient):
    frame = pframe.marshal(C.Basic.Publish(0, "exchange", "routing.key", True, False), 1)
    payload = frame[7:-1]
    for cut in range(4, len(payload)):
        with pytest.raises(ValueError):
            codec.decode_basic_publish(payload[:cut], 4)
        with pytest.raises(ValueError):  # same data, bounded by `end` instead of the buffer
            codec.decode_basic_publish(payload, 4, cut)
    with pytest.raises(ValueError):
        codec.decode_basic_publish(b"", 0)


def test_decode_basic_publish_bad_utf8():
    payload = b"\x00\x00" + b"\x02\xff\xfe" + b"\x01r" + b"\x00"
    with pytest.raises(ValueError):
        codec.decode_basic_publish(payload, 0)
    payload = b"\x00\x00" + b"\x01e" + b"\x02\xc3\x28" + b"\x00"
    with pytest.raises(ValueError):
        codec.decode_basic_publish(payload, 0)


@pytest.mark.parametrize("tag", BIG_TAGS)
@pytest.mark.parametrize("multiple", [False, True])
def test_decode_basic_ack(tag, multiple):
    frame = pframe.marshal(C.Basic.Ack(signed64(tag), multiple), 1)
    obj = pframe.unmarshal(frame)[2]
    for buf, offset, end in _buffers(frame):
        assert codec.decode_basic_ack(buf, offset, end) == (obj.delivery_tag % 2**64, obj.multiple)
        assert codec.decode_basic_ack(buf, offset, end) == (tag, multiple)


@pytest.mark.parametrize(
    "decoder, method",
    [
        (codec.decode_basic_ack, C.Basic.Ack(5, True)),
    ],
)
def test_ack_family_truncated(decoder, method):
    payload = pframe.marshal(method, 1)[7:-1]
    for cut in range(0, len(payload)):
        with pytest.raises(ValueError):
            decoder(payload[:cut], 4)
        with pytest.raises(ValueError):
            decoder(payload, 4, cut)


@pytest.mark.parametrize("props", PROPS_CASES, ids=["none", "dm", "full"])
@pytest.mark.parametrize("body_size", [0, 1, 2**40, 2**64 - 1])
def test_decode_content_header(props, body_size):
    frame = pframe.marshal(pheader.ContentHeader(0, body_size, props), 3)
    obj = pframe.unmarshal(frame)[2]
    payload = frame[7:-1]
    for buf, offset, end in [
        (payload, 0, len(payload)),
        (bytearray(payload), 0, len(payload)),
        (memoryview(payload), 0, len(payload)),
        (b"xx" + frame + b"more", 2 + 7, 2 + len(frame) - 1),
    ]:
        class_id, size, raw = codec.decode_content_header(buf, offset, end)
        assert (class_id, size) == (obj.class_id, obj.body_size) == (60, body_size)
        assert type(raw) is bytes and raw == props.marshal()
        assert basic_properties.decode_properties(raw) == obj.properties


def test_decode_content_header_truncated():
    payload = pframe.marshal(pheader.ContentHeader(0, 5, C.Basic.Properties()), 1)[7:-1]
    assert len(payload) == 14
    for cut in range(14):
        with pytest.raises(ValueError):
            codec.decode_content_header(payload[:cut], 0, cut)
    with pytest.raises(ValueError):  # end beyond the buffer
        codec.decode_content_header(payload, 0, 15)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------

# Every field-table value type pamqp can encode, plus bytes/memoryview and doubles (see codec).
TABLE_VALUES = {
    "bool_t": True,
    "bool_f": False,
    "int8": -128,
    "int8b": 127,
    "int16": -32768,
    "uint16": 65535,
    "int32": -(2**31),
    "uint32": 2**32 - 1,
    "int64": -(2**63),
    "int64max": 2**63 - 1,
    "float": 1.5,
    "double": 0.1,  # not representable as a 32-bit float
    "decimal": decimal.Decimal("3.14"),
    "decimal_neg": decimal.Decimal("-271.828"),
    "decimal_int": decimal.Decimal("42"),
    "longstr": "héllo wörld",
    "empty_str": "",
    "bytearray": bytearray(b"\x00\x01\xff"),
    "bytes": b"\xde\xad\xbe\xef",
    "array": [1, "two", 3.25, None, [4, [5]], {"k": "v"}, True],
    "empty_array": [],
    "timestamp": datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    "table": {"n": 1, "nested": {"deeper": {"deepest": "x"}}},
    "empty_table": {},
    "void": None,
    "ключ": "unicode key",
}


def test_encode_properties_matches_pamqp_marshal():
    # Without floats/bytes and with keys in sorted order, the encoding is pamqp's byte for byte.
    headers = {k: v for k, v in sorted(TABLE_VALUES.items()) if k not in ("float", "double", "bytes", "array")}
    for props in PROPS_CASES + [C.Basic.Properties(headers=headers, priority=0, content_type="")]:
        assert basic_properties.encode_properties(props) == props.marshal()


@pytest.mark.parametrize("key", sorted(TABLE_VALUES))
def test_field_table_value_round_trip(key):
    props = C.Basic.Properties(headers={key: TABLE_VALUES[key]})
    raw = basic_properties.encode_properties(props)
    assert basic_properties.decode_properties(raw).headers == {key: TABLE_VALUES[key]}
    assert basic_properties.peek_headers(raw) == {key: TABLE_VALUES[key]}
    # pamqp's own frame decoder agrees on our encoding.
    assert pamqp_read_properties(raw).headers == {key: TABLE_VALUES[key]}


def test_all_table_values_together_keep_order():
    props = C.Basic.Properties(headers=dict(TABLE_VALUES))
    decoded = basic_properties.decode_properties(basic_properties.encode_properties(props)).headers
    assert decoded == TABLE_VALUES
    assert list(decoded) == list(TABLE_VALUES)


def test_table_types_pamqp_never_writes_still_decode():
    # 'B' uint8, 'f' float32, 'd' double, 'L', 'V' and 0x00 void, 'x' bytes, non-UTF-8 'S'.
    entries = [
        (b"B", b"\xff", 255),
        (b"f", struct.pack(">f", 1.5), 1.5),
        (b"d", struct.pack(">d", 0.1), 0.1),
        (b"L", struct.pack(">q", -5), -5),
        (b"V", b"", None),
        (b"\x00", b"", None),
        (b"x", b"\x00\x00\x00\x02ab", bytearray(b"ab")),
        (b"S", b"\x00\x00\x00\x02\xff\xfe", b"\xff\xfe"),  # pamqp falls back to bytes
    ]
    for kind, data, expected in entries:
        table = b"\x01k" + kind + data
        raw = struct.pack(">H", 0x2000) + struct.pack(">I", len(table)) + table
        assert basic_properties.peek_headers(raw) == {"k": expected}
        assert basic_properties.decode_properties(raw).headers == {"k": expected}
        # And whatever pamqp decoded can be encoded again (pamqp alone fails on bytes).
        basic_properties.encode_properties(basic_properties.decode_properties(raw))


def test_pamqp_quirks_we_work_around():
    # pamqp writes a Python float as a 32-bit 'f' and cannot encode bytes at all; we write 'd'/'x'.
    assert b"f" in C.Basic.Properties(headers={"k": 0.1}).marshal()
    raw = basic_properties.encode_properties(C.Basic.Properties(headers={"k": 0.1}))
    assert raw[-9:-8] == b"d" and basic_properties.peek_headers(raw) == {"k": 0.1}
    with pytest.raises(TypeError):
        C.Basic.Properties(headers={"k": b"x"}).marshal()
    # pamqp cannot encode a delivery tag >= 2**63 ('longlong' is packed signed).
    with pytest.raises(TypeError):
        C.Basic.Ack(2**63).marshal()


@pytest.mark.parametrize(
    "field, value",
    [
        ("content_type", "text/plain; charset=ütf-8"),
        ("content_encoding", "gzip"),
        ("headers", {"n": 5, "x-match": "all"}),  # sorted: pamqp sorts keys, we keep order
        ("headers", {}),
        ("delivery_mode", 1),
        ("delivery_mode", 2),
        ("priority", 0),
        ("priority", 255),
        ("correlation_id", "c" * 255),
        ("reply_to", "amq.rabbitmq.reply-to"),
        ("expiration", "0"),
        ("message_id", "🐇"),
        ("timestamp", datetime.datetime(1970, 1, 1, tzinfo=UTC)),
        ("timestamp", datetime.datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)),
        ("message_type", "t"),
        ("user_id", "guest"),
        ("app_id", "app"),
    ],
)
def test_every_property_round_trips(field, value):
    props = C.Basic.Properties(**{field: value})
    raw = basic_properties.encode_properties(props)
    assert raw == props.marshal()
    decoded = basic_properties.decode_properties(raw)
    assert getattr(decoded, field) == value
    assert decoded == props
    assert basic_properties.peek_properties(raw) == (
        decoded.delivery_mode or 0,
        decoded.priority,
        decoded.expiration,
    )


def test_cluster_id_decodes():
    # Deprecated and "must be empty", but a peer may still send it; it must not break decoding.
    raw = struct.pack(">H", 0x0004) + b"\x02cl"
    assert basic_properties.decode_properties(raw).cluster_id == "cl"
    assert basic_properties.peek_properties(raw) == (0, None, None)


_STRINGS = ["", "a", "application/json", "ü-ñ-€", "x" * 255]
_HEADER_POOL = [
    None,
    {},
    {"x-match": "any"},
    {"a": 1, "b": [1.5, b"raw", {"c": None}], "d": decimal.Decimal("1.01")},
    {"x-death": [{"count": 1, "reason": "expired", "queue": "q", "time": datetime.datetime(2024, 1, 1, tzinfo=UTC)}]},
    {"big": "y" * 3000},
]


def _random_props(rng: random.Random, present: int) -> C.Basic.Properties:
    """Properties with field i present when bit i of ``present`` is set (random values)."""
    names = [name for name, _, _ in basic_properties._PROPERTY_SPECS][:13]  # not cluster_id
    values = {}
    for i, name in enumerate(names):
        if not present >> i & 1:
            continue
        if name == "headers":
            values[name] = rng.choice(_HEADER_POOL[1:])
        elif name == "delivery_mode":
            values[name] = rng.choice([1, 2])
        elif name == "priority":
            values[name] = rng.randrange(256)
        elif name == "expiration":
            values[name] = str(rng.randrange(10**9))
        elif name == "timestamp":
            values[name] = datetime.datetime.fromtimestamp(rng.randrange(2**32), tz=UTC)
        else:
            values[name] = rng.choice(_STRINGS[1:])
    return C.Basic.Properties(**values)


def _check_peek_agrees(props: C.Basic.Properties) -> None:
    raw = basic_properties.encode_properties(props)
    full = basic_properties.decode_properties(raw)
    assert full == props
    assert basic_properties.peek_properties(raw) == (full.delivery_mode or 0, full.priority, full.expiration)
    assert basic_properties.peek_headers(raw) == full.headers
    # pamqp's own header-frame decoder reads the same thing.
    assert pamqp_read_properties(raw) == full


def test_peek_agrees_with_full_decode_exhaustive_first_eight():
    # Every subset of the 8 properties peek_properties walks through (256 combinations), with
    # and without the 5 later properties present.
    rng = random.Random(91)
    for present in range(256):
        _check_peek_agrees(_random_props(rng, present))
        _check_peek_agrees(_random_props(rng, present | 0x1F00))


def test_peek_agrees_with_full_decode_random():
    rng = random.Random(20240506)
    for _ in range(400):
        _check_peek_agrees(_random_props(rng, rng.randrange(2**13)))


def test_peek_fast_path_flags_zero():
    assert basic_properties.peek_properties(b"\x00\x00") == (0, None, None)
    assert basic_properties.peek_properties(b"\x00\x00") is basic_properties.peek_properties(bytearray(b"\x00\x00"))
    assert basic_properties.peek_headers(b"\x00\x00") is None
    assert basic_properties.decode_properties(b"\x00\x00") == C.Basic.Properties()


@pytest.mark.parametrize("fn", [basic_properties.peek_properties, basic_properties.peek_headers, basic_properties.decode_properties])
def test_continuation_flag_is_malformed(fn):
    for raw in [b"\x00\x01", b"\x10\x01\x02", b"\x20\x01\x00\x00\x00\x00", b"\x10\x01\x02\x00\x00"]:
        with pytest.raises(ValueError):
            fn(raw)


@pytest.mark.parametrize("fn", [basic_properties.peek_properties, basic_properties.peek_headers, basic_properties.decode_properties])
def test_too_short_for_flags(fn):
    for raw in [b"", b"\x10"]:
        with pytest.raises(ValueError):
            fn(raw)


def test_truncated_properties():
    raw = basic_properties.encode_properties(FULL_PROPS)
    full = basic_properties.decode_properties(raw)
    # peek_properties checks the whole list, as RabbitMQ decodes it: any cut is malformed, and so
    # is a byte after the last property.
    for cut in range(len(raw)):
        with pytest.raises(ValueError):
            basic_properties.decode_properties(raw[:cut])
        with pytest.raises(ValueError):
            basic_properties.peek_properties(raw[:cut])
    assert basic_properties.peek_properties(raw) == (2, 7, "60000")
    with pytest.raises(ValueError, match="bytes after the last property"):
        basic_properties.peek_properties(raw + b"\x00")
    assert basic_properties.peek_headers(raw) == full.headers
    headers_end = 2 + 1 + len("application/json") + 1 + len("gzip") + 4 + struct.unpack_from(">I", raw, 2 + 17 + 5)[0]
    for cut in range(headers_end):
        with pytest.raises(ValueError):
            basic_properties.peek_headers(raw[:cut])


@pytest.mark.parametrize(
    "table",
    [
        b"\x01k",  # name with no value
        b"\x05k",  # name longer than the table
        b"\x01kS\x00\x00\x00\x09abc",  # longstr longer than the table
        b"\x01kI\x00\x00",  # long-int cut short
        b"\x01kF\x00\x00\x00\x05\x01k",  # nested table: value missing
        b"\x01kA\x00\x00\x00\x02I\x00",  # array element cut short
        b"\x01kZ\x00",  # unknown type
        b"\x02\xff\xfeV",  # invalid UTF-8 field name
        b"\x01kT\xff\xff\xff\xff\xff\xff\xff\xff",  # timestamp outside datetime's range
        b"\x01kS\x00\x00",  # length cut short
    ],
)
def test_malformed_headers_table(table):
    raw = struct.pack(">HI", 0x2000, len(table)) + table
    with pytest.raises(ValueError):
        basic_properties.peek_headers(raw)
    with pytest.raises(ValueError):
        basic_properties.decode_properties(raw)
    if table in (b"\x02\xff\xfeV", b"\x01kT\xff\xff\xff\xff\xff\xff\xff\xff"):
        # Well formed on the wire (RabbitMQ takes both: names are binaries to it, and so is any
        # timestamp); only decoding them into Python values fails.
        assert basic_properties.peek_properties(raw) == (0, None, None)
    else:
        # The structure is checked on every publish, as RabbitMQ decodes every publish's properties.
        with pytest.raises(ValueError):
            basic_properties.peek_properties(raw)


def test_deeply_nested_headers_rejected():
    inner = b""
    for _ in range(2000):
        entry = b"\x01kF" + struct.pack(">I", len(inner)) + inner
        inner = entry
    raw = struct.pack(">HI", 0x2000, len(inner)) + inner
    with pytest.raises(ValueError):
        basic_properties.peek_headers(raw)
    with pytest.raises(ValueError):
        basic_properties.decode_properties(raw)
    with pytest.raises(ValueError, match="nested too deeply"):
        basic_properties.peek_properties(raw)


def test_peek_bad_expiration_utf8():
    raw = struct.pack(">H", 0x0100) + b"\x02\xff\xfe"
    with pytest.raises(ValueError):
        basic_properties.peek_properties(raw)


def test_encode_properties_errors_are_value_errors():
    with pytest.raises(ValueError):
        basic_properties.encode_properties(C.Basic.Properties(content_type="x" * 256))
    with pytest.raises(ValueError):
        basic_properties.encode_properties(C.Basic.Properties(headers={"k": 2**64}))
    with pytest.raises(ValueError):
        basic_properties.encode_properties(C.Basic.Properties(headers={"k": object()}))
    with pytest.raises(ValueError):
        basic_properties.encode_properties(C.Basic.Properties(headers={"k" * 256: 1}))
    props = C.Basic.Properties()
    props.priority = 256
    with pytest.raises(ValueError):
        basic_properties.encode_properties(props)


# --- replies that echo client-chosen names (pamqp refuses to marshal non-ASCII names) ----------

@pytest.mark.parametrize("name", ["plain.q", "amq.gen-abc_DEF-123", "spaces and/slashes*#", "é-ü-日本"])
def test_named_replies_decode_with_pamqp(name):
    from pamqp import commands as c
    from pamqp import frame as f

    from amqp_broker.protocol import codec

    cases = [
        (codec.write_queue_declare_ok, (name, 7, 2), c.Queue.DeclareOk, {"queue": name, "message_count": 7, "consumer_count": 2}),
        (codec.write_consume_ok, (name,), c.Basic.ConsumeOk, {"consumer_tag": name}),
        (codec.write_cancel_ok, (name,), c.Basic.CancelOk, {"consumer_tag": name}),
        (codec.write_cancel, (name, True), c.Basic.Cancel, {"consumer_tag": name, "nowait": True}),
    ]
    for writer, args, cls, fields in cases:
        out = bytearray()
        writer(out, 3, *args)
        consumed, channel, method = f.unmarshal(bytes(out))
        assert consumed == len(out) and channel == 3 and isinstance(method, cls)
        for key, value in fields.items():
            assert getattr(method, key) == value
        if name.isascii() and " " not in name:
            assert bytes(out) == f.marshal(cls(**fields), 3)
