"""Cutting a byte stream into frames and describing them (protocol/trace.py), and a trace switched
on while a frame is half-read (the trace starts at the next frame boundary, whole)."""

from __future__ import annotations

import datetime
import socket
import time

from pamqp import body as pbody
from pamqp import commands, frame, header, heartbeat

from amqp_broker.protocol.trace import FrameSplitter, describe_frame, hide_login
from amqp_broker.testing import BrokerThread
from trace_helpers import raw, records, summary

FRAMES = [
    b"AMQP\x00\x00\x09\x01",
    frame.marshal(commands.Queue.Declare(queue="q", durable=True, arguments={"x-max-length": 5}), 1),
    frame.marshal(commands.Basic.Publish(exchange="ex", routing_key="rk", mandatory=True), 2),
    frame.marshal(header.ContentHeader(body_size=3, properties=commands.Basic.Properties(
        message_type="t", timestamp=datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc),
        app_id="app", headers={"n": 1.5, "nested": {"list": [1, "two"]}})), 2),
    frame.marshal(pbody.ContentBody(b"\x00\\\xff"), 2),
    frame.marshal(heartbeat.Heartbeat(), 0),
]
STREAM = b"".join(FRAMES)


def test_frames_come_out_whole_however_the_stream_is_cut():
    for cut in range(1, len(STREAM)):
        splitter = FrameSplitter()
        assert splitter.feed(STREAM[:cut]) + splitter.feed(STREAM[cut:]) == FRAMES, cut
    splitter = FrameSplitter()
    assert [f for byte in STREAM for f in splitter.feed(bytes([byte]))] == FRAMES


def test_resync_drops_whole_frames_and_keeps_the_partial_one():
    splitter = FrameSplitter()
    unhandled = FRAMES[1] + FRAMES[2][:9]
    splitter.resync(unhandled)
    assert splitter.feed(FRAMES[2][9:] + FRAMES[3]) == [FRAMES[2], FRAMES[3]]


def test_frames_are_described_with_the_specs_names():
    described = [describe_frame(f) for f in FRAMES]
    assert described[0] == {"type": "protocol-header", "channel": 0, "version": "0-9-1"}
    assert described[1] == {
        "type": "method", "channel": 1, "size": len(FRAMES[1]) - 8, "method": "queue.declare", "class_id": 50,
        "method_id": 10, "fields": {"queue": "q", "passive": False, "durable": True, "exclusive": False,
                                    "auto_delete": False, "nowait": False, "arguments": {"x-max-length": 5}}}
    assert described[2]["method"] == "basic.publish" and described[2]["fields"]["mandatory"] is True
    assert described[3]["properties"] == {
        "headers": {"n": 1.5, "nested": {"list": [1, "two"]}}, "timestamp": "2026-01-02T00:00:00+00:00",
        "type": "t", "app_id": "app"}
    assert described[3]["body_size"] == 3
    assert described[4] == {"type": "body", "channel": 2, "size": 3, "head": "\\x00\\x5c\\xff"}
    assert described[5] == {"type": "heartbeat", "channel": 0, "size": 0}
    ok = frame.marshal(commands.Queue.DeclareOk(queue="q", message_count=0, consumer_count=0), 1)
    assert describe_frame(ok)["method"] == "queue.declare-ok"


def test_an_undecodable_frame_says_why():
    bad = b"\x01\x00\x01\x00\x00\x00\x06\x00\x32\x00\x0a\xff\xff\xce"  # queue.declare cut short
    info = describe_frame(bad)
    assert info["method"] == "queue.declare" and "fields" not in info and info["error"]
    info = describe_frame(b"\x01\x00\x00\x00\x00\x00\x04\x12\x34\x56\x78\xce")
    assert info["method"] == "unknown(4660,22136)" and "error" in info


def test_hide_login_stars_the_password_and_keeps_the_size():
    for mechanism, response in (("PLAIN", "\0alice\0s3cret"), ("AMQPLAIN", "\x05LOGINS\x00\x00\x00\x05alice"
                                                                          "\x08PASSWORDS\x00\x00\x00\x06s3cret")):
        raw_frame = frame.marshal(commands.Connection.StartOk(
            client_properties={}, mechanism=mechanism, response=response), 0)
        info = describe_frame(raw_frame)
        assert info["fields"]["response"] == "<hidden>"
        hidden = hide_login(raw_frame, info)
        assert len(hidden) == len(raw_frame) and b"s3cret" not in hidden and b"alice" in hidden


def test_trace_switched_on_inside_a_frame_starts_at_that_frame(tmp_path):
    """A read that ended inside a frame before the trace began: the trace holds that frame whole
    (with the bytes read before), then what follows."""
    path = tmp_path / "mid.jsonl"
    with BrokerThread() as broker:
        sock = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
        name = BrokerThread.connection_name(sock)
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        sock.recv(4096)  # connection.start
        sock.sendall(frame.marshal(commands.Connection.StartOk(
            client_properties={}, mechanism="PLAIN", response="\0guest\0guest", locale="en_US"), 0))
        sock.recv(4096)  # connection.tune
        sock.sendall(frame.marshal(commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0), 0)
                     + frame.marshal(commands.Connection.Open(virtual_host="/"), 0))
        sock.recv(4096)  # connection.open-ok
        channel_open = frame.marshal(commands.Channel.Open(), 1)
        sock.sendall(channel_open[:5])
        server_conn = next(c for c in broker.server.connections if c.name == name)
        deadline = time.monotonic() + 10  # the broker's read of those 5 bytes: polled
        while broker.call(server_conn.protocol.unhandled_input) != channel_open[:5]:
            assert time.monotonic() < deadline, "the broker did not read the partial frame"
            time.sleep(0.01)
        broker.trace(name, str(path))
        sock.sendall(channel_open[5:])
        assert sock.recv(4096)[:11] == b"\x01\x00\x01\x00\x00\x00\x08\x00\x14\x00\x0b"  # channel.open-ok
        broker.trace_off(name)
        sock.close()
        recs = records(path)
    assert [summary(r) for r in recs] == ["event:trace_on", "in:channel.open", "out:channel.open-ok", "event:trace_off"]
    assert raw(recs[1]) == channel_open
