"""The ready messages of one queue, behind a small interface so a queue's kind (classic,
priority) and its paging policy can change without touching delivery logic.

Every buffer keeps RabbitMQ's ordering rule: a requeued message goes back to its original position
(by sequence number), ahead of messages published after it.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Iterator

from .message import QueueEntry


class ClassicBuffer:
    """A FIFO of fresh entries plus a heap of requeued ones, merged by sequence on every pop."""

    __slots__ = ("ready", "requeued", "bytes")

    def __init__(self) -> None:
        self.ready: deque[QueueEntry] = deque()
        self.requeued: list[QueueEntry] = []
        # Body bytes held, for x-max-length-bytes and memory accounting.
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.ready) + len(self.requeued)

    def __bool__(self) -> bool:
        return bool(self.ready) or bool(self.requeued)

    def append(self, entry: QueueEntry) -> None:
        """Add a newly published entry at the tail."""
        self.ready.append(entry)
        self.bytes += len(entry.message.body)

    def requeue(self, entry: QueueEntry) -> None:
        """Put an entry back at its original position."""
        heapq.heappush(self.requeued, entry)
        self.bytes += len(entry.message.body)

    def peek(self) -> QueueEntry | None:
        """The entry :meth:`pop` would return, or None."""
        requeued = self.requeued
        ready = self.ready
        if requeued and (not ready or requeued[0].seq < ready[0].seq):
            return requeued[0]
        return ready[0] if ready else None

    def pop(self) -> QueueEntry | None:
        """Remove and return the head entry, or None when empty."""
        requeued = self.requeued
        ready = self.ready
        if requeued and (not ready or requeued[0].seq < ready[0].seq):
            entry = heapq.heappop(requeued)
        elif ready:
            entry = ready.popleft()
        else:
            return None
        self.bytes -= len(entry.message.body)
        return entry

    def clear(self) -> list[QueueEntry]:
        """Remove everything; returns what was removed."""
        removed = list(self.requeued)
        removed.extend(self.ready)
        self.ready.clear()
        self.requeued.clear()
        self.bytes = 0
        return removed

    def __iter__(self) -> Iterator[QueueEntry]:
        """Entries in no particular order (for scans such as shutdown bookkeeping)."""
        yield from self.requeued
        yield from self.ready


class PriorityBuffer:
    """x-max-priority: one classic buffer per priority level, highest level served first.

    A message's priority above the maximum counts as the maximum; no priority counts as 0
    (RabbitMQ's rabbit_priority_queue)."""

    __slots__ = ("levels", "max_priority")

    def __init__(self, max_priority: int) -> None:
        self.max_priority = max_priority
        self.levels = [ClassicBuffer() for _ in range(max_priority + 1)]

    def _level(self, entry: QueueEntry) -> ClassicBuffer:
        priority = entry.message.priority or 0
        return self.levels[priority if priority <= self.max_priority else self.max_priority]

    @property
    def bytes(self) -> int:
        """Body bytes held."""
        return sum(level.bytes for level in self.levels)

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels)

    def __bool__(self) -> bool:
        return any(self.levels)

    def append(self, entry: QueueEntry) -> None:
        """Add a newly published entry at the tail of its priority level."""
        self._level(entry).append(entry)

    def requeue(self, entry: QueueEntry) -> None:
        """Put an entry back at its original position within its level."""
        self._level(entry).requeue(entry)

    def peek(self) -> QueueEntry | None:
        """The entry :meth:`pop` would return, or None."""
        for level in reversed(self.levels):
            if level:
                return level.peek()
        return None

    def pop(self) -> QueueEntry | None:
        """Remove and return the next entry of the highest non-empty level."""
        for level in reversed(self.levels):
            if level:
                return level.pop()
        return None

    def clear(self) -> list[QueueEntry]:
        """Remove everything; returns what was removed."""
        removed: list[QueueEntry] = []
        for level in self.levels:
            removed.extend(level.clear())
        return removed

    def __iter__(self) -> Iterator[QueueEntry]:
        for level in self.levels:
            yield from level
