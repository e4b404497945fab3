"""A client connection as the broker core sees it: who, which vhost, its channels and queues."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from .limits import check_channel

if TYPE_CHECKING:  # pragma: no cover
    from .access import Grants
    from .broker import Broker
    from .channel import Channel
    from .queue import Queue
    from .sink import DeliverySink
    from .vhost import VHost


class Session:
    """Broker-side state of one open AMQP connection (after connection.open)."""

    def __init__(self, broker: "Broker", user: str, vhost: "VHost", client_properties: dict, peer: str):
        self.broker = broker
        self.user = user
        self.vhost = vhost
        # The user's permissions on the vhost; the broker replaces them when they change.
        self.grants: "Grants" = broker.grants_for(user, vhost.name)
        # RabbitMQ's impersonator tag: may publish with another user's user_id property.
        record = broker.users.users.get(user)
        self.impersonator = record is not None and "impersonator" in record.tags
        self.client_properties = client_properties
        self.peer = peer
        # RabbitMQ's connection name ("peer -> local"), when the transport knows the local end.
        self.name = peer
        # Milliseconds since the epoch, as the management API reports connected_at.
        self.connected_at = int(time.time() * 1000)
        # What the protocol layer negotiated (frame_max, channel_max, timeout, auth_mechanism...),
        # for the management API; the core never reads it.
        self.details: dict[str, Any] = {}
        # Closes the connection with 320 CONNECTION_FORCED and the given text: set by the layer
        # that owns the transport, so an operator can close a connection (admin.close_connection).
        self.closer: Callable[[str], None] | None = None
        capabilities = client_properties.get("capabilities") or {}
        # Only clients that announce consumer_cancel_notify get a server-sent basic.cancel
        # (RabbitMQ does the same; older clients would treat it as a protocol error).
        self.consumer_cancel_notify = bool(capabilities.get("consumer_cancel_notify"))
        self.channels: dict[int, "Channel"] = {}
        self.exclusive_queues: set["Queue"] = set()
        self.closed = False
        # While not None, acks record the queues they freed room on here instead of dispatching
        # at once; the connection calls :meth:`dispatch_owed` after the batch of frames it read
        # (and before any other method), so a read of N acks costs one dispatch of N messages.
        self.owed_dispatch: dict[Queue, None] | None = None

    def open_channel(self, number: int, sink: "DeliverySink") -> "Channel":
        """Create the core channel ``number`` delivering through ``sink``; 530 NOT_ALLOWED
        beyond the user's max-channels."""
        from .channel import Channel

        check_channel(self.broker, self.user)

        channel = Channel(self, number, sink)
        self.channels[number] = channel
        self.broker.counters.channels_opened += 1
        return channel

    def dispatch_owed(self) -> None:
        """Dispatch the queues acks freed room on since the last call."""
        owed = self.owed_dispatch
        if owed:
            self.owed_dispatch = {}
            for queue in owed:
                if queue.consumers and not queue.deleted:
                    queue.dispatch()

    def close(self) -> None:
        """The connection is gone: close its channels, then delete its exclusive queues."""
        if self.closed:
            return
        self.closed = True
        for channel in list(self.channels.values()):
            channel.close()
        self.channels.clear()
        for queue in list(self.exclusive_queues):
            self.vhost.delete_queue(queue)
        self.exclusive_queues.clear()
        self.broker.sessions.discard(self)
        self.broker.counters.connections_closed += 1
