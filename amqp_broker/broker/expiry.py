"""Message TTL: the ``expiration`` property's rules and a buffer that expires messages at its head.

RabbitMQ 3.10 classic (and quorum) queues expire messages *at the head*: a message whose TTL has
passed is removed when it reaches the head, and a timer set for the head's deadline removes it then
even with nobody reading (rabbit_amqqueue_process:drop_expired_msgs/ensure_ttl_timer). A message
with a short per-message TTL behind a long-lived one therefore waits, exactly as in RabbitMQ.
"""

from __future__ import annotations

import re
from collections import deque
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import precondition_failed
from .message import QueueEntry

if TYPE_CHECKING:  # pragma: no cover
    from .timers import Timer

# rabbit_misc:check_expiry/1's upper bound (10 years in ms, ?MAX_EXPIRY_TIMER in 3.10): measured
# against RabbitMQ 3.10.8, 315360000000 is accepted and 315360000001 refused.
MAX_EXPIRY_MS = 315_360_000_000
# string:to_integer/1: an optional sign, then ASCII digits (Python's int() would also take
# spaces, underscores and non-ASCII digits, which RabbitMQ refuses).
_INTEGER_PREFIX = re.compile(r"[+-]?[0-9]+")


def _erlang_string(text: str) -> str:
    # How ~p prints a string: double-quoted with " and \ escaped; a list of codes when it is not
    # printable.
    if all(32 <= ord(ch) < 127 for ch in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ",".join(str(b) for b in text.encode("utf-8")) + "]"


def parse_expiration(expiration: str) -> int:
    """The TTL in ms of an ``expiration`` property, or 406 with RabbitMQ's text
    (``invalid expiration 'abc': no_integer``), as rabbit_channel:check_expiration_header does."""
    match = _INTEGER_PREFIX.match(expiration)
    if match is None:
        problem = "no_integer"
    elif match.end() != len(expiration):
        problem = "{leftover_string,%s}" % _erlang_string(expiration[match.end():])
    else:
        value = int(match.group())
        if value > MAX_EXPIRY_MS:
            problem = "{value_too_large,%d}" % value
        elif value < 0:
            problem = "{value_negative,%d}" % value
        else:
            return value
    raise precondition_failed(f"invalid expiration '{expiration}': {problem}")


class ExtBuffer:
    """Wraps a queue's buffer for queues with a TTL or a quorum queue's return order.

    - Expiry: ``__bool__`` and ``__len__`` first remove expired entries at the head (of each
      priority level), so a reader never sees one; ``pop`` itself never drops, so that a dispatch
      loop that just saw a non-empty buffer always gets an entry.
    - Returns (quorum): requeued entries go to a FIFO served before everything else, in the order
      they came back (rabbit_fifo's ``returns`` queue), instead of their original positions.
    """

    __slots__ = ("inner", "ext", "returns", "returns_bytes", "returns_first")

    def __init__(self, inner: Any, ext: Any, returns_first: bool):
        self.inner = inner
        self.ext = ext
        self.returns: deque[QueueEntry] = deque()
        self.returns_bytes = 0
        self.returns_first = returns_first

    # -- what dispatch and the queue read -----------------------------------------------------------

    def __len__(self) -> int:
        if self.ext.ttl_active:
            self.ext.expire()
        return len(self.inner) + len(self.returns)

    def __bool__(self) -> bool:
        if self.ext.ttl_active:
            self.ext.expire()
        return bool(self.returns) or bool(self.inner)

    @property
    def bytes(self) -> int:
        """Body bytes held."""
        return self.inner.bytes + self.returns_bytes

    def append(self, entry: QueueEntry) -> None:
        self.inner.append(entry)

    def requeue(self, entry: QueueEntry) -> None:
        if self.returns_first:
            self.returns.append(entry)
            self.returns_bytes += len(entry.message.body)
        else:
            self.inner.requeue(entry)

    def peek(self) -> QueueEntry | None:
        returns = self.returns
        return returns[0] if returns else self.inner.peek()

    def pop(self) -> QueueEntry | None:
        returns = self.returns
        if returns:
            entry = returns.popleft()
            self.returns_bytes -= len(entry.message.body)
            return entry
        return self.inner.pop()

    def clear(self) -> list[QueueEntry]:
        removed = list(self.returns)
        self.returns.clear()
        self.returns_bytes = 0
        removed.extend(self.inner.clear())
        return removed

    def __iter__(self) -> Iterator[QueueEntry]:
        yield from self.returns
        yield from self.inner

    # -- expiry ---------------------------------------------------------------------------------------

    def take_expired(self, now: float) -> list[QueueEntry]:
        """Remove and return the entries at the head(s) whose deadline is ``now`` or earlier."""
        expired: list[QueueEntry] = []
        returns = self.returns
        while returns:
            head = returns[0]
            if head.expires is None or head.expires > now:
                return expired
            expired.append(self.pop())  # type: ignore[arg-type]
        levels = getattr(self.inner, "levels", None) or (self.inner,)
        for level in levels:
            while True:
                head = level.peek()
                if head is None or head.expires is None or head.expires > now:
                    break
                expired.append(level.pop())
        return expired

    def next_deadline(self) -> float | None:
        """The earliest deadline among the head(s), or None."""
        if self.returns:
            return self.returns[0].expires
        levels = getattr(self.inner, "levels", None) or (self.inner,)
        deadline = None
        for level in levels:
            head = level.peek()
            if head is not None and head.expires is not None and (deadline is None or head.expires < deadline):
                deadline = head.expires
        return deadline


def cancel(timer: "Timer | None") -> None:
    """Cancel a timer that may be None."""
    if timer is not None:
        timer.cancel()
