"""Timers for the broker core, without an event loop: a heap of deadlines the server drives.

The core schedules work (message TTL expiry, queue x-expires, consumer timeouts) with
:meth:`Timers.call_at`; the server layer sleeps until :meth:`Timers.next_deadline` and then calls
:meth:`Timers.run_due`. ``on_change`` tells the server that an earlier deadline appeared, so it can
re-arm its sleep. Time is the core's clock (monotonic seconds), injectable for tests.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from typing import Callable

log = logging.getLogger("amqp_broker.timers")


class Timer:
    """A scheduled call; :meth:`cancel` makes it a no-op (it stays in the heap until due)."""

    __slots__ = ("deadline", "order", "callback", "cancelled")

    def __init__(self, deadline: float, order: int, callback: Callable[[], None]):
        self.deadline = deadline
        self.order = order
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run this timer."""
        self.cancelled = True

    def __lt__(self, other: "Timer") -> bool:
        return (self.deadline, self.order) < (other.deadline, other.order)


class Timers:
    """A min-heap of :class:`Timer` objects."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._heap: list[Timer] = []
        self._order = itertools.count()
        # Set by the server: called when a new earliest deadline is scheduled.
        self.on_change: Callable[[], None] = lambda: None

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once the clock reaches ``deadline``."""
        timer = Timer(deadline, next(self._order), callback)
        heap = self._heap
        earliest = not heap or timer < heap[0]
        heapq.heappush(heap, timer)
        if earliest:
            self.on_change()
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` after ``delay`` seconds."""
        return self.call_at(self.clock() + delay, callback)

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is scheduled."""
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0].deadline if heap else None

    def run_due(self, now: float | None = None) -> int:
        """Run every timer whose deadline has passed; returns how many ran."""
        now = self.clock() if now is None else now
        heap = self._heap
        ran = 0
        while heap and heap[0].deadline <= now:
            timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            ran += 1
            try:
                timer.callback()
            except Exception:  # one failing timer must not stop the others (or the broker)
                log.exception("timer callback failed")
        return ran

    def __len__(self) -> int:
        return sum(1 for timer in self._heap if not timer.cancelled)
