"""Paged-out transient messages go to spill segments (store/spill.py), not to the SQLite file:
no fsync, one write and one read per message, deleted once read. Memory stays bounded (large
messages included), a crash loses only transient messages, and confirms of persistent messages
still mean committed to the database with fsync.

Broker subprocesses (real RSS, real SIGKILL) and real pika clients.
"""

from __future__ import annotations

import os
import sqlite3
import time

import pika
import pytest

from amqp_broker.store import spill as spill_module
from amqp_broker.store.spill import SegmentPool, Spill
from amqp_broker.testing import BrokerThread

from durability_helpers import Broker, get_all, publish

MIB = 1024 * 1024


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def message_count(broker, queue: str) -> int:
    conn = broker.connect()
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def spill_files(data_dir: str) -> list[str]:
    directory = os.path.join(data_dir, "transient")
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def spill_bytes(data_dir: str) -> int:
    directory = os.path.join(data_dir, "transient")
    return sum(os.path.getsize(os.path.join(directory, name)) for name in spill_files(data_dir))


def db_message_rows(data_dir: str) -> list[tuple[int, int]]:
    """(persistent, body length) of every message row the broker has committed."""
    db = sqlite3.connect(f"file:{os.path.join(data_dir, 'amqp_broker.sqlite3')}?mode=ro", uri=True)
    try:
        return db.execute("SELECT persistent, length(body) FROM messages ORDER BY id").fetchall()
    finally:
        db.close()


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture
def small_node(tmp_path):
    """A broker subprocess whose queues page beyond 4 MiB."""
    proc = Broker(str(tmp_path / "data"), log_path=str(tmp_path / "broker.log"),
                  extra_args=["--queue-memory-limit-bytes", str(4 * MIB)])
    proc.start()
    yield proc
    proc._conns.clear()
    if proc.running:
        proc.kill9()


def test_a_paged_backlog_of_1_mib_messages_drains_in_order_with_bounded_memory(small_node):
    count = 120  # 120 MiB against a 4 MiB limit
    ch = small_node.channel()
    ch.queue_declare("big")
    rss_before = rss_kib(small_node.proc.pid)
    for i in range(count):
        ch.basic_publish("", "big", b"%06d" % i + bytes(MIB - 6))
    wait_for(lambda: message_count(small_node, "big") == count, what="all enqueued")
    data_dir = small_node.data_dir
    # On disk, outside the database: no row, no fsync for any of them.
    assert spill_files(data_dir), "a backlog 30 times the limit is paged out"
    assert db_message_rows(data_dir) == []

    seen = []
    peak = 0
    while True:
        method, _props, body = ch.basic_get("big", auto_ack=True)
        if method is None:
            break
        assert len(body) == MIB
        seen.append(int(body[:6]))
        if len(seen) % 10 == 0:
            peak = max(peak, rss_kib(small_node.proc.pid))
    assert seen == list(range(count))
    # Read back a bounded chunk at a time (2048 messages at once would be the whole backlog).
    assert peak - rss_before < 60 * 1024, f"RSS grew by {(peak - rss_before) // 1024} MiB"
    assert rss_kib(small_node.proc.pid, "VmHWM") - rss_before < 80 * 1024
    # Read segments are kept for reuse up to a few; the rest of the 120 MiB is deleted.
    kept = spill_module.FREE_SEGMENTS * (spill_module.SEGMENT_BYTES + MIB + 4096)
    wait_for(lambda: len(spill_files(data_dir)) <= spill_module.FREE_SEGMENTS
             and spill_bytes(data_dir) <= kept, timeout=10, what="spill given back")


def test_a_crash_with_a_paged_backlog_loses_only_transient_messages(small_node):
    body = b"." * (64 * 1024)
    ch = small_node.channel(confirm=True)
    ch.queue_declare("mixed", durable=True)
    ch.queue_declare("scratch")  # non-durable: gone after any restart
    for i in range(200):  # 12.5 MiB: paged, persistent and transient interleaved
        publish(ch, "mixed", [b"%04d" % i + body], persistent=i % 2 == 0)
    publish(ch, "scratch", [body] * 100, persistent=False)
    assert spill_files(small_node.data_dir)
    persistent_rows = [row for row in db_message_rows(small_node.data_dir) if row[0] == 1]
    assert len(persistent_rows) == 100  # confirmed: committed before the confirm went out
    assert all(row[0] == 1 for row in db_message_rows(small_node.data_dir))

    small_node.bounce("kill9")
    assert spill_files(small_node.data_dir) == []  # what a crash left is cleared at start
    ch = small_node.channel()
    assert message_count(small_node, "mixed") == 100
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        small_node.channel().queue_declare("scratch", passive=True)

    # New messages queue behind the recovered ones (read back from the database), paged again.
    publish(ch, "mixed", [b"%04d" % i + body for i in range(200, 300)], persistent=False)
    wait_for(lambda: message_count(small_node, "mixed") == 200, what="enqueued after the restart")
    assert spill_files(small_node.data_dir)
    got = get_all(ch, "mixed")
    assert [int(b[:4]) for b, _ in got] == list(range(0, 200, 2)) + list(range(200, 300))
    # After a crash every recovered message may have been delivered; the new ones were not.
    assert [redelivered for _, redelivered in got] == [True] * 100 + [False] * 100


def test_confirms_of_persistent_messages_still_wait_for_the_fsynced_commit(tmp_path):
    with BrokerThread(data_dir=str(tmp_path), queue_memory_limit_bytes=256 * 1024) as broker:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("dq", durable=True)
        body = b"x" * (32 * 1024)
        for i in range(40):  # 1.25 MiB of transient messages: the queue pages
            ch.basic_publish("", "dq", body, pika.BasicProperties(delivery_mode=1))
        for i in range(20):
            ch.basic_publish("", "dq", b"%04d" % i + body, pika.BasicProperties(delivery_mode=2))
            # The confirm is in: the row is in the database already (paged or not).
            assert len(db_message_rows(str(tmp_path))) == i + 1
        assert spill_files(str(tmp_path))
        store = broker.server.store
        # Every database commit is fsynced (transient pages never switch it off).
        assert broker.call(lambda: store._db.execute("PRAGMA synchronous").fetchone()[0]) == 2
        conn.close()


def test_spill_reads_only_committed_records_and_recycles_read_segments(tmp_path, monkeypatch):
    monkeypatch.setattr(spill_module, "SEGMENT_BYTES", 100_000)
    monkeypatch.setattr(spill_module, "FREE_SEGMENTS", 2)
    pool = SegmentPool(str(tmp_path))
    spill = Spill(pool)
    big = bytes(range(256)) * 2000  # 512,000 bytes: larger than a read block
    long_properties = b"\x00\x01" + b"p" * 2000  # a head longer than what is peeked of it
    records = [(seq, seq % 3, "ex", f"rk{seq}", long_properties if seq % 11 == 0 else b"\x00\x01",
                big if seq % 7 == 0 else b"b%d" % seq)
               for seq in range(1, 60)]
    for record in records[:40]:
        spill.write(*record)
    assert spill.read(100, 1 << 30) == []  # nothing committed yet
    spill.readable = spill.end()
    for record in records[40:]:
        spill.write(*record)  # written, not yet committed: not readable
    got = []
    while chunk := spill.read(5, 600_000):
        assert len(chunk) <= 5
        assert sum(len(r[5]) for r in chunk[:-1]) < 600_000  # stops once the budget is reached
        got.extend(chunk)
    assert got == records[:40]
    spill.readable = spill.end()
    got = spill.read(100, 1 << 30)
    assert got == records[40:]
    # Read segments wait for reuse, two at most; the others are deleted.
    assert len(spill.segments) == 1 and len(pool.free) == 2
    assert len(os.listdir(tmp_path)) == 3
    spill.close()
    assert len(pool.free) == 2 and len(os.listdir(tmp_path)) == 2

    # A second spill writes over the recycled segments and reads back only its own records.
    again = Spill(pool)
    for record in records[:10]:
        again.write(*record)
    again.readable = again.end()
    assert again.read(100, 1 << 30) == records[:10]
    assert len(os.listdir(tmp_path)) == 2
    again.close()
    pool.close()
    assert os.listdir(tmp_path) == []


def test_spill_writes_runs_of_records_a_write_at_a_time(tmp_path, monkeypatch):
    """write_run: one write per run, bounded in buffers and bytes, a new segment between runs."""
    monkeypatch.setattr(spill_module, "SEGMENT_BYTES", 50_000)
    writes = []
    real_pwritev = os.pwritev

    def counting_pwritev(fd, buffers, offset):
        writes.append(len(buffers))
        return real_pwritev(fd, buffers, offset)

    monkeypatch.setattr(spill_module.os, "pwritev", counting_pwritev)
    pool = SegmentPool(str(tmp_path))
    spill = Spill(pool)
    records = [(seq, 0, "", f"q{seq}", b"\x00\x00", b"m%d" % seq + b"." * 100) for seq in range(1, 1001)]
    records[500] = records[500][:5] + (b"L" * 1_500_000,)  # a record over WRITE_RUN_BYTES
    done = 0
    while done < len(records):
        written = spill.write_run(records, done)
        assert written >= 1
        done += written
    assert done == len(records)
    assert all(n <= spill_module.WRITE_RUN_BUFFERS for n in writes)
    assert len(writes) < len(records) // 50  # runs, not a write per record
    assert len(spill.segments) > 1  # segments still roll over between runs
    spill.readable = spill.end()
    got = []
    while chunk := spill.read(300, 1 << 30):
        got.extend(chunk)
    assert got == records
    spill.close()
    pool.close()
