"""pytest-rabbitmq, unmodified, runs a test suite against this broker through the shims.

pytest-rabbitmq's ``rabbitmq_proc`` fixture starts ``rabbitmq-server`` with RabbitMQ's variables
(RABBITMQ_NODE_PORT, RABBITMQ_NODENAME, RABBITMQ_MNESIA_BASE, RABBITMQ_ENABLED_PLUGINS_FILE...),
waits for the port, and stops it with SIGTERM; its ``rabbitmq`` fixture cleans up after each test
by parsing ``rabbitmqctl list_exchanges name`` and ``list_queues name``. The sample suite below
uses both, with two brokers side by side, and checks that the clean-up happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest_rabbitmq


from amqp_broker.ctl.shims import write_shims
from ctl_helpers import clean_env

SAMPLE_CONFTEST = '''
from pytest_rabbitmq import factories

# A second broker next to the plugin's own: each is found by rabbitmqctl through its node name.
rabbitmq_proc2 = factories.rabbitmq_proc(port=None)
rabbitmq2 = factories.rabbitmq("rabbitmq_proc2")
'''

SAMPLE_TESTS = '''
import pika


def test_publish_and_get(rabbitmq):
    channel = rabbitmq.channel()
    channel.exchange_declare("sample.x", "fanout")
    channel.queue_declare("sample.q")
    channel.queue_bind("sample.q", "sample.x")
    channel.basic_publish("sample.x", "", b"hello")
    method, properties, body = channel.basic_get("sample.q", auto_ack=True)
    assert body == b"hello"
    channel.basic_publish("", "sample.q", b"left behind")


def test_the_previous_test_was_cleaned_up(rabbitmq, rabbitmq_proc):
    assert "sample.q" not in rabbitmq_proc.list_queues()
    assert "sample.x" not in rabbitmq_proc.list_exchanges()
    assert "amq.topic" in rabbitmq_proc.list_exchanges()
    channel = rabbitmq.channel()
    assert channel.queue_declare("sample.q").method.message_count == 0


def test_two_brokers_side_by_side(rabbitmq, rabbitmq2, rabbitmq_proc, rabbitmq_proc2):
    assert rabbitmq_proc.port != rabbitmq_proc2.port
    rabbitmq.channel().queue_declare("only.on.first")
    rabbitmq2.channel().queue_declare("only.on.second")
    assert "only.on.first" in rabbitmq_proc.list_queues()
    assert "only.on.first" not in rabbitmq_proc2.list_queues()
    assert "only.on.second" in rabbitmq_proc2.list_queues()


def test_rabbitmqctl_answers_as_rabbitmq_does(rabbitmq_proc):
    assert rabbitmq_proc.rabbitctl_output("list_vhosts").splitlines() == ["Listing vhosts ...", "name", "/"]
    assert rabbitmq_proc.rabbitctl_output("list_users", "-q").splitlines() == ["user\\ttags", "guest\\t[administrator]"]
'''


def test_a_pytest_rabbitmq_suite_runs_against_the_shims(tmp_path):
    # The plugin under test is in the `test` extra: imported above, so a missing one fails here.
    assert pytest_rabbitmq.__version__.startswith("5.")
    shims = tmp_path / "shims"
    write_shims(str(shims))
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(textwrap.dedent(SAMPLE_CONFTEST))
    (suite / "test_sample.py").write_text(textwrap.dedent(SAMPLE_TESTS))
    runtime = tmp_path / "runtime"
    env = clean_env(PATH=f"{shims}{os.pathsep}{os.environ['PATH']}", XDG_RUNTIME_DIR=str(runtime))
    env.pop("PYTHONPATH", None)  # the shims carry their own; the suite imports nothing of ours
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'basetemp'}",
         f"--rabbitmq-server={shims / 'rabbitmq-server'}", f"--rabbitmq-ctl={shims / 'rabbitmqctl'}",
         f"--rabbitmq-plugindir={tmp_path / 'plugins'}", str(suite)],
        cwd=suite, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout, result.stdout
    # Clean-up included: both brokers ran in their data directories under the suite's temporary
    # directory (RABBITMQ_MNESIA_BASE), shut down on the fixture's SIGTERM and withdrew their
    # node records.
    data_dirs = sorted(p.parent for p in (tmp_path / "basetemp").glob("**/amqp_broker.sqlite3"))
    assert len(data_dirs) == 2, data_dirs
    assert not any((d / "node.json").exists() for d in data_dirs)
    nodes = runtime / f"amqp-broker-{os.getuid()}" / "nodes"
    assert not nodes.exists() or list(nodes.iterdir()) == []
