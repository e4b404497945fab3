"""File descriptors: the CLI raises its limit at start, and running out refuses connections for a
moment instead of ending the broker.

* :func:`raise_fd_limit` lifts RLIMIT_NOFILE's soft limit to the hard limit, as RabbitMQ does
  (capped at the kernel's ``nr_open`` when the hard limit is unlimited). Called by the CLI only:
  an embedded broker leaves its host process's limit alone.
* :func:`serve_listeners` replaces :func:`trio.serve_listeners`: when ``accept`` fails for lack of
  descriptors (or kernel memory) it logs one warning for the episode, not a traceback every
  100 ms, waits briefly and tries again, so connections left in the listen backlog are accepted
  once descriptors free up; it logs once more when accepting works again.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

import trio

if TYPE_CHECKING:  # pragma: no cover
    from .admission import ConnectionMax

log = logging.getLogger("amqp_broker.server")

# accept() errors that mean "no resources for a new socket right now" (trio's own list).
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# How long to wait before trying accept() again while out of descriptors.
ACCEPT_RETRY_DELAY = 0.1
# Used when the hard limit is unlimited and the kernel's ceiling cannot be read.
FALLBACK_MAX = 1 << 20

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]


def fd_limit() -> int | None:
    """The soft RLIMIT_NOFILE, or None where there is none (or it is unlimited)."""
    if resource is None:  # pragma: no cover
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _kernel_ceiling() -> int:
    """The most descriptors a process may have when the hard limit is unlimited."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/sys/fs/nr_open") as f:
                return int(f.read())
        except (OSError, ValueError):
            pass
    elif sys.platform == "darwin":  # setrlimit refuses more than OPEN_MAX there
        return 10240
    return FALLBACK_MAX


def raise_fd_limit() -> tuple[int, int] | None:
    """Raise the soft descriptor limit to the hard one; return (limit before, limit now).

    None where the platform has no such limit. A refusal keeps the old limit (before == now).
    """
    if resource is None:  # pragma: no cover
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _kernel_ceiling() if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.debug("cannot raise the file descriptor limit from %d to %d: %s", soft, target, exc)
        else:
            return soft, target
    return soft, soft


def log_fd_limit(result: tuple[int, int] | None) -> None:
    """One INFO line with the limit :func:`raise_fd_limit` left."""
    if result is None:  # pragma: no cover
        return
    before, now = result
    if now == resource.RLIM_INFINITY:  # pragma: no cover - soft limit already unlimited
        log.info("file descriptor limit: unlimited")
    elif now != before:
        log.info("file descriptor limit: %d (raised from %d)", now, before)
    else:
        log.info("file descriptor limit: %d", now)


def open_fd_count() -> int | None:
    """How many descriptors this process has open, or None when that cannot be read."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself used
    except OSError:
        return None


class _Refusing:
    """One "refusing connections" episode shared by every listener, so it is logged once."""

    def __init__(self) -> None:
        self.since: float | None = None

    def start(self, exc: OSError) -> None:
        if self.since is not None:
            return
        self.since = trio.current_time()
        if exc.errno == errno.EMFILE:
            limit = fd_limit()
            # accept() gives EMFILE only when every number below the limit is taken.
            count = open_fd_count() or limit
            log.warning("out of file descriptors (%s open, limit %s): refusing new connections "
                        "for a moment", count, limit)
        else:
            log.warning("cannot accept connections (%s): refusing new connections for a moment",
                        os.strerror(exc.errno or 0))

    def stop(self) -> None:
        if self.since is None:
            return
        log.warning("accepting connections again (refused for %.1f s)",
                    trio.current_time() - self.since)
        self.since = None


async def serve_listeners(
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    listeners: Sequence[trio.SocketListener],
    *,
    handler_nursery: trio.Nursery,
    gate: "ConnectionMax | None" = None,
) -> None:
    """Accept on every listener and start ``handler(stream)`` in ``handler_nursery`` until
    cancelled; running out of descriptors pauses accepting, it never raises. With a ``gate``
    (connection_max), accepting also waits while it is full."""
    refusing = _Refusing()
    if gate is not None:
        inner = handler

        async def handler(stream: trio.SocketStream) -> None:
            try:
                await inner(stream)
            finally:
                gate.closed()

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, handler, handler_nursery, refusing, gate)


async def _accept_loop(listener, handler, handler_nursery: trio.Nursery, refusing: _Refusing,
                       gate: "ConnectionMax | None" = None) -> None:
    while True:
        if gate is not None:
            await gate.wait_for_room()
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            refusing.start(exc)
            await trio.sleep(ACCEPT_RETRY_DELAY)
            continue
        refusing.stop()
        if gate is not None:
            gate.opened()  # counted now: the handler starts later, after more accepts maybe
        handler_nursery.start_soon(handler, stream)
