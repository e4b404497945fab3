"""Differential: every scenario of stomp_scenarios.py on our STOMP listener against RabbitMQ's
rabbitmq_stomp plugin, frame by frame.

RabbitMQ is the one at ``AMQP_BROKER_STOMP_ORACLE`` (``host:stomp_port:amqp_port``, e.g.
``127.0.0.1:61790:5790`` for interop/bench/rabbitmq-stomp-twin.sh; the installed node has the
plugin off and must not be reconfigured). Without it, or when nothing answers there, each scenario
is compared with RabbitMQ's recorded transcript (rabbitmq_stomp_transcripts.json, from RabbitMQ
3.10.8) and a warning says so.
"""

from __future__ import annotations

import json
import os
import socket
import warnings

import pytest

import stomp_scenarios

# HOST:STOMP_PORT:AMQP_PORT of a RabbitMQ with rabbitmq_stomp; by default the local one (CI enables
# the plugin), and the recording when nothing answers there.
ORACLE = os.environ.get("AMQP_BROKER_STOMP_ORACLE", "127.0.0.1:61613:5672")


def _oracle() -> tuple[int, int] | None:
    if not ORACLE:
        return None
    host, stomp_port, amqp_port = ORACLE.rsplit(":", 2)
    try:
        socket.create_connection((host, int(stomp_port)), timeout=3).close()
    except OSError:
        return None
    return int(stomp_port), int(amqp_port)


@pytest.fixture(scope="module")
def expected():
    live = _oracle()
    if live is not None:
        return {"live": live}
    warnings.warn(
        "no STOMP-enabled RabbitMQ at AMQP_BROKER_STOMP_ORACLE "
        f"({ORACLE or 'unset'}): comparing with the recorded transcripts in "
        f"{stomp_scenarios.TRANSCRIPTS.name}", UserWarning, stacklevel=1)
    return {"recorded": json.loads(stomp_scenarios.TRANSCRIPTS.read_text())["scenarios"]}


def _unordered(observations: list) -> list:
    """Frames of each step as a multiset: RabbitMQ's queues deliver asynchronously, so a live
    RabbitMQ may interleave a MESSAGE and a confirm's RECEIPT either way."""
    out = []
    for step in observations:
        if step[0] == "stomp":
            step = [step[0], step[1], sorted(json.dumps(f, sort_keys=True) for f in step[2])]
        out.append(step)
    return out


@pytest.mark.parametrize("name", list(stomp_scenarios.SCENARIOS))
def test_scenario_matches_rabbitmq(name, stomp_broker, expected):
    scenario = stomp_scenarios.SCENARIOS[name]
    ours = json.loads(json.dumps(stomp_scenarios.run(scenario, stomp_broker.stomp_port, stomp_broker.port)))
    if "live" in expected:
        stomp_port, amqp_port = expected["live"]
        theirs = json.loads(json.dumps(stomp_scenarios.run(scenario, stomp_port, amqp_port)))
        if ours != theirs:
            assert _unordered(ours) == _unordered(theirs)
    else:
        assert ours == expected["recorded"][name]
