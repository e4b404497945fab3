"""A broker with its STOMP listener on, shared by the STOMP tests (names are unique per test)."""

from __future__ import annotations

import pika
import pytest

from amqp_broker.testing import BrokerThread


@pytest.fixture(scope="module")
def stomp_broker():
    with BrokerThread(stomp=True) as running:
        yield running


@pytest.fixture
def amqp(stomp_broker):
    """A pika channel on the STOMP broker."""
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", stomp_broker.port, heartbeat=0))
    yield conn.channel()
    if conn.is_open:
        conn.close()
