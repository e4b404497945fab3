"""File descriptors: the CLI raises its limit, and running out of them never ends the broker.

The broker runs as a real process with its RLIMIT_NOFILE set before it starts (soft == hard, so
it cannot raise it), and bare TCP sockets (no AMQP handshake) use up its descriptors.
"""

from __future__ import annotations

import re
import resource
import socket
import time

import pika
import pytest

from amqp_broker.server.flow import MONITOR_INTERVAL
from amqp_broker.testing import BrokerThread
from interop.crash.broker_proc import BrokerProcess

LIMIT = 128
SOCKETS = 200
WARNING = "out of file descriptors ("


def _limit_fds(soft: int, hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _log(broker: BrokerProcess) -> str:
    with open(broker.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _wait_for_log(broker: BrokerProcess, condition, what: str, timeout: float = 15.0) -> str:
    """Poll the broker's log until ``condition(text)``; fail at the deadline or if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        text = _log(broker)
        if condition(text):
            return text
        assert broker.running, f"the broker exited waiting for {what}:\n{text[-4000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{text[-4000:]}"
        time.sleep(0.02)


def _accepted(text: str) -> int:
    return text.count("accepting AMQP connection")


@pytest.fixture
def limited_broker(tmp_path):
    broker = BrokerProcess(str(tmp_path / "data"), log_path=str(tmp_path / "broker.log"),
                           preexec_fn=_limit_fds(LIMIT, LIMIT))
    broker.start()
    yield broker
    if broker.running:
        broker.kill9()


def _connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, heartbeat=0, connection_attempts=1))


def test_running_out_of_descriptors_refuses_connections_for_a_moment(limited_broker):
    broker = limited_broker
    # A client connected before the descriptors run out keeps being served, durably.
    before = _connect(broker.port)
    channel = before.channel()
    channel.confirm_delivery()
    queue = "fd.exhaustion"
    channel.queue_declare(queue, durable=True)

    sockets = []
    try:
        for _ in range(SOCKETS):
            sockets.append(socket.create_connection(("127.0.0.1", broker.port)))
        _wait_for_log(broker, lambda text: WARNING in text, "the out-of-descriptors warning")

        # Publisher confirms need the store's commits to work without a new descriptor.
        for n in range(3):
            channel.basic_publish("", queue, f"during {n}".encode(),
                                  pika.BasicProperties(delivery_mode=2), mandatory=True)

        # Several memory-sampler rounds (each one read /proc/self/statm, which used to mean a
        # new descriptor) with every descriptor taken: the broker must still be there.
        deadline = time.monotonic() + 5 * MONITOR_INTERVAL
        while time.monotonic() < deadline:
            assert broker.running, _log(broker)[-4000:]
            time.sleep(MONITOR_INTERVAL / 5)
        assert _accepted(_log(broker)) < SOCKETS + 1, "more connections accepted than the limit allows"
    finally:
        for sock in sockets:
            sock.close()

    # Descriptors free up as the broker sees those sockets close; then what waited in the listen
    # backlog is accepted too, and accepting is announced as working again.
    text = _wait_for_log(
        broker, lambda text: _accepted(text) == SOCKETS + 1 and "accepting connections again" in text,
        "the backlog to be accepted")

    after = _connect(broker.port)
    try:
        ch = after.channel()
        ch.basic_publish("", queue, b"after", pika.BasicProperties(delivery_mode=2))
        bodies = []
        deadline = time.monotonic() + 5
        while len(bodies) < 4:
            assert time.monotonic() < deadline, f"got only {bodies}"
            method, _props, body = ch.basic_get(queue, auto_ack=True)
            if method is not None:
                bodies.append(body)
        assert bodies == [b"during 0", b"during 1", b"during 2", b"after"]
    finally:
        after.close()
        before.close()

    assert broker.stop() == 0
    text = _log(broker)
    warnings = [line for line in text.splitlines() if WARNING in line]
    # One line when an episode starts and one when it ends, never one per failed accept. Usually
    # there is one episode; on a slow machine the 10 s handshake timeout can free descriptors
    # while the test still holds its sockets, and the backlog then fills them again: a second.
    assert 1 <= len(warnings) == text.count("accepting connections again"), warnings
    for warning in warnings:
        assert re.search(rf"\(\d+ open, limit {LIMIT}\): refusing new connections for a moment", warning)
    assert "Traceback" not in text
    assert "[ERROR]" not in text
    assert "cannot sample" not in text


def _fd_limits_of(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


def test_the_cli_raises_its_soft_limit_to_the_hard_limit(tmp_path):
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if target <= 256:
        pytest.skip(f"the hard descriptor limit ({hard}) leaves nothing to raise")
    broker = BrokerProcess(str(tmp_path / "data"), log_path=str(tmp_path / "broker.log"),
                           preexec_fn=_limit_fds(256, target))
    broker.start()
    try:
        assert _fd_limits_of(broker.proc.pid) == (target, target)
        assert f"file descriptor limit: {target} (raised from 256)" in _log(broker)
    finally:
        assert broker.stop() == 0


def test_an_embedded_broker_leaves_its_hosts_limit_alone():
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    with BrokerThread() as running:
        assert running.port
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == before
