"""The sans-IO parts, fed bytes: the frame codec, and a session driven without a socket."""

from __future__ import annotations

import pytest

from amqp_broker.broker.broker import Broker
from amqp_broker.stomp import destinations
from amqp_broker.stomp.connection import StompConfig, StompConnection
from amqp_broker.stomp.frame import FrameError, FrameParser, serialize


def test_frames_split_anywhere_parse_the_same():
    wire = (b"\n\x00\r\nSEND\r\ndestination:/queue/a\nfoo:b\\cc\\nd\\\\e\nfoo:second\n\nbody\x00"
            b"SEND\ncontent-length:5\ndestination:/topic/t\n\na\x00b\x00c\x00\n\n")
    whole = FrameParser().feed(wire)
    for cut in range(1, len(wire)):
        parser = FrameParser()
        frames = parser.feed(wire[:cut]) + parser.feed(wire[cut:])
        assert [(f.command, f.headers, f.body) for f in frames] == \
            [(f.command, f.headers, f.body) for f in whole]
    first, second = whole
    # Escapes decoded, the first of a repeated header kept (STOMP 1.2).
    assert first.headers == {"destination": "/queue/a", "foo": "b:c\nd\\e"}
    assert first.body == b"body"
    # content-length lets a SEND body hold NULs.
    assert second.body == b"a\x00b\x00c"


def test_content_length_only_on_send():
    frames = FrameParser().feed(b"ACK\ncontent-length:10\nid:1\n\n\x00")
    assert frames[0].command == "ACK" and frames[0].body == b""


@pytest.mark.parametrize("wire", [
    b"SEND\nno-colon\n\n\x00",
    b"SEND\nbad:esc\\t\n\n\x00",
    b"SEND\rX\n\n\x00",
    b"SEND\ncontent-length:2\n\nabc\x00",
])
def test_malformed_frames_are_refused(wire):
    with pytest.raises(FrameError):
        FrameParser().feed(wire)


def test_serialize_escapes_and_adds_content_length():
    out = serialize("MESSAGE", [("a:b", "c\nd"), ("content-length", "99")], b"xy")
    assert out == b"MESSAGE\na\\cb:c\\nd\ncontent-length:2\n\nxy\x00\n"
    assert serialize("RECEIPT", [("receipt-id", "1")]) == b"RECEIPT\nreceipt-id:1\n\n\x00\n"


def test_destinations():
    assert destinations.parse("/queue/a%2Fb") == ("queue", "a/b", None)
    assert destinations.parse("plain") == ("queue", "plain", None)
    assert destinations.parse("/exchange/x/k.*") == ("exchange", "x", "k.*")
    assert destinations.parse("/amq/queue/q") == ("amqqueue", "q", None)
    assert destinations.parse("/reply-queue/amq.gen-1") == ("reply_queue", "amq.gen-1", None)
    assert destinations.routing(destinations.parse("/topic/a.b")) == ("amq.topic", "a.b")
    with pytest.raises(destinations.DestinationError) as info:
        destinations.parse("/queue/")
    assert info.value.detail == "'/' is not a valid queue destination\n"
    assert destinations.format_destination("x", "a/b%é") == "/exchange/x/a%2Fb%25%C3%A9"
    assert destinations.reply_to_header("amq.gen-1") == "/reply-queue/amq.gen-1"
    assert destinations.reply_to_header("/queue/q") == "/queue/q"


def _session():
    broker = Broker()
    conn = StompConnection(broker, "127.0.0.1:5000", "127.0.0.1:61613", StompConfig())
    return broker, conn


def _take(conn) -> bytes:
    out = bytes(conn.output.buf)
    conn.output.buf.clear()
    return out


def test_session_without_socket_connects_publishes_and_delivers():
    broker, conn = _session()
    conn.receive_data(b"CONNECT\naccept-version:1.1,1.2\nhost:/\nheart-beat:5000,2500\n\n\x00")
    out = _take(conn)
    assert out.startswith(b"CONNECTED\nserver:amqp_broker/")
    # Whole seconds, rounded down (RabbitMQ: 2500 ms -> 2000; under a second -> 1000).
    assert b"\nheart-beat:2000,5000\nversion:1.2\n" in out
    assert (conn.send_heartbeat, conn.receive_heartbeat) == (2, 5)
    conn.receive_data(b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client-individual\nreceipt:r\n\n\x00")
    assert _take(conn) == b"RECEIPT\nreceipt-id:r\n\n\x00\n"
    assert broker.vhosts["/"].queues["q"].durable
    conn.receive_data(b"SEND\ndestination:/queue/q\nx-custom:1\n\nhi\x00")
    message = _take(conn)
    assert message.startswith(b"MESSAGE\nsubscription:s\ndestination:/queue/q\nmessage-id:T_s@@session-")
    assert message.endswith(b"\nx-custom:1\ncontent-length:2\n\nhi\x00\n")
    ack = message.split(b"\nack:")[1].split(b"\n")[0]
    conn.receive_data(b"ACK\nid:" + ack + b"\nreceipt:a\n\n\x00")
    assert _take(conn) == b"RECEIPT\nreceipt-id:a\n\n\x00\n"
    assert broker.vhosts["/"].queues["q"].message_count == 0
    conn.receive_data(b"DISCONNECT\nreceipt:bye\n\n\x00")
    assert _take(conn) == b"RECEIPT\nreceipt-id:bye\n\n\x00\n"
    assert conn.finished and not broker.sessions


def test_session_heartbeat_and_login_timeouts():
    broker, conn = _session()
    assert conn.heartbeat_tick(0, 0, 1.0)
    assert not conn.heartbeat_tick(0, 0, 11.0) and conn.close_reason == "login timeout"
    broker, conn = _session()
    conn.receive_data(b"CONNECT\naccept-version:1.2\nheart-beat:1000,1000\n\n\x00")
    _take(conn)
    assert conn.heartbeat_tick(1.5, 1.0, 5) and _take(conn) == b"\n"
    assert not conn.heartbeat_tick(2.5, 0, 5) and conn.close_reason == "missed heartbeats"
    assert not broker.sessions


def test_garbage_ends_the_session_without_error_frame():
    broker, conn = _session()
    conn.receive_data(b"CONNECT\n\n\x00")
    _take(conn)
    conn.receive_data(b"SEND\nbroken header\n\n\x00")
    assert conn.finished and _take(conn) == b"" and not broker.sessions


def test_send_properties_encode_as_the_broker_codec_does():
    import datetime

    from amqp_broker.broker.properties import properties_from_dict, properties_to_dict
    from amqp_broker.stomp.connection import send_properties

    headers = {
        "destination": "/queue/q", "content-type": "text/plain", "content-encoding": "gzip",
        "x-one": "1", "persistent": "true", "priority": "9", "correlation-id": "c",
        "reply-to": "amq.rabbitmq.reply-to", "expiration": "100", "amqp-message-id": "m",
        "timestamp": "1700000000", "type": "t", "user-id": "u", "app-id": "a", "x-two": "é",
    }
    raw, delivery_mode, priority, expiration, user_id, reply_hint = send_properties(headers)
    assert (delivery_mode, priority, expiration, user_id, reply_hint) == (2, 9, "100", "u", True)
    expected = properties_from_dict({
        "content_type": "text/plain", "content_encoding": "gzip",
        "headers": {"x-two": "é", "x-one": "1"}, "delivery_mode": 2, "priority": 9,
        "correlation_id": "c", "reply_to": "amq.rabbitmq.reply-to", "expiration": "100",
        "message_id": "m", "timestamp": datetime.datetime.fromtimestamp(1700000000, datetime.timezone.utc),
        "message_type": "t", "user_id": "u", "app_id": "a",
    })
    assert raw == expected
    assert properties_to_dict(raw)["headers"] == {"x-two": "é", "x-one": "1"}
    assert send_properties({"destination": "/queue/q"})[0] == b"\x00\x00"


def test_the_session_is_the_core_channels_delivery_sink():
    from amqp_broker.broker.sink import DeliverySink

    assert isinstance(_session()[1], DeliverySink)


def test_a_frame_over_the_limit_is_refused_before_it_ends():
    parser = FrameParser(max_frame=1000)
    parser.feed(b"SEND\ndestination:/queue/q\n\n" + b"x" * 900)
    with pytest.raises(FrameError):
        parser.feed(b"x" * 200)
    assert FrameParser(max_frame=1000).feed(b"SEND\n\n" + b"x" * 990 + b"\x00")[0].body == b"x" * 990


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_COMMANDS = ["CONNECT", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN", "COMMIT",
             "ABORT", "DISCONNECT", "STOMP", "NOPE"]
_HEADERS = ["destination", "id", "ack", "receipt", "transaction", "prefetch-count", "durable",
            "auto-delete", "exclusive", "persistent", "reply-to", "priority", "timestamp",
            "message-id", "requeue", "x-queue-name", "x-max-length", "heart-beat", "accept-version",
            "content-type", "x-stream-offset", "host", "login", "passcode"]
_VALUES = st.one_of(
    st.sampled_from(["/queue/q", "/topic/t.*", "/exchange/amq.direct/k", "/amq/queue/q",
                     "/temp-queue/r", "/reply-queue/x", "/queue/", "q", "client", "auto",
                     "client-individual", "true", "false", "1", "-1", "x", "t1", "T_1@@s@@1",
                     "1.2", "1.0,1.1", "1000,1000", "/", "guest", ""]),
    st.text(min_size=0, max_size=8),
)
_FRAME = st.tuples(st.sampled_from(_COMMANDS),
                   st.lists(st.tuples(st.sampled_from(_HEADERS), _VALUES), max_size=5),
                   st.binary(max_size=8))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_FRAME, min_size=1, max_size=12))
def test_any_frame_sequence_leaves_the_broker_consistent(frames):
    broker, conn = _session()
    conn.receive_data(b"CONNECT\naccept-version:1.2\n\n\x00")
    for command, headers, body in frames:
        conn.receive_data(serialize(command, headers, body))
        if conn.finished:
            break
    conn.connection_lost()
    # Whatever happened, the session is gone and no consumer or exclusive queue is left behind.
    assert not broker.sessions
    for queue in broker.vhosts["/"].queues.values():
        assert not queue.consumers and queue.exclusive_owner is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=50))
def test_garbage_only_ever_raises_frame_errors(data, cut):
    parser = FrameParser(max_frame=100)
    try:
        parser.feed(data[:cut])
        parser.feed(data[cut:])
    except FrameError:
        pass
