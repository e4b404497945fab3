"""``amqp-broker trace show`` and ``trace pcap`` on traces of real conversations; the pcap is
read back by Wireshark's AMQP dissector (Debian's tshark), which must see the traced frames."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys

import pika
import pytest

from amqp_broker.testing import BrokerThread
from amqp_broker.tracetools import cli
from trace_helpers import closed, pika_name, wait_for

BIG = 100_000  # a body frame larger than a TCP segment of the pcap: tshark must reassemble it


def _trace(tmp_path, *, mid_stream: bool = False):
    """A traced conversation: two connections, a small and a large message, a consumer."""
    path = tmp_path / "conv.jsonl"
    with BrokerThread(**({} if mid_stream else {"trace_file": str(path)})) as broker:
        params = pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0)
        publisher, consumer = pika.BlockingConnection(params), pika.BlockingConnection(params)
        names = [pika_name(publisher), pika_name(consumer)]
        pub, con = publisher.channel(), consumer.channel()
        if mid_stream:
            for name in names:
                broker.trace(name, str(path))
        pub.queue_declare("tools.q")
        pub.basic_publish("", "tools.q", b"small one", pika.BasicProperties(content_type="text/plain"))
        pub.basic_publish("", "tools.q", b"B" * BIG, pika.BasicProperties(delivery_mode=2))
        got = []
        for method, _props, body in con.consume("tools.q", inactivity_timeout=10):
            con.basic_ack(method.delivery_tag)
            got.append(len(body))
            if len(got) == 2:
                break
        con.cancel()
        pub.queue_delete("tools.q")
        publisher.close()
        consumer.close()
        recs = wait_for(path, lambda r: all(closed(n)(r) for n in names))
    assert got == [9, BIG]
    return path, recs, names, broker.port


def _show(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["show", *args], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_show_prints_the_conversation_with_arrows_and_key_fields(tmp_path):
    path, recs, (publisher, consumer), port = _trace(tmp_path)
    code, out, err = _show(str(path))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"c1 = {publisher}" and f"c2 = {consumer}" in lines
    frames = [line for line in lines if line.startswith("  ")]
    assert len(frames) == len(recs)
    line = re.compile(r"  \+\d+\.\d{6} (c[12]) +(ch\d+)? +(client --> broker|client <-- broker|event +) +(.*)")
    assert all(line.fullmatch(f) for f in frames), [f for f in frames if not line.fullmatch(f)]
    assert frames[0].split()[0] == "+0.000000"
    text = "\n".join(frames)
    assert "c1  ch0  client --> broker  protocol-header 0-9-1" in text
    assert "c1  ch0  client <-- broker  connection.start version_major=0 version_minor=9 product='amqp_broker'" in text
    assert "c1  ch1  client --> broker  basic.publish exchange='' routing_key='tools.q'" in text
    assert "c1  ch1  client --> broker    content header body_size=9 content_type='text/plain'" in text
    assert "c1  ch1  client --> broker    content body 9 B 'small one'" in text
    assert f"c1  ch1  client --> broker    content body {BIG} B '{'B' * 32}'..." in text
    assert re.search(r"c2  ch1  client <-- broker  basic.deliver consumer_tag='[^']+' delivery_tag=1 "
                     r"exchange='' routing_key='tools.q'", text)
    assert "c2  ch1  client --> broker  basic.ack delivery_tag=2" in text
    assert re.search(r"c1       event +accept peer='127.0.0.1:\d+' local='127.0.0.1:%d'" % port, text)
    assert "c2       event              close reason='closed by client'" in text

    # Filters: one connection (by label or part of its name), one channel, no events.
    code, out, _ = _show(str(path), "--connection", "c2", "--channel", "1", "--no-events")
    shown = [f for f in out.splitlines() if f.startswith("  ")]
    assert out.splitlines()[0] == f"c2 = {consumer}" and shown
    assert all(" c2  ch1 " in f for f in shown)
    assert len(shown) == sum(1 for r in recs if r["conn"] == consumer and r.get("channel") == 1)
    port_part = consumer.split(" -> ")[0].split(":")[1]
    assert _show(str(path), "-c", f":{port_part} ")[1] == _show(str(path), "-c", "c2")[1]


def test_show_reports_an_unreadable_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ts": 1, "conn": "a -> b", "event": "accept"}\nnot json\n{"ts": 2, "conn": "x"}\n')
    code, _out, err = _show(str(bad))
    assert code == 1 and err == f"amqp-broker trace show: {bad} line 2: not a JSON trace record\n"
    code, _out, err = _show(str(tmp_path / "missing.jsonl"))
    assert code == 1 and "cannot read" in err


def _tshark() -> str:
    tshark = shutil.which("tshark")
    if tshark is None:
        reason = "tshark is not installed (apt-get install tshark)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; .ci/run installs it")
        pytest.skip(reason)
    return tshark


def _frames_seen_by_tshark(pcap, port: int) -> list[tuple]:
    """(frame type, class, method or body size) of every AMQP frame tshark decodes, in order."""
    result = subprocess.run(
        [_tshark(), "-r", str(pcap), "-d", f"tcp.port=={port},amqp", "-Y", "amqp", "-T", "fields",
         "-e", "amqp.type", "-e", "amqp.method.class", "-e", "amqp.method.method", "-e", "amqp.header.body-size",
         "-E", "occurrence=a", "-E", "aggregator=,"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = []
    for line in result.stdout.splitlines():
        types, classes, methods, sizes = (line.split("\t") + ["", "", "", ""])[:4]
        classes, methods, sizes = (iter(x.split(",") if x else []) for x in (classes, methods, sizes))
        for kind in types.split(","):
            if kind == "1":
                seen.append(("method", int(next(classes)), int(next(methods))))
            elif kind == "2":
                seen.append(("header", int(next(sizes))))
            elif kind:
                seen.append(({"3": "body", "8": "heartbeat"}[kind],))
    return seen


def _frames_in_trace(recs: list[dict]) -> list[tuple]:
    frames = []
    for r in recs:
        if r.get("type") == "method":
            frames.append(("method", r["class_id"], r["method_id"]))
        elif r.get("type") == "header":
            frames.append(("header", r["body_size"]))
        elif r.get("type") in ("body", "heartbeat"):
            frames.append((r["type"],))
    return frames


@pytest.mark.parametrize("mid_stream", [False, True], ids=["from-accept", "switched-on-mid-stream"])
def test_pcap_is_decoded_by_wiresharks_amqp_dissector(tmp_path, mid_stream):
    _tshark()
    path, recs, names, port = _trace(tmp_path, mid_stream=mid_stream)
    pcap = tmp_path / "conv.pcap"
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["pcap", str(path), "-o", str(pcap)], out=out, err=err) == 0
    assert re.fullmatch(rf"amqp-broker trace pcap: wrote \d+ packets \({sum(1 for r in recs if 'raw' in r)} frames, "
                        rf"2 connections, broker port {port}\) to {re.escape(str(pcap))}\n", err.getvalue())
    seen = _frames_seen_by_tshark(pcap, port)
    # tshark's order is the packets' (both connections interleaved as traced), ours the file's.
    assert seen == _frames_in_trace(recs)
    assert ("method", 60, 40) in seen and ("header", BIG) in seen  # basic.publish; the large body
    # One connection only.
    one = tmp_path / "one.pcap"
    assert cli.main(["pcap", str(path), "-o", str(one), "-c", names[1]], out=out, err=err) == 0
    assert _frames_seen_by_tshark(one, port) == _frames_in_trace([r for r in recs if r["conn"] == names[1]])


def test_pcap_tcp_streams_are_whole(tmp_path):
    """tshark finds each connection as one TCP stream, with no missing or out-of-order segment."""
    tshark = _tshark()
    path, recs, names, port = _trace(tmp_path)
    pcap = tmp_path / "conv.pcap"
    assert cli.main(["pcap", str(path), "-o", str(pcap)], out=io.StringIO(), err=io.StringIO()) == 0
    result = subprocess.run(
        [tshark, "-r", str(pcap), "-Y", "tcp.analysis.flags || tcp.checksum.status == 0", "-o",
         "tcp.check_checksum:TRUE", "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr
    streams = subprocess.run([tshark, "-r", str(pcap), "-T", "fields", "-e", "tcp.stream"],
                             capture_output=True, text=True, timeout=120).stdout.split()
    assert sorted(set(streams)) == ["0", "1"]


def test_trace_command_runs_as_a_process(tmp_path):
    path, _recs, _names, _port = _trace(tmp_path)
    result = subprocess.run([sys.executable, "-m", "amqp_broker", "trace", "show", str(path), "--channel", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "connection.open virtual_host='/'" in result.stdout
    result = subprocess.run([sys.executable, "-m", "amqp_broker", "trace", "pcap", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "-o/--output" in result.stderr
