"""RabbitMQ's queue extensions: TTL, x-expires, length limits, dead-lettering, quorum queues.

A queue whose arguments ask for none of these has ``queue.ext is None`` and its hot path pays one
attribute test per publish. Otherwise :class:`QueueExtensions` holds what the arguments say, parsed
once at declare time, and :class:`~amqp_broker.broker.queue.Queue` calls it at a few points:
``admit`` (before enqueueing), ``published`` (after the first dispatch), ``requeueing`` /
``requeued``, ``dropped`` (a message left with a reason: dead-letter it), ``touch`` (declare and
basic.get count as use for x-expires) and ``consumers_changed``.

Every rule here was checked against RabbitMQ 3.10.8 (see tests/integration/
test_extensions_lifecycle.py); the citations name the Erlang function that implements it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import NOT_IMPLEMENTED, ConnectionLevelError
from . import deadletter
from .arguments import NEEDS_EXTENSIONS, QUORUM, queue_type, setting
from .expiry import ExtBuffer, cancel
from .fields import LONG
from .message import Message, QueueEntry

if TYPE_CHECKING:  # pragma: no cover
    from .queue import Queue

# The header a quorum queue adds to every delivery: the times it came back (rabbit_fifo).
DELIVERY_COUNT = "x-delivery-count"


def extensions_for(queue: "Queue") -> "QueueExtensions | None":
    """The queue's extension state, or None when its arguments ask for nothing here."""
    arguments = queue.arguments
    if queue_type(arguments) == QUORUM or any(key in arguments for key in NEEDS_EXTENSIONS):
        return QueueExtensions(queue)
    return None


class QueueExtensions:
    """What a queue's extension arguments say, and the timers and hooks that carry it out."""

    def __init__(self, queue: "Queue"):
        arguments = queue.arguments
        self.queue = queue
        self.timers = queue.vhost.timers
        self.quorum = queue_type(arguments) == QUORUM
        self.ttl: int | None = setting(arguments, "x-message-ttl")
        self.dlx: str | None = setting(arguments, "x-dead-letter-exchange")
        self.dlrk: str | None = setting(arguments, "x-dead-letter-routing-key")
        self.max_length: int | None = setting(arguments, "x-max-length")
        self.max_bytes: int | None = setting(arguments, "x-max-length-bytes")
        overflow = setting(arguments, "x-overflow") or "drop-head"
        limited = self.max_length is not None or self.max_bytes is not None
        # Quorum queues in 3.10 accept reject-publish-dlx but act as drop-head (measured).
        self.drop_head = limited and (overflow == "drop-head" or (self.quorum and overflow == "reject-publish-dlx"))
        self.reject = limited and not self.drop_head
        self.reject_dlx = self.reject and overflow == "reject-publish-dlx"
        self.delivery_limit: int | None = setting(arguments, "x-delivery-limit") if self.quorum else None
        self.expires: int | None = setting(arguments, "x-expires")
        self.buffer: ExtBuffer | None = None
        # True once expiry checks are needed: a queue TTL, or a message with an expiration seen.
        self.ttl_active = False
        self._ttl_timer: Any = None
        self._ttl_timer_at = 0.0
        self._expiring = False
        self._expiry_timer: Any = None
        # The buffer is wrapped at the first publish, not here: the store may still replace a new
        # queue's buffer with a paged one (persistence.attach_queue), which is what gets wrapped.
        self.ttl_active = self.ttl is not None
        if self.expires is not None:
            self.touch()

    def _wrap(self) -> None:
        if self.buffer is None:
            queue = self.queue
            self.buffer = queue.buffer = ExtBuffer(queue.buffer, self, returns_first=self.quorum)

    def _activate_ttl(self) -> None:
        self.ttl_active = True
        self._wrap()

    # -- publish --------------------------------------------------------------------------------

    def admit(self, message: Message) -> Message | None:
        """Before enqueueing: None when x-overflow refuses it (rabbit_amqqueue_process:
        maybe_deliver_or_enqueue, whose will_overflow counts ready messages only, consumers or
        not); otherwise the message to enqueue."""
        if self.reject:
            buffer = self.queue.buffer
            if (self.max_length is not None and len(buffer) + 1 > self.max_length) or (
                self.max_bytes is not None and buffer.bytes + len(message.body) > self.max_bytes
            ):
                if self.reject_dlx and self.dlx is not None:
                    deadletter.dead_letter(self.queue, message, deadletter.MAXLEN, self.dlx, self.dlrk)
                return None
        if message.expiration is not None and not self.ttl_active:
            self._activate_ttl()
        elif self.buffer is None and (self.ttl_active or self.quorum):
            self._wrap()
        if self.quorum:
            message = message.with_header(DELIVERY_COUNT, LONG, 0)
        return message

    def published(self, entry: QueueEntry) -> None:
        """After the first dispatch: set the TTL (not before, so a message a consumer can take at
        once is delivered even with TTL 0), drop the head while over a limit (maybe_drop_head),
        then expire the head (drop_expired_msgs)."""
        if self.ttl_active:
            ttl = self.message_ttl(entry.message)
            if ttl is not None:
                entry.expires = self.timers.clock() + ttl / 1000.0
        if self.drop_head:
            self.enforce_limits()
        if self.ttl_active:
            self.expire()

    def message_ttl(self, message: Message) -> int | None:
        """The lower of the queue's x-message-ttl and the message's expiration, in ms."""
        ttl = self.ttl
        expiration = message.expiration
        if expiration is not None:
            try:
                own = int(expiration)
            except ValueError:  # validated at publish; a recovered message may not have been
                own = None
            if own is not None and (ttl is None or own < ttl):
                ttl = own
        return ttl

    def enforce_limits(self) -> None:
        """Drop (and dead-letter, reason maxlen) from the head until within the limits."""
        queue = self.queue
        buffer = queue.buffer
        max_length = self.max_length
        max_bytes = self.max_bytes
        dropped = []
        while (max_length is not None and len(buffer) > max_length) or (
            max_bytes is not None and buffer.bytes > max_bytes
        ):
            entry = buffer.pop()
            if entry is None:
                break
            dropped.append(entry)
        for entry in dropped:
            queue.drop(entry, deadletter.MAXLEN)

    # -- requeue --------------------------------------------------------------------------------

    def requeueing(self, entries: Any) -> Any:
        """Quorum queues count returns; past x-delivery-limit a message is dead-lettered
        (reason delivery_limit) or dropped instead of coming back (rabbit_fifo:return_one)."""
        if not self.quorum:
            return entries
        self._wrap()  # recovered messages can come back before any publish wrapped the buffer
        kept = []
        for entry in entries:
            entry.delivery_count += 1
            limit = self.delivery_limit
            if limit is not None and entry.delivery_count > limit:
                entry.queue.drop(entry, deadletter.DELIVERY_LIMIT)
                continue
            entry.message = entry.message.with_header(DELIVERY_COUNT, LONG, entry.delivery_count)
            kept.append(entry)
        return kept

    def requeued(self) -> None:
        """After a requeue: limits, then expiry, as requeue_and_run does."""
        if self.drop_head:
            self.enforce_limits()
        if self.ttl_active:
            self.expire()

    # -- leaving ----------------------------------------------------------------------------------

    def dropped(self, entry: QueueEntry, reason: str) -> None:
        """A message left for ``reason``: dead-letter it if the queue has a DLX."""
        if self.dlx is not None and not self.queue.deleted:
            strip = (DELIVERY_COUNT,) if self.quorum else ()
            deadletter.dead_letter(self.queue, entry.message, reason, self.dlx, self.dlrk, strip)

    # -- message TTL ------------------------------------------------------------------------------

    def expire(self) -> None:
        """Remove expired messages at the head (dead-lettered, reason expired) and set the timer
        for the next head's deadline."""
        if self._expiring or self.buffer is None:
            return
        self._expiring = True
        try:
            expired = self.buffer.take_expired(self.timers.clock())
            queue = self.queue
            for entry in expired:
                queue.drop(entry, deadletter.EXPIRED)
        finally:
            self._expiring = False
        self._arm_ttl()

    def _arm_ttl(self) -> None:
        deadline = self.buffer.next_deadline()  # type: ignore[union-attr]
        if deadline is None:
            return
        if self._ttl_timer is not None:
            if self._ttl_timer_at <= deadline:
                return  # an earlier timer will look again when it fires
            self._ttl_timer.cancel()
        self._ttl_timer_at = deadline
        self._ttl_timer = self.timers.call_at(deadline, self._ttl_fired)

    def _ttl_fired(self) -> None:
        self._ttl_timer = None
        if not self.queue.deleted:
            self.expire()

    # -- x-expires --------------------------------------------------------------------------------

    def touch(self) -> None:
        """The queue was used (declared, redeclared, passive-declared, basic.get): restart the
        x-expires countdown if it has no consumers (rabbit_amqqueue_process:ensure_expiry_timer)."""
        if self.expires is None or self.queue.consumers:
            return
        cancel(self._expiry_timer)
        self._expiry_timer = self.timers.call_later(self.expires / 1000.0, self._expiry_fired)

    def consumers_changed(self) -> None:
        """The last consumer left: the countdown starts again from now."""
        if not self.queue.consumers:
            self.touch()

    def _expiry_fired(self) -> None:
        self._expiry_timer = None
        queue = self.queue
        if not queue.deleted and not queue.consumers:
            queue.vhost.delete_queue(queue)

    # -- consume ----------------------------------------------------------------------------------

    def check_consume(self, global_prefetch: int) -> None:
        """Quorum queues refuse a consumer on a channel with a global prefetch (540, measured)."""
        if self.quorum and global_prefetch:
            raise ConnectionLevelError(NOT_IMPLEMENTED, f"{self.queue.describe()} does not support global qos")
