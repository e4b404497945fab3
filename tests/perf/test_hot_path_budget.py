"""A regression guard for the hot path that times nothing: it counts the Python function calls
the broker makes per message published and delivered, and fails when that grows past a budget.

Each budget is the count measured when it was set plus a small margin; lower it when the path gets
cheaper, and raise it only with a reason in the commit message (README.md, "Design", "Hot path
without task switches", and "Performance": every call on this path is paid hundreds of thousands
of times a second).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from pamqp import body as pbody
from pamqp import commands, frame, header

from amqp_broker.broker.broker import Broker
from amqp_broker.compiled import compiled_modules
from amqp_broker.protocol.connection import Connection

MESSAGES = 500

# Python-level calls per message (sys.setprofile "call" events), measured then rounded up.
BUDGETS = {
    "no-ack, 16 B, empty properties": 9,
    "manual ack (one ack per message), 16 B": 13,
    "no-ack, 16 B, delivery_mode 2 on a transient queue": 10,
    "manual ack, prefetch 100, backlog (acks of a read dispatch together), 16 B": 12,
    "no-ack, 16 B, publisher confirms (one coalesced basic.ack per read)": 10,
    # Permissions as patterns, not the default user's .*: each channel's first publish to an
    # exchange is checked, later ones pay one dict lookup and no call (broker/access.py).
    "no-ack, 16 B, a user with pattern permissions": 9,
}


def _open(broker: Broker) -> Connection:
    conn = Connection(broker, "test")
    conn.receive_data(b"AMQP\x00\x00\x09\x01")
    conn.receive_data(frame.marshal(commands.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response="\0guest\0guest"), 0))
    conn.receive_data(frame.marshal(commands.Connection.TuneOk(
        channel_max=2047, frame_max=131072, heartbeat=0), 0))
    conn.receive_data(frame.marshal(commands.Connection.Open(virtual_host="/"), 0))
    conn.receive_data(frame.marshal(commands.Channel.Open(), 1))
    conn.out.clear()
    return conn


def _publishes(count: int, properties: commands.Basic.Properties | None) -> bytes:
    one = (frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 1)
           + frame.marshal(header.ContentHeader(body_size=16, properties=properties), 1)
           + frame.marshal(pbody.ContentBody(b"x" * 16), 1))
    return one * count


def _count_calls(action) -> int:
    calls = 0

    def profiler(_frame, event, _arg):
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profiler)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


def _measure_backlog(prefetch: int = 100) -> float:
    """Scenario d's steady state: the consumer's prefetch is full, publishes wait in the buffer,
    and each read of acks refills the prefetch from it."""
    broker = Broker()
    publisher, consumer = _open(broker), _open(broker)
    publisher.receive_data(frame.marshal(commands.Queue.Declare(queue="q"), 1))
    consumer.receive_data(frame.marshal(commands.Basic.Qos(prefetch_count=prefetch), 1))
    consumer.receive_data(frame.marshal(commands.Basic.Consume(queue="q", consumer_tag="c"), 1))
    publisher.receive_data(_publishes(prefetch, None))  # fills the prefetch
    publishes = _publishes(prefetch, None)
    reads = []
    for first in range(1, MESSAGES + 1, prefetch):
        reads.append(b"".join(frame.marshal(commands.Basic.Ack(delivery_tag=tag), 1)
                              for tag in range(first, first + prefetch)))
    publisher.out.clear()
    consumer.out.clear()

    def run() -> None:
        for acks in reads:
            publisher.receive_data(publishes)  # waits behind the full prefetch
            consumer.receive_data(acks)  # one read of acks: the prefetch refills

    calls = _count_calls(run)
    assert consumer.out.count(b"\x00\x3c\x00\x3c") == MESSAGES
    queue = broker.vhosts["/"].queues["q"]
    assert len(queue.buffer) == 0 and len(consumer.channels[1].core.unacked) == prefetch
    return calls / MESSAGES


def _measure(manual_ack: bool, properties=None, confirm: bool = False, patterns: bool = False) -> float:
    broker = Broker()
    if patterns:
        broker.set_permissions("guest", "/", (r"^q$", r"^amq\.default$", r"^q$"))
    publisher, consumer = _open(broker), _open(broker)
    publisher.receive_data(frame.marshal(commands.Queue.Declare(queue="q"), 1))
    if confirm:
        publisher.receive_data(frame.marshal(commands.Confirm.Select(), 1))
    consumer.receive_data(frame.marshal(commands.Basic.Consume(
        queue="q", consumer_tag="c", no_ack=not manual_ack), 1))
    publishes = _publishes(MESSAGES, properties)
    acks = b"".join(
        frame.marshal(commands.Basic.Ack(delivery_tag=tag), 1) for tag in range(1, MESSAGES + 1)
    )
    publisher.out.clear()
    consumer.out.clear()

    def run() -> None:
        publisher.receive_data(publishes)
        if manual_ack:
            consumer.receive_data(acks)

    calls = _count_calls(run)
    # Every message really went through: one deliver frame each, nothing left in the queue.
    assert consumer.out.count(b"\x00\x3c\x00\x3c") == MESSAGES
    assert len(broker.vhosts["/"].queues["q"].buffer) == 0
    if manual_ack:
        assert not consumer.channels[1].core.unacked
    if confirm:
        # One read of publishes, one basic.ack(multiple) up to the last of them.
        assert publisher.out.count(b"\x00\x3c\x00\x50") == 1
    return calls / MESSAGES


# Counts the calls of ``name`` in a fresh interpreter that imports amqp_broker from its source
# only (no extension modules from the package's directories), then prints the count.
_INTERPRETED = """
import importlib.machinery as machinery
import importlib.util
import os
import sys

package = os.path.dirname(importlib.util.find_spec("amqp_broker").origin)
source_only = machinery.FileFinder.path_hook(
    (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
    (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES),
)


def hook(path):
    if not os.path.abspath(path).startswith(package):
        raise ImportError  # the next hook: everything else loads as usual
    return source_only(path)


sys.path_hooks.insert(0, hook)
sys.path_importer_cache.clear()
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import test_hot_path_budget as budget
from amqp_broker.compiled import compiled_modules

assert not compiled_modules()
print(budget._per_message(sys.argv[2]))
"""


def _per_message(name: str) -> float:
    if "backlog" in name:
        return _measure_backlog()
    elif name.startswith("manual"):
        return _measure(manual_ack=True)
    elif "confirms" in name:
        return _measure(False, confirm=True)
    elif "pattern permissions" in name:
        return _measure(manual_ack=False, patterns=True)
    elif "delivery_mode" in name:
        return _measure(False, commands.Basic.Properties(delivery_mode=2))
    else:
        return _measure(manual_ack=False)


@pytest.mark.parametrize("name", list(BUDGETS))
def test_calls_per_message_stay_within_budget(name):
    if compiled_modules():
        # Compiled functions make no profiler events, so a compiled build would count (almost)
        # nothing: the budget is the interpreted source's, measured where that source runs.
        result = subprocess.run([sys.executable, "-c", _INTERPRETED, __file__, name],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        per_message = float(result.stdout.split()[-1])
    else:
        per_message = _per_message(name)
    print(f"{name}: {per_message:.1f} Python calls per message (budget {BUDGETS[name]})")
    assert per_message <= BUDGETS[name], (
        f"{name}: {per_message:.1f} calls per message, budget {BUDGETS[name]}: the hot path grew"
    )
