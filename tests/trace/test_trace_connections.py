"""Frame traces of real clients' conversations (pika, aio-pika) with an in-process broker: all
connections (--trace / trace_file, trace_all), or one connection switched on and off while it
runs, from Python, the control CLI and the management HTTP API."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import urllib.error
import urllib.request
import uuid

import aio_pika
import pika
import pytest

from amqp_broker.ctl import cli
from amqp_broker.testing import BrokerThread
from trace_helpers import closed, conversation, pika_name, raw, records, wait_for


def _publish_get(conn: pika.BlockingConnection, queue: str, body: bytes, **properties) -> None:
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.basic_publish("", queue, body, pika.BasicProperties(**properties))
    method, _props, got = ch.basic_get(queue, auto_ack=True)
    assert got == body
    ch.queue_delete(queue)
    ch.close()


def test_trace_file_traces_a_pika_conversation_frame_by_frame(tmp_path):
    path = tmp_path / "all.jsonl"
    with BrokerThread(trace_file=str(path)) as broker:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
        name = pika_name(conn)
        _publish_get(conn, "traced", b"hello world, this body is longer than thirty-two bytes",
                     content_type="text/plain", delivery_mode=2, headers={"x-n": 1, "who": "me"},
                     correlation_id="c-1")
        conn.close()
        recs = wait_for(path, closed(name))
    assert conversation(recs, name) == [
        "event:accept", "in:protocol-header", "out:connection.start", "in:connection.start-ok",
        "out:connection.tune", "in:connection.tune-ok", "in:connection.open", "out:connection.open-ok",
        "in:channel.open", "out:channel.open-ok", "in:queue.declare", "out:queue.declare-ok",
        "in:basic.publish", "in:header", "in:body", "in:basic.get", "out:basic.get-ok", "out:header",
        "out:body", "in:queue.delete", "out:queue.delete-ok", "in:channel.close", "out:channel.close-ok",
        "in:connection.close", "out:connection.close-ok", "event:close", "event:socket_closed",
    ]
    by = {(r.get("dir"), r.get("method") or r.get("type") or r.get("event")): r for r in recs}
    accept = by[(None, "accept")]
    assert accept["peer"] == name.split(" -> ")[0] and accept["local"] == f"127.0.0.1:{broker.port}"
    publish = by[("in", "basic.publish")]
    assert publish["channel"] == 1 and (publish["class_id"], publish["method_id"]) == (60, 40)
    assert publish["fields"] == {"exchange": "", "routing_key": "traced", "mandatory": False, "immediate": False}
    for direction in ("in", "out"):
        header = by[(direction, "header")]
        assert header["body_size"] == 54 and header["class_id"] == 60
        # Only the properties the client set, under the spec's names.
        assert header["properties"] == {"content_type": "text/plain", "headers": {"x-n": 1, "who": "me"},
                                        "delivery_mode": 2, "correlation_id": "c-1"}
        body = by[(direction, "body")]
        assert body["size"] == 54 and body["head"] == "hello world, this body is longer"
    get_ok = by[("out", "basic.get-ok")]
    assert get_ok["fields"]["delivery_tag"] == 1 and get_ok["fields"]["routing_key"] == "traced"
    start = by[("out", "connection.start")]
    assert start["fields"]["server_properties"]["product"] == "amqp_broker"
    assert by[(None, "close")]["reason"] == "closed by client"
    # The raw frames are the bytes on the wire: type, channel, size, payload, frame-end.
    for record in recs:
        if "raw" in record and record["type"] != "protocol-header":
            frame = raw(record)
            assert frame[0] == {"method": 1, "header": 2, "body": 3, "heartbeat": 8}[record["type"]]
            assert int.from_bytes(frame[1:3], "big") == record["channel"]
            assert len(frame) == 8 + record["size"] and frame[-1] == 0xCE
    assert raw(by[("in", "protocol-header")]) == b"AMQP\x00\x00\x09\x01"
    assert b"hello world" in raw(by[("in", "body")])
    # The login is not kept: the decoded response is hidden, the raw frame's password starred.
    start_ok = by[("in", "connection.start-ok")]
    assert start_ok["fields"]["response"] == "<hidden>"
    assert b"\x00guest\x00*****" in raw(start_ok) and b"\x00guest\x00guest" not in raw(start_ok)


def test_trace_all_at_run_time_traces_aio_pika_and_new_connections(tmp_path):
    path = tmp_path / "aio.jsonl"

    async def talk(broker: BrokerThread, label: str) -> str:
        conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{broker.port}/",
                                      client_properties={"connection_name": label})
        rows = broker.call(broker.server.admin.connections)
        name = next(r["name"] for r in rows if r["client_properties"].get("connection_name") == label)
        async with conn:
            channel = await conn.channel(publisher_confirms=True)
            queue = await channel.declare_queue(exclusive=True)
            await channel.default_exchange.publish(
                aio_pika.Message(b"\x00\x01binary", message_id="m-1", priority=3), routing_key=queue.name)
            message = await queue.get(timeout=5)
            await message.ack()
        return name

    with BrokerThread() as broker:
        untraced = asyncio.run(talk(broker, "aio-before"))
        deadline = time.monotonic() + 10  # the broker's side of its close: polled
        while broker.call(lambda: len(broker.server.connections)):
            assert time.monotonic() < deadline, "the first connection did not go away"
            time.sleep(0.01)
        broker.trace_all(str(path))
        name = asyncio.run(talk(broker, "aio-traced"))
        wait_for(path, closed(name))
        broker.trace_all(None)
        recs = records(path)
    assert all(r["conn"] == name for r in recs), "a connection closed before trace_all is not traced"
    assert untraced != name
    talk_lines = conversation(recs)
    assert talk_lines[:3] == ["event:accept", "in:protocol-header", "out:connection.start"]
    assert "in:confirm.select" in talk_lines and "out:basic.ack" in talk_lines
    assert talk_lines.index("in:basic.publish") < talk_lines.index("out:basic.ack")
    assert "in:basic.ack" in talk_lines  # the consumer's ack of the message it got
    header = next(r for r in recs if r.get("type") == "header" and r["dir"] == "in")
    assert header["properties"]["message_id"] == "m-1" and header["properties"]["priority"] == 3
    body = next(r for r in recs if r.get("type") == "body" and r["dir"] == "out")
    assert body["size"] == 8 and body["head"] == "\\x00\\x01binary"


def test_one_connection_traced_on_and_off_from_python(tmp_path):
    path = tmp_path / "one.jsonl"
    params = lambda port: pika.ConnectionParameters("127.0.0.1", port, heartbeat=0)  # noqa: E731
    with BrokerThread() as broker:
        traced = pika.BlockingConnection(params(broker.port))
        other = pika.BlockingConnection(params(broker.port))
        name = pika_name(traced)
        ch = traced.channel()
        ch.queue_declare("before")  # not traced yet
        broker.trace(name, str(path))
        ch.queue_declare("during")
        other.channel().queue_declare("other")  # another connection: not traced
        broker.trace_off(name)
        ch.queue_declare("after")
        for queue in ("before", "during", "after", "other"):
            ch.queue_delete(queue)
        other.close()
        traced.close()
        recs = records(path)
    assert {r["conn"] for r in recs} == {name}
    assert conversation(recs) == ["event:trace_on", "in:queue.declare", "out:queue.declare-ok", "event:trace_off"]
    assert [r["fields"]["queue"] for r in recs if r.get("method") == "queue.declare"] == ["during"]


def test_trace_on_for_an_unknown_connection_is_refused():
    with BrokerThread() as broker:
        with pytest.raises(Exception, match="no connection named"):
            broker.trace("127.0.0.1:1 -> 127.0.0.1:2", "/tmp/never-written.jsonl")


def _ctl(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), environ={}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_ctl_trace_on_and_off(tmp_path):
    node = f"trace-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "ctl.jsonl"
    with BrokerThread(node_name=node) as broker:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
        name = pika_name(conn)
        code, out, err = _ctl("-n", node, "trace_on", name, str(path))
        assert (code, err) == (0, ""), err
        assert out == f"Tracing connection {name} into {path}...\n"
        ch = conn.channel()
        ch.queue_declare("ctl.traced")
        ch.queue_delete("ctl.traced")
        assert _ctl("-n", node, "trace_off", name)[0] == 0
        ch.queue_declare("ctl.untraced")
        ch.queue_delete("ctl.untraced")
        code, _out, err = _ctl("-n", node, "trace_on", "127.0.0.1:1 -> 127.0.0.1:2", str(path))
        assert code == 65 and "no connection named" in err
        code, _out, err = _ctl("-n", node, "trace_on", name, str(tmp_path / "missing-dir" / "t.jsonl"))
        assert code == 65 and "cannot open trace file" in err
        conn.close()
        recs = records(path)
    assert conversation(recs) == [
        "event:trace_on", "in:channel.open", "out:channel.open-ok", "in:queue.declare", "out:queue.declare-ok",
        "in:queue.delete", "out:queue.delete-ok", "event:trace_off",
    ]


def _http(port: int, method: str, path: str, body: dict | None = None, user: str = "guest") -> tuple[int, dict | None]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("authorization", "Basic " + base64.b64encode(f"{user}:{user}".encode()).decode())
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_http_trace_on_and_off(tmp_path):
    path = tmp_path / "http.jsonl"
    with BrokerThread(management=True) as broker:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
        name = pika_name(conn)
        url = "/api/amqp-broker/connections/" + urllib.request.quote(name, safe="") + "/trace"
        ch = conn.channel()
        assert _http(broker.management_port, "GET", url) == (200, {"connection": name, "file": None})
        assert _http(broker.management_port, "PUT", url, {"file": "relative.jsonl"})[0] == 400
        status, answer = _http(broker.management_port, "PUT", url, {"file": str(path)})
        assert (status, answer) == (200, {"connection": name, "file": str(path)})
        assert _http(broker.management_port, "GET", url) == (200, {"connection": name, "file": str(path)})
        ch.exchange_declare("http.traced", "fanout")
        ch.exchange_delete("http.traced")
        assert _http(broker.management_port, "DELETE", url) == (204, None)
        ch.exchange_declare("http.untraced", "fanout")
        ch.exchange_delete("http.untraced")
        missing = "/api/amqp-broker/connections/" + urllib.request.quote("1.2.3.4:5 -> 6.7.8.9:10", safe="") + "/trace"
        assert _http(broker.management_port, "PUT", missing, {"file": str(path)})[0] == 404
        conn.close()
        recs = records(path)
    assert conversation(recs) == [
        "event:trace_on", "in:exchange.declare", "out:exchange.declare-ok", "in:exchange.delete",
        "out:exchange.delete-ok", "event:trace_off",
    ]
    assert recs[1]["fields"]["exchange"] == "http.traced" and recs[1]["fields"]["type"] == "fanout"


def test_http_trace_needs_an_administrator(tmp_path):
    with BrokerThread(management=True) as broker:
        broker.call(lambda: broker.server.admin.add_user("watcher", "watcher", tags=["monitoring"]))
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
        url = "/api/amqp-broker/connections/" + urllib.request.quote(pika_name(conn), safe="") + "/trace"
        status, _ = _http(broker.management_port, "PUT", url, {"file": str(tmp_path / "t.jsonl")}, user="watcher")
        conn.close()
    assert status == 401
    assert not (tmp_path / "t.jsonl").exists()
