"""Reading a trace file: its records, in order, and the connections they belong to."""

from __future__ import annotations

import json
from collections.abc import Iterator


class TraceError(Exception):
    """A trace file that cannot be read; the message says where."""


def read_records(path: str) -> Iterator[dict]:
    """Every record of the trace file at ``path`` ("-": standard input), in file order. A last
    line cut short (the broker was writing it) is left out; any other bad line is an error."""
    import sys

    try:
        fh = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        pending = None
        for number, line in enumerate(fh, 1):
            if pending is not None:
                raise TraceError(pending)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if not line.endswith("\n"):
                    return  # the line being written
                pending = f"{path} line {number}: not a JSON trace record"
                continue
            if not isinstance(record, dict) or "conn" not in record or "ts" not in record:
                raise TraceError(f"{path} line {number}: not a trace record (no conn or ts)")
            yield record
        if pending is not None:
            raise TraceError(pending)


def split_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:5672"`` -> ``("127.0.0.1", 5672)`` (the port after the last colon)."""
    host, _, port = address.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return address, 0


def endpoints(conn: str) -> tuple[str, str]:
    """A connection's name ``"peer -> local"`` as (client address, broker address)."""
    client, sep, broker = conn.partition(" -> ")
    return (client, broker) if sep else (conn, "")
