"""The typed boundary between the protocol layer and the core: the sink the core delivers through."""

from __future__ import annotations

import inspect

from pamqp import commands, frame

from amqp_broker.broker.broker import Broker
from amqp_broker.broker.message import Message
from amqp_broker.broker.sink import DeliverySink
from amqp_broker.protocol.channel import ChannelState
from amqp_broker.protocol.connection import Connection


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

