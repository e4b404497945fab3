"""Find a running broker and talk to its control endpoint (amqp_broker/server/control.py).

A broker is found by its discovery record (amqp_broker/server/discovery.py): by node name (the
per-user copy of the record) or by data directory (the copy in it). The record gives the
control port and the token every request must carry; only the broker's user can read it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from typing import Any


class NodeUnreachable(Exception):
    """No broker answers for this node: no record, a stale one, or a refused connection."""

    def __init__(self, node: str, details: str):
        super().__init__(details)
        self.node = node
        self.details = details


class RemoteError(Exception):
    """The broker refused a request: ``kind`` is not_found, bad_request, unauthorized or internal."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class OperationTimeout(Exception):
    """The broker did not answer within the timeout."""


def default_node_name() -> str:
    """The node name a broker gets when none is configured (``rabbit@<short host name>``)."""
    from ..config import Settings, full_node_name

    return full_node_name(Settings.__dataclass_fields__["node_name"].default)


def find_record(node: str | None, data_dir: str | None) -> dict | None:
    """The discovery record of the broker named ``node`` or running on ``data_dir``."""
    from ..server import discovery

    try:
        record = discovery.find_node(node_name=node, data_dir=data_dir)
    except (OSError, ValueError):
        return None
    return None if record is None else dataclasses.asdict(record)


def process_alive(pid: Any) -> bool:
    """Whether process ``pid`` runs (a record left by a crashed broker names a dead one). A
    zombie (exited, not yet reaped by its parent) does not run."""
    if not isinstance(pid, int) or pid <= 0:
        return True  # nothing to check against: let the connection attempt decide
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            # "pid (comm) state ...": comm may hold spaces and parentheses, so split at the last ")".
            return fh.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): the signal check is all there is


class ControlClient:
    """One connection to a broker's control endpoint; requests are answered in order."""

    def __init__(self, node: str, record: dict, timeout: float | None):
        self.node = node
        self.record = record
        self.timeout = timeout
        port = record.get("control_port")
        token = record.get("control_token")
        if not isinstance(port, int) or not port or not isinstance(token, str):
            raise NodeUnreachable(node, "its discovery record has no control endpoint")
        if not process_alive(record.get("pid")):
            raise NodeUnreachable(node, f"its discovery record names process {record.get('pid')}, "
                                        "which is not running (the broker did not shut down cleanly)")
        self._token = token
        try:
            self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except socket.timeout:
            raise NodeUnreachable(node, f"no answer from its control port 127.0.0.1:{port}") from None
        except OSError as exc:
            raise NodeUnreachable(node, f"cannot connect to its control port 127.0.0.1:{port}: "
                                        f"{exc.strerror or exc}") from None
        self._buffer = b""

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def call(self, op: str, **args: Any) -> Any:
        """Send one request and return its result; raise :class:`RemoteError` on a refusal."""
        request = {"token": self._token, "op": op, "args": args}
        try:
            self._sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
            line = self._read_line()
        except socket.timeout:
            raise OperationTimeout(op) from None
        except OSError as exc:
            raise NodeUnreachable(self.node, f"connection to its control port lost: {exc}") from None
        if line is None:
            raise NodeUnreachable(self.node, "it closed the control connection")
        response = json.loads(line)
        if response.get("ok"):
            return response.get("result")
        error = response.get("error") or {}
        raise RemoteError(str(error.get("kind")), str(error.get("reason")))

    def _read_line(self) -> bytes | None:
        while b"\n" not in self._buffer:
            data = self._sock.recv(65536)
            if not data:
                return None
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def wait_closed(self, timeout: float | None) -> bool:
        """Wait until the broker closes this connection (it does when it stops)."""
        self._sock.settimeout(timeout)
        try:
            while self._sock.recv(65536):
                pass
        except socket.timeout:
            return False
        except OSError:
            pass
        return True


def connect(node: str, data_dir: str | None, timeout: float | None) -> ControlClient:
    """Connect to the broker named ``node`` (or running on ``data_dir``)."""
    record = find_record(None if data_dir else node, data_dir)
    if record is None:
        where = f"data directory {data_dir}" if data_dir else f"node {node}"
        raise NodeUnreachable(node, f"no running broker found for {where} (no discovery record)")
    return ControlClient(str(record.get("node_name") or node), record, timeout)


def wait_stopped(record: dict, timeout: float | None) -> bool:
    """After a stop, and the control connection's close: wait until the broker's process has
    exited, as rabbitmqctl stop does. A broker inside this very process (a test's) has stopped
    serving once it closed the connection."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pid = record.get("pid")
    while pid != os.getpid() and process_alive(pid):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.05)  # another process's exit cannot be awaited, only observed
    return True
