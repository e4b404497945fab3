"""Node-wide counters that outlive what they count, for the query API (broker/admin/).

A channel keeps its own message counters and a queue its own; when one goes away its counts are
folded in here (or into its vhost's), so the totals RabbitMQ's global counters report never go
down while the node runs. Everything is a plain integer: the hot path only ever bumps fields of
the channel or queue at hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .queue import Queue

#: The message counters a channel keeps (Channel.counters), RabbitMQ's message_stats names first
#: (what the management API shows, vhost.MESSAGE_STATS), then ``routed`` (messages enqueued, one
#: per queue a publish reached) and ``publish_confirm`` (publishes on confirm-mode channels).
CHANNEL_COUNTERS = (
    "publish", "deliver_get", "ack", "confirm", "redeliver", "return_unroutable", "drop_unroutable",
    "routed", "publish_confirm",
)

#: The message counters a queue keeps, by the names of the queue's management message_stats.
QUEUE_COUNTERS = ("publish", "deliver_get", "ack", "redeliver")


def queue_counters(queue: "Queue") -> dict[str, int]:
    """A queue's message counters (QUEUE_COUNTERS names)."""
    return {
        "publish": queue.stat_published,
        "deliver_get": queue.stat_delivered,
        "ack": queue.stat_acked,
        "redeliver": queue.stat_redelivered,
    }


class NodeCounters:
    """Churn counters of the node and the message counters of deleted vhosts and queues.

    The Broker gives every vhost this one object (``VHost.counters``)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Every count back to zero (a fresh node's)."""
        self.connections_opened = 0
        self.connections_closed = 0
        self.channels_opened = 0
        self.channels_closed = 0
        # Strict-mode violations noted on any connection, by rule (amqp_broker.protocol.strict).
        self.strict_violations: dict[str, int] = {}
        # Channel counters (CHANNEL_COUNTERS) of the vhosts deleted since start.
        self.retired_channels: dict[str, int] = dict.fromkeys(CHANNEL_COUNTERS, 0)
        # Queue counters (QUEUE_COUNTERS) of deleted queues, by queue type name (classic...).
        self.retired_queues: dict[str, dict[str, int]] = {}

    def retire_queue(self, type_name: str, queue: "Queue") -> None:
        """Keep a deleted queue's counts under its type."""
        totals = self.retired_queues.setdefault(type_name, dict.fromkeys(QUEUE_COUNTERS, 0))
        for key, value in queue_counters(queue).items():
            totals[key] += value

    def retire_vhost_channels(self, retired: dict[str, int]) -> None:
        """Keep the channel counters a deleted vhost had gathered."""
        for key, value in retired.items():
            self.retired_channels[key] += value
