"""Frame tracing, the server's half: which connections are traced, into which files.

A traced connection's reader hands every read batch, and its writer every write batch, to its
:class:`ConnectionTracer` (``ServerConnection.tracer``), which cuts them into frames
(protocol/trace.py) and appends one JSON line per frame to the trace file. The batches are the
bytes the protocol layer parses and produces, above whatever transport carries them, so a TLS
connection is traced in plaintext too. An untraced connection pays one attribute test per batch.

Lines (one JSON object each; ``dir`` is ``in`` for client to broker, ``out`` for broker to client):

    {"ts": 1765000000.123456, "conn": "127.0.0.1:40000 -> 127.0.0.1:5672", "dir": "in",
     "type": "method", "channel": 1, "method": "basic.publish", ..., "raw": "<base64 frame>"}
    {"ts": ..., "conn": "...", "event": "accept", "peer": "127.0.0.1:40000", "local": "..."}

Events: ``accept`` (traced from the start), ``trace_on`` (traced from the middle), ``tls`` (the
TLS session, right after either: version, cipher, ALPN), ``trace_off``, ``close`` (the AMQP
connection ended, with the reason) and ``socket_closed``. ``amqp-broker trace show|pcap`` read
these files (amqp_broker/tracetools).

Several connections may share a file; it is opened in append mode when the first one starts
tracing into it and closed when the last one stops.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..broker.admin import AdminError
from ..protocol.trace import FrameSplitter, describe_frame, hide_login

if TYPE_CHECKING:  # pragma: no cover
    from .connection import ServerConnection

log = logging.getLogger("amqp_broker.server.trace")


class TraceFileError(OSError):
    """A trace file could not be opened; the message names it."""

    def __init__(self, path: str, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.message = f"cannot open trace file {path}: {cause.strerror or cause}"

    def __str__(self) -> str:
        return self.message


class TraceFile:
    """One open trace file and how many connections write to it."""

    def __init__(self, path: str):
        self.path = path
        try:
            self.fh = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise TraceFileError(path, exc) from None
        self.users = 0

    def write(self, records: list[dict]) -> None:
        # One flush per batch: a reader (a test, tail -f) sees whole lines as soon as they are in.
        try:
            self.fh.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
            self.fh.flush()
        except (OSError, ValueError) as exc:  # a full disk must not take the connection down
            log.warning("trace file %s: %s", self.path, exc)


class ConnectionTracer:
    """Traces one connection into one file."""

    def __init__(self, conn: "ServerConnection", file: TraceFile):
        self.name = conn.name
        self.file = file
        self.inbound = FrameSplitter()
        self.outbound = FrameSplitter()

    def received(self, data: Any) -> None:
        """A read batch, as handed to the protocol layer."""
        self._write("in", self.inbound.feed(data))

    def sent(self, buffers: Iterable[Any]) -> None:
        """A write batch (one buffer, or the list of pieces sent with one sendmsg)."""
        frames = []
        for buf in buffers:
            frames += self.outbound.feed(buf)
        self._write("out", frames)

    def event(self, kind: str, **fields: Any) -> None:
        self.file.write([{"ts": round(time.time(), 6), "conn": self.name, "event": kind, **fields}])

    def _write(self, direction: str, frames: list[bytes]) -> None:
        if not frames:
            return
        now = round(time.time(), 6)
        records = []
        for raw in frames:
            info = describe_frame(raw)
            raw = hide_login(raw, info)
            records.append({"ts": now, "conn": self.name, "dir": direction, **info,
                            "raw": base64.b64encode(raw).decode("ascii")})
        self.file.write(records)


def tls_details(stream: Any) -> dict:
    """The TLS session of a handshaken ``trio.SSLStream`` (what a trace line says of it)."""
    details: dict[str, Any] = {}
    for key, getter in (("version", "version"), ("cipher", "cipher"), ("alpn", "selected_alpn_protocol")):
        try:
            value = getattr(stream, getter)()
        except Exception:  # not handshaken, or not that kind of stream: leave it out
            continue
        details[key] = list(value) if isinstance(value, tuple) else value
    return details


class Tracing:
    """The server's traces: all connections into one file (``trace_file``, :meth:`trace_all`),
    or single connections (:meth:`trace`), switched on and off while the broker runs."""

    def __init__(self, connections: "Callable[[], list[ServerConnection]]"):
        # The live connections, asked each time (the server's set changes as they come and go).
        self._connections = connections
        self._files: dict[str, TraceFile] = {}
        #: The file every new connection is traced into, or None.
        self.all_path: str | None = None

    # -- switching ------------------------------------------------------------------------------

    def trace_all(self, path: str | None) -> int:
        """Trace every connection, the current ones and those to come, into ``path``; None
        stops every trace. Returns how many connections are traced now."""
        if path is None:
            self.all_path = None
            for conn in self._connections():
                self.stop(conn)
            return 0
        path = os.path.abspath(path)
        self._file(path)  # opened now, so that a bad path fails here and not per connection
        try:
            self.all_path = path
            for conn in self._connections():
                self.start(conn, path)
        finally:
            self._release(path)
        return sum(1 for conn in self._connections() if conn.tracer is not None)

    def trace(self, name: str, path: str) -> dict:
        """Trace the connection named ``name`` (``peer -> local``) into ``path``; an operator's
        request, so a file that cannot be opened is a bad request."""
        conn = self._find(name)
        try:
            self.start(conn, os.path.abspath(path))
        except TraceFileError as exc:
            raise AdminError("bad_request", str(exc)) from None
        return self.info(conn)

    def untrace(self, name: str) -> dict:
        """Stop tracing the connection named ``name`` (a connection not traced is fine)."""
        conn = self._find(name)
        self.stop(conn)
        return self.info(conn)

    def traces(self) -> list[dict]:
        """Every live connection's name and trace file (None when not traced)."""
        return sorted((self.info(conn) for conn in self._connections()), key=lambda r: r["connection"])

    def info(self, conn: "ServerConnection") -> dict:
        tracer = conn.tracer
        return {"connection": conn.name, "file": tracer.file.path if tracer is not None else None}

    # -- connections' life ----------------------------------------------------------------------

    def accepted(self, conn: "ServerConnection") -> None:
        """A new connection: traced from its first byte when all connections are."""
        if self.all_path is not None:
            self.start(conn, self.all_path, "accept")

    def closed(self, conn: "ServerConnection", reason: str) -> None:
        """The connection's AMQP session ended (``close``), then its socket closed."""
        tracer = conn.tracer
        if tracer is None:
            return
        tracer.event("close", reason=reason)
        tracer.event("socket_closed")
        conn.tracer = None
        self._release(tracer.file.path)

    def start(self, conn: "ServerConnection", path: str, event: str = "trace_on") -> None:
        current = conn.tracer
        if current is not None:
            if current.file.path == path:
                return
            self.stop(conn)
        tracer = ConnectionTracer(conn, self._file(path))
        # Bytes already read but not yet parsed were not traced: skip to the next frame boundary.
        tracer.inbound.resync(conn.protocol.unhandled_input())
        tracer.event(event, peer=conn.peer, local=conn.local)
        if hasattr(conn.stream, "cipher"):  # a trio.SSLStream, its handshake done before AMQP
            tracer.event("tls", **tls_details(conn.stream))
        conn.tracer = tracer

    def stop(self, conn: "ServerConnection") -> None:
        tracer = conn.tracer
        if tracer is None:
            return
        conn.tracer = None
        tracer.event("trace_off")
        self._release(tracer.file.path)

    # -- files ----------------------------------------------------------------------------------

    def _file(self, path: str) -> TraceFile:
        file = self._files.get(path)
        if file is None:
            file = self._files[path] = TraceFile(path)
        file.users += 1
        return file

    def _release(self, path: str) -> None:
        file = self._files.get(path)
        if file is None:
            return
        file.users -= 1
        if file.users <= 0:
            del self._files[path]
            file.fh.close()

    def close(self) -> None:
        """Stop every trace (the broker is stopping)."""
        self.all_path = None
        for conn in self._connections():
            self.stop(conn)
        for file in self._files.values():
            file.fh.close()
        self._files.clear()

    def _find(self, name: str) -> "ServerConnection":
        for conn in self._connections():
            if conn.name == name:
                return conn
        raise AdminError("not_found", f"no connection named '{name}'")
