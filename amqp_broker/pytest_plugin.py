"""pytest fixtures that give a test suite a real AMQP broker, in-process: no Erlang, no Docker.

Installing amqp_broker registers this plugin (entry point ``pytest11``, name ``amqp_broker``;
``-p no:amqp_broker`` turns it off). It stays inert until a test asks for one of its fixtures:
loading it imports nothing beyond the standard library and pytest, and the broker (with trio)
is imported and started the first time a fixture needs it.

``amqp_broker`` (session)
    One broker on 127.0.0.1 and a free port, on its own thread, with a temporary data directory.
    ``.url``, ``.host``, ``.port``, ``.admin`` (the broker's :class:`~amqp_broker.broker.admin.Admin`,
    each call run on the broker's loop), ``.faults`` (fault injection, README "Fault injection"),
    ``queues()``, ``purge_all()``, ``wait_for_messages()``, ``reset()``.
``amqp_vhost`` / ``amqp_url`` (function)
    A virtual host of the test's own, created before it and deleted after it (with everything in
    it and every connection to it), guest granted on it; ``amqp_url`` is its URL. This is the
    default way to isolate tests: making and dropping a vhost costs under a millisecond whatever
    the rest of the broker holds, and leaves that rest alone, where a reset closes every
    connection and drops every vhost and user, session-scoped ones included.
``amqp_faults`` (function)
    The session broker's fault injection (:class:`amqp_broker.testing.FaultsProxy`), every fault
    released after the test, passed or failed (README.md, "Fault injection").
``amqp_broker_clean`` (function)
    The sweeping alternative, for tests of the default vhost ``/`` or of broker-wide state: the
    broker reset to a fresh one's state before the test (``@pytest.mark.usefixtures(
    "amqp_broker_clean")`` for a whole class or module).

Options (command line, or the ini key in brackets): ``--amqp-broker-port`` [``amqp_broker_port``]
0 = a free port; ``--amqp-broker-data-dir`` [``amqp_broker_data_dir``] a directory kept after the
run instead of a temporary one. Under pytest-xdist every worker runs a broker of its own: a fixed
port is shifted by the worker's number and a data directory gets a subdirectory per worker.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import pytest

#: How often :meth:`BrokerHandle.wait_for_messages` looks at the queue: a cross-thread call costs
#: tens of microseconds, so polling this often is cheap and keeps waits short.
POLL_INTERVAL = 0.005


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("amqp_broker", "in-process AMQP broker (amqp_broker fixtures)")
    group.addoption("--amqp-broker-port", type=int, default=None, metavar="PORT",
                    help="port of the test broker on 127.0.0.1; 0 (default) = a free port")
    group.addoption("--amqp-broker-data-dir", default=None, metavar="DIR",
                    help="data directory of the test broker, kept after the run "
                         "(default: a temporary one, removed at the end)")
    parser.addini("amqp_broker_port", "port of the test broker; 0 = a free port", default="0")
    parser.addini("amqp_broker_data_dir", "data directory of the test broker (default: temporary)",
                  default="")


class AdminProxy:
    """The broker's Admin, thread-safe: every method runs on the broker's loop and returns its
    result (or raises its :class:`~amqp_broker.broker.admin.AdminError`) to the calling thread."""

    def __init__(self, thread: Any):
        self._thread = thread

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = None if name.startswith("_") else getattr(self._thread.server.admin, name, None)
        if not callable(method):
            # Broker objects are only safe on the broker's loop; hand out calls, never state.
            raise AttributeError(f"Admin has no public method {name!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._thread.call(lambda: method(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call


class BrokerHandle:
    """What the ``amqp_broker`` fixture yields: the running broker, its URL and test helpers."""

    def __init__(self, thread: Any):
        self.thread = thread
        self.host: str = thread.settings.host
        self.port: int = thread.port
        self.user: str = thread.settings.default_user
        self.password: str = thread.settings.default_pass
        self.admin = AdminProxy(thread)
        #: Fault injection (:class:`amqp_broker.testing.FaultsProxy`; README "Fault injection").
        self.faults = thread.faults

    def url_for(self, vhost: str) -> str:
        """The amqp:// URL of ``vhost`` on this broker, as guest."""
        from urllib.parse import quote

        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/{quote(vhost, safe='')}"

    @property
    def url(self) -> str:
        """The URL of the default vhost ``/``."""
        return self.url_for("/")

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(admin, *args)`` on the broker's loop, with the broker's Admin: several admin
        calls in one go, seen by no client half done."""
        return self.thread.call(fn, self.thread.server.admin, *args)

    def queues(self, vhost: str = "/") -> dict[str, int]:
        """Queue name -> messages held (ready and unacknowledged, RabbitMQ's ``messages``)."""
        return {q["name"]: q["messages"] for q in self.admin.queues(vhost)}

    def purge_all(self, vhost: str | None = None) -> int:
        """Drop the ready messages of every queue (of one vhost, or of all); returns how many."""
        return self.call(lambda admin: sum(admin.purge_queue(q["vhost"], q["name"])
                                           for q in admin.queues(vhost)))

    def wait_for_messages(self, queue: str, n: int, timeout: float = 5.0, vhost: str = "/") -> int:
        """Wait until ``queue`` holds exactly ``n`` messages (``n=0``: until it is drained) and
        return ``n``; raise AssertionError with the count it has when ``timeout`` s pass first."""
        deadline = time.monotonic() + timeout
        while True:
            count = self.queues(vhost).get(queue)
            if count == n:
                return n
            if time.monotonic() >= deadline:
                have = f"has {count}" if count is not None else "does not exist"
                raise AssertionError(
                    f"queue {queue!r} in vhost {vhost!r} {have} after {timeout} s; expected {n}")
            time.sleep(POLL_INTERVAL)

    def reset(self) -> None:
        """Back to a fresh broker's state: every connection closed, every vhost, queue, exchange
        and user dropped, the default vhost and user made again."""
        self.admin.reset(self.user, self.password, self.thread.settings.default_vhost)


class VhostHandle:
    """What the ``amqp_vhost`` fixture yields: one test's vhost and the helpers, bound to it."""

    def __init__(self, broker: BrokerHandle, name: str):
        self.broker = broker
        self.name = name
        self.url = broker.url_for(name)

    def queues(self) -> dict[str, int]:
        return self.broker.queues(self.name)

    def purge_all(self) -> int:
        return self.broker.purge_all(self.name)

    def wait_for_messages(self, queue: str, n: int, timeout: float = 5.0) -> int:
        return self.broker.wait_for_messages(queue, n, timeout, vhost=self.name)


def _option(config: pytest.Config, name: str) -> str:
    value = config.getoption(name)
    return str(value) if value is not None else config.getini(name)


@pytest.fixture(scope="session")
def amqp_broker(pytestconfig: pytest.Config):
    """An in-process broker for the session (see the module's documentation)."""
    from .testing import BrokerThread  # imports trio and the broker only now

    port = int(_option(pytestconfig, "amqp_broker_port") or 0)
    data_dir = _option(pytestconfig, "amqp_broker_data_dir")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"... under pytest-xdist
    if worker:
        # Brokers of different workers must neither share a port nor a data directory (its lock
        # would refuse the second one).
        port = port + int(worker.lstrip("gw") or 0) if port else 0
        data_dir = os.path.join(data_dir, worker) if data_dir else ""
    overrides: dict[str, Any] = {"host": "127.0.0.1", "port": port,
                                 "management_port": 0, "prometheus_port": 0}
    if data_dir:
        overrides["data_dir"] = data_dir
    thread = BrokerThread(**overrides)
    error: BaseException | None = None
    try:
        thread.start()
    except RuntimeError as exc:
        error = exc.__cause__ or exc
        # trio wraps what escapes a nursery in groups: the one error inside is the reason.
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
    if error is not None:  # failed outside the except block, so no chained traceback is shown
        thread.stop()
        pytest.fail(f"amqp_broker: the test broker did not start on 127.0.0.1:{port}: {error}",
                    pytrace=False)
    yield BrokerHandle(thread)
    thread.stop()


@pytest.fixture
def amqp_vhost(amqp_broker: BrokerHandle, request: pytest.FixtureRequest):
    """A vhost of this test's own, guest granted, deleted after the test with all it holds."""
    label = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)[:60]
    name = f"{label}-{os.urandom(4).hex()}"
    user = amqp_broker.user
    amqp_broker.call(lambda admin: (admin.add_vhost(name), admin.set_permissions(user, name)))
    yield VhostHandle(amqp_broker, name)
    amqp_broker.admin.delete_vhost(name)


@pytest.fixture
def amqp_url(amqp_vhost: VhostHandle) -> str:
    """The amqp:// URL of this test's own vhost."""
    return amqp_vhost.url


@pytest.fixture
def amqp_faults(amqp_broker: BrokerHandle):
    """Fault injection on the session broker; every fault released after the test."""
    yield amqp_broker.faults
    amqp_broker.faults.release()


@pytest.fixture
def amqp_broker_clean(amqp_broker: BrokerHandle) -> BrokerHandle:
    """The session broker, reset to a fresh broker's state before this test."""
    amqp_broker.reset()
    return amqp_broker
