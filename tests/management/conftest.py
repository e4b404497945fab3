"""Fixtures for the management HTTP API tests.

``TARGET`` below picks the broker the real tools (test_tools.py) run against: "rabbitmq" (the
live RabbitMQ: the tests then check the tools and the harness against the real thing) or "ours"
(an in-process BrokerThread with its management port). MANAGEMENT_TARGET in the environment
overrides it for one run.
"""

from __future__ import annotations

import os

import pytest

from interop.management import targets

#: The broker the tool tests run against: "rabbitmq" or "ours".
TARGET = os.environ.get("MANAGEMENT_TARGET", "rabbitmq")


@pytest.fixture(scope="session")
def our_management():
    """Our broker in-process, with its management API on a free port."""
    from amqp_broker.testing import BrokerThread
    mport = targets.free_port()
    with BrokerThread(management_port=mport) as running:
        yield targets.Target("ours", "127.0.0.1", mport, "127.0.0.1", running.port)


@pytest.fixture(scope="session")
def management(request):
    """The broker the tools run against (TARGET). Tests name their objects uniquely and delete
    them: RabbitMQ is shared."""
    if TARGET == "ours":
        return request.getfixturevalue("our_management")
    if TARGET != "rabbitmq":
        raise pytest.UsageError(f"MANAGEMENT_TARGET must be 'rabbitmq' or 'ours', not {TARGET!r}")
    if targets.rabbitmq_version() is None:
        msg = (f"RabbitMQ's management API does not answer at {targets.RABBIT_MGMT_URL}: the tool "
               "tests have no broker to run against (MANAGEMENT_TARGET=ours runs them on ours)")
        targets.warn_loudly(msg)
        pytest.skip(msg)
    return targets.rabbitmq_target()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if targets.FALLBACK.get("message"):
        terminalreporter.write_sep("!", "RabbitMQ management API unavailable", red=True, bold=True)
        terminalreporter.write_line("WARNING: " + targets.FALLBACK["message"], red=True, bold=True)
