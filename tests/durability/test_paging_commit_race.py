"""A paged backlog must not hand out a message twice when a commit lands between the store's
write and the committer's bookkeeping.

The committer writes a batch in a worker thread and only then records it (``store.batch_done``
sets ``committed_id``). In between, the rows are already visible to the store's reader, while
the paged buffer still holds the same entries in ``pending`` (their batch is not known to be
committed yet). Reading the disk part then must stop at what is known to be on disk; otherwise
the pending entries are delivered once from disk and once more from ``pending``: duplicates with
redelivered=false, and an ``on_disk`` count gone negative (the crash trials saw both: unflagged
duplicates within one broker lifetime, and ``'NoneType' object has no attribute 'consumer'`` in
Queue.dispatch when the count drifted the other way).

In-process and deterministic: the window the committer leaves open is replayed step by step.
"""

from __future__ import annotations

import pytest

from amqp_broker.broker.broker import Broker
from amqp_broker.broker.message import Message
from amqp_broker.store.sqlite import SQLiteStore

buffer_module = pytest.importorskip("amqp_broker.broker.buffer")
if not hasattr(buffer_module, "PagedBuffer"):  # pragma: no cover
    pytest.skip("no paged buffers in this version", allow_module_level=True)


def drain(buffer) -> list[int]:
    seqs = []
    while True:
        entry = buffer.pop()
        if entry is None:
            return seqs
        seqs.append(entry.seq)


def test_rows_committed_but_not_yet_recorded_are_not_read_twice(tmp_path):
    store = SQLiteStore(str(tmp_path))
    broker = Broker()
    broker.attach_store(store)
    store.commit_now()
    queue = broker.vhosts["/"].declare_queue(None, "q", durable=True)
    buffer = queue.buffer
    assert isinstance(buffer, buffer_module.PagedBuffer)
    buffer.limit = 1000  # page after three 200-byte messages

    def publish(i: int) -> None:
        queue.publish(Message.from_stored("", "q", b"\x00\x00", f"m{i:04d}".encode() * 40))

    for i in range(10):
        publish(i)
    store.commit_now()  # pages on disk, and known to be
    for i in range(10, 15):
        publish(i)  # paged: waiting in ``pending`` for the next commit
    assert buffer.paging and buffer.pending

    batch = store.take_batch()
    store.write_batch(batch)  # the committer thread has written the batch ...
    first = drain(buffer)  # ... a consumer drains the queue before batch_done() ...
    store.batch_done(batch, True)  # ... then the committer records the commit
    second = drain(buffer)

    delivered = first + second
    assert sorted(delivered) == list(range(1, 16)), f"delivered {delivered}"
    assert not buffer and len(buffer) == 0
    assert buffer.on_disk == 0 and not buffer.pending


def test_take_drains_a_paged_backlog_in_order(tmp_path):
    """Batched dispatch (``take``) pages back in like ``pop`` does, and keeps the accounting."""
    store = SQLiteStore(str(tmp_path))
    broker = Broker()
    broker.attach_store(store)
    store.commit_now()
    queue = broker.vhosts["/"].declare_queue(None, "q", durable=True)
    buffer = queue.buffer
    buffer.limit = 1000
    for i in range(40):
        queue.publish(Message.from_stored("", "q", b"\x00\x00", f"m{i:04d}".encode() * 40))
    store.commit_now()
    assert buffer.paging
    taken = []
    while buffer:
        batch = buffer.take(7, 1 << 20)
        assert batch, "a non-empty buffer always gives at least one entry"
        taken.extend(entry.seq for entry in batch)
    assert taken == list(range(1, 41))
    assert len(buffer) == 0 and buffer.bytes == 0 and buffer.resident == 0
    assert not buffer.paging
