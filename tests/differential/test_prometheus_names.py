"""Our Prometheus metrics against the live RabbitMQ's (rabbitmq_prometheus on port 15692): every
metric we emit exists there with the same TYPE and HELP lines and the same label names, so a
dashboard or alert rule written for RabbitMQ finds what it queries.

Skips when nothing answers RabbitMQ's metrics endpoint (AMQP_RABBITMQ_PROMETHEUS_URL, default
http://127.0.0.1:15692/metrics). It only reads that endpoint: nothing is created on RabbitMQ.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from amqp_broker.management.metrics import CONTENT_TYPE, render_metrics

RABBIT_METRICS_URL = os.environ.get("AMQP_RABBITMQ_PROMETHEUS_URL", "http://127.0.0.1:15692/metrics")


def _describe(text: str) -> dict[str, dict]:
    """{metric: {"type", "help", "labels": set of label-name tuples, "queue_types": set}}: TYPE
    and HELP as written (parsers rename untyped and strip _total), samples as parsed."""
    metrics: dict[str, dict] = {}

    def entry(name: str) -> dict:
        return metrics.setdefault(name, {"labels": set(), "queue_types": set()})

    for line in text.splitlines():
        if line.startswith(("# TYPE ", "# HELP ")):
            _, key, name, rest = line.split(" ", 3)
            entry(name)[key.lower()] = rest
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            row = entry(sample.name)
            row["labels"].add(tuple(sorted(sample.labels)))
            if "queue_type" in sample.labels:
                row["queue_types"].add(sample.labels["queue_type"])
    return metrics


@pytest.fixture(scope="module")
def rabbit() -> tuple[str, str]:
    """(content type, text) of RabbitMQ's /metrics, or a skip when it does not answer."""
    try:
        with urllib.request.urlopen(RABBIT_METRICS_URL, timeout=5) as response:
            return response.headers.get("Content-Type", ""), response.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as exc:
        pytest.skip(f"no RabbitMQ metrics endpoint answers at {RABBIT_METRICS_URL} ({exc})")


def test_every_metric_exists_in_rabbitmq_with_the_same_type_help_and_labels(broker, rabbit):
    content_type, rabbit_text = rabbit
    assert content_type == CONTENT_TYPE
    theirs = _describe(rabbit_text)
    ours = _describe(broker.call(render_metrics, broker.server.admin))
    assert len(ours) >= 35
    differences = []
    for name, mine in sorted(ours.items()):
        other = theirs.get(name)
        if other is None:
            differences.append(f"{name}: not in RabbitMQ's /metrics")
            continue
        for key in ("type", "help", "labels", "queue_types"):
            if mine.get(key) != other.get(key):
                differences.append(f"{name}: {key} {mine.get(key)!r}, RabbitMQ's {other.get(key)!r}")
    assert not differences, "\n".join(differences)
