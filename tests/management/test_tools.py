"""The real management API tools, each unmodified, against the ``management`` broker (see
conftest.py: RabbitMQ today, ours with TARGET = "ours"): rabbitmqadmin, pyrabbit2, amqpstorm's
ManagementApi, kombu's get_manager(), `celery list bindings` and flower's queue lengths.

Every command a tool runs is one row of interop/management/tools.py's table; a test fails with
the whole table when any row failed.
"""

from __future__ import annotations

import os

import pytest

from interop.management import tools


def _run(name: str, target) -> None:
    results = tools.run_tool(name, target)
    failed = [r for r in results if not r.ok]
    assert results, f"{name} ran no command"
    if failed:
        pytest.fail(f"{name} against {target.name} ({target.mgmt_url}):\n"
                    + tools.format_results(results), pytrace=False)


def test_rabbitmqadmin(management):
    if tools.rabbitmqadmin_path() is None:
        msg = (f"rabbitmqadmin not found at {tools.RABBITMQADMIN}: Debian's rabbitmq-server "
               "package installs it (.ci/run does)")
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    _run("rabbitmqadmin", management)


@pytest.mark.parametrize("name", ["pyrabbit2", "amqpstorm", "kombu", "celery", "flower"])
def test_python_tool(name, management):
    _run(name, management)
