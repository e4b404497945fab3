"""Publisher flow control: stop reading from publishing connections while the broker can't keep up.

Two kinds of reason, as in RabbitMQ:

* **alarms** (``memory``, ``disk``): the resident memory passed the high watermark, or free disk
  space fell below the limit. A connection is read up to its next publish (method or content
  frame, so one in the middle of a body too) and then not at all until the alarms clear; at that
  moment a client that announced the ``connection.blocked`` capability is told so with RabbitMQ's
  reason text, and gets ``connection.unblocked`` when they clear. As with RabbitMQ, a connection
  that does not publish during an alarm is neither held nor told.
* **flow** (``store``): more bytes wait to be written to disk than the store's budget. Publishers
  are paused silently until the committer catches up (RabbitMQ's internal credit flow).

Consumers keep being served throughout: that is how backlogs drain.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Callable, Iterable

import trio

from .allocator import release_free_memory

log = logging.getLogger("amqp_broker.flow")

ALARMS = ("memory", "disk")
# RabbitMQ's connection.blocked reason texts.
BLOCKED_REASONS = {"memory": "low on memory", "disk": "low on disk space"}
# How often memory and free disk are sampled (RabbitMQ checks memory every 500 ms by default).
MONITOR_INTERVAL = 0.5
# Above this fraction of the memory limit the heap's free pages are given back to the kernel, at
# most every TRIM_INTERVAL seconds (a trim walks the heap: a few ms for a large one); above the
# limit itself, at every sample.
TRIM_ABOVE = 0.5
TRIM_INTERVAL = 5.0


class FlowControl:
    """The set of active reasons to stop reading publishers, and the event they wait for."""

    def __init__(self, connections: Callable[[], Iterable]):
        self.reasons: set[str] = set()
        # What connections are told to do with publishes (Connection.hold_publishes): None to go
        # on, else the connection.blocked reason of the first alarm on ("" for flow alone).
        self.hold: str | None = None
        self._resumed = trio.Event()
        self._resumed.set()
        self._connections = connections

    @property
    def active(self) -> bool:
        """Whether publishers must wait."""
        return bool(self.reasons)

    async def wait(self) -> None:
        """Return once no reason to hold publishers is left."""
        while self.reasons:
            await self._resumed.wait()

    def block(self, reason: str) -> None:
        """Start holding publishers for ``reason`` (idempotent)."""
        if reason in self.reasons:
            return
        self.reasons.add(reason)
        self._update_hold()
        if self._resumed.is_set():
            self._resumed = trio.Event()
        if reason in ALARMS:
            log.warning("%s alarm set: publishers are blocked", reason)

    def unblock(self, reason: str) -> None:
        """Stop holding publishers for ``reason`` (idempotent)."""
        if reason not in self.reasons:
            return
        self.reasons.discard(reason)
        self._update_hold()
        if reason in ALARMS:
            log.warning("%s alarm cleared", reason)
            if not any(r in ALARMS for r in self.reasons):
                for conn in self._connections():
                    conn.protocol.notify_unblocked()
        if not self.reasons:
            self._resumed.set()

    def _update_hold(self) -> None:
        alarms = [BLOCKED_REASONS[r] for r in ALARMS if r in self.reasons]
        self.hold = alarms[0] if alarms else ("" if self.reasons else None)


def total_memory() -> int:
    """Physical memory in bytes (MemTotal)."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def resident_memory(statm_fd: int | None = None) -> int:
    """This process's resident set size in bytes, read from ``statm_fd`` (an open
    ``/proc/self/statm``) when given: the monitor keeps it open, so a broker out of descriptors
    can still sample its memory."""
    if statm_fd is None:
        with open("/proc/self/statm", "rb") as statm:
            data = statm.read()
    else:
        data = os.pread(statm_fd, 256, 0)
    return int(data.split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_limit(watermark: float) -> int:
    """The high watermark in bytes: a fraction of RAM when <= 1 (RabbitMQ's relative
    vm_memory_high_watermark), an absolute number of bytes when larger; 0 disables the alarm."""
    if watermark <= 0:
        return 0
    if watermark <= 1:
        return int(total_memory() * watermark)
    return int(watermark)


async def monitor(flow: FlowControl, limits: Callable[[], tuple[int, str, int]]) -> None:
    """Raise and clear the memory and disk alarms until cancelled.

    ``limits()`` gives (memory limit in bytes or 0, data directory, free-disk limit in bytes or 0),
    read every round so they can change while running. A sample that fails (say, for lack of
    descriptors) leaves its alarm as it is and is logged once until sampling works again: the
    monitor never ends the broker."""
    try:
        statm_fd: int | None = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        statm_fd = None  # not Linux (the memory sample will fail, and say so once)
    failing: set[str] = set()
    last_trim = -TRIM_INTERVAL
    try:
        while True:
            memory, data_dir, disk_free_limit = limits()
            if memory:
                rss = _sample("memory", failing, resident_memory, statm_fd)
                now = trio.current_time()
                if rss is not None and (rss > memory or (
                        rss > memory * TRIM_ABOVE and now - last_trim > TRIM_INTERVAL)):
                    # Free heap pages count as resident until they are given back: the alarm
                    # is about memory in use, so give them back before judging.
                    last_trim = now
                    release_free_memory()
                    rss = _sample("memory", failing, resident_memory, statm_fd)
                if rss is not None:
                    if rss > memory:
                        flow.block("memory")
                    else:
                        flow.unblock("memory")
            else:
                flow.unblock("memory")
            if disk_free_limit and data_dir:
                usage = _sample("disk", failing, shutil.disk_usage, data_dir)
                if usage is not None:
                    if usage.free < disk_free_limit:
                        flow.block("disk")
                    else:
                        flow.unblock("disk")
            else:
                flow.unblock("disk")
            await trio.sleep(MONITOR_INTERVAL)
    finally:
        if statm_fd is not None:
            os.close(statm_fd)


def _sample(what: str, failing: set[str], fn: Callable, *args):
    """``fn(*args)``, or None when it fails; a failure is logged when it starts and when it ends."""
    try:
        value = fn(*args)
    except Exception as exc:  # a sampler's failure must never end the broker
        if what not in failing:
            failing.add(what)
            log.warning("cannot sample %s use (%s); the %s alarm stays as it is until it can",
                        what, exc, what, exc_info=not isinstance(exc, OSError))
        return None
    if what in failing:
        failing.discard(what)
        log.warning("sampling %s use works again", what)
    return value
