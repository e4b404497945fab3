"""Fuzzing in the suite: structure-aware inputs (every 0-9-1 method with random field values,
content in and out of order, byte mutations) against the sans-IO connection, and a sample of
them against the real server over real sockets.

Properties (interop/fuzz/harness.py): no unhandled exception, every reply parses and every close
carries a spec code, a bounded number of log lines per input, other connections and their stored
messages untouched. ``python -m interop.fuzz --inputs N`` runs any number of the generated inputs.
"""

from __future__ import annotations

import socket
import time

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands as C
from pamqp import frame as pframe

from amqp_broker.testing import BrokerThread
from interop.fuzz.generator import ALL_METHODS, fuzz_input, handshake
from interop.fuzz.harness import Findings, Harness

GENERATED_INPUTS = 100_000
# pamqp warns on deprecated methods (basic.recover-async, ...); the fuzzer sends them on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def harness():
    running = Harness()
    yield running
    running.close()


def assert_clean(findings: Findings) -> None:
    assert not findings.failures, "\n".join(
        f"{kind} (python -m interop.fuzz --replay {seed}):\n{detail[-2000:]}"
        for kind, (seed, detail) in findings.failures.items())


@pytest.mark.timeout(900)
def test_generated_inputs_break_nothing(harness):
    findings = Findings()
    for seed in range(GENERATED_INPUTS):
        harness.run(seed, fuzz_input(seed), findings)
    harness.check_still_serving(findings)
    assert_clean(findings)
    assert findings.inputs == GENERATED_INPUTS
    # The inputs reach the broker's answers, not only the framing checks.
    assert findings.channel_closes > GENERATED_INPUTS // 20


_VALUES = {
    "bit": st.booleans(),
    "octet": st.integers(0, 255),
    "short": st.integers(0, 65535),
    "long": st.integers(0, 2**32 - 1),
    "longlong": st.integers(0, 2**64 - 1),
    "timestamp": st.integers(0, 2**63 - 1),
    "shortstr": st.text(max_size=20),
    "longstr": st.text(max_size=40),
    "table": st.dictionaries(st.text(min_size=1, max_size=8), st.recursive(
        st.none() | st.booleans() | st.integers(-2**31, 2**31 - 1) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3),
        max_leaves=8), max_size=4),
}


@st.composite
def method_frame(draw):
    cls = draw(st.sampled_from(ALL_METHODS))
    fields = {name: draw(_VALUES.get(cls.amqp_type(name), st.none())) for name in cls.__slots__}
    channel = draw(st.sampled_from((0, 1, 1, 1, 2)))
    try:
        return pframe.marshal(cls(**fields), channel)
    except Exception:  # a value pamqp refuses to encode: send the method without arguments
        return pframe.marshal(cls(), channel) if not cls.__slots__ else b""


@st.composite
def mutated(draw, frames):
    data = bytearray(b"".join(frames))
    for _ in range(draw(st.integers(0, 2))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(("flip", "cut", "insert")))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(body=st.lists(method_frame(), min_size=1, max_size=12).flatmap(mutated),
       cut=st.integers(1, 64))
def test_hypothesis_sessions_break_nothing(harness, body, cut):
    import random

    prefix = b"".join(handshake(random.Random(0))) + pframe.marshal(C.Channel.Open(), 1)
    data = prefix + body
    reads = [data[i:i + cut * 97] for i in range(0, len(data), cut * 97)]
    findings = Findings()
    harness.run(-1, reads, findings)
    assert_clean(findings)


def test_a_sample_against_the_real_server():
    """300 generated inputs, each on its own TCP connection to a real broker: the broker survives,
    answers each one, and a stored message and a pika client are untouched."""
    with BrokerThread() as broker:
        keeper = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
        ch = keeper.channel()
        ch.queue_declare("fuzz.kept", durable=True)
        ch.confirm_delivery()
        ch.basic_publish("", "fuzz.kept", b"kept", pika.BasicProperties(delivery_mode=2))
        for seed in range(300):
            with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
                # The whole input, then our FIN; the broker answers, reads the rest and closes
                # its side once it has seen ours (a reset here would be a finding too).
                sock.sendall(b"".join(fuzz_input(seed)))
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
        assert ch.queue_declare("fuzz.kept", passive=True).method.message_count == 1
        method, _props, body = ch.basic_get("fuzz.kept", auto_ack=False)
        assert body == b"kept"
        ch.basic_nack(method.delivery_tag)
        keeper.close()
        deadline = time.monotonic() + 10
        while broker.call(lambda: len(broker.server.connections)):
            assert time.monotonic() < deadline, "connections left open"
            time.sleep(0.02)
