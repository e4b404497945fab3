"""Strict mode without sockets: bytes fed to the protocol layer, violations read back."""

from __future__ import annotations

import logging
import struct

from pamqp import commands as C
from pamqp import frame as pframe

from amqp_broker.broker.broker import Broker
from amqp_broker.protocol.connection import Connection
from amqp_broker.protocol.strict import StrictConnection, connection_class
from strict_client import frame, method, publish, sstr


def _open(strict: str = "report", channel_max: int = 2047) -> StrictConnection:
    conn = StrictConnection(Broker(), "peer", strict=strict)
    conn.receive_data(b"AMQP\x00\x00\x09\x01")
    conn.receive_data(pframe.marshal(C.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response="\0guest\0guest"), 0))
    conn.receive_data(pframe.marshal(C.Connection.TuneOk(
        channel_max=channel_max, frame_max=131072, heartbeat=0), 0))
    conn.receive_data(pframe.marshal(C.Connection.Open(virtual_host="/"), 0))
    conn.receive_data(method(1, 20, 10, sstr(b"")))
    conn.out.clear()
    return conn


def _replies(conn: Connection) -> list:
    data, out = bytes(conn.out), []
    while data:
        used, channel, value = pframe.unmarshal(data)
        data = data[used:]
        out.append((channel, value))
    return out


def test_off_builds_the_plain_connection():
    assert connection_class("off") is Connection
    assert connection_class("report") is StrictConnection is connection_class("close")


def test_a_clean_session_notes_nothing():
    conn = _open()
    conn.receive_data(pframe.marshal(C.Queue.Declare(queue="a.b-c:d_1"), 1)
                      + publish(1, b"a.b-c:d_1", b"\x18\x00" + b"\x02" + b"\x09")
                      + pframe.marshal(C.Basic.Get(queue="a.b-c:d_1", no_ack=True), 1))
    assert conn.violations == {}
    assert [type(v).__name__ for _, v in _replies(conn)] == ["DeclareOk", "GetOk", "ContentHeader", "ContentBody"]


def test_report_counts_every_hit_and_logs_each_rule_once(caplog):
    conn = _open()
    seen = []
    conn.violation_listeners.append(lambda c, rule, detail, channel: seen.append((rule, channel)))
    bad_priority = publish(1, b"nowhere", b"\x08\x00" + bytes((10,)))
    with caplog.at_level(logging.WARNING, logger="amqp_broker.strict"):
        # Split mid-frame too: a frame completed from the next read is checked once.
        data = bad_priority * 3 + method(2, 20, 10, sstr(b"x"))
        conn.receive_data(data[:30])
        conn.receive_data(data[30:])
        conn.connection_lost("gone")
    assert conn.violations == {"priority-range": 3, "reserved-open-field": 1}
    assert seen == [("priority-range", 1)] * 3 + [("reserved-open-field", 2)]
    lines = [r.getMessage() for r in caplog.records]
    assert sum("strict: priority-range on channel 1: priority 10" in line for line in lines) == 1
    assert any("ends after 4 violation(s): priority-range x3, "
               "reserved-open-field x1" in line for line in lines)
    assert conn.broker.counters.strict_violations == {"priority-range": 3, "reserved-open-field": 1}


def test_report_handles_the_frame_as_usual():
    conn = _open()
    conn.receive_data(method(1, 50, 10, struct.pack(">H", 9) + sstr(b"t.q") + b"\x00" + b"\x00" * 4))
    assert conn.violations == {"reserved-ticket": 1}
    assert [type(v).__name__ for _, v in _replies(conn)] == ["DeclareOk"]


def test_close_refuses_the_frame_before_it_acts():
    conn = _open("close")
    conn.receive_data(method(1, 50, 10, b"\x00\x00" + sstr(b"no spaces") + b"\x00" + b"\x00" * 4))
    [(channel, close)] = _replies(conn)
    assert (channel, close.reply_code, close.class_id, close.method_id) == (1, 406, 50, 10)
    assert close.reply_text == ("PRECONDITION_FAILED - strict mode: queue.declare of queue "
                                "'no spaces' (name-syntax)")
    assert conn.broker.vhosts["/"].queues.get("no spaces") is None


def test_method_argument_tables_are_scanned_for_byte_arrays():
    conn = _open()
    table = b"\x05x-raw" + b"x" + struct.pack(">I", 2) + b"ab"
    nested = b"\x01n" + b"F" + struct.pack(">I", len(table)) + table
    args = struct.pack(">I", len(nested)) + nested
    conn.receive_data(method(1, 50, 10, b"\x00\x00" + sstr(b"t.q2") + b"\x00" + args))
    assert conn.violations == {"field-type": 1}


def test_channel_max_is_about_numbers_not_counts():
    conn = _open(channel_max=3)
    conn.receive_data(method(3, 20, 10, sstr(b"")))
    assert conn.violations == {}
    conn.receive_data(method(4, 20, 10, sstr(b"")))
    assert conn.violations == {"channel-max": 1}


def test_frame_max_counts_header_and_frame_end():
    conn = _open()
    body = b"b" * (131072 - 8)
    conn.receive_data(method(1, 60, 40, b"\x00\x00" + sstr(b"") + sstr(b"nowhere") + b"\x00")
                      + frame(2, 1, struct.pack(">HHQ", 60, 0, len(body) + 1) + b"\x00\x00")
                      + frame(3, 1, body) + frame(3, 1, b"c"))
    assert conn.violations == {}
    conn.receive_data(method(1, 60, 40, b"\x00\x00" + sstr(b"") + sstr(b"nowhere") + b"\x00")
                      + frame(2, 1, struct.pack(">HHQ", 60, 0, len(body) + 1) + b"\x00\x00")
                      + frame(3, 1, body + b"c"))
    assert conn.violations == {"frame-max": 1}


def test_malformed_frames_get_the_usual_answer():
    conn = _open("close")
    conn.receive_data(method(1, 50, 10, b"\x00\x07" + sstr(b"q") + b"\x00" + b"\x00\x00\x00\x09"))
    [(channel, close)] = _replies(conn)
    assert (channel, close.reply_code) == (0, 501)  # cannot decode, as RabbitMQ: not a strict rule


def test_connection_open_reserved_fields_close_before_the_vhost_opens():
    conn = StrictConnection(Broker(), "peer", strict="close")
    conn.receive_data(b"AMQP\x00\x00\x09\x01")
    conn.receive_data(pframe.marshal(C.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response="\0guest\0guest"), 0))
    conn.receive_data(pframe.marshal(C.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0), 0))
    conn.out.clear()
    conn.receive_data(method(0, 10, 40, sstr(b"/") + sstr(b"") + b"\x01"))  # insist set
    [(channel, close)] = _replies(conn)
    assert (channel, close.reply_code, close.class_id, close.method_id) == (0, 502, 10, 40)
    assert close.reply_text == "SYNTAX_ERROR - strict mode: connection.open with insist set (reserved-open-field)"
    assert conn.session is None


def test_a_frame_held_by_flow_control_is_judged_once():
    conn = _open()
    conn.set_publish_hold("")
    with_ticket = (method(1, 60, 40, b"\x00\x05" + sstr(b"") + sstr(b"nowhere") + b"\x00")
                   + frame(2, 1, struct.pack(">HHQ", 60, 0, 1) + b"\x00\x00") + frame(3, 1, b"z"))
    conn.receive_data(with_ticket * 2)
    assert conn.held_input
    conn.set_publish_hold(None)
    conn.resume_input()
    assert conn.held_input is None
    assert conn.violations == {"reserved-ticket": 2}


def test_short_string_properties_must_be_utf8_without_zero_octets():
    conn = _open()
    conn.receive_data(publish(1, b"nowhere", b"\x80\x00" + sstr(b"text/\xff"))
                      + publish(1, b"nowhere", b"\x00\x10" + sstr(b"gu\x00est")))
    assert conn.violations == {"shortstr": 2}
    # Arguments are judged by zero octets only: RabbitMQ refuses some that are not UTF-8 itself.
    conn.receive_data(method(1, 60, 20, b"\x00\x00" + sstr(b"q\xff") + sstr(b"") + b"\x00" + b"\x00" * 4))
    assert conn.violations == {"shortstr": 2}
