"""A connection's output: the frames it has to send, in order, and the bounds on them.

The protocol layer writes frames into :attr:`Output.buf` (the codec's encoders append to a
``bytearray``); the server layer's writer takes what accumulated and sends it. This object is the
whole interface between the two on the way out: the writer :meth:`~Output.swap`\\ s or
:meth:`~Output.take`\\ s the output, asks its :meth:`~Output.size`, and is woken through
:attr:`~Output.on_output`.

``buf`` is a plain attribute so that the hot path (a basic.deliver written straight into a consumer
connection's output) reaches the buffer without a call.
"""

from __future__ import annotations

from typing import Callable, Final

from .codec import FRAME_END_BYTE

# Bounds for deliveries: above HIGH the connection's consumers stop taking messages (they stay in
# their queues); once the writer has flushed below LOW, delivery resumes. Why: a slow consumer
# must not move a whole backlog into one bytearray (RabbitMQ uses credit flow instead).
WRITE_HIGH_WATER: Final = 1 << 20
WRITE_LOW_WATER: Final = 1 << 18
# Bodies at least this large are sent from their own buffer rather than copied into ``buf``.
LARGE_BODY: Final = 16384


def _no_writer() -> None:
    """The default :attr:`Output.on_output`: nobody to wake (a connection driven by tests)."""


class Output:
    """The bytes a connection has to send: ``buf``, after the ``pieces`` queued ahead of it."""

    __slots__ = ("buf", "pieces", "pieces_bytes", "on_output", "barrier")

    def __init__(self) -> None:
        self.buf = bytearray()
        # Large bodies queued ahead of ``buf`` without being copied (see add_piece), and the
        # bytes they hold.
        self.pieces: list = []
        self.pieces_bytes = 0
        # Called when ``buf`` goes from empty to non-empty: the server wakes its writer.
        self.on_output: Callable[[], None] = _no_writer
        # A store batch id: nothing may be sent before that batch is committed (0: none). The
        # protocol sets it after a method that wrote to the store, so that its reply (and what
        # follows, in order) is sent only once the write is durable.
        self.barrier = 0

    def wake(self) -> None:
        """Tell the server there is output, if ``buf`` was empty (call before appending)."""
        if not self.buf:
            self.on_output()

    def add_piece(self, body: bytes) -> None:
        """Queue ``body`` after everything written so far without copying it: ``buf`` becomes a
        piece, then the body, and writing resumes in a fresh ``buf`` with the body frame's end."""
        pieces = self.pieces
        pieces.append(self.buf)
        pieces.append(body)
        self.pieces_bytes += len(self.buf) + len(body)
        self.buf = bytearray(FRAME_END_BYTE)

    def take(self) -> list:
        """Everything to send, in order, as buffers (the writer sends them with one sendmsg)."""
        pieces = self.pieces
        self.pieces = []
        self.pieces_bytes = 0
        pieces.append(self.buf)
        self.buf = bytearray()
        return pieces

    def swap(self, spare: bytearray) -> bytearray:
        """Everything to send, when there are no pieces: ``buf`` is handed over and writing
        goes on in ``spare`` (an empty buffer the writer reuses, so neither is reallocated)."""
        buf = self.buf
        self.buf = spare
        return buf

    def barrier_passed(self, batch: int) -> None:
        """The writer waited for ``batch`` to be committed: lift the barrier, unless a later one
        was set meanwhile."""
        if self.barrier == batch:
            self.barrier = 0

    def pending(self) -> bool:
        """Whether there is anything to send."""
        return bool(self.buf or self.pieces)

    def size(self) -> int:
        """Bytes waiting to be sent."""
        return len(self.buf) + self.pieces_bytes

    def full(self) -> bool:
        """Whether the output is over WRITE_HIGH_WATER."""
        return len(self.buf) + self.pieces_bytes > WRITE_HIGH_WATER
