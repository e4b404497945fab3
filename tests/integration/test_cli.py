"""The ``amqp-broker`` command as a real process: start-up, signals, logging, settings sources."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest

STARTED = "Server startup complete"
SHUTDOWN_TEXT = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
CONSOLE_SCRIPT = Path(sys.executable).parent / "amqp-broker"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BrokerProcess:
    """``python -m amqp_broker ARGS`` with its merged stdout/stderr read line by line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_BROKER_", "RABBITMQ_"))}
        # No HTTP listeners unless a test asks: 15672/15692 belong to the RabbitMQ next to us.
        full_env.update(AMQP_BROKER_MANAGEMENT_PORT="0", AMQP_BROKER_PROMETHEUS_PORT="0")
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amqp_broker", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            text=True,
        )
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        """The first (next) output line containing ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {text!r} within {timeout}s; output: {''.join(self.log)}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended before {text!r}; output: {''.join(self.log)}")
            if text in line:
                return line

    def started(self) -> int:
        """Wait for start-up; return the port from ``listening on HOST:PORT``."""
        line = self.wait_for(STARTED)
        match = re.search(r"listening on .*:(\d+)", line)
        assert match, line
        return int(match.group(1))

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def run_broker(tmp_path):
    started: list[BrokerProcess] = []

    def run(*args: str, env: dict[str, str] | None = None, data_dir: bool = True) -> BrokerProcess:
        full = list(args)
        if data_dir:
            full += ["--data-dir", str(tmp_path / "data")]
        process = BrokerProcess(full, env)
        started.append(process)
        return process

    yield run
    for process in started:
        process.kill()


def pika_params(port: int) -> pika.ConnectionParameters:
    return pika.ConnectionParameters("127.0.0.1", port, heartbeat=0, connection_attempts=1)


def connections_in_log(log: list[str], what: str) -> list[str]:
    return [m.group(1) for line in log if (m := re.search(rf"{what} AMQP connection \(([^)]+)\)", line))]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_connections_with_320_and_exits_0(run_broker, signum):
    port = free_port()
    broker = run_broker("--port", str(port), "--host", "127.0.0.1")
    assert broker.started() == port

    earlier = pika.BlockingConnection(pika_params(port))  # opened and closed by the client
    earlier.channel()
    earlier.close()
    conn = pika.BlockingConnection(pika_params(port))
    ch = conn.channel()
    ch.queue_declare("", exclusive=True)

    broker.proc.send_signal(signum)
    deadline = time.monotonic() + 5
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
    assert info.value.reply_code == 320
    assert info.value.reply_text == SHUTDOWN_TEXT

    assert broker.proc.wait(5) == 0
    broker._reader.join(5)
    log = broker.log
    assert any(f"received {signal.Signals(signum).name}" in line for line in log), log
    accepted = connections_in_log(log, "accepting")
    closed = connections_in_log(log, "closing")
    # One line per connection opened and one per connection closed, for the same peers.
    assert len(accepted) == 2 and len(set(accepted)) == 2, log
    assert sorted(closed) == sorted(accepted), log


def test_port_from_the_environment(run_broker):
    port = free_port()
    broker = run_broker("--host", "127.0.0.1", env={"AMQP_BROKER_PORT": str(port)})
    assert broker.started() == port
    conn = pika.BlockingConnection(pika_params(port))
    assert conn.channel().is_open
    conn.close()
    assert broker.stop() == 0


def test_port_flag_beats_the_environment(run_broker):
    port, env_port = free_port(), free_port()
    broker = run_broker("--host", "127.0.0.1", "--port", str(port), env={"AMQP_BROKER_PORT": str(env_port)})
    assert broker.started() == port
    assert broker.stop() == 0


def test_port_from_a_config_file(run_broker, tmp_path):
    port = free_port()
    config = tmp_path / "broker.toml"
    config.write_text(f'port = {port}\nhost = "127.0.0.1"\ndata_dir = "{tmp_path / "cfgdata"}"\n')
    broker = run_broker("--config", str(config), data_dir=False)
    assert broker.started() == port
    conn = pika.BlockingConnection(pika_params(port))
    assert conn.channel().is_open
    conn.close()
    assert broker.stop() == 0


def _listening_addresses(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for row in fh:
                fields = row.split()
                address, hex_port = fields[1].split(":")
                if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    found.append(address)
    return found


def _non_loopback_ipv4() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            # No packet is sent: this only picks a route (a broadcast address would be refused).
            sock.connect(("198.51.100.1", 9))
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") else address


def test_host_127_0_0_1_binds_only_loopback(run_broker):
    broker = run_broker("--host", "127.0.0.1", "--port", "0")
    port = broker.started()
    assert _listening_addresses(port) == ["0100007F"]  # 127.0.0.1, and nothing on IPv6
    conn = pika.BlockingConnection(pika_params(port))
    conn.close()
    other = _non_loopback_ipv4()
    if other is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((other, port), timeout=5).close()
    assert broker.stop() == 0


def test_default_host_binds_all_interfaces(run_broker):
    broker = run_broker("--port", "0")
    port = broker.started()
    addresses = _listening_addresses(port)
    assert addresses and all(set(address) == {"0"} for address in addresses), addresses  # 0.0.0.0 / ::
    assert broker.stop() == 0


def test_console_script_help():
    result = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: amqp-broker")
    for flag in ("--port", "--host", "--config", "--data-dir"):
        assert flag in result.stdout


def test_console_script_version():
    from amqp_broker import DISTRIBUTION, __version__

    result = subprocess.run([str(CONSOLE_SCRIPT), "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"amqp-broker ({DISTRIBUTION}) {__version__}\n"


def test_definitions_help_shows_only_its_flags():
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "definitions", "export", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: amqp-broker definitions export")
    for flag in ("--data-dir", "--config", "--log-level"):
        assert flag in result.stdout
    for flag in ("--heartbeat", "--port", "--frame-max"):
        assert flag not in result.stdout


def test_port_in_use_exits_1(run_broker):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = run_broker("--host", "127.0.0.1", "--port", str(port))
        assert broker.proc.wait(15) == 1
    broker._reader.join(5)
    assert any("cannot start" in line for line in broker.log), broker.log


@pytest.mark.parametrize("setting", ["management", "prometheus"])
def test_http_port_in_use_is_one_line_and_exit_1(run_broker, setting):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = run_broker("--host", "127.0.0.1", "--port", "0", f"--{setting}-port", str(port))
        assert broker.proc.wait(15) == 1
    broker._reader.join(5)
    what = {"management": "management HTTP API", "prometheus": "Prometheus metrics"}[setting]
    errors = [line for line in broker.log if line.startswith("amqp-broker:")]
    assert len(errors) == 1, broker.log
    assert errors[0].startswith(f"amqp-broker: cannot start ({what} on 127.0.0.1:{port}): "), errors
    assert "address already in use" in errors[0].lower()
    assert not any("Traceback" in line or "startup complete" in line for line in broker.log)


def test_management_port_is_listening_before_startup_line(run_broker):
    port = free_port()
    broker = run_broker("--host", "127.0.0.1", "--port", "0", "--management-port", str(port))
    broker.wait_for(f"management HTTP API listening on 127.0.0.1:{port}")
    broker.started()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /api/overview HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 401 ")
    assert broker.stop() == 0


def test_signal_right_after_startup_line_is_a_clean_shutdown(run_broker):
    # "Server startup complete" promises the signal handlers are installed: a SIGTERM sent the
    # moment the line appears must not kill the process with the default action (-15).
    for _ in range(5):
        broker = run_broker("--host", "127.0.0.1", "--port", "0")
        broker.started()
        assert broker.stop(signal.SIGTERM) == 0, broker.log


def test_startup_line_is_printed_at_any_log_level(tmp_path):
    """Tools wait for "Server startup complete" (as with RabbitMQ), even with --log-level error."""
    import socket as _socket
    import subprocess as _subprocess
    import sys as _sys
    import time as _time

    with _socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = _subprocess.Popen(
        [_sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(tmp_path / "data"), "--log-level", "error",
         "--management-port", "0", "--prometheus-port", "0"],
        stderr=_subprocess.PIPE, stdout=_subprocess.DEVNULL, text=True,
    )
    try:
        deadline = _time.monotonic() + 30
        line = ""
        while _time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "Server startup complete" in line or not line:
                break
        assert "Server startup complete" in line
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
