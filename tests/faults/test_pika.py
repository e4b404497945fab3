"""Each fault against pika (BlockingConnection), showing what pika makes of it: the exception a
test of a pika application would see, or the callback it would get."""

from __future__ import annotations

import time
import uuid

import pika
import pytest
from pika.exceptions import (
    AMQPHeartbeatTimeout,
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
    NackError,
    StreamLostError,
)

from amqp_broker.server.listener import SHUTDOWN_TEXT

# Seconds to watch for something that must NOT arrive (absence cannot be awaited).
SETTLE = 0.3


def connect(broker, name=None, **params):
    properties = {"connection_name": name} if name else None
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.port, client_properties=properties, **params))


def until(connection, condition, timeout=10.0):
    """Process the connection's I/O until ``condition()`` holds; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the broker"
        connection.process_data_events(time_limit=0.02)


def settle(connection, seconds=SETTLE):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.02)


def raised_while_waiting(connection, timeout=20.0):
    """Process I/O until pika raises (the broker's doing); the exception."""
    deadline = time.monotonic() + timeout
    with pytest.raises(Exception) as info:
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.05)
    return info.value


@pytest.fixture
def queue():
    return f"faults-{uuid.uuid4().hex[:8]}"


def test_close_channel_after_the_third_publish(broker, faults, queue):
    fault = faults.close_channel(code=406, text="PRECONDITION_FAILED - injected", on="basic.publish",
                                 after=3, queue=None, routing_key=queue)
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare(queue, auto_delete=True)
    for _ in range(3):
        channel.basic_publish("", queue, b"x")
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.queue_declare(queue, passive=True)
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - injected")
    assert connection.is_open  # only the channel went
    record = faults.get(fault["id"])
    assert (record["state"], record["seen"], record["fired"]) == ("fired", 3, 1)
    # The three publishes before the close were handled: they are in the queue.
    assert connection.channel().queue_declare(queue, passive=True).method.message_count == 3
    connection.close()


def test_close_channel_now_by_connection_name(broker, faults):
    connection = connect(broker, "victim")
    bystander = connect(broker, "bystander")
    channel = connection.channel()
    other = bystander.channel()
    faults.close_channel(channel=channel.channel_number, code=404, text="NOT_FOUND - gone",
                         connection="victim")
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.exchange_declare("amq.direct", passive=True)
    assert (info.value.reply_code, info.value.reply_text) == (404, "NOT_FOUND - gone")
    other.exchange_declare("amq.direct", passive=True)  # the other connection's channel is fine
    connection.close()
    bystander.close()


def test_close_connection_with_any_code(broker, faults):
    connection = connect(broker, "closed-by-fault")
    connection.channel()
    faults.close_connection(code=320, text="CONNECTION_FORCED - injected", connection="closed-by-fault")
    error = raised_while_waiting(connection)
    assert isinstance(error, ConnectionClosedByBroker)
    assert (error.reply_code, error.reply_text) == (320, "CONNECTION_FORCED - injected")


def test_silence_and_stopped_heartbeats_are_detected_by_pikas_heartbeat_timeout(broker, faults):
    # pika checks every heartbeat + 5 s whether anything arrived, and the first check still sees
    # the handshake: with a 1 s heartbeat, detection takes about 12 s. Both faults share that wait.
    silenced = connect(broker, "silenced", heartbeat=1)
    no_heartbeats = connect(broker, "no-heartbeats", heartbeat=1)
    silenced.channel()
    channel = no_heartbeats.channel()
    faults.silence(connection="silenced")
    faults.stop_heartbeats(connection="no-heartbeats")
    channel.exchange_declare("amq.direct", passive=True)  # without heartbeats, replies still come
    errors = {}
    deadline = time.monotonic() + 30
    while len(errors) < 2:
        assert time.monotonic() < deadline, f"pika noticed only {errors}"
        for name, connection in (("silence", silenced), ("stop_heartbeats", no_heartbeats)):
            if name not in errors:
                try:
                    connection.process_data_events(time_limit=0.05)
                except Exception as exc:
                    errors[name] = exc
    assert isinstance(errors["silence"], AMQPHeartbeatTimeout), repr(errors["silence"])
    assert isinstance(errors["stop_heartbeats"], AMQPHeartbeatTimeout), repr(errors["stop_heartbeats"])


def test_held_deliveries_arrive_when_released(broker, faults, queue):
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare(queue, auto_delete=True)
    fault = faults.hold_deliveries(queue=queue)
    received = []
    channel.basic_consume(queue, lambda ch, method, props, body: received.append(body))
    for n in range(3):
        channel.basic_publish("", queue, str(n).encode())
    # Taken from the queue, waiting on the way: unacked, as a slow network would leave them.
    deadline = time.monotonic() + 10
    while broker.call(lambda: broker.server.admin.queue("/", queue)["messages_unacknowledged"]) != 3:
        assert time.monotonic() < deadline, "the publishes never reached the consumer"
        connection.process_data_events(time_limit=0.02)
    settle(connection)
    assert received == []
    faults.release(fault)
    until(connection, lambda: len(received) == 3)
    assert received == [b"0", b"1", b"2"]
    connection.close()


def test_delayed_deliveries_come_late(broker, faults, queue):
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare(queue, auto_delete=True)
    faults.delay_deliveries(0.5, queue=queue)
    received = []
    channel.basic_consume(queue, lambda ch, method, props, body: received.append(time.monotonic()),
                          auto_ack=True)
    sent = time.monotonic()
    channel.basic_publish("", queue, b"late")
    until(connection, lambda: received)
    assert received[0] - sent >= 0.5
    connection.close()


def test_blocked_and_unblocked_callbacks(broker, faults):
    connection = connect(broker, "flow")
    events = []
    connection.add_on_connection_blocked_callback(lambda conn, frame: events.append(frame.method))
    connection.add_on_connection_unblocked_callback(lambda conn, frame: events.append(frame.method))
    faults.block(reason="low on memory", connection="flow")
    until(connection, lambda: events)
    assert events[0].NAME == "Connection.Blocked" and events[0].reason == "low on memory"
    faults.unblock(connection="flow")
    until(connection, lambda: len(events) == 2)
    assert events[1].NAME == "Connection.Unblocked"
    connection.close()


def test_consumer_cancelled_on_the_next_consume(broker, faults, queue):
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare(queue, auto_delete=False)
    faults.cancel_consumer(on="basic.consume", queue=queue)
    cancelled = []
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = channel.basic_consume(queue, lambda *args: None)
    until(connection, lambda: cancelled)
    assert cancelled == [tag]
    assert channel.consumer_tags == []  # pika forgot the consumer
    assert channel.is_open
    channel.queue_delete(queue)
    connection.close()


def test_nacked_confirm_raises_nack_error(broker, faults, queue):
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare(queue, auto_delete=True)
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"acked")
    faults.nack_confirms(count=1)
    with pytest.raises(NackError):
        channel.basic_publish("", queue, b"nacked")
    channel.basic_publish("", queue, b"acked again")  # count=1: the next one is acked
    connection.close()


def test_reset_raises_stream_lost(broker, faults):
    connection = connect(broker, "reset-me")
    connection.channel()
    faults.reset(connection="reset-me")
    error = raised_while_waiting(connection)
    assert isinstance(error, StreamLostError), repr(error)
    assert "Connection reset by peer" in str(error)  # an RST, not an orderly end of stream


def test_restart_closes_with_320_shutdown_and_keeps_durable_state(broker, faults, queue):
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.queue_declare(queue + "-transient")
    channel.confirm_delivery()  # the publish is in (and on disk) before the restart, not racing it
    channel.basic_publish("", queue, b"kept", pika.BasicProperties(delivery_mode=2))
    faults.restart()
    error = raised_while_waiting(connection)
    assert isinstance(error, ConnectionClosedByBroker)
    assert (error.reply_code, error.reply_text) == (320, SHUTDOWN_TEXT)
    assert SHUTDOWN_TEXT == "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
    # The broker takes connections right away, with the durable queue and its message.
    again = connect(broker)
    channel = again.channel()
    assert channel.queue_declare(queue, passive=True).method.message_count == 1
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.queue_declare(queue + "-transient", passive=True)
    assert info.value.reply_code == 404
    again.channel().queue_delete(queue)
    again.close()


def test_holding_one_consumer_leaves_the_others_alone(broker, faults, queue):
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare(queue, auto_delete=True)
    channel.queue_declare(queue + "-b", auto_delete=True)
    received = []
    held_tag = channel.basic_consume(queue, lambda ch, m, p, body: received.append(body), auto_ack=True)
    channel.basic_consume(queue + "-b", lambda ch, m, p, body: received.append(body), auto_ack=True)
    fault = faults.hold_deliveries(consumer_tag=held_tag)
    channel.basic_publish("", queue, b"held")
    channel.basic_publish("", queue + "-b", b"free")
    until(connection, lambda: received)
    settle(connection)
    assert received == [b"free"]
    faults.release(fault)
    until(connection, lambda: len(received) == 2)
    assert received == [b"free", b"held"]
    connection.close()


def test_restart_can_keep_transient_queues(broker, faults, queue):
    connection = connect(broker)
    connection.channel().queue_declare(queue)
    faults.restart(keep_transient=True)
    assert isinstance(raised_while_waiting(connection), ConnectionClosedByBroker)
    again = connect(broker)
    channel = again.channel()
    channel.queue_declare(queue, passive=True)  # still there
    channel.queue_delete(queue)
    again.close()
