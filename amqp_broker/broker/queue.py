"""Queues and consumers: ready messages, round-robin dispatch with prefetch, requeue in place.

Dispatch is synchronous: a publish routed here hands the message to a consumer's channel in the
publisher's own task, so no task switch is paid per message (README.md, "Design", "Hot path
without task switches").
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final, Iterable

from ..compiled import mypyc_attr
from ..errors import ChannelError, access_refused, not_found, precondition_failed
from .arguments import setting
from .buffer import ClassicBuffer, PriorityBuffer
from .extensions import QueueExtensions, extensions_for
from .message import Message, QueueEntry

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel
    from .session import Session
    from .vhost import VHost


class Consumer:
    """A basic.consume subscription: one channel reading one queue."""

    __slots__ = (
        "tag",
        "channel",
        "queue",
        "no_ack",
        "exclusive",
        "prefetch",
        "unacked",
        "arguments",
        "priority",
    )

    def __init__(
        self,
        tag: str,
        channel: "Channel",
        queue: "Queue",
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
        arguments: dict,
    ):
        self.tag = tag
        self.channel = channel
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        # basic.qos(global=false) applies to consumers created after it (RabbitMQ's per-consumer
        # reading of the field), so the limit is captured here at consume time.
        self.prefetch = prefetch
        self.unacked = 0
        self.arguments = arguments
        # x-priority (validated as an integer by the channel): higher goes first (RabbitMQ 3.2+).
        self.priority = arguments.get("x-priority", 0) if arguments else 0

    def can_take(self) -> bool:
        """Whether one more message may be delivered now (flow, write buffer and prefetch)."""
        channel = self.channel
        # The channel is open and its socket not backed up (inlined: runs once per delivery).
        if not (channel.open and channel.sink.writable()):
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        limit = channel.global_prefetch
        return not limit or channel.consumer_unacked < limit

    def room(self) -> int:
        """How many more messages an acking consumer may be sent by prefetch (its own and the
        channel's), capped at DISPATCH_BATCH; the socket's room is the sink's ``headroom``."""
        channel = self.channel
        if not channel.open:
            return 0
        room = self.prefetch - self.unacked if self.prefetch else DISPATCH_BATCH
        limit = channel.global_prefetch
        if limit and limit - channel.consumer_unacked < room:
            room = limit - channel.consumer_unacked
        return room if room < DISPATCH_BATCH else DISPATCH_BATCH


# Deliveries handed over per buffer.take when a consumer has room for many (after a batch of acks):
# one dispatch step per batch instead of per message. A step takes bodies up to the sink's
# headroom (so it stops where a per-message writability check would), and at most this many bytes.
DISPATCH_BATCH: Final = 128
DISPATCH_BATCH_BYTES: Final = 256 * 1024


def describe_queue(name: str, vhost_name: str) -> str:
    """``queue 'name' in vhost '/'``: RabbitMQ's way of naming a queue in reply texts."""
    return f"queue '{name}' in vhost '{vhost_name}'"


def no_queue(name: str, vhost_name: str) -> ChannelError:
    """404 ``no queue 'name' in vhost '/'``, for a name that has no queue."""
    return not_found(f"no {describe_queue(name, vhost_name)}")


def make_buffer(arguments: dict) -> ClassicBuffer | PriorityBuffer:
    """The buffer a queue's arguments ask for: priority levels with x-max-priority > 0."""
    max_priority = setting(arguments, "x-max-priority")
    if max_priority is not None and max_priority > 0:
        return PriorityBuffer(max_priority)
    return ClassicBuffer()


# Subclassed by an interpreted module (stream.py): a compiled build must allow it.
@mypyc_attr(allow_interpreted_subclasses=True)
class Queue:
    """A queue: its ready messages (a buffer), consumers and bindings."""

    def __init__(
        self,
        vhost: "VHost",
        name: str,
        durable: bool = False,
        exclusive_owner: "Session | None" = None,
        auto_delete: bool = False,
        arguments: dict | None = None,
    ):
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = arguments or {}
        # Any: extensions and streams put buffers of their own here (ExtBuffer, StreamLog), and
        # the compiled build checks annotations at run time.
        self.buffer: Any = make_buffer(self.arguments)
        self.consumers: deque[Consumer] = deque()
        # Consumers with a non-zero x-priority; while zero, dispatch is plain round-robin.
        self.prioritised = 0
        # x-single-active-consumer: only ``consumers[0]`` (the first registered) gets messages; the
        # others wait here in registration order. Dispatch needs no check: it sees one consumer.
        self.single_active = setting(self.arguments, "x-single-active-consumer") is True
        self.waiting_consumers: list[Consumer] = []
        self.had_consumers = False
        self.deleted = False
        self._seq = 0
        # Exchanges holding a binding to this queue, so a delete can remove them; kept by the vhost.
        self.bound_from: dict[Any, None] = {}
        # Set for durable queues when the broker has a store: persistent messages are written there.
        self.persistence: Any = None
        self.store_id: int | None = None
        # TTL, x-expires, length limits, dead-lettering, quorum semantics (extensions.py); None for
        # a queue with none of those arguments, so the hot path pays a single test.
        self.ext: QueueExtensions | None = extensions_for(self)
        # Messages enqueued, handed out (deliveries and basic.get), acked and redelivered, for the
        # management API and the global counters (counters.QUEUE_COUNTERS).
        self.stat_published = 0
        self.stat_delivered = 0
        self.stat_acked = 0
        self.stat_redelivered = 0

    # -- state ------------------------------------------------------------------------------------

    @property
    def message_count(self) -> int:
        """Ready messages (not counting unacknowledged ones), as queue.declare-ok reports."""
        return len(self.buffer)

    @property
    def consumer_count(self) -> int:
        """Consumers (with single active consumer, the waiting ones count too, as in RabbitMQ)."""
        return len(self.consumers) + len(self.waiting_consumers)

    def all_consumers(self) -> list[Consumer]:
        """Every consumer, active ones first."""
        return [*self.consumers, *self.waiting_consumers]

    @property
    def exclusive(self) -> bool:
        """True when declared exclusive (owned by one connection)."""
        return self.exclusive_owner is not None

    def describe(self) -> str:
        """``queue 'name' in vhost '/'``: RabbitMQ's way of naming a queue in reply texts."""
        return describe_queue(self.name, self.vhost.name)

    # -- messages ---------------------------------------------------------------------------------

    def publish(self, message: Message) -> bool:
        """Append a routed message and hand it to a consumer if one can take it.

        Returns False when the queue refused it (x-overflow reject-publish: the publisher is
        nacked)."""
        ext = self.ext
        if ext is None and message.expiration is not None:
            ext = self.ext = QueueExtensions(self)  # a per-message TTL needs expiry checks
        if ext is not None:
            admitted = ext.admit(message)
            if admitted is None:
                return False
            message = admitted
        self._seq += 1
        self.stat_published += 1
        consumers = self.consumers
        buffer = self.buffer
        if (ext is None and len(consumers) == 1 and not self.prioritised and not buffer
                and not buffer.paging):
            # The common 1:1 case: nothing waiting, one consumer with room. Hand the message over
            # directly, skipping the buffer; a no-ack delivery of a message that is not stored
            # needs no queue entry at all.
            consumer = consumers[0]
            persist = self.persistence is not None and message.delivery_mode == 2
            if consumer.no_ack and not persist:
                # Consumer.can_take inlined for the no-ack case; nothing to track, so no entry.
                channel = consumer.channel
                if channel.open and channel.sink.writable():
                    self.stat_delivered += 1
                    channel.next_delivery_tag += 1
                    channel.sink.deliver(consumer.tag, channel.next_delivery_tag, False, message)
                    return True
            elif consumer.can_take():
                entry = QueueEntry(message, self, self._seq)
                if persist:
                    self.persistence.store_message(self, entry)
                consumer.channel.deliver(consumer, entry)
                return True
        entry = QueueEntry(message, self, self._seq)
        if self.persistence is not None and message.delivery_mode == 2:
            self.persistence.store_message(self, entry)
        self.buffer.append(entry)
        if consumers:
            first = consumers[0]
            # A lone consumer at its prefetch limit cannot take it (the steady state of a backlog
            # with acking consumers): no dispatch to try; its next ack dispatches.
            if not (len(consumers) == 1 and first.prefetch and first.unacked >= first.prefetch):
                self.dispatch()
        if ext is not None:
            ext.published(entry)
        return True

    def skip_to(self, seq: int) -> None:
        """New messages get sequence numbers above ``seq`` (recovered messages hold those below)."""
        self._seq = max(self._seq, seq)

    def restore_entry(self, message: Message, seq: int, redelivered: bool) -> None:
        """Put back a message read from the store at start-up (in sequence order)."""
        entry = QueueEntry(message, self, seq)
        entry.stored = True
        entry.redelivered = redelivered
        self._seq = max(self._seq, seq)
        self.buffer.append(entry)

    def get(self) -> QueueEntry | None:
        """basic.get: take the next ready entry, or None when empty."""
        if self.ext is not None:
            self.ext.touch()  # basic.get counts as use for x-expires
        buffer = self.buffer
        return buffer.pop() if buffer else None  # the truth test drops expired heads first

    def drop(self, entry: QueueEntry, reason: str | None = None) -> None:
        """The entry leaves this queue for good.

        ``reason`` is None when it was acknowledged (or delivered with no_ack); otherwise it is
        RabbitMQ's dead-letter reason: ``rejected``, ``expired``, ``maxlen`` or ``delivery_limit``.
        Every exit of a message goes through here, so persistence and dead-lettering hook in once.
        """
        if entry.stored:
            self.vhost.persistence.remove_message(self, entry)
        if reason is not None and self.ext is not None:
            self.ext.dropped(entry, reason)

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Put entries back at their original positions, flagged redelivered, then dispatch."""
        if self.deleted:
            return
        ext = self.ext
        if ext is not None:
            entries = ext.requeueing(entries)
        buffer = self.buffer
        for entry in entries:
            if entry.stored and not entry.redelivered:
                self.vhost.persistence.mark_redelivered(self, entry)
            entry.redelivered = True
            entry.consumer = None
            buffer.requeue(entry)
        if ext is not None:
            ext.requeued()
        if self.consumers:
            self.dispatch()

    def dispatch(self) -> None:
        """Deliver ready messages round-robin to consumers that have room."""
        consumers = self.consumers
        buffer = self.buffer
        if len(consumers) == 1 and not self.prioritised and self.ext is None and not consumers[0].no_ack:
            # One acking consumer (the common worker set-up): hand over its free prefetch in batches.
            consumer = consumers[0]
            channel = consumer.channel
            sink = channel.sink
            while buffer:
                room = consumer.room()
                if room <= 0:
                    return
                headroom = sink.headroom()
                if headroom <= 0:
                    return
                if headroom > DISPATCH_BATCH_BYTES:
                    headroom = DISPATCH_BATCH_BYTES
                channel.deliver_many(consumer, buffer.take(room, headroom))
            return
        while buffer and consumers:
            if self.prioritised:
                chosen = self._next_by_priority()
                if chosen is None:
                    return
                consumer = chosen
            elif len(consumers) == 1:
                consumer = consumers[0]
                if not consumer.can_take():
                    return
            else:
                for _ in range(len(consumers)):
                    consumer = consumers[0]
                    consumers.rotate(-1)
                    if consumer.can_take():
                        break
                else:
                    return
            entry = buffer.pop()
            if entry is None:
                return  # defensive: a buffer that said it had messages but had none
            consumer.channel.deliver(consumer, entry)

    def _next_by_priority(self) -> Consumer | None:
        """The first consumer (in round-robin order) of the highest priority that can take a
        message, moved to the back; lower priorities only get messages while higher ones are full."""
        consumers = self.consumers
        best = None
        best_index = 0
        for index, consumer in enumerate(consumers):
            if (best is None or consumer.priority > best.priority) and consumer.can_take():
                best, best_index = consumer, index
        if best is not None:
            del consumers[best_index]
            consumers.append(best)
        return best

    def purge(self) -> int:
        """Drop every ready message; unacknowledged ones are untouched (as RabbitMQ)."""
        count = len(self.buffer)
        for entry in self.buffer.clear():
            if entry.stored:
                self.drop(entry)
        return count

    # -- consumers --------------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        """Attach a consumer; exclusive consumers lock the queue (403 as RabbitMQ)."""
        if self.single_active:
            # RabbitMQ 3.10 refuses exclusive consumers on such a queue even when it has no
            # consumer (exclusive_consume_unavailable, same text as a queue in exclusive use).
            if consumer.exclusive:
                raise access_refused(f"{self.describe()} in exclusive use")
            if self.consumers:
                self.waiting_consumers.append(consumer)
                return
        if consumer.exclusive and self.consumers:
            raise access_refused(f"{self.describe()} in exclusive use")
        if self.consumers and self.consumers[0].exclusive:
            raise access_refused(f"{self.describe()} in exclusive use")
        self.consumers.append(consumer)
        self.had_consumers = True
        if consumer.priority:
            self.prioritised += 1

    def remove_consumer(self, consumer: Consumer) -> None:
        """Detach a consumer; an auto-delete queue goes away with its last consumer."""
        try:
            self.consumers.remove(consumer)
        except ValueError:
            if consumer in self.waiting_consumers:
                self.waiting_consumers.remove(consumer)
            return
        if consumer.priority:
            self.prioritised -= 1
        if self.waiting_consumers and not self.deleted:
            self._activate_next()
        if self.auto_delete and not self.consumers and not self.deleted:
            self.vhost.delete_queue(self)
        elif self.ext is not None:
            self.ext.consumers_changed()  # x-expires counts from the last consumer leaving

    def _activate_next(self) -> None:
        """The single active consumer went: the waiting consumer of the highest x-priority, first
        registered among equals, takes over (RabbitMQ 3.10: priorities do not matter for which
        consumer is active at first, but pick its successor), and gets the ready messages."""
        waiting = self.waiting_consumers
        best = 0
        for index in range(1, len(waiting)):
            if waiting[index].priority > waiting[best].priority:
                best = index
        consumer = waiting.pop(best)
        self.consumers.append(consumer)
        if consumer.priority:
            self.prioritised += 1
        if self.buffer:
            self.dispatch()

    def check_delete(self, if_unused: bool, if_empty: bool) -> None:
        """Raise 406 when queue.delete's if-unused/if-empty conditions do not hold."""
        # if-empty is checked first, as rabbit_amqqueue_process does (both violated: "not empty").
        if if_empty and self.message_count:
            raise precondition_failed(f"{self.describe()} not empty")
        if if_unused and self.consumers:
            raise precondition_failed(f"{self.describe()} in use")
