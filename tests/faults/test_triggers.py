"""Triggers: counting whole methods whatever their framing, firing N times, states started by a
trigger, and the hook that only exists while a fault does."""

from __future__ import annotations

import time
import uuid

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker, NackError


def connect(broker):
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def hooks(broker):
    """The fault hooks of the broker's connections (a closed test's may still be winding down)."""
    return set(broker.call(lambda: [c.fault_hook for c in broker.server.connections]))


def test_publishes_are_counted_whole_across_frames_and_reads(broker, faults):
    queue = f"big-{uuid.uuid4().hex[:8]}"
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare(queue, auto_delete=True)
    faults.close_channel(on="basic.publish", after=2, routing_key=queue)
    body = b"x" * 300_000  # three body frames at frame_max 131072, and more than one read
    # The close may reach pika while it still writes the third publish (a fast broker, a slow
    # client): it raises from whichever call is reading then.
    with pytest.raises(ChannelClosedByBroker) as info:
        for _ in range(3):
            channel.basic_publish("", queue, body)
        channel.queue_declare(queue, passive=True)
    assert info.value.reply_code == 406
    # Closed right after the second publish's last body frame: the third one was dropped.
    assert connection.channel().queue_declare(queue, passive=True).method.message_count == 2
    connection.close()


def test_a_fault_fires_the_number_of_times_asked(broker, faults):
    fault = faults.close_channel(on="basic.publish", after=1, times=2)
    connection = connect(broker)
    closed = []
    for _ in range(3):
        channel = connection.channel()
        channel.basic_publish("amq.direct", "nowhere", b"x")
        try:
            channel.exchange_declare("amq.direct", passive=True)
            closed.append(False)
        except ChannelClosedByBroker:
            closed.append(True)
    assert closed == [True, True, False]
    record = faults.get(fault["id"])
    assert (record["fired"], record["state"]) == (2, "fired")
    connection.close()


def test_a_trigger_can_start_a_state(broker, faults):
    """nack_confirms on the second publish: from then on, confirms are nacks."""
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    fault = faults.nack_confirms(on="basic.publish", after=2)
    channel.basic_publish("amq.direct", "nowhere", b"1")
    channel.basic_publish("amq.direct", "nowhere", b"2")
    assert faults.get(fault["id"])["state"] == "active"
    with pytest.raises(NackError):
        channel.basic_publish("amq.direct", "nowhere", b"3")
    faults.release(fault)
    channel.basic_publish("amq.direct", "nowhere", b"4")
    connection.close()


def test_connections_read_through_the_hook_only_while_a_fault_is_live(broker, faults):
    connection = connect(broker)
    channel = connection.channel()
    assert hooks(broker) == {None}
    fault = faults.close_channel(on="basic.consume")
    assert None not in hooks(broker)
    faults.release(fault)
    assert hooks(broker) == {None}
    # A one-shot that fired is no longer live: its hook goes too.
    faults.close_channel(on="Exchange.Declare")  # any case; "-" or "_" in the -ok methods
    with pytest.raises(ChannelClosedByBroker):
        channel.exchange_declare("amq.direct", passive=True)
    assert hooks(broker) == {None}
    # A state's sinks go with it: the core channel delivers straight to the protocol again.
    channel = connection.channel()
    held = faults.hold_deliveries()
    sinks = broker.call(lambda: [type(ch.core.sink).__name__ for c in broker.server.connections
                                 for ch in c.protocol.channels.values() if not ch.closing])
    assert sinks == ["FaultSink"]
    faults.release(held)
    sinks = broker.call(lambda: [type(ch.core.sink).__name__ for c in broker.server.connections
                                 for ch in c.protocol.channels.values() if not ch.closing])
    assert sinks == ["ChannelState"] and hooks(broker) == {None}
    connection.close()


def test_a_trigger_on_connection_open_narrowed_to_a_vhost(broker, faults):
    """Every new connection to one vhost is refused right after it opened; others are not."""
    vhost = f"refused-{uuid.uuid4().hex[:8]}"
    admin = broker.server.admin
    broker.call(lambda: (admin.add_vhost(vhost), admin.set_permissions("guest", vhost)))
    try:
        fault = faults.close_connection(code=320, text="CONNECTION_FORCED - not now",
                                        on="connection.open", vhost=vhost, times=2)
        fine = connect(broker)  # vhost /: not a match
        for _ in range(2):
            # open-ok, then the close: pika's constructor returns, and the close is read with it
            # or on the next call; either way the connection is closed and says so no more.
            connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, vhost))
            deadline = time.monotonic() + 5
            while connection.is_open and time.monotonic() < deadline:
                try:
                    connection.process_data_events(time_limit=0.02)
                except ConnectionClosedByBroker as exc:
                    assert (exc.reply_code, exc.reply_text) == (320, "CONNECTION_FORCED - not now")
            assert connection.is_closed
            with pytest.raises(pika.exceptions.ConnectionWrongStateError):
                connection.channel()
        assert faults.get(fault["id"])["fired"] == 2
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, vhost)).close()
        fine.close()
    finally:
        broker.call(lambda: admin.delete_vhost(vhost))
