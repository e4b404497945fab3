"""Vhost and user limits (limit_scenarios.py), scenario by scenario, on this broker against RabbitMQ.

Each scenario runs on both brokers at once, with the same limits set (RabbitMQ's through its
management API, ours through the Admin API), and the observations must be equal: which
operation fails, with which reply code, text, scope and method. RabbitMQ is the one on
127.0.0.1:5672 with its management API on 15672 (guest/guest); without it every scenario is
compared against the recording ``rabbitmq_limits.json``, with a loud warning, as the permission
table does.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import sys
import warnings

import pytest

from amqp_broker.testing import BrokerThread

sys.path.insert(0, os.path.dirname(__file__))
import limit_scenarios as table  # noqa: E402

from interop.diff import runner  # noqa: E402  (limit_scenarios put the root on the path)

logging.getLogger("pika").setLevel(logging.CRITICAL)  # the scenarios provoke closes on purpose

WORLD = table.World()


@pytest.fixture(scope="module")
def oracle():
    """{"live": RabbitHttp} with the run's vhosts and users made on RabbitMQ, or {"recorded": rows}."""
    http = table.RabbitHttp()
    why = table.rabbitmq_problem(http)
    if why is None:
        table.setup_rabbitmq(http, WORLD)
        try:
            yield {"live": http, "source": "RabbitMQ at 127.0.0.1:5672"}
        finally:
            problems = table.teardown_rabbitmq(http, WORLD)
            assert not problems, problems
        return
    msg = (f"RabbitMQ not usable ({why}): the limit scenarios are compared against the recording "
           f"{table.RECORDING.name}")
    print("\n" + "!" * 100 + f"\nWARNING: {msg}\n" + "!" * 100, file=sys.stderr)
    warnings.warn(msg, UserWarning, stacklevel=1)
    data = json.loads(table.RECORDING.read_text(encoding="utf-8"))
    yield {"recorded": data["rows"], "source": f"recorded RabbitMQ ({data.get('recorded', '?')})"}


@pytest.fixture(scope="module")
def ours():
    with BrokerThread() as broker:
        broker.call(table.setup_with_admin, broker.server.admin, WORLD)
        yield broker


@pytest.mark.parametrize("name", table.ALL)
def test_limit_scenario_matches_rabbitmq(name, ours, oracle):
    sc = table.SCENARIOS[name]
    ours.call(table.limit_with_admin, ours.server.admin, WORLD, sc)
    if "live" in oracle:
        table.limit_rabbitmq(oracle["live"], WORLD, sc)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            fo = pool.submit(table.run, name, WORLD, "127.0.0.1", ours.port, "ours")
            fr = pool.submit(table.run, name, WORLD, "127.0.0.1", 5672, "rabbit")
            mine, theirs = fo.result(), fr.result()
        assert theirs.traceback is None, theirs.traceback
        expected = theirs.observations
    else:
        mine = table.run(name, WORLD, "127.0.0.1", ours.port, "ours")
        expected = oracle["recorded"][name]
    assert mine.traceback is None, mine.traceback
    assert mine.observations, "the scenario observed nothing"
    diffs = runner.diff(expected, mine.observations)
    if diffs:
        pytest.fail(f"{name}: ours differs from {oracle['source']}:\n" + runner.format_diff(diffs, limit=40),
                    pytrace=False)


def test_recording_covers_every_scenario():
    """The recording is what machines without RabbitMQ compare against: it must be whole."""
    recorded = json.loads(table.RECORDING.read_text(encoding="utf-8"))
    assert recorded["server"]["product"] == "RabbitMQ"
    assert set(recorded["rows"]) == set(table.ALL)
