"""What a broker costs a test suite: session start-up and per-test overhead of our pytest plugin
against pytest-rabbitmq (a RabbitMQ node of its own, started from the Erlang binaries) and
testcontainers (a RabbitMQ container; needs a Docker daemon).

    python interop/plugin_overhead.py [-n 50] [--only a,b,c,d]

Each variant runs the same N trivial tests in a pytest subprocess: connect with pika, declare a
queue, publish two messages, get one back. A test leaves a message behind, so each also checks
that it started isolated (the queue was empty). Variants:

  a  our plugin, a vhost per test (``amqp_url``)
  b  our plugin, the broker reset before each test (``amqp_broker_clean``)
  c  pytest-rabbitmq (pip install pytest-rabbitmq): its ``rabbitmq`` fixture, which empties the
     node with rabbitmqctl after each test; the node gets its own name, ports, data, logs,
     Erlang cookie and no plugins, so a RabbitMQ already running on this machine is untouched
  d  testcontainers (pip install 'testcontainers[rabbitmq]'): measured only where ``docker info``
     works; reported as not run otherwise

Figures come from pytest's own setup/call/teardown durations: start-up is the first test's setup
less a typical one, per-test overhead is the fixtures' setup plus teardown of the other tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")  # the Debian package's unwrapped scripts

BODY = '''
def check(url):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    assert ch.queue_declare("work").method.message_count == 0  # isolated from the previous test
    ch.basic_publish("", "work", b"one")
    ch.basic_publish("", "work", b"two")
    method, _props, body = ch.basic_get("work", auto_ack=True)
    assert body == b"one"
    conn.close()
'''

TESTS = {
    "a": "def test_{i}(amqp_url):\n    check(amqp_url)\n",
    "b": "def test_{i}(amqp_broker_clean):\n    check(amqp_broker_clean.url)\n",
    "c": ("def test_{i}(rabbitmq_proc, rabbitmq):\n"
          "    check(f'amqp://guest:guest@127.0.0.1:{{rabbitmq_proc.port}}/%2F')\n"),
}

LABELS = {
    "a": "amqp_broker plugin, vhost per test",
    "b": "amqp_broker plugin, reset per test",
    "c": "pytest-rabbitmq (RabbitMQ 3.10 node)",
    "d": "testcontainers (RabbitMQ container)",
}

# Records every phase's duration, read back by summarise().
RECORDER = '''
import json, os

def pytest_runtest_logreport(report):
    with open(os.environ["OVERHEAD_RECORD"], "a") as f:
        f.write(json.dumps([report.nodeid, report.when, report.duration, report.outcome]) + "\\n")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def why_not(variant: str) -> str | None:
    """Why ``variant`` cannot run here, or None."""
    if variant == "c":
        if importlib.util.find_spec("pytest_rabbitmq") is None:
            return "pytest-rabbitmq is not installed (pip install pytest-rabbitmq)"
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            return f"no RabbitMQ in {RABBITMQ_BIN} (apt-get install rabbitmq-server)"
    if variant == "d":
        docker = shutil.which("docker")
        if docker is None:
            return "no docker command"
        probe = subprocess.run([docker, "info"], capture_output=True, text=True)
        if probe.returncode != 0:
            lines = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
            return f"no Docker daemon (docker info: {lines[0] if lines else 'failed'})"
        # Where Docker works, this variant is still to be written: say so rather than guess.
        return "Docker works here, but this script has no testcontainers variant yet"
    return None


def run(variant: str, n: int, work: Path) -> dict:
    """Run the N tests of ``variant`` in a pytest subprocess; its phase durations and wall time."""
    root = work / variant
    root.mkdir()
    tests = "".join(TESTS[variant].format(i=i) + "\n" for i in range(n))
    (root / f"test_overhead_{variant}.py").write_text("import pika\n" + BODY + "\n" + tests)
    (root / "conftest.py").write_text(RECORDER)
    record = root / "record.jsonl"
    env = dict(os.environ, OVERHEAD_RECORD=str(record), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root)]
    if variant in ("a", "b"):
        args += ["-p", "amqp_broker.pytest_plugin"]
    else:
        # A node of its own: own ports, node name, data and log dirs (pytest's tmp dir), an empty
        # plugins file (no management listener) and its own HOME, so its Erlang cookie too.
        home = root / "home"
        home.mkdir()
        (root / "plugins").write_text("[].\n")
        port = free_port()
        env["HOME"] = str(home)
        args += ["-p", "pytest_rabbitmq.plugin",
                 f"--rabbitmq-server={RABBITMQ_BIN / 'rabbitmq-server'}",
                 f"--rabbitmq-ctl={RABBITMQ_BIN / 'rabbitmqctl'}",
                 f"--rabbitmq-port={port}", f"--rabbitmq-distribution-port={free_port()}",
                 f"--rabbitmq-node=amqp-broker-overhead-{port}@localhost",
                 f"--rabbitmq-plugindir={root}", f"--basetemp={root / 'tmp'}"]
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise RuntimeError(f"variant {variant}: pytest exited with {proc.returncode}\n{tail}")
    return summarise(record, n, wall)


def summarise(record: Path, n: int, wall: float) -> dict:
    phases: dict[str, dict[str, float]] = {}
    for line in record.read_text().splitlines():
        nodeid, when, duration, outcome = json.loads(line)
        if outcome != "passed":
            raise RuntimeError(f"{nodeid} {when}: {outcome}")
        phases.setdefault(nodeid, {})[when] = duration
    rows = list(phases.values())  # in run order
    if len(rows) != n:
        raise RuntimeError(f"{len(rows)} tests reported, expected {n}")
    setups = [r["setup"] for r in rows]
    teardowns = [r["teardown"] for r in rows]
    # Without the first setup (session start) and the last teardown (session stop).
    per_test = [s + t for s, t in zip(setups[1:], teardowns[:-1])]
    return {
        "wall_s": wall,
        "startup_s": setups[0] - statistics.median(setups[1:]),
        "shutdown_s": teardowns[-1] - statistics.median(teardowns[:-1]),
        "overhead_mean_ms": statistics.fmean(per_test) * 1000,
        "overhead_median_ms": statistics.median(per_test) * 1000,
        "body_median_ms": statistics.median(r["call"] for r in rows) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=50, help="tests per variant (default: 50)")
    parser.add_argument("--only", default="a,b,c,d", help="variants to run, comma-separated: "
                        + ", ".join(f"{k} = {v}" for k, v in LABELS.items()) + " (default: all)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.only.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(LABELS))
    if unknown or args.n < 2:
        print(f"plugin_overhead: {'unknown variant(s) ' + ', '.join(unknown) if unknown else '-n must be at least 2'}",
              file=sys.stderr)
        return 2

    results: dict[str, dict | str] = {}
    with tempfile.TemporaryDirectory(prefix="plugin-overhead-") as tmp:
        for variant in variants:
            reason = why_not(variant)
            try:
                results[variant] = reason or run(variant, args.n, Path(tmp))
            except RuntimeError as exc:
                print(f"plugin_overhead: {exc}", file=sys.stderr)
                return 1

    print(f"{args.n} tests per variant (connect, declare, publish 2, get 1); times from pytest's "
          "setup/call/teardown durations\n")
    header = (f"{'variant':40} {'start-up':>9} {'shutdown':>9} {'per-test overhead':>18} "
              f"{'test body':>10} {'whole run':>10}")
    print(header)
    print(f"{'':40} {'s':>9} {'s':>9} {'mean / median ms':>18} {'median ms':>10} {'s':>10}")
    for variant in variants:
        r = results[variant]
        if isinstance(r, str):
            print(f"{variant}  {LABELS[variant]:37} not run: {r}")
            continue
        print(f"{variant}  {LABELS[variant]:37} {r['startup_s']:9.2f} {r['shutdown_s']:9.2f} "
              f"{r['overhead_mean_ms']:8.2f} / {r['overhead_median_ms']:7.2f} "
              f"{r['body_median_ms']:10.2f} {r['wall_s']:10.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"n": args.n, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
