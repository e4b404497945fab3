"""``amqp-broker`` started as RabbitMQ would be: configured by RABBITMQ_* variables and a
rabbitmq.conf only, reached by pika with the credentials they set, and found by its node record."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest

from amqp_broker.server.discovery import RECORD_NAME, find_node

SHORT_HOST = socket.gethostname().split(".")[0]
STARTED = "Server startup complete"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """``python -m amqp_broker`` with no arguments and exactly ``env`` of the broker's own."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_BROKER_", "RABBITMQ_"))}
        self.log_path = tmp_path / "broker.log"
        self.log_file = self.log_path.open("w")
        # cwd: a directory of the test's, so a data directory misplaced by a bug lands there.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amqp_broker"], cwd=tmp_path, env={**base, **env},
            stdout=self.log_file, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_started(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while STARTED not in self.log():
            assert self.proc.poll() is None, f"broker exited with {self.proc.returncode}: {self.log()}"
            assert time.monotonic() < deadline, f"no start-up line within {timeout}s: {self.log()}"
            time.sleep(0.05)  # polling a log file: external state

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(15)
        self.log_file.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)
        self.log_file.close()


@pytest.fixture
def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runtime = tmp_path / "run"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # find_node here looks where the broker writes
    started: list[Broker] = []

    def run(env: dict[str, str]) -> Broker:
        broker = Broker(tmp_path, {"XDG_RUNTIME_DIR": str(runtime), **env})
        started.append(broker)
        broker.wait_started()
        return broker

    yield run
    for broker in started:
        broker.kill()


def round_trip(port: int, user: str, password: str, vhost: str) -> bytes:
    params = pika.ConnectionParameters(
        "127.0.0.1", port, vhost, pika.PlainCredentials(user, password), heartbeat=0, connection_attempts=1
    )
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", queue, b"hello from RABBITMQ_*")
        _, _, body = ch.basic_get(queue, auto_ack=True)
        return body
    finally:
        conn.close()


def test_rabbitmq_variables_alone_configure_the_broker(start, tmp_path: Path) -> None:
    port = free_port()
    plugins = tmp_path / "enabled_plugins"
    plugins.write_text("[].\n")  # no plugins: the HTTP listeners stay off, clear of RabbitMQ's ports
    broker = start({
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_DEFAULT_USER": "ci-user",
        "RABBITMQ_DEFAULT_PASS": "ci-secret",
        "RABBITMQ_DEFAULT_VHOST": "ci-vhost",
        "RABBITMQ_NODENAME": "itest",
        "RABBITMQ_MNESIA_BASE": str(tmp_path / "mnesia"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
    })  # fmt: skip
    assert f"listening on 127.0.0.1:{port}" in broker.log()
    assert round_trip(port, "ci-user", "ci-secret", "ci-vhost") == b"hello from RABBITMQ_*"
    # The default user is the one the variables named; guest was never created.
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        round_trip(port, "guest", "guest", "ci-vhost")

    node = f"itest@{SHORT_HOST}"
    data_dir = tmp_path / "mnesia" / node  # RabbitMQ's layout: $RABBITMQ_MNESIA_BASE/<node name>
    record = find_node("itest")
    assert record is not None and record == find_node(data_dir=str(data_dir))
    assert (record.node_name, record.pid, record.amqp_port) == (node, broker.proc.pid, port)
    assert (record.management_port, record.prometheus_port) == (None, None)
    assert json.loads((data_dir / RECORD_NAME).read_text())["data_dir"] == str(data_dir)
    assert not (tmp_path / "data").exists()  # not the default ./data

    assert broker.stop() == 0
    assert find_node("itest") is None and not (data_dir / RECORD_NAME).exists()


def test_rabbitmq_conf_configures_the_broker(start, tmp_path: Path) -> None:
    port, management, prometheus = free_port(), free_port(), free_port()
    (tmp_path / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{port}\n"
        "default_user = conf-user\ndefault_pass = conf-secret\ndefault_vhost = conf-vhost\n"
        "loopback_users.guest = false\n"
        f"management.tcp.port = {management}\nprometheus.tcp.port = {prometheus}\n"
        "management_agent.disable_metrics_collector = true\n"
    )
    broker = start({
        "RABBITMQ_CONFIG_FILE": str(tmp_path / "rabbitmq"),  # no suffix, as RabbitMQ allows
        "RABBITMQ_MNESIA_DIR": str(tmp_path / "node-dir"),
        "RABBITMQ_DEFAULT_PASS": "env-secret",  # the variable wins over the file, as in RabbitMQ
    })  # fmt: skip
    assert round_trip(port, "conf-user", "env-secret", "conf-vhost") == b"hello from RABBITMQ_*"
    warnings = [line for line in broker.log().splitlines() if "[WARNING]" in line]
    assert len(warnings) == 1, broker.log()
    assert "line 8: management_agent.disable_metrics_collector is not supported here; ignored" in warnings[0]
    record = find_node(data_dir=str(tmp_path / "node-dir"))
    assert record is not None and record.amqp_port == port
    assert broker.stop() == 0
