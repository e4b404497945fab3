"""Tracing off costs nothing per frame: the broker's thread, profiled through a pika conversation,
calls no trace code but the one check per accepted connection (and tracing's set-up and
shut-down), however many messages go through.
(The per-message call budget of the protocol layer is guarded by tests/perf, which tracing does
not touch.)"""

from __future__ import annotations

import threading
from collections import Counter

import pika

from amqp_broker.testing import BrokerThread

TRACE_MODULES = ("amqp_broker/server/trace.py", "amqp_broker/protocol/trace.py")


def _trace_calls(messages: int, trace_file: str = "") -> Counter:
    calls: Counter = Counter()

    def profiler(frame, event, _arg):
        if event == "call" and frame.f_code.co_filename.endswith(TRACE_MODULES):
            calls[frame.f_code.co_name] += 1

    threading.setprofile(profiler)  # threads started from now on: the broker's
    try:
        broker = BrokerThread(trace_file=trace_file).start()
    finally:
        threading.setprofile(None)
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
        ch = conn.channel()
        ch.queue_declare("cost")
        for _ in range(messages):
            ch.basic_publish("", "cost", b"m")
        for _ in range(messages):
            assert ch.basic_get("cost", auto_ack=True)[2] == b"m"
        ch.queue_delete("cost")
        conn.close()
    finally:
        broker.stop()
    return calls


def test_untraced_connections_call_no_trace_code_per_frame(tmp_path):
    few, many = _trace_calls(5), _trace_calls(100)
    # Tracing's set-up and shut-down with the broker, and one check per connection accepted.
    assert few == many == Counter({"__init__": 1, "accepted": 1, "close": 1}), (few, many)
    traced = _trace_calls(5, str(tmp_path / "t.jsonl"))
    assert traced["received"] > 5 and traced["sent"] > 5  # the profile does see trace code
