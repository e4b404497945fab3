"""The task that drives the broker core's timer heap (:class:`amqp_broker.broker.timers.Timers`).

It sleeps until the earliest deadline, runs what is due, and goes back to sleep; the core's
``on_change`` hook wakes it early when an earlier deadline is scheduled. One task for the whole
broker, however many timers: the core never creates trio tasks of its own.
"""

from __future__ import annotations

import math

import trio

from ..broker.timers import Timers


async def drive_timers(timers: Timers) -> None:
    """Run ``timers`` until cancelled."""
    wakeup = trio.Event()

    def on_change() -> None:
        wakeup.set()

    timers.on_change = on_change
    try:
        while True:
            deadline = timers.next_deadline()
            # The heap's clock is not trio's, so sleep for the difference rather than until.
            delay = math.inf if deadline is None else deadline - timers.clock()
            if delay > 0:
                with trio.move_on_after(delay):
                    await wakeup.wait()
            if wakeup.is_set():
                wakeup = trio.Event()
            timers.run_due()
    finally:
        timers.on_change = lambda: None
