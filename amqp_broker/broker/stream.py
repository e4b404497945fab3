"""Stream queues (x-queue-type=stream) as RabbitMQ 3.10 serves them over AMQP 0-9-1.

A stream is an append-only log: consuming does not remove anything, every consumer reads from its
own offset (``x-stream-offset``: ``first``, ``last``, ``next`` — the default —, a number, or a
timestamp) and each delivery carries its offset in an ``x-stream-offset`` header. What RabbitMQ
allows through AMQP 0-9-1 is narrow, and the refusals below are its own (measured against 3.10.8):

- basic.get, queue.purge, basic.nack/basic.reject: 540 NOT_IMPLEMENTED (connection close);
- basic.consume needs a per-consumer prefetch (406) and manual acknowledgement (540);
- queue.declare-ok reports 0 messages.

Not modelled: retention (x-max-age, x-max-length-bytes), chunk-sized delivery batches ("last"
starts at the last message, RabbitMQ at the last chunk), persistence of the log.
"""

from __future__ import annotations

import datetime
import time
from typing import Any, Iterable, Iterator

from ..errors import NOT_IMPLEMENTED, ConnectionLevelError, precondition_failed
from .fields import LONG
from .message import Message, QueueEntry
from .queue import Consumer, Queue

OFFSET_HEADER = "x-stream-offset"


class StreamLog:
    """The log, standing where a queue's buffer stands: it holds no *ready* messages (a stream
    reports none), but is true while some consumer has something left to read, which is what the
    channel tests before asking the queue to dispatch."""

    __slots__ = ("queue", "messages", "times")

    def __init__(self, queue: "StreamQueue"):
        self.queue = queue
        self.messages: list[Message] = []
        self.times: list[float] = []

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        end = len(self.messages)
        return any(offset < end for offset in self.queue.offsets.values())

    @property
    def bytes(self) -> int:
        return 0

    def clear(self) -> list[QueueEntry]:
        self.messages.clear()
        self.times.clear()
        return []

    def __iter__(self) -> Iterator[QueueEntry]:
        return iter(())


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value


class StreamQueue(Queue):
    """A queue of type stream."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.buffer = StreamLog(self)  # type: ignore[assignment]
        # Each consumer's next offset to read.
        self.offsets: dict[Consumer, int] = {}

    def _unsupported(self, what: str) -> ConnectionLevelError:
        return ConnectionLevelError(NOT_IMPLEMENTED, f"{what} not supported by stream queues {self.describe()}")

    # -- messages -----------------------------------------------------------------------------------

    def publish(self, message: Message) -> bool:
        self.buffer.messages.append(message)  # type: ignore[attr-defined]
        self.buffer.times.append(time.time())  # type: ignore[attr-defined]
        if self.consumers:
            self.dispatch()
        return True

    def get(self) -> QueueEntry | None:
        raise self._unsupported("basic.get")

    def purge(self) -> int:
        raise self._unsupported("queue.purge")

    def drop(self, entry: QueueEntry, reason: str | None = None) -> None:
        if reason is not None:
            raise self._unsupported("basic.nack and basic.reject")

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        # Nothing goes back: the log still has it. A nack/reject on an open channel is refused;
        # a closing channel's unacked deliveries just end.
        for entry in entries:
            consumer = entry.consumer
            if consumer is not None and consumer.channel.open:
                raise self._unsupported("basic.nack and basic.reject")

    # -- consumers ------------------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        if not consumer.prefetch:
            raise precondition_failed(f"consumer prefetch count is not set for '{self.describe()}'")
        if consumer.no_ack:
            raise self._unsupported("automatic acknowledgement")
        offset = self._start_offset((consumer.arguments or {}).get(OFFSET_HEADER, "next"))
        super().add_consumer(consumer)
        self.offsets[consumer] = offset

    def remove_consumer(self, consumer: Consumer) -> None:
        self.offsets.pop(consumer, None)
        super().remove_consumer(consumer)

    def _start_offset(self, spec: Any) -> int:
        log = self.buffer.messages  # type: ignore[attr-defined]
        spec = _text(spec)
        if isinstance(spec, bool):
            return len(log)
        if isinstance(spec, int):
            return min(max(spec, 0), len(log)) if spec < len(log) else spec
        if isinstance(spec, datetime.datetime):
            moment = spec.timestamp()
            times = self.buffer.times  # type: ignore[attr-defined]
            return next((i for i, t in enumerate(times) if t >= moment), len(log))
        if spec == "first":
            return 0
        if spec == "last":
            return max(len(log) - 1, 0)
        return len(log)  # "next", and anything RabbitMQ would not understand

    def dispatch(self) -> None:
        """Each consumer reads the log from its own offset, as far as its prefetch allows."""
        log = self.buffer.messages  # type: ignore[attr-defined]
        offsets = self.offsets
        for consumer in list(self.consumers):
            while offsets.get(consumer, len(log)) < len(log) and consumer.can_take():
                offset = offsets[consumer]
                offsets[consumer] = offset + 1
                entry = QueueEntry(log[offset].with_header(OFFSET_HEADER, LONG, offset), self, offset)
                consumer.channel.deliver(consumer, entry)

