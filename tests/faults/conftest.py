"""One in-process broker for the fault tests (with its management API, for /api/amqp-broker/faults), its
faults released after every test."""

from __future__ import annotations

import pytest

from amqp_broker.testing import BrokerThread


@pytest.fixture(scope="module")
def broker():
    with BrokerThread(management=True) as thread:
        yield thread


@pytest.fixture
def faults(broker):
    yield broker.faults
    broker.faults.release()
