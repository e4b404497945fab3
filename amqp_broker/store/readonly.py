"""A store that serves a snapshot of definitions and writes nowhere.

``amqp-broker definitions export`` rebuilds a broker from a data directory another broker may be
using, only to read its definitions back out: :meth:`Broker.attach_store` needs a store to restore
from and writes the defaults through to it. This class has every method of
:class:`~amqp_broker.store.sqlite.SQLiteStore` the core calls; the reads return the snapshot and
no messages, the writes do nothing, so the directory is never touched.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from .sqlite import Snapshot, StoredMessage


class ReadOnlyStore:
    """Definitions from a :class:`Snapshot`; no messages; every write ignored."""

    batch_id = 0
    committed_id = 0

    def __init__(self, snapshot: Snapshot):
        self._snapshot = snapshot

    # -- reads ------------------------------------------------------------------------------------

    def load(self) -> Snapshot:
        """The snapshot this store was made from."""
        return self._snapshot

    def read_messages(self, queue_id: int, after_seq: int = 0, limit: int = -1) -> list[StoredMessage]:
        """No messages: definitions do not need them."""
        return []

    def all_queue_stats(self) -> dict[int, tuple[int, int, int]]:
        """No queue has stored messages."""
        return {}

    def queue_stats(self, queue_id: int) -> tuple[int, int, int]:
        """Every queue looks empty: (count, first seq, last seq)."""
        return 0, 0, 0

    # -- writes, all ignored ----------------------------------------------------------------------

    def put(self, kind: str, key: Iterable[Any], record: Any) -> None:
        """Ignored."""

    def delete(self, kind: str, key: Iterable[Any]) -> None:
        """Ignored."""

    def new_queue_id(self) -> int:
        """Always 0: nothing is written under it."""
        return 0

    def add_message(
        self, queue_id: int, seq: int, exchange: str, routing_key: str,
        properties: bytes, body: bytes, persistent: bool, redelivered: bool = False,
    ) -> None:
        """Ignored."""

    def remove_message(self, queue_id: int, seq: int) -> None:
        """Ignored."""

    def remove_range(self, queue_id: int, first_seq: int, last_seq: int) -> None:
        """Ignored."""

    def set_redelivered(self, queue_id: int, seq: int) -> None:
        """Ignored."""

    def drop_queue(self, queue_id: int) -> None:
        """Ignored."""

    def after_commit(self, callback: Callable[[bool], None]) -> None:
        """Ignored: nothing is ever committed, so the callback never runs."""
