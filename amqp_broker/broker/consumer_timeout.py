"""Consumer timeout: a channel whose oldest unacknowledged delivery is older than the limit is
closed with 406, as RabbitMQ 3.10 does (``consumer_timeout``, default 30 minutes).

RabbitMQ checks on each channel's periodic tick (``channel_tick_interval``, 60 s): if the oldest
entry of the channel's unacked queue, a consumer delivery or a basic.get, was delivered more than
the limit ago, rabbit_channel:evaluate_consumer_timeout closes the channel with the text below and
no class or method id. The unacked messages are requeued as on any channel close.

Here one broker-wide timer sweeps every open channel every ``interval`` (a tenth of the limit,
between 10 ms and RabbitMQ's 60 s). Deliveries carry no timestamp — the hot path pays nothing.
Instead each sweep records a checkpoint ``(now, highest delivery tag so far)`` on every channel
with unacked deliveries: if the oldest unacked tag is at or below the tag of a checkpoint taken at
least the limit ago, that delivery is at least that old. A timeout is never reported early and at
most about two intervals late (RabbitMQ's own tick makes it up to 60 s late).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import precondition_failed

if TYPE_CHECKING:  # pragma: no cover
    from .broker import Broker
    from .channel import Channel

log = logging.getLogger("amqp_broker.consumer_timeout")

# Sweep bounds, in seconds: never busier than every 10 ms (tests use limits of a few hundred ms),
# never lazier than RabbitMQ's default channel tick of 60 s.
MIN_INTERVAL = 0.01
MAX_INTERVAL = 60.0


def timeout_error(channel_number: int, timeout_ms: int):
    """RabbitMQ 3.10's error, word for word (rabbit_channel:evaluate_consumer_timeout/1)."""
    return precondition_failed(
        f"delivery acknowledgement on channel {channel_number} timed out. "
        f"Timeout value used: {timeout_ms} ms. "
        "This timeout value can be configured, see consumers doc guide to learn more"
    )


def check_channel(channel: "Channel", now: float, timeout: float) -> bool:
    """Record a checkpoint on ``channel``; True when its oldest unacked delivery timed out."""
    unacked = channel.unacked
    marks = channel.timeout_marks
    if not unacked:
        if marks:
            marks.clear()
        return False
    oldest = next(iter(unacked))  # tags only grow, so the first key is the oldest delivery
    # Checkpoints below the oldest unacked tag can no longer cover anything.
    while marks and marks[0][1] < oldest:
        marks.popleft()
    if not marks or marks[-1][1] != channel.next_delivery_tag:
        marks.append((now, channel.next_delivery_tag))
    deadline = now - timeout
    # Keep only the newest checkpoint at or before the deadline (older ones say less).
    while len(marks) > 1 and marks[1][0] <= deadline:
        marks.popleft()
    taken_at, tag = marks[0]
    return taken_at <= deadline and oldest <= tag


class ConsumerTimeouts:
    """The broker's periodic sweep; started by the Broker when the limit is non-zero."""

    def __init__(self, broker: "Broker", timeout_ms: int):
        self.broker = broker
        self.timeout_ms = timeout_ms
        self.timeout = timeout_ms / 1000.0
        self.interval = min(max(self.timeout / 10, MIN_INTERVAL), MAX_INTERVAL)
        self.timer = broker.timers.call_later(self.interval, self.sweep)

    def sweep(self) -> None:
        """Check every open channel, close the timed-out ones, and schedule the next sweep."""
        timers = self.broker.timers
        now = timers.clock()
        timeout = self.timeout
        expired = []
        for session in self.broker.sessions:
            for channel in session.channels.values():
                if (channel.unacked or channel.timeout_marks) and check_channel(channel, now, timeout):
                    expired.append(channel)
        for channel in expired:
            if channel.open:
                log.warning(
                    "Consumer on channel %d has timed out waiting for delivery acknowledgement. "
                    "Timeout used: %d ms. This timeout value can be configured, see consumers doc "
                    "guide to learn more", channel.number, self.timeout_ms,
                )
                channel.sink.fail(timeout_error(channel.number, self.timeout_ms))
        self.timer = timers.call_later(self.interval, self.sweep)

    def stop(self) -> None:
        """Stop sweeping."""
        self.timer.cancel()
