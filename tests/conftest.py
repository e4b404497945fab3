"""Shared fixtures: a real broker on a real socket, started in-process on a free port."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pika
import pytest

from amqp_broker.testing import BrokerThread

_saved_runtime_dir: str | None = None
_runtime_dir: str | None = None


def pytest_configure(config):
    """Brokers the tests start (in-process, and as subprocesses, which inherit the variable)
    write their node records under a runtime directory of the session's own, not among those of
    the brokers a developer runs (see amqp_broker/server/discovery.py)."""
    global _saved_runtime_dir, _runtime_dir
    _saved_runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    _runtime_dir = tempfile.mkdtemp(prefix="amqp-broker-tests-run-")
    os.environ["XDG_RUNTIME_DIR"] = _runtime_dir


def pytest_unconfigure(config):
    if _saved_runtime_dir is None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
    else:
        os.environ["XDG_RUNTIME_DIR"] = _saved_runtime_dir
    if _runtime_dir is not None:
        shutil.rmtree(_runtime_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def broker():
    """One broker for the whole session; tests use unique names (see ``unique``)."""
    with BrokerThread() as running:
        yield running


@pytest.fixture
def fresh_broker():
    """A broker of its own, for tests that restart it or depend on global state."""
    with BrokerThread() as running:
        yield running


@pytest.fixture
def params(broker):
    """pika connection parameters for the session broker."""
    return pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0, blocked_connection_timeout=30)


@pytest.fixture
def connection(params):
    """An open pika BlockingConnection, closed after the test."""
    conn = pika.BlockingConnection(params)
    yield conn
    if conn.is_open:
        conn.close()


@pytest.fixture
def channel(connection):
    """An open channel on ``connection``."""
    return connection.channel()


@pytest.fixture
def unique():
    """A factory of names unique to this test, so tests sharing a broker never collide."""
    tag = uuid.uuid4().hex[:8]
    return lambda name="q": f"test.{name}.{tag}"
