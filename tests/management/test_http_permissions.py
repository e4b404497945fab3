"""Acting in a vhost through the management API: the acting user's permissions decide, as on
RabbitMQ 3.10, administrators included (interop/management/permissions.py's table: every request
as five kinds of user, compared status and body with RabbitMQ's).

RabbitMQ is the one at RABBITMQ_MGMT_URL (default http://127.0.0.1:15672) when it answers;
otherwise ours is compared with the recording (interop/management/rabbitmq_api_permissions.json)
and a loud warning says so.
"""

from __future__ import annotations

import json
import os

import pytest

from amqp_broker.testing import BrokerThread
from interop.management import permissions
from interop.management.targets import RABBIT_MGMT_URL, rabbitmq_version, warn_loudly

RECORDING = os.path.relpath(permissions.RECORDING)


@pytest.fixture(scope="module")
def rabbit_rows():
    """RabbitMQ's rows, live or as recorded: (rows, source, live)."""
    version = rabbitmq_version()
    if version is not None:
        return permissions.run(RABBIT_MGMT_URL), f"RabbitMQ {version} at {RABBIT_MGMT_URL}", True
    warn_loudly(f"RabbitMQ's management API does not answer at {RABBIT_MGMT_URL}: the API "
                f"permission table is compared with the recording {RECORDING}")
    with open(permissions.RECORDING) as f:
        return json.load(f), f"the recording {RECORDING}", False


def test_rabbitmq_matches_its_recording(rabbit_rows):
    rows, source, live = rabbit_rows
    if not live:
        pytest.skip("no live RabbitMQ to compare the recording with (see the warning)")
    with open(permissions.RECORDING) as f:
        recorded = json.load(f)
    differences = permissions.compare(recorded, rows)
    assert not differences, (f"{source} differs from {RECORDING} (re-record with `python -m "
                             f"interop.management.permissions --record {RECORDING}`):\n"
                             + "\n".join(differences))


def test_the_acting_users_permissions_decide_as_on_rabbitmq(rabbit_rows):
    rows, source, _live = rabbit_rows
    with BrokerThread(management=True) as broker:
        ours = permissions.run(f"http://127.0.0.1:{broker.management_port}")
    assert len(ours) == len(rows) == len(permissions.REQUESTS) * len(permissions.USERS)
    differences = permissions.compare(rows, ours)
    assert not differences, f"ours differs from {source}:\n" + "\n".join(differences)
    # The table exercises what it is about: refusals and successes for every kind of check.
    by = {(r["request"], r["user"]): (r["status"], r["body"]) for r in ours}
    refused = {"error": "not_authorised", "reason": "Access refused."}
    assert by["PUT new queue, configure allowed", "mgmt-narrow"][0] == 201
    assert by["PUT new queue, configure allowed", "admin-noperm"] == (401, refused)
    assert by["publish, write refused", "admin-narrow"][0] == 400
    assert by["get, read allowed", "admin-narrow"] == (200, "list of 1")
    assert by["list queues in vhost", "admin-noperm"] == (200, "list of 8")
