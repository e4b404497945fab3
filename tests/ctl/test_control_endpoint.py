"""The control endpoint refuses what it should, and no request can take the broker down."""

from __future__ import annotations

import json
import os
import socket
import stat

import pika
import pytest

from amqp_broker.server.discovery import find_node, nodes_dir
from amqp_broker.testing import BrokerThread
from ctl_helpers import ctl, unique_node


@pytest.fixture(scope="module")
def node():
    name = unique_node("ctl-endpoint")
    with BrokerThread(node_name=name, management_port=0, prometheus_port=0) as running:
        running.node = name
        running.record = find_node(node_name=name)
        yield running


class Raw:
    """A plain socket to the control port, speaking JSON lines."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> dict | None:
        self.sock.sendall(data)
        line = self.file.readline()
        return json.loads(line) if line else None

    def closed(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def request(node, op, token=None, **args) -> bytes:
    return json.dumps({"token": token or node.record.control_token, "op": op, "args": args}).encode() + b"\n"


def test_the_record_holds_the_endpoint_and_only_its_user_may_read_it(node):
    record = node.record
    assert record.control_port and len(record.control_token) == 64
    for path in (os.path.join(record.data_dir, "node.json"), os.path.join(nodes_dir(), f"{node.node}.json")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    listening = socket.create_connection(("127.0.0.1", record.control_port), timeout=5)
    assert listening.getpeername()[0] == "127.0.0.1"
    listening.close()


def test_a_wrong_or_missing_token_is_refused_and_the_connection_closed(node):
    for line in (request(node, "users", token="0" * 64), json.dumps({"op": "users"}).encode() + b"\n"):
        raw = Raw(node.record.control_port)
        assert raw.send(line) == {"ok": False, "error": {"kind": "unauthorized", "reason": "bad or missing token"}}
        assert raw.closed()
        raw.close()


def test_bad_requests_get_error_responses(node):
    raw = Raw(node.record.control_port)
    cases = [
        (request(node, "no_such_op"), "bad_request", "unknown operation 'no_such_op'"),
        (request(node, "_store"), "bad_request", "unknown operation '_store'"),
        (request(node, "delete_user"), "bad_request", "delete_user: missing a required argument: 'name'"),
        (request(node, "delete_user", name=5), "bad_request", "argument 'name' must be str, got int"),
        (request(node, "users", extra=1), "bad_request", "users: got an unexpected keyword argument 'extra'"),
        (request(node, "set_user_tags", name="guest", tags=[1]), "bad_request", None),
        (request(node, "delete_queue", vhost="/", name="q", if_empty="yes"), "bad_request", None),
        (request(node, "import_definitions", data={"queues": "not a list"}), None, None),
        (request(node, "queue", vhost="/", name="absent"), "not_found", "queue 'absent' in vhost '/' not found"),
    ]
    for line, kind, reason in cases:
        response = raw.send(line)
        assert response["ok"] is False, line
        if kind is not None:
            assert response["error"]["kind"] == kind, (line, response)
        if reason is not None:
            assert response["error"]["reason"] == reason, (line, response)
    # after all that, the same connection still serves
    assert raw.send(request(node, "await_startup")) == {"ok": True, "result": True}
    raw.close()
    raw = Raw(node.record.control_port)
    assert raw.send(b"not json\n")["error"]["kind"] == "bad_request"
    assert raw.closed()
    raw.close()
    raw = Raw(node.record.control_port)
    assert raw.send(b'["a list"]\n')["error"] == {"kind": "bad_request", "reason": "request must be a JSON object"}
    raw.close()


def test_the_broker_still_serves_after_bad_requests(node):
    raw = Raw(node.record.control_port)
    assert raw.send(b"\xff\xfe garbage \x00\n")["error"]["kind"] == "bad_request"
    assert raw.closed()
    raw.close()
    half = socket.create_connection(("127.0.0.1", node.record.control_port), timeout=5)
    half.sendall(b'{"token": "')  # and then goes away mid-request
    half.close()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port, heartbeat=0))
    conn.channel().queue_declare("still-here")
    conn.close()
    assert "still-here" in ctl("-n", node.node, "list_queues", "-s", "name").lines
