"""rabbitmqctl's commands over the control endpoint: banners, columns, results and exit codes.

Every text and exit code here is rabbitmqctl 3.10.8's, read off the real tool (the differential
tests in tests/ctl compare the two). Where rabbitmqctl is inconsistent (a missing queue is 69
for purge_queue but 64 for delete_queue), so is this module, on purpose: scripts test for those
codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TextIO

from . import format as fmt
from .client import ControlClient, NodeUnreachable, OperationTimeout, RemoteError, connect, wait_stopped

# sysexits.h, as rabbitmqctl uses them.
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75

#: rabbitmqctl's default operation timeout for the listing commands that print it.
DEFAULT_LIST_TIMEOUT = 60.0
#: How long await_startup waits by default (rabbitmqctl's is 300 s).
DEFAULT_STARTUP_TIMEOUT = 300.0


class CtlError(Exception):
    """A failed command: exit ``code`` and the text for stderr (after ``Error:`` unless
    ``bare``, since rabbitmqctl prints some errors without it)."""

    def __init__(self, code: int, text: str, *, bare: bool = False):
        super().__init__(text)
        self.code = code
        self.text = text
        self.bare = bare


class UsageError(Exception):
    """A malformed command line (exit 64), with rabbitmqctl's "argument validation" text."""


@dataclass
class Context:
    """What a command needs: the parsed options, where to write, and the connection."""

    node: str
    data_dir: str | None
    vhost: str
    quiet: bool
    silent: bool
    headers: bool
    formatter: str
    timeout: float | None
    command: str
    out: TextIO = field(default_factory=lambda: sys.stdout)
    _client: ControlClient | None = None

    @property
    def json(self) -> bool:
        return self.formatter == "json"

    def client(self) -> ControlClient:
        if self._client is None:
            self._client = connect(self.node, self.data_dir, self.timeout)
            self.node = self._client.node
        return self._client

    def call(self, op: str, **args: Any) -> Any:
        return self.client().call(op, **args)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def banner(self, text: str) -> None:
        """An informational line: left out by -q/-s and by the JSON formatter."""
        if not (self.quiet or self.silent or self.json):
            self.out.write(text + "\n")

    def info(self, text: str) -> None:
        """A result message that -q leaves out."""
        if not (self.quiet or self.silent):
            self.out.write(text + "\n")

    def result(self, text: str) -> None:
        """A result that is always printed."""
        self.out.write(text + "\n")

    def done(self) -> None:
        """The JSON formatter's answer for a command whose result is just "ok"."""
        if self.json:
            fmt.write_json(self.out, {"node": self.node, "result": "ok"})

    def rows(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, streamed: bool = True) -> None:
        if self.json:
            fmt.write_json_rows(self.out, columns, rows, streamed=streamed)
        else:
            fmt.write_table(self.out, columns, rows, headers=self.headers and not self.silent, streamed=streamed)


@dataclass
class Command:
    name: str
    help: str
    section: str
    setup: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Context, argparse.Namespace], int | None]
    usage: str = ""
    #: The RabbitMQ tools that have this command (the shims offer each tool its own).
    tools: tuple[str, ...] = ("rabbitmqctl",)


COMMANDS: dict[str, Command] = {}

SECTIONS = ("Nodes", "Users", "Access Control", "Virtual hosts", "Monitoring, observability and health checks",
            "Queues", "Operations", "Definitions", "Health checks", "Fault injection", "Help")

BOTH = ("rabbitmqctl", "rabbitmq-diagnostics")
DIAGNOSTICS = ("rabbitmq-diagnostics",)


def names_for(tool: str | None) -> list[str]:
    """The commands ``tool`` has (all of them for ``amqp-broker ctl``)."""
    return [name for name, c in COMMANDS.items() if tool is None or tool in c.tools]


def command(name: str, help: str, section: str, usage: str = "", tools: tuple[str, ...] = ("rabbitmqctl",)):
    def register(fn: Callable[[Context, argparse.Namespace], int | None]):
        setup = getattr(fn, "_setup", lambda parser: None)
        COMMANDS[name] = Command(name, help, section, setup, fn, usage, tools)
        return fn

    return register


def arguments(setup: Callable[[argparse.ArgumentParser], None]):
    """Attach a command's argument definitions (applied when the parser is built)."""

    def attach(fn):
        fn._setup = setup
        return fn

    return attach


# ``amqp-broker ctl fault`` lives in its own module (it needs command() and arguments() above);
# importing it registers it.
from . import faults as _faults  # noqa: E402,F401


def _columns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("columns", nargs="*", metavar="column",
                        help="columns to show (names as rabbitmqctl's; comma- or space-separated)")


def pick_columns(ns: argparse.Namespace, known: Sequence[str], default: Sequence[str]) -> list[str]:
    """The requested columns (rabbitmqctl accepts ``a,b`` and ``a b``), checked."""
    requested = [c for item in getattr(ns, "columns", []) or [] for c in item.split(",") if c]
    if not requested:
        return list(default)
    unknown = [c for c in requested if c not in known]
    if unknown:
        raise UsageError(f"Info key(s) {','.join(unknown)} are not supported")
    return requested


def _rows(columns: Sequence[str], items: Sequence[Any],
          getters: dict[str, Callable[[Any], Any]]) -> list[list[Any]]:
    return [[getters[c](item) for c in columns] for item in items]


def _vhost_listing(ctx: Context, op: str, **args: Any) -> list:
    """A per-vhost listing; a vhost that does not exist lists nothing (rabbitmqctl exits 0)."""
    try:
        return ctx.call(op, vhost=ctx.vhost, **args)
    except RemoteError as exc:
        if exc.kind == "not_found":
            return []
        raise


def _protocol(text: str) -> fmt.Cell:
    version = [int(p) for p in text.rpartition(" ")[2].split("-") if p.isdigit()] or [0, 9, 1]
    return fmt.Cell("{" + ",".join(map(str, version)) + "}", version)


# -- queues --------------------------------------------------------------------------------------

QUEUE_COLUMNS = (
    "arguments", "auto_delete", "consumer_capacity", "consumer_utilisation", "consumers", "disk_reads",
    "disk_writes", "durable", "exclusive", "exclusive_consumer_pid", "exclusive_consumer_tag",
    "head_message_timestamp", "leader", "members", "memory", "message_bytes", "message_bytes_persistent",
    "message_bytes_ram", "message_bytes_ready", "message_bytes_unacknowledged", "messages",
    "messages_persistent", "messages_ram", "messages_ready", "messages_ready_ram",
    "messages_unacknowledged", "messages_unacknowledged_ram", "name", "online", "owner_pid", "pid",
    "policy", "slave_pids", "state", "synchronised_slave_pids", "type",
)


def _queue_getters(ctx: Context, exclusive_consumers: dict[tuple[str, str], dict]) -> dict[str, Callable]:
    node = ctx.node
    replicated = ("quorum", "stream")

    def exclusive_consumer(q: dict) -> dict | None:
        return exclusive_consumers.get((q["vhost"], q["name"]))

    def nodes(q: dict) -> Any:
        return [node] if q["type"] in replicated else None

    def utilisation(q: dict) -> Any:
        # Without consumers it is 0, as RabbitMQ prints it; with some, this broker does not measure
        # it; replicated queues have none in RabbitMQ either.
        if q["type"] in replicated:
            return None
        return 0 if not q["consumers"] else q.get("consumer_utilisation")

    unknown = lambda q: None  # noqa: E731 - what this broker does not measure prints as nothing
    return {
        "name": lambda q: q["name"],
        "durable": lambda q: q["durable"],
        "auto_delete": lambda q: q["auto_delete"],
        # Replicated queues have no exclusive owner at all, and RabbitMQ prints nothing for them.
        "exclusive": lambda q: None if q["type"] in replicated else q["exclusive"],
        "arguments": lambda q: fmt.Table(q["arguments"] or {}),
        "policy": lambda q: "",
        "pid": lambda q: fmt.pid(node, f"queue {q['vhost']} {q['name']}"),
        "owner_pid": lambda q: fmt.pid(node, q["owner_pid_details"]["name"]) if q.get("owner_pid_details") else "",
        "exclusive_consumer_pid": lambda q: (
            fmt.pid(node, exclusive_consumer(q)["channel_details"]["connection_name"],
                    exclusive_consumer(q)["channel_details"]["number"]) if exclusive_consumer(q) else ""),
        "exclusive_consumer_tag": lambda q: exclusive_consumer(q)["consumer_tag"] if exclusive_consumer(q) else "",
        "messages": lambda q: q["messages"],
        "messages_ready": lambda q: q["messages_ready"],
        "messages_unacknowledged": lambda q: q["messages_unacknowledged"],
        # RabbitMQ 3.10's quorum and stream queues do not report it.
        "message_bytes_ready": lambda q: None if q["type"] in replicated else q.get("message_bytes_ready"),
        "consumers": lambda q: q["consumers"],
        "consumer_utilisation": utilisation,
        "consumer_capacity": utilisation,
        "memory": lambda q: q.get("memory"),
        "state": lambda q: q.get("state", "running"),
        "type": lambda q: q["type"],
        "slave_pids": lambda q: "",
        "synchronised_slave_pids": lambda q: "",
        "leader": lambda q: node if q["type"] in replicated else "",
        "members": lambda q: nodes(q) or "",
        "online": lambda q: nodes(q) or "",
        **{c: unknown for c in ("disk_reads", "disk_writes", "head_message_timestamp", "message_bytes",
                                "message_bytes_persistent", "message_bytes_ram",
                                "message_bytes_unacknowledged", "messages_persistent", "messages_ram",
                                "messages_ready_ram", "messages_unacknowledged_ram")},
    }


@command("list_queues", "Lists queues and their properties", "Monitoring, observability and health checks",
         "list_queues [--vhost <vhost>] [--no-table-headers] [<column>, ...] [--timeout <timeout>]")
@arguments(lambda p: (_columns(p),
                      p.add_argument("--online", action="store_true", help="accepted; every queue is online"),
                      p.add_argument("--offline", action="store_true",
                                     help="accepted; lists nothing (no queue is offline)"),
                      p.add_argument("--local", action="store_true", help="accepted; every queue is local")))
def list_queues(ctx: Context, ns: argparse.Namespace) -> None:
    columns = pick_columns(ns, QUEUE_COLUMNS, ("name", "messages"))
    ctx.banner(f"Timeout: {ctx.timeout if ctx.timeout is not None else DEFAULT_LIST_TIMEOUT:.1f} seconds ...")
    ctx.banner(f"Listing queues for vhost {ctx.vhost} ...")
    queues = [] if getattr(ns, "offline", False) else _vhost_listing(ctx, "queues")
    exclusive: dict[tuple[str, str], dict] = {}
    if queues and {"exclusive_consumer_pid", "exclusive_consumer_tag"} & set(columns):
        for consumer in _vhost_listing(ctx, "consumers"):
            if consumer.get("exclusive"):
                exclusive[(consumer["queue"]["vhost"], consumer["queue"]["name"])] = consumer
    ctx.rows(columns, _rows(columns, queues, _queue_getters(ctx, exclusive)))


@command("purge_queue", "Purges a queue (removes all messages in it)", "Queues",
         "purge_queue [--vhost <vhost>] <queue>")
@arguments(lambda p: p.add_argument("queue", help="queue to purge"))
def purge_queue(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Purging queue '{ns.queue}' in vhost '{ctx.vhost}' ...")
    try:
        ctx.call("purge_queue", vhost=ctx.vhost, name=ns.queue)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise CtlError(EX_UNAVAILABLE, "not_found") from None
        raise
    ctx.done()


@command("delete_queue", "Deletes a queue", "Queues",
         "delete_queue [--vhost <vhost>] <queue_name> [--if-empty|-e] [--if-unused|-u]")
@arguments(lambda p: (p.add_argument("queue", help="queue to delete"),
                      p.add_argument("-e", "--if-empty", "--if_empty", dest="if_empty", action="store_true",
                                     help="delete only if the queue has no ready messages"),
                      p.add_argument("-u", "--if-unused", "--if_unused", dest="if_unused", action="store_true",
                                     help="delete only if the queue has no consumers")))
def delete_queue(ctx: Context, ns: argparse.Namespace) -> None:
    if ns.queue == "":
        raise UsageError("queue name cannot be empty string.")
    conditions = (["if queue is empty "] if ns.if_empty else []) + (["if queue is unused "] if ns.if_unused else [])
    ctx.banner(f"Deleting queue '{ns.queue}' on vhost '{ctx.vhost}' " + "and ".join(conditions) + "...")
    try:
        count = ctx.call("delete_queue", vhost=ctx.vhost, name=ns.queue, if_unused=ns.if_unused,
                         if_empty=ns.if_empty)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise CtlError(EX_USAGE, "Queue not found") from None
        if "not empty" in exc.reason:
            raise CtlError(EX_USAGE, "Queue is not empty") from None
        if "in use" in exc.reason:
            raise CtlError(EX_USAGE, "Queue is in use") from None
        raise
    message = f"Queue was successfully deleted with {count} ready messages"
    if ctx.json:
        fmt.write_json(ctx.out, {"message": message})
    else:
        ctx.result(message)


# -- exchanges and bindings ------------------------------------------------------------------------

EXCHANGE_COLUMNS = ("arguments", "auto_delete", "durable", "internal", "name", "policy", "type")


@command("list_exchanges", "Lists exchanges", "Monitoring, observability and health checks",
         "list_exchanges [--vhost <vhost>] [--no-table-headers] [<column> ...] [--timeout <timeout>]")
@arguments(_columns)
def list_exchanges(ctx: Context, ns: argparse.Namespace) -> None:
    columns = pick_columns(ns, EXCHANGE_COLUMNS, ("name", "type"))
    ctx.banner(f"Listing exchanges for vhost {ctx.vhost} ...")
    getters = {
        "name": lambda e: e["name"], "type": lambda e: e["type"], "durable": lambda e: e["durable"],
        "auto_delete": lambda e: e["auto_delete"], "internal": lambda e: e["internal"],
        "arguments": lambda e: fmt.Table(e["arguments"] or {}), "policy": lambda e: "",
    }
    ctx.rows(columns, _rows(columns, _vhost_listing(ctx, "exchanges"), getters))


BINDING_COLUMNS = ("arguments", "destination_kind", "destination_name", "routing_key", "source_kind", "source_name")


@command("list_bindings", "Lists all bindings on a vhost", "Monitoring, observability and health checks",
         "list_bindings [--vhost <vhost>] [--no-table-headers] [<column> ...] [--timeout <timeout>]")
@arguments(_columns)
def list_bindings(ctx: Context, ns: argparse.Namespace) -> None:
    columns = pick_columns(ns, BINDING_COLUMNS, ("source_name", "source_kind", "destination_name",
                                                 "destination_kind", "routing_key", "arguments"))
    ctx.banner(f"Listing bindings for vhost {ctx.vhost}...")
    getters = {
        "source_name": lambda b: b["source"], "source_kind": lambda b: "exchange",
        "destination_name": lambda b: b["destination"], "destination_kind": lambda b: b["destination_type"],
        "routing_key": lambda b: b["routing_key"],
        # RabbitMQ keeps binding arguments sorted by key (rabbit_binding sorts them on add).
        "arguments": lambda b: fmt.Table(b["arguments"] or {}, sort=True),
    }
    ctx.rows(columns, _rows(columns, _vhost_listing(ctx, "bindings"), getters))


# -- connections, channels, consumers --------------------------------------------------------------

CONNECTION_COLUMNS = (
    "auth_mechanism", "channel_max", "channels", "client_properties", "connected_at", "frame_max", "host",
    "name", "peer_cert_issuer", "peer_cert_subject", "peer_cert_validity", "peer_host", "peer_port", "pid",
    "port", "protocol", "recv_cnt", "recv_oct", "send_cnt", "send_oct", "send_pend", "ssl", "ssl_cipher",
    "ssl_hash", "ssl_key_exchange", "ssl_protocol", "state", "timeout", "user", "vhost",
)


@command("list_connections", "Lists AMQP 0.9.1 connections for the node",
         "Monitoring, observability and health checks",
         "list_connections [--no-table-headers] [<column> ...] [--timeout <timeout>]")
@arguments(_columns)
def list_connections(ctx: Context, ns: argparse.Namespace) -> None:
    columns = pick_columns(ns, CONNECTION_COLUMNS, ("user", "peer_host", "peer_port", "state"))
    ctx.banner("Listing connections ...")
    node = ctx.node
    plain = ("auth_mechanism", "channel_max", "channels", "connected_at", "frame_max", "host", "name",
             "peer_host", "peer_port", "port", "ssl", "state", "timeout", "user", "vhost")
    getters: dict[str, Callable] = {c: (lambda c: lambda x: x.get(c))(c) for c in plain}
    getters.update({
        "pid": lambda x: fmt.pid(node, x["name"]),
        "protocol": lambda x: _protocol(x.get("protocol") or ""),
        "client_properties": lambda x: fmt.Table(x.get("client_properties") or {}),
        **{c: (lambda x: "") for c in ("peer_cert_issuer", "peer_cert_subject", "peer_cert_validity",
                                      "ssl_cipher", "ssl_hash", "ssl_key_exchange", "ssl_protocol")},
        **{c: (lambda x: None) for c in ("recv_cnt", "recv_oct", "send_cnt", "send_oct", "send_pend")},
    })
    ctx.rows(columns, _rows(columns, ctx.call("connections"), getters))


CHANNEL_COLUMNS = (
    "acks_uncommitted", "confirm", "connection", "consumer_count", "global_prefetch_count",
    "messages_unacknowledged", "messages_uncommitted", "messages_unconfirmed", "name", "number", "pid",
    "prefetch_count", "transactional", "user", "vhost",
)


@command("list_channels", "Lists all channels in the node", "Monitoring, observability and health checks",
         "list_channels [--no-table-headers] [<column> ...]")
@arguments(_columns)
def list_channels(ctx: Context, ns: argparse.Namespace) -> None:
    columns = pick_columns(ns, CHANNEL_COLUMNS, ("pid", "user", "consumer_count", "messages_unacknowledged"))
    ctx.banner("Listing channels ...")
    node = ctx.node
    plain = ("confirm", "consumer_count", "global_prefetch_count", "messages_unacknowledged",
             "messages_unconfirmed", "name", "number", "prefetch_count", "transactional", "user", "vhost")
    getters: dict[str, Callable] = {c: (lambda c: lambda x: x.get(c))(c) for c in plain}
    getters.update({
        "pid": lambda x: fmt.pid(node, x["connection_details"]["name"], x["number"]),
        "connection": lambda x: fmt.pid(node, x["connection_details"]["name"]),
        # Counted only inside a transaction, which this broker does not report per channel.
        "messages_uncommitted": lambda x: None if x.get("transactional") else 0,
        "acks_uncommitted": lambda x: None if x.get("transactional") else 0,
    })
    ctx.rows(columns, _rows(columns, ctx.call("channels"), getters))


CONSUMER_COLUMNS = ("ack_required", "active", "activity_status", "arguments", "channel_pid", "consumer_tag",
                    "prefetch_count", "queue_name")


@command("list_consumers", "Lists all consumers for a vhost", "Monitoring, observability and health checks",
         "list_consumers [--vhost <vhost>] [--no-table-headers] [<column> ...] [--timeout <timeout>]")
@arguments(_columns)
def list_consumers(ctx: Context, ns: argparse.Namespace) -> None:
    columns = pick_columns(ns, CONSUMER_COLUMNS, ("queue_name", "channel_pid", "consumer_tag", "ack_required",
                                                  "prefetch_count", "active", "arguments"))
    ctx.banner(f"Listing consumers in vhost {ctx.vhost} ...")
    node = ctx.node
    getters = {
        "queue_name": lambda c: c["queue"]["name"],
        "channel_pid": lambda c: fmt.pid(node, c["channel_details"]["connection_name"],
                                         c["channel_details"]["number"]),
        "consumer_tag": lambda c: c["consumer_tag"], "ack_required": lambda c: c["ack_required"],
        "prefetch_count": lambda c: c["prefetch_count"], "active": lambda c: c["active"],
        "activity_status": lambda c: c["activity_status"],
        "arguments": lambda c: fmt.Table(c.get("arguments") or {}),
    }
    ctx.rows(columns, _rows(columns, _vhost_listing(ctx, "consumers"), getters))


def _find_connection(ctx: Context, ref: str) -> dict | None:
    """The connection ``ref`` names: a pid as list_connections prints it, or a connection name."""
    connections = ctx.call("connections")
    parsed = fmt.parse_pid(ref)
    for conn in connections:
        if conn["name"] == ref:
            return conn
        if parsed is not None and parsed == (fmt.identity_hash(conn["name"]), 0):
            return conn
    return None


@command("close_connection", "Instructs the broker to close the connection associated with the pid or name",
         "Operations", "close_connection <connection pid or name> <explanation>")
@arguments(lambda p: (p.add_argument("connection",
                                     help="a pid as list_connections prints it, or the connection's name"),
                      p.add_argument("explanation", help="reason given to the client")))
def close_connection(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Closing connection {ns.connection}, reason: {ns.explanation}...")
    conn = _find_connection(ctx, ns.connection)
    if conn is None:
        if fmt.parse_pid(ns.connection) is not None:
            return  # a pid that is gone: rabbitmqctl succeeds silently
        raise CtlError(EX_UNAVAILABLE, f"Error:\n{{:invalid_pid_syntax, {fmt.erlang_string(ns.connection)}}}")
    try:
        ctx.call("close_connection", name=conn["name"], reason=ns.explanation)
    except RemoteError as exc:
        if exc.kind != "not_found":  # closed meanwhile
            raise
    ctx.done()


@command("close_all_connections",
         "Instructs the broker to close all connections for the specified vhost or entire node",
         "Operations", "close_all_connections [--vhost <vhost> --limit <limit>] [-n <node> --global] "
         "[--per-connection-delay <delay>] <explanation>")
@arguments(lambda p: (p.add_argument("explanation", help="reason given to the clients"),
                      p.add_argument("--global", dest="global_", action="store_true",
                                     help="close every connection of the node, across vhosts"),
                      p.add_argument("--limit", type=int, default=0, help="close at most this many (0: all)"),
                      p.add_argument("--per-connection-delay", type=int, default=0, metavar="MS",
                                     help="milliseconds to wait between two closes")))
def close_all_connections(ctx: Context, ns: argparse.Namespace) -> None:
    if ns.global_:
        ctx.banner(f"Closing all connections to node {ctx.node} (across all vhosts), "
                   f"reason: {ns.explanation}...")
        targets = ctx.call("connections")
    else:
        if ns.limit:
            ctx.banner(f"Closing {ns.limit} connections in vhost {ctx.vhost}, reason: {ns.explanation}...")
        else:
            ctx.banner(f"Closing all connections in vhost {ctx.vhost}, reason: {ns.explanation}...")
        targets = _vhost_listing(ctx, "connections")
        if ns.limit:
            targets = targets[: ns.limit]
    for index, conn in enumerate(targets):
        if index and ns.per_connection_delay:
            time.sleep(ns.per_connection_delay / 1000)
        try:
            ctx.call("close_connection", name=conn["name"], reason=ns.explanation)
        except RemoteError as exc:
            if exc.kind != "not_found":
                raise
    message = f"Closed {len(targets)} connections"
    if ctx.json:
        fmt.write_json(ctx.out, {"node": ctx.node, "result": "ok", "value": message})
    else:
        ctx.result(message)


# Not rabbitmqctl's trace_on/trace_off (the firehose, per vhost): these trace one connection's
# frames into a file (server/trace.py). Offered by ``amqp-broker ctl`` only, not by the
# rabbitmqctl shim, where a script's `trace_on -p /` means the firehose.
@command("trace_on", "Traces a connection's frames into a file (amqp_broker's frame trace, not the firehose)",
         "Operations", "trace_on <connection pid or name> <file>", tools=())
@arguments(lambda p: (p.add_argument("connection",
                                     help="a pid as list_connections prints it, or the connection's name"),
                      p.add_argument("file", help="trace file to append JSON lines to (read it with "
                                                  "`amqp-broker trace show FILE`)")))
def trace_on(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Tracing connection {ns.connection} into {ns.file}...")
    conn = _traced_connection(ctx, ns.connection)
    # The broker's working directory is not ours: it gets the path as we mean it.
    ctx.call("trace_on", connection=conn["name"], file=os.path.abspath(ns.file))
    ctx.done()


@command("trace_off", "Stops tracing a connection's frames", "Operations",
         "trace_off <connection pid or name>", tools=())
@arguments(lambda p: p.add_argument("connection",
                                    help="a pid as list_connections prints it, or the connection's name"))
def trace_off(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Stopping the trace of connection {ns.connection}...")
    ctx.call("trace_off", connection=_traced_connection(ctx, ns.connection)["name"])
    ctx.done()


def _traced_connection(ctx: Context, ref: str) -> dict:
    conn = _find_connection(ctx, ref)
    if conn is None:
        raise CtlError(EX_DATAERR, f"no connection named {ref!r} (list_connections name lists them)")
    return conn


# -- users -----------------------------------------------------------------------------------------

def _password(ns: argparse.Namespace) -> str:
    """The password argument, or a line from standard input as rabbitmqctl reads it."""
    if ns.password is not None:
        return ns.password
    if sys.stdin is not None and sys.stdin.isatty():
        sys.stdout.write("Password: ")
        sys.stdout.flush()
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise CtlError(EX_DATAERR, "Password is not provided via argument or stdin")
    return line.rstrip("\r\n")


def _user_and_password(p: argparse.ArgumentParser) -> None:
    p.add_argument("username", help="user name")
    p.add_argument("password", nargs="?", help="password (read from standard input when left out)")


def _user_exists(ctx: Context, name: str) -> bool:
    try:
        ctx.call("user", name=name)
        return True
    except RemoteError as exc:
        if exc.kind == "not_found":
            return False
        raise


@command("add_user", "Creates a new user in the internal database. This user will have no permissions for any "
         "virtual hosts by default.", "Users", "add_user <username> <password>")
@arguments(_user_and_password)
def add_user(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Adding user "{ns.username}" ...')
    password = _password(ns)
    if _user_exists(ctx, ns.username):
        raise CtlError(EX_SOFTWARE, f'User "{ns.username}" already exists')
    ctx.call("add_user", name=ns.username, password=password)
    if ctx.json:
        fmt.write_json(ctx.out, {"message": ADD_USER_DONE, "node": ctx.node, "status": "ok"})
    else:
        ctx.info(ADD_USER_DONE)


ADD_USER_DONE = ("Done. Don't forget to grant the user permissions to some virtual hosts! "
                 "See 'rabbitmqctl help set_permissions' to learn more.")


def _missing_user(name: str, quoted: bool = True) -> CtlError:
    return CtlError(EX_NOUSER, f'User "{name}" does not exist' if quoted else f"User {name} does not exist")


def _call_on_user(ctx: Context, method: str, name: str, **kwargs: Any) -> None:
    """An admin call on user ``name``; a missing user is rabbitmqctl's EX_NOUSER."""
    try:
        ctx.call(method, name=name, **kwargs)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise _missing_user(name) from None
        raise


@command("delete_user", "Removes a user from the internal database", "Users", "delete_user <username>")
@arguments(lambda p: p.add_argument("username", help="user name"))
def delete_user(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Deleting user "{ns.username}" ...')
    _call_on_user(ctx, "delete_user", ns.username)
    ctx.done()


@command("change_password", "Changes the user password", "Users", "change_password <username> <password>")
@arguments(_user_and_password)
def change_password(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Changing password for user "{ns.username}" ...')
    password = _password(ns)
    _call_on_user(ctx, "change_password", ns.username, password=password)
    ctx.done()


@command("clear_password", "Clears (resets) password and disables password login for a user", "Users",
         "clear_password <username>")
@arguments(lambda p: p.add_argument("username", help="user name"))
def clear_password(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Clearing password for user "{ns.username}" ...')
    _call_on_user(ctx, "clear_password", ns.username)
    ctx.done()


@command("authenticate_user",
         "Attempts to authenticate a user. Exits with a non-zero code if authentication fails.",
         "Users", "authenticate_user <username> <password>")
@arguments(_user_and_password)
def authenticate_user(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Authenticating user "{ns.username}" ...')
    password = _password(ns)
    if ctx.call("authenticate_user", name=ns.username, password=password) is None:
        raise CtlError(EX_DATAERR, f'Error: failed to authenticate user "{ns.username}"\n'
                                   f"user '{ns.username}' - invalid credentials")
    if ctx.json:
        fmt.write_json(ctx.out, {"result": "success"})
    else:
        ctx.result("Success")


@command("set_user_tags", "Sets user tags", "Users", "set_user_tags <username> <tag> [...]")
@arguments(lambda p: (p.add_argument("username", help="user name"),
                      p.add_argument("tags", nargs="*", metavar="tag", help="tags (administrator, monitoring, ...)")))
def set_user_tags(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Setting tags for user "{ns.username}" to {fmt.tags_text(ns.tags)} ...')
    _call_on_user(ctx, "set_user_tags", ns.username, tags=list(ns.tags))
    ctx.done()


@command("list_users", "List user names and tags", "Users", "list_users [--no-table-headers] [--timeout <timeout>]")
def list_users(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner("Listing users ...")
    ctx.rows(("user", "tags"), [[u["name"], list(u["tags"])] for u in ctx.call("users")], streamed=False)


# -- vhosts and permissions ------------------------------------------------------------------------

VHOST_COLUMNS = ("cluster_state", "default_queue_type", "description", "name", "tags", "tracing")


@command("list_vhosts", "Lists virtual hosts", "Access Control",
         "list_vhosts [--no-table-headers] [<column> ...] [--timeout <timeout>]")
@arguments(_columns)
def list_vhosts(ctx: Context, ns: argparse.Namespace) -> None:
    columns = pick_columns(ns, VHOST_COLUMNS, ("name",))
    ctx.banner("Listing vhosts ...")
    node = ctx.node
    getters = {
        "name": lambda v: v["name"], "tracing": lambda v: bool(v.get("tracing")),
        "description": lambda v: v.get("description") or "",
        "tags": lambda v: list(v.get("tags") or []),
        "default_queue_type": lambda v: v.get("default_queue_type") or "undefined",
        "cluster_state": lambda v: fmt.Cell(f"[{{{node}, running}}]", {node: "running"}),
    }
    ctx.rows(columns, _rows(columns, ctx.call("vhosts"), getters), streamed=False)


@command("add_vhost", "Creates a virtual host", "Virtual hosts", "add_vhost <vhost>")
@arguments(lambda p: (p.add_argument("name", metavar="vhost", help="virtual host to create"),
                      p.add_argument("--description", help="accepted and ignored (not kept)"),
                      p.add_argument("--tags", help="accepted and ignored (not kept)"),
                      p.add_argument("--default-queue-type", help="accepted and ignored (not kept)")))
def add_vhost(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Adding vhost "{ns.name}" ...')
    try:
        ctx.call("add_vhost", name=ns.name)
    except RemoteError as exc:
        if exc.kind == "bad_request":
            raise CtlError(EX_DATAERR, exc.reason) from None
        raise
    ctx.done()


@command("delete_vhost", "Deletes a virtual host", "Virtual hosts", "delete_vhost <vhost>")
@arguments(lambda p: p.add_argument("name", metavar="vhost", help="virtual host to delete"))
def delete_vhost(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Deleting vhost "{ns.name}" ...')
    try:
        ctx.call("delete_vhost", name=ns.name)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise CtlError(EX_DATAERR, f"Virtual host '{ns.name}' does not exist", bare=True) from None
        raise
    ctx.done()


def _permission_error(exc: RemoteError, user: str, vhost: str) -> CtlError | RemoteError:
    if exc.kind == "not_found" and exc.reason.startswith("user "):
        return _missing_user(user, quoted=False)
    if exc.kind == "not_found" and exc.reason.startswith("vhost "):
        return CtlError(EX_UNAVAILABLE, f"Virtual host {vhost} does not exist")
    return exc


@command("set_permissions", "Sets user permissions for a vhost", "Access Control",
         "set_permissions [--vhost <vhost>] <username> <conf> <write> <read>")
@arguments(lambda p: (p.add_argument("username", help="user name"),
                      p.add_argument("conf", help="regular expression of the resources the user may configure"),
                      p.add_argument("write", help="regular expression of the resources the user may write to"),
                      p.add_argument("read", help="regular expression of the resources the user may read from")))
def set_permissions(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Setting permissions for user "{ns.username}" in vhost "{ctx.vhost}" ...')
    try:
        ctx.call("set_permissions", user=ns.username, vhost=ctx.vhost, configure=ns.conf, write=ns.write,
                 read=ns.read)
    except RemoteError as exc:
        if exc.kind == "bad_request" and exc.reason.startswith("invalid "):
            raise CtlError(EX_UNAVAILABLE, exc.reason) from None
        if exc.reason == "vhost_or_user_not_found":
            # The admin API answers as the management API does, naming neither; rabbitmqctl
            # names the user first, then the vhost (rabbit_vhost:with_user_and_vhost).
            if not _user_exists(ctx, ns.username):
                raise _missing_user(ns.username, quoted=False) from None
            raise CtlError(EX_UNAVAILABLE, f"Virtual host {ctx.vhost} does not exist") from None
        raise _permission_error(exc, ns.username, ctx.vhost) from None
    ctx.done()


@command("clear_permissions", "Revokes user permissions for a vhost", "Access Control",
         "clear_permissions [--vhost <vhost>] <username>")
@arguments(lambda p: p.add_argument("username", help="user name"))
def clear_permissions(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Clearing permissions for user "{ns.username}" in vhost "{ctx.vhost}" ...')
    try:
        ctx.call("clear_permissions", user=ns.username, vhost=ctx.vhost)
    except RemoteError as exc:
        if not (exc.kind == "not_found" and exc.reason.startswith("permissions ")):  # none to clear: fine
            raise _permission_error(exc, ns.username, ctx.vhost) from None
    ctx.done()


@command("list_permissions", "Lists user permissions in a virtual host", "Access Control",
         "list_permissions [--vhost <vhost>] [--no-table-headers] [--timeout <timeout>]")
def list_permissions(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Listing permissions for vhost "{ctx.vhost}" ...')
    try:
        rows = ctx.call("permissions", vhost=ctx.vhost)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise CtlError(EX_DATAERR, f"Virtual host '{ctx.vhost}' does not exist", bare=True) from None
        raise
    ctx.rows(("user", "configure", "write", "read"),
             [[r["user"], r["configure"], r["write"], r["read"]] for r in rows], streamed=False)


@command("list_user_permissions", "Lists permissions of a user across all virtual hosts", "Access Control",
         "list_user_permissions [--no-table-headers] <username> [--timeout <timeout>]")
@arguments(lambda p: p.add_argument("username", help="user name"))
def list_user_permissions(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Listing permissions for user "{ns.username}" ...')
    try:
        rows = ctx.call("permissions", user=ns.username)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise CtlError(EX_UNAVAILABLE, f"{{:no_such_user, {fmt.erlang_string(ns.username)}}}") from None
        raise
    ctx.rows(("vhost", "configure", "write", "read"),
             [[r["vhost"], r["configure"], r["write"], r["read"]] for r in rows], streamed=False)


# -- definitions -----------------------------------------------------------------------------------

def _format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="json", type=str.lower, choices=("json",),
                   help="file format: json (RabbitMQ's Erlang term format is not supported)")


@command("export_definitions", "Exports definitions in JSON", "Definitions", 'export_definitions <file_path | "-">')
@arguments(lambda p: (p.add_argument("file", help='file to write ("-" for standard output)'), _format_option(p)))
def export_definitions(ctx: Context, ns: argparse.Namespace) -> None:
    if ns.file != "-":
        directory = os.path.dirname(ns.file) or "."
        if not os.path.exists(directory):
            raise UsageError(f"Directory {directory} does not exist")
        ctx.banner(f'Exporting definitions in JSON to a file at "{ns.file}" ...')
    body = json.dumps(ctx.call("export_definitions"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if ns.file == "-":
        ctx.out.write(body)
        ctx.out.flush()
        return
    try:
        with open(ns.file, "w", encoding="utf-8") as fh:
            fh.write(body)
    except OSError as exc:
        raise CtlError(EX_DATAERR, _file_error(exc, ns.file, "write to")) from None


def _file_error(exc: OSError, path: str, verb: str) -> str:
    import errno

    if exc.errno == errno.ENOENT:
        return f"Parent directory or file {path} does not exist"
    if exc.errno == errno.ENOTDIR:
        return f"Parent directory of file {path} is not a directory"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"No permissions to {verb} file {path} or its parent directory"
    if exc.errno == errno.EISDIR:
        return f"Path {path} is a directory"
    return f"Could not {verb} file {path}: {exc.strerror}"


@command("import_definitions", "Imports definitions in JSON", "Definitions", 'import_definitions <file_path | "-">')
@arguments(lambda p: (p.add_argument("file", nargs="?", default="-", help='file to read ("-" or none: standard input)'),
                      _format_option(p)))
def import_definitions(ctx: Context, ns: argparse.Namespace) -> None:
    if ns.file == "-":
        ctx.silent = True
        ctx.banner("Importing definitions in JSON from standard input ...")
        text = sys.stdin.read()
        if not text:
            raise UsageError("not enough arguments.")
    else:
        if not os.path.exists(ns.file):
            raise UsageError(f"File {ns.file} does not exist")
        ctx.banner(f'Importing definitions in JSON from a file at "{ns.file}" ...')
        try:
            with open(ns.file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise CtlError(EX_DATAERR, _file_error(exc, ns.file, "read from")) from None
        if not text:
            raise CtlError(EX_DATAERR, f"File {ns.file} is zero-sized")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CtlError(EX_DATAERR, f"Failed to deserialise input (format: JSON) (error: {exc})") from None
    if not isinstance(data, dict):
        raise CtlError(EX_DATAERR, "Failed to deserialise input (format: JSON) (error: not a JSON object)")
    try:
        ctx.call("import_definitions", data=data)
    except RemoteError as exc:
        if exc.kind == "bad_request":
            raise CtlError(EX_DATAERR, exc.reason) from None
        raise
    if ctx.json:
        ctx.done()
    else:
        ctx.info("Successfully started definition import. This process is asynchronous and can take some time.\n")


# -- node ------------------------------------------------------------------------------------------

@command("status", "Displays status of a node", "Monitoring, observability and health checks", "status", tools=BOTH)
def status(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Status of node {ctx.node} ...")
    data = ctx.call("status")
    if ctx.json:
        fmt.write_json(ctx.out, status_json(ctx.node, data))
    else:
        # Bold section titles on a terminal only (rabbitmqctl prints the escapes into pipes too).
        bold = ctx.out.isatty() if hasattr(ctx.out, "isatty") else False
        ctx.out.write(status_text(ctx.node, data, bold=bold))


def status_json(node: str, data: dict) -> dict:
    info = data.get("node") or {}
    totals = (data.get("overview") or {}).get("object_totals") or {}
    return {
        "pid": info.get("pid"), "node_name": node, "product_name": "amqp_broker",
        "product_version": data.get("version"), "uptime": (info.get("uptime_ms") or 0) // 1000,
        "data_directory": info.get("data_dir"), "alarms": info.get("alarms") or [],
        "memory": {"total": {"rss": info.get("mem_used")}},
        "vm_memory_high_watermark_limit": info.get("mem_limit"), "disk_free_limit": info.get("disk_free_limit"),
        "listeners": [{"interface": _interface(l.get("ip_address")), "node": node, "port": l.get("port"),
                       "protocol": l.get("protocol"), "purpose": _purpose(l.get("protocol"))}
                      for l in info.get("listeners") or []],
        "totals": {"connection_count": totals.get("connections", 0), "queue_count": totals.get("queues", 0),
                   "virtual_host_count": data.get("vhost_count", 0)},
    }


def _interface(address: Any) -> str:
    """A listener's address as RabbitMQ prints it: IPv6 ones in brackets (``[::]``)."""
    text = str(address or "")
    return f"[{text}]" if ":" in text and not text.startswith("[") else text


def _purpose(protocol: Any) -> str:
    return {"amqp": "AMQP 0-9-1", "amqp/ssl": "AMQP 0-9-1 over TLS", "http": "HTTP API",
            "http/prometheus": "Prometheus exporter API over HTTP", "mqtt": "MQTT", "stomp": "STOMP"}.get(
        str(protocol), str(protocol))


def status_text(node: str, data: dict, *, bold: bool = False) -> str:
    """``rabbitmqctl status``'s sections, with what this broker knows."""
    info = data.get("node") or {}
    totals = (data.get("overview") or {}).get("object_totals") or {}

    def title(text: str) -> str:
        return f"\x1b[1m{text}\x1b[0m" if bold else text

    gb = lambda n: f"{(n or 0) / 1e9:.4f} gb"  # noqa: E731
    lines = [
        title("Runtime"), "",
        f"OS PID: {info.get('pid')}",
        f"OS: {os.uname().sysname}",
        f"Uptime (seconds): {(info.get('uptime_ms') or 0) // 1000}",
        "Product name: amqp_broker",
        f"Product version: {data.get('version')}",
        f"Node name: {node}",
        "", title("Data directory"), "",
        f"Node data directory: {info.get('data_dir')}",
        "", title("Alarms"), "",
    ]
    alarms = info.get("alarms") or []
    lines += [f" * {a}" for a in alarms] or ["(none)"]
    lines += [
        "", title("Memory"), "",
        f"Total memory used: {gb(info.get('mem_used'))}",
        "Calculation strategy: rss",
        f"Memory high watermark: {gb(info.get('mem_limit'))}",
        "", title("Free Disk Space"), "",
        f"Low free disk space watermark: {gb(info.get('disk_free_limit'))}",
        "", title("Totals"), "",
        f"Connection count: {totals.get('connections', 0)}",
        f"Queue count: {totals.get('queues', 0)}",
        f"Virtual host count: {data.get('vhost_count', 0)}",
        "", title("Listeners"), "",
    ]
    for listener in info.get("listeners") or []:
        lines.append(f"Interface: {_interface(listener.get('ip_address'))}, port: {listener.get('port')}, "
                     f"protocol: {listener.get('protocol')}, purpose: {_purpose(listener.get('protocol'))}")
    return "\n".join(lines) + "\n"


def _ping_ms(ctx: Context) -> int:
    return int((ctx.timeout if ctx.timeout is not None else DEFAULT_LIST_TIMEOUT) * 1000)


@command("ping", "Checks that the node is running and answers CLI tools",
         "Monitoring, observability and health checks",
         "ping", tools=BOTH)
def ping(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Will ping {ctx.node}. This only checks if the OS process is running and registered with epmd. "
               f"Timeout: {_ping_ms(ctx)} ms.")
    try:
        ctx.call("await_startup")
    except (NodeUnreachable, OperationTimeout):
        raise CtlError(EX_UNAVAILABLE,
                       f"Failed to connect and authenticate to {ctx.node} in {_ping_ms(ctx)} ms") from None
    if ctx.json:
        fmt.write_json(ctx.out, {"message": "Ping succeeded"})
    else:
        ctx.result("Ping succeeded")


@command("await_startup", "Waits for the broker to start on the target node", "Nodes",
         "await_startup [--timeout <timeout>]", tools=BOTH)
def await_startup(ctx: Context, ns: argparse.Namespace) -> None:
    timeout = ctx.timeout if ctx.timeout is not None else DEFAULT_STARTUP_TIMEOUT
    deadline = time.monotonic() + timeout
    while True:
        try:
            ctx.call("await_startup")
            return
        except NodeUnreachable:
            ctx.close()
            if time.monotonic() >= deadline:
                raise
            # Polling: the broker may not have written its discovery record yet.
            time.sleep(0.1)


def _stop(ctx: Context) -> None:
    client = ctx.client()
    record = dict(client.record)
    client.call("stop")
    # The broker closes this connection once it has shut its connections down, then its
    # process exits.
    client.wait_closed(ctx.timeout)
    if not wait_stopped(record, ctx.timeout):
        raise OperationTimeout("stop")


@command("stop", "Stops the broker and waits for its process to exit", "Nodes", "stop [--idempotent]")
@arguments(lambda p: p.add_argument("--idempotent", action="store_true",
                                    help="succeed when the node is not running"))
def stop(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Stopping and halting node {ctx.node} ...")
    try:
        _stop(ctx)
    except NodeUnreachable:
        if not ns.idempotent:
            raise
        ctx.info(f"Node {ctx.node} is no longer running")
    ctx.done()


@command("shutdown", "Stops the broker and waits for its process to exit", "Nodes", "shutdown")
def shutdown(ctx: Context, ns: argparse.Namespace) -> None:
    pid = ctx.client().record.get("pid")
    ctx.banner(f"Shutting down RabbitMQ node {ctx.node} running at PID {pid}")
    ctx.banner(f"Waiting for PID {pid} to terminate")
    _stop(ctx)
    ctx.banner(f"RabbitMQ node {ctx.node} running at PID {pid} successfully shut down")
    ctx.done()


@command("stop_app", "Does nothing (accepted for RabbitMQ's tools); the broker keeps serving", "Nodes", "stop_app")
def stop_app(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Stopping rabbit application on node {ctx.node} ...")
    ctx.call("await_startup")
    ctx.done()


@command("start_app", "Does nothing (accepted for RabbitMQ's tools); the broker is always started", "Nodes",
         "start_app")
def start_app(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Starting node {ctx.node} ...")
    ctx.call("await_startup")
    ctx.done()


def _reset(ctx: Context) -> None:
    ctx.call("reset")
    ctx.done()


@command("reset", "Returns the broker to a fresh broker's state (no stop_app needed)", "Nodes", "reset")
def reset(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Resetting node {ctx.node} ...")
    _reset(ctx)


@command("force_reset", "Same as reset", "Nodes", "force_reset")
def force_reset(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Forcefully resetting node {ctx.node} ...")
    _reset(ctx)


@command("version", "Displays the version of this broker and its tools", "Help", "version", tools=BOTH)
def version(ctx: Context, ns: argparse.Namespace) -> None:
    from .. import __version__

    if ctx.json:
        fmt.write_json(ctx.out, {"version": __version__})
    else:
        ctx.result(__version__)


# -- health checks (rabbitmq-diagnostics) ---------------------------------------------------------

def _listeners(ctx: Context, info: dict) -> list[tuple[str, str, int]]:
    """(interface, protocol, port) of every listener: the node's, plus the HTTP ones its record
    names (the control endpoint is left out: it is no client's business)."""
    found = [(_interface(l.get("ip_address")), str(l.get("protocol")), int(l.get("port") or 0))
             for l in info.get("listeners") or []]
    record = ctx.client().record
    for protocol, key in (("http", "management_port"), ("http/prometheus", "prometheus_port")):
        port = record.get(key)
        if port and not any(p == port for _, _, p in found):
            found.append((record.get("host") or "[::]", protocol, port))
    return sorted(found, key=lambda l: l[2])


@command("check_running", "Health check that exits with a non-zero code if the broker is not running",
         "Health checks", "check_running", tools=DIAGNOSTICS)
def check_running(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Checking if RabbitMQ is running on node {ctx.node} ...")
    ctx.call("await_startup")
    ctx.result(f"RabbitMQ on node {ctx.node} is fully booted and running")


@command("is_running", "Checks if the broker is fully booted and running", "Health checks", "is_running",
         tools=DIAGNOSTICS)
def is_running(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Asking node {ctx.node} for its status ...")
    ctx.call("await_startup")
    ctx.result(f"RabbitMQ on node {ctx.node} is fully booted and running")


@command("check_port_connectivity", "Health check that opens a TCP connection to every listener of the node",
         "Health checks", "check_port_connectivity", tools=DIAGNOSTICS)
def check_port_connectivity(ctx: Context, ns: argparse.Namespace) -> None:
    import socket

    ctx.banner(f"Testing TCP connections to all active listeners on node {ctx.node} ...")
    listeners = _listeners(ctx, ctx.call("node_info"))
    failed = []
    for interface, protocol, port in listeners:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "::1"}.get(interface, interface.strip("[]"))
        try:
            socket.create_connection((host, port), timeout=ctx.timeout or 5).close()
        except OSError:
            failed.append(f"port {port} ({protocol})")
    ports = ", ".join(str(p) for p in sorted({p for _, _, p in listeners}))
    if failed:
        raise CtlError(EX_UNAVAILABLE, f"Connection to {', '.join(failed)} on node {ctx.node} failed")
    ctx.result(f"Successfully connected to ports {ports} on node {ctx.node}.")


@command("listeners", "Lists the node's protocol listeners", "Health checks", "listeners", tools=DIAGNOSTICS)
def listeners(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Asking node {ctx.node} to report its protocol listeners ...")
    for interface, protocol, port in _listeners(ctx, ctx.call("node_info")):
        ctx.result(f"Interface: {interface}, port: {port}, protocol: {protocol}, purpose: {_purpose(protocol)}")


def _alarms(ctx: Context) -> list[str]:
    return list(ctx.call("node_info").get("alarms") or [])


@command("check_local_alarms", "Health check that fails if the node has resource alarms in effect",
         "Health checks", "check_local_alarms", tools=DIAGNOSTICS)
def check_local_alarms(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Asking node {ctx.node} to report any local resource alarms ...")
    alarms = _alarms(ctx)
    if alarms:
        raise CtlError(EX_UNAVAILABLE, f"Node {ctx.node} reported local alarms: {', '.join(alarms)}")
    ctx.result(f"Node {ctx.node} reported no local alarms")


@command("check_alarms", "Health check that fails if the node has resource alarms in effect",
         "Health checks", "check_alarms", tools=DIAGNOSTICS)
def check_alarms(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Asking node {ctx.node} to report any local resource alarms ...")
    alarms = _alarms(ctx)
    if alarms:
        raise CtlError(EX_UNAVAILABLE, f"Node {ctx.node} reported alarms: {', '.join(alarms)}")
    ctx.result(f"Node {ctx.node} reported no alarms, local or clusterwide")


@command("check_virtual_hosts", "Health check that checks that every virtual host is running", "Health checks",
         "check_virtual_hosts", tools=DIAGNOSTICS)
def check_virtual_hosts(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Checking if all vhosts are running on node {ctx.node} ...")
    ctx.call("vhosts")
    ctx.result(f"Node {ctx.node} reported all vhosts as running")


@command("server_version", "Displays the version of the broker on the target node", "Health checks",
         "server_version", tools=DIAGNOSTICS)
def server_version(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f"Asking node {ctx.node} for its RabbitMQ version...")
    ctx.result(str(ctx.call("status").get("version")))


# -- running ---------------------------------------------------------------------------------------

def unreachable_text(node: str, details: str) -> str:
    """rabbitmqctl's text for a node it cannot reach, with our diagnostics."""
    return (
        f"Error: unable to perform an operation on node '{node}'. Please see diagnostics information and "
        "suggestions below.\n\n"
        "Most common reasons for this are:\n\n"
        " * Target node is not running\n"
        " * Target node runs as another user (its discovery record is readable by its user only)\n"
        " * Target node has another name: give it with -n <node> (or RABBITMQ_NODENAME), or give its data "
        "directory with --data-dir (or RABBITMQ_MNESIA_BASE)\n\n"
        "DIAGNOSTICS\n===========\n\n"
        f"attempted to contact: [{node}]\n\n"
        f"{node}:\n  * {details}\n"
    )


def execute(cmd: Command, ctx: Context, ns: argparse.Namespace, err: TextIO) -> int:
    """Run a command; map its failure to rabbitmqctl's exit code and stderr text."""
    try:
        cmd.run(ctx, ns)
        return EX_OK
    except CtlError as exc:
        err.write(exc.text + "\n" if exc.bare else f"Error:\n{exc.text}\n")
        return exc.code
    except NodeUnreachable as exc:
        err.write(unreachable_text(exc.node, exc.details))
        return EX_UNAVAILABLE
    except OperationTimeout:
        used = ctx.timeout if ctx.timeout is not None else "infinity"
        err.write(f"Error: operation {cmd.name} on node {ctx.node} timed out. Timeout value used: {used}\n")
        return EX_TEMPFAIL
    except RemoteError as exc:
        err.write(f"Error:\n{exc.reason}\n")
        return EX_DATAERR if exc.kind == "bad_request" else EX_UNAVAILABLE
    finally:
        ctx.close()


# The limit commands live in their own module; importing it registers them.
from . import limits_commands  # noqa: E402,F401
