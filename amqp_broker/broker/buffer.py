"""The ready messages of one queue, behind a small interface so a queue's kind (classic,
priority) and its paging policy can change without touching delivery logic.

Every buffer keeps RabbitMQ's ordering rule: a requeued message goes back to its original position
(by sequence number), ahead of messages published after it.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Final, Iterator

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
ENTRY_OVERHEAD: Final = 300
# Messages read back from disk at a time when a paged backlog is consumed, at most; a read also
# stops once its bodies reach a quarter of the memory limit (PAGE_IN_MIN_BYTES at least), so large
# messages are not read back 2048 at a time, past the bound paging exists for.
PAGE_IN_CHUNK: Final = 2048
PAGE_IN_MIN_BYTES: Final = 64 * 1024
# Spill record flags (store/spill.py).
FLAG_REDELIVERED: Final = 1
FLAG_STORED: Final = 2


class PagedBuffer(ClassicBuffer):
    """A classic buffer that moves its tail to disk once it holds more than ``limit`` bytes.

    Once paging starts, every new message goes to the store's spill (in order: the disk part is
    always newer than the resident part), and the resident part is refilled from disk in chunks as
    it drains. The spill is a plain FIFO without fsync (paging bounds memory; it is no durability):
    a persistent message of a durable queue, already in the store's database, is paged as a copy
    there too, so reading back needs one source. A paged message's body stays in memory only until
    the batch that wrote it is committed (``store.committed_id``): what is not readable yet is still
    in ``pending``. After a restart the recovered messages are read from the database first
    (``db_left`` of them, sequence numbers up to ``db_upto``); they are older than any new one.
    """

    __slots__ = ("queue", "store", "limit", "resident", "paging", "pending", "on_disk", "read_after",
                 "last_paged_seq", "db_left", "db_upto", "recovered_upto", "spill", "page_in_bytes")

    def __init__(self, queue, store, limit: int) -> None:
        super().__init__()
        self.queue = queue
        self.store = store
        self.limit = limit
        self.page_in_bytes = max(limit // 4, PAGE_IN_MIN_BYTES)
        self.resident = 0  # accounted bytes (body + overhead) of ready and requeued entries
        self.paging = False
        self.pending: deque[tuple[int, QueueEntry]] = deque()  # (batch id, entry) not yet on disk
        self.on_disk = 0  # paged messages only on disk (recovered ones included)
        self.read_after = 0  # highest seq already read back (or before the first paged seq)
        self.last_paged_seq = 0
        self.db_left = 0  # recovered messages still only in the database
        self.db_upto = 0
        # Entries read back with seq <= this are flagged redelivered (recovered after a crash).
        self.recovered_upto = 0
        # The store's spill file of this queue (store/spill.py) while it has paged messages.
        self.spill: Any = None

    def __len__(self) -> int:
        return len(self.ready) + len(self.requeued) + len(self.pending) + self.on_disk

    def __bool__(self) -> bool:
        return bool(self.ready) or bool(self.requeued) or self.on_disk > 0 or bool(self.pending)

    def append(self, entry: QueueEntry) -> None:
        if self.paging and not self.on_disk and not self.pending and self.resident <= self.limit // 2:
            # The paged part has drained and memory is well below the limit: back to memory.
            self._stop_paging()
        if not self.paging:
            self.ready.append(entry)
            size = len(entry.message.body)
            self.bytes += size
            self.resident += size + ENTRY_OVERHEAD
            if self.resident > self.limit:
                self.paging = True
                self.read_after = entry.seq
            return
        spill = self.spill
        if spill is None:
            spill = self.spill = self.store.new_spill()
        message = entry.message
        self.store.spill_message(
            spill, entry.seq, (FLAG_REDELIVERED if entry.redelivered else 0)
            | (FLAG_STORED if entry.stored else 0),
            message.exchange, message.routing_key, message.properties_raw, message.body,
        )
        self.bytes += len(message.body)
        self.pending.append((self.store.batch_id, entry))
        self.last_paged_seq = entry.seq
        self._release_committed()

    def _stop_paging(self) -> None:
        self.paging = False
        if self.spill is not None:
            self.store.drop_spill(self.spill)
            self.spill = None

    def _release_committed(self) -> None:
        pending = self.pending
        committed = self.store.committed_id
        while pending and pending[0][0] <= committed:
            pending.popleft()
            self.on_disk += 1

    def requeue(self, entry: QueueEntry) -> None:
        super().requeue(entry)
        self.resident += len(entry.message.body) + ENTRY_OVERHEAD

    def _read_db(self) -> int:
        """Read the next recovered messages back from the database; returns how many."""
        queue = self.queue
        ready = self.ready
        rows = self.store.read_messages(
            queue.store_id, self.read_after, PAGE_IN_CHUNK, upto_seq=self.db_upto, max_bytes=self.page_in_bytes
        )
        for row in rows:
            message = Message.from_stored(row.exchange, row.routing_key, row.properties, row.body)
            entry = QueueEntry(message, queue, row.seq)
            entry.stored = True
            entry.redelivered = row.redelivered or row.seq <= self.recovered_upto
            ready.append(entry)
            self.resident += len(row.body) + ENTRY_OVERHEAD
            self.read_after = row.seq
        return len(rows)

    def _read_spill(self) -> int:
        """Read the next paged-out messages back from the spill; returns how many."""
        queue = self.queue
        ready = self.ready
        records = self.spill.read(PAGE_IN_CHUNK, self.page_in_bytes)
        for seq, flags, exchange, routing_key, properties, body in records:
            message = Message.from_stored(exchange, routing_key, properties, body)
            entry = QueueEntry(message, queue, seq)
            entry.stored = bool(flags & FLAG_STORED)
            entry.redelivered = bool(flags & FLAG_REDELIVERED)
            ready.append(entry)
            self.resident += len(body) + ENTRY_OVERHEAD
        if records:
            self.read_after = records[-1][0]
        return len(records)

    def _refill(self) -> bool:
        """Bring the next chunk of the paged part into memory; False when nothing is paged."""
        if not self.paging:
            return False
        self._release_committed()
        if self.on_disk:
            count = 0
            if self.db_left:
                count = self._read_db()
                if count:
                    self.db_left -= count
                else:  # defensive: the rows are gone (not to be waited for)
                    self.on_disk -= self.db_left
                    self.db_left = 0
            if not count and self.on_disk and self.spill is not None:
                count = self._read_spill()
            if count:
                self.on_disk -= count
                if not self.on_disk and not self.pending:
                    # The paged part is all in memory now: stop paging, so new messages queue in
                    # memory again.
                    self._stop_paging()
                return True
            if not self.db_left and self.spill is None:
                self.on_disk = 0  # defensive: counted, yet nowhere to read from
        if self.pending:
            # Nothing readable yet (a commit in flight, or failing and retried): serve what is
            # still in memory meanwhile. Only reachable with nothing older on disk, so the order
            # holds.
            for _batch, entry in self.pending:
                self.ready.append(entry)
                self.resident += len(entry.message.body) + ENTRY_OVERHEAD
                self.read_after = entry.seq
            self.pending.clear()
            if not self.on_disk:
                self._stop_paging()
            return True
        self._stop_paging()
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
            # The database rows of paged persistent messages (the spill copies go with the spill).
            self.store.remove_range(self.queue.store_id, self.read_after + 1, self.last_paged_seq)
        self.on_disk = 0
        self.db_left = 0
        self._stop_paging()
        self.resident = 0
        return removed

    def restore(self, count: int, first_seq: int, last_seq: int, crashed: bool) -> None:
        """Take over a recovered queue's stored messages without reading them all into memory."""
        if not count:
            return
        self.paging = True
        self.on_disk += count
        self.db_left += count
        self.read_after = first_seq - 1
        self.last_paged_seq = max(self.last_paged_seq, last_seq)
        self.db_upto = max(self.db_upto, last_seq)
        if crashed:
            self.recovered_upto = last_seq
