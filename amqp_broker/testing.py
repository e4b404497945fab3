"""Run a broker in-process, in a background thread, for test suites (ours and our users').

    with BrokerThread() as broker:
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))

The broker listens on 127.0.0.1 and a free port unless told otherwise, and shuts down the way
SIGTERM does (clients get 320 CONNECTION_FORCED).

Frame traces (one JSON line per frame; ``amqp-broker trace show FILE`` prints them): all
connections with ``BrokerThread(trace_file=path)`` or ``broker.trace_all(path)``, one with
``broker.trace(name, path)`` (its name from ``BrokerThread.connection_name(client_socket)``),
``broker.trace_off(name)`` to stop.

Its HTTP listeners are off by default (``management_port`` and ``prometheus_port`` 0), so test
brokers never compete for 15672/15692. ``BrokerThread(management=True)`` serves the management API
on a free port, found in ``broker.management_port`` once started; ``prometheus=True`` does the
same for ``/metrics`` (``broker.prometheus_port``), ``mqtt=True`` for the MQTT listener
(``broker.mqtt_port``). A free port rather than a fixed one, because
settings have no value for "any port" (0 there means off) and tests run side by side.

    with BrokerThread(management=True) as broker:
        urllib.request.urlopen(f"http://127.0.0.1:{broker.management_port}/api/overview")

TLS is off unless asked for. ``BrokerThread(tls="auto")`` serves AMQPS on a free port
(``broker.tls_port``) with a throw-away CA made in the broker's data directory: ``broker.tls_ca``
verifies the server, and ``broker.tls_client_cert`` / ``broker.tls_client_key`` are a client
certificate for ``guest`` (an EXTERNAL login).
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from typing import Any, Callable, TypeVar

import trio

from .config import Settings
from .server.listener import BrokerServer

T = TypeVar("T")


class BrokerThread:
    """A broker on its own trio loop in a daemon thread."""

    def __init__(self, settings: Settings | None = None, *, management: bool = False,
                 prometheus: bool = False, stomp: bool = False, mqtt: bool = False,
                 **overrides: Any):
        if settings is None and "data_dir" not in overrides:
            # A private data directory, so test brokers never share (or leave behind) state.
            self._tmp = tempfile.TemporaryDirectory(prefix="amqp-broker-")
            overrides["data_dir"] = self._tmp.name
        base = settings or Settings(host="127.0.0.1", port=0, management_port=0, prometheus_port=0,
                                    tls_port=0)
        self.settings = dataclasses.replace(base, **overrides) if overrides else base
        self.server: BrokerServer | None = None
        self.port = 0
        self._free_ports = {"http": management, "http/prometheus": prometheus}
        self._stomp = stomp
        #: The STOMP listener's port, asked for with stomp=True (a free one).
        self.stomp_port = 0
        #: The ports of the HTTP listeners asked for with management=True / prometheus=True.
        self.management_port = 0
        self.prometheus_port = 0
        #: The MQTT listener's port, when asked for with mqtt=True (a free one).
        self.mqtt_port = 0
        self._mqtt = mqtt
        #: The AMQPS port (0: TLS off) and, with tls="auto", the generated files.
        self.tls_port = 0
        self.tls_ca = ""
        self.tls_certfile = ""
        self.tls_client_cert = ""
        self.tls_client_key = ""
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> "BrokerThread":
        """Start the broker and wait until it accepts connections."""
        self._thread = threading.Thread(target=self._run, name="amqp-broker", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("broker failed to start") from self._error
        if not self.port:
            raise RuntimeError("broker did not start within 30 s")
        return self

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to start() or stop()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self.server = server = BrokerServer(self.settings)
        for protocol, wanted in self._free_ports.items():
            if wanted:
                server.http_ports[protocol] = 0
        if self._stomp:
            server.stomp_port = 0
        if self._mqtt:
            server.mqtt_port = 0
        async with trio.open_nursery() as nursery:
            self.port = await nursery.start(lambda task_status: server.serve(
                handle_signals=False, task_status=task_status))
            ports = {protocol: port for protocol, _host, port in server.listeners}
            self.management_port = ports.get("http", 0)
            self.prometheus_port = ports.get("http/prometheus", 0)
            self.stomp_port = ports.get("stomp", 0)
            self.mqtt_port = ports.get("mqtt", 0)
            self.tls_port = server.tls_port
            auto = server.tls.auto if server.tls is not None else {}
            self.tls_ca = auto.get("ca", "")
            self.tls_certfile = auto.get("certfile", "")
            self.tls_client_cert = auto.get("client_certfile", "")
            self.tls_client_key = auto.get("client_keyfile", "")
            self._ready.set()

    @property
    def faults(self) -> "FaultsProxy":
        """Fault injection on this broker (:class:`FaultsProxy`)."""
        return FaultsProxy(self)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the broker's loop (safe access to broker state) and return it."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def trace(self, connection: str, path: str) -> None:
        """Trace the frames of the connection named ``connection`` (``"127.0.0.1:PORT ->
        127.0.0.1:BROKER_PORT"``, as ``connection_name`` gives it) into ``path``, from now on."""
        self.call(self._server().tracing.trace, connection, path)

    def trace_off(self, connection: str) -> None:
        """Stop tracing one connection."""
        self.call(self._server().tracing.untrace, connection)

    def trace_all(self, path: str | None) -> None:
        """Trace every connection, open and to come, into ``path``; None stops every trace."""
        self.call(self._server().tracing.trace_all, path)

    @staticmethod
    def connection_name(sock_or_address: Any, port: int | None = None) -> str:
        """A client connection's name as the broker knows it, from the client's socket (or its
        local ``(host, port)`` address and the broker's port)."""
        if hasattr(sock_or_address, "getsockname"):
            host, client_port = sock_or_address.getsockname()[:2]
            broker_host, port = sock_or_address.getpeername()[:2]
        else:
            host, client_port = sock_or_address[:2]
            broker_host = host
        return f"{host}:{client_port} -> {broker_host}:{port}"

    def _server(self) -> BrokerServer:
        if self.server is None:
            raise RuntimeError("the broker is not running")
        return self.server

    def stop(self) -> None:
        """Shut down like SIGTERM does and wait for the thread."""
        if self._thread is None:
            return
        if self.server is not None and self._token is not None:
            try:
                trio.from_thread.run_sync(self.server.shutdown, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(30)
        self._thread = None
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()

    def __enter__(self) -> "BrokerThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class FaultsProxy:
    """The broker's :class:`~amqp_broker.server.faults.Faults`, from the test's thread: one call
    per fault, run on the broker's loop. Each returns the fault's record (a dict: ``id``,
    ``state``, ``seen``, ``fired``...).

    Every call takes the target's narrowing (``connection``: a name, peer address or the client's
    connection_name; ``vhost``, ``channel``, ``queue``, ``exchange``, ``routing_key``,
    ``consumer_tag``) and a trigger (``on="basic.publish", after=3, times=1``); without ``on``
    the fault acts at once. States (silence, held deliveries, withheld confirms...) last until
    :meth:`release`."""

    def __init__(self, thread: BrokerThread):
        self._thread = thread

    def _faults(self) -> Any:
        return self._thread.server.faults

    def arm(self, fault: str, **options: Any) -> dict:
        """Arm a fault of any kind (see :data:`~amqp_broker.server.faults.KINDS`)."""
        return self._thread.call(lambda: self._faults().arm(fault, **options))

    def list(self) -> list[dict]:
        return self._thread.call(lambda: self._faults().list())

    def get(self, fault_id: str) -> dict:
        return self._thread.call(lambda: self._faults().get(fault_id))

    def release(self, fault: "dict | str | None" = None) -> int:
        """Lift one fault (its record or id), or every one."""
        fault_id = fault["id"] if isinstance(fault, dict) else fault
        return self._thread.call(lambda: self._faults().release(fault_id))

    def wait_fired(self, fault: "dict | str", timeout: float = 10.0) -> dict:
        """Wait until a triggered fault has fired; its record."""
        fault_id = fault["id"] if isinstance(fault, dict) else fault
        deadline = time.monotonic() + timeout
        while True:
            record = self.get(fault_id)
            if record["fired"]:
                return record
            if time.monotonic() >= deadline:
                raise AssertionError(f"fault {fault_id} did not fire within {timeout} s: {record}")
            time.sleep(0.01)

    # One method per kind: what a test reads.

    def close_connection(self, code: int = 320, text: str | None = None, **options: Any) -> dict:
        """Server-sent connection.close (default 320 CONNECTION_FORCED)."""
        return self.arm("close_connection", code=code, text=text, **options)

    def close_channel(self, channel: int | None = None, code: int = 406, text: str | None = None,
                      **options: Any) -> dict:
        """Server-sent channel.close (default 406); triggered, the channel the trigger came on."""
        return self.arm("close_channel", channel=channel, code=code, text=text, **options)

    def silence(self, **options: Any) -> dict:
        """Send nothing more, heartbeats included, but keep the socket open (until released)."""
        return self.arm("silence", **options)

    def stop_heartbeats(self, **options: Any) -> dict:
        """Send no heartbeats (until released); everything else goes out."""
        return self.arm("stop_heartbeats", **options)

    def hold_deliveries(self, **options: Any) -> dict:
        """Keep deliveries (of a ``queue``, a ``consumer_tag``...) back until released."""
        return self.arm("hold_deliveries", **options)

    def delay_deliveries(self, seconds: float, **options: Any) -> dict:
        """Deliver ``seconds`` late (until released)."""
        return self.arm("delay_deliveries", seconds=seconds, **options)

    def block(self, reason: str = "low on memory", **options: Any) -> dict:
        """connection.blocked (to clients that announced the capability)."""
        return self.arm("block", reason=reason, **options)

    def unblock(self, **options: Any) -> dict:
        """connection.unblocked."""
        return self.arm("unblock", **options)

    def cancel_consumer(self, **options: Any) -> dict:
        """Server-sent basic.cancel, as for a deleted queue (consumer_cancel_notify clients)."""
        return self.arm("cancel_consumer", **options)

    def nack_confirms(self, count: int = 0, **options: Any) -> dict:
        """Publisher confirms become basic.nack (the next ``count``, or all until released)."""
        return self.arm("nack_confirms", count=count, **options)

    def withhold_confirms(self, **options: Any) -> dict:
        """Publisher confirms wait until released."""
        return self.arm("withhold_confirms", **options)

    def reset(self, **options: Any) -> dict:
        """Drop the TCP connection with a reset (RST), no close frame."""
        return self.arm("reset", **options)

    def restart(self, keep_transient: bool = False, **options: Any) -> dict:
        """What a RabbitMQ restart looks like to clients: 320 CONNECTION_FORCED "...reason
        'shutdown'" to every connection, non-durable queues gone (unless kept), durable state
        kept; new connections are accepted right away."""
        return self.arm("restart", keep_transient=keep_transient, **options)
