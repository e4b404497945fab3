"""The consumer-timeout sweep's checkpoint logic and its wiring to the Broker, on a fake clock."""

from __future__ import annotations

from collections import deque

from amqp_broker.broker.broker import Broker
from amqp_broker.broker.consumer_timeout import (
    MAX_INTERVAL,
    MIN_INTERVAL,
    check_channel,
    timeout_error,
)
from amqp_broker.broker.timers import Timers

from sink_double import SinkDouble


class FakeChannel:
    def __init__(self):
        self.unacked: dict[int, object] = {}
        self.next_delivery_tag = 0
        self.timeout_marks: deque = deque()

    def deliver(self, n=1):
        for _ in range(n):
            self.next_delivery_tag += 1
            self.unacked[self.next_delivery_tag] = object()


def test_never_early_and_at_most_two_intervals_late():
    channel = FakeChannel()
    timeout, interval = 1.0, 0.1
    channel.deliver()
    delivered_at = 0.05  # between the sweeps at 0.0 and 0.1
    fired = None
    for step in range(1, 40):
        now = step * interval
        if check_channel(channel, now, timeout):
            fired = now
            break
    assert fired is not None
    assert timeout <= fired - delivered_at <= timeout + 2 * interval


def test_acking_the_old_delivery_resets_the_clock_for_newer_ones():
    channel = FakeChannel()
    channel.deliver()  # tag 1 at t=0
    assert not check_channel(channel, 0.0, 1.0)
    assert not check_channel(channel, 0.5, 1.0)
    channel.deliver()  # tag 2 at t≈0.5
    assert not check_channel(channel, 0.6, 1.0)
    del channel.unacked[1]
    # Tag 2 is only 0.5 s old at t=1.05: no timeout, though tag 1 would have been.
    assert not check_channel(channel, 1.05, 1.0)
    assert check_channel(channel, 1.7, 1.0)


def test_marks_are_dropped_when_nothing_is_unacked():
    channel = FakeChannel()
    channel.deliver()
    check_channel(channel, 0.0, 1.0)
    channel.unacked.clear()
    assert not check_channel(channel, 0.1, 1.0)
    assert not channel.timeout_marks
    channel.deliver()
    assert not check_channel(channel, 1.5, 1.0)  # delivered after the last mark: not yet old
    assert check_channel(channel, 2.6, 1.0)


def test_marks_stay_bounded():
    channel = FakeChannel()
    for step in range(1000):
        channel.deliver()
        check_channel(channel, step * 0.1, 1.0)
        # Ack everything but the newest few, as a steady consumer would.
        for tag in list(channel.unacked)[:-3]:
            del channel.unacked[tag]
    assert len(channel.timeout_marks) <= 12


def test_error_text_is_rabbitmqs():
    error = timeout_error(7, 1800000)
    assert (error.reply_code, error.reply_text) == (
        406,
        "PRECONDITION_FAILED - delivery acknowledgement on channel 7 timed out. Timeout value used: "
        "1800000 ms. This timeout value can be configured, see consumers doc guide to learn more",
    )


def test_broker_schedules_the_sweep_on_its_timers():
    broker = Broker(consumer_timeout_ms=300)
    assert isinstance(broker.timers, Timers)
    assert broker.consumer_timeouts.interval == max(0.03, MIN_INTERVAL)
    assert len(broker.timers) == 1
    assert Broker(consumer_timeout_ms=0).consumer_timeouts is None
    assert Broker().consumer_timeouts.interval == MAX_INTERVAL  # 30 min: RabbitMQ's 60 s tick


def test_sweep_closes_a_timed_out_channel_through_its_sink():
    now = [0.0]
    broker = Broker(consumer_timeout_ms=1000)
    broker.timers = Timers(clock=lambda: now[0])
    broker.consumer_timeouts.timer.cancel()
    from amqp_broker.broker.consumer_timeout import ConsumerTimeouts

    broker.consumer_timeouts = ConsumerTimeouts(broker, 1000)

    def close_channel(error):
        channel.open = False  # as the protocol layer's channel close does

    user = broker.authenticate("guest", "guest")
    session = broker.open_session(user, "/", {}, "peer")
    sink = SinkDouble(on_fail=close_channel)
    channel = session.open_channel(1, sink)
    channel.next_delivery_tag = 1
    channel.unacked[1] = object()
    for step in range(1, 30):
        now[0] = step * 0.1
        broker.timers.run_due()
    assert sink.failures == [timeout_error(1, 1000).reply_text]
