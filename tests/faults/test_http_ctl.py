"""Arming, watching and releasing faults over the management API (/api/amqp-broker/faults) and the control
CLI (amqp-broker ctl fault), each fault then seen by a real client."""

from __future__ import annotations

import base64
import io
import json
import socket
import urllib.error
import urllib.request
import uuid

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from amqp_broker.ctl import cli
from amqp_broker.ctl.faults import KINDS as CTL_KINDS
from amqp_broker.server.faults import KINDS
from amqp_broker.testing import BrokerThread

AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def http(broker, method, path, body=None):
    """(status, decoded JSON or None) of one management API request as guest."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{broker.management_port}{path}", data=data,
                                     method=method, headers={"authorization": AUTH,
                                                             "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def test_http_arm_fire_inspect_and_release(broker, faults):
    status, fault = http(broker, "POST", "/api/amqp-broker/faults", {
        "fault": "close_channel", "code": 406, "text": "PRECONDITION_FAILED - over HTTP",
        "on": "basic.publish", "after": 2, "connection": "http-victim"})
    assert status == 201
    assert (fault["fault"], fault["state"], fault["on"], fault["after"]) == (
        "close_channel", "armed", "basic.publish", 2)
    assert http(broker, "GET", "/api/amqp-broker/faults") == (200, [fault])

    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.port, client_properties={"connection_name": "http-victim"}))
    channel = connection.channel()
    channel.basic_publish("amq.direct", "nowhere", b"1")
    channel.basic_publish("amq.direct", "nowhere", b"2")
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.exchange_declare("amq.direct", passive=True)
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - over HTTP")
    connection.close()

    status, record = http(broker, "GET", f"/api/amqp-broker/faults/{fault['id']}")
    assert status == 200 and (record["state"], record["seen"], record["fired"]) == ("fired", 2, 1)
    assert http(broker, "DELETE", f"/api/amqp-broker/faults/{fault['id']}") == (204, None)
    assert http(broker, "GET", f"/api/amqp-broker/faults/{fault['id']}")[0] == 404
    assert http(broker, "GET", "/api/amqp-broker/faults") == (200, [])


def test_http_refuses_bad_faults_and_non_administrators(broker, faults):
    assert http(broker, "POST", "/api/amqp-broker/faults", {"fault": "explode"})[0] == 400
    status, error = http(broker, "POST", "/api/amqp-broker/faults", {"fault": "reset", "on": "basic.deliver"})
    assert status == 400 and "no method a client sends" in error["reason"]
    status, error = http(broker, "POST", "/api/amqp-broker/faults", {"fault": "close_channel", "code": "loud"})
    assert status == 400 and "code" in error["reason"]
    status, error = http(broker, "POST", "/api/amqp-broker/faults", {"fault": "close_channel", "channel": 1,
                                                        "connection": "nobody"})
    assert status == 404  # nothing to close now
    admin = broker.server.admin
    broker.call(lambda: (admin.add_user("watcher", "pw"), admin.set_user_tags("watcher", ["monitoring"])))
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{broker.management_port}/api/amqp-broker/faults", method="GET",
            headers={"authorization": "Basic " + base64.b64encode(b"watcher:pw").decode()})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 401
    finally:
        broker.call(lambda: admin.delete_user("watcher"))


@pytest.fixture(scope="module")
def node():
    name = f"faults-{uuid.uuid4().hex[:8]}@{socket.gethostname().split('.')[0]}"
    with BrokerThread(node_name=name) as running:
        running.node = name
        yield running


def ctl(node, *args):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["-n", node.node, *args], environ={}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_ctl_arm_list_fire_and_release(node):
    code, out, err = ctl(node, "fault", "close_connection", "--code", "320", "--text",
                         "CONNECTION_FORCED - from ctl", "--on", "queue.declare", "--queue", "ctl-q",
                         "--formatter", "json")
    assert code == 0, err
    fault = json.loads(out)[0]
    assert (fault["fault"], fault["state"], fault["on"]) == ("close_connection", "armed", "queue.declare")
    code, out, _ = ctl(node, "fault", "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split("\t") == ["id", "fault", "state", "on", "after", "times", "seen", "fired", "target"]
    assert row.split("\t") == [fault["id"], "close_connection", "armed", "queue.declare", "1", "1", "0", "0",
                               "queue=ctl-q"]

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
    channel = connection.channel()
    channel.queue_declare("other-q", auto_delete=True)  # another queue: no match
    with pytest.raises(ConnectionClosedByBroker) as info:
        channel.queue_declare("ctl-q", auto_delete=True)
    assert (info.value.reply_code, info.value.reply_text) == (320, "CONNECTION_FORCED - from ctl")

    code, out, _ = ctl(node, "fault", "list", "--formatter", "json")
    assert json.loads(out)[0]["state"] == "fired"
    assert ctl(node, "fault", "release") == (0, "Released 1 fault(s)\n", "")
    assert ctl(node, "fault", "list")[1] == "\n"


def test_ctl_errors(node):
    code, _, err = ctl(node, "fault", "explode")
    assert code == 65 and "unknown fault 'explode'" in err
    code, _, err = ctl(node, "fault", "release", "999")
    assert code == 69 and "fault '999' not found" in err
    code, _, err = ctl(node, "fault", "silence", "7")
    assert code == 64


def test_the_command_line_knows_every_kind():
    assert tuple(KINDS) == CTL_KINDS
