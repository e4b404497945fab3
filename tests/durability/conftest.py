"""Fixtures for durability tests: a broker subprocess on a private data directory.

The broker runs as a real process (interop/crash/broker_proc.py) so it can be killed with SIGKILL:
nothing is flushed, closed or said goodbye to, exactly as after a crash or an OOM kill.
"""

from __future__ import annotations

import pytest

from durability_helpers import Broker


@pytest.fixture
def node(tmp_path):
    """A broker subprocess started on ``tmp_path/data``; ``node.bounce('clean'|'kill9')`` restarts it."""
    proc = Broker(str(tmp_path / "data"), log_path=str(tmp_path / "broker.log"))
    proc.start()
    yield proc
    proc._conns.clear()  # the broker is going away: no polite close needed
    if proc.running:
        proc.kill9()
