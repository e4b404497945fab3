"""Brokers in each strict mode, and RabbitMQ as the oracle of what "accepted silently" means."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from amqp_broker.testing import BrokerThread  # noqa: E402
from strict_client import rabbitmq_address, server_product  # noqa: E402


@pytest.fixture(scope="module")
def report_broker():
    with BrokerThread(strict="report") as running:
        yield running


@pytest.fixture(scope="module")
def close_broker():
    with BrokerThread(strict="close") as running:
        yield running


@pytest.fixture(scope="session")
def rabbitmq_oracle():
    """(host, port) of the live RabbitMQ; these tests are about what it accepts, so without
    one they cannot say anything and are skipped (loudly, with the address tried)."""
    host, port = rabbitmq_address()
    try:
        product = server_product(host, port)
    except OSError as exc:
        pytest.skip(f"no RabbitMQ at {host}:{port} (AMQP_RABBITMQ_URL): {exc}")
    if product != "RabbitMQ":
        pytest.skip(f"{product!r} answers at {host}:{port} (AMQP_RABBITMQ_URL), not RabbitMQ")
    return host, port
