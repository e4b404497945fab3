"""One broker per data directory: an exclusive OS lock held for the life of the process.

Two brokers on one store each believe they own it: both recover and deliver the same messages,
both allocate the same queue ids, and each one's commits undo the other's (confirmed messages
were lost that way). RabbitMQ refuses to start a second node on a data directory; so do we.

The lock is ``flock`` on ``<data_dir>/amqp_broker.lock``. The kernel releases it when the holder's
descriptor closes, which a ``kill -9`` or a crash does too, so a dead broker never leaves a stale
lock behind, and no pid has to be checked for liveness. The file also holds the holder's pid, for
the message a refused starter prints.
"""

from __future__ import annotations

import fcntl
import os

from . import StoreError

LOCK_NAME = "amqp_broker.lock"


class DataDirBusy(StoreError):
    """Another process holds the data directory's lock; the message names its pid."""


class DataDirLock:
    """The exclusive lock on one data directory (created if missing)."""

    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.path = os.path.join(data_dir, LOCK_NAME)
        self._fd = -1

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd >= 0

    def acquire(self) -> "DataDirLock":
        """Take the lock without waiting; raises :class:`DataDirBusy` naming the holder, or
        StoreError when the directory cannot be created or the file opened."""
        if self.held:
            return self
        try:
            os.makedirs(self.data_dir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            where = os.path.abspath(self.data_dir)
            # The directory is named already; name the file only when it is another one.
            reason = exc.strerror or str(exc)
            if os.path.lexists(where) and not os.path.isdir(where):
                reason = "it exists and is not a directory"
            elif exc.filename and os.path.abspath(exc.filename) != where:
                reason += f": {exc.filename}"
            raise StoreError(f"cannot use the data directory {where}: {reason}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"the broker with pid {holder}" if holder else "another broker"
            raise DataDirBusy(
                f"data directory {os.path.abspath(self.data_dir)} is in use by {who}: "
                "one broker per data directory"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock the data directory {os.path.abspath(self.data_dir)}: {exc}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid only makes a refusal's message better; the lock is what counts
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (closing the descriptor releases it). The file stays: removing it
        would let a starter lock a fresh file while another still waits on the old one."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError):
        return 0
