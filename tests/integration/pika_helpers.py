"""Helpers shared by the pika integration tests: asserting closes with RabbitMQ's codes and texts,
and polling queue state with a deadline (never a bare sleep)."""

from __future__ import annotations

import time

from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker
import pytest


def channel_error(connection, fn, code, text):
    """``fn`` must make the broker close the channel (not the connection) with code and text."""
    with pytest.raises(ChannelClosedByBroker) as info:
        fn()
    assert (info.value.reply_code, info.value.reply_text) == (code, text)
    assert connection.is_open


def connection_error(connection, fn, code, text):
    """``fn`` must make the broker close the whole connection with code and text."""
    with pytest.raises(ConnectionClosedByBroker) as info:
        fn()
    assert (info.value.reply_code, info.value.reply_text) == (code, text)
    assert not connection.is_open


# Seconds to watch for something that must NOT arrive (absence cannot be awaited).
SETTLE = 0.3


def wait_for(connection, condition, timeout=5.0):
    """Process I/O until ``condition()`` is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the broker"
        connection.process_data_events(time_limit=0.02)


def poll(predicate, timeout=15.0, what="condition"):
    """``predicate()``'s first truthy value, polled without a connection's I/O (broker state, a
    log, another process); fails at the deadline naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def settle(connection, seconds=SETTLE):
    """Keep processing I/O for a while, to catch deliveries that should not happen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.02)


def ping(channel):
    """A synchronous round trip, so an asynchronous method's error surfaces."""
    channel.exchange_declare("amq.direct", passive=True)


def ready_count(channel, queue):
    return channel.queue_declare(queue, passive=True).method.message_count


def ready_soon(channel, queue, expected, timeout=5.0):
    """Poll the ready count until it is ``expected`` (a closed channel's requeue is asynchronous
    in RabbitMQ); fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        count = channel.queue_declare(queue, passive=True).method.message_count
        if count == expected or time.monotonic() > deadline:
            assert count == expected
            return
        time.sleep(0.01)


def get_soon(channel, queue, timeout=5.0):
    """basic.get (auto-ack), polling until a message is there (see ``ready_soon``)."""
    deadline = time.monotonic() + timeout
    while True:
        got = channel.basic_get(queue, auto_ack=True)
        if got[0] is not None:
            return got
        assert time.monotonic() < deadline, "no message came back"
        time.sleep(0.01)
