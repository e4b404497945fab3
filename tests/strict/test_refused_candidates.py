"""The candidates that are not strict rules because RabbitMQ already refuses them: our broker
answers each exactly as RabbitMQ does (asserted against the live RabbitMQ and against its
recorded answer), in every strict mode, and strict mode notes nothing for them."""

from __future__ import annotations

import pytest

from cases import run
from refused_cases import REFUSED
from strict_client import node_violations

# What RabbitMQ 3.10.8 answered (tests/strict/refused_cases.py sends the bytes).
RABBITMQ = {
    "heartbeat on a channel": (505, 0, 0, "UNEXPECTED_FRAME - type 8, all octets = <<>>"),
    "heartbeat with a payload": (501, 0, 0, 'FRAME_ERROR - type 8, all octets = <<"xy">>: unknown_frame'),
    "content header weight": (505, 60, 40, "UNEXPECTED_FRAME - expected content header for class 60, "
                                            "got non content header frame instead"),
    "content header class": (505, 60, 40, "UNEXPECTED_FRAME - expected content header for class 60, "
                                          "got one for class 50 instead"),
    "basic.qos prefetch_size": (540, 60, 10, "NOT_IMPLEMENTED - prefetch_size!=0 (10)"),
    "basic.publish immediate": (540, 60, 40, "NOT_IMPLEMENTED - immediate=true"),
    "channel.flow active=false": (540, 20, 20, "NOT_IMPLEMENTED - active=false"),
    "unsolicited channel.close-ok": (503, 20, 41, "COMMAND_INVALID - unimplemented method"),
    "unsolicited channel.flow-ok": (503, 20, 21, "COMMAND_INVALID - unimplemented method"),
    "connection.blocked from a client": (504, 10, 60, "CHANNEL_ERROR - unexpected method in "
                                                      "connection state running"),
}
NAMES = sorted(REFUSED)


def _expected(name):
    return ("connection.close", *RABBITMQ[name])


def test_every_candidate_has_rabbitmqs_answer():
    assert sorted(RABBITMQ) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_rabbitmq_refuses_it(name, rabbitmq_oracle):
    assert run(REFUSED[name], *rabbitmq_oracle) == _expected(name)


@pytest.mark.parametrize("mode", ["off", "report", "close"])
@pytest.mark.parametrize("name", NAMES)
def test_we_refuse_it_the_same_way_in_every_mode(name, mode, broker, report_broker, close_broker):
    running = {"off": broker, "report": report_broker, "close": close_broker}[mode]
    before = node_violations(running)
    assert run(REFUSED[name], "127.0.0.1", running.port) == _expected(name)
    assert node_violations(running) == before
