"""One broker per data directory, and a failed start that leaves the store as it found it.

Before the lock, a second broker started on a live data directory: with confirmed persistent
publishes spread over both, a restart kept one broker's messages and lost the other's, and both
delivered the same recovered messages. Now the second one is refused with one line naming the
holder's pid, so neither can happen; these tests replay both scenarios and check that every
confirmed message survives exactly once.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys

import pika
import pytest

from durability_helpers import Broker, get_all, publish
from interop.crash.broker_proc import ROOT, BrokerError, BrokerProcess


def second_start(data_dir: str, *args: str) -> subprocess.CompletedProcess:
    """``amqp-broker`` on ``data_dir`` as a user would start it; it is expected to refuse."""
    return subprocess.run(
        [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--data-dir", data_dir,
         "--management-port", "0", "--prometheus-port", "0", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )


def meta(data_dir, key: str) -> str | None:
    db = sqlite3.connect(f"file:{data_dir}/amqp_broker.sqlite3?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return row[0] if row else None


def test_a_second_broker_is_refused_and_no_confirmed_message_is_lost(node, tmp_path):
    ch = node.channel(confirm=True)
    ch.queue_declare("shared.q", durable=True)
    publish(ch, "shared.q", [f"first-{i}" for i in range(100)])

    for port in ("0", str(node.port)):  # on its own port, and on the holder's
        result = second_start(node.data_dir, "--port", port)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert lines[-1] == (
            f"amqp-broker: cannot start: data directory {tmp_path / 'data'} is in use by the "
            f"broker with pid {node.proc.pid}: one broker per data directory"
        ), result.stderr
        assert "Traceback" not in result.stderr and "startup complete" not in result.stderr

    # The holder carries on undisturbed; what it confirmed before and after survives a restart.
    publish(ch, "shared.q", [f"second-{i}" for i in range(100)])
    node.bounce("clean")
    got = get_all(node.channel(), "shared.q")
    assert [body for body, _ in got] == [f"first-{i}" for i in range(100)] + [f"second-{i}" for i in range(100)]
    assert not any(redelivered for _, redelivered in got)


def test_recovered_messages_are_delivered_by_one_broker_only(node):
    ch = node.channel(confirm=True)
    ch.queue_declare("recovered.q", durable=True)
    publish(ch, "recovered.q", [f"m{i}" for i in range(50)])
    node.bounce("kill9")  # the lock dies with the process: the restart gets the directory

    result = second_start(node.data_dir, "--port", "0")
    assert result.returncode == 1 and f"pid {node.proc.pid}" in result.stderr

    got = get_all(node.channel(), "recovered.q")
    assert sorted(body for body, _ in got) == sorted(f"m{i}" for i in range(50))
    # Acked, they are gone for good: nothing comes back from a second copy of the store.
    node.bounce("clean")
    assert get_all(node.channel(), "recovered.q") == []


@pytest.mark.parametrize("failure", ["busy port", "bad config"])
def test_a_failed_start_leaves_the_store_as_it_found_it(tmp_path, failure):
    data_dir = str(tmp_path / "data")
    node = Broker(data_dir, log_path=str(tmp_path / "broker.log")).start()
    try:
        ch = node.channel(confirm=True)
        ch.queue_declare("crashed.q", durable=True)
        publish(ch, "crashed.q", ["after-crash"])
    finally:
        node.kill9()
    assert meta(data_dir, "clean_shutdown") == "0"  # a crash: recovered messages are suspect

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        if failure == "busy port":
            args = ("--port", str(busy.getsockname()[1]))
        else:
            args = ("--port", "0", "--frame-max", "12")
        result = second_start(data_dir, *args)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("amqp-broker:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    # Untouched: still marked as crashed, so the next real start flags the message redelivered.
    assert meta(data_dir, "clean_shutdown") == "0"

    node = Broker(data_dir, log_path=str(tmp_path / "broker.log")).start()
    try:
        assert get_all(node.channel(), "crashed.q") == [("after-crash", True)]
    finally:
        node.kill9()


def test_the_lock_is_given_up_when_the_broker_stops(tmp_path):
    data_dir = str(tmp_path / "data")
    first = BrokerProcess(data_dir, log_path=str(tmp_path / "broker.log")).start()
    with pytest.raises(BrokerError, match="in use by the broker with pid"):
        BrokerProcess(data_dir, log_path=str(tmp_path / "second.log")).start()
    assert first.stop() == 0
    again = BrokerProcess(data_dir, log_path=str(tmp_path / "broker.log")).start()
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", again.port, heartbeat=0))
        assert conn.is_open
        conn.close()
    finally:
        assert again.stop() == 0
