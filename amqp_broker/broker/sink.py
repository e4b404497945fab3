"""What the core asks of the connection a channel belongs to: the *sink* it delivers through.

The core never writes frames. A :class:`~amqp_broker.broker.channel.Channel` (and the queues and
timers acting on its behalf) calls these methods of the sink the protocol layer handed to
:meth:`~amqp_broker.broker.session.Session.open_channel`; the protocol layer's
:class:`~amqp_broker.protocol.channel.ChannelState` implements them by writing frames into its
connection's output. This is the whole boundary in that direction: a method the core needs from
a connection is added here first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from ..errors import AMQPError
    from .message import Message


@runtime_checkable
class DeliverySink(Protocol):
    """The connection side of one channel, as the core sees it."""

    # Implementations keep their own __slots__; the protocol must not give them a __dict__.
    __slots__ = ()

    def deliver(self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: "Message") -> None:
        """basic.deliver + content to the consumer ``consumer_tag``."""

    def basic_return(self, reply_code: int, reply_text: str, message: "Message") -> None:
        """basic.return + content: a mandatory message no queue took."""

    def confirm(self, sequence: int, ack: bool) -> None:
        """A publisher confirm (ack) or refusal (nack) of publish ``sequence``; acks may be
        coalesced until :meth:`flush_confirms`, a nack goes out at once."""

    def flush_confirms(self) -> None:
        """Write the confirms held back for coalescing now (before something that must follow them)."""

    def cancel_notify(self, consumer_tag: str) -> None:
        """A server-sent basic.cancel: the consumer's queue went away."""

    def writable(self) -> bool:
        """False while the connection's output is backed up: deliveries must wait for
        :meth:`~amqp_broker.broker.channel.Channel.resume`."""

    def headroom(self) -> int:
        """Body bytes deliveries may still add before the output is backed up; <= 0 when full."""

    def fail(self, error: "AMQPError") -> None:
        """Close the channel with ``error``: the core's own decision (a consumer timeout), not an
        answer to a method."""
