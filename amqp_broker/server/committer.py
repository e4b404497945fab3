"""Group commit: one task writes whatever the broker buffered, in a worker thread, then confirms.

While one batch is being written and fsynced, new writes gather into the next one, so under load
a single fsync covers many messages and no connection ever waits on the disk (README.md,
"Design", "Group commit").
"""

from __future__ import annotations

import logging
from typing import Callable

import trio

from ..store.sqlite import SQLiteStore, StoreError

log = logging.getLogger("amqp_broker.store")

# After a failed write (disk full, I/O error) wait this long before trying again, so a broken disk
# costs one attempt per second, not a busy loop.
RETRY_DELAY = 1.0


class Committer:
    """Drives :meth:`SQLiteStore.write_batch` off the event loop."""

    def __init__(self, store: SQLiteStore, on_committed: Callable[[bool], None]):
        self.store = store
        self.on_committed = on_committed
        self._wakeup = trio.Event()
        # Set (and replaced) after every commit attempt, for wait_committed.
        self._committed = trio.Event()
        self.attempted_id = 0
        store.on_pending = self._wake
        self.failing = False

    def _wake(self) -> None:
        self._wakeup.set()

    async def wait_committed(self, batch_id: int) -> None:
        """Return once batch ``batch_id`` (and every one before it) has been written, or an
        attempt to write it failed: a broken disk must not hold a connection's output (its nacks
        among it) forever; the write itself is retried."""
        while self.attempted_id < batch_id:
            await self._committed.wait()

    async def run(self) -> None:
        """Commit batches until cancelled."""
        store = self.store
        while True:
            if not store.has_pending:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                continue
            # Shielded from here on: once taken, a batch must be written (or handed back) even
            # if shutdown cancels this task, or what it held would be lost.
            with trio.CancelScope(shield=True):
                batch = store.take_batch()
                ok = True
                try:
                    await trio.to_thread.run_sync(store.write_batch, batch)
                except StoreError as exc:
                    ok = False
                    log.error("%s; %d confirm(s) will be nacked, retrying in %.0f s",
                              exc, len(batch.callbacks), RETRY_DELAY)
                store.batch_done(batch, ok)
                if ok and self.failing:
                    log.warning("the store at %s is writable again", store.path)
                self.failing = not ok
                for callback in batch.callbacks:
                    try:
                        callback(ok)
                    except Exception:  # one channel's bug must not stop durability for all
                        log.exception("confirm callback failed")
                self.on_committed(ok)
                self.attempted_id = batch.batch_id
                self._committed.set()
                self._committed = trio.Event()
            if not ok:
                await trio.sleep(RETRY_DELAY)
