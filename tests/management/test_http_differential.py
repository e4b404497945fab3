"""Differential test of the management HTTP API: the scenario of interop/management on our
broker (BrokerThread with management_port) against RabbitMQ's management API.

RabbitMQ is the one at RABBITMQ_MGMT_URL / RABBITMQ_AMQP (default 127.0.0.1:15672 / :5672) when
it answers; otherwise ours is compared with RabbitMQ's recorded observations
(interop/management/rabbitmq_expectations.json) and a loud warning says so. Differences listed
in interop/management/known_differences.py do not fail.
"""

from __future__ import annotations

import copy
import io
import os

import pytest

from interop.management import diff, scenario
from interop.management.targets import (RABBIT_AMQP, RABBIT_MGMT_URL, management_api_built,
                                        parse_hostport, rabbitmq_version, warn_loudly)

RECORDING = os.path.relpath(diff.EXPECTATIONS_FILE)


@pytest.fixture(scope="module")
def rabbit_run():
    """RabbitMQ's observations: a live run, or the recording. {"observations", "errors",
    "source", "live"}."""
    version = rabbitmq_version()
    if version is not None:
        host, port = parse_hostport(RABBIT_AMQP, 5672)
        ctx = scenario.run(RABBIT_MGMT_URL, host, port)
        return {"observations": [o.as_json() for o in ctx.observations], "errors": ctx.errors,
                "source": f"RabbitMQ {version} at {RABBIT_MGMT_URL}", "live": True}
    warn_loudly(f"RabbitMQ's management API does not answer at {RABBIT_MGMT_URL}: the management "
                f"differential test compares against the recorded observations in {RECORDING}")
    data = diff.load_expectations()
    return {"observations": data["observations"], "errors": data.get("errors", []),
            "source": f"recorded RabbitMQ {data['server']['version']} ({data['recorded']})",
            "live": False}


def _fail_on(diffs, rabbit_obs, ours_obs, what: str) -> None:
    out = io.StringIO()
    status = diff.report(rabbit_obs, ours_obs, diffs, out=out, limit=120)
    if status:
        pytest.fail(f"{what}:\n{out.getvalue()}", pytrace=False)


def test_rabbitmq_matches_its_recording(rabbit_run):
    """The harness is deterministic on RabbitMQ (names, timing, statistics lag are normalised)
    and the recording the fallback uses is current."""
    if not rabbit_run["live"]:
        pytest.skip("no live RabbitMQ to compare the recording with (see the warning)")
    recorded = diff.load_expectations()
    diffs = diff.compare(recorded["observations"], rabbit_run["observations"],
                         rabbit_run["errors"], recorded.get("errors", []))
    for d in diffs:
        d.known = None      # RabbitMQ against itself: nothing is known to differ
    _fail_on(diffs, recorded["observations"], rabbit_run["observations"],
             f"live RabbitMQ differs from {RECORDING}: re-record with "
             f"`python -m interop.management.diff --record {RECORDING}` if RabbitMQ changed")


def test_compare_reports_each_kind_of_difference():
    """The comparison sees a changed status, a missing key, a changed value and a missing
    request (on RabbitMQ's recording, altered)."""
    rabbit = diff.load_expectations()["observations"]
    ours = copy.deepcopy(rabbit)
    by = {o["label"]: o for o in ours}
    by["read: GET vhosts"]["status"] = 500
    by["read: GET queue"]["keys"].remove("messages_ready")
    by["messages: POST get requeue"]["values"]["[0].payload"] = "other"
    ours.remove(by["errors: GET unknown queue"])
    found = {(d.label, d.what) for d in diff.compare(rabbit, ours)}
    assert found == {("read: GET vhosts", "status"),
                     ("read: GET queue", "key-missing:messages_ready"),
                     ("messages: POST get requeue", "value:[0].payload"),
                     ("errors: GET unknown queue", "step")}


@pytest.mark.skipif(not management_api_built(),
                    reason="our management API (amqp_broker.management) is not in this tree")
def test_ours_matches_rabbitmq(our_management, rabbit_run):
    ctx = scenario.run(our_management.mgmt_url, "127.0.0.1", our_management.amqp_port)
    ours_obs = [o.as_json() for o in ctx.observations]
    diffs = diff.compare(rabbit_run["observations"], ours_obs, ctx.errors, rabbit_run["errors"])
    _fail_on(diffs, rabbit_run["observations"], ours_obs,
             f"our management API differs from {rabbit_run['source']}")
