"""A channel's broker-side state and the basic/queue/exchange/tx/confirm methods on it.

The channel never sees frames: it delivers through a *sink* supplied by the protocol layer, a
:class:`~amqp_broker.broker.sink.DeliverySink` (deliver, basic_return, confirm, flush_confirms,
cancel_notify, writable, headroom, fail).
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import (
    NO_ROUTE,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    ConnectionLevelError,
    access_refused,
    not_found,
    precondition_failed,
)
from . import replyto
from .arguments import not_an_integer
from .expiry import parse_expiration
from .message import Message, QueueEntry
from .queue import Consumer, Queue
from .replyto import REPLY_QUEUE, ReplyConsumer
from .sink import DeliverySink
from .vhost import generate_name

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session


class Channel:
    """Consumers, unacked deliveries, qos, confirm and tx state of one AMQP channel."""

    def __init__(self, session: "Session", number: int, sink: DeliverySink):
        self.session = session
        self.vhost = session.vhost
        self.number = number
        self.sink = sink
        self.open = True
        self.consumers: dict[str, Consumer] = {}
        # delivery_tag -> entry; tags only grow, so dict order is tag order (needed by multiple).
        self.unacked: dict[int, QueueEntry] = {}
        self.next_delivery_tag = 0
        self.prefetch_count = 0
        self.global_prefetch = 0
        # Unacked deliveries to consumers (not basic.get ones, not acks staged in a transaction):
        # what basic.qos(global=true) limits, as RabbitMQ's limiter counts.
        self.consumer_unacked = 0
        self.confirm_mode = False
        # Set by _route when a queue refused the message being published (x-overflow): nack it.
        self.publish_rejected = False
        self.publish_seq = 0
        # Confirms waiting (or behind one waiting) for the disk: [sequence, batch, ok].
        self.confirm_backlog: deque[list] = deque()
        self._awaited_batch = 0
        self.tx: list[tuple] | None = None
        # The queue last declared on this channel (queue.declare, passive or not): RabbitMQ reads an
        # empty queue name in bind/unbind/purge/delete/consume/get as this one.
        self.most_recent_queue = ""
        # Direct reply-to: this channel's reply consumer; the live reply names (the broker-wide
        # registry's dict, which never changes identity), so that basic_publish tests a routing key
        # with one lookup; True while replyto.publish publishes a reply through basic_publish.
        self.reply_consumer: ReplyConsumer | None = None
        self.reply_consumers = self.vhost.replies.consumers
        self.replying = False
        # While this channel's own queue.delete runs, the server-sent basic.cancel of its consumers
        # wait here for the delete-ok (RabbitMQ's order on the deleting channel; other channels get
        # theirs first).
        self.deferred_cancels: list[str] | None = None
        # Consumer timeout: (time, highest delivery tag then) checkpoints; see consumer_timeout.py.
        self.timeout_marks: deque[tuple[float, int]] = deque()
        # Message counters for the management API (broker/admin/). Plain integers bumped in
        # place: deliveries are counted by next_delivery_tag and confirms by publish_seq already.
        self.stat_published = 0
        self.stat_acked = 0
        self.stat_redelivered = 0
        self.stat_unroutable = 0
        self.stat_returned = 0
        # Queues published messages were enqueued on (one per queue), and confirms sent as nacks.
        self.stat_routed = 0
        self.stat_nacked = 0
        # Exchanges this channel may publish to with no further check (write allowed, no topic
        # permission on them): the publish path's whole access control is one lookup here. The
        # broker empties it when the user's permissions change.
        self.may_publish: dict[str, None] = {}

    def message_stats(self) -> dict[str, int]:
        """This channel's message counters, by the names of RabbitMQ's message_stats."""
        return {
            "publish": self.stat_published,
            "deliver_get": self.next_delivery_tag,
            "ack": self.stat_acked,
            # Confirms sent: confirm-mode publishes but those still waiting and the nacked ones.
            "confirm": max(self.publish_seq - len(self.confirm_backlog) - self.stat_nacked, 0),
            "redeliver": self.stat_redelivered,
            "return_unroutable": self.stat_returned,
            "drop_unroutable": self.stat_unroutable - self.stat_returned,
        }

    def counters(self) -> dict[str, int]:
        """:meth:`message_stats` plus the counters only RabbitMQ's global ones report
        (counters.CHANNEL_COUNTERS)."""
        stats = self.message_stats()
        stats["routed"] = self.stat_routed
        stats["publish_confirm"] = self.publish_seq
        return stats

    def queue_name(self, name: str) -> str:
        """``name``, or for '' the channel's most recently declared queue (RabbitMQ's shortcut)."""
        if name:
            return name
        if not self.most_recent_queue:
            raise not_found("no previously declared queue")
        return self.most_recent_queue

    def _binding_ends(self, queue_name: str, routing_key: str) -> tuple[str, str]:
        """The queue and routing key queue.bind/unbind name: an empty queue is the most recent
        one, and then an empty key is that queue's name too (RabbitMQ's shortcut)."""
        name = self.queue_name(queue_name)
        return name, routing_key if queue_name or routing_key else name

    # -- exchange and queue ---------------------------------------------------------------------

    def _check_binding(self, kind: str, destination: str, source: str, routing_key: str) -> None:
        """rabbit_channel:binding_action's checks, before anything is looked up: write on the
        destination, neither end the default exchange, read on the source, and the source's
        topic permission on the routing key when it is an existing topic exchange."""
        grants = self.session.grants
        grants.write(kind, destination)
        if source == "" or (kind == "exchange" and destination == ""):
            raise access_refused("operation not permitted on the default exchange")
        grants.read("exchange", source)
        if not grants.topic_free(source):
            exchange = self.vhost.exchanges.get(source)
            if exchange is not None:
                grants.check_topic(False, exchange, routing_key)

    def exchange_declare(
        self, name: str, type_name: str, passive: bool, durable: bool, auto_delete: bool,
        internal: bool, arguments: dict,
    ) -> None:
        """exchange.declare (configure on the exchange; a passive one needs no permission)."""
        self.vhost.declare_exchange(
            name, type_name, passive, durable, auto_delete, internal, arguments, self.session.grants)

    def exchange_delete(self, name: str, if_unused: bool) -> None:
        """exchange.delete: configure on the exchange, after the default and amq.* names are
        refused (rabbit_channel's order)."""
        if name and not name.startswith("amq."):
            self.session.grants.configure("exchange", name)
        self.vhost.delete_exchange(name, if_unused)

    def exchange_bind(self, destination: str, source: str, routing_key: str, arguments: dict) -> None:
        """exchange.bind (404 for a missing end)."""
        self._check_binding("exchange", destination, source, routing_key)
        vhost = self.vhost
        vhost.bind_exchange(vhost.get_exchange(destination), vhost.get_exchange(source), routing_key, arguments)

    def exchange_unbind(self, destination: str, source: str, routing_key: str, arguments: dict) -> None:
        """exchange.unbind: a missing end or binding is fine (RabbitMQ answers unbind-ok)."""
        self._check_binding("exchange", destination, source, routing_key)
        vhost = self.vhost
        destination_exchange = vhost.exchanges.get(destination)
        source_exchange = vhost.exchanges.get(source)
        if destination_exchange is not None and source_exchange is not None:
            vhost.unbind_exchange(destination_exchange, source_exchange, routing_key, arguments)

    def queue_declare(
        self, name: str, passive: bool, durable: bool, exclusive: bool, auto_delete: bool, arguments: dict
    ) -> tuple[str, int, int]:
        """queue.declare: the queue's name, message count and consumer count for declare-ok. The
        queue becomes the channel's most recent one, even when only checked (passive)."""
        if name.startswith(REPLY_QUEUE):
            # Direct reply-to's pseudo-queue, passive or not: 0 messages, 1 consumer (or 404).
            replyto.declare(self, name)
            self.most_recent_queue = name
            return name, 0, 1
        queue = self.vhost.declare_queue(
            self.session, name, passive, durable, exclusive, auto_delete, arguments, self.session.grants)
        self.most_recent_queue = queue.name
        return queue.name, queue.message_count, queue.consumer_count

    def queue_bind(self, queue_name: str, exchange_name: str, routing_key: str, arguments: dict) -> None:
        """queue.bind (404 for a missing end, 405 for another connection's exclusive queue)."""
        name, routing_key = self._binding_ends(queue_name, routing_key)
        self._check_binding("queue", name, exchange_name, routing_key)
        vhost = self.vhost
        exchange = vhost.get_exchange(exchange_name)  # RabbitMQ looks up the exchange first
        vhost.bind_queue(vhost.get_queue(name, self.session), exchange, routing_key, arguments)

    def queue_unbind(self, queue_name: str, exchange_name: str, routing_key: str, arguments: dict) -> None:
        """queue.unbind. RabbitMQ answers unbind-ok for a missing queue, exchange or binding, and
        even for another connection's exclusive queue; only the default exchange is refused."""
        name, routing_key = self._binding_ends(queue_name, routing_key)
        self._check_binding("queue", name, exchange_name, routing_key)
        vhost = self.vhost
        queue = vhost.queues.get(name)
        exchange = vhost.exchanges.get(exchange_name)
        if queue is not None and exchange is not None:
            vhost.unbind_queue(queue, exchange, routing_key, arguments, self.session)

    def queue_purge(self, queue_name: str) -> int:
        """queue.purge (read on the queue): the number of messages purged."""
        name = self.queue_name(queue_name)
        self.session.grants.read("queue", name)
        return self.vhost.get_queue(name, self.session).purge()

    def queue_delete(self, queue_name: str, if_unused: bool, if_empty: bool) -> tuple[int, list[str]]:
        """queue.delete: the number of messages deleted (0 for a missing queue), and the tags of
        this channel's consumers that were on the queue, whose server-sent basic.cancel are to be
        written after the delete-ok (the other channels' are written at once)."""
        vhost = self.vhost
        name = self.queue_name(queue_name)
        self.session.grants.configure("queue", name)  # even for a missing queue, as RabbitMQ
        if name not in vhost.queues:
            return 0, []
        queue = vhost.get_queue(name, self.session)  # 405 for another connection's queue
        queue.check_delete(if_unused, if_empty)
        self.deferred_cancels = []
        try:
            count = vhost.delete_queue(queue)
        finally:
            cancels, self.deferred_cancels = self.deferred_cancels, None
        return count, cancels

    # -- delivery (called by queues) --------------------------------------------------------------

    def deliver(self, consumer: Consumer, entry: QueueEntry) -> None:
        """Send ``entry`` to ``consumer``, tracking it as unacked unless no_ack."""
        self.next_delivery_tag += 1
        tag = self.next_delivery_tag
        entry.queue.stat_delivered += 1
        if entry.redelivered:
            self.stat_redelivered += 1
            entry.queue.stat_redelivered += 1
        if not consumer.no_ack:
            entry.consumer = consumer
            entry.delivery_tag = tag
            self.unacked[tag] = entry
            consumer.unacked += 1
            self.consumer_unacked += 1
            self.sink.deliver(consumer.tag, tag, entry.redelivered, entry.message)
            return
        self.sink.deliver(consumer.tag, tag, entry.redelivered, entry.message)
        if entry.stored:
            entry.queue.drop(entry)

    def deliver_many(self, consumer: Consumer, entries: list[QueueEntry]) -> None:
        """:meth:`deliver` for a batch of entries to an acking consumer, with the bookkeeping done
        once per batch."""
        tag = self.next_delivery_tag
        unacked = self.unacked
        deliver = self.sink.deliver
        consumer_tag = consumer.tag
        redelivered = 0
        for entry in entries:
            tag += 1
            entry.consumer = consumer
            entry.delivery_tag = tag
            unacked[tag] = entry
            if entry.redelivered:
                redelivered += 1
            deliver(consumer_tag, tag, entry.redelivered, entry.message)
        count = len(entries)
        consumer.queue.stat_delivered += count
        if redelivered:
            self.stat_redelivered += redelivered
            consumer.queue.stat_redelivered += redelivered
        self.next_delivery_tag = tag
        consumer.unacked += count
        self.consumer_unacked += count

    def consumer_cancelled_by_server(self, consumer: Consumer) -> None:
        """The queue went away: forget the consumer and tell a client that understands it."""
        if self.consumers.pop(consumer.tag, None) is not None and self.open:
            if self.session.consumer_cancel_notify:
                if self.deferred_cancels is not None:
                    self.deferred_cancels.append(consumer.tag)
                else:
                    self.sink.cancel_notify(consumer.tag)

    # -- basic ------------------------------------------------------------------------------------

    def basic_qos(self, prefetch_size: int, prefetch_count: int, global_: bool) -> None:
        """basic.qos: global=false sets the limit for new consumers, global=true for the channel."""
        if prefetch_size:
            raise ConnectionLevelError(NOT_IMPLEMENTED, f"prefetch_size!=0 ({prefetch_size})")
        if global_:
            self.global_prefetch = prefetch_count
            # RabbitMQ's limiter starts from the channel's unacked count at this moment, basic.get
            # deliveries included (rabbit_limiter:limit_prefetch(_, _, queue:len(UAMQ))); later gets
            # are not counted, and acking those earlier gets does not give their slots back.
            self.consumer_unacked = len(self.unacked)
            self._dispatch_all()
        else:
            self.prefetch_count = prefetch_count
            # rabbit_channel: a per-consumer qos also lifts a channel-wide limit set before it
            # ("ensures that if default was set, it's overridden": rabbit_limiter:unlimit_prefetch).
            self.global_prefetch = 0

    def basic_consume(
        self, queue_name: str, consumer_tag: str, no_ack: bool, exclusive: bool, arguments: dict
    ) -> str:
        """basic.consume; returns the consumer tag. Deliveries start with :meth:`start_consumer`."""
        queue_name = self.queue_name(queue_name)
        if queue_name == REPLY_QUEUE:
            return replyto.consume(self, consumer_tag, no_ack, lambda: generate_name("amq.ctag-"))
        if consumer_tag and consumer_tag in self.consumers:
            # rabbit_channel looks the tag up before anything else, the permission included.
            raise ConnectionLevelError(NOT_ALLOWED, f"attempt to reuse consumer tag '{consumer_tag}'")
        self.session.grants.read("queue", queue_name)
        queue = self.vhost.get_queue(queue_name, self.session)
        if arguments and "x-priority" in arguments:
            problem = not_an_integer(arguments["x-priority"])
            if problem is not None:
                raise precondition_failed(f"invalid arg 'x-priority' for {queue.describe()}: {problem}")
        if not consumer_tag:
            consumer_tag = generate_name("amq.ctag-")
        if queue.ext is not None:
            queue.ext.check_consume(self.global_prefetch)
        consumer = Consumer(consumer_tag, self, queue, no_ack, exclusive, self.prefetch_count, arguments)
        self.consumers[consumer_tag] = consumer
        try:
            queue.add_consumer(consumer)
        except Exception:
            del self.consumers[consumer_tag]
            raise
        return consumer_tag

    def start_consumer(self, consumer_tag: str) -> None:
        """Begin deliveries; called once consume-ok is written, which must precede them (spec)."""
        consumer = self.consumers.get(consumer_tag)
        if consumer is not None:
            consumer.queue.dispatch()

    def basic_cancel(self, consumer_tag: str) -> None:
        """basic.cancel: unknown tags are fine (RabbitMQ answers cancel-ok)."""
        reply = self.reply_consumer
        if reply is not None and reply.tag == consumer_tag:
            # RabbitMQ matches the reply consumer first, even when a queue consumer shares its tag.
            self.reply_consumer = None
            self.vhost.replies.unregister(reply)
            return
        consumer = self.consumers.pop(consumer_tag, None)
        if consumer is not None:
            consumer.queue.remove_consumer(consumer)

    def basic_publish(
        self, exchange_name: str, routing_key: str, mandatory: bool, immediate: bool, message: Message
    ) -> None:
        """basic.publish: route, enqueue, return if mandatory and unroutable, confirm."""
        if immediate:
            raise ConnectionLevelError(NOT_IMPLEMENTED, "immediate=true")
        self.stat_published += 1
        checked = exchange_name in self.may_publish
        if not checked:
            self.session.grants.write("exchange", exchange_name)  # before the 404, as RabbitMQ
        exchange = self.vhost.exchanges.get(exchange_name)
        if exchange is None:
            exchange = self.vhost.get_exchange(exchange_name)  # raises the 404
        if exchange.internal:
            raise access_refused(f"cannot publish to internal {exchange.describe()}")
        if not checked:
            grants = self.session.grants
            if grants.topic_free(exchange_name):
                self.may_publish[exchange_name] = None
            else:
                grants.check_topic(True, exchange, routing_key)
        # Direct reply-to's one door: a publish that may ask for a direct reply, or a reply to a
        # live reply consumer (never a queue's name: queue names under amq. are refused).
        if message.direct_reply_hint or (
            not exchange_name and routing_key in self.reply_consumers and not self.replying
        ):
            replyto.publish(self, exchange_name, routing_key, mandatory, message)
            return
        user_id = message.user_id
        if user_id is not None and user_id != self.session.user and not self.session.impersonator:
            raise precondition_failed(
                f"user_id property set to '{user_id}' but authenticated user was '{self.session.user}'"
            )
        if message.expiration is not None:
            parse_expiration(message.expiration)  # 406 as rabbit_channel:check_expiration_header
        if self.tx is not None:
            # RabbitMQ routes a transactional publish now and delivers at commit to the queues
            # (by name) it was routed to then: later binding changes do not affect it.
            names = [queue.name for queue in self.vhost.route(exchange, message)]
            self.tx.append(("publish", names, message, mandatory))
            return
        if not exchange.name and not exchange.vhost.exchange_bindings:
            # The default exchange, inlined (the commonest publish): the queue named by the key.
            queue = exchange.vhost.queues.get(message.routing_key)
            if queue is not None:
                self.stat_routed += 1
                if queue.publish(message) is False and self.confirm_mode:
                    self.publish_rejected = True
                stored = queue.persistence is not None and message.delivery_mode == 2
            else:
                stored = self._route(exchange, message, mandatory)
        else:
            stored = self._route(exchange, message, mandatory)
        if self.confirm_mode:
            self.publish_seq += 1
            if self.publish_rejected:
                # A queue refused it (x-overflow reject-publish): RabbitMQ nacks the message even
                # when other queues took it.
                self.publish_rejected = False
                self._confirm_rejected(self.publish_seq)
            elif stored or self.confirm_backlog:
                self._confirm_later(self.publish_seq, stored)
            else:
                self.sink.confirm(self.publish_seq, True)

    def _route(self, exchange: Any, message: Message, mandatory: bool) -> bool:
        """Enqueue ``message`` where it routes; True when a queue wrote it to the store."""
        routed = 0
        stored = False
        vhost = self.vhost
        destinations = exchange.route(message)
        if vhost.exchange_bindings or (not destinations and exchange.alternate is not None):
            destinations = vhost.walk(exchange, message, destinations)  # rare
        for queue in destinations:
            routed += 1
            if queue.publish(message) is False and self.confirm_mode:
                self.publish_rejected = True
            if queue.persistence is not None:
                stored = True
        self.stat_routed += routed
        if not routed:
            self.stat_unroutable += 1
            if mandatory:
                self.stat_returned += 1
                self.sink.basic_return(NO_ROUTE, "NO_ROUTE", message)
        return stored and message.delivery_mode == 2

    # -- direct reply-to ----------------------------------------------------------------------------

    def deliver_reply(self, consumer: ReplyConsumer, message: Message) -> None:
        """basic.deliver to this channel's reply consumer: no ack expected, so the delivery tag
        is the next one without using it up (RabbitMQ's deliver_reply does the same)."""
        if self.open and self.reply_consumer is consumer:
            self.sink.deliver(consumer.tag, self.next_delivery_tag + 1, False, message)

    def _confirm_later(self, sequence: int, wait_for_disk: bool) -> None:
        """Queue a confirm behind earlier ones; a stored message's waits for its fsync.

        Confirms leave in publish order, so the protocol layer can coalesce them into one
        multiple-ack; a persistent message routed to a durable queue is confirmed only once it is
        on disk (RabbitMQ's guarantee). Backlog items are [sequence, batch, ok]: ``batch`` is the
        store batch holding the message's write, 0 once nothing is awaited. One commit callback
        per channel and batch, not per message."""
        if not wait_for_disk:
            self.confirm_backlog.append([sequence, 0, True])
            self._release_confirms()
            return
        store = self.vhost.persistence.store
        batch = store.batch_id
        self.confirm_backlog.append([sequence, batch, True])
        if self._awaited_batch != batch:
            self._awaited_batch = batch
            store.after_commit(lambda ok: self._batch_written(batch, ok))

    def _batch_written(self, batch: int, ok: bool) -> None:
        for item in self.confirm_backlog:
            if item[1] > batch:
                break  # written by a later batch (items are in batch order)
            if item[1]:
                item[1] = 0
                item[2] = ok
        self._release_confirms()

    def _confirm_rejected(self, sequence: int) -> None:
        """A basic.nack for ``sequence``, in order behind confirms still waiting for the disk."""
        self.stat_nacked += 1
        if self.confirm_backlog:
            self.confirm_backlog.append([sequence, 0, False])
            self._release_confirms()
        else:
            self.sink.confirm(sequence, False)

    def _release_confirms(self) -> None:
        backlog = self.confirm_backlog
        while backlog and not backlog[0][1]:
            sequence, _, ok = backlog.popleft()
            if self.open:
                self.sink.confirm(sequence, ok)

    def basic_get(self, queue_name: str, no_ack: bool) -> tuple[int, QueueEntry, int] | None:
        """basic.get (read on the queue): (delivery_tag, entry, messages remaining) or None for
        get-empty."""
        name = self.queue_name(queue_name)
        self.session.grants.read("queue", name)
        queue = self.vhost.get_queue(name, self.session)
        entry = queue.get()
        if entry is None:
            return None
        queue.stat_delivered += 1
        if entry.redelivered:
            self.stat_redelivered += 1
            queue.stat_redelivered += 1
        self.next_delivery_tag += 1
        tag = self.next_delivery_tag
        if not no_ack:
            entry.consumer = None
            entry.delivery_tag = tag
            self.unacked[tag] = entry
        elif entry.stored:
            queue.drop(entry)
        return tag, entry, queue.message_count

    def _take(self, delivery_tag: int, multiple: bool) -> list[QueueEntry]:
        """Remove and return the unacked entries an ack/nack/reject names (406 when unknown)."""
        unacked = self.unacked
        if multiple:
            if delivery_tag == 0:
                taken = list(unacked.values())
                unacked.clear()
                return taken
            if delivery_tag not in unacked:
                raise precondition_failed(f"unknown delivery tag {delivery_tag}")
            taken = []
            for tag in list(unacked):
                if tag > delivery_tag:
                    break
                taken.append(unacked.pop(tag))
            return taken
        entry = unacked.pop(delivery_tag, None)
        if entry is None:
            raise precondition_failed(f"unknown delivery tag {delivery_tag}")
        return [entry]

    def basic_ack(self, delivery_tag: int, multiple: bool) -> None:
        """basic.ack from the client."""
        if not multiple and self.tx is None:
            # The hot path: one entry, no list.
            entry = self.unacked.pop(delivery_tag, None)
            if entry is None:
                raise precondition_failed(f"unknown delivery tag {delivery_tag}")
            self.stat_acked += 1
            entry.queue.stat_acked += 1
            if entry.stored:
                entry.queue.drop(entry)
            consumer = entry.consumer
            if consumer is not None:
                consumer.unacked -= 1
                self.consumer_unacked -= 1
                if self.global_prefetch:
                    # The freed slot is the channel's: any of its consumers may take it.
                    self._dispatch_all()
                else:
                    queue = consumer.queue
                    owed = self.session.owed_dispatch
                    if owed is None:
                        if queue.buffer:
                            queue.dispatch()
                    elif queue not in owed:
                        owed[queue] = None
            return
        entries = self._take(delivery_tag, multiple)
        if self.tx is not None:
            self.tx.append(("ack", entries))
            return
        self._settle(entries, requeue=False, reason=None)

    def basic_nack(self, delivery_tag: int, multiple: bool, requeue: bool) -> None:
        """basic.nack / basic.reject: requeue in place, or drop."""
        entries = self._take(delivery_tag, multiple)
        if self.tx is not None:
            self.tx.append(("nack", entries, requeue))
            return
        self._settle(entries, requeue=requeue, reason="rejected")

    def basic_reject(self, delivery_tag: int, requeue: bool) -> None:
        """basic.reject: a single-message nack."""
        self.basic_nack(delivery_tag, False, requeue)

    def basic_recover(self, requeue: bool) -> None:
        """basic.recover: only requeue=true exists in RabbitMQ; false is 540 NOT_IMPLEMENTED."""
        if not requeue:
            raise ConnectionLevelError(NOT_IMPLEMENTED, "requeue=false")
        entries = list(self.unacked.values())
        self.unacked.clear()
        self._settle(entries, requeue=True)

    def _settle(self, entries: Iterable[QueueEntry], requeue: bool, reason: str | None = None) -> None:
        """Finish with delivered entries: requeue them, or drop them from their queues (acked when
        ``reason`` is None, else dead-lettered for that reason where the queue says so)."""
        by_queue: dict[Queue, list[QueueEntry]] = defaultdict(list)
        touched: set[Queue] = set()
        acking = not requeue and reason is None
        if acking:
            entries = list(entries)
            self.stat_acked += len(entries)
        for entry in entries:
            consumer = entry.consumer
            if consumer is not None:
                consumer.unacked -= 1
                self.consumer_unacked -= 1
                touched.add(consumer.queue)
            if requeue:
                by_queue[entry.queue].append(entry)
                continue
            if acking:
                entry.queue.stat_acked += 1
            if reason is not None or entry.stored:
                entry.queue.drop(entry, reason)
        for queue, group in by_queue.items():
            queue.requeue(group)
        for queue in touched:
            if queue.buffer:
                queue.dispatch()
        if self.global_prefetch:
            self._dispatch_all()

    def _dispatch_all(self) -> None:
        for consumer in list(self.consumers.values()):
            queue = consumer.queue
            if queue.buffer:
                queue.dispatch()

    # -- confirm / tx -----------------------------------------------------------------------------

    def confirm_select(self) -> None:
        """confirm.select; not allowed on a transactional channel (406, as RabbitMQ)."""
        if self.tx is not None:
            raise precondition_failed("cannot switch from tx to confirm mode")
        self.confirm_mode = True

    def tx_select(self) -> None:
        """tx.select; not allowed on a confirm-mode channel (406, as RabbitMQ)."""
        if self.confirm_mode:
            raise precondition_failed("cannot switch from confirm to tx mode")
        if self.tx is None:
            self.tx = []

    def tx_commit(self) -> None:
        """tx.commit: apply the staged publishes and acks in order."""
        if self.tx is None:
            raise precondition_failed("channel is not transactional")
        staged, self.tx = self.tx, []
        rejected = False
        for action in staged:
            if action[0] == "publish":
                _, names, message, mandatory = action
                queues = [q for q in map(self.vhost.queues.get, names) if q is not None]
                self.stat_routed += len(queues)
                for queue in queues:
                    if queue.publish(message) is False:
                        rejected = True
                if not queues:
                    self.stat_unroutable += 1
                    if mandatory:
                        self.stat_returned += 1
                        self.sink.basic_return(NO_ROUTE, "NO_ROUTE", message)
            elif action[0] == "ack":
                self._settle(action[1], requeue=False, reason=None)
            else:
                self._settle(action[1], requeue=action[2], reason="rejected")
        if rejected:
            # A queue refused a publish (x-overflow reject-publish): everything else is applied,
            # then the channel is closed, as RabbitMQ 3.10 does (measured).
            raise precondition_failed("partial tx completion")

    def tx_rollback(self) -> None:
        """tx.rollback: drop staged publishes; staged acks' messages become unacked again."""
        if self.tx is None:
            raise precondition_failed("channel is not transactional")
        staged, self.tx = self.tx, []
        restored = [entry for action in staged if action[0] != "publish" for entry in action[1]]
        if restored:
            merged = list(self.unacked.values()) + restored
            merged.sort(key=lambda e: e.delivery_tag)
            self.unacked = {e.delivery_tag: e for e in merged}

    # -- lifecycle ----------------------------------------------------------------------------------

    def close(self) -> None:
        """The channel is closing: requeue unacked messages (in order) and cancel its consumers."""
        if not self.open:
            return
        self.open = False
        reply = self.reply_consumer
        if reply is not None:
            self.reply_consumer = None
            self.vhost.replies.unregister(reply)
        self.timeout_marks.clear()
        entries = list(self.unacked.values())
        self.unacked.clear()
        if self.tx:
            entries.extend(e for action in self.tx if action[0] != "publish" for e in action[1])
            entries.sort(key=lambda e: e.delivery_tag)
            self.tx = None
        consumers = list(self.consumers.values())
        self.consumers.clear()
        retired = self.vhost.retired_stats
        for key, value in self.counters().items():
            retired[key] += value
        self.session.broker.counters.channels_closed += 1
        by_queue: dict[Queue, list[QueueEntry]] = defaultdict(list)
        for entry in entries:
            by_queue[entry.queue].append(entry)
        for queue, group in by_queue.items():
            queue.requeue(group)
        for consumer in consumers:
            consumer.queue.remove_consumer(consumer)
        self.session.channels.pop(self.number, None)

    def resume(self) -> None:
        """The socket drained: deliver what was held back while it was full."""
        if self.open:
            self._dispatch_all()
