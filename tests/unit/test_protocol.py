"""The sans-IO connection: bytes in, decoded frames out, checked against RabbitMQ 3.10's answers.

Every expected reply code, text and class/method id below is what RabbitMQ 3.10.8 answered to the
same bytes (interop/probe_rabbitmq.py, /tmp/rabbit_reference.md, or a direct probe).
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from pamqp import body as pbody
from pamqp import commands, encode, frame, header, heartbeat

from amqp_broker.broker.broker import Broker
from amqp_broker.protocol.connection import CLOSING, OPEN, Connection
from amqp_broker.server.connection import LARGE_FRAME, LARGE_RECEIVE_SIZE, RECEIVE_SIZE, receive_size

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
CAPABILITIES = {
    "authentication_failure_close": True,
    "basic.nack": True,
    "connection.blocked": True,
    "consumer_cancel_notify": True,
    "exchange_exchange_bindings": True,
    "publisher_confirms": True,
}
LOGIN_REFUSED = "ACCESS_REFUSED - Login was refused using authentication mechanism {}. For details see the broker logfile."


# -- helpers ----------------------------------------------------------------------------------------


def decode(conn: Connection) -> list[tuple[int, Any]]:
    """Take everything the connection wrote and decode it into (channel, frame) pairs."""
    data = bytes(conn.out)
    del conn.out[:]
    frames = []
    while data:
        used, channel, value = frame.unmarshal(data)
        frames.append((channel, value))
        data = data[used:]
    return frames


def flat(frames: list[tuple[int, Any]]) -> list[tuple[int, str, dict]]:
    """(channel, name, fields) triples, comparable with ``==`` (pamqp frames are not)."""
    out = []
    for channel, value in frames:
        if isinstance(value, pbody.ContentBody):
            fields = {"value": value.value}
        elif isinstance(value, header.ContentHeader):
            fields = {"body_size": value.body_size}
        elif isinstance(value, heartbeat.Heartbeat):
            fields = {}
        else:
            fields = dict(value)
        out.append((channel, value.name, fields))
    return out


OPEN_OK = ("Channel.OpenOk", {"channel_id": ""})


def names(frames: list[tuple[int, Any]]) -> list[str]:
    return [value.name for _, value in frames]


def send(conn: Connection, channel: int, *values: Any) -> None:
    conn.receive_data(b"".join(frame.marshal(value, channel) for value in values))


def raw_frame(frame_type: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([end])


def raw_method(channel: int, class_id: int, method_id: int, args: bytes = b"") -> bytes:
    return raw_frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def content(channel: int, data: bytes, class_id: int = 60, properties: Any = None) -> bytes:
    """A content header plus one body frame (none for an empty body)."""
    out = frame.marshal(header.ContentHeader(0, len(data), properties or commands.Basic.Properties()), channel)
    if class_id != 60:
        out = out[:7] + struct.pack(">H", class_id) + out[9:]
    if data:
        out += frame.marshal(pbody.ContentBody(data), channel)
    return out


def start_ok(
    user: str = "guest",
    password: str = "guest",
    *,
    capabilities: dict | None = CAPABILITIES,
    mechanism: str = "PLAIN",
    response: str | None = None,
    **client_properties: Any,
) -> bytes:
    props = dict(client_properties)
    if capabilities is not None:
        props["capabilities"] = capabilities
    if response is None:
        response = f"\0{user}\0{password}"
    return frame.marshal(
        commands.Connection.StartOk(
            client_properties=props, mechanism=mechanism, response=response, locale="en_US"
        ),
        0,
    )


def amqplain(login: str | None = "guest", password: str | None = "guest") -> str:
    """An AMQPLAIN response: a field table WITHOUT its 4-byte length prefix."""
    table = {}
    if login is not None:
        table["LOGIN"] = login
    if password is not None:
        table["PASSWORD"] = password
    return encode.field_table(table)[4:].decode("ascii")


def tune_ok(channel_max: int = 2047, frame_max: int = 131072, heartbeat: int = 0) -> bytes:
    return frame.marshal(
        commands.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max, heartbeat=heartbeat), 0
    )


def connect(
    broker: Broker | None = None,
    *,
    channel_max: int = 2047,
    frame_max: int = 131072,
    heartbeat: int = 0,
    channels: tuple[int, ...] = (1,),
) -> Connection:
    """A connection through the whole handshake, with ``channels`` open and ``out`` drained."""
    conn = Connection(broker or Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER + start_ok())
    assert names(decode(conn)) == ["Connection.Start", "Connection.Tune"]
    conn.receive_data(
        tune_ok(channel_max, frame_max, heartbeat) + frame.marshal(commands.Connection.Open(virtual_host="/"), 0)
    )
    assert names(decode(conn)) == ["Connection.OpenOk"]
    for number in channels:
        send(conn, number, commands.Channel.Open())
        assert flat(decode(conn)) == [(number, *OPEN_OK)]
    assert conn.state == OPEN
    return conn


def assert_connection_close(
    frames: list[tuple[int, Any]], reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0
) -> None:
    assert len(frames) == 1, frames
    channel, close = frames[0]
    assert channel == 0 and isinstance(close, commands.Connection.Close), frames
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        reply_code,
        reply_text,
        class_id,
        method_id,
    )


def assert_channel_close(
    frames: list[tuple[int, Any]], channel: int, reply_code: int, reply_text: str, class_id: int, method_id: int
) -> None:
    assert len(frames) == 1, frames
    number, close = frames[0]
    assert number == channel and isinstance(close, commands.Channel.Close), frames
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        reply_code,
        reply_text,
        class_id,
        method_id,
    )


# -- protocol header ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"AMQP\x00\x00\x09\x00", b"AMQP\x00\x01\x00\x00", b"AMQP\x01\x01\x00\x09", b"GET / HTTP/1.1\r\n\r\n"],
    ids=["amqp-0-9-0", "amqp-1-0", "amqp-0-9-old-style", "http"],
)
def test_wrong_protocol_header_is_answered_with_ours_and_closed(data):
    conn = Connection(Broker(), "test")
    conn.receive_data(data)
    assert bytes(conn.out) == PROTOCOL_HEADER
    assert conn.finished


def test_protocol_header_in_pieces_waits_for_all_eight_bytes():
    conn = Connection(Broker(), "test")
    conn.receive_data(b"AMQ")
    conn.receive_data(b"P\x00\x00\x09")
    assert not conn.out and not conn.finished
    conn.receive_data(b"\x01")
    assert names(decode(conn)) == ["Connection.Start"]
    assert not conn.finished


def test_garbage_after_a_wrong_header_is_not_parsed():
    conn = Connection(Broker(), "test")
    conn.receive_data(b"XXXXXXXX" + frame.marshal(commands.Connection.StartOk(), 0))
    assert bytes(conn.out) == PROTOCOL_HEADER
    conn.receive_data(b"more")
    assert bytes(conn.out) == PROTOCOL_HEADER and conn.finished


# -- connection.start / authentication ----------------------------------------------------------


def test_connection_start_contents():
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER)
    [(channel, start)] = decode(conn)
    assert channel == 0 and isinstance(start, commands.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    props = start.server_properties
    assert props["capabilities"] == {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "consumer_priorities": True,
        "authentication_failure_close": True,
        "per_consumer_qos": True,
        "direct_reply_to": True,
    }
    assert {"cluster_name", "copyright", "information", "platform", "product", "version"} <= set(props)
    assert start.mechanisms == "AMQPLAIN PLAIN"  # RabbitMQ's list, in its order
    assert start.locales == "en_US"


def test_plain_login_gets_tune_with_server_limits():
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER + start_ok())
    frames = decode(conn)
    assert names(frames) == ["Connection.Start", "Connection.Tune"]
    tune = frames[1][1]
    assert (frames[1][0], tune.channel_max, tune.frame_max, tune.heartbeat) == (0, 2047, 131072, 60)


def test_amqplain_login_with_table_without_length_prefix():
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER + start_ok(mechanism="AMQPLAIN", response=amqplain()))
    assert names(decode(conn)) == ["Connection.Start", "Connection.Tune"]
    conn.receive_data(tune_ok() + frame.marshal(commands.Connection.Open(virtual_host="/"), 0))
    assert names(decode(conn)) == ["Connection.OpenOk"]
    assert conn.user.name == "guest"


@pytest.mark.parametrize(
    "mechanism,response",
    [("PLAIN", "\0guest\0wrong"), ("PLAIN", "\0nobody\0guest"), ("AMQPLAIN", amqplain("guest", "wrong"))],
    ids=["plain-wrong-password", "plain-unknown-user", "amqplain-wrong-password"],
)
def test_refused_login_with_authentication_failure_close_gets_403(mechanism, response):
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER)
    decode(conn)
    conn.receive_data(start_ok(mechanism=mechanism, response=response))
    assert_connection_close(decode(conn), 403, LOGIN_REFUSED.format(mechanism))
    assert conn.finished
    conn.receive_data(tune_ok())  # nothing more is read
    assert decode(conn) == []


def test_refused_login_without_the_capability_is_a_silent_close():
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER)
    decode(conn)
    conn.receive_data(start_ok(password="wrong", capabilities={"basic.nack": True}))
    assert decode(conn) == []
    assert conn.finished


@pytest.mark.parametrize(
    "mechanism,response",
    [
        ("PLAIN", "garbage"),
        ("PLAIN", "guest\0guest\0guest"),  # RabbitMQ wants an empty authzid
        ("PLAIN", "\0guest\0guest\0"),
        ("PLAIN", "\0guest"),
        ("AMQPLAIN", amqplain("guest", None)),
        ("FOO", "\0guest\0guest"),
    ],
    ids=["plain-garbage", "plain-authzid", "plain-trailing-nul", "plain-no-password", "amqplain-no-password",
         "unknown-mechanism"],
)
def test_malformed_login_is_a_silent_close_even_with_the_capability(mechanism, response):
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER)
    decode(conn)
    conn.receive_data(start_ok(mechanism=mechanism, response=response))
    assert decode(conn) == []
    assert conn.finished


def test_method_before_start_ok_is_a_silent_close():
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER)
    decode(conn)
    send(conn, 1, commands.Channel.Open())
    assert decode(conn) == [] and conn.finished


def test_channel_open_before_connection_open_is_505():
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER + start_ok() + tune_ok())
    decode(conn)
    send(conn, 1, commands.Channel.Open())
    assert_connection_close(decode(conn), 505, "UNEXPECTED_FRAME - type 1, all octets = <<0,20,0,10,1,48>>")


def test_missing_vhost_is_530_and_waits_for_close_ok():
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER + start_ok() + tune_ok())
    decode(conn)
    send(conn, 0, commands.Connection.Open(virtual_host="nope"))
    assert_connection_close(decode(conn), 530, "NOT_ALLOWED - vhost nope not found", 10, 40)
    assert conn.state == CLOSING and not conn.finished
    send(conn, 1, commands.Channel.Open())  # ignored while closing
    assert decode(conn) == []
    send(conn, 0, commands.Connection.CloseOk())
    assert conn.finished and decode(conn) == []


# -- tune / tune-ok -------------------------------------------------------------------------------


def test_lower_tune_ok_values_are_honoured():
    broker = Broker()
    conn = connect(broker, channel_max=10, frame_max=4096, heartbeat=5)
    assert (conn.channel_max, conn.frame_max, conn.heartbeat) == (10, 4096, 5)
    # Deliveries are cut to the negotiated frame_max.
    send(conn, 1, commands.Queue.Declare(queue="q.tune"))
    decode(conn)
    conn.receive_data(frame.marshal(commands.Basic.Publish(routing_key="q.tune"), 1))
    conn.receive_data(frame.marshal(header.ContentHeader(0, 10000, commands.Basic.Properties()), 1))
    for offset in range(0, 10000, 4000):
        conn.receive_data(frame.marshal(pbody.ContentBody(b"x" * min(4000, 10000 - offset)), 1))
    send(conn, 1, commands.Basic.Get(queue="q.tune", no_ack=True))
    data = bytes(conn.out)
    sizes = []
    while data:
        size = struct.unpack_from(">I", data, 3)[0] + 8
        sizes.append(size)
        data = data[size:]
    assert max(sizes) <= 4096 and len(sizes) == 2 + 3  # get-ok, header, 3 bodies
    frames = decode(conn)
    assert b"".join(value.value for _, value in frames[2:]) == b"x" * 10000


@pytest.mark.parametrize(
    "channel_max,frame_max,text",
    [
        (2047, 262144, "negotiated frame_max = 262144 is higher than the maximum allowed value (131072)"),
        (2047, 0, "negotiated frame_max = 0 is higher than the maximum allowed value (131072)"),
        (2047, 1024, "negotiated frame_max = 1024 is lower than the minimum allowed value (4096)"),
        (5000, 131072, "negotiated channel_max = 5000 is higher than the maximum allowed value (2047)"),
        (0, 131072, "negotiated channel_max = 0 (no limit) is higher than the maximum allowed value (2047)"),
    ],
    ids=["frame_max-too-high", "frame_max-unlimited", "frame_max-too-low", "channel_max-too-high",
         "channel_max-unlimited"],
)
def test_tune_ok_out_of_bounds_is_530(channel_max, frame_max, text):
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER + start_ok())
    decode(conn)
    # Clients send connection.open right behind tune-ok: it must be ignored once we are closing.
    conn.receive_data(
        tune_ok(channel_max, frame_max) + frame.marshal(commands.Connection.Open(virtual_host="/"), 0)
    )
    assert_connection_close(decode(conn), 530, f"NOT_ALLOWED - {text}", 10, 30)
    assert conn.state == CLOSING
    send(conn, 0, commands.Connection.CloseOk())
    assert conn.finished and decode(conn) == []


def test_client_may_choose_its_heartbeat():
    conn = connect(heartbeat=120)
    assert conn.heartbeat == 120


# -- frame size limits --------------------------------------------------------------------------


def test_before_tune_ok_frames_up_to_8192_bytes_are_read():
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER)
    decode(conn)
    data = start_ok(padding="x" * 7900)
    assert 8000 < len(data) <= 8192
    conn.receive_data(data)
    assert names(decode(conn)) == ["Connection.Tune"]


def test_before_tune_ok_a_frame_over_8192_bytes_drops_the_connection():
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER)
    decode(conn)
    conn.receive_data(start_ok(padding="x" * 8200))
    # RabbitMQ answers nothing before tune-ok (only a refused login gets a close frame).
    assert decode(conn) == [] and conn.finished


def test_while_awaiting_tune_ok_a_too_large_frame_drops_the_connection():
    conn = Connection(Broker(), "test")
    conn.receive_data(PROTOCOL_HEADER + start_ok())
    decode(conn)
    conn.receive_data(raw_method(0, 10, 31, b"\x00" * 9000))
    assert decode(conn) == [] and conn.finished


def test_after_tune_ok_a_frame_over_frame_max_is_501():
    conn = connect()
    # Only the frame header is needed: the size is checked before the payload arrives.
    conn.receive_data(struct.pack(">BHI", 1, 1, 131176))
    assert_connection_close(
        decode(conn), 501, "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,131176,131064}"
    )
    assert conn.finished


def test_body_payload_of_exactly_frame_max_is_accepted():
    # RabbitMQ accepts payloads up to frame_max (the spec would stop at frame_max - 8).
    conn = connect()
    send(conn, 1, commands.Queue.Declare(queue="q.big"))
    decode(conn)
    conn.receive_data(frame.marshal(commands.Basic.Publish(routing_key="q.big"), 1) + content(1, b"y" * 131072))
    assert decode(conn) == []
    send(conn, 1, commands.Basic.Get(queue="q.big", no_ack=True))
    frames = decode(conn)
    assert names(frames)[:2] == ["Basic.GetOk", "ContentHeader"]
    assert b"".join(value.value for _, value in frames[2:]) == b"y" * 131072


def test_body_payload_over_frame_max_is_501():
    conn = connect()
    conn.receive_data(frame.marshal(commands.Basic.Publish(routing_key="q"), 1))
    conn.receive_data(frame.marshal(header.ContentHeader(0, 131073, commands.Basic.Properties()), 1))
    conn.receive_data(raw_frame(3, 1, b"z" * 131073))
    assert_connection_close(
        decode(conn), 501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,131073,131064}"
    )
    assert conn.finished


def test_lowered_frame_max_is_enforced_on_input():
    conn = connect(frame_max=4096)
    conn.receive_data(frame.marshal(commands.Basic.Publish(routing_key="q"), 1))
    conn.receive_data(frame.marshal(header.ContentHeader(0, 8193, commands.Basic.Properties()), 1))
    conn.receive_data(raw_frame(3, 1, b"z" * 4096))
    assert decode(conn) == []
    conn.receive_data(raw_frame(3, 1, b"z" * 4097))
    assert_connection_close(
        decode(conn), 501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}"
    )


# -- frames split anywhere ----------------------------------------------------------------------


def _session_bytes() -> bytes:
    def m(channel: int, method: Any) -> bytes:
        return frame.marshal(method, channel)

    return b"".join(
        [
            PROTOCOL_HEADER,
            start_ok(),
            tune_ok(heartbeat=30),
            m(0, commands.Connection.Open(virtual_host="/")),
            m(1, commands.Channel.Open()),
            m(2, commands.Channel.Open()),
            m(1, commands.Queue.Declare(queue="q.split")),
            m(1, commands.Basic.Publish(routing_key="q.split")),
            content(1, b"hello"),
            m(1, commands.Basic.Publish(routing_key="q.split")),
            content(1, b""),
            m(1, commands.Basic.Publish(routing_key="q.split")),
            content(1, b"a" * 3000),
            heartbeat.Heartbeat().marshal(),
            m(2, commands.Basic.Get(queue="q.split")),
            m(2, commands.Basic.Ack(delivery_tag=1)),
            m(2, commands.Basic.Consume(queue="q.split", consumer_tag="ctag")),
            m(2, commands.Basic.Ack(delivery_tag=3, multiple=True)),
            m(1, commands.Queue.Declare(queue="q.split.missing", passive=True)),
            m(1, commands.Queue.Declare(queue="ignored while closing")),
            m(1, commands.Channel.CloseOk()),
            m(2, commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)),
            m(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)),
        ]
    )


def _run_session(chunks: list[bytes]) -> tuple[bytes, Connection]:
    conn = Connection(Broker(), "test")
    for chunk in chunks:
        conn.receive_data(chunk)
    return bytes(conn.out), conn


def test_session_fed_whole_one_byte_at_a_time_and_in_random_chunks_gives_the_same_output():
    data = _session_bytes()
    whole, conn = _run_session([data])
    assert conn.finished
    frames = []
    rest = whole
    while rest:
        used, channel, value = frame.unmarshal(rest)
        frames.append((channel, value.name))
        rest = rest[used:]
    assert frames == [
        (0, "Connection.Start"),
        (0, "Connection.Tune"),
        (0, "Connection.OpenOk"),
        (1, "Channel.OpenOk"),
        (2, "Channel.OpenOk"),
        (1, "Queue.DeclareOk"),
        (2, "Basic.GetOk"),
        (2, "ContentHeader"),
        (2, "ContentBody"),
        (2, "Basic.ConsumeOk"),
        (2, "Basic.Deliver"),
        (2, "ContentHeader"),
        (2, "Basic.Deliver"),
        (2, "ContentHeader"),
        (2, "ContentBody"),
        (1, "Channel.Close"),
        (2, "Channel.CloseOk"),
        (0, "Connection.CloseOk"),
    ]

    one_byte, conn = _run_session([data[i : i + 1] for i in range(len(data))])
    assert one_byte == whole and conn.finished

    rng = random.Random(20240601)
    for _ in range(20):
        chunks, pos = [], 0
        while pos < len(data):
            size = rng.randint(1, 300)
            chunks.append(data[pos : pos + size])
            pos += size
        out, conn = _run_session(chunks)
        assert out == whole and conn.finished


# -- publisher confirms around closes -------------------------------------------------------------


def _confirming_publishes(conn: Connection, count: int) -> bytes:
    send(conn, 1, commands.Queue.Declare(queue="q.confirm"), commands.Confirm.Select())
    assert names(decode(conn)) == ["Queue.DeclareOk", "Confirm.SelectOk"]
    return b"".join(
        frame.marshal(commands.Basic.Publish(routing_key="q.confirm"), 1) + content(1, b"m%d" % i)
        for i in range(count)
    )


def test_confirms_of_one_read_are_coalesced_into_one_multiple_ack():
    conn = connect()
    conn.receive_data(_confirming_publishes(conn, 3))
    assert flat(decode(conn)) == [(1, "Basic.Ack", {"delivery_tag": 3, "multiple": True})]


def test_confirms_pipelined_before_a_channel_error_precede_its_channel_close():
    conn = connect()
    publishes = _confirming_publishes(conn, 3)
    conn.receive_data(publishes + frame.marshal(commands.Queue.Declare(queue="nope", passive=True), 1))
    frames = flat(decode(conn))
    assert frames[0] == (1, "Basic.Ack", {"delivery_tag": 3, "multiple": True})
    assert frames[1][:2] == (1, "Channel.Close") and len(frames) == 2


def test_confirms_pipelined_before_channel_close_precede_close_ok():
    conn = connect()
    publishes = _confirming_publishes(conn, 2)
    conn.receive_data(
        publishes + frame.marshal(commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0), 1)
    )
    assert flat(decode(conn)) == [
        (1, "Basic.Ack", {"delivery_tag": 2, "multiple": True}),
        (1, "Channel.CloseOk", {}),
    ]


def test_confirms_pipelined_before_connection_close_precede_close_ok():
    conn = connect()
    publishes = _confirming_publishes(conn, 1)
    conn.receive_data(
        publishes
        + frame.marshal(commands.Connection.Close(reply_code=200, reply_text="", class_id=0, method_id=0), 0)
    )
    assert flat(decode(conn)) == [
        (1, "Basic.Ack", {"delivery_tag": 1, "multiple": False}),
        (0, "Connection.CloseOk", {}),
    ]
    assert conn.finished


# -- framing and content errors -----------------------------------------------------------------

HEADER_ON_CHANNEL_0 = struct.pack(">HHQH", 60, 0, 1, 0)


@pytest.mark.parametrize(
    "data,code,text,class_id,method_id",
    [
        (raw_frame(9, 0, b"abcd"), 501, 'FRAME_ERROR - type 9, all octets = <<"abcd">>: unknown_frame', 0, 0),
        (raw_frame(9, 1, b"abcd"), 501, 'FRAME_ERROR - type 9, all octets = <<"abcd">>: unknown_frame', 0, 0),
        (raw_frame(9, 0, b"abcdefghijklmnopqrst"), 501,
         'FRAME_ERROR - type 9, first 16 octets = <<"abcdefghijklmnop">>: unknown_frame', 0, 0),
        (raw_frame(9, 0, b"ab\ncd"), 501, 'FRAME_ERROR - type 9, all octets = <<"ab\\ncd">>: unknown_frame', 0, 0),
        (raw_frame(1, 1, b"\x00\x14\x00\x0a\x01\x30", end=0), 501,
         "FRAME_ERROR - type 1, all octets = <<0,20,0,10,1,48>>: {invalid_frame_end_marker,0}", 0, 0),
        (raw_frame(9, 0, b"abcd", end=0), 501,
         'FRAME_ERROR - type 9, all octets = <<"abcd">>: {invalid_frame_end_marker,0}', 0, 0),
        # Erlang's ~p wraps long lines; these are RabbitMQ's texts byte for byte.
        (raw_frame(1, 1, b"\x00\x14\x00\x0a\x01\x30" + b"x" * 20, end=0), 501,
         "FRAME_ERROR - type 1, first 16 octets = <<0,20,0,10,1,48,120,120,120,120,120,120,120,120,120,\n"
         "                            120>>: {invalid_frame_end_marker,0}", 0, 0),
        (raw_frame(1, 1, bytes(16), end=0), 501,
         "FRAME_ERROR - type 1, all octets = <<0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0>>: {invalid_frame_end_marker,\n"
         + " " * 59 + "0}", 0, 0),
        (raw_frame(1, 1, bytes([0, 0, 50, 100, 100, 100, 100]), end=255), 501,
         "FRAME_ERROR - type 1, all octets = <<0,0,50,100,100,100,100>>: {invalid_frame_end_marker,\n"
         + " " * 50 + "255}", 0, 0),
        (raw_frame(1, 1, bytes([0, 100, 100, 100, 100, 100]), end=255), 501,
         "FRAME_ERROR - type 1, all octets = <<0,100,100,100,100,100>>: {invalid_frame_end_marker,255}", 0, 0),
        (raw_frame(8, 1, b""), 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0),
        (raw_frame(3, 0, b"x"), 505, 'UNEXPECTED_FRAME - type 3, all octets = <<"x">>', 0, 0),
        (raw_frame(3, 0, b"abcdefghijklmnopqrst"), 505,
         'UNEXPECTED_FRAME - type 3, first 16 octets = <<"abcdefghijklmnop">>', 0, 0),
        (raw_frame(2, 0, HEADER_ON_CHANNEL_0), 505,
         "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,1,0,0>>", 0, 0),
        (raw_frame(2, 1, HEADER_ON_CHANNEL_0), 505,
         "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0),
        (raw_frame(3, 1, b"x"), 505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0),
        (raw_method(1, 50, 10, b"\x00\x00\x05ab"), 501, "FRAME_ERROR - cannot decode <<0,0,5,97,98>>", 50, 10),
        (raw_method(1, 50, 10, b"abc"), 501, "FRAME_ERROR - cannot decode <<97,98,99>>", 50, 10),
    ],
    ids=[
        "unknown-type-ch0", "unknown-type-ch1", "unknown-type-long", "unknown-type-escapes", "bad-frame-end",
        "bad-frame-end-printable", "bad-frame-end-long-wrapped", "bad-frame-end-tuple-wrapped",
        "bad-frame-end-255-wrapped", "bad-frame-end-255-fits", "heartbeat-on-ch1", "body-on-ch0",
        "body-on-ch0-long", "header-on-ch0", "header-without-publish", "body-without-publish",
        "truncated-method-args", "truncated-method-args-printable",
    ],
)
def test_frame_errors_close_the_connection_like_rabbitmq(data, code, text, class_id, method_id):
    conn = connect()
    conn.receive_data(data)
    assert_connection_close(decode(conn), code, text, class_id, method_id)
    # The broker stops reading: nothing after the error is answered.
    send(conn, 1, commands.Exchange.Declare(exchange="amq.direct", passive=True))
    assert decode(conn) == []
    assert conn.finished  # framing is lost: the socket is closed once the close frame is out


def test_method_instead_of_content_header_is_505():
    conn = connect()
    send(conn, 1, commands.Basic.Publish(routing_key="q"), commands.Exchange.Declare(exchange="amq.direct", passive=True))
    assert_connection_close(
        decode(conn), 505,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead", 60, 40,
    )


def test_content_header_of_class_50_is_505():
    conn = connect()
    conn.receive_data(frame.marshal(commands.Basic.Publish(routing_key="q"), 1) + content(1, b"x", class_id=50))
    assert_connection_close(
        decode(conn), 505,
        "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead", 60, 40,
    )


@pytest.mark.parametrize("follow", ["method", "header"])
def test_body_longer_than_declared_fails_on_the_next_frame(follow):
    conn = connect()
    conn.receive_data(frame.marshal(commands.Basic.Publish(routing_key="q"), 1))
    conn.receive_data(frame.marshal(header.ContentHeader(0, 1, commands.Basic.Properties()), 1))
    conn.receive_data(raw_frame(3, 1, b"abc"))
    conn.receive_data(raw_frame(3, 1, b"abc"))
    assert decode(conn) == []  # RabbitMQ is still waiting for "the rest"
    if follow == "method":
        send(conn, 1, commands.Exchange.Declare(exchange="amq.direct", passive=True))
    else:
        conn.receive_data(raw_frame(2, 1, HEADER_ON_CHANNEL_0))
    assert_connection_close(
        decode(conn), 505, "UNEXPECTED_FRAME - expected content body, got non content body frame instead", 60, 40
    )


def test_body_split_across_frames_is_assembled():
    conn = connect()
    send(conn, 1, commands.Queue.Declare(queue="q.parts"))
    decode(conn)
    conn.receive_data(frame.marshal(commands.Basic.Publish(routing_key="q.parts"), 1))
    conn.receive_data(frame.marshal(header.ContentHeader(0, 3, commands.Basic.Properties()), 1))
    conn.receive_data(raw_frame(3, 1, b"a") + raw_frame(3, 1, b"bc"))
    send(conn, 1, commands.Basic.Get(queue="q.parts", no_ack=True))
    frames = decode(conn)
    assert names(frames) == ["Basic.GetOk", "ContentHeader", "ContentBody"]
    assert frames[1][1].body_size == 3 and frames[2][1].value == b"abc"


@pytest.mark.parametrize("channel", [0, 1])
def test_unknown_method_drops_the_socket_without_a_close(channel):
    conn = connect()
    conn.receive_data(raw_method(channel, 99, 99))
    assert decode(conn) == [] and conn.finished


def test_heartbeat_frames_on_channel_0_are_accepted():
    conn = connect()
    conn.receive_data(heartbeat.Heartbeat().marshal() * 3)
    assert decode(conn) == [] and conn.state == OPEN


# -- channels -------------------------------------------------------------------------------------


def test_channel_open_twice_is_504():
    conn = connect()
    send(conn, 1, commands.Channel.Open())
    assert_connection_close(decode(conn), 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
    assert conn.state == CLOSING
    send(conn, 0, commands.Connection.CloseOk())
    assert conn.finished


@pytest.mark.parametrize(
    "method,class_id,method_id",
    [
        (commands.Queue.Declare(queue="q"), 50, 10),
        (commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0), 20, 40),
        (commands.Channel.CloseOk(), 20, 41),
    ],
    ids=["queue.declare", "channel.close", "channel.close-ok"],
)
def test_method_on_an_unopened_channel_is_504(method, class_id, method_id):
    conn = connect()
    send(conn, 5, method)
    assert_connection_close(decode(conn), 504, "CHANNEL_ERROR - expected 'channel.open'", class_id, method_id)


@pytest.mark.parametrize(
    "method,class_id,method_id",
    [(commands.Channel.Open(), 20, 10), (commands.Queue.Declare(queue="q"), 50, 10)],
    ids=["channel.open", "queue.declare"],
)
def test_channel_method_on_channel_0_is_504(method, class_id, method_id):
    conn = connect()
    send(conn, 0, method)
    assert_connection_close(
        decode(conn), 504, "CHANNEL_ERROR - unexpected method in connection state running", class_id, method_id
    )


def test_frames_after_our_channel_close_are_ignored_until_close_ok():
    broker = Broker()
    conn = connect(broker, channels=(1, 2))
    send(conn, 1, commands.Queue.Declare(queue="nope", passive=True))
    assert_channel_close(decode(conn), 1, 404, "NOT_FOUND - no queue 'nope' in vhost '/'", 50, 10)
    # All of these would be answered (or be errors) on an open channel; now they are dropped.
    send(conn, 1, commands.Queue.Declare(queue="q.ignored"))
    send(conn, 1, commands.Basic.Ack(delivery_tag=99))
    conn.receive_data(frame.marshal(commands.Basic.Publish(routing_key="q.ignored"), 1) + content(1, b"x"))
    conn.receive_data(raw_frame(3, 1, b"stray body"))
    send(conn, 1, commands.Channel.Open())
    assert decode(conn) == []
    assert "q.ignored" not in broker.vhosts["/"].queues
    # Other channels keep working meanwhile.
    send(conn, 2, commands.Exchange.Declare(exchange="amq.direct", passive=True))
    assert flat(decode(conn)) == [(2, "Exchange.DeclareOk", {})]
    send(conn, 1, commands.Channel.CloseOk())
    assert decode(conn) == []
    send(conn, 1, commands.Channel.Open())
    assert flat(decode(conn)) == [(1, *OPEN_OK)]


def test_client_channel_close_then_reuse_the_number():
    conn = connect()
    send(conn, 1, commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    assert flat(decode(conn)) == [(1, "Channel.CloseOk", {})]
    send(conn, 1, commands.Channel.Open())
    assert flat(decode(conn)) == [(1, *OPEN_OK)]


def test_channel_max_limits_the_number_of_open_channels():
    conn = connect(channel_max=2, channels=(1, 2))
    send(conn, 3, commands.Channel.Open())
    assert_connection_close(
        decode(conn), 530, "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"
    )


def test_channel_numbers_above_channel_max_open_fine():
    conn = connect(channels=(2048, 65535))
    assert set(conn.channels) == {2048, 65535}


def test_channel_flow_active_true_is_acknowledged():
    conn = connect()
    send(conn, 1, commands.Channel.Flow(active=True))
    assert flat(decode(conn)) == [(1, "Channel.FlowOk", {"active": True})]


def test_channel_flow_active_false_is_540():
    conn = connect()
    send(conn, 1, commands.Channel.Flow(active=False))
    assert_connection_close(decode(conn), 540, "NOT_IMPLEMENTED - active=false", 20, 20)


def test_client_connection_close_gets_close_ok_and_ends():
    broker = Broker()
    conn = connect(broker)
    send(conn, 1, commands.Queue.Declare(queue="q.excl.close", exclusive=True))
    decode(conn)
    send(conn, 0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    assert flat(decode(conn)) == [(0, "Connection.CloseOk", {})]
    assert conn.finished
    assert "q.excl.close" not in broker.vhosts["/"].queues


# -- heartbeats -----------------------------------------------------------------------------------


def test_heartbeat_sent_after_half_an_interval_of_silence():
    conn = connect(heartbeat=2)
    assert conn.heartbeat_tick(0.0, 0.9) is True
    assert decode(conn) == []
    assert conn.heartbeat_tick(0.5, 1.0) is True
    assert flat(decode(conn)) == [(0, "Heartbeat", {})]


def test_no_heartbeats_when_the_client_disabled_them():
    conn = connect(heartbeat=0)
    assert conn.heartbeat_tick(1000.0, 1000.0) is True
    assert decode(conn) == [] and not conn.finished


def test_peer_silent_for_two_intervals_is_dead_and_its_state_released():
    broker = Broker()
    conn = connect(broker, heartbeat=2)
    send(conn, 1, commands.Queue.Declare(queue="q.hb.excl", exclusive=True))
    send(conn, 1, commands.Queue.Declare(queue="q.hb.shared"))
    conn.receive_data(frame.marshal(commands.Basic.Publish(routing_key="q.hb.shared"), 1) + content(1, b"m"))
    send(conn, 1, commands.Basic.Get(queue="q.hb.shared"))
    assert names(decode(conn)) == ["Queue.DeclareOk", "Queue.DeclareOk", "Basic.GetOk", "ContentHeader",
                                   "ContentBody"]
    queues = broker.vhosts["/"].queues
    assert "q.hb.excl" in queues and queues["q.hb.shared"].message_count == 0

    assert conn.heartbeat_tick(3.9, 0.0) is True  # not yet two intervals
    assert not conn.finished
    assert conn.heartbeat_tick(4.1, 0.0) is False
    assert conn.finished
    assert "q.hb.excl" not in queues
    # The unacked message went back to its queue, marked redelivered.
    other = connect(broker)
    send(other, 1, commands.Basic.Get(queue="q.hb.shared", no_ack=True))
    frames = decode(other)
    assert names(frames) == ["Basic.GetOk", "ContentHeader", "ContentBody"]
    assert frames[0][1].redelivered is True and frames[2][1].value == b"m"


# -- acks of one read: the deliveries they make room for ----------------------------------------------


def _consumer_with_backlog(prefetch: int, messages: int) -> Connection:
    """A connection whose consumer (prefetch ``prefetch``) holds the first deliveries of a backlog."""
    conn = connect()
    send(conn, 1, commands.Queue.Declare(queue="q.backlog"), commands.Basic.Qos(prefetch_count=prefetch))
    conn.receive_data(b"".join(
        frame.marshal(commands.Basic.Publish(routing_key="q.backlog"), 1) + content(1, b"m%d" % i)
        for i in range(1, messages + 1)
    ))
    send(conn, 1, commands.Basic.Consume(queue="q.backlog", consumer_tag="c"))
    delivered = [v.value for _, v in decode(conn) if isinstance(v, pbody.ContentBody)]
    assert delivered == [b"m%d" % i for i in range(1, prefetch + 1)]
    return conn


def _acks(*tags: int) -> bytes:
    return b"".join(frame.marshal(commands.Basic.Ack(delivery_tag=tag), 1) for tag in tags)


def test_acks_of_one_read_refill_the_prefetch_in_order():
    conn = _consumer_with_backlog(prefetch=3, messages=10)
    conn.receive_data(_acks(1, 2, 3))
    frames = flat(decode(conn))
    delivers = [f for f in frames if f[1] == "Basic.Deliver"]
    assert [d[2]["delivery_tag"] for d in delivers] == [4, 5, 6]
    assert [f[2]["value"] for f in frames if f[1] == "ContentBody"] == [b"m4", b"m5", b"m6"]
    conn.receive_data(_acks(4))
    assert [f[2]["value"] for f in flat(decode(conn)) if f[1] == "ContentBody"] == [b"m7"]


def test_deliveries_freed_by_acks_precede_the_reply_to_a_later_method_of_the_same_read():
    conn = _consumer_with_backlog(prefetch=2, messages=5)
    conn.receive_data(_acks(1) + frame.marshal(commands.Basic.Cancel(consumer_tag="c"), 1))
    assert [name for _, name, _ in flat(decode(conn))] == [
        "Basic.Deliver", "ContentHeader", "ContentBody", "Basic.CancelOk",
    ]


def test_deliveries_freed_by_acks_precede_a_channel_error_of_the_same_read():
    conn = _consumer_with_backlog(prefetch=2, messages=5)
    conn.receive_data(_acks(1, 99))  # 99 was never delivered: 406 on the channel
    frames = flat(decode(conn))
    assert [name for _, name, _ in frames] == [
        "Basic.Deliver", "ContentHeader", "ContentBody", "Channel.Close",
    ]
    assert frames[-1][2]["reply_text"] == "PRECONDITION_FAILED - unknown delivery tag 99"


# -- runs of identical publishes and of acks (the fast path handles them in one loop) -------------------


def _publish(channel: int, key: str, body: bytes, properties=None, exchange: str = "") -> bytes:
    method = frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=key), channel)
    return method + content(channel, body, properties=properties)


def _consuming(broker: Broker, *queues: str) -> Connection:
    """A no-ack consumer (tag = queue name) on each of ``queues``, declared on the way."""
    conn = connect(broker)
    for queue in queues:
        send(conn, 1, commands.Queue.Declare(queue=queue),
             commands.Basic.Consume(queue=queue, consumer_tag=queue, no_ack=True))
    decode(conn)
    return conn


def _deliveries(conn: Connection) -> list[tuple[str, bytes, Any]]:
    """(consumer tag, body, properties) of each delivery written so far."""
    frames = [value for _, value in decode(conn)]
    out = []
    for index, value in enumerate(frames):
        if isinstance(value, commands.Basic.Deliver):
            head = frames[index + 1]
            body = frames[index + 2].value if head.body_size else b""
            out.append((value.consumer_tag, body, head.properties))
    return out


def test_publish_runs_broken_by_other_keys_channels_and_properties_keep_every_message_and_its_order():
    broker = Broker()
    consumer = _consuming(broker, "q.run.a", "q.run.b")
    publisher = connect(broker, channels=(1, 2))
    persistent = commands.Basic.Properties(delivery_mode=2, message_id="p")
    plan = (
        [(1, "q.run.a", b"a%d" % i, None) for i in range(5)]
        + [(1, "q.run.b", b"b0", None), (1, "q.run.b", b"", None)]
        + [(2, "q.run.a", b"a-ch2", None)]
        + [(1, "q.run.a", b"a-props", persistent), (1, "q.run.a", b"a-last", None)]
    )
    publisher.receive_data(b"".join(_publish(*step) for step in plan))
    assert decode(publisher) == []
    got = _deliveries(consumer)
    assert [(tag, body) for tag, body, _ in got] == [(key, body) for _, key, body, _ in plan]
    assert got[8][2].delivery_mode == 2 and got[8][2].message_id == "p"
    assert got[9][2].delivery_mode is None


def test_a_run_cut_anywhere_by_the_end_of_a_read_completes_with_the_next_read():
    broker = Broker()
    consumer = _consuming(broker, "q.run.cut")
    publisher = connect(broker)
    bodies = [b"m%d" % i for i in range(4)]
    data = b"".join(_publish(1, "q.run.cut", body) for body in bodies)
    for cut in range(1, len(data)):
        publisher.receive_data(data[:cut])
        publisher.receive_data(data[cut:])
        assert [body for _, body, _ in _deliveries(consumer)] == bodies, cut
    assert decode(publisher) == []


def test_an_error_in_a_run_closes_the_channel_once_and_the_rest_of_the_run_is_ignored():
    broker = Broker()
    consumer = _consuming(broker, "q.run.after")
    publisher = connect(broker)
    publisher.receive_data(b"".join(_publish(1, "k", b"x%d" % i, exchange="missing") for i in range(3)))
    assert_channel_close(decode(publisher), 1, 404, "NOT_FOUND - no exchange 'missing' in vhost '/'", 60, 40)
    send(publisher, 1, commands.Channel.CloseOk(), commands.Channel.Open())
    publisher.receive_data(_publish(1, "q.run.after", b"fine"))
    assert flat(decode(publisher)) == [(1, *OPEN_OK)]
    assert [body for _, body, _ in _deliveries(consumer)] == [b"fine"]


def test_an_ack_run_with_a_multiple_ack_inside_settles_every_tag():
    conn = _consumer_with_backlog(prefetch=5, messages=12)
    multiple = frame.marshal(commands.Basic.Ack(delivery_tag=4, multiple=True), 1)
    conn.receive_data(_acks(1, 2) + multiple + _acks(5))
    frames = flat(decode(conn))
    assert [f[2]["value"] for f in frames if f[1] == "ContentBody"] == [b"m%d" % i for i in range(6, 11)]
    assert sorted(conn.channels[1].core.unacked) == [6, 7, 8, 9, 10]


def test_acks_on_two_channels_interleaved_are_each_settled_on_their_own_channel():
    broker = Broker()
    conn = connect(broker, channels=(1, 2))
    send(conn, 1, commands.Queue.Declare(queue="q.acks2"))
    conn.receive_data(b"".join(_publish(1, "q.acks2", b"m%d" % i) for i in range(4)))
    for number in (1, 2):
        send(conn, number, commands.Basic.Qos(prefetch_count=2),
             commands.Basic.Consume(queue="q.acks2", consumer_tag=f"c{number}"))
    decode(conn)
    channel_1, channel_2 = (conn.channels[n].core for n in (1, 2))
    assert sorted(channel_1.unacked) == [1, 2] and sorted(channel_2.unacked) == [1, 2]
    ack = lambda number, tag: frame.marshal(commands.Basic.Ack(delivery_tag=tag), number)  # noqa: E731
    conn.receive_data(ack(1, 1) + ack(2, 1) + ack(1, 2) + ack(2, 2))
    assert decode(conn) == [] and not channel_1.unacked and not channel_2.unacked


def test_a_bad_frame_end_after_a_run_of_acks_is_the_same_frame_error_as_alone():
    bad = frame.marshal(commands.Basic.Ack(delivery_tag=3), 1)[:-1] + b"\x00"
    alone = _consumer_with_backlog(prefetch=3, messages=5)
    alone.receive_data(bad)
    expected = flat(decode(alone))
    assert [name for _, name, _ in expected] == ["Connection.Close"]
    assert expected[0][2]["reply_code"] == 501
    after_run = _consumer_with_backlog(prefetch=3, messages=5)
    after_run.receive_data(_acks(1, 2) + bad)
    assert flat(decode(after_run)) == expected
    # The run's two good acks took effect: m1 and m2 are gone; m3 (unacked) went back.
    assert after_run.broker.vhosts["/"].queues["q.backlog"].message_count == 3
    assert alone.broker.vhosts["/"].queues["q.backlog"].message_count == 5


# -- how much the server's next read takes: 1 MiB while reads end inside large frames -----------------


def _cut_reads(body_size: int, messages: int, read_size: int) -> list[bytes]:
    data = b"".join(_publish(1, "q.reads", b"x" * body_size) for _ in range(messages))
    return [data[i:i + read_size] for i in range(0, len(data), read_size)]


def test_reads_of_large_messages_grow_and_reads_of_small_ones_do_not():
    conn = connect(Broker())
    conn.receive_data(frame.marshal(commands.Queue.Declare(queue="q.reads"), 1))
    sizes = []
    for read in _cut_reads(65536, 12, RECEIVE_SIZE):
        conn.receive_data(read)
        sizes.append(receive_size(conn.partial_frame_size()))
    # Every read but the last ended inside a 64 KiB body frame.
    assert sizes[:-1] == [LARGE_RECEIVE_SIZE] * (len(sizes) - 1) and sizes[-1] == RECEIVE_SIZE
    sizes = []
    for read in _cut_reads(16, 10_000, RECEIVE_SIZE):
        conn.receive_data(read)
        sizes.append(receive_size(conn.partial_frame_size()))
    assert set(sizes) == {RECEIVE_SIZE}
    assert conn.broker.vhosts["/"].queues["q.reads"].message_count == 10_012


def test_partial_frame_size_is_the_cut_frames_payload_size():
    conn = connect(Broker())
    message = _publish(1, "nowhere", b"y" * 40_000)
    body_start = len(message) - 40_000 - 8
    conn.receive_data(message[:body_start + 100])  # inside the body frame's payload
    assert conn.partial_frame_size() == 40_000 >= LARGE_FRAME
    conn.receive_data(message[body_start + 100:])
    assert conn.partial_frame_size() == 0
    conn.receive_data(message[:3])  # inside a frame header: size unknown yet
    assert conn.partial_frame_size() == 0
    conn.receive_data(message[3:20])  # inside the 40-byte-or-so method frame
    assert 0 < conn.partial_frame_size() < LARGE_FRAME


# -- frames straddling reads ----------------------------------------------------------------------------


def test_a_large_message_split_at_every_frame_boundary_and_inside_arrives_whole():
    conn = connect()
    send(conn, 1, commands.Queue.Declare(queue="q.split"))
    send(conn, 1, commands.Basic.Consume(queue="q.split", consumer_tag="c", no_ack=True))
    decode(conn)
    body = bytes(range(256)) * 400  # 102,400 bytes: one body frame
    data = frame.marshal(commands.Basic.Publish(routing_key="q.split"), 1) + content(1, body)
    for cut in (3, 20, 40, 60, 5000, len(data) - 1):
        conn.receive_data(data[:cut])
        conn.receive_data(data[cut:])
        out = b"".join(bytes(piece) for piece in conn.output.take())
        assert out.count(b"\x00\x3c\x00\x3c") == 1, cut  # one basic.deliver
        assert body in out, cut


def test_an_oversized_frame_is_refused_as_soon_as_its_header_arrives():
    conn = connect()
    conn.receive_data(b"\x03\x00\x01")
    conn.receive_data(struct.pack(">I", 200_000) + b"x" * 100)  # the payload never needs to come
    frames = flat(decode(conn))
    assert frames[-1][1] == "Connection.Close" and frames[-1][2]["reply_code"] == 501


# -- memory bounds: max_message_size, publishes held by flow control --------------------------------


def declare(conn: Connection, channel: int, queue: str) -> None:
    send(conn, channel, commands.Queue.Declare(queue=queue))
    assert names(decode(conn)) == ["Queue.DeclareOk"]


def publish_bytes(channel: int, routing_key: str, data: bytes) -> bytes:
    return frame.marshal(commands.Basic.Publish(exchange="", routing_key=routing_key), channel) + content(channel, data)


@pytest.mark.parametrize("body_size", [1001, 2**31, 2**64 - 1])
def test_a_content_header_over_max_message_size_is_406_before_any_body(body_size):
    conn = connect(channels=(1, 2))
    conn.max_message_size = 1000
    declare(conn, 2, "q.max")
    announce = frame.marshal(commands.Basic.Publish(exchange="", routing_key="q.max"), 1) + frame.marshal(
        header.ContentHeader(0, body_size, commands.Basic.Properties()), 1)
    conn.receive_data(announce)
    assert_channel_close(decode(conn), 1, 406,
                         f"PRECONDITION_FAILED - message size {body_size} is larger than configured max size 1000",
                         60, 40)
    # The body that follows is dropped by the closing channel, never gathered.
    conn.receive_data(frame.marshal(pbody.ContentBody(b"x" * 4000), 1))
    assert decode(conn) == [] and conn.channels[1].content is None
    # The limit is inclusive, holds for the one-read fast path too, and other channels go on.
    conn.receive_data(publish_bytes(2, "q.max", b"y" * 1000) + publish_bytes(2, "q.max", b"z" * 1001))
    assert_channel_close(decode(conn), 2, 406,
                         "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000", 60, 40)
    assert conn.broker.vhosts["/"].queues["q.max"].message_count == 1


def test_publishes_wait_while_held_and_everything_before_them_is_handled():
    conn = connect()
    declare(conn, 1, "q.held")
    conn.hold_publishes = "low on memory"
    before = frame.marshal(commands.Basic.Qos(prefetch_count=5), 1)
    held = publish_bytes(1, "q.held", b"one") + frame.marshal(commands.Basic.Qos(prefetch_count=7), 1)
    conn.receive_data(before + held)
    # The qos before the publish is answered; from the publish on, nothing is handled yet, and a
    # client that announced the capability is told it is blocked (once).
    assert names(decode(conn)) == ["Basic.QosOk", "Connection.Blocked"]
    assert conn.held_input == held
    assert conn.broker.vhosts["/"].queues["q.held"].message_count == 0
    conn.resume_input()  # still held: waits at the same frame, no second connection.blocked
    assert decode(conn) == [] and conn.held_input == held
    conn.hold_publishes = None
    conn.resume_input()
    assert names(decode(conn)) == ["Basic.QosOk"] and conn.held_input is None
    assert conn.broker.vhosts["/"].queues["q.held"].message_count == 1


def test_a_publisher_is_held_in_the_middle_of_a_body_and_its_frames_are_not_gathered():
    conn = connect()
    declare(conn, 1, "q.midbody")
    body = bytes(range(256)) * 1024  # 256 KiB, in frames of at most 128 KiB
    frames = frame.marshal(commands.Basic.Publish(exchange="", routing_key="q.midbody"), 1) + frame.marshal(
        header.ContentHeader(0, len(body), commands.Basic.Properties()), 1)
    pieces = [frame.marshal(pbody.ContentBody(body[i:i + 65536]), 1) for i in range(0, len(body), 65536)]
    conn.receive_data(frames + pieces[0])
    assert conn.channels[1].content.received == 65536
    conn.hold_publishes = ""  # the store's flow control: held silently, no connection.blocked
    tail = b"".join(pieces[1:])
    conn.receive_data(tail[:7])  # the frame that is held straddles two reads
    conn.receive_data(tail[7:])
    assert decode(conn) == []
    assert conn.channels[1].content.received == 65536  # nothing more gathered while held
    assert conn.held_input == tail
    conn.hold_publishes = None
    conn.resume_input()
    send(conn, 1, commands.Basic.Get(queue="q.midbody", no_ack=True))
    got = decode(conn)
    assert names(got)[:2] == ["Basic.GetOk", "ContentHeader"]
    assert b"".join(value.value for _, value in got[2:]) == body
