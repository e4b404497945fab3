"""Node records: written by a broker, read by tools to find it by node name or data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amqp_broker.config import Settings
from amqp_broker.server.discovery import RECORD_NAME, announce, find_node, nodes_dir
from amqp_broker.testing import BrokerThread


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    return run


def settings(tmp_path: Path, name: str = "n1@host", data: str = "data") -> Settings:
    return Settings(node_name=name, data_dir=str(tmp_path / data), host="127.0.0.1")


def test_nodes_dir_is_per_user_under_the_runtime_dir() -> None:
    assert nodes_dir({"XDG_RUNTIME_DIR": "/run/user/7"}) == f"/run/user/7/amqp-broker-{os.getuid()}/nodes"
    assert nodes_dir({}) == f"/tmp/amqp-broker-{os.getuid()}/nodes"


def test_announce_writes_both_records_and_withdraw_removes_them(tmp_path: Path, runtime: Path) -> None:
    s = settings(tmp_path)
    os.makedirs(s.data_dir)
    announcement = announce(s, 5999, management_port=15999, prometheus_port=None)
    by_dir = Path(s.data_dir) / RECORD_NAME
    by_name = Path(nodes_dir()) / "n1@host.json"
    assert sorted(announcement.paths) == sorted([str(by_dir), str(by_name)])
    data = json.loads(by_dir.read_text())
    assert data == json.loads(by_name.read_text())
    assert (data["node_name"], data["pid"], data["host"]) == ("n1@host", os.getpid(), "127.0.0.1")
    assert (data["amqp_port"], data["management_port"], data["prometheus_port"]) == (5999, 15999, None)
    assert data["data_dir"] == os.path.abspath(s.data_dir)
    assert os.stat(nodes_dir()).st_mode & 0o777 == 0o700

    assert find_node("n1@host") == find_node(data_dir=s.data_dir) == announcement.record
    assert find_node("n1@host", data_dir=s.data_dir) == announcement.record
    assert find_node("other@host", data_dir=s.data_dir) is None
    assert find_node("nobody@host") is None

    announcement.withdraw()
    assert not by_dir.exists() and not by_name.exists()
    assert find_node("n1@host") is None


def test_find_node_defaults_to_rabbit_at_this_host(tmp_path: Path, runtime: Path) -> None:
    s = Settings(data_dir=str(tmp_path / "data"))
    os.makedirs(s.data_dir)
    announcement = announce(s, 5998)
    try:
        assert find_node() == announcement.record
        assert find_node("rabbit") == announcement.record  # completed as node names are
    finally:
        announcement.withdraw()


def test_a_dead_brokers_record_is_ignored_and_replaced(tmp_path: Path, runtime: Path) -> None:
    s = settings(tmp_path)
    os.makedirs(s.data_dir)
    first = announce(s, 5997)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for path in first.paths:  # as if that broker had been killed outright
        data = json.loads(Path(path).read_text())
        Path(path).write_text(json.dumps({**data, "pid": int(dead.stdout)}))
    assert find_node("n1@host") is None and find_node(data_dir=s.data_dir) is None
    second = announce(s, 5996)
    assert find_node("n1@host") == second.record
    second.withdraw()


def test_a_live_holder_keeps_the_name(tmp_path: Path, runtime: Path, caplog) -> None:
    first_settings, second_settings = settings(tmp_path, data="a"), settings(tmp_path, data="b")
    os.makedirs(first_settings.data_dir)
    os.makedirs(second_settings.data_dir)
    first = announce(first_settings, 5995)
    with caplog.at_level("INFO", logger="amqp_broker.server"):
        second = announce(second_settings, 5994)
    assert "node name n1@host is taken by the broker with pid" in caplog.text
    assert find_node("n1@host").amqp_port == 5995
    assert find_node(data_dir=second_settings.data_dir).amqp_port == 5994
    second.withdraw()  # leaves the first one's by-name record alone
    assert find_node("n1@host").amqp_port == 5995
    first.withdraw()
    assert find_node("n1@host") is None


def test_records_that_cannot_be_written_cost_a_warning(tmp_path: Path, runtime: Path, caplog) -> None:
    s = settings(tmp_path)
    (tmp_path / "data").write_text("a file where the directory should be")
    owned = Path(runtime) / f"amqp-broker-{os.getuid()}"
    owned.symlink_to(tmp_path)  # not a directory of this user's own: records could be planted
    with caplog.at_level("WARNING", logger="amqp_broker.server"):
        announcement = announce(s, 5993)
    assert announcement.paths == []
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"cannot write the node record {tmp_path / 'data' / RECORD_NAME}") for m in messages)
    assert any(m == f"not writing node records: {owned} is not a directory of this user's" for m in messages)
    announcement.withdraw()


def test_garbage_records_are_no_node(tmp_path: Path, runtime: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for text in ("not json", "[]", '{"node_name": "x"}', json.dumps({
        "node_name": "x@h", "pid": 0, "host": "", "amqp_port": 1, "management_port": None,
        "prometheus_port": None, "data_dir": "", "version": "0", "instance": "i",
    })):  # fmt: skip
        (data / RECORD_NAME).write_text(text)
        assert find_node(data_dir=str(data)) is None


def test_an_in_process_broker_announces_itself_while_it_runs(tmp_path: Path, runtime: Path) -> None:
    with BrokerThread(data_dir=str(tmp_path / "data"), node_name="inproc") as broker:
        record = find_node("inproc")
        assert record is not None
        assert record == find_node(data_dir=str(tmp_path / "data"))
        assert (record.amqp_port, record.pid) == (broker.port, os.getpid())
        assert record.management_port is None and record.prometheus_port is None
    assert find_node("inproc") is None
    assert not (tmp_path / "data" / RECORD_NAME).exists()
