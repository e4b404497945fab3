"""RabbitMQ's ``connection_max``: the most client connections the node serves at once.

RabbitMQ hands the setting to ranch as its listeners' ``max_connections``: once that many
connections are open, its acceptors stop accepting, so a further client's TCP connection waits in
the kernel's listen backlog (connected, but sent no connection.start) until an open connection
closes, or until the client gives up. Nothing is refused and no AMQP error is sent. This does the
same: :meth:`ConnectionMax.wait_for_room` holds the accept loops while the count is at the limit.
Every socket counts, from accept to close, whatever its AMQP state, as ranch counts its
connection processes. With several listeners (IPv4 and IPv6) a burst may overshoot by one per
extra listener, as ranch's acceptors may.
"""

from __future__ import annotations

import logging

import trio

log = logging.getLogger("amqp_broker.server")


class ConnectionMax:
    """The open-connection count against ``limit`` (0: no limit, RabbitMQ's ``infinity``)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0
        self._room = trio.Event()
        self._full_since: float | None = None

    async def wait_for_room(self) -> None:
        """Return once another connection may be accepted."""
        while self.limit and self.count >= self.limit:
            if self._full_since is None:
                self._full_since = trio.current_time()
                log.warning("connection_max (%d) reached: new connections wait in the listen backlog "
                            "until one closes", self.limit)
            if self._room.is_set():  # every waiter shares one event, renewed once used
                self._room = trio.Event()
            await self._room.wait()
        if self._full_since is not None:
            log.info("accepting connections again (connection_max was reached for %.1f s)",
                     trio.current_time() - self._full_since)
            self._full_since = None

    def opened(self) -> None:
        self.count += 1

    def closed(self) -> None:
        self.count -= 1
        self._room.set()
