"""Shared helpers for the tutorial scenarios (bounded waits, unique names)."""
from __future__ import annotations

import contextlib
import time
import uuid
from typing import Callable, Iterable, Iterator

import pika

DEFAULT_TIMEOUT = 10.0


def params(host: str, port: int) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host=host, port=port, credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=5, stack_timeout=10,
        blocked_connection_timeout=10)


@contextlib.contextmanager
def connections(host: str, port: int, n: int = 1) -> Iterator[list[pika.BlockingConnection]]:
    conns: list[pika.BlockingConnection] = []
    try:
        for _ in range(n):
            conns.append(pika.BlockingConnection(params(host, port)))
        yield conns
    finally:
        for c in conns:
            with contextlib.suppress(Exception):
                if c.is_open:
                    c.close()


def unique(name: str) -> str:
    """Tutorial name plus a random suffix so concurrent/repeated runs don't collide."""
    return f"{name}.{uuid.uuid4().hex[:8]}"


def pump(conns: Iterable[pika.BlockingConnection], done: Callable[[], bool],
         timeout: float = DEFAULT_TIMEOUT, what: str = "condition") -> None:
    """Drive the I/O of several connections until done() or raise on timeout."""
    conns = list(conns)
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        for c in conns:
            c.process_data_events(time_limit=0.01)


def settle(conns: Iterable[pika.BlockingConnection], duration: float = 0.3) -> None:
    """Keep pumping for a short bounded time (to observe that nothing else arrives)."""
    conns = list(conns)
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        for c in conns:
            c.process_data_events(time_limit=0.01)


def cleanup(host: str, port: int, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
    with contextlib.suppress(Exception), connections(host, port) as (c,):
        for q in queues:
            with contextlib.suppress(Exception):
                c.channel().queue_delete(q)
        for x in exchanges:
            with contextlib.suppress(Exception):
                c.channel().exchange_delete(x)
