"""Real AMQP clients (interop/clients/) run against our in-process broker over a real socket.

Each scenario is a separate program taking --host/--port, which exits 0 and prints PASS when the
client saw what RabbitMQ shows it; the same programs pass against RabbitMQ 3.10. A client that is
not installed is a failure, with the command that installs it: these clients are required.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "interop" / "clients"
NODE_DIR = CLIENTS / "node"
AMQP_TOOLS = ("amqp-declare-queue", "amqp-publish", "amqp-consume", "amqp-get", "amqp-delete-queue")


def run_scenario(cmd: list[str], timeout: float) -> None:
    """Run one scenario in its own process group (killed whole on timeout: the celery scenario
    has a worker subprocess) and fail with its output unless it exits 0 and prints PASS."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout}s\n"
                    f"--- stdout\n{out}\n--- stderr\n{err}")
    if proc.returncode != 0 or "PASS" not in out:
        pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode}\n"
                    f"--- stdout\n{out}\n--- stderr\n{err}")


def require_python_package(module: str, dist: str) -> None:
    # Already imported counts: kombu swaps its module object for one without __spec__, which
    # find_spec then refuses (tests/faults imports kombu in this process).
    if module not in sys.modules and importlib.util.find_spec(module) is None:
        pytest.fail(f"Python package {dist!r} is not installed in {sys.executable}: it is in the "
                    "project's test extras, install them with `make install` "
                    "(or `.venv/bin/pip install -e '.[test]'`)")


@pytest.mark.parametrize(("script", "module", "dist", "extra"), [
    ("aiopika_smoke.py", "aio_pika", "aio-pika", []),
    ("pyamqp_smoke.py", "amqp", "amqp", ["--part", "smoke"]),
    ("kombu_smoke.py", "kombu", "kombu", []),
])
def test_python_client(broker, script, module, dist, extra):
    require_python_package(module, dist)
    run_scenario([sys.executable, str(CLIENTS / script), "--host", "127.0.0.1",
                  "--port", str(broker.port), *extra], timeout=60)


def test_pyamqp_queue_delete_ok_before_basic_cancel(broker):
    """queue.delete of a queue consumed on the same channel: RabbitMQ 3.10 sends queue.delete-ok,
    then basic.cancel to that consumer; py-amqp sees queue_delete() return before on_cancel."""
    require_python_package("amqp", "amqp")
    run_scenario([sys.executable, str(CLIENTS / "pyamqp_smoke.py"), "--host", "127.0.0.1",
                  "--port", str(broker.port), "--part", "delete-order"], timeout=30)


def test_celery_worker_rpc_result(broker):
    """A real worker subprocess runs add(2, 3); the result comes back over AMQP (rpc://)."""
    require_python_package("celery", "celery")
    run_scenario([sys.executable, str(CLIENTS / "celery_smoke.py"), "--host", "127.0.0.1",
                  "--port", str(broker.port)], timeout=90)


def test_amqp_tools(broker):
    """rabbitmq-c's command-line tools (C, librabbitmq)."""
    missing = [tool for tool in AMQP_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found on PATH: install Debian's amqp-tools "
                    "(`sudo apt-get install amqp-tools`; .ci/run does this)")
    run_scenario([sys.executable, str(CLIENTS / "amqp_tools_smoke.py"), "--host", "127.0.0.1",
                  "--port", str(broker.port)], timeout=60)


def require_amqplib() -> str:
    """The node executable, once Node and amqplib are known to be installed."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found on PATH: install Node.js 18+ (e.g. `apt-get install nodejs npm`)")
    if not (NODE_DIR / "node_modules" / "amqplib").is_dir():
        pytest.fail("amqplib is not installed: run `npm ci --prefix interop/clients/node` "
                    "(.ci/run does this)")
    return node


def test_node_amqplib(broker):
    """Node's amqplib, installed from package-lock.json into interop/clients/node/node_modules."""
    run_scenario([require_amqplib(), str(NODE_DIR / "smoke.js"), "--host", "127.0.0.1",
                  "--port", str(broker.port)], timeout=60)


def test_node_amqplib_closes_cleanly_after_a_burst(broker):
    """amqplib closes with channel frames still being flushed behind its connection.close: the
    broker must read them after close-ok, or amqplib gets EPIPE/ECONNRESET (issue 14)."""
    run_scenario([require_amqplib(), str(NODE_DIR / "close_burst.js"), "--host", "127.0.0.1",
                  "--port", str(broker.port)], timeout=90)
