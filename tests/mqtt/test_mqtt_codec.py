"""The sans-IO side of MQTT: the packet codec, topic translation, and the connection state
machine fed bytes directly, over a real broker core (no sockets)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import mqttwire as w  # noqa: E402

from amqp_broker.broker.broker import Broker  # noqa: E402
from amqp_broker.broker.properties import properties_to_dict  # noqa: E402
from amqp_broker.mqtt import codec  # noqa: E402
from amqp_broker.mqtt.connection import PUBLISH_PROPERTIES, MqttConnection, MqttNode  # noqa: E402
from amqp_broker.mqtt.topics import to_amqp, to_mqtt  # noqa: E402


def test_connect_parsed_byte_by_byte():
    data = w.connect("dev-1", clean=False, username="v:u", password="p", keep_alive=30,
                     will=("last/words", b"bye", 1, True))
    parser = codec.Parser()
    packets = []
    for byte in data:
        packets += parser.feed(bytes((byte,)))
    assert packets == [codec.Connect(4, "dev-1", False, 30, "v:u", "p", codec.Will("last/words", b"bye", 1, True))]
    assert not parser.buffer


def test_several_packets_in_one_read_and_long_remaining_length():
    payload = b"x" * 20000  # a three-byte remaining length
    data = w.publish("t/1", payload, qos=1, packet_id=300, retain=True, dup=True) + w.PINGREQ + w.puback(7)
    packets = codec.Parser().feed(data)
    assert packets == [codec.Publish("t/1", payload, 1, True, True, 300), codec.Simple(codec.PINGREQ),
                       codec.PubAck(7)]


def test_subscribe_and_unsubscribe():
    packets = codec.Parser().feed(w.subscribe(9, ("a/+", 0), ("b/#", 2)) + w.unsubscribe(10, "a/+"))
    assert packets == [codec.Subscribe(9, [("a/+", 0), ("b/#", 2)]), codec.Unsubscribe(10, ["a/+"])]


@pytest.mark.parametrize("data", [
    b"\x30\xff\xff\xff\xff\x01",                      # remaining length of five bytes
    w.packet(6, 2, b"\x00\x01"),                       # PUBREL: QoS 2 is never granted
    w.connect("c", level=5, name="MQTT"),              # MQTT 5
    w.connect("c", level=4, name="MQIsdp"),            # name and level disagree
    w.packet(8, 2, b"\x00\x01"),                       # SUBSCRIBE without topics
])
def test_refused_input(data):
    with pytest.raises(codec.ProtocolError):
        codec.Parser().feed(data)


def test_written_publish_parses_back():
    out = bytearray()
    codec.write_publish(out, "ü/x".encode(), b"body", 1, 65534, retain=True, dup=True)
    assert codec.Parser().feed(bytes(out)) == [codec.Publish("ü/x", b"body", 1, True, True, 65534)]


def test_topic_translation():
    assert to_amqp("a/+/c/#") == "a.*.c.#"
    assert to_mqtt("a.*.c.#") == "a/+/c/#"
    assert to_mqtt(to_amqp("a.b/c")) == "a/b/c"  # dots in MQTT topics do not survive, as in RabbitMQ


def test_publish_properties_are_the_plugins():
    for (qos, dup), raw in PUBLISH_PROPERTIES.items():
        props = properties_to_dict(raw)
        assert props["delivery_mode"] == (1 if qos == 0 else 2)
        assert dict(props["headers"]) == {"x-mqtt-publish-qos": qos, "x-mqtt-dup": dup}


# -- the state machine over a real core ----------------------------------------------------------


@pytest.fixture
def node():
    return MqttNode(Broker())


def _client(node, client_id, **connect):
    conn = MqttConnection(node, "127.0.0.1:50000", "127.0.0.1:1883")
    conn.receive(w.connect(client_id, **connect))
    return conn


def _packets(conn) -> list[str]:
    conn.service()
    data = conn.take_output()
    reader = w.Client.__new__(w.Client)
    reader.buffer = data
    packets = []
    while (packet := reader._take()) is not None:
        packets.append(packet.hex())
    return packets


def test_publish_reaches_subscriber_without_sockets(node):
    subscriber = _client(node, "sub")
    assert _packets(subscriber) == ["20020000"]
    subscriber.receive(w.subscribe(1, ("room/+", 1)))
    assert _packets(subscriber) == ["9003000101"]
    publisher = _client(node, "pub")
    publisher.receive(w.publish("room/1", b"hi", qos=1, packet_id=42))
    assert _packets(publisher) == ["20020000", "4002002a"]
    [packet] = _packets(subscriber)
    assert w.decode_publish(packet) == {"topic": "room/1", "qos": 1, "packet_id": 1, "dup": False,
                                        "retain": False, "payload": b"hi"}
    queue = node.broker.vhosts["/"].queues["mqtt-subscription-subqos1"]
    assert queue.message_count == 0 and len(subscriber.awaiting_ack) == 1
    subscriber.receive(w.puback(1))
    assert not subscriber.awaiting_ack


def test_keepalive_expiry_publishes_the_will(node):
    watcher = _client(node, "watcher")
    watcher.receive(w.subscribe(1, ("wills/#", 0)))
    _packets(watcher)
    dying = _client(node, "dying", keep_alive=5, will=("wills/dying", b"gone", 0, False))
    dying.keepalive_expired()
    assert dying.finished and dying.session.closed
    [packet] = _packets(watcher)
    assert w.decode_publish(packet)["payload"] == b"gone"


def test_duplicate_client_id_closes_the_first(node):
    first = _client(node, "same", will=("w/x", b"not sent", 0, False))
    second = _client(node, "same")
    assert first.finished and first.session.closed and first.will is None
    assert node.clients["same"] is second
    first.connection_lost()  # its socket going away later changes nothing
    assert node.clients["same"] is second


def test_connection_is_the_cores_delivery_sink(node):
    from amqp_broker.broker.sink import DeliverySink

    assert isinstance(MqttConnection(node, "p:1", "l:2"), DeliverySink)


def test_first_packet_must_be_connect(node):
    conn = MqttConnection(node, "127.0.0.1:50000", "127.0.0.1:1883")
    conn.receive(w.PINGREQ)
    assert conn.finished and conn.session is None and not conn.out


# -- arbitrary input ------------------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_parser_only_ever_refuses_with_protocol_error(chunks):
    parser = codec.Parser()
    try:
        for chunk in chunks:
            parser.feed(chunk)
    except codec.ProtocolError:
        pass


_PACKETS = st.one_of(
    st.builds(w.publish, st.sampled_from(["a/b", "a/+", "#", ""]), st.binary(max_size=8),
              st.integers(0, 3), st.integers(0, 65535), st.booleans(), st.booleans()),
    st.builds(lambda pid, topic, qos: w.subscribe(pid, (topic, qos)), st.integers(0, 65535),
              st.sampled_from(["a/b", "a/+", "#"]), st.integers(0, 3)),
    st.builds(lambda pid, topic: w.unsubscribe(pid, topic), st.integers(0, 65535), st.sampled_from(["a/b", "#"])),
    st.builds(w.puback, st.integers(0, 65535)),
    st.just(w.PINGREQ), st.just(w.connect("again")), st.binary(max_size=6),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_PACKETS, max_size=12))
def test_connection_survives_any_packet_sequence(packets):
    node = MqttNode(Broker())
    conn = _client(node, "fuzzed")
    for data in packets:
        conn.receive(data)  # errors end the connection; nothing escapes
    conn.connection_lost()
    assert node.clients == {}
    assert all(not name.startswith("mqtt-subscription-fuzzedqos0") for name in node.broker.vhosts["/"].queues)
