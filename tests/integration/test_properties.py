"""Message properties and bodies survive the broker unchanged.

pika checks the decoded view (every basic property, every field-table type pika can encode); a raw
socket client built on pamqp checks the wire: the content-header payload a consumer (or basic.get)
receives must be byte-for-byte the one the publisher sent, including field-table types pika never
produces, and bodies are split into frames no larger than frame_max.
"""

from __future__ import annotations

import datetime
import decimal
import socket
import struct

import pika
import pytest
from pamqp import commands as C
from pamqp import frame as pframe
from pika.exceptions import ChannelClosedByBroker
from pika_helpers import wait_for

FRAME_END = b"\xce"

ALL_PROPERTIES = dict(
    content_type="application/json",
    content_encoding="gzip",
    headers={"h": 1, "s": "text"},
    delivery_mode=2,
    priority=7,
    correlation_id="corr-1",
    reply_to="reply.queue",
    expiration="86400000",  # a day: must not expire during the test
    message_id="msg-1",
    timestamp=1700000000,
    type="order.created",
    user_id="guest",
    app_id="the-app",
    cluster_id="cluster-x",
)

# Every field-table value type pika can encode (pika 1.x has no encoding for float; the raw tests
# below carry 'f' and 'd' values), each of which pika decodes back to an equal value.
PIKA_TABLE = {
    "str": "héllo wörld",
    "bytes": b"\x00\x01\xfe\xff",
    "int_small": 7,
    "int_zero": 0,
    "int_negative": -123456,
    "int_large": 2**40 + 3,
    "int_large_negative": -(2**62),
    "bool_true": True,
    "bool_false": False,
    "decimal": decimal.Decimal("12.345"),
    "decimal_integral": decimal.Decimal("42"),
    "datetime": datetime.datetime(2024, 2, 29, 12, 30, 45, tzinfo=datetime.timezone.utc),
    "nested": {"inner": {"deep": [1, "two", {"three": 3}]}, "empty": {}},
    "list": [1, -2, "three", b"four", True, decimal.Decimal("5.5"), None, [6, 7], {"eight": 8}],
    "empty_list": [],
    "none": None,
    "empty_str": "",
}


# -- helpers ------------------------------------------------------------------------------------


def shortstr(text):
    raw = text.encode()
    return bytes([len(raw)]) + raw


def longstr(raw):
    return struct.pack(">I", len(raw)) + raw


def table(entries):
    """A field table from (name, already-encoded typed value) pairs, in that order."""
    return longstr(b"".join(shortstr(name) + value for name, value in entries))


def exotic_table():
    """A headers table using every AMQP 0-9-1 field type RabbitMQ knows, pika's or not."""
    array = longstr(b"I" + struct.pack(">i", 1) + b"S" + longstr(b"two") + b"t\x01")
    return table([
        ("t", b"t\x01"),
        ("b", b"b" + struct.pack(">b", -5)),
        ("B", b"B" + struct.pack(">B", 200)),
        ("s", b"s" + struct.pack(">h", -300)),
        ("u", b"u" + struct.pack(">H", 60000)),
        ("I", b"I" + struct.pack(">i", -70000)),
        ("i", b"i" + struct.pack(">I", 4000000000)),
        ("l", b"l" + struct.pack(">q", -(2**40))),
        ("f", b"f" + struct.pack(">f", 1.5)),
        ("d", b"d" + struct.pack(">d", 2.25)),
        ("D", b"D" + struct.pack(">Bi", 2, 12345)),
        ("S", b"S" + longstr("héllo".encode())),
        ("x", b"x" + longstr(b"\x00\xff")),
        ("A", b"A" + array),
        ("T", b"T" + struct.pack(">Q", 1700000000)),
        ("F", b"F" + table([("k", b"V"), ("n", b"I" + struct.pack(">i", 9))])),
        ("V", b"V"),
    ])


def all_flags_properties():
    """Hand-built basic.properties with all 14 fields set, headers holding every field type."""
    return (
        struct.pack(">H", 0xFFFC)
        + shortstr("text/plain")             # content-type
        + shortstr("utf-8")                  # content-encoding
        + exotic_table()                     # headers
        + b"\x02"                            # delivery-mode
        + b"\x09"                            # priority
        + shortstr("corr")                   # correlation-id
        + shortstr("reply")                  # reply-to
        + shortstr("86400000")               # expiration
        + shortstr("mid")                    # message-id
        + struct.pack(">Q", 1700000000)      # timestamp
        + shortstr("kind")                   # type
        + shortstr("guest")                  # user-id
        + shortstr("app")                    # app-id
        + shortstr("cluster")                # cluster-id (reserved, still forwarded)
    )


class Raw:
    """A minimal AMQP client on a socket that keeps each frame's raw payload."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        assert isinstance(self.method(), C.Connection.Start)
        self.send(0, C.Connection.StartOk(client_properties={"capabilities": {}}, mechanism="PLAIN",
                                          response="\0guest\0guest", locale="en_US"))
        tune = self.method()
        self.frame_max = tune.frame_max
        self.send(0, C.Connection.TuneOk(channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0))
        self.send(0, C.Connection.Open(virtual_host="/"))
        assert isinstance(self.method(), C.Connection.OpenOk)
        assert isinstance(self.call(1, C.Channel.Open()), C.Channel.OpenOk)

    def send(self, channel, *values):
        self.sock.sendall(b"".join(pframe.marshal(v, channel) for v in values))

    def send_raw(self, frame_type, channel, payload):
        self.sock.sendall(struct.pack(">BHI", frame_type, channel, len(payload)) + payload + FRAME_END)

    def publish(self, routing_key, properties, body):
        """basic.publish with the content header's properties exactly as given."""
        self.send(1, C.Basic.Publish(exchange="", routing_key=routing_key))
        self.send_raw(2, 1, struct.pack(">HHQ", 60, 0, len(body)) + properties)
        limit = self.frame_max - 8
        for start in range(0, len(body), limit):
            self.send_raw(3, 1, body[start:start + limit])

    def raw_frame(self):
        """(type, channel, payload) of the next non-heartbeat frame."""
        while True:
            while len(self.buf) < 7 or len(self.buf) < 8 + struct.unpack_from(">I", self.buf, 3)[0]:
                data = self.sock.recv(1 << 20)
                assert data, "connection closed by the broker"
                self.buf += data
            frame_type, channel, size = struct.unpack_from(">BHI", self.buf)
            payload, end = self.buf[7:7 + size], self.buf[7 + size:8 + size]
            self.buf = self.buf[8 + size:]
            assert end == FRAME_END
            if frame_type != 8:
                return frame_type, channel, payload

    def method(self):
        frame_type, channel, payload = self.raw_frame()
        assert frame_type == 1, (frame_type, payload[:40])
        return pframe.unmarshal(struct.pack(">BHI", 1, channel, len(payload)) + payload + FRAME_END)[2]

    def call(self, channel, method):
        self.send(channel, method)
        return self.method()

    def content(self):
        """(raw header payload, [body frame payloads]) of the content after a deliver/get-ok."""
        frame_type, _, header = self.raw_frame()
        assert frame_type == 2
        body_size = struct.unpack_from(">Q", header, 4)[0]
        bodies, received = [], 0
        while received < body_size:
            frame_type, _, payload = self.raw_frame()
            assert frame_type == 3
            bodies.append(payload)
            received += len(payload)
        assert received == body_size
        return header, bodies

    def close(self):
        self.sock.close()


@pytest.fixture
def raw(broker):
    client = Raw(broker.port)
    yield client
    client.close()


def pika_properties_bytes(properties):
    """What pika puts on the wire for ``properties`` (the content header minus class/weight/size)."""
    return b"".join(properties.encode())


def get_then_consume(connection, channel, queue):
    """Two copies are ready: take one with basic.get, the other with a consumer."""
    got = channel.basic_get(queue, auto_ack=True)
    assert got[0] is not None and got[0].message_count == 1
    delivered = []
    tag = channel.basic_consume(queue, lambda _c, m, p, body: delivered.append((m, p, body)), auto_ack=True)
    wait_for(connection, lambda: delivered)
    channel.basic_cancel(tag)
    return got, delivered[0]


# -- decoded view (pika) ------------------------------------------------------------------------


def assert_properties(props, expected):
    for name, value in expected.items():
        assert getattr(props, name) == value, name


def test_every_basic_property_survives_consume_and_get(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    properties = pika.BasicProperties(**ALL_PROPERTIES)
    channel.basic_publish("", q, b"payload", properties)
    channel.basic_publish("", q, b"payload", properties)
    for method, props, body in get_then_consume(connection, channel, q):
        assert (method.exchange, method.routing_key, body) == ("", q, b"payload")
        assert_properties(props, ALL_PROPERTIES)


def test_no_properties_at_all(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    channel.basic_publish("", q, b"bare")
    _, props, body = channel.basic_get(q, auto_ack=True)
    assert body == b"bare"
    assert all(getattr(props, name) is None for name in ALL_PROPERTIES)


def test_every_pika_field_table_type_survives(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    properties = pika.BasicProperties(headers=PIKA_TABLE)
    channel.basic_publish("", q, b"t", properties)
    channel.basic_publish("", q, b"t", properties)
    for _, props, _ in get_then_consume(connection, channel, q):
        assert props.headers == PIKA_TABLE


# -- wire view (raw) ----------------------------------------------------------------------------


def test_pika_property_bytes_are_forwarded_unchanged(channel, raw, unique):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    properties = pika.BasicProperties(**{**ALL_PROPERTIES, "headers": PIKA_TABLE})
    expected = struct.pack(">HHQ", 60, 0, 4) + pika_properties_bytes(properties)
    channel.basic_publish("", q, b"body", properties)
    channel.basic_publish("", q, b"body", properties)
    ok = raw.call(1, C.Basic.Consume(queue=q, consumer_tag="raw", no_ack=True))
    assert isinstance(ok, C.Basic.ConsumeOk)
    deliver = raw.method()
    assert isinstance(deliver, C.Basic.Deliver)
    header, bodies = raw.content()
    assert header == expected
    assert bodies == [b"body"]
    deliver = raw.method()
    assert isinstance(deliver, C.Basic.Deliver) and deliver.delivery_tag == 2
    assert raw.content() == (expected, [b"body"])


def test_hand_built_property_bytes_are_forwarded_unchanged(raw, unique):
    q = unique()
    raw.call(1, C.Queue.Declare(queue=q))
    properties = all_flags_properties()
    raw.publish(q, properties, b"xyz")
    raw.publish(q, properties, b"xyz")
    get_ok = raw.call(1, C.Basic.Get(queue=q, no_ack=True))
    assert isinstance(get_ok, C.Basic.GetOk) and get_ok.message_count == 1
    assert raw.content() == (struct.pack(">HHQ", 60, 0, 3) + properties, [b"xyz"])
    raw.call(1, C.Basic.Consume(queue=q, consumer_tag="raw", no_ack=True))
    assert isinstance(raw.method(), C.Basic.Deliver)
    assert raw.content() == (struct.pack(">HHQ", 60, 0, 3) + properties, [b"xyz"])


def test_hand_built_properties_decoded_by_pika(connection, channel, raw, unique):
    q = unique()
    channel.queue_declare(q)
    raw.publish(q, all_flags_properties(), b"p")
    raw.call(1, C.Queue.Declare(queue=q, passive=True))  # a round trip: the publish is in
    _, props, body = channel.basic_get(q, auto_ack=True)
    assert body == b"p"
    assert (props.content_type, props.content_encoding, props.delivery_mode, props.priority,
            props.correlation_id, props.reply_to, props.expiration, props.message_id, props.timestamp,
            props.type, props.user_id, props.app_id, props.cluster_id) == (
        "text/plain", "utf-8", 2, 9, "corr", "reply", "86400000", "mid", 1700000000,
        "kind", "guest", "app", "cluster")
    headers = props.headers
    # ('f' and 'd' are left out: pika decodes them truncated to integers; the bytes are checked above.)
    assert (headers["t"], headers["b"], headers["B"], headers["s"], headers["u"], headers["I"], headers["i"],
            headers["l"]) == (True, -5, 200, -300, 60000, -70000, 4000000000, -(2**40))
    assert (headers["S"], headers["x"], headers["A"], headers["F"], headers["V"]) == (
        "héllo", b"\x00\xff", [1, "two", True], {"k": None, "n": 9}, None)
    assert headers["D"] == decimal.Decimal("123.45")


# -- bodies -------------------------------------------------------------------------------------


FRAME_MAX = 131072  # what pika and the broker negotiate by default


def body_of(size):
    return bytes((i * 7 + size) % 251 for i in range(size))


@pytest.mark.parametrize("size", [0, 1, FRAME_MAX - 8, FRAME_MAX - 7, 1 << 20],
                         ids=["0B", "1B", "frame_max-8", "frame_max-7", "1MiB"])
def test_body_sizes_through_pika(connection, channel, unique, size):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    body = body_of(size)
    channel.basic_publish("", q, body)
    channel.basic_publish("", q, body)
    for _, _, got in get_then_consume(connection, channel, q):
        assert got == body


@pytest.mark.parametrize(
    "size,frames",
    [(1, [1]), (FRAME_MAX - 8, [FRAME_MAX - 8]), (FRAME_MAX - 7, [FRAME_MAX - 8, 1]),
     (1 << 20, [FRAME_MAX - 8] * 8 + [(1 << 20) - 8 * (FRAME_MAX - 8)])],
    ids=["1B", "frame_max-8", "frame_max-7", "1MiB"],
)
def test_body_frames_on_the_wire(raw, unique, size, frames):
    assert raw.frame_max == FRAME_MAX
    q = unique()
    raw.call(1, C.Queue.Declare(queue=q))
    body = body_of(size)
    raw.publish(q, b"\x00\x00", body)
    get_ok = raw.call(1, C.Basic.Get(queue=q, no_ack=True))
    assert isinstance(get_ok, C.Basic.GetOk)
    header, bodies = raw.content()
    assert header == struct.pack(">HHQ", 60, 0, size) + b"\x00\x00"
    assert [len(b) for b in bodies] == frames
    assert b"".join(bodies) == body


def test_empty_body_has_no_body_frame(raw, unique):
    q = unique()
    raw.call(1, C.Queue.Declare(queue=q))
    raw.publish(q, b"\x00\x00", b"")
    get_ok = raw.call(1, C.Basic.Get(queue=q, no_ack=True))
    assert isinstance(get_ok, C.Basic.GetOk)
    frame_type, _, header = raw.raw_frame()
    assert (frame_type, header) == (2, struct.pack(">HHQ", 60, 0, 0) + b"\x00\x00")
    # The next frame is the answer to the next method, not an empty body frame.
    assert isinstance(raw.call(1, C.Basic.Get(queue=q)), C.Basic.GetEmpty)


# -- user_id ------------------------------------------------------------------------------------


def test_user_id_must_match_the_login(connection, unique):
    q = unique()
    ch = connection.channel()
    ch.queue_declare(q)

    def publish():
        ch.basic_publish("", q, b"m", pika.BasicProperties(user_id="bob"))
        ch.queue_declare(q, passive=True)

    with pytest.raises(ChannelClosedByBroker) as info:
        publish()
    assert (info.value.reply_code, info.value.reply_text) == (
        406, "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'")
    assert connection.is_open
    ch = connection.channel()
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.confirm_delivery()
    ch.basic_publish("", q, b"m", pika.BasicProperties(user_id="guest"))
    _, props, _ = ch.basic_get(q, auto_ack=True)
    assert props.user_id == "guest"
