"""Accept connections, run them, and shut down cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from functools import partial

import trio

from .. import compiled
from ..broker.admin import Admin
from ..broker.broker import Broker
from ..config import Settings
from ..store.lock import DataDirLock
from ..store.sqlite import SQLiteStore
from . import discovery
from .committer import Committer
from .flow import FlowControl
from .flow import ALARMS, memory_limit, resident_memory
from .flow import monitor as flow_monitor
from .connection import ServerConnection
from .control import new_token, serve_control
from .admission import ConnectionMax
from .descriptors import fd_limit, open_fd_count, serve_listeners
from .faults import Faults
from .peers import socket_names
from .timers import drive_timers
from .trace import Tracing

log = logging.getLogger("amqp_broker.server")

# On shutdown, how long connections get to answer our connection.close before we drop them.
SHUTDOWN_GRACE = 2.0
# Bytes waiting for the disk above which publishers pause, and below which they resume: bounds the
# memory a disk slower than the publishers can cost (about RabbitMQ's credit-flow budget).
STORE_BACKLOG_HIGH = 32 * 1024 * 1024
STORE_BACKLOG_LOW = 8 * 1024 * 1024
SHUTDOWN_TEXT = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"


class ListenError(OSError):
    """A listening socket could not be opened; the message says what it was for, and where."""

    def __init__(self, what: str, host: str, port: int, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        where = f"{host or '*'}:{port}"
        if isinstance(cause, socket.gaierror):
            self.message = f"cannot resolve host {host!r} to listen for {what} on {where}"
        else:
            self.message = f"cannot listen for {what} on {where}"
        self.message += f": {self.strerror}"

    def __str__(self) -> str:
        return self.message


class BrokerServer:
    """The listening sockets, the broker core and the set of live connections."""

    def __init__(self, settings: Settings, broker: Broker | None = None):
        self.settings = settings
        self.broker = broker or Broker(
            settings.default_user, settings.default_pass, settings.default_vhost,
            consumer_timeout_ms=settings.consumer_timeout_ms, loopback_users=settings.loopback_users,
            failed_login_log_interval=settings.failed_login_log_interval,
        )
        # As RabbitMQ's, the cluster is named after the node unless configured.
        self.node_name = settings.node_name
        self.cluster_name = settings.cluster_name or settings.node_name
        # What connection.start announces instead of our own product, version and platform.
        self.identity = {"product": settings.server_product, "version": settings.server_version,
                         "platform": settings.server_platform}
        self.connections: set[ServerConnection] = set()
        # While a connection's reader handles input: the connections whose output it wrote to
        # (see ServerConnection._handle_input); None otherwise.
        self.woken_outputs: list[ServerConnection] | None = None
        self.port = 0
        # Ports the management API and the metrics endpoint are bound to, once they listen; None
        # while they do not. Tools learn them from the node record written at start-up.
        self.management_port: int | None = None
        self.prometheus_port: int | None = None
        self._shutdown = trio.Event()
        self.store: SQLiteStore | None = None
        self.committer: Committer | None = None
        self.flow = FlowControl(lambda: list(self.connections))
        # Alarm thresholds in bytes (0: off); attributes so a test or an operator can change them.
        self.memory_limit = memory_limit(settings.memory_high_watermark)
        self.disk_free_limit = settings.disk_free_limit_bytes
        # What the management API, the control CLI and the pytest plugin use: the only door in.
        self.admin = Admin(self.broker, self.node_info)
        # Frame traces (server/trace.py); the admin API reaches them for the management API.
        self.tracing = Tracing(lambda: list(self.connections))
        self.admin.tracing = self.tracing
        # Fault injection, the one door for tests, /api/amqp-broker/faults and `ctl fault` (server/faults.py).
        self.faults = Faults(self)
        self.started_at = time.time()
        # (protocol, address, port) of every listening socket, AMQP's and the HTTP ones.
        self.listeners: list[tuple[str, str, int]] = []
        # The HTTP listeners to open, by protocol: a port, 0 for any free one, None for none.
        # From the settings (where 0 means off); a test may ask for a free port instead.
        self.http_ports: dict[str, int | None] = {
            "http": settings.management_port or None,
            "http/prometheus": settings.prometheus_port or None,
        }
        # The MQTT listener (rabbitmq_mqtt's): its port, 0 for any free one, None for none; the
        # package is imported only when it is on.
        self.mqtt_port: int | None = settings.mqtt_port or None
        self.mqtt = None
        # The control endpoint (server/control.py): its port, and the secret its callers present.
        self.control_port = 0
        self.control_token = new_token()
        # RabbitMQ's connection_max: accepting waits while that many connections are open.
        self.connection_max = ConnectionMax(settings.connection_max) if settings.connection_max else None
        # The STOMP listener (amqp_broker/stomp): its port (0: any free one; None: off, the
        # default, from stomp_port where 0 means off), and the service once it listens.
        self.stomp_port: int | None = settings.stomp_port or None
        self.stomp = None
        # The AMQPS listener (server/tls.py): its set-up once started, and its port (0: none).
        self.tls = None
        self.tls_port = 0
        self._tls_listeners: list = []

    def node_info(self) -> dict:
        """Facts of this broker process the core cannot know, for :class:`Admin`."""
        return {
            "name": self.node_name,
            "cluster_name": self.cluster_name,
            "pid": os.getpid(),
            "listeners": [
                {"protocol": protocol, "ip_address": address, "port": port}
                for protocol, address, port in self.listeners
            ],
            "mem_used": resident_memory(),
            "mem_limit": self.memory_limit,
            "disk_free_limit": self.disk_free_limit,
            "alarms": sorted(r for r in self.flow.reasons if r in ALARMS),
            "uptime_ms": int((time.time() - self.started_at) * 1000),
            "data_dir": os.path.abspath(self.settings.data_dir),
            "processors": os.cpu_count() or 1,
            "fd_used": open_fd_count(),
            "fd_total": fd_limit(),
            "sockets_used": len(self.connections),
            "product_version": _version(),
            **_disk_free(self.settings.data_dir),
            **self._tls_info(),
        }

    def _tls_info(self) -> dict:
        """{"tls": port, verification, and the generated files' paths} when AMQPS is on."""
        if self.tls is None:
            return {}
        return {"tls": {"port": self.tls_port, "verify": self.tls.verify, **self.tls.auto}}

    def alarm_limits(self) -> tuple[int, str, int]:
        """(memory limit, data directory, free-disk limit) for the alarm monitor."""
        return self.memory_limit, self.settings.data_dir, self.disk_free_limit

    def open_store(self, lock: DataDirLock | None = None) -> None:
        """Open the data directory's store (taking its lock unless ``lock`` holds it already) and
        rebuild durable state from it (before accepting connections)."""
        if self.store is not None or not self.settings.data_dir:
            return
        store = SQLiteStore(self.settings.data_dir, lock)
        try:
            if self.settings.definitions:
                # Attach, then import the file (every start, as RabbitMQ's load_definitions).
                from ..definitions import boot_with_definitions

                counts = boot_with_definitions(
                    self.broker, store, self.settings.definitions, self.settings.queue_memory_limit_bytes
                )
            else:
                counts = self.broker.attach_store(store, self.settings.queue_memory_limit_bytes)
        except BaseException:
            store.take_batch()  # nothing of a failed start reaches the disk
            store.close(clean=store.opened_clean)
            raise
        log.info(
            "data directory %s: recovered %d exchange(s), %d queue(s), %d binding(s), %d message(s)",
            os.path.abspath(self.settings.data_dir), counts["exchanges"], counts["queues"],
            counts["bindings"], counts["messages"],
        )
        self.store = store
        self.committer = Committer(store, self._after_commit)

    def check_store_backlog(self) -> None:
        """Pause publishers while more than STORE_BACKLOG_HIGH bytes wait for the disk."""
        store = self.store
        if store is not None and store.backlog_bytes > STORE_BACKLOG_HIGH:
            self.flow.block("store")

    def _after_commit(self, ok: bool) -> None:
        store = self.store
        if store is not None and store.backlog_bytes < STORE_BACKLOG_LOW:
            self.flow.unblock("store")
        # Confirms released by a commit are coalesced per channel; send them now, not at the
        # publisher's next read.
        for conn in self.connections:
            conn.protocol.confirms.flush()

    def shutdown(self) -> None:
        """Ask :meth:`serve` to close every connection with 320 and return."""
        self._shutdown.set()

    async def serve(
        self,
        *,
        handle_signals: bool = True,
        on_ready: Callable[[], None] | None = None,
        task_status=trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen, report the bound port through ``task_status``, and serve until shutdown.

        The order makes a failed start harmless: the data directory's lock first (a second
        broker on it is refused, naming the holder), then the ports, AMQP's and the HTTP ones (a
        busy one fails before the store is touched), then the store. The store is marked cleanly
        shut down only when serving ended by a shutdown, not by an error. ``on_ready`` is called
        once all that succeeded, just before "Server startup complete" is logged."""
        if self.settings.trace_file:
            self.tracing.trace_all(self.settings.trace_file)  # a bad path fails the start
        lock = DataDirLock(self.settings.data_dir).acquire() if self.settings.data_dir else None
        listeners: list = []
        http: list = []
        lock_given = False  # once open_store has the lock, the store releases it
        try:
            listeners = await trio.open_tcp_listeners(self.settings.port, host=self.settings.bind_host)
        except OSError as exc:
            if lock is not None:
                lock.release()
            raise ListenError("AMQP clients", self.settings.host, self.settings.port, exc) from exc
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            tls_listeners = await self._open_tls()
            listeners += tls_listeners
            http = await self._open_http()
            self.stomp = await self._open_stomp()
            if self.mqtt_port is not None:
                from ..mqtt.server import MqttServer

                self.mqtt = MqttServer(self)
                try:
                    http.append(await self.mqtt.open(self.settings.bind_host, self.mqtt_port))
                except OSError as exc:
                    raise ListenError("MQTT clients", self.settings.host, self.mqtt_port, exc) from exc
            lock_given = True
            self.open_store(lock)
        except BaseException:
            for listener in listeners:
                listener.socket.close()
            for service in http:
                service.close()
            if self.stomp is not None:
                self.stomp.close()
            if lock is not None and not lock_given:
                lock.release()
            raise
        clean = False
        try:
            await self._serve(listeners, handle_signals, on_ready, task_status, http)
            clean = True
        finally:
            if self.store is not None:
                self.store.close(clean=clean)

    async def _open_tls(self) -> list:
        """Load the TLS set-up and bind the AMQPS port, when the settings ask for them; the
        listeners are kept in _tls_listeners too, so that _serve tells them from the plain ones."""
        from .tls import load_tls, open_tls_listeners

        self.tls = load_tls(self.settings)
        if self.tls is None:
            return []
        self._tls_listeners = await open_tls_listeners(self.settings)
        return self._tls_listeners

    async def _open_http(self) -> list:
        """Bind the management and Prometheus ports that are on (see :attr:`http_ports`)."""
        if not any(port is not None for port in self.http_ports.values()):
            return []
        # Imported only when used: a broker without HTTP listeners does not load h11.
        from ..management.server import open_http_services

        return await open_http_services(self.http_ports, self.settings.bind_host, self.admin,
                                        faults=self.faults)

    async def _open_stomp(self):
        if self.stomp_port is None:
            return None
        from ..stomp.server import StompService

        try:
            return await StompService.open(self, self.stomp_port)
        except OSError as exc:
            raise ListenError("STOMP clients", self.settings.host, self.stomp_port, exc) from exc

    async def _serve(
        self, listeners: list, handle_signals: bool, on_ready: Callable[[], None] | None,
        task_status, http: list = (),
    ) -> None:
        tls = [listener for listener in listeners if listener in self._tls_listeners]
        listeners = [listener for listener in listeners if listener not in tls]
        self.port = listeners[0].socket.getsockname()[1]
        self.listeners = [
            ("amqp", *listener.socket.getsockname()[:2]) for listener in listeners
        ] + [("amqp/ssl", *listener.socket.getsockname()[:2]) for listener in tls]
        if tls:
            self.tls_port = tls[0].socket.getsockname()[1]
        for service in http:
            self.listeners += [(service.protocol, host, port) for host, port in service.addresses]
            bound = service.addresses[0][1]
            if service.protocol == "mqtt":
                self.mqtt_port = bound
            elif service.protocol == "http":
                self.management_port = bound
            else:
                self.prometheus_port = bound
            log.info("%s listening on %s", service.server.name,
                     ", ".join("%s:%d" % address for address in service.addresses))
        if self.stomp is not None:
            self.listeners += [("stomp", host, port) for host, port in self.stomp.addresses]
        addresses = ", ".join(
            "%s:%d" % tuple(listener.socket.getsockname()[:2]) for listener in listeners
        )
        if tls:
            # Its own line (RabbitMQ's words): tools read the plain port off the start-up line.
            log.info("started TLS (SSL) listener on %s", ", ".join(
                "%s:%d" % tuple(listener.socket.getsockname()[:2]) for listener in tls))
        async with trio.open_nursery() as nursery:
            if handle_signals:
                # start(), not start_soon(): SIGINT/SIGTERM must be ours before "startup complete"
                # is logged, or a signal sent right after that line kills the process outright.
                await nursery.start(self._watch_signals)
            accept_scope = trio.CancelScope()

            async def accept() -> None:
                with accept_scope:
                    if not tls:
                        await serve_listeners(self._handle, listeners, handler_nursery=nursery,
                                              gate=self.connection_max)
                        return
                    from .tls import handle_tls

                    # One gate for both: connection_max counts every client connection.
                    async with trio.open_nursery() as accepting:
                        accepting.start_soon(partial(
                            serve_listeners, self._handle, listeners, handler_nursery=nursery,
                            gate=self.connection_max))
                        accepting.start_soon(partial(
                            serve_listeners, partial(handle_tls, self, self.tls), tls,
                            handler_nursery=nursery, gate=self.connection_max))

            nursery.start_soon(accept)
            for service in http:
                await nursery.start(service.serve)
            if self.stomp is not None:
                await nursery.start(self.stomp.serve)
            nursery.start_soon(drive_timers, self.broker.timers)
            if self.committer is not None:
                nursery.start_soon(self.committer.run)
            nursery.start_soon(flow_monitor, self.flow, self.alarm_limits)
            # Before the ready line: a tool that saw it (or the discovery record) can control us.
            self.control_port = await nursery.start(serve_control, self, self.control_token)
            if on_ready is not None:
                on_ready()
            # Written before the start-up line, so that a tool which waited for it finds the node.
            announcement = discovery.announce(
                self.settings, self.port, self.management_port, self.prometheus_port,
                control_port=self.control_port, control_token=self.control_token,
                **({"tls_port": self.tls_port, "tls": self.tls.auto} if self.tls else {}),
            )
            ready = f"Server startup complete; listening on {addresses} (amqp_broker {_version()})"
            if log.isEnabledFor(logging.INFO):
                log.info("%s", ready)
            else:
                # Tools wait for this line (as with RabbitMQ), so it is printed at any log level.
                print(ready, file=sys.stderr, flush=True)
            task_status.started(self.port)
            try:
                await self._shutdown.wait()
            finally:
                announcement.withdraw()
            log.info("stopping: closing %d connection(s)", len(self.connections))
            accept_scope.cancel()
            if self.mqtt is not None:
                self.mqtt.close_all()
            for conn in list(self.connections):
                conn.force_close(SHUTDOWN_TEXT)
            if self.stomp is not None:
                self.stomp.shutdown()
            with trio.move_on_after(SHUTDOWN_GRACE):
                for conn in list(self.connections):
                    await conn.done.wait()
                if self.stomp is not None:
                    await self.stomp.wait_closed()
            nursery.cancel_scope.cancel()
        self.tracing.close()
        log.info("stopped")

    async def _watch_signals(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                self.shutdown()
                return

    async def _handle(self, stream: trio.SocketStream) -> None:
        peer, local = socket_names(stream)
        conn = ServerConnection(self, stream, peer, local)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)


def _disk_free(path: str) -> dict:
    """{"disk_free": bytes free on ``path``'s file system}, or {} when it cannot be read."""
    try:
        return {"disk_free": shutil.disk_usage(path).free}
    except OSError:
        return {}


def _version() -> str:
    from .. import __version__

    return __version__


async def run_broker(
    settings: Settings,
    *,
    on_ready: Callable[[], None] | None = None,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a broker with ``settings`` until SIGINT/SIGTERM (the CLI's entry point); ``on_ready``
    as in :meth:`BrokerServer.serve`."""
    server = BrokerServer(settings)

    def ready() -> None:
        compiled.log_build(log)  # the CLI's broker says whether its hot path runs compiled
        if on_ready is not None:
            on_ready()

    await server.serve(on_ready=ready, task_status=task_status)
