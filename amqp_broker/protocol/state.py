"""The states of an AMQP connection, server side, and which may follow which.

A connection walks the handshake forward one step at a time (spec 2.2.4, RabbitMQ's
rabbit_reader): protocol header, start/start-ok, tune/tune-ok, open/open-ok. From any state before
``CLOSING`` the server may send connection.close and wait for close-ok; from any state the
connection may end (``CLOSED``). The values are ordered, so ``state < OPEN`` reads "still in the
handshake" and ``state < CLOSING`` "not closing yet".
"""

from __future__ import annotations

from enum import IntEnum


class ConnectionState(IntEnum):
    """Where a connection is in its life; see :mod:`amqp_broker.protocol.connection`."""

    AWAIT_HEADER = 0
    AWAIT_START_OK = 1
    AWAIT_TUNE_OK = 2
    AWAIT_OPEN = 3
    OPEN = 4
    CLOSING = 5
    CLOSED = 6


# Module-level names, so a comparison on the frame path is a global lookup, not an attribute one.
AWAIT_HEADER = ConnectionState.AWAIT_HEADER
AWAIT_START_OK = ConnectionState.AWAIT_START_OK
AWAIT_TUNE_OK = ConnectionState.AWAIT_TUNE_OK
AWAIT_OPEN = ConnectionState.AWAIT_OPEN
OPEN = ConnectionState.OPEN
CLOSING = ConnectionState.CLOSING
CLOSED = ConnectionState.CLOSED

# Every allowed transition. A connection already closed may be told it is closed again (the
# server reports a lost socket after the protocol ended the connection itself).
TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    AWAIT_HEADER: frozenset((AWAIT_START_OK, CLOSING, CLOSED)),
    AWAIT_START_OK: frozenset((AWAIT_TUNE_OK, CLOSING, CLOSED)),
    AWAIT_TUNE_OK: frozenset((AWAIT_OPEN, CLOSING, CLOSED)),
    AWAIT_OPEN: frozenset((OPEN, CLOSING, CLOSED)),
    OPEN: frozenset((CLOSING, CLOSED)),
    CLOSING: frozenset((CLOSED,)),
    CLOSED: frozenset((CLOSED,)),
}


def check_transition(current: ConnectionState, new: ConnectionState) -> None:
    """Raise RuntimeError (a bug: the server ends the connection with 541) unless ``new`` may
    follow ``current``."""
    if new not in TRANSITIONS[current]:
        raise RuntimeError(f"connection state {current.name} cannot become {new.name}")
