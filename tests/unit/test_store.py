"""The SQLite store on its own: a temp directory, no broker, no AMQP."""

import datetime
import decimal
import os

import pytest

from amqp_broker.store import records
from amqp_broker.store.lock import DataDirBusy, DataDirLock
from amqp_broker.store.sqlite import DB_NAME, SQLiteStore, StoreError


def test_records_round_trip_field_table_values():
    value = {
        "s": "é", "b": b"\x00\xff", "i": -5, "big": 2**62, "f": 1.5, "t": True, "n": None,
        "d": decimal.Decimal("1.50"), "ts": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "l": [1, "a", b"x", {"nested": [decimal.Decimal("2")]}],
    }
    assert records.loads(records.dumps(value)) == value


def test_definitions_survive_reopen(tmp_path):
    store = SQLiteStore(str(tmp_path))
    store.put("exchange", ("/", "ex"), {"type": "topic", "arguments": {"alternate-exchange": "ae"}})
    store.put("queue", ("/", "q"), {"id": 1, "arguments": {"x-max-length": 10}})
    store.put("queue", ("/", "gone"), {"id": 2})
    store.delete("queue", ("/", "gone"))
    store.close()
    snapshot = SQLiteStore(str(tmp_path)).load()
    assert snapshot.clean_shutdown
    assert snapshot.definitions["exchange"] == [(("/", "ex"), {"type": "topic", "arguments": {"alternate-exchange": "ae"}})]
    assert snapshot.definitions["queue"] == [(("/", "q"), {"id": 1, "arguments": {"x-max-length": 10}})]


def test_messages_commit_in_order_and_transient_ones_are_dropped_on_load(tmp_path):
    store = SQLiteStore(str(tmp_path))
    queue_id = store.new_queue_id()
    store.put("queue", ("/", "q"), {"id": queue_id})
    for seq in range(1, 6):
        store.add_message(queue_id, seq, "", "q", b"\x00\x00", b"m%d" % seq, persistent=seq != 3)
    store.remove_message(queue_id, 2)  # cancels the insert: never written
    store.commit_now()
    store.remove_message(queue_id, 4)  # a real delete
    store.set_redelivered(queue_id, 5)
    store.commit_now()
    store.close(clean=True)
    reopened = SQLiteStore(str(tmp_path))
    reopened.load()
    got = reopened.read_messages(queue_id)
    assert [(m.seq, m.body, m.redelivered) for m in got] == [(1, b"m1", False), (5, b"m5", True)]
    assert reopened.new_queue_id() == queue_id + 1


def test_unclean_shutdown_is_reported(tmp_path):
    store = SQLiteStore(str(tmp_path))
    store.commit_now()
    # no close(), only the lock released as the kernel does when the process dies: as after kill -9
    store.lock.release()
    assert not SQLiteStore(str(tmp_path)).load().clean_shutdown


def test_one_store_per_data_directory(tmp_path):
    store = SQLiteStore(str(tmp_path))
    with pytest.raises(DataDirBusy, match=f"is in use by the broker with pid {os.getpid()}"):
        SQLiteStore(str(tmp_path))
    with pytest.raises(DataDirBusy):
        DataDirLock(str(tmp_path)).acquire()
    store.close()
    SQLiteStore(str(tmp_path)).close()  # closing gave the directory up


def test_a_store_that_fails_to_open_gives_its_directory_up(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        SQLiteStore(str(tmp_path))
    DataDirLock(str(tmp_path)).acquire().release()


def test_after_commit_callbacks_run_once_the_batch_is_written(tmp_path):
    store = SQLiteStore(str(tmp_path))
    woken = []
    store.on_pending = lambda: woken.append(True)
    results = []
    store.add_message(1, 1, "", "q", b"\x00\x00", b"x", persistent=True)
    store.after_commit(results.append)
    store.add_message(1, 2, "", "q", b"\x00\x00", b"y", persistent=True)
    assert woken == [True]  # woken once per batch, not per write
    assert results == []
    batch = store.take_batch()
    assert not store.has_pending
    store.write_batch(batch)
    for callback in batch.callbacks:
        callback(True)
    assert results == [True]


def test_dropping_a_queue_discards_pending_and_stored_messages(tmp_path):
    store = SQLiteStore(str(tmp_path))
    store.add_message(7, 1, "", "q", b"\x00\x00", b"a", persistent=True)
    store.commit_now()
    store.add_message(7, 2, "", "q", b"\x00\x00", b"b", persistent=True)
    store.drop_queue(7)
    store.commit_now()
    assert store.read_messages(7) == []


def test_write_failure_raises_store_error(tmp_path):
    store = SQLiteStore(str(tmp_path))
    store._db.execute("PRAGMA query_only = 1")  # every write now fails, as on a read-only disk
    store.add_message(1, 1, "", "q", b"\x00\x00", b"x", persistent=True)
    results = []
    store.after_commit(results.append)
    with pytest.raises(StoreError, match="cannot write to the store"):
        store.commit_now()
    assert results == [False]


def test_unwritable_data_dir_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot use the data directory .*: .*Not a directory"):
        SQLiteStore(str(blocker / "data"))


def test_a_file_where_the_data_dir_should_be_is_named(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=r"cannot use the data directory .*data: it exists and is not a directory$"):
        SQLiteStore(str(blocker))


def test_closing_twice_closes_once(tmp_path, caplog):
    # A failed start can close the store on two paths; the second must not log an error.
    store = SQLiteStore(str(tmp_path))
    store.close(clean=False)
    with caplog.at_level("ERROR", logger="amqp_broker.store"):
        store.close(clean=True)
    assert caplog.records == []
    reopened = SQLiteStore(str(tmp_path))
    assert reopened.opened_clean is False  # the first close's word stands
    reopened.close()


def test_corrupt_file_gives_a_clear_error(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        SQLiteStore(str(tmp_path))


def test_torn_wal_tail_is_discarded_on_open(tmp_path):
    store = SQLiteStore(str(tmp_path))
    store.add_message(1, 1, "", "q", b"\x00\x00", b"kept", persistent=True)
    store.commit_now()
    store.add_message(1, 2, "", "q", b"\x00\x00", b"torn", persistent=True)
    store.commit_now()
    wal = tmp_path / (DB_NAME + "-wal")
    # Simulate a crash in the middle of the last commit: cut the WAL inside its final frame.
    data = wal.read_bytes()
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    (copy_dir / DB_NAME).write_bytes((tmp_path / DB_NAME).read_bytes())
    (copy_dir / (DB_NAME + "-wal")).write_bytes(data[: len(data) - 100])
    reopened = SQLiteStore(str(copy_dir))
    bodies = [m.body for m in reopened.read_messages(1)]
    assert bodies == [b"kept"]


_NO_DESCRIPTORS_LEFT = r'''
import errno, os, sys
from amqp_broker.store.sqlite import SQLiteStore

store = SQLiteStore(sys.argv[1])
for seq in range(1, 101):
    store.add_message(1, seq, "", "q", b"\x00\x00", b"old %d" % seq + b"x" * 4096, persistent=True)
store.commit_now()
spare = []
try:
    while True:
        spare.append(os.open(os.devnull, os.O_RDONLY))
except OSError as exc:
    assert exc.errno == errno.EMFILE, exc
try:
    # Large statements (their statement journals would spill to temp files), then reads.
    for seq in range(101, 301):
        store.add_message(1, seq, "", "q", b"\x00\x00", b"new %d" % seq + b"x" * 65536, persistent=True)
    for seq in range(1, 51):
        store.set_redelivered(1, seq)
    store.remove_range(1, 1, 10)
    store.commit_now()
    rows = store.read_messages(1)
    print(len(rows), rows[0].seq, rows[0].redelivered, rows[-1].seq, store.queue_stats(1))
finally:
    for fd in spare:
        os.close(fd)
store.close()
'''


def test_the_store_needs_no_new_descriptor_once_open(tmp_path):
    """Out of descriptors (every number taken), writing and reading messages still work: the
    store holds what it needs open from the start."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _NO_DESCRIPTORS_LEFT, str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["290", "11", "True", "300", "(290,", "11,", "300)"]
