"""The control endpoint: what ``amqp-broker ctl`` (and the rabbitmqctl shim) talks to.

A TCP listener on 127.0.0.1 and a port the OS picks, speaking one JSON object per line each way:

    request   {"token": "...", "op": "queues", "args": {"vhost": "/"}}
    response  {"ok": true, "result": [...]}
              {"ok": false, "error": {"kind": "not_found", "reason": "queue 'q' in vhost '/' not found"}}

It is not the management HTTP API because that one can be off (RabbitMQ's test fixtures start
nodes without the management plugin) while the control CLI must always work. Loopback only, and
every request carries a random token that only the broker's user can read (it is written, with
the port, into the node's discovery record, mode 0600), so another local user cannot drive the
broker through it.

Requests are whitelisted by name (:func:`operations`): the :class:`~amqp_broker.broker.admin.Admin`
calls plus ``status``, ``await_startup``, ``stop``, ``reset`` and the frame traces' ``trace_on``,
``trace_off`` and ``traces`` (server/trace.py). Arguments are checked against
the call's signature and annotations before it runs, and whatever a call raises becomes an error
response: a bad request never takes the broker down.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import secrets
from typing import TYPE_CHECKING, Any, Callable

import trio

from ..broker.admin import AdminError

if TYPE_CHECKING:  # pragma: no cover
    from .listener import BrokerServer

log = logging.getLogger("amqp_broker.server.control")

#: Longest request line: an import_definitions request carries a whole definitions file.
MAX_REQUEST = 64 * 1024 * 1024
#: A connection that sends nothing for this long is closed (the CLI sends at once).
IDLE_TIMEOUT = 300.0

_ADMIN_OPS = (
    "overview", "node_info",
    "vhosts", "vhost", "add_vhost", "delete_vhost",
    "users", "user", "add_user", "delete_user", "change_password", "clear_password",
    "set_user_tags", "authenticate_user",
    "permissions", "set_permissions", "clear_permissions",
    "exchanges", "queues", "queue", "purge_queue", "delete_queue", "bindings",
    "connections", "connection", "close_connection", "close_all_connections",
    "channels", "consumers",
    "export_definitions", "import_definitions",
    "vhost_limits", "set_vhost_limits", "clear_vhost_limits", "user_limits", "set_user_limits",
    "clear_user_limits",
)


def new_token() -> str:
    """A fresh secret for one broker run."""
    return secrets.token_hex(32)


def operations(server: "BrokerServer") -> dict[str, Callable[..., Any]]:
    """Every request name the control endpoint serves, with the call that serves it."""
    admin = server.admin
    ops: dict[str, Callable[..., Any]] = {name: getattr(admin, name) for name in _ADMIN_OPS}
    ops.update(fault_operations(server))

    def status() -> dict:
        """The node's facts and object totals (``rabbitmqctl status``)."""
        from .. import __version__

        return {"node": admin.node_info(), "overview": admin.overview(), "version": __version__,
                "vhost_count": len(admin.vhosts())}

    def await_startup() -> bool:
        """True: the endpoint starts with the broker, so any answer means it is up."""
        return True

    def stop() -> bool:
        """Shut down as SIGTERM does; the caller sees its connection close when it is done."""
        server.shutdown()
        return True

    def reset() -> bool:
        """Back to a fresh broker's state with the configured default user and vhost."""
        settings = server.settings
        admin.reset(settings.default_user, settings.default_pass, settings.default_vhost)
        return True

    def trace_on(connection: str, file: str) -> dict:
        """Trace a connection's frames into ``file`` (an absolute path: the caller's working
        directory is not ours)."""
        if not os.path.isabs(file):
            raise AdminError("bad_request", f"the trace file must be an absolute path, got {file!r}")
        return server.tracing.trace(connection, file)

    def trace_off(connection: str) -> dict:
        """Stop tracing a connection."""
        return server.tracing.untrace(connection)

    def traces() -> list:
        """Every connection and the file it is traced into (None: not traced)."""
        return server.tracing.traces()

    ops.update(status=status, await_startup=await_startup, stop=stop, reset=reset,
               trace_on=trace_on, trace_off=trace_off, traces=traces)
    return ops


def fault_operations(server: "BrokerServer") -> dict[str, Callable[..., Any]]:
    """Fault injection's requests (``amqp-broker ctl fault``), over the server's
    :class:`~amqp_broker.server.faults.Faults`."""
    faults = server.faults

    def fault_arm(spec: dict) -> dict:
        """Arm a fault: ``spec`` holds its kind under "fault" and the options of
        :meth:`~amqp_broker.server.faults.Faults.arm`."""
        options = dict(spec)
        kind = options.pop("fault", None)
        if not isinstance(kind, str):
            raise BadRequest("spec needs the fault's kind under 'fault'")
        return faults.arm(kind, **options)

    def fault_list() -> list:
        """Every fault not yet released."""
        return faults.list()

    def fault_release(fault: str | None = None) -> int:
        """Release one fault (by id), or every one."""
        return faults.release(fault)

    return {"fault_arm": fault_arm, "fault_list": fault_list, "fault_release": fault_release}


class BadRequest(Exception):
    """A request that is not well formed: the reason goes back to the caller."""


_SIMPLE_TYPES = {"str": str, "bool": bool, "int": int, "dict": dict, "bytes": str}


def _check_value(name: str, annotation: Any, value: Any) -> None:
    """Check a JSON value against a parameter annotation written as text (broker/admin/ uses
    ``from __future__ import annotations``); only the handful of shapes Admin uses occur."""
    if annotation is inspect.Parameter.empty:
        return
    text = str(annotation)
    for part in (p.strip() for p in text.split("|")):
        if part == "None" and value is None:
            return
        if part in _SIMPLE_TYPES:
            expected = _SIMPLE_TYPES[part]
            if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
                return
        if part.startswith(("Iterable[str]", "list[str]")):
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return
        if part == "Any":
            return
    raise BadRequest(f"argument {name!r} must be {text}, got {type(value).__name__}")


def call(ops: dict[str, Callable[..., Any]], op: Any, args: Any) -> Any:
    """Run one whitelisted operation with checked keyword arguments."""
    if not isinstance(op, str) or op not in ops:
        raise BadRequest(f"unknown operation {op!r}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest("args must be an object")
    fn = ops[op]
    signature = inspect.signature(fn)
    try:
        bound = signature.bind(**args)
    except TypeError as exc:
        raise BadRequest(f"{op}: {exc}") from None
    for name, value in bound.arguments.items():
        _check_value(name, signature.parameters[name].annotation, value)
    return fn(**args)


def answer(ops: dict[str, Callable[..., Any]], token: str, line: bytes) -> tuple[dict, bool]:
    """The response to one request line, and whether the connection may stay open."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return _error("bad_request", "request is not JSON"), False
    if not isinstance(request, dict):
        return _error("bad_request", "request must be a JSON object"), False
    supplied = request.get("token")
    if not isinstance(supplied, str) or not secrets.compare_digest(supplied.encode(), token.encode()):
        return _error("unauthorized", "bad or missing token"), False
    try:
        return {"ok": True, "result": call(ops, request.get("op"), request.get("args"))}, True
    except BadRequest as exc:
        return _error("bad_request", str(exc)), True
    except AdminError as exc:
        return _error(exc.kind, exc.reason), True
    except Exception as exc:  # a fault in one admin call must not take the broker down
        log.exception("control request %r failed", request.get("op"))
        return _error("internal", f"{type(exc).__name__}: {exc}"), True


def _error(kind: str, reason: str) -> dict:
    return {"ok": False, "error": {"kind": kind, "reason": reason}}


async def _serve_stream(stream: trio.SocketStream, ops: dict, token: str) -> None:
    buffer = bytearray()
    try:
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                if len(buffer) > MAX_REQUEST:
                    await _send(stream, _error("bad_request", "request too long"))
                    return
                with trio.move_on_after(IDLE_TIMEOUT) as idle:
                    data = await stream.receive_some(65536)
                if idle.cancelled_caught or not data:
                    return
                buffer += data
                continue
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            response, keep = answer(ops, token, line)
            await _send(stream, response)
            if not keep:
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def _send(stream: trio.SocketStream, response: dict) -> None:
    # default=str: a value JSON cannot carry (bytes, a datetime) is sent as its text, never an
    # exception in the middle of the broker's loop.
    data = json.dumps(response, default=str, separators=(",", ":")).encode("utf-8") + b"\n"
    await stream.send_all(data)


async def serve_control(server: "BrokerServer", token: str, *,
                        task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Listen on 127.0.0.1 (a free port), report the port through ``task_status``, and answer
    control requests until cancelled."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    ops = operations(server)
    port = listeners[0].socket.getsockname()[1]
    log.debug("control endpoint on 127.0.0.1:%d", port)

    async def handle(stream: trio.SocketStream) -> None:
        await _serve_stream(stream, ops, token)

    async with trio.open_nursery() as nursery:
        task_status.started(port)
        await trio.serve_listeners(handle, listeners, handler_nursery=nursery)
