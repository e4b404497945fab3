"""Input as strict as RabbitMQ's, over a real socket: method arguments must fill their frame
exactly (501 FRAME_ERROR - cannot decode, as RabbitMQ 3.10.8 answers), content properties must be
well formed (RabbitMQ: 541 INTERNAL_ERROR), tables nest at most 64 deep on every path, and names
a client sends cannot forge log lines."""

from __future__ import annotations

import struct

import pika
import pytest
from pamqp import commands as C
from pamqp import frame as pframe
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from interop.crash.broker_proc import BrokerProcess
from raw_amqp import Raw


def raw_method_frame(channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce"


def nested(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        inner = b"\x01kF" + struct.pack(">I", len(inner)) + inner
    return struct.pack(">I", len(inner)) + inner


def declare_payload(queue: bytes, arguments: bytes) -> bytes:
    return struct.pack(">HHH", 50, 10, 0) + bytes((len(queue),)) + queue + b"\x00" + arguments


def connection_close(raw: Raw):
    channel, close = raw.frame()
    assert channel == 0 and isinstance(close, C.Connection.Close), close
    return close.reply_code, close.reply_text, close.class_id, close.method_id


def erlang_binary(data: bytes) -> str:
    return "<<" + ",".join(str(b) for b in data) + ">>"


@pytest.mark.parametrize("case", ["trailing byte", "string past its table", "tables 1000 deep"])
def test_method_arguments_must_fill_their_frame_exactly(broker, case):
    good = declare_payload(b"strict.q", struct.pack(">I", 8) + b"\x01aS\x00\x00\x00\x01b")
    payload = {
        "trailing byte": good + b"\x00",
        "string past its table": declare_payload(b"strict.q", struct.pack(">I", 9) + b"\x01aS\x00\x00\x00\x50xy"),
        "tables 1000 deep": declare_payload(b"strict.q", nested(1000)),
    }[case]
    raw = Raw(broker.port)
    assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
    raw.sock.sendall(raw_method_frame(1, payload))
    code, text, class_id, method_id = connection_close(raw)
    expected = f"FRAME_ERROR - cannot decode {erlang_binary(payload[4:])}"
    if len(expected.encode()) > 255:
        expected = expected.encode()[:252].decode() + "..."
    assert (code, text, class_id, method_id) == (501, expected, 50, 10)
    raw.close()


def test_tables_64_deep_are_accepted(broker, unique):
    raw = Raw(broker.port)
    assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
    queue = unique().encode()
    raw.sock.sendall(raw_method_frame(1, declare_payload(queue, nested(63))))
    assert isinstance(raw.method(), C.Queue.DeclareOk)
    raw.close()


@pytest.mark.parametrize("case", ["shortstr past the end", "table past the end", "byte after the last",
                                  "unknown field type", "tables 100 deep"])
def test_malformed_content_properties_get_rabbitmqs_541(broker, unique, case):
    header = pframe.marshal(ContentHeader(0, 2, C.Basic.Properties(content_type="text/plain")), 1)
    with_headers = pframe.marshal(ContentHeader(0, 2, C.Basic.Properties(headers={"a": "b"})), 1)
    properties_size = struct.unpack_from(">I", header, 3)[0]
    deep = nested(100)
    bad = {
        "shortstr past the end": header.replace(b"\x0atext/plain", b"\x32text/plain"),
        "table past the end": with_headers.replace(b"\x00\x00\x00\x08\x01aS", b"\x00\x00\x00\x50\x01aS"),
        "byte after the last": header[:3] + struct.pack(">I", properties_size + 1) + header[7:-1] + b"\x00\xce",
        "unknown field type": with_headers.replace(b"\x01aS", b"\x01a\x06"),
        "tables 100 deep": struct.pack(">BHI", 2, 1, 14 + len(deep)) + struct.pack(">HHQH", 60, 0, 2, 0x2000) + deep + b"\xce",
    }[case]
    raw = Raw(broker.port)
    queue = unique()
    assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
    assert isinstance(raw.call(1, C.Queue.Declare(queue=queue)), C.Queue.DeclareOk)
    raw.sock.sendall(pframe.marshal(C.Basic.Publish(exchange="", routing_key=queue), 1) + bad
                     + pframe.marshal(ContentBody(b"hi"), 1))
    assert connection_close(raw) == (541, "INTERNAL_ERROR", 0, 0)
    raw.close()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
    assert conn.channel().queue_declare(queue, passive=True).method.message_count == 0
    conn.close()


def test_names_from_clients_cannot_forge_log_lines(tmp_path):
    broker = BrokerProcess(str(tmp_path / "data"), log_path=str(tmp_path / "broker.log"))
    broker.start()
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
        forged = "q\n2026-01-01 00:00:00,000 [ERROR] amqp_broker.server: forged"
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            conn.channel().queue_declare(forged, passive=True)
        conn.close()
    finally:
        assert broker.stop() == 0
    log = (tmp_path / "broker.log").read_text()
    assert "q\\x0a2026-01-01 00:00:00,000 [ERROR] amqp_broker.server: forged" in log
    assert not any(line.startswith("2026-01-01") for line in log.splitlines())


def test_a_user_id_that_is_not_utf8_is_refused_like_any_other_user(broker, unique):
    """Found by the fuzzer: it raised out of the protocol layer (RabbitMQ takes any octets and
    answers 406, with the octets echoed; we echo them replaced)."""
    header = pframe.marshal(ContentHeader(0, 2, C.Basic.Properties(user_id="guest")), 1)
    raw = Raw(broker.port)
    queue = unique()
    assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
    assert isinstance(raw.call(1, C.Queue.Declare(queue=queue)), C.Queue.DeclareOk)
    raw.sock.sendall(pframe.marshal(C.Basic.Publish(exchange="", routing_key=queue), 1)
                     + header.replace(b"guest", b"gu\xadst") + pframe.marshal(ContentBody(b"hi"), 1))
    channel, close = raw.frame()
    assert channel == 1 and isinstance(close, C.Channel.Close)
    assert (close.reply_code, close.class_id, close.method_id) == (406, 60, 40)
    assert close.reply_text == ("PRECONDITION_FAILED - user_id property set to 'gu\ufffdst' but "
                                "authenticated user was 'guest'")
    raw.close()


def test_properties_that_are_not_utf8_are_forwarded_as_published(broker, unique):
    """Found by the fuzzer: a reply_to with an octet that is not UTF-8. RabbitMQ forwards the
    publisher's property bytes as they are, and so do we."""
    queue = unique()
    header = pframe.marshal(ContentHeader(0, 2, C.Basic.Properties(reply_to="reply-to")), 1)
    published = header.replace(b"reply-to", b"reply-t\xad")
    raw = Raw(broker.port)
    assert isinstance(raw.call(1, C.Channel.Open()), C.Channel.OpenOk)
    assert isinstance(raw.call(1, C.Queue.Declare(queue=queue)), C.Queue.DeclareOk)
    raw.sock.sendall(pframe.marshal(C.Basic.Publish(exchange="", routing_key=queue), 1) + published
                     + pframe.marshal(ContentBody(b"hi"), 1)
                     + pframe.marshal(C.Basic.Get(queue=queue, no_ack=True), 1))
    data = b""
    while published[7:-1] not in data:
        chunk = raw.sock.recv(65536)
        assert chunk, "connection closed before the message came back"
        data += chunk
    raw.close()
