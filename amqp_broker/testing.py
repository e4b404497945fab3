"""Run a broker in-process, in a background thread, for test suites (ours and our users').

    with BrokerThread() as broker:
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))

The broker listens on 127.0.0.1 and a free port unless told otherwise, and shuts down the way
SIGTERM does (clients get 320 CONNECTION_FORCED).

Its HTTP listeners are off by default (``management_port`` and ``prometheus_port`` 0), so test
brokers never compete for 15672/15692. ``BrokerThread(management=True)`` serves the management API
on a free port, found in ``broker.management_port`` once started; ``prometheus=True`` does the
same for ``/metrics`` (``broker.prometheus_port``). A free port rather than a fixed one, because
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
from typing import Any, Callable, TypeVar

import trio

from .config import Settings
from .server.listener import BrokerServer

T = TypeVar("T")


class BrokerThread:
    """A broker on its own trio loop in a daemon thread."""

    def __init__(self, settings: Settings | None = None, *, management: bool = False,
                 prometheus: bool = False, **overrides: Any):
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
        #: The ports of the HTTP listeners asked for with management=True / prometheus=True.
        self.management_port = 0
        self.prometheus_port = 0
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
        async with trio.open_nursery() as nursery:
            self.port = await nursery.start(lambda task_status: server.serve(
                handle_signals=False, task_status=task_status))
            ports = {protocol: port for protocol, _host, port in server.listeners}
            self.management_port = ports.get("http", 0)
            self.prometheus_port = ports.get("http/prometheus", 0)
            self.tls_port = server.tls_port
            auto = server.tls.auto if server.tls is not None else {}
            self.tls_ca = auto.get("ca", "")
            self.tls_certfile = auto.get("certfile", "")
            self.tls_client_cert = auto.get("client_certfile", "")
            self.tls_client_key = auto.get("client_keyfile", "")
            self._ready.set()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the broker's loop (safe access to broker state) and return it."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

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
