"""RabbitMQ's access-control table (permission_scenarios.py), row by row, on this broker against
RabbitMQ.

This broker runs in-process twice: users and permissions made with the Admin API, and the same
loaded from a definitions file at start-up. RabbitMQ is the one at ``AMQP_RABBITMQ_URL`` (default
127.0.0.1:5672) when it answers as RabbitMQ and ``rabbitmqctl`` can manage it (the run's vhost
and users are made there and deleted afterwards); otherwise every row is compared against the
recording ``rabbitmq_permissions.json``, with a loud warning, as tests/differential does.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import sys
import warnings
from urllib.parse import urlparse

import pytest

from amqp_broker.testing import BrokerThread

sys.path.insert(0, os.path.dirname(__file__))
import permission_scenarios as table  # noqa: E402

from interop.diff import runner  # noqa: E402  (permission_scenarios put the root on the path)

logging.getLogger("pika").setLevel(logging.CRITICAL)  # the rows provoke closes on purpose
RABBIT_URL = os.environ.get("AMQP_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


# The rows change what they touch, so each broker of ours is compared with a vhost and users of
# its own on RabbitMQ.
WORLDS = {"admin": table.World(), "definitions": table.World()}


@pytest.fixture(scope="module")
def oracle():
    """{"live": (host, port)} with the run's users made on RabbitMQ, or {"recorded": rows}."""
    u = urlparse(RABBIT_URL if "://" in RABBIT_URL else f"amqp://{RABBIT_URL}")
    host, port = u.hostname or "127.0.0.1", u.port or 5672
    server = runner.server_product(host, port, timeout=5, attempts=2) if runner.reachable(host, port) else None
    why = None
    if server is None:
        why = "nothing answers"
    elif server.get("product") != "RabbitMQ":
        why = f"{server.get('product')!r} answers, not RabbitMQ"
    else:
        why = table.rabbitmqctl_usable()
    if why is None:
        table.setup_rabbitmq(*WORLDS.values())
        try:
            yield {"live": (host, port), "source": f"RabbitMQ {server.get('version')} at {host}:{port}"}
        finally:
            problems = table.teardown_rabbitmq(*WORLDS.values())
            assert not problems, problems
        return
    msg = (f"RabbitMQ not usable at {host}:{port} ({why}): the permission table is compared "
           f"against the recording {table.RECORDING.name}")
    print("\n" + "!" * 100 + f"\nWARNING: {msg}\n" + "!" * 100, file=sys.stderr)
    warnings.warn(msg, UserWarning, stacklevel=1)
    data = json.loads(table.RECORDING.read_text(encoding="utf-8"))
    yield {"recorded": data["rows"],
           "source": f"recorded RabbitMQ {(data.get('server') or {}).get('version', '?')} "
                     f"({data.get('recorded', '?')})"}


@pytest.fixture(scope="module")
def ours_admin():
    """Users made with the Admin API."""
    with BrokerThread() as broker:
        broker.call(table.setup_with_admin, broker.server.admin, WORLDS["admin"])
        yield broker


@pytest.fixture(scope="module")
def ours_definitions(tmp_path_factory):
    """Users loaded from a definitions file at start-up (RabbitMQ's load_definitions)."""
    path = tmp_path_factory.mktemp("defs") / "definitions.json"
    data = table.definitions(WORLDS["definitions"])
    data["users"].append({"name": "guest", "password": "guest", "tags": ["administrator"]})
    data["vhosts"].append({"name": "/"})
    data["permissions"].append(
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"})
    path.write_text(json.dumps(data), encoding="utf-8")
    with BrokerThread(definitions=str(path)) as broker:
        yield broker


def _compare(name: str, broker: BrokerThread, world: table.World, oracle: dict) -> None:
    if "live" in oracle:
        host, port = oracle["live"]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            fo = pool.submit(table.run_row, name, world, "127.0.0.1", broker.port, "ours")
            fr = pool.submit(table.run_row, name, world, host, port, "rabbit")
            mine, theirs = fo.result(), fr.result()
        assert theirs.traceback is None, theirs.traceback
        expected = theirs.observations
    else:
        mine = table.run_row(name, world, "127.0.0.1", broker.port, "ours")
        expected = oracle["recorded"][name]
    assert mine.traceback is None, mine.traceback
    diffs = runner.diff(expected, mine.observations)
    if diffs:
        pytest.fail(f"{name}: ours differs from {oracle['source']}:\n"
                    + runner.format_diff(diffs, limit=40), pytrace=False)


@pytest.mark.parametrize("name", table.ALL_ROWS)
def test_row_admin_api(name, ours_admin, oracle):
    _compare(name, ours_admin, WORLDS["admin"], oracle)


@pytest.mark.parametrize("name", table.ALL_ROWS)
def test_row_definitions_file(name, ours_definitions, oracle):
    _compare(name, ours_definitions, WORLDS["definitions"], oracle)


def test_recording_covers_every_row():
    """The recording is what machines without RabbitMQ compare against: it must be whole."""
    recorded = json.loads(table.RECORDING.read_text(encoding="utf-8"))
    assert recorded["server"]["product"] == "RabbitMQ"
    assert set(recorded["rows"]) == set(table.ALL_ROWS)
