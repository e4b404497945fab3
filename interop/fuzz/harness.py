"""Feed fuzzed inputs to the sans-IO connection and check what must hold for every input:

- no exception escapes the protocol layer (the server would turn one into a 541 and a lost
  connection: a bug);
- everything written back parses as AMQP frames, and every channel.close and connection.close
  carries a reply code of the spec;
- an input costs a bounded number of log lines (a 7 KB input once logged ~3,000);
- other connections and stored messages are untouched: a sentinel queue keeps its message, and a
  second connection still works afterwards.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field

from pamqp import commands as C
from pamqp import frame as pframe
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from amqp_broker.broker.broker import Broker
from amqp_broker.protocol.connection import Connection

from .generator import PROTOCOL_HEADER

# Reply codes of the AMQP 0-9-1 spec (section 1.2, "constants").
SPEC_CODES = frozenset({200, 311, 312, 313, 320, 402, 403, 404, 405, 406,
                        501, 502, 503, 504, 505, 506, 530, 540, 541})
# What one input may log before that is a finding (each failed frame logs one or two lines).
LOG_LINES_PER_INPUT = 50
SENTINEL = "fuzz.sentinel"


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@dataclass
class Findings:
    """What a run found: counts, and one example (with its seed) per kind of failure."""

    inputs: int = 0
    closed_by_connection_close: int = 0
    channel_closes: int = 0
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)

    def fail(self, kind: str, seed: int, detail: str) -> None:
        self.failures.setdefault(kind, (seed, detail))


class Harness:
    """A broker shared by every input, as in a real server, with a sentinel message in it."""

    def __init__(self) -> None:
        self.broker = Broker()
        self.counter = _Counter()
        logger = self._logger = logging.getLogger("amqp_broker")
        self._saved = (logger.level, logger.propagate)
        logger.addHandler(self.counter)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False  # the run prints its own summary, not thousands of lines
        self.vhost = self.broker.vhosts["/"]
        self._put_sentinel()

    def close(self) -> None:
        """Give the broker's logger back as it was (a test session goes on after a run)."""
        self._logger.removeHandler(self.counter)
        self._logger.setLevel(self._saved[0])
        self._logger.propagate = self._saved[1]

    def _put_sentinel(self) -> None:
        conn = self.connect()
        conn.receive_data(pframe.marshal(C.Queue.Declare(queue=SENTINEL, durable=True), 1)
                          + pframe.marshal(C.Queue.Purge(queue=SENTINEL), 1)
                          + pframe.marshal(C.Basic.Publish(exchange="", routing_key=SENTINEL), 1)
                          + _content(b"kept"))
        conn.connection_lost()
        assert self.vhost.queues[SENTINEL].message_count == 1

    def connect(self) -> Connection:
        conn = Connection(self.broker, "fuzz")
        conn.receive_data(PROTOCOL_HEADER + pframe.marshal(C.Connection.StartOk(
            client_properties={}, mechanism="PLAIN", response="\0guest\0guest", locale="en_US"), 0))
        conn.receive_data(pframe.marshal(C.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0), 0)
                          + pframe.marshal(C.Connection.Open(virtual_host="/"), 0)
                          + pframe.marshal(C.Channel.Open(), 1))
        conn.output.take()
        return conn

    def run(self, seed: int, reads: list[bytes], findings: Findings) -> None:
        """Feed one input (its reads) to a fresh connection and record what it broke."""
        findings.inputs += 1
        self.counter.count = 0
        conn = Connection(self.broker, f"fuzz-{seed}", max_message_size=1 << 20)
        output = bytearray()
        try:
            for data in reads:
                conn.receive_data(data)
                output += b"".join(conn.output.take())
                while conn.held_input is not None:  # held while its output was full
                    conn.resume_input()
                    output += b"".join(conn.output.take())
                if conn.finished:
                    break
        except Exception as exc:
            findings.fail(f"unhandled {type(exc).__name__}", seed, traceback.format_exc())
        finally:
            try:
                conn.connection_lost()
            except Exception:
                findings.fail("connection_lost raised", seed, traceback.format_exc())
        self._check_output(seed, bytes(output), findings)
        if self.counter.count > LOG_LINES_PER_INPUT:
            findings.fail("too many log lines", seed, f"{self.counter.count} log records")
        if self.vhost.queues.get(SENTINEL) is None or self.vhost.queues[SENTINEL].message_count != 1:
            findings.fail("sentinel message lost", seed, "another connection's message is gone")
            self._put_sentinel()

    def _check_output(self, seed: int, data: bytes, findings: Findings) -> None:
        if data.startswith(PROTOCOL_HEADER):
            data = data[len(PROTOCOL_HEADER):]  # the answer to a bad protocol header
        pos = 0
        while pos < len(data):
            try:
                used, channel, value = pframe.unmarshal(data[pos:])
            except Exception as exc:
                if data[pos] == 2 and any(isinstance(arg, UnicodeDecodeError) for arg in exc.args):
                    # A content header forwarded as published, with a shortstr that is not UTF-8:
                    # RabbitMQ takes and forwards any octets there too; pamqp will not decode it.
                    pos += 8 + int.from_bytes(data[pos + 3:pos + 7], "big")
                    continue
                findings.fail("invalid output frame", seed, f"at {pos}: {exc!r} {data[pos:pos + 40]!r}")
                return
            pos += used
            if isinstance(value, C.Connection.Close):
                findings.closed_by_connection_close += 1
                if value.reply_code not in SPEC_CODES:
                    findings.fail(f"connection.close {value.reply_code}", seed, value.reply_text)
            elif isinstance(value, C.Channel.Close):
                findings.channel_closes += 1
                if value.reply_code not in SPEC_CODES:
                    findings.fail(f"channel.close {value.reply_code}", seed, value.reply_text)
            if (isinstance(value, (C.Connection.Close, C.Channel.Close)) and value.reply_code == 541
                    and value.reply_text != "INTERNAL_ERROR"):
                # Bare "INTERNAL_ERROR" is RabbitMQ's answer to malformed content properties;
                # anything else with 541 is the server catching a bug of ours.
                findings.fail("541 internal error", seed, value.reply_text)

    def check_still_serving(self, findings: Findings) -> None:
        """A new connection can still declare, publish and get: the broker is whole."""
        conn = self.connect()
        conn.receive_data(pframe.marshal(C.Queue.Declare(queue="fuzz.check"), 1)
                          + pframe.marshal(C.Basic.Publish(exchange="", routing_key="fuzz.check"), 1)
                          + _content(b"ok")
                          + pframe.marshal(C.Basic.Get(queue="fuzz.check", no_ack=True), 1))
        replies = b"".join(conn.output.take())
        conn.connection_lost()
        if b"ok" not in replies:
            findings.fail("broker stopped serving", -1, repr(replies[:200]))


def _content(body: bytes) -> bytes:
    return (pframe.marshal(ContentHeader(0, len(body), C.Basic.Properties()), 1)
            + pframe.marshal(ContentBody(body), 1))


