"""The ready messages of one queue, behind a small interface so a queue's kind (classic,
priority) and its paging policy can change without touching delivery logic.

Every buffer keeps RabbitMQ's ordering rule: a requeued message goes back to its original position
(by sequence number), ahead of messages published after it.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Iterator

from .message import Message, QueueEntry


class ClassicBuffer:
    """A FIFO of fresh entries plus a heap of requeued ones, merged by sequence on every pop."""

    __slots__ = ("ready", "requeued", "bytes")

    # Only a PagedBuffer pages; the others never do.
    paging = False

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

    def take(self, count: int, max_bytes: int) -> list[QueueEntry]:
        """Remove up to ``count`` entries from the head (at least one if any, and no more once
        their bodies reach ``max_bytes``): a consumer's whole free prefetch in one call, so
        dispatch pays per batch what :meth:`pop` costs per message."""
        if self.requeued:
            entry = self.pop()  # merging with requeued entries: rare, one at a time
            return [entry] if entry is not None else []
        ready = self.ready
        if len(ready) <= count:
            taken = list(ready)
            ready.clear()
        else:
            popleft = ready.popleft
            taken = [popleft() for _ in range(count)]
        size = 0
        for index, entry in enumerate(taken):
            size += len(entry.message.body)
            if size >= max_bytes and index + 1 < len(taken):
                # Over the byte budget: give the rest back, in order.
                ready.extendleft(reversed(taken[index + 1:]))
                del taken[index + 1:]
                break
        self.bytes -= size
        return taken

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

    paging = False

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

    def take(self, count: int, max_bytes: int) -> list[QueueEntry]:
        """Up to ``count`` entries from the highest non-empty level (see ClassicBuffer.take)."""
        for level in reversed(self.levels):
            if level:
                return level.take(count, max_bytes)
        return []

    def clear(self) -> list[QueueEntry]:
        """Remove everything; returns what was removed."""
        removed: list[QueueEntry] = []
        for level in self.levels:
            removed.extend(level.clear())
        return removed

    def __iter__(self) -> Iterator[QueueEntry]:
        for level in self.levels:
            yield from level


# What one resident message costs beyond its body (Message, QueueEntry, bytes headers, deque slot),
# measured on CPython 3.11; it makes a backlog of tiny messages count, not just the bodies.
ENTRY_OVERHEAD = 300
# Messages read back from disk at a time when a paged backlog is consumed.
PAGE_IN_CHUNK = 2048


class PagedBuffer(ClassicBuffer):
    """A classic buffer that moves its tail to the store once it holds more than ``limit`` bytes.

    Once paging starts, every new message goes to the store (in order: the disk part is always
    newer than the resident part), and the resident part is refilled from disk in chunks as it
    drains. A paged message's body stays in memory only until the batch that wrote it is
    committed (``store.committed_id``), so reads never race the committer: what is not yet on disk
    is still in ``pending``. Persistent messages of durable queues are already in the store, so
    paging them costs no extra write.
    """

    __slots__ = ("queue", "store", "limit", "resident", "paging", "pending", "on_disk", "read_after",
                 "last_paged_seq", "disk_upto", "recovered_upto")

    def __init__(self, queue, store, limit: int) -> None:
        super().__init__()
        self.queue = queue
        self.store = store
        self.limit = limit
        self.resident = 0  # accounted bytes (body + overhead) of ready and requeued entries
        self.paging = False
        self.pending: deque[tuple[int, QueueEntry]] = deque()  # (batch id, entry) not yet on disk
        self.on_disk = 0  # paged messages only on disk
        self.read_after = 0  # highest seq already read back (or before the first paged seq)
        self.last_paged_seq = 0
        # Highest seq known to be on disk (released from ``pending`` once its batch committed):
        # a read stops there, since rows of a batch being committed may already be visible while
        # their entries are still in ``pending``.
        self.disk_upto = 0
        # Entries read back with seq <= this are flagged redelivered (recovered after a crash).
        self.recovered_upto = 0

    def __len__(self) -> int:
        return len(self.ready) + len(self.requeued) + len(self.pending) + self.on_disk

    def __bool__(self) -> bool:
        return bool(self.ready) or bool(self.requeued) or self.on_disk > 0 or bool(self.pending)

    def append(self, entry: QueueEntry) -> None:
        if self.paging and not self.on_disk and not self.pending and self.resident <= self.limit // 2:
            # The paged part has drained and memory is well below the limit: back to memory.
            self.paging = False
        if not self.paging:
            self.ready.append(entry)
            size = len(entry.message.body)
            self.bytes += size
            self.resident += size + ENTRY_OVERHEAD
            if self.resident > self.limit:
                self.paging = True
                self.read_after = entry.seq
            return
        queue = self.queue
        if queue.store_id is None:
            queue.store_id = self.store.new_queue_id()
        if not entry.stored:
            message = entry.message
            self.store.add_message(
                queue.store_id, entry.seq, message.exchange, message.routing_key,
                message.properties_raw, message.body, False, entry.redelivered,
            )
            entry.stored = True
        self.bytes += len(entry.message.body)
        self.pending.append((self.store.batch_id, entry))
        self.last_paged_seq = entry.seq
        self._release_committed()

    def _release_committed(self) -> None:
        pending = self.pending
        committed = self.store.committed_id
        while pending and pending[0][0] <= committed:
            self.disk_upto = pending.popleft()[1].seq
            self.on_disk += 1

    def requeue(self, entry: QueueEntry) -> None:
        super().requeue(entry)
        self.resident += len(entry.message.body) + ENTRY_OVERHEAD

    def _refill(self) -> bool:
        """Bring the next chunk of the paged part into memory; False when nothing is paged."""
        if not self.paging:
            return False
        self._release_committed()
        if self.on_disk:
            queue = self.queue
            rows = self.store.read_messages(queue.store_id, self.read_after, PAGE_IN_CHUNK)
            rows = [row for row in rows if row.seq <= self.disk_upto]
            if rows:
                for row in rows:
                    message = Message.from_stored(row.exchange, row.routing_key, row.properties, row.body)
                    entry = QueueEntry(message, queue, row.seq)
                    entry.stored = True
                    entry.redelivered = row.redelivered or row.seq <= self.recovered_upto
                    self.ready.append(entry)
                    self.resident += len(row.body) + ENTRY_OVERHEAD
                self.read_after = rows[-1].seq
                self.on_disk -= len(rows)
                if not self.on_disk and not self.pending:
                    # The paged part is all in memory now: stop paging, so no row written later
                    # (say, of a message handed straight to a consumer) is mistaken for paged.
                    self.paging = False
                return True
            # Counted as on disk but not readable: only possible if a commit failed and is being
            # retried; serve what is still in memory meanwhile.
        if self.pending:
            for _batch, entry in self.pending:
                self.ready.append(entry)
                self.resident += len(entry.message.body) + ENTRY_OVERHEAD
                self.read_after = entry.seq
            self.pending.clear()
            if not self.on_disk:
                self.paging = False
            return True
        self.paging = False
        return False

    def peek(self) -> QueueEntry | None:
        entry = super().peek()
        if entry is None and self._refill():
            entry = super().peek()
        return entry

    def pop(self) -> QueueEntry | None:
        entry = super().pop()
        if entry is None:
            if not self._refill():
                return None
            entry = super().pop()
            if entry is None:
                return None
        self.resident -= len(entry.message.body) + ENTRY_OVERHEAD
        return entry

    def take(self, count: int, max_bytes: int) -> list[QueueEntry]:
        if not self.ready and not self.requeued and not self._refill():
            return []
        before = self.bytes
        taken = ClassicBuffer.take(self, count, max_bytes)
        self.resident -= before - self.bytes + ENTRY_OVERHEAD * len(taken)
        return taken

    def clear(self) -> list[QueueEntry]:
        removed = super().clear()
        removed.extend(entry for _batch, entry in self.pending)
        self.pending.clear()
        if self.on_disk and self.queue.store_id is not None:
            self.store.remove_range(self.queue.store_id, self.read_after + 1, self.last_paged_seq)
        self.on_disk = 0
        self.paging = False
        self.resident = 0
        return removed

    def restore(self, count: int, first_seq: int, last_seq: int, crashed: bool) -> None:
        """Take over a recovered queue's stored messages without reading them all into memory."""
        if not count:
            return
        self.paging = True
        self.on_disk += count
        self.read_after = first_seq - 1
        self.last_paged_seq = max(self.last_paged_seq, last_seq)
        self.disk_upto = max(self.disk_upto, last_seq)
        if crashed:
            self.recovered_upto = last_seq
