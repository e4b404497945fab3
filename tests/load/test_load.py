"""Short versions of the load and churn runs (python -m interop.load runs the long ones): many
connections with consumers and heartbeats, slow handshakes beside a working client, and churn
that leaves descriptors and memory where they were. Against a broker subprocess, measured
through /proc."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from interop.crash.broker_proc import BrokerProcess
from interop.load.__main__ import churn, hold, slow


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load")
    proc = BrokerProcess(str(tmp / "data"), log_path=str(tmp / "broker.log"))
    proc.start()
    yield proc
    assert proc.stop() == 0


def run(mode, broker, **options) -> bool:
    args = argparse.Namespace(host="127.0.0.1", port=broker.port, pid=broker.proc.pid, **options)
    return asyncio.run(mode(args))


def test_connections_with_consumers_keep_their_heartbeats(broker, capsys):
    assert run(hold, broker, connections=500, heartbeat=2, seconds=6)
    out = capsys.readouterr().out
    assert "0 connections closed by the broker, 0 silent" in out, out


def test_slow_handshakes_do_not_stop_other_clients(broker, capsys):
    assert run(slow, broker, connections=100, seconds=3)
    assert "handshakes a byte a second" in capsys.readouterr().out


def test_churn_leaves_descriptors_and_memory_at_their_baseline(broker, capsys):
    assert run(churn, broker, clients=20, seconds=4)
    assert "connections opened, declared, published and closed" in capsys.readouterr().out
