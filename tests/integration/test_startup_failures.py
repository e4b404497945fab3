"""Every way ``amqp-broker`` can fail to start ends in one line on stderr and exit status 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from amqp_broker.store.sqlite import DB_NAME


def run(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_BROKER_", "RABBITMQ_"))}
    # The HTTP listeners off: each failure here is the only one, whatever starts first.
    full_env.update({"AMQP_BROKER_MANAGEMENT_PORT": "0", "AMQP_BROKER_PROMETHEUS_PORT": "0"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "amqp_broker", *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=full_env,
    )  # fmt: skip


def assert_one_line_failure(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("amqp-broker: "), lines[0]
    assert expected in lines[0], lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def broker_args(data_dir: Path | str, *more: str) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(free_port()), "--data-dir", str(data_dir), *more]


def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    result = run(broker_args("/proc/amqp-broker-nope"), tmp_path)
    assert_one_line_failure(result, "cannot use the data directory /proc/amqp-broker-nope: No such file or directory")


def test_data_dir_that_is_not_writable(tmp_path: Path) -> None:
    # /sys refuses new files even to root, where a chmod would not.
    result = run(broker_args("/sys"), tmp_path)
    assert_one_line_failure(result, "cannot use the data directory /sys: Permission denied")


def test_a_file_where_the_data_dir_should_be(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file")
    result = run(broker_args(tmp_path / "data"), tmp_path)
    assert_one_line_failure(result, f"cannot use the data directory {tmp_path / 'data'}: it exists and is not a directory")
    result = run(broker_args(tmp_path / "data" / "below"), tmp_path)
    assert_one_line_failure(result, "Not a directory")


@pytest.mark.parametrize("garbage", [b"not a database\n", os.urandom(8192)], ids=["text", "random"])
def test_a_store_file_that_is_not_a_database(tmp_path: Path, garbage: bytes) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / DB_NAME).write_bytes(garbage)
    result = run(broker_args(tmp_path / "data"), tmp_path)
    assert_one_line_failure(result, f"cannot start: cannot open the store at {tmp_path / 'data' / DB_NAME}: file is not a database")
    # The definitions command says the same in its own line.
    result = run(["definitions", "export", "-", "--data-dir", str(tmp_path / "data")], tmp_path)
    assert_one_line_failure(result, "definitions export: cannot read the store")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "d")], tmp_path)
    assert_one_line_failure(result, f"cannot listen for AMQP clients on 127.0.0.1:{port}: Address already in use")


def test_host_name_that_does_not_resolve(tmp_path: Path) -> None:
    result = run(["--host", "no-such-host.invalid", "--port", "0", "--data-dir", str(tmp_path / "d")], tmp_path)
    assert_one_line_failure(result, "cannot resolve host 'no-such-host.invalid' to listen for AMQP clients")


def test_address_not_on_this_machine(tmp_path: Path) -> None:
    result = run(["--host", "192.0.2.1", "--port", "0", "--data-dir", str(tmp_path / "d")], tmp_path)  # TEST-NET-1
    assert_one_line_failure(result, "cannot listen for AMQP clients on 192.0.2.1:0: Cannot assign requested address")


@pytest.mark.parametrize("content", [None, "{not json"], ids=["missing", "invalid"])
def test_bad_definitions_file(tmp_path: Path, content: str | None) -> None:
    definitions = tmp_path / "definitions.json"
    if content is not None:
        definitions.write_text(content)
    result = run(broker_args(tmp_path / "d", "--definitions", str(definitions)), tmp_path)
    reason = "cannot read" if content is None else f"{definitions} is not valid JSON"
    assert_one_line_failure(result, f"configuration error: definitions: {reason}")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AMQP_BROKER_PORT": "many"}, "environment variable AMQP_BROKER_PORT: port must be an integer"),
        ({"RABBITMQ_NODE_PORT": "many"}, "environment variable RABBITMQ_NODE_PORT: port must be an integer"),
        ({"RABBITMQ_NODENAME": "a b"}, "environment variable RABBITMQ_NODENAME: node_name must look like"),
    ],
)
def test_bad_setting(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    assert_one_line_failure(run(["--data-dir", str(tmp_path / "d")], tmp_path, env), f"configuration error: {expected}")


def test_bad_rabbitmq_conf(tmp_path: Path) -> None:
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text("heartbeat = often\n")
    result = run(["--data-dir", str(tmp_path / "d")], tmp_path, {"RABBITMQ_CONFIG_FILE": str(conf)})
    assert_one_line_failure(result, f"configuration error: rabbitmq.conf {conf} line 1 (heartbeat): expected an integer")


def test_bad_enabled_plugins_file(tmp_path: Path) -> None:
    plugins = tmp_path / "enabled_plugins"
    plugins.write_text("rabbitmq_management")
    result = run(["--data-dir", str(tmp_path / "d")], tmp_path, {"RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins)})
    assert_one_line_failure(result, "not a list of plugin names")


def test_trace_file_that_cannot_be_opened(tmp_path):
    result = run(["--port", "0", "--trace", str(tmp_path / "missing" / "t.jsonl")], tmp_path)
    assert_one_line_failure(result, f"cannot open trace file {tmp_path / 'missing' / 't.jsonl'}: No such file")
