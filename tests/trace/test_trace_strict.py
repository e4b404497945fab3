"""Strict mode's findings land in the frame trace, after the read that carried the frame breaking the rule."""

from __future__ import annotations

import subprocess
import sys

import pika

from amqp_broker.testing import BrokerThread
from trace_helpers import summary, wait_for


def test_a_strict_violation_is_a_trace_event(tmp_path):
    path = tmp_path / "trace.jsonl"
    with BrokerThread(strict="report", trace_file=str(path)) as broker:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
        ch = conn.channel()
        ch.queue_declare("q-strict")
        ch.basic_publish("", "q-strict", b"x", pika.BasicProperties(priority=10))
        ch.queue_declare("q-strict", passive=True)  # a round trip: the publish was handled
        conn.close()
        recs = wait_for(path, lambda rs: any(r.get("event") == "socket_closed" for r in rs))
    found = [i for i, r in enumerate(recs) if r.get("event") == "violation" and r["rule"] == "priority-range"]
    assert len(found) == 1, [summary(r) for r in recs]
    event = recs[found[0]]
    assert event["channel"] == 1 and "10" in event["detail"]
    # It follows the content header that carried the priority (a read's frames are traced first).
    headers = [i for i, r in enumerate(recs) if r.get("type") == "header" and r.get("dir") == "in"]
    assert headers and headers[0] < found[0], [summary(r) for r in recs]
    shown = subprocess.run([sys.executable, "-m", "amqp_broker", "trace", "show", str(path)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "violation" in shown.stdout and "priority-range" in shown.stdout
