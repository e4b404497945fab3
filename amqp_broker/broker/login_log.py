"""Failed logins, logged once per peer address and interval rather than one line each.

A client retrying a wrong password in a loop (or someone guessing) would otherwise write a line
per attempt. The first failure from an address is logged in full (peer, mechanism, user and
why); further failures from that address within the interval are only counted, and the count is
logged as one line ("N more failed logins from PEER in the last 60 s") when the interval ends, or
just before the next full line for that address, whichever comes first.

Bounded: at most :data:`MAX_PEERS` addresses are tracked (the oldest goes first, its count
logged then), and one timer on the core's heap serves them all: entries are kept in the order
they started, so the earliest to end is always the first.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .timers import Timer, Timers

log = logging.getLogger("amqp_broker.connection")

#: Most peer addresses whose failures are being counted at once.
MAX_PEERS = 1000


def peer_host(peer: str) -> str:
    """The address part of ``host:port`` (IPv6 addresses hold colons of their own)."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


class FailedLogins:
    """Rate-limited logging of refused logins; ``interval`` 0 logs every one."""

    def __init__(self, timers: "Timers", interval: float = 60.0, max_peers: int = MAX_PEERS):
        self.timers = timers
        self.interval = interval
        self.max_peers = max_peers
        # address -> [interval start, failures counted since the full line], oldest first.
        self._peers: OrderedDict[str, list] = OrderedDict()
        self._timer: "Timer | None" = None

    def refused(self, peer: str, line: str, *args: object) -> None:
        """A login from ``peer`` (host:port) was refused: log ``line % args`` when it is the
        first from that address in the interval, else count it."""
        if self.interval <= 0:
            log.warning(line, *args)
            return
        now = self.timers.clock()
        self._flush(now)
        host = peer_host(peer)
        entry = self._peers.get(host)
        if entry is not None:
            entry[1] += 1
            return
        log.warning(line, *args)
        while len(self._peers) >= self.max_peers:
            old_host, (_start, count) = self._peers.popitem(last=False)
            self._summarise(old_host, count, now - _start)
        self._peers[host] = [now, 0]
        if self._timer is None:
            self._arm()

    def tracked(self) -> int:
        """How many addresses are being counted (for tests and the curious)."""
        return len(self._peers)

    def _summarise(self, host: str, count: int, seconds: float) -> None:
        if count:
            log.warning("%d more failed login%s from %s in the last %d s",
                        count, "" if count == 1 else "s", host, max(1, math.ceil(min(seconds, self.interval))))

    def _flush(self, now: float) -> None:
        peers = self._peers
        while peers:
            host, (start, count) = next(iter(peers.items()))
            if now - start < self.interval:
                break
            del peers[host]
            self._summarise(host, count, self.interval)

    def _arm(self) -> None:
        start = next(iter(self._peers.values()))[0]
        self._timer = self.timers.call_at(start + self.interval, self._due)

    def _due(self) -> None:
        self._timer = None
        self._flush(self.timers.clock())
        if self._peers:
            self._arm()
