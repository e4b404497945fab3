"""Publisher confirms on the wire: the one place they are batched, and the rules for when they go.

The broker core decides *when a publish is confirmable* (broker/channel.py: its sequence number, a
persistent message's wait for its fsync, a nack for a publish a queue refused) and tells the
channel's sink, :class:`~amqp_broker.protocol.channel.ChannelState`, through ``confirm`` and
``flush_confirms``. Those two sink methods are this module's (:class:`ChannelConfirms`, a base
class of ChannelState), and each connection has one :class:`ConfirmBatcher`, which holds the
channels with acks not yet written. The rules:

1. Acks are coalesced: a channel's acks within one read become one ``basic.ack`` (``multiple``
   when it covers more than one publish). The end of every read flushes them, after the deliveries
   that read's acks made room for (``FrameReader.receive_data``).
2. A nack goes out at once, after the acks before it, as RabbitMQ sends it: ``multiple`` and
   ``requeue`` set.
3. Held acks are flushed before anything that must follow them: a channel or connection error
   reply and the connection's close-ok (:meth:`ConfirmBatcher.flush`); a channel's close-ok
   (:meth:`ConfirmBatcher.close_channel`); a basic.return of the same channel (a return precedes
   the confirm of the same message) and a direct reply-to delivery (``flush_confirms``, called
   by the core); tx.commit-ok.
4. After a store commit releases the confirms of persistent messages, they are flushed at once
   (the server's after-commit hook calls :meth:`ConfirmBatcher.flush`), not at the publisher's
   next read, which may never come.
5. A channel closed by an error, or a connection that ended, writes no acks after its close:
   :meth:`ConfirmBatcher.discard` and :meth:`ConfirmBatcher.clear`.

The per-publish path (rule 1's registration, in ``confirm``) costs no call beyond the core's
``sink.confirm``: the channel registers itself in :attr:`ConfirmBatcher.pending` inline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .codec import write_basic_ack, write_basic_nack

if TYPE_CHECKING:  # pragma: no cover
    from .channel import ChannelState
    from .connection import Connection


class ConfirmBatcher:
    """The channels of one connection with coalesced acks to write; see the module docstring."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        # Channels whose acks since the last flush are not written yet (a dict for its order).
        self.pending: dict[ChannelConfirms, None] = {}

    def flush(self) -> None:
        """Write every channel's held acks, one basic.ack per channel (rules 1, 3 and 4)."""
        pending = self.pending
        if not pending:
            return
        self.pending = {}
        for channel in pending:
            channel.flush_confirms()

    def close_channel(self, channel: "ChannelState") -> None:
        """``channel`` is answering channel.close: its held acks go first, nothing after."""
        self.pending.pop(channel, None)
        channel.flush_confirms()

    def discard(self, channel: "ChannelState") -> None:
        """``channel`` closed with an error: acks it was told of since the last flush are dropped."""
        self.pending.pop(channel, None)

    def clear(self) -> None:
        """The connection ended: nothing more is written."""
        self.pending.clear()


class ChannelConfirms:
    """The publisher-confirm half of :class:`~amqp_broker.protocol.channel.ChannelState` (a base
    class of it): the DeliverySink's ``confirm`` and ``flush_confirms``. The state is the
    channel's (its ``__init__`` sets it): ``confirms``, the connection's batcher; ``confirm_upto``,
    the last sequence confirmed; ``confirm_sent``, the last one written."""

    __slots__ = ("conn", "number", "confirms", "confirm_upto", "confirm_sent")

    conn: "Connection"
    number: int
    confirms: ConfirmBatcher
    confirm_upto: int
    confirm_sent: int

    def confirm(self, sequence: int, ack: bool) -> None:
        """A publisher confirm: acks are coalesced until the end of the read, nacks go at once."""
        if ack:
            self.confirm_upto = sequence
            self.confirms.pending[self] = None
        else:
            self.flush_confirms()
            output = self.conn.output
            output.wake()
            # RabbitMQ's nack for a refused publish has multiple=true and requeue=true (its
            # coalescing sends every nack as "up to"; earlier confirms are already out).
            write_basic_nack(output.buf, self.number, sequence, True, True)
            self.confirm_sent = sequence
            self.confirm_upto = sequence

    def flush_confirms(self) -> None:
        """Send one basic.ack covering every confirm since the last one (multiple when > 1)."""
        upto = self.confirm_upto
        sent = self.confirm_sent
        if upto > sent:
            output = self.conn.output
            output.wake()
            write_basic_ack(output.buf, self.number, upto, upto - sent > 1)
            self.confirm_sent = upto
