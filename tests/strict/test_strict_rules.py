"""Each strict-mode rule, over real sockets: RabbitMQ accepts the bytes silently (asserted live),
so does our broker with strict mode off; with ``strict = "report"`` the connection stays open
and the violation is counted; with ``strict = "close"`` the spec's close comes instead."""

from __future__ import annotations

import pytest

from amqp_broker.protocol.strict import RULES
from cases import CASES, run
from strict_client import ACCEPTED, node_violations

RULE_NAMES = sorted(CASES)


def test_every_rule_has_a_case():
    assert sorted(RULES) == RULE_NAMES


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_rabbitmq_accepts_it_silently(rule, rabbitmq_oracle):
    case, _ = CASES[rule]
    assert run(case, *rabbitmq_oracle) == ACCEPTED


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_off_accepts_it_like_rabbitmq(rule, broker):
    case, _ = CASES[rule]
    assert run(case, "127.0.0.1", broker.port) == ACCEPTED
    assert node_violations(broker) == {}


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_report_keeps_the_connection_and_counts(rule, report_broker, caplog):
    case, _ = CASES[rule]
    before = node_violations(report_broker).get(rule, 0)
    with caplog.at_level("WARNING", logger="amqp_broker.strict"):
        assert run(case, "127.0.0.1", report_broker.port) == ACCEPTED
    assert node_violations(report_broker).get(rule, 0) == before + 1
    assert any(f"strict: {rule} on channel" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_close_answers_with_the_spec_code(rule, close_broker):
    case, expected = CASES[rule]
    seen = run(case, "127.0.0.1", close_broker.port)
    assert seen[:4] == expected
    assert f"strict mode: " in seen[4] and f"({rule})" in seen[4]
