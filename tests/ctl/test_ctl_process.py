"""``amqp-broker ctl`` and the shims as processes, against brokers that are processes: finding a
broker by node name, by data directory and by RabbitMQ's variables, two brokers on one machine,
exit codes 69 and 64, ``stop`` waiting for the process to exit, ``await_startup`` waiting for a
start, and a compose-style health check."""

from __future__ import annotations

import os
import subprocess
import sys

import pika
import pytest

from amqp_broker.ctl.shims import write_shims
from amqp_broker.server.discovery import find_node
from ctl_helpers import ProcessBroker, clean_env, ctl_process, unique_node


def declare(port: int, queue: str) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))
    conn.channel().queue_declare(queue)
    conn.close()


@pytest.fixture
def two_brokers(tmp_path):
    """Two brokers on one machine, each with its node name and data directory."""
    brokers = []
    try:
        for label in ("one", "two"):
            node = unique_node(label)
            data_dir = tmp_path / label
            broker = ProcessBroker(tmp_path, "--node-name", node, "--data-dir", str(data_dir)).wait_started()
            broker.node, broker.data_dir = node, str(data_dir)
            broker.port = find_node(node_name=node).amqp_port
            declare(broker.port, f"queue-of-{label}")
            brokers.append(broker)
        yield brokers
    finally:
        for broker in brokers:
            broker.stop()


def test_two_brokers_are_told_apart_by_node_name_data_dir_and_rabbitmq_variables(two_brokers):
    one, two = two_brokers
    for broker, label in ((one, "one"), (two, "two")):
        by_name = ctl_process("-n", broker.node, "list_queues", "-s", "name")
        assert (by_name.returncode, by_name.stdout) == (0, f"queue-of-{label}\n"), by_name.stderr
        by_dir = ctl_process("--data-dir", broker.data_dir, "list_queues", "-s", "name")
        assert by_dir.stdout == f"queue-of-{label}\n", by_dir.stderr
        by_env = ctl_process("list_queues", "-s", "name", env=clean_env(RABBITMQ_NODENAME=broker.node))
        assert by_env.stdout == f"queue-of-{label}\n", by_env.stderr
        by_dir_env = ctl_process("list_queues", "-s", "name", env=clean_env(RABBITMQ_MNESIA_DIR=broker.data_dir))
        assert by_dir_env.stdout == f"queue-of-{label}\n", by_dir_env.stderr
        # the node name without its host, as RABBITMQ_NODENAME is often given
        bare = ctl_process("-n", broker.node.partition("@")[0], "list_queues", "-s", "name")
        assert bare.stdout == f"queue-of-{label}\n", bare.stderr


def test_rabbitmq_mnesia_base_finds_the_broker_it_configured(tmp_path):
    node = unique_node("mnesia")
    env = clean_env(RABBITMQ_NODENAME=node, RABBITMQ_MNESIA_BASE=str(tmp_path / "mnesia"), RABBITMQ_NODE_PORT="0",
                    RABBITMQ_ENABLED_PLUGINS_FILE=str(tmp_path / "no-plugins"))
    broker = ProcessBroker(tmp_path, env=env, command=[sys.executable, "-m", "amqp_broker"]).wait_started()
    try:
        assert (tmp_path / "mnesia" / node / "node.json").exists()
        only_base = {k: v for k, v in env.items() if k != "RABBITMQ_NODENAME"}
        # With the base alone the node directory is <base>/<default node name>: not this one.
        assert ctl_process("list_queues", env=only_base).returncode == 69
        assert ctl_process("list_queues", "-q", env=env).returncode == 0
    finally:
        broker.stop()


def test_no_broker_is_exit_69_with_rabbitmqctl_text(tmp_path):
    result = ctl_process("-n", "nobody-here", "list_queues")
    assert result.returncode == 69
    host = unique_node().partition("@")[2]
    assert result.stderr.startswith(
        f"Error: unable to perform an operation on node 'nobody-here@{host}'. Please see diagnostics "
        "information and suggestions below.\n")
    assert "no running broker found for node" in result.stderr
    result = ctl_process("--data-dir", str(tmp_path), "status")
    assert result.returncode == 69 and f"data directory {tmp_path}" in result.stderr
    assert ctl_process("-n", "nobody-here", "ping", "-q").returncode == 69


def test_usage_errors_are_exit_64():
    for args in (("add_user",), ("no_such_command",), ("list_queues", "bogus_column"), ("delete_queue", "a", "b"),
                 ()):
        result = ctl_process(*args)
        assert result.returncode == 64, (args, result.stderr)
        assert result.stderr.strip(), args


def test_stop_returns_once_the_broker_process_has_exited(tmp_path):
    node = unique_node("stop")
    broker = ProcessBroker(tmp_path, "--node-name", node, "--data-dir", str(tmp_path / "data")).wait_started()
    try:
        result = ctl_process("-n", node, "stop")
        assert (result.returncode, result.stdout) == (0, f"Stopping and halting node {node} ...\n"), result.stderr
        # rabbitmqctl stop returns when the node's process is gone: nothing to wait for here
        assert broker.proc.poll() == 0
        assert find_node(node_name=node) is None
        assert ctl_process("-n", node, "stop").returncode == 69
        idempotent = ctl_process("-n", node, "stop", "--idempotent")
        assert idempotent.returncode == 0 and f"Node {node} is no longer running" in idempotent.stdout
    finally:
        broker.stop()


def test_await_startup_waits_for_a_broker_that_is_starting(tmp_path):
    node = unique_node("await")
    waiter = subprocess.Popen([sys.executable, "-m", "amqp_broker", "ctl", "-n", node, "await_startup", "-t", "60"],
                              env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    broker = None
    try:
        # the waiter is polling for a node that does not exist yet
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(0.5)
        broker = ProcessBroker(tmp_path, "--node-name", node, "--data-dir", str(tmp_path / "data"))
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        assert find_node(node_name=node) is not None
    finally:
        waiter.kill()
        if broker is not None:
            broker.stop()
    timed_out = ctl_process("-n", unique_node("never"), "await_startup", "-t", "0.3")
    assert timed_out.returncode == 69


def test_compose_style_health_check_is_69_until_the_broker_is_ready(tmp_path):
    shims = tmp_path / "shims"
    write_shims(str(shims))
    node = unique_node("health")
    env = clean_env(RABBITMQ_NODENAME=node, RABBITMQ_MNESIA_BASE=str(tmp_path / "mnesia"), RABBITMQ_NODE_PORT="0",
                    RABBITMQ_ENABLED_PLUGINS_FILE=str(tmp_path / "none"), PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    check = ["rabbitmq-diagnostics", "-q", "ping"]
    before = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60)
    assert before.returncode == 69 and before.stdout == ""
    assert before.stderr == f"Error:\nFailed to connect and authenticate to {node} in 60000 ms\n"
    broker = ProcessBroker(tmp_path, env=env, command=[str(shims / "rabbitmq-server")]).wait_started()
    try:
        after = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60)
        assert (after.returncode, after.stdout) == (0, "Ping succeeded\n"), after.stderr
        running = subprocess.run(["rabbitmq-diagnostics", "check_running"], env=env, capture_output=True, text=True)
        assert running.stdout.splitlines() == [f"Checking if RabbitMQ is running on node {node} ...",
                                               f"RabbitMQ on node {node} is fully booted and running"]
        ports = subprocess.run(["rabbitmq-diagnostics", "-q", "check_port_connectivity"], env=env,
                               capture_output=True, text=True)
        amqp = find_node(node_name=node).amqp_port
        assert ports.returncode == 0 and str(amqp) in ports.stdout, ports.stderr
        # the diagnostics tool has the diagnostics commands, not rabbitmqctl's
        assert subprocess.run(["rabbitmq-diagnostics", "add_user", "a", "b"], env=env,
                              capture_output=True).returncode == 64
        assert subprocess.run(["rabbitmqctl", "check_running"], env=env, capture_output=True).returncode == 64
        # rabbitmqctl stop through the shim: the server shim exits, cleanly
        stopped = subprocess.run(["rabbitmqctl", "stop"], env=env, capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert broker.proc.poll() == 0
    finally:
        broker.stop()


def test_rabbitmq_server_detached_and_rabbitmq_plugins(tmp_path):
    shims = tmp_path / "shims"
    write_shims(str(shims))
    node = unique_node("detached")
    env = clean_env(RABBITMQ_NODENAME=node, RABBITMQ_MNESIA_BASE=str(tmp_path / "mnesia"), RABBITMQ_NODE_PORT="0",
                    RABBITMQ_ENABLED_PLUGINS_FILE=str(tmp_path / "none"))
    started = subprocess.run([str(shims / "rabbitmq-server"), "-detached"], env=env, capture_output=True, timeout=60)
    assert started.returncode == 0
    try:
        waited = subprocess.run([str(shims / "rabbitmqctl"), "await_startup", "-t", "60"], env=env,
                                capture_output=True, text=True, timeout=90)
        assert waited.returncode == 0, waited.stderr
        record = find_node(node_name=node)
        assert record is not None and record.management_port is None
        plugins = subprocess.run([str(shims / "rabbitmq-plugins"), "enable", "rabbitmq_management"], env=env,
                                 capture_output=True, text=True)
        assert plugins.returncode == 0
        assert plugins.stdout.splitlines()[0] == f"Enabling plugins on node {node}:"
        assert "nothing to enable" in plugins.stderr
        listing = subprocess.run([str(shims / "rabbitmq-plugins"), "list"], env=env, capture_output=True, text=True)
        assert "[  ] rabbitmq_management " in listing.stdout  # off for this node: its plugins file has none
        bad = subprocess.run([str(shims / "rabbitmq-server"), "-bogus"], env=env, capture_output=True, text=True)
        assert bad.returncode == 64 and len(bad.stderr.strip().splitlines()) == 1
    finally:
        stop = subprocess.run([str(shims / "rabbitmqctl"), "stop", "--idempotent"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert stop.returncode == 0, stop.stderr
    assert find_node(node_name=node) is None


def test_shims_refuse_to_replace_other_files(tmp_path):
    (tmp_path / "rabbitmqctl").write_text("#!/bin/sh\necho real one\n")
    result = subprocess.run([sys.executable, "-m", "amqp_broker", "shims", str(tmp_path)], capture_output=True,
                            text=True, env=clean_env())
    assert result.returncode == 1 and "is not an amqp-broker shim" in result.stderr
    assert (tmp_path / "rabbitmqctl").read_text() == "#!/bin/sh\necho real one\n"
    forced = subprocess.run([sys.executable, "-m", "amqp_broker", "shims", "--force", str(tmp_path)],
                            capture_output=True, text=True, env=clean_env())
    assert forced.returncode == 0
    assert forced.stdout.split() == [str(tmp_path / t) for t in
                                     ("rabbitmq-server", "rabbitmqctl", "rabbitmq-diagnostics", "rabbitmq-plugins")]
    assert all(os.access(p, os.X_OK) for p in forced.stdout.split())
    # rewriting its own shims needs no --force
    assert subprocess.run([sys.executable, "-m", "amqp_broker", "shims", str(tmp_path)], capture_output=True,
                          env=clean_env()).returncode == 0
