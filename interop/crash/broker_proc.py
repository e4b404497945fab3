"""Our broker as a subprocess on a data directory: start, SIGKILL, SIGTERM, restart.

    broker = BrokerProcess(data_dir).start()   # waits for "Server startup complete"
    broker.port                                # the port it bound (it is started with --port 0)
    broker.kill9()                             # SIGKILL, no chance to flush anything
    broker.stop()                              # SIGTERM: clean shutdown, exit status 0

``AMQP_BROKER_SRC=DIR`` (or ``src=``) runs the broker from another source tree (a directory holding
``amqp_broker/``, e.g. an export of an older commit) instead of this checkout's.

The broker's stderr goes to a log file in the data directory's parent (or ``log_dir``), appended to
across restarts, so a failed trial can be read back.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_LISTENING = re.compile(rb"Server startup complete; listening on [^\s:]+:(\d+)")


class BrokerError(Exception):
    """The broker did not start (or did not stop) as expected; the message quotes its log."""


class BrokerProcess:
    """``python -m amqp_broker --host 127.0.0.1 --port 0 --data-dir D`` as a child process."""

    def __init__(self, data_dir: str, log_path: str | None = None, extra_args: list[str] | None = None,
                 python: str = sys.executable, src: str | None = None, preexec_fn=None):
        self.data_dir = data_dir
        self.log_path = log_path or os.path.join(os.path.dirname(os.path.abspath(data_dir)) or ".",
                                                 os.path.basename(os.path.abspath(data_dir)) + ".broker.log")
        self.extra_args = list(extra_args or [])
        self.python = python
        self.src = src or os.environ.get("AMQP_BROKER_SRC") or ROOT
        # Run in the child before the broker starts (say, to set its resource limits).
        self.preexec_fn = preexec_fn
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> "BrokerProcess":
        """Start the broker and wait until it logs that it listens; raises BrokerError otherwise."""
        if self.proc is not None and self.proc.poll() is None:
            raise BrokerError("already running")
        with open(self.log_path, "ab") as log:
            log.write(f"==== start #{self.starts + 1} ({time.strftime('%H:%M:%S')})\n".encode())
        offset_after_marker = os.path.getsize(self.log_path)
        env = dict(os.environ)
        env["PYTHONPATH"] = self.src + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("AMQP_BROKER_CONFIG", None)
        # No HTTP listeners: 15672/15692 are RabbitMQ's here. Variables, not flags, so an older
        # source tree (AMQP_BROKER_SRC) that has no such settings still starts (it ignores them).
        env.update(AMQP_BROKER_MANAGEMENT_PORT="0", AMQP_BROKER_PROMETHEUS_PORT="0")
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.python, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", "0",
                 "--data-dir", self.data_dir, "--log-level", "info", *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, cwd=self.src, env=env,
                preexec_fn=self.preexec_fn,
            )
        finally:
            logf.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(offset_after_marker)
                text = f.read()
            found = _LISTENING.search(text)
            if found:
                self.port = int(found.group(1))
                return self
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"broker exited with status {self.proc.returncode} on start #{self.starts}:\n"
                    + text.decode(errors="replace")[-4000:]
                )
            if time.monotonic() > deadline:
                self.kill9()
                raise BrokerError(f"broker did not start within {timeout} s:\n"
                                  + text.decode(errors="replace")[-4000:])
            time.sleep(0.01)

    def kill9(self) -> None:
        """SIGKILL the broker and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a clean shutdown) and wait; returns the exit status (SIGKILL after timeout)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise BrokerError(f"broker did not stop within {timeout} s of SIGTERM")
        return self.proc.returncode

    def restart(self, clean: bool = False) -> "BrokerProcess":
        """Stop (SIGTERM when ``clean``, else SIGKILL) and start again on the same data directory."""
        if clean:
            status = self.stop()
            if status != 0:
                raise BrokerError(f"broker exited with status {status} after SIGTERM")
        else:
            self.kill9()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> "BrokerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.running:
            self.kill9()
