"""Shared fixtures: a real broker on a real socket, started in-process on a free port."""

from __future__ import annotations

import uuid

import pika
import pytest

from amqp_broker.testing import BrokerThread


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
