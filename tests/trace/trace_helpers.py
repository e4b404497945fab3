"""Reading trace files in tests, and naming a client's connection as the broker does."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Callable

import pika

from amqp_broker.testing import BrokerThread
from amqp_broker.tracetools.reader import read_records


def records(path: Path) -> list[dict]:
    return list(read_records(str(path))) if path.exists() else []


def wait_for(path: Path, done: Callable[[list[dict]], bool], timeout: float = 15.0) -> list[dict]:
    """The trace's records once ``done`` says they are complete (the broker writes the file from
    its own thread: polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(path)
        if done(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"trace {path} incomplete after {timeout} s: {[summary(r) for r in found]}")
        time.sleep(0.02)


def closed(conn_name: str) -> Callable[[list[dict]], bool]:
    """``done`` for wait_for: the connection's socket_closed event is in."""
    return lambda recs: any(r.get("event") == "socket_closed" and r["conn"] == conn_name for r in recs)


def summary(record: dict) -> str:
    if "event" in record:
        return f"event:{record['event']}"
    return f"{record['dir']}:{record.get('method') or record['type']}"


def conversation(recs: list[dict], conn_name: str | None = None) -> list[str]:
    """``in:basic.publish``, ``out:header``, ``event:accept``... of one connection, in order."""
    return [summary(r) for r in recs if conn_name is None or r["conn"] == conn_name]


def pika_name(conn: pika.BlockingConnection) -> str:
    return BrokerThread.connection_name(conn._impl._transport._sock)


def raw(record: dict) -> bytes:
    return base64.b64decode(record["raw"])
