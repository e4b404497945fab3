"""Running ``amqp-broker ctl`` in-process and as a process, and brokers to run it against."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from amqp_broker.ctl import cli
from amqp_broker.server.discovery import find_node

SHORT_HOST = socket.gethostname().split(".")[0]
STARTED = "Server startup complete"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def rows(self) -> list[list[str]]:
        """The tab-separated lines of the output, split (banner lines have no tab... mostly)."""
        return [line.split("\t") for line in self.out.splitlines() if "\t" in line]


def ctl(*args: str, environ: dict | None = None, stdin: str | None = None) -> Result:
    """``amqp-broker ctl ARGS`` in this process (the same code as the command, without the
    interpreter's start-up time)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = cli.main(list(args), environ=environ if environ is not None else {}, out=out, err=err)
    finally:
        sys.stdin = saved
    return Result(code, out.getvalue(), err.getvalue())


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus the broker's and RabbitMQ's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_BROKER_", "RABBITMQ_"))}
    env.update(extra)
    return env


def ctl_process(*args: str, env: dict | None = None, timeout: float = 60, prog: list[str] | None = None,
                input: str | None = None) -> subprocess.CompletedProcess:
    """``python -m amqp_broker ctl ARGS`` as a process."""
    command = prog or [sys.executable, "-m", "amqp_broker", "ctl"]
    return subprocess.run([*command, *args], env=env if env is not None else clean_env(), capture_output=True,
                          text=True, timeout=timeout, input=input)


def unique_node(prefix: str = "ctl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@{SHORT_HOST}"


class ProcessBroker:
    """``python -m amqp_broker`` as its own process, on free ports, with the HTTP endpoints off."""

    def __init__(self, tmp_path: Path, *args: str, env: dict | None = None, command: list[str] | None = None):
        self.tmp_path = tmp_path
        self.log_path = tmp_path / f"broker-{uuid.uuid4().hex[:6]}.log"
        self.log_file = self.log_path.open("w")
        argv = command or [sys.executable, "-m", "amqp_broker", "--port", "0", "--management-port", "0",
                           "--prometheus-port", "0", *args]
        self.proc = subprocess.Popen(argv, cwd=tmp_path, env=env if env is not None else clean_env(),
                                     stdout=self.log_file, stderr=subprocess.STDOUT, text=True)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_started(self, timeout: float = 30) -> "ProcessBroker":
        deadline = time.monotonic() + timeout
        while STARTED not in self.log():
            assert self.proc.poll() is None, f"broker exited with {self.proc.returncode}: {self.log()}"
            assert time.monotonic() < deadline, f"no start-up line within {timeout}s: {self.log()}"
            time.sleep(0.05)  # polling a log file: external state
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def amqp_port(node: str | None = None, data_dir: str | None = None) -> int:
    record = find_node(node_name=node, data_dir=data_dir)
    assert record is not None, f"no record for {node or data_dir}"
    return record.amqp_port
