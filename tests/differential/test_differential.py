"""Differential tests: every ``interop/diff`` scenario on our broker against RabbitMQ.

Our broker runs in-process (BrokerThread). RabbitMQ is the one at ``AMQP_RABBITMQ_URL``
(default ``amqp://guest:guest@127.0.0.1:5672/``) when it answers as RabbitMQ; otherwise each
scenario is compared against RabbitMQ's recorded observations
(``interop/diff/rabbitmq_expectations.json``) and a loud warning says so.

Scenarios listed in ``interop/diff/known_differences.py`` are xfail(strict=False).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:          # interop/ is not an installed package
    sys.path.insert(0, str(ROOT))

from amqp_broker.testing import BrokerThread  # noqa: E402
from interop.diff import harness, runner  # noqa: E402
from interop.diff.known_differences import KNOWN_DIFFERENCES  # noqa: E402

SCENARIOS = harness.load_all()
logging.getLogger("pika").setLevel(logging.CRITICAL)   # scenarios provoke closes on purpose

# Some scenarios send basic.recover-async on purpose (RabbitMQ still answers it); the in-process
# broker's decoder (pamqp) warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")
RABBIT_URL = os.environ.get("AMQP_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

# Read by conftest.py's terminal summary, so the fallback is visible at the end of the run too.
FALLBACK: dict[str, str] = {}


def _rabbit_target() -> tuple[str, int, dict]:
    u = urlparse(RABBIT_URL if "://" in RABBIT_URL else f"amqp://{RABBIT_URL}")
    vhost = unquote(u.path[1:]) if u.path and u.path != "/" else "/"
    creds = {"user": unquote(u.username or "guest"), "password": unquote(u.password or "guest"),
             "vhost": vhost}
    return u.hostname or "127.0.0.1", u.port or 5672, creds


def _params():
    for name in SCENARIOS:
        marks = []
        if name in KNOWN_DIFFERENCES:
            marks.append(pytest.mark.xfail(reason=KNOWN_DIFFERENCES[name], strict=False))
        yield pytest.param(name, marks=marks, id=name)


@pytest.fixture(scope="module")
def ours():
    with BrokerThread() as running:
        yield running


@pytest.fixture(scope="module")
def oracle():
    """Either {"live": (host, port, creds)} or {"recorded": {scenario: observations}}."""
    host, port, creds = _rabbit_target()
    server = (runner.server_product(host, port, timeout=5, attempts=2)
              if runner.reachable(host, port) else None)
    if server and server.get("product") == "RabbitMQ":
        return {"live": (host, port, creds), "source": f"RabbitMQ {server.get('version')} at {host}:{port}"}
    why = ("nothing answers" if server is None
           else f"{server.get('product')!r} answers, not RabbitMQ")
    msg = (f"RabbitMQ not available at {host}:{port} ({why}): differential tests compare against "
           f"the recorded expectations in {os.path.relpath(runner.EXPECTATIONS_FILE, ROOT)}")
    FALLBACK["message"] = msg
    banner = "\n" + "!" * 100 + f"\nWARNING: {msg}\n" + "!" * 100 + "\n"
    print(banner, file=sys.stderr)
    try:
        sys.__stderr__.write(banner)
        sys.__stderr__.flush()
    except Exception:  # noqa: BLE001
        pass
    warnings.warn(msg, UserWarning, stacklevel=1)
    data = runner.load_expectations(runner.EXPECTATIONS_FILE)
    return {"recorded": data.get("scenarios", {}),
            "source": f"recorded expectations ({data.get('recorded', '?')}, "
                      f"{(data.get('server') or {}).get('version', '?')})"}


@pytest.mark.parametrize("name", list(_params()))
def test_scenario(name: str, ours: BrokerThread, oracle: dict) -> None:
    sc = SCENARIOS[name]
    if "live" in oracle:
        host, port, creds = oracle["live"]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            fo = pool.submit(harness.run_one, sc, "127.0.0.1", ours.port, "ours")
            fr = pool.submit(harness.run_one, sc, host, port, "rabbit", **creds)
            mine, theirs = fo.result(), fr.result()
        expected = theirs.observations
    else:
        mine = harness.run_one(sc, "127.0.0.1", ours.port, "ours")
        expected = oracle["recorded"].get(name)
        assert expected is not None, (
            f"no recorded RabbitMQ observations for {name!r}: re-record with "
            "`python -m interop.diff --rabbit HOST:PORT --record interop/diff/rabbitmq_expectations.json`")
    diffs = runner.diff(expected, mine.observations)
    if diffs:
        detail = runner.format_diff(diffs, limit=60)
        if mine.traceback:
            detail += "\n    traceback on ours:\n" + mine.traceback
        pytest.fail(f"{name}: ours differs from {oracle['source']}:\n{detail}", pytrace=False)
