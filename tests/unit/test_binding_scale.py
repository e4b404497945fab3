"""Durable bindings cost the same to add at the 100,000th as at the first, and a restart does not
write its definitions back. Measured in Python lines executed (sys.settrace), not seconds: a
count is the same on any machine, and a walk over an exchange's bindings shows up as lines that
grow with them."""

from __future__ import annotations

import sys

from amqp_broker.broker.broker import Broker
from amqp_broker.store.sqlite import SQLiteStore


def calls(fn) -> int:
    """Python lines executed by ``fn()`` (comprehension iterations included)."""
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def durable_setup(tmp_path):
    broker = Broker()
    store = SQLiteStore(str(tmp_path))
    broker.attach_store(store)
    vhost = broker.vhosts["/"]
    exchange = vhost.declare_exchange("scale.x", "direct", durable=True, auto_delete=False,
                                      internal=False, arguments={})
    return broker, store, vhost, exchange


def test_a_durable_bind_costs_the_same_with_20000_bindings_as_with_100(tmp_path):
    _broker, store, vhost, exchange = durable_setup(tmp_path)
    per_bind = {}
    made = 0
    for existing in (100, 20_000):
        while made < existing:
            queue = vhost.declare_queue(None, f"scale.q{made}", durable=True, arguments={})
            vhost.bind_queue(queue, exchange, f"k{made}", {})
            made += 1
        store.commit_now()
        queue = vhost.declare_queue(None, f"scale.extra{existing}", durable=True, arguments={})
        per_bind[existing] = calls(lambda: vhost.bind_queue(queue, exchange, "extra", {}))
        per_bind[f"unbind {existing}"] = calls(lambda: vhost.unbind_queue(queue, exchange, "extra", {}))
        per_bind[f"delete {existing}"] = calls(lambda: vhost.delete_queue(queue))
    assert per_bind[100] == per_bind[20_000], per_bind
    assert per_bind["unbind 100"] == per_bind["unbind 20000"], per_bind
    assert per_bind["delete 100"] == per_bind["delete 20000"], per_bind
    store.close()


def test_a_restart_restores_bindings_without_writing_them_back(tmp_path):
    _broker, store, vhost, exchange = durable_setup(tmp_path)
    for i in range(2000):
        queue = vhost.declare_queue(None, f"scale.q{i}", durable=True, arguments={})
        vhost.bind_queue(queue, exchange, f"k{i}", {})
    store.close()
    again = Broker()
    reopened = SQLiteStore(str(tmp_path))
    writes = reopened.writes
    counts = again.attach_store(reopened)
    assert counts["queues"] == 2000 and counts["bindings"] == 2000
    # The default vhost and user are written (a fresh broker's); nothing per queue or binding.
    assert reopened.writes - writes <= 3
    restored = again.vhosts["/"].exchanges["scale.x"]
    assert restored.bindings_to(again.vhosts["/"].queues["scale.q1999"]) == [("k1999", {})]
    reopened.close()
