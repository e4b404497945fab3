"""The typed boundary between the protocol layer and the core: the sink the core delivers through."""

from __future__ import annotations

import inspect

from pamqp import body, commands, frame, header

from amqp_broker.broker.broker import Broker
from amqp_broker.broker.message import Message
from amqp_broker.broker.sink import DeliverySink
from amqp_broker.protocol.channel import ChannelState
from amqp_broker.protocol.connection import Connection

from sink_double import SinkDouble


def _connect() -> Connection:
    """A connection past the handshake with channel 1 open (capabilities announced)."""
    conn = Connection(Broker(), "test")
    conn.receive_data(b"AMQP\x00\x00\x09\x01")
    conn.receive_data(frame.marshal(commands.Connection.StartOk(
        client_properties={"capabilities": {"consumer_cancel_notify": True}},
        mechanism="PLAIN", response="\0guest\0guest"), 0))
    conn.receive_data(frame.marshal(commands.Connection.TuneOk(
        channel_max=2047, frame_max=131072, heartbeat=0), 0))
    conn.receive_data(frame.marshal(commands.Connection.Open(virtual_host="/"), 0))
    conn.receive_data(frame.marshal(commands.Channel.Open(), 1))
    conn.out.clear()
    return conn


def _send(conn: Connection, *methods) -> None:
    conn.receive_data(b"".join(frame.marshal(method, 1) for method in methods))


def _members(cls: type) -> list[str]:
    return [name for name, value in vars(cls).items()
            if inspect.isfunction(value) and not name.startswith("_")]


def test_the_protocol_channel_state_is_a_delivery_sink():
    assert isinstance(ChannelState(Connection(Broker(), "test"), 1), DeliverySink)


def test_the_sink_methods_take_the_parameters_the_core_passes():
    for name in _members(DeliverySink):
        declared = list(inspect.signature(getattr(DeliverySink, name)).parameters)
        implemented = list(inspect.signature(getattr(ChannelState, name)).parameters)
        assert implemented == declared, name


def test_the_unit_tests_sink_double_is_a_whole_delivery_sink():
    # The core's unit tests stand this in for ChannelState: it must offer every method the core
    # may call, with the same parameters, or a test would pass against a narrower boundary.
    assert isinstance(SinkDouble(), DeliverySink)
    for name in _members(DeliverySink):
        declared = list(inspect.signature(getattr(DeliverySink, name)).parameters)
        implemented = list(inspect.signature(getattr(SinkDouble, name)).parameters)
        assert implemented == declared, name


def test_the_core_calls_nothing_on_a_sink_but_the_declared_methods():
    class Recorder:
        def __init__(self) -> None:
            self.called: set[str] = set()

        def __getattr__(self, name: str):
            self.called.add(name)
            return lambda *args: True if name == "writable" else 1 << 20

    conn = _connect()
    recorder = Recorder()
    core = conn.channels[1].core
    core.sink = recorder
    _send(conn, commands.Confirm.Select(), commands.Queue.Declare(queue="q"),
         commands.Basic.Consume(queue="q", consumer_tag="c"))
    core.basic_publish("", "q", True, False, Message("", "q", b"\x00\x00", b"body"))
    core.basic_publish("", "nowhere", True, False, Message("", "nowhere", b"\x00\x00", b"body"))
    _send(conn, commands.Queue.Delete(queue="q"))
    assert recorder.called <= set(_members(DeliverySink))
    assert {"deliver", "basic_return", "confirm"} <= recorder.called



def test_a_reply_to_that_only_looks_direct_is_published_as_it_is():
    # The protocol's hint is a byte test: the marker inside a longer reply_to sets it too; the
    # door must find out, leave the message alone and publish it once.
    conn = _connect()
    properties = commands.Basic.Properties(reply_to="amq.rabbitmq.reply-to.not-mine")
    _send(conn, commands.Queue.Declare(queue="q"), commands.Basic.Publish(routing_key="q"),
          header.ContentHeader(0, 4, properties), body.ContentBody(b"body"))
    queue = conn.session.vhost.queues["q"]
    assert queue.message_count == 1
    message = queue.get().message
    assert message.properties()["reply_to"] == "amq.rabbitmq.reply-to.not-mine"
    assert not message.direct_reply_hint
