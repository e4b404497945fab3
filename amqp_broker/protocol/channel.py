"""Channels on the protocol side: content assembly state, the delivery sink, and the handlers of
every channel-class method (channel, exchange, queue, basic, confirm, tx).

:class:`ChannelState` is the :class:`~amqp_broker.broker.sink.DeliverySink` the core's
:class:`amqp_broker.broker.channel.Channel` delivers through: it writes basic.deliver/return/ack/
nack/cancel frames straight into the connection's output buffer.
The handlers decode nothing themselves (pamqp has done it): each makes one call into the core,
which owns what the method means (RabbitMQ's shortcuts, defaults and checks), and encodes the
answer. They raise the core's errors unchanged; :meth:`amqp_broker.protocol.connection.Connection._fail`
turns those into closes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Final

from pamqp import commands

from ..broker.message import Message
from ..broker.replyto import REPLY_QUEUE
from ..broker.sink import DeliverySink
from ..errors import CHANNEL_ERROR, NOT_IMPLEMENTED, AMQPError, ConnectionLevelError
from . import codec
from .codec import DeliverHead, write_deliver
from .confirms import ChannelConfirms
from .content import ContentAssembly
from .output import LARGE_BODY, WRITE_HIGH_WATER

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection

EMPTY_PROPERTIES: Final = b"\x00\x00"
# Message.direct_reply_hint, peeked from raw properties before anything is decoded: the reply-to
# presence bit (spec 4.2.6.1: reply-to is basic's 7th property, flag bit 9, i.e. 0x02 of the
# first flag octet), then a substring search. A publish without reply_to pays one byte test.
REPLY_TO_FLAG: Final = 0x02
DIRECT_REPLY_MARKER: Final = REPLY_QUEUE.encode("ascii")


class ChannelState(ChannelConfirms):
    """Protocol-side state of one channel: content assembly and the sink the core delivers to."""

    # conn, number and the confirm state are slots of ChannelConfirms.
    __slots__ = ("core", "closing", "content", "last_deliver")

    def __init__(self, conn: "Connection", number: int):
        self.conn = conn
        self.number = number
        self.core: Any = None
        # True after we sent channel.close: frames are dropped until close-ok (spec 2.2.4).
        self.closing = False
        # The publish whose content header and body frames are arriving; None while the channel
        # expects a method.
        self.content: ContentAssembly | None = None
        # What the last basic.deliver on this channel repeats with the next (see codec.DeliverHead).
        self.last_deliver = DeliverHead()
        # Publisher confirms: the connection's batcher this channel registers with when it has
        # acks to write, the last sequence confirmed and the last one written (see .confirms).
        self.confirms = conn.confirms
        self.confirm_upto = 0
        self.confirm_sent = 0

    # -- broker.sink.DeliverySink: what the core calls --------------------------------------------

    def writable(self) -> bool:
        """Whether deliveries may still be written (the connection's buffer is not backed up)."""
        conn = self.conn
        output = conn.output
        if len(output.buf) + output.pieces_bytes < WRITE_HIGH_WATER:
            return True
        conn.delivery_blocked = True
        return False

    def headroom(self) -> int:
        """Body bytes deliveries may still add before the connection's buffer is backed up (at
        most one message more is written past it, as with :meth:`writable`); <= 0 when full."""
        conn = self.conn
        output = conn.output
        room = WRITE_HIGH_WATER - len(output.buf) - output.pieces_bytes
        if room <= 0:
            conn.delivery_blocked = True
        return room

    def deliver(self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message) -> None:
        """basic.deliver + content, written straight into the connection's output buffer."""
        conn = self.conn
        output = conn.output
        out = output.buf
        if not out:
            output.on_output()
        body = message.body
        if len(body) >= LARGE_BODY and len(body) <= conn.frame_max - 8:
            # A large body is not copied into the output buffer (growing a bytearray by 64 KiB
            # costs ~37 us of realloc copies): the frames before it, the body itself and what
            # follows go out as separate pieces of one sendmsg, in order.
            codec.write_deliver_head(
                out, self.number, consumer_tag, delivery_tag, redelivered, message.exchange,
                message.routing_key, message.properties_raw, len(body),
            )
            output.add_piece(body)
            return
        write_deliver(
            out,
            self.number,
            consumer_tag,
            delivery_tag,
            redelivered,
            message.exchange,
            message.routing_key,
            message.properties_raw,
            message.body,
            conn.frame_max,
            self.last_deliver,
        )

    def basic_return(self, reply_code: int, reply_text: str, message: Message) -> None:
        """basic.return + content for an unroutable mandatory message."""
        conn = self.conn
        self.flush_confirms()  # a return precedes the confirm of the same message (RabbitMQ)
        output = conn.output
        output.wake()
        codec.write_return(
            output.buf,
            self.number,
            reply_code,
            reply_text,
            message.exchange,
            message.routing_key,
            message.properties_raw,
            message.body,
            conn.frame_max,
        )

    def cancel_notify(self, consumer_tag: str) -> None:
        """Server-sent basic.cancel: the consumer's queue went away."""
        output = self.conn.output
        output.wake()
        codec.write_cancel(output.buf, self.number, consumer_tag, True)

    def fail(self, error: AMQPError) -> None:
        """The core closes this channel on its own (a consumer timeout): channel.close with the
        error and no class or method id, as RabbitMQ sends it."""
        conn = self.conn
        if not self.closing and conn.channels.get(self.number) is self and conn.session is not None:
            conn._fail(error, self.number, 0, 0)


if TYPE_CHECKING:  # pragma: no cover
    # The declaration that ChannelState is the core's sink (tests/unit/test_protocol.py checks it
    # at run time too).
    _SINK_IMPLEMENTATION: type[DeliverySink] = ChannelState


# -- method handlers: (connection, channel, decoded method) ------------------------------------


def channel_open(conn: "Connection", channel: ChannelState, method: Any) -> None:
    raise ConnectionLevelError(CHANNEL_ERROR, "second 'channel.open' seen")


def channel_close(conn: "Connection", channel: ChannelState, method: Any) -> None:
    # Confirms still held back for coalescing must precede close-ok: nothing may follow it.
    conn.confirms.close_channel(channel)
    channel.core.close()
    del conn.channels[channel.number]
    conn.send_method(channel.number, commands.Channel.CloseOk())


def channel_flow(conn: "Connection", channel: ChannelState, method: Any) -> None:
    if not method.active:
        # RabbitMQ 3.3+ no longer lets a client stop deliveries with channel.flow.
        raise ConnectionLevelError(NOT_IMPLEMENTED, "active=false")
    conn.send_method(channel.number, commands.Channel.FlowOk(active=True))


def exchange_declare(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.exchange_declare(
        m.exchange, m.exchange_type, m.passive, m.durable, m.auto_delete, m.internal, m.arguments or {}
    )
    if not m.nowait:
        conn.send_method(channel.number, commands.Exchange.DeclareOk())


def exchange_delete(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.exchange_delete(m.exchange, m.if_unused)
    if not m.nowait:
        conn.send_method(channel.number, commands.Exchange.DeleteOk())


# The handlers below share one shape by design: decode (pamqp did), one core call, encode the
# reply unless nowait. What differs is the call and the reply, which a table would only hide.
def exchange_bind(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.exchange_bind(m.destination, m.source, m.routing_key, m.arguments or {})
    if not m.nowait:
        conn.send_method(channel.number, commands.Exchange.BindOk())


def exchange_unbind(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.exchange_unbind(m.destination, m.source, m.routing_key, m.arguments or {})
    if not m.nowait:
        conn.send_method(channel.number, commands.Exchange.UnbindOk())


def queue_declare(conn: "Connection", channel: ChannelState, m: Any) -> None:
    name, message_count, consumer_count = channel.core.queue_declare(
        m.queue, m.passive, m.durable, m.exclusive, m.auto_delete, m.arguments or {}
    )
    if not m.nowait:
        conn.wake()
        codec.write_queue_declare_ok(conn.out, channel.number, name, message_count, consumer_count)


def queue_bind(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.queue_bind(m.queue, m.exchange, m.routing_key, m.arguments or {})
    if not m.nowait:
        conn.send_method(channel.number, commands.Queue.BindOk())


def queue_unbind(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.queue_unbind(m.queue, m.exchange, m.routing_key, m.arguments or {})
    conn.send_method(channel.number, commands.Queue.UnbindOk())


def queue_purge(conn: "Connection", channel: ChannelState, m: Any) -> None:
    count = channel.core.queue_purge(m.queue)
    if not m.nowait:
        conn.send_method(channel.number, commands.Queue.PurgeOk(message_count=count))


def queue_delete(conn: "Connection", channel: ChannelState, m: Any) -> None:
    count, cancelled = channel.core.queue_delete(m.queue, m.if_unused, m.if_empty)
    if not m.nowait:
        conn.send_method(channel.number, commands.Queue.DeleteOk(message_count=count))
    for tag in cancelled:
        channel.cancel_notify(tag)


def basic_qos(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.basic_qos(m.prefetch_size, m.prefetch_count, m.global_)
    conn.send_method(channel.number, commands.Basic.QosOk())


def basic_consume(conn: "Connection", channel: ChannelState, m: Any) -> None:
    tag = channel.core.basic_consume(m.queue, m.consumer_tag, m.no_ack, m.exclusive, m.arguments or {})
    if not m.nowait:
        conn.wake()
        codec.write_consume_ok(conn.out, channel.number, tag)
    channel.core.start_consumer(tag)


def basic_cancel(conn: "Connection", channel: ChannelState, m: Any) -> None:
    # cancel-ok first: cancelling a single active consumer hands the ready messages to the next
    # one, possibly on this channel, and those deliveries must not overtake the ok (RabbitMQ's queue
    # process sends the ok before it delivers anything else).
    if not m.nowait:
        conn.wake()
        codec.write_cancel_ok(conn.out, channel.number, m.consumer_tag)
    channel.core.basic_cancel(m.consumer_tag)


def basic_get(conn: "Connection", channel: ChannelState, m: Any) -> None:
    got = channel.core.basic_get(m.queue, m.no_ack)
    if got is None:
        conn.send_method(channel.number, commands.Basic.GetEmpty())
        return
    tag, entry, remaining = got
    message = entry.message
    conn.wake()
    codec.write_get_ok(
        conn.out, channel.number, tag, entry.redelivered, message.exchange, message.routing_key,
        remaining, message.properties_raw, message.body, conn.frame_max,
    )


def basic_ack(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.basic_ack(m.delivery_tag, m.multiple)


def basic_nack(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.basic_nack(m.delivery_tag, m.multiple, m.requeue)


def basic_reject(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.basic_reject(m.delivery_tag, m.requeue)


def basic_recover(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.basic_recover(m.requeue)
    conn.send_method(channel.number, commands.Basic.RecoverOk())


def basic_recover_async(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.basic_recover(m.requeue)


def basic_publish_slow(conn: "Connection", channel: ChannelState, m: Any) -> None:
    # Only reached when the fast path was skipped (it never is for a well-formed open channel);
    # kept so that the handler table covers every client method.
    channel.content = ContentAssembly((m.exchange, m.routing_key, m.mandatory, m.immediate))


def confirm_select(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.confirm_select()
    if not m.nowait:
        conn.send_method(channel.number, commands.Confirm.SelectOk())


def tx_select(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.tx_select()
    conn.send_method(channel.number, commands.Tx.SelectOk())


def tx_commit(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.tx_commit()
    conn.confirms.flush()
    conn.send_method(channel.number, commands.Tx.CommitOk())


def tx_rollback(conn: "Connection", channel: ChannelState, m: Any) -> None:
    channel.core.tx_rollback()
    conn.send_method(channel.number, commands.Tx.RollbackOk())


CHANNEL_HANDLERS: Final[dict[type, Callable[["Connection", ChannelState, Any], None]]] = {
    commands.Channel.Open: channel_open,
    commands.Channel.Close: channel_close,
    commands.Channel.Flow: channel_flow,
    commands.Exchange.Declare: exchange_declare,
    commands.Exchange.Delete: exchange_delete,
    commands.Exchange.Bind: exchange_bind,
    commands.Exchange.Unbind: exchange_unbind,
    commands.Queue.Declare: queue_declare,
    commands.Queue.Bind: queue_bind,
    commands.Queue.Unbind: queue_unbind,
    commands.Queue.Purge: queue_purge,
    commands.Queue.Delete: queue_delete,
    commands.Basic.Qos: basic_qos,
    commands.Basic.Consume: basic_consume,
    commands.Basic.Cancel: basic_cancel,
    commands.Basic.Publish: basic_publish_slow,
    commands.Basic.Get: basic_get,
    commands.Basic.Ack: basic_ack,
    commands.Basic.Nack: basic_nack,
    commands.Basic.Reject: basic_reject,
    commands.Basic.Recover: basic_recover,
    commands.Basic.RecoverAsync: basic_recover_async,
    commands.Confirm.Select: confirm_select,
    commands.Tx.Select: tx_select,
    commands.Tx.Commit: tx_commit,
    commands.Tx.Rollback: tx_rollback,
}
# channel.close-ok and channel.flow-ok are left out: a close-ok for a close we sent is taken
# before this table, and we never send channel.flow, so any other is a 503 "unimplemented
# method", as RabbitMQ 3.10 answers it.
# Client methods we know but do not serve (RabbitMQ answers them with 540 too).
UNSUPPORTED: Final[frozenset[type]] = frozenset()
