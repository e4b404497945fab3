"""The queue types x-queue-type names (classic, quorum, stream), as data.

A type says which class its queues are made of, the name RabbitMQ's reply texts give it (its
Erlang module), and the rules of rabbit_amqqueue / rabbit_quorum_queue:declare /
rabbit_stream_queue for a new queue of it; which arguments it accepts is arguments.py's table.
A quorum queue is a :class:`Queue` whose QueueExtensions (extensions.py) carry its semantics; a
stream is a :class:`StreamQueue` (stream.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import precondition_failed
from .arguments import ARGUMENTS, CLASSIC, QUORUM, STREAM, queue_type
from .queue import Queue
from .stream import StreamQueue


@dataclass(frozen=True)
class QueueType:
    """One queue type and the declare-time rules that differ between types."""

    name: str
    # RabbitMQ's module for it, as its refusal texts name the type.
    module: str
    queue_class: type[Queue]
    # Replicated types (quorum, stream) must be durable, neither exclusive nor auto-delete, and
    # cannot be server-named (rabbit_amqqueue:is_server_named_allowed/1).
    replicated: bool

    def check_server_named(self) -> None:
        """406 when a declare with an empty name asks for this type."""
        if self.replicated:
            raise precondition_failed(f"Cannot declare a server-named queue for type {self.module}")

    def check_new_queue(self, owner: str, durable: bool, exclusive: bool, auto_delete: bool,
                        arguments: dict) -> None:
        """A new queue's refused arguments (the first in the declare's order), then the replicated
        types' property rules; ``owner`` is ``queue 'q' in vhost '/'``."""
        for key in arguments:
            row = ARGUMENTS.get(key)
            if row is not None and self.name not in row.types:
                raise precondition_failed(f"invalid arg '{key}' for {owner} of queue type {self.module}")
        if not self.replicated:
            return
        where = f"for {owner}"
        if auto_delete:
            raise precondition_failed(f"invalid property 'auto-delete' {where}")
        if exclusive:
            raise precondition_failed(f"invalid property 'exclusive-owner' {where}")
        if not durable:
            raise precondition_failed(f"invalid property 'non-durable' {where}")


QUEUE_TYPES = {kind.name: kind for kind in (
    QueueType(CLASSIC, "rabbit_classic_queue", Queue, replicated=False),
    QueueType(QUORUM, "rabbit_quorum_queue", Queue, replicated=True),
    QueueType(STREAM, "rabbit_stream_queue", StreamQueue, replicated=True),
)}


def queue_type_of(arguments: dict) -> QueueType:
    """The type a queue declared with ``arguments`` has (classic when x-queue-type is absent)."""
    return QUEUE_TYPES[queue_type(arguments)]
