"""The embedded store: one SQLite file in WAL mode, written by group commit.

Why SQLite: it is in the standard library, crash-safe (the WAL's frames are checksummed, and a torn
tail is discarded on open), inspectable with the ``sqlite3`` shell, and on this class of machine a
batch of 256 inserts + 256 deletes commits with fsync at ~200k messages/s — far above what the
persistent path of RabbitMQ reaches, so the segment-log alternative is not needed (README, Design).

Writes are buffered in memory by the caller's thread (the broker's event loop) and handed over as
one :class:`Batch`; :meth:`SQLiteStore.write_batch` runs it in one transaction, committed with
fsync (``synchronous=FULL``), and is meant to run off the event loop. A message removed before its
insert was committed cancels out and never touches the disk.

Paged-out messages (a queue past its memory limit) go to the spill segments of spill.py instead,
written by the same committer thread after the transaction, without fsync: a batch holding only
those never touches the SQLite file.

The store knows nothing of AMQP: records are JSON-able dicts, messages are opaque fields.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import StoreError, records
from .lock import DataDirLock
from .spill import SegmentPool, Spill, clear_directory

log = logging.getLogger("amqp_broker.store")

SCHEMA_VERSION = 2
# What a row waiting for its commit costs in memory beyond its body (the row tuple, its key, and
# the caller's message object kept alive until then): the backlog counts it, so a backlog of tiny
# messages is bounded too, not just their bodies.
ROW_OVERHEAD = 256
DB_NAME = "amqp_broker.sqlite3"
# Where paged-out transient messages go (spill.py); emptied at every start.
SPILL_DIR = "transient"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS definitions (
    kind TEXT NOT NULL, key TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, persistent INTEGER NOT NULL, redelivered INTEGER NOT NULL,
    exchange TEXT NOT NULL, routing_key TEXT NOT NULL, properties BLOB NOT NULL, body BLOB NOT NULL
);
"""

# A message's key is (queue id << 40) | sequence number, stored as the rowid: one b-tree, no
# separate index, and rows of up to ~4 KB stay on their page (a WITHOUT ROWID table spills bodies
# over ~1 KB to overflow pages, which measured 2.7x slower for 1 KB messages). 2**40 sequence
# numbers per queue is ~35 years at 1M messages/s.
SEQ_BITS = 40
SEQ_MASK = (1 << SEQ_BITS) - 1


def message_id(queue_id: int, seq: int) -> int:
    """The rowid of a queue's message."""
    return (queue_id << SEQ_BITS) | seq


def _queue_range(queue_id: int) -> tuple[int, int]:
    return queue_id << SEQ_BITS, (queue_id << SEQ_BITS) | SEQ_MASK


@dataclass(slots=True)
class StoredMessage:
    """A message as read back from disk."""

    seq: int
    exchange: str
    routing_key: str
    properties: bytes
    body: bytes
    redelivered: bool
    persistent: bool


@dataclass
class Snapshot:
    """Everything :meth:`SQLiteStore.load` found: definitions by kind, and whether the last
    shutdown was clean (when it was not, every recovered message may have been delivered)."""

    definitions: dict[str, list[tuple[tuple, Any]]]
    clean_shutdown: bool


@dataclass
class Batch:
    """One group commit: definition changes in order, then message inserts, updates and deletes."""

    definitions: list[tuple[str, str, str | None]] = field(default_factory=list)
    adds: dict[tuple[int, int], tuple] = field(default_factory=dict)
    redelivered: list[tuple[int, int]] = field(default_factory=list)
    removes: list[tuple[int, int]] = field(default_factory=list)
    dropped_queues: list[tuple[int, int]] = field(default_factory=list)
    callbacks: list[Callable[[bool], None]] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    removed_ranges: list[tuple[int, int]] = field(default_factory=list)
    batch_id: int = 0
    add_bytes: int = 0
    # Paged-out messages, in order: (spill, record) to append, or (spill, None) to delete it.
    spill_ops: list[tuple[Spill, tuple | None]] = field(default_factory=list)
    spill_done: int = 0  # ops already carried out (a retried batch resumes after them)
    spill_ends: dict[Spill, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.definitions or self.adds or self.redelivered or self.removes
            or self.dropped_queues or self.callbacks or self.meta or self.removed_ranges
            or self.spill_ops
        )

    def needs_db(self) -> bool:
        """Whether the SQLite file is touched: a batch of paged-out transient messages only is
        not, so it costs no transaction and no fsync."""
        return bool(
            self.definitions or self.adds or self.redelivered or self.removes
            or self.dropped_queues or self.meta or self.removed_ranges
        )


def _key(parts: Iterable[Any]) -> str:
    return json.dumps(list(parts), separators=(",", ":"))


class SQLiteStore:
    """Durable definitions and messages in ``<data_dir>/amqp_broker.sqlite3``."""

    def __init__(self, data_dir: str, lock: DataDirLock | None = None):
        """Open (or create) the store. ``lock``: the directory's lock, already held by the caller
        (a broker takes it before binding its port); otherwise it is taken here. Either way the
        store owns it from now on and gives it up in :meth:`close`."""
        self.data_dir = data_dir
        self.path = os.path.join(data_dir, DB_NAME)
        if lock is None:
            lock = DataDirLock(data_dir).acquire()
        self.lock = lock
        self._db: sqlite3.Connection | None = None
        self._closed = False
        try:
            self._open()
        except BaseException:
            # A store that could not open leaves the directory to the next starter.
            if self._db is not None:
                self._db.close()
            lock.release()
            raise

    def _open(self) -> None:
        data_dir = self.data_dir
        try:
            os.makedirs(data_dir, exist_ok=True)
            # check_same_thread=False: batches are written from a worker thread, one at a time.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so a confirmed message survives power loss.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")
            row = self._db.execute("SELECT value FROM meta WHERE key='clean_shutdown'").fetchone()
            # Whether the broker before us shut down cleanly (not: crashed or still running).
            self.opened_clean = row is None or row[0] == "1"
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('clean_shutdown', '0')")
            row = self._db.execute("SELECT value FROM meta WHERE key='next_queue_id'").fetchone()
            self._next_queue_id = int(row[0]) if row else 1
            self.spill_dir = os.path.join(data_dir, SPILL_DIR)
            clear_directory(self.spill_dir)
            self._segments = SegmentPool(self.spill_dir)
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        # Batches are numbered; ``committed_id`` is the newest one known to be on disk, so a caller
        # can tell whether a write it made (in batch ``batch_id``) is readable yet.
        self.batch_id = 1
        self.committed_id = 0
        # Body bytes written but not yet committed (pending plus in flight): the server slows
        # publishers while this is high, so a disk slower than the publishers cannot fill memory.
        self.backlog_bytes = 0
        # Buffered operations so far: a caller compares it before and after an action to learn
        # whether that action wrote anything.
        self.writes = 0
        self._pending = Batch(batch_id=self.batch_id)
        # A second connection for reads: in WAL mode it sees the last commit and never blocks on,
        # or sees half of, a batch the committer thread is writing.
        try:
            self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # Read once now: a connection opens its own handle on the WAL at its first read, and
            # the first page-in may come when the process has no descriptor left to give.
            self._reader.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        # Called when the first operation lands in an empty batch: the server wakes its committer.
        self.on_pending: Callable[[], None] = lambda: None
        self.failed: str | None = None
        self._next_spill_id = 1
        self._spills: dict[int, Spill] = {}

    # -- reading (at start-up, and when paging messages back in) ----------------------------------

    def load(self) -> Snapshot:
        """Read every definition; drop transient messages and those of queues that are gone."""
        try:
            definitions = _read_definitions(self._db)
            # Queues' messages, and those an x-delayed-message exchange holds under its own id.
            queue_ids = [record["id"] for kind in ("queue", "exchange")
                         for _key, record in definitions.get(kind, []) if "id" in record]
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM messages WHERE persistent = 0")
            if not self.opened_clean:
                # After a crash any recovered message may have been delivered: flag them all, in
                # the file too, so the flag outlives the next (clean) restart.
                self._db.execute("UPDATE messages SET redelivered = 1 WHERE redelivered = 0")
            if queue_ids:
                marks = ",".join("?" * len(queue_ids))
                self._db.execute(
                    f"DELETE FROM messages WHERE (id >> {SEQ_BITS}) NOT IN ({marks})", queue_ids
                )
            else:
                self._db.execute("DELETE FROM messages")
            self._db.execute("COMMIT")
        except (sqlite3.Error, ValueError, KeyError) as exc:
            raise StoreError(f"cannot read the store at {self.path}: {exc}") from exc
        return Snapshot(definitions, self.opened_clean)

    def read_messages(
        self, queue_id: int, after_seq: int = 0, limit: int = -1, *,
        upto_seq: int | None = None, max_bytes: int | None = None,
    ) -> list[StoredMessage]:
        """Messages of a queue in sequence order, from ``after_seq`` (exclusive) to ``upto_seq``
        (inclusive); at most ``limit`` of them, and no more once their bodies reach ``max_bytes``."""
        low, high = _queue_range(queue_id)
        if upto_seq is not None:
            high = low | upto_seq
        cursor = self._reader.execute(
            "SELECT id, exchange, routing_key, properties, body, redelivered, persistent "
            "FROM messages WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (low | after_seq, high, limit),
        )
        if max_bytes is None:
            rows = cursor.fetchall()
        else:
            rows = []
            size = 0
            try:
                while size < max_bytes:
                    row = cursor.fetchone()
                    if row is None:
                        break
                    rows.append(row)
                    size += len(row[4])
            finally:
                # An unfinished statement would hold its read snapshot, and with it the WAL.
                cursor.close()
        return [
            StoredMessage(key & SEQ_MASK, ex, rk, bytes(props), bytes(body), bool(redelivered), bool(persistent))
            for key, ex, rk, props, body, redelivered, persistent in rows
        ]

    def all_queue_stats(self) -> dict[int, tuple[int, int, int]]:
        """:meth:`queue_stats` of every queue with stored messages, in one pass (a restart with
        100,000 queues would otherwise pay 100,000 queries)."""
        rows = self._reader.execute(
            f"SELECT id >> {SEQ_BITS}, COUNT(*), MIN(id), MAX(id) FROM messages GROUP BY id >> {SEQ_BITS}"
        ).fetchall()
        return {queue_id: (count, low & SEQ_MASK, high & SEQ_MASK) for queue_id, count, low, high in rows}

    def queue_stats(self, queue_id: int) -> tuple[int, int, int]:
        """(message count, lowest seq, highest seq) of a queue's stored messages."""
        count, low, high = self._reader.execute(
            "SELECT COUNT(*), MIN(id), MAX(id) FROM messages WHERE id BETWEEN ? AND ?",
            _queue_range(queue_id),
        ).fetchone()
        return count, (low or 0) & SEQ_MASK, (high or 0) & SEQ_MASK

    # -- buffered writes (called on the event loop) -----------------------------------------------

    def _touch(self) -> Batch:
        self.writes += 1
        pending = self._pending
        if not pending:
            self.on_pending()
        return pending

    def put(self, kind: str, key: Iterable[Any], record: Any) -> None:
        """Create or replace a definition (vhost, user, exchange, queue, binding, ...)."""
        self._touch().definitions.append((kind, _key(key), records.dumps(record)))

    def delete(self, kind: str, key: Iterable[Any]) -> None:
        """Remove a definition (no error when absent)."""
        self._touch().definitions.append((kind, _key(key), None))

    def records(self, kind: str) -> list[tuple[tuple, Any]]:
        """The committed definitions of one ``kind`` as (key, record) pairs: state kept beside
        the core's (the MQTT listener's retained messages), read at start-up."""
        try:
            rows = self._db.execute("SELECT key, record FROM definitions WHERE kind = ?", (kind,)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the store at {self.path}: {exc}") from exc
        return [(tuple(json.loads(key)), records.loads(record)) for key, record in rows]

    def new_queue_id(self) -> int:
        """A queue id never used before in this data directory."""
        queue_id = self._next_queue_id
        self._next_queue_id += 1
        self._touch().meta["next_queue_id"] = str(self._next_queue_id)
        return queue_id

    def add_message(
        self, queue_id: int, seq: int, exchange: str, routing_key: str,
        properties: bytes, body: bytes, persistent: bool, redelivered: bool = False,
    ) -> None:
        """Queue a message insert for the next commit."""
        pending = self._touch()
        pending.adds[(queue_id, seq)] = (
            message_id(queue_id, seq), int(persistent), int(redelivered), exchange, routing_key,
            properties, body,
        )
        size = len(body) + ROW_OVERHEAD
        pending.add_bytes += size
        self.backlog_bytes += size

    def remove_message(self, queue_id: int, seq: int) -> None:
        """Queue a delete; an insert still waiting for its commit is simply cancelled."""
        pending = self._touch()
        added = pending.adds.pop((queue_id, seq), None)
        if added is None:
            pending.removes.append((message_id(queue_id, seq),))
        else:
            size = len(added[6]) + ROW_OVERHEAD
            pending.add_bytes -= size
            self.backlog_bytes -= size

    def remove_range(self, queue_id: int, first_seq: int, last_seq: int) -> None:
        """Delete a queue's messages with first_seq <= seq <= last_seq (a purged paged backlog)."""
        pending = self._touch()
        for key in [k for k in pending.adds if k[0] == queue_id and first_seq <= k[1] <= last_seq]:
            size = len(pending.adds.pop(key)[6]) + ROW_OVERHEAD
            pending.add_bytes -= size
            self.backlog_bytes -= size
        pending.removed_ranges.append((message_id(queue_id, first_seq), message_id(queue_id, last_seq)))

    def set_redelivered(self, queue_id: int, seq: int) -> None:
        """Record that a stored message has been delivered (it comes back redelivered)."""
        pending = self._touch()
        added = pending.adds.get((queue_id, seq))
        if added is not None:
            pending.adds[(queue_id, seq)] = added[:2] + (1,) + added[3:]
        else:
            pending.redelivered.append((message_id(queue_id, seq),))

    def drop_queue(self, queue_id: int) -> None:
        """Forget every message of a deleted queue."""
        pending = self._touch()
        for key in [k for k in pending.adds if k[0] == queue_id]:
            size = len(pending.adds.pop(key)[6]) + ROW_OVERHEAD
            pending.add_bytes -= size
            self.backlog_bytes -= size
        pending.dropped_queues.append(_queue_range(queue_id))

    def new_spill(self) -> Spill:
        """A FIFO on disk for one queue's paged-out messages (see spill.py): written with the
        batches, without fsync, read back with :meth:`Spill.read`, gone at the next start."""
        spill = Spill(self._segments, self._next_spill_id)
        self._spills[self._next_spill_id] = spill
        self._next_spill_id += 1
        return spill

    def spill_message(
        self, spill: Spill, seq: int, flags: int, exchange: str, routing_key: str,
        properties: bytes, body: bytes,
    ) -> None:
        """Queue a paged-out message for the next commit (readable once it is committed)."""
        pending = self._touch()
        pending.spill_ops.append((spill, (seq, flags, exchange, routing_key, properties, body)))
        size = len(body) + ROW_OVERHEAD
        pending.add_bytes += size
        self.backlog_bytes += size

    def drop_spill(self, spill: Spill) -> None:
        """Delete a spill its reader is done with; its writes not yet handed over are cancelled."""
        pending = self._touch()
        kept = []
        for op in pending.spill_ops:
            if op[0] is spill and op[1] is not None:
                size = len(op[1][5]) + ROW_OVERHEAD
                pending.add_bytes -= size
                self.backlog_bytes -= size
            else:
                kept.append(op)
        kept.append((spill, None))
        pending.spill_ops = kept
        spill.closed = True

    def after_commit(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(ok)`` once everything buffered so far is on disk (or failed to be)."""
        self._touch().callbacks.append(callback)

    @property
    def has_pending(self) -> bool:
        """Whether anything waits for a commit."""
        return bool(self._pending)

    def take_batch(self) -> Batch:
        """Hand over everything buffered so far; new writes start a new batch."""
        batch = self._pending
        self.batch_id += 1
        self._pending = Batch(batch_id=self.batch_id)
        return batch

    def retry_batch(self, batch: Batch) -> None:
        """Put a batch that failed to commit back in front of what is pending, to be written again.

        Its callbacks have been told it failed; its writes must not be lost, because the broker's
        state (and later batch ids) assume them."""
        pending = self._touch()
        pending.definitions[:0] = batch.definitions
        adds = dict(batch.adds)
        adds.update(pending.adds)
        pending.adds = adds
        pending.add_bytes += batch.add_bytes
        pending.redelivered[:0] = batch.redelivered
        pending.removes[:0] = batch.removes
        pending.removed_ranges[:0] = batch.removed_ranges
        pending.dropped_queues[:0] = batch.dropped_queues
        meta = dict(batch.meta)
        meta.update(pending.meta)
        pending.meta = meta
        pending.spill_ops[:0] = batch.spill_ops[batch.spill_done:]

    # -- committing (off the event loop) ----------------------------------------------------------

    def write_batch(self, batch: Batch) -> None:
        """Write one batch in one transaction and fsync it, then its paged-out messages (not
        fsynced: they would not survive a restart anyway). Raises :class:`StoreError`."""
        if batch.needs_db():
            self._write_db(batch)
        try:
            ops = batch.spill_ops
            while batch.spill_done < len(ops):
                spill, record = ops[batch.spill_done]
                if record is None:
                    spill.close()
                    self._spills.pop(spill.spill_id, None)
                    batch.spill_done += 1
                    continue
                # The run of records for this spill from here, written a write at a time.
                run_end = batch.spill_done + 1
                while run_end < len(ops) and ops[run_end][0] is spill and ops[run_end][1] is not None:
                    run_end += 1
                records = [op[1] for op in ops[batch.spill_done:run_end]]
                done = 0
                while done < len(records):
                    written = spill.write_run(records, done)
                    done += written
                    batch.spill_done += written
        except OSError as exc:
            raise StoreError(f"cannot write to {self.spill_dir}: {exc}") from exc
        for spill, _record in batch.spill_ops:
            if not spill.closed:
                batch.spill_ends[spill] = spill.end()

    def _write_db(self, batch: Batch) -> None:
        db = self._db
        try:
            db.execute("BEGIN")
            for kind, key, record in batch.definitions:
                if record is None:
                    db.execute("DELETE FROM definitions WHERE kind = ? AND key = ?", (kind, key))
                else:
                    db.execute("INSERT OR REPLACE INTO definitions VALUES (?, ?, ?)", (kind, key, record))
            if batch.dropped_queues:
                db.executemany("DELETE FROM messages WHERE id BETWEEN ? AND ?", batch.dropped_queues)
            if batch.adds:
                db.executemany(
                    "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)", batch.adds.values()
                )
            if batch.redelivered:
                db.executemany("UPDATE messages SET redelivered = 1 WHERE id = ?", batch.redelivered)
            if batch.removes:
                db.executemany("DELETE FROM messages WHERE id = ?", batch.removes)
            if batch.removed_ranges:
                db.executemany("DELETE FROM messages WHERE id BETWEEN ? AND ?", batch.removed_ranges)
            for key, value in batch.meta.items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise StoreError(f"cannot write to the store at {self.path}: {exc}") from exc

    def commit_now(self) -> None:
        """Write everything pending on the calling thread (start-up, shutdown, tests)."""
        batch = self.take_batch()
        ok = True
        try:
            if batch:
                self.write_batch(batch)
        except StoreError:
            ok = False
            raise
        finally:
            self.batch_done(batch, ok)
            for callback in batch.callbacks:
                callback(ok)

    def batch_done(self, batch: Batch, ok: bool) -> None:
        """Account for a batch that was written (``ok``) or failed (it is queued again)."""
        if ok:
            self.committed_id = batch.batch_id
            self.backlog_bytes -= batch.add_bytes
            for spill, end in batch.spill_ends.items():
                spill.readable = end
        else:
            self.retry_batch(batch)

    def close(self, clean: bool = True) -> None:
        """Flush, record whether the shutdown was clean, close the file and give up the lock.
        Closing again does nothing (a failed start may close it on two paths)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.commit_now()
            if clean:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('clean_shutdown', '1')")
        except (sqlite3.Error, StoreError) as exc:
            log.error("closing the store at %s: %s", self.path, exc)
        finally:
            for spill in list(self._spills.values()):
                spill.close()
            self._spills.clear()
            self._segments.close()
            clear_directory(self.spill_dir)
            self._reader.close()
            self._db.close()
            self.lock.release()


# -- read-only access, for a directory a broker may be using ---------------------------------------


def _read_definitions(db: sqlite3.Connection) -> dict[str, list[tuple[tuple, Any]]]:
    definitions: dict[str, list[tuple[tuple, Any]]] = {}
    for kind, key, record in db.execute("SELECT kind, key, record FROM definitions"):
        definitions.setdefault(kind, []).append((tuple(json.loads(key)), records.loads(record)))
    return definitions


def _open_read_only(data_dir: str) -> sqlite3.Connection:
    """``data_dir``'s store file opened read-only, its schema checked. No lock is taken: in WAL
    mode a reader sees the last commit of a broker writing at the same time, and disturbs nothing."""
    path = os.path.join(data_dir, DB_NAME)
    if not os.path.exists(path):
        raise StoreError(f"no broker data in {data_dir} ({path} does not exist)")
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the store at {path}: {exc}") from None
    if row is None or int(row[0]) != SCHEMA_VERSION:
        db.close()
        raise StoreError(f"{path}: schema version {row[0] if row else 'unknown'}, expected {SCHEMA_VERSION}")
    return db


def read_snapshot(data_dir: str) -> Snapshot:
    """The definitions ``data_dir``'s store has committed, read without changing anything there
    (unlike :meth:`SQLiteStore.load`, which also drops what a restart drops)."""
    db = _open_read_only(data_dir)
    try:
        definitions = _read_definitions(db)
        row = db.execute("SELECT value FROM meta WHERE key='clean_shutdown'").fetchone()
    except (sqlite3.Error, ValueError) as exc:
        raise StoreError(f"cannot read the store in {data_dir}: {exc}") from None
    finally:
        db.close()
    return Snapshot(definitions, row is None or row[0] == "1")


def left_unclean(data_dir: str) -> bool:
    """Whether the data directory's last broker did not shut down cleanly (it crashed, or it
    still runs); False for a directory without a store."""
    if not os.path.exists(os.path.join(data_dir, DB_NAME)):
        return False
    db = _open_read_only(data_dir)
    try:
        row = db.execute("SELECT value FROM meta WHERE key='clean_shutdown'").fetchone()
    finally:
        db.close()
    return row is not None and row[0] != "1"
