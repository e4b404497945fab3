"""The management HTTP API over real sockets: http.client against ``BrokerThread(management=True)``,
pika on the AMQP side, rabbitmqadmin as a real tool. Expected answers (statuses, error texts,
shapes) are RabbitMQ 3.10.8's, as its live node gives them."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
import trio

from amqp_broker.management.http import HttpServer, Limits, Response
from amqp_broker.management.static import StaticFiles
from amqp_broker.management.http import Request
from amqp_broker.testing import BrokerThread

GUEST = ("guest", "guest")


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:300]!r}>"


class Api:
    """Requests to one management port, as a tool would send them."""

    def __init__(self, port: int):
        self.port = port

    def __call__(self, method: str, path: str, body=None, *, auth=GUEST, headers=None,
                 raw: bytes | None = None) -> Reply:
        sent = {"Accept": "*/*"}
        if auth is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request(method, path, body=data, headers=sent)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Reply:
        return self("GET", path, **kw)

    def ok(self, path: str, **kw):
        reply = self("GET", path, **kw)
        assert reply.status == 200, reply
        return reply.json


def seg(name: str) -> str:
    return quote(name, safe="")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def poll(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def broker():
    with BrokerThread(management=True) as running:
        yield running


@pytest.fixture(scope="module")
def api(broker):
    return Api(broker.management_port)


@pytest.fixture
def amqp(broker):
    name = unique("conn")
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.port, heartbeat=0, client_properties={"connection_name": name}))
    conn.test_name = name  # what the API shows as user_provided_name
    yield conn
    if conn.is_open:
        conn.close()


@pytest.fixture
def vhost(api):
    """A vhost of the test's own, deleted afterwards."""
    name = unique("vh")
    assert api("PUT", f"/api/vhosts/{seg(name)}", {}).status == 201
    yield name
    api("DELETE", f"/api/vhosts/{seg(name)}")


def make_user(api, name: str, tags: str, password: str = "secret") -> None:
    assert api("PUT", f"/api/users/{seg(name)}", {"password": password, "tags": tags}).status == 201


# -- node, overview, start-up ---------------------------------------------------------------------


def test_listeners_overview_whoami_nodes(broker, api):
    assert ("http", "127.0.0.1", broker.management_port) in broker.server.listeners
    overview = api.ok("/api/overview")
    assert overview["rabbitmq_version"] == overview["management_version"] == "3.10.8"
    assert overview["product_name"] == "amqp_broker"
    assert {"queues", "exchanges", "connections", "channels", "consumers"} <= set(overview["object_totals"])
    assert {"messages", "messages_ready", "messages_unacknowledged"} <= set(overview["queue_totals"])
    listeners = {(entry["protocol"], entry["port"]) for entry in overview["listeners"]}
    assert {("amqp", broker.port), ("http", broker.management_port)} <= listeners
    assert [t["name"] for t in overview["exchange_types"]] == [
        "direct", "fanout", "headers", "topic", "x-consistent-hash", "x-delayed-message"]
    assert api.ok("/api/whoami") == {"name": "guest", "tags": ["administrator"]}
    nodes = api.ok("/api/nodes")
    assert [n["name"] for n in nodes] == [overview["node"]]
    node = api.ok(f"/api/nodes/{seg(overview['node'])}")
    assert node["running"] is True and node["mem_used"] > 0 and node["mem_alarm"] is False
    assert api.get("/api/nodes/rabbit@nowhere").status == 404
    assert api.ok("/api/extensions") == []
    assert api.ok("/api/cluster-name") == {"name": overview["node"]}
    # What rabbitmqadmin lists but this broker does not have is empty, not 404.
    assert api.ok("/api/policies") == [] and api.ok("/api/parameters") == []
    assert api.get("/api/policies/%2F/p").status == 404
    assert api("PUT", "/api/policies/%2F/p", {"pattern": ".*", "definition": {}}).status == 405


def test_json_headers_and_http_errors(api):
    reply = api.get("/api/whoami")
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-cache"
    missing = api.get("/api/no-such-endpoint")
    assert (missing.status, missing.json) == (404, {"error": "Object Not Found", "reason": "Not Found"})
    refused = api("POST", "/api/overview", {})
    assert refused.status == 405 and refused.headers["allow"] == "HEAD, GET, OPTIONS"
    assert refused.body == b""
    options = api("OPTIONS", "/api/queues/%2F/q", auth=None)
    assert options.status == 200 and options.headers["allow"] == "HEAD, GET, PUT, DELETE, OPTIONS"
    head = api("HEAD", "/api/whoami")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) == len(api.get("/api/whoami").body)


# -- authentication and user tags -----------------------------------------------------------------


def test_authentication_failures(api):
    anonymous = api.get("/api/overview", auth=None)
    assert anonymous.status == 401 and anonymous.body == b""
    assert anonymous.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'
    wrong = api.get("/api/overview", auth=("guest", "wrong"))
    assert (wrong.status, wrong.json) == (401, {"error": "not_authorized", "reason": "Login failed"})
    assert wrong.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'
    garbled = api.get("/api/overview", auth=None, headers={"Authorization": "Basic !!!"})
    assert garbled.status == 401
    plain = unique("plain")
    make_user(api, plain, "")
    try:
        refused = api.get("/api/whoami", auth=(plain, "secret"))
        assert (refused.status, refused.json) == (
            401, {"error": "not_authorised", "reason": "Not management user"})
    finally:
        api("DELETE", f"/api/users/{plain}")


def test_management_and_monitoring_users_see_what_rabbitmq_shows_them(api, vhost, amqp):
    mgmt, mon, pm = unique("mgmt"), unique("mon"), unique("pm")
    make_user(api, mgmt, "management")
    make_user(api, mon, "monitoring")
    make_user(api, pm, "policymaker")
    try:
        assert api("PUT", f"/api/permissions/{seg(vhost)}/{mgmt}",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status == 201
        queue = unique("vq")
        assert api("PUT", f"/api/queues/{seg(vhost)}/{queue}", {}).status == 201
        as_mgmt = {"auth": (mgmt, "secret")}
        as_mon = {"auth": (mon, "secret")}

        assert api.ok("/api/whoami", **as_mgmt) == {"name": mgmt, "tags": ["management"]}
        assert api.ok("/api/whoami", auth=(pm, "secret"))["tags"] == ["policymaker"]
        # A management user sees the vhosts it has permissions on, and their objects only.
        assert [v["name"] for v in api.ok("/api/vhosts", **as_mgmt)] == [vhost]
        assert [(q["vhost"], q["name"]) for q in api.ok("/api/queues", **as_mgmt)] == [(vhost, queue)]
        assert {e["vhost"] for e in api.ok("/api/exchanges", **as_mgmt)} == {vhost}
        assert api.ok(f"/api/queues/{seg(vhost)}/{queue}", **as_mgmt)["name"] == queue
        denied = api.get("/api/queues/%2F", **as_mgmt)
        assert (denied.status, denied.json["reason"]) == (401, "User not authorised to access virtual host")
        assert api.get("/api/vhosts/%2F", **as_mgmt).json["reason"] == "Not administrator user"
        for path, reason in (("/api/users", "Not administrator user"),
                             ("/api/definitions", "Not administrator user"),
                             ("/api/permissions", "Not administrator user"),
                             ("/api/nodes", "Not monitor user")):
            refused = api.get(path, **as_mgmt)
            assert (refused.status, refused.json) == (401, {"error": "not_authorised", "reason": reason})
        assert api("PUT", f"/api/vhosts/{unique('x')}", {}, **as_mgmt).status == 401
        # It may still declare in its own vhost.
        own = unique("own")
        assert api("PUT", f"/api/queues/{seg(vhost)}/{own}", {}, **as_mgmt).status == 201
        assert api("DELETE", f"/api/queues/{seg(vhost)}/{own}", **as_mgmt).status == 204

        # guest's AMQP connection: invisible to the management user, readable by monitoring.
        conn_name = poll(lambda: [c["name"] for c in api.ok("/api/connections")], what="connection")[0]
        assert api.ok("/api/connections", **as_mgmt) == []
        assert api.ok("/api/channels", **as_mgmt) == []
        refused = api.get(f"/api/connections/{seg(conn_name)}", **as_mgmt)
        assert (refused.status, refused.json["reason"]) == (401, "User not authorised to access object")
        assert conn_name in [c["name"] for c in api.ok("/api/connections", **as_mon)]
        assert api.ok(f"/api/connections/{seg(conn_name)}", **as_mon)["user"] == "guest"
        assert api("DELETE", f"/api/connections/{seg(conn_name)}", **as_mon).status == 401
        assert amqp.is_open
        # Monitoring sees the node and every vhost, but objects only where it has permissions.
        assert api.get("/api/nodes", **as_mon).status == 200
        assert {"/", vhost} <= {v["name"] for v in api.ok("/api/vhosts", **as_mon)}
        assert api.ok("/api/queues", **as_mon) == []
        assert api.get("/api/users", **as_mon).status == 401
        # The totals a user sees are those of its vhosts.
        assert api.ok("/api/overview", **as_mgmt)["object_totals"]["queues"] == 1
    finally:
        for user in (mgmt, mon, pm):
            api("DELETE", f"/api/users/{user}")


# -- vhosts, users, permissions -------------------------------------------------------------------


def test_vhosts_put_get_delete(api):
    name = unique("vh")
    assert api("PUT", f"/api/vhosts/{name}", {}).status == 201
    assert api("PUT", f"/api/vhosts/{name}", {"description": "d", "tracing": "false"}).status == 204
    info = api.ok(f"/api/vhosts/{name}")
    assert info["name"] == name and info["tracing"] is False and info["messages"] == 0
    assert info["cluster_state"] == {api.ok("/api/overview")["node"]: "running"}
    assert name in [v["name"] for v in api.ok("/api/vhosts")]
    # The user who creates a vhost is granted full access to it, as in RabbitMQ.
    assert api.ok(f"/api/vhosts/{name}/permissions") == [
        {"user": "guest", "vhost": name, "configure": ".*", "write": ".*", "read": ".*"}]
    assert api.ok(f"/api/vhosts/{name}/connections") == []
    assert api.ok(f"/api/vhosts/{name}/channels") == []
    assert api("DELETE", f"/api/vhosts/{name}").status == 204
    assert api("DELETE", f"/api/vhosts/{name}").status == 404
    assert api.get(f"/api/vhosts/{name}").status == 404
    assert api.get(f"/api/vhosts/{name}/connections").status == 404


def test_users_and_permissions(api, vhost):
    name = unique("user")
    assert api("PUT", f"/api/users/{name}", {"password": "p1", "tags": "management,monitoring"}).status == 201
    assert api("PUT", f"/api/users/{name}", {"password": "p2", "tags": ["administrator"]}).status == 204
    user = api.ok(f"/api/users/{name}")
    assert user["tags"] == ["administrator"] and user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert user["limits"] == {} and user["password_hash"]
    assert api.ok("/api/whoami", auth=(name, "p2"))["name"] == name
    assert api.get("/api/whoami", auth=(name, "p1")).status == 401
    assert name in [u["name"] for u in api.ok("/api/users")]
    assert api("PUT", f"/api/users/{name}", {"password": "x"}).json == {
        "error": "bad_request", "reason": "tags_not_present"}
    # Tags only: the password stays.
    assert api("PUT", f"/api/users/{name}", {"tags": "management"}).status == 204
    assert api.ok("/api/whoami", auth=(name, "p2"))["tags"] == ["management"]

    path = f"/api/permissions/{seg(vhost)}/{name}"
    grant = {"configure": "^c", "write": "^w", "read": "^r"}
    assert api("PUT", path, grant).status == 201
    assert api("PUT", path, grant).status == 204
    assert api.ok(path) == {"user": name, "vhost": vhost, **grant}
    assert api.ok(f"/api/users/{name}/permissions") == [{"user": name, "vhost": vhost, **grant}]
    assert {"user": name, "vhost": vhost, **grant} in api.ok("/api/permissions")
    assert api("PUT", path, {"configure": ".*", "write": ".*"}).json == {
        "error": "bad_request", "reason": "[{key_missing,read}]"}
    assert api("PUT", f"/api/permissions/{seg(vhost)}/nobody", grant).json == {
        "error": "bad_request", "reason": "vhost_or_user_not_found"}
    assert api("PUT", path, {**grant, "read": "("}).status == 400
    assert api("DELETE", path).status == 204
    assert api("DELETE", path).status == 404
    assert api.get(path).status == 404

    assert api("DELETE", f"/api/users/{name}").status == 204
    assert api("DELETE", f"/api/users/{name}").status == 404
    assert api.get(f"/api/users/{name}").status == 404
    # A user made without a password exists but cannot log in with one.
    nopass = unique("nopass")
    assert api("PUT", f"/api/users/{nopass}", {"tags": "administrator"}).status == 201
    assert api.get("/api/whoami", auth=(nopass, "")).status == 401
    api("DELETE", f"/api/users/{nopass}")


# -- queues ---------------------------------------------------------------------------------------


def test_queue_declared_with_pika_appears_with_its_counts(api, amqp):
    ch = amqp.channel()
    queue = unique("pq")
    ch.queue_declare(queue, arguments={"x-max-length": 100})
    for i in range(3):
        ch.basic_publish("", queue, f"m{i}".encode())
    consumer_ch = amqp.channel()
    consumer_ch.basic_qos(prefetch_count=1)
    consumer_ch.basic_consume(queue, lambda *a: None, consumer_tag="api-tag")

    def settled():
        amqp.process_data_events(0)
        info = api.ok(f"/api/queues/%2F/{queue}")
        return info if info["messages_unacknowledged"] == 1 else None

    info = poll(settled, what="one unacknowledged delivery")
    assert (info["messages"], info["messages_ready"], info["consumers"]) == (3, 2, 1)
    assert info["arguments"] == {"x-max-length": 100} and info["durable"] is False
    assert info["message_bytes"] == 6 and info["message_bytes_unacknowledged"] == 2
    assert info["node"] == api.ok("/api/overview")["node"] and info["policy"] is None
    assert info["message_stats"]["publish"] == 3
    [consumer] = info["consumer_details"]
    assert consumer["consumer_tag"] == "api-tag" and consumer["prefetch_count"] == 1
    assert consumer["ack_required"] is True and consumer["queue"] == {"name": queue, "vhost": "/"}
    listed = [q for q in api.ok("/api/queues") if q["name"] == queue]
    assert listed and "consumer_details" not in listed[0] and listed[0]["messages"] == 3
    assert queue in [q["name"] for q in api.ok("/api/queues/%2F")]
    assert [c["consumer_tag"] for c in api.ok("/api/consumers/%2F") if c["queue"]["name"] == queue] == ["api-tag"]

    conn = [c for c in api.ok("/api/connections") if c["user_provided_name"] == amqp.test_name]
    assert len(conn) == 1 and conn[0]["channels"] == 2 and conn[0]["ssl"] is False
    assert conn[0]["client_properties"]["product"] == "Pika Python Client Library"
    channels = api.ok(f"/api/connections/{seg(conn[0]['name'])}/channels")
    assert sorted(c["number"] for c in channels) == [1, 2]
    assert channels[1]["prefetch_count"] == 1 and channels[1]["messages_unacknowledged"] == 1
    assert api.ok(f"/api/channels/{seg(channels[0]['name'])}")["number"] == 1
    assert api.get("/api/channels/nope").status == 404
    ch.queue_delete(queue)


def test_queue_put_delete_and_errors(api, amqp):
    queue = unique("q")
    path = f"/api/queues/%2F/{queue}"
    assert api("PUT", path, {"durable": "true", "arguments": {"x-max-length": 5}}).status == 201
    assert api("PUT", path, {"durable": True, "auto_delete": "false",
                             "arguments": {"x-max-length": 5}}).status == 204
    assert api.ok(path)["durable"] is True
    amqp.channel().queue_declare(queue, passive=True)
    other = api("PUT", path, {"durable": True, "arguments": {"x-max-length": 6}})
    assert other.json == {"error": "bad_request", "reason":
                          f"inequivalent arg 'x-max-length' for queue '{queue}' in vhost '/': "
                          "received '6' but current is '5'"}
    assert api("PUT", path, {"durable": "maybe"}).json == {"error": "bad_request",
                                                           "reason": ["not_boolean", "maybe"]}
    assert api("PUT", path, raw=b"{nope").json == {"error": "bad_request", "reason": "not_json"}
    assert api("PUT", path, raw=b'{"arguments": {"x-note": "\\ud800"}}').json == {
        "error": "bad_request", "reason": "not_json"}
    assert api("PUT", f"/api/queues/no-such-vhost/{queue}", {}).json == {
        "error": "not_found", "reason": "vhost_not_found"}
    assert api("PUT", "/api/queues/%2F/amq.mine", {}).json == {
        "error": "not_authorised", "reason": "Access refused."}
    bindings = api.ok(f"{path}/bindings")
    assert bindings == [{"source": "", "vhost": "/", "destination": queue, "destination_type": "queue",
                         "routing_key": queue, "arguments": {}, "properties_key": queue}]
    api("POST", "/api/exchanges/%2F/amq.default/publish",
        {"routing_key": queue, "payload": "x", "payload_encoding": "string", "properties": {}})
    assert api("DELETE", f"{path}?if-empty=true").json == {
        "error": "bad_request", "reason": f"queue '{queue}' in vhost '/' not empty"}
    assert api("DELETE", path).status == 204
    assert api("DELETE", path).status == 404
    assert api.get(path).status == 404
    assert api.get("/api/queues/no-such-vhost").status == 404


def test_purge_through_the_api_empties_what_pika_sees(api, amqp):
    ch = amqp.channel()
    queue = unique("purge")
    ch.queue_declare(queue)
    for i in range(5):
        ch.basic_publish("", queue, b"x")
    poll(lambda: api.ok(f"/api/queues/%2F/{queue}")["messages"] == 5, what="5 messages")
    assert api("DELETE", f"/api/queues/%2F/{queue}/contents").status == 204
    assert ch.queue_declare(queue, passive=True).method.message_count == 0
    assert ch.basic_get(queue) == (None, None, None)
    assert api.ok(f"/api/queues/%2F/{queue}")["messages"] == 0
    assert api.get(f"/api/queues/%2F/{queue}/contents").status == 405
    assert api("DELETE", f"/api/queues/%2F/{unique('none')}/contents").status == 404
    ch.queue_delete(queue)


def test_get_messages(api, amqp):
    ch = amqp.channel()
    queue, dead = unique("get"), unique("dead")
    ch.queue_declare(dead)
    ch.queue_declare(queue, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    ch.basic_publish("", queue, b"hello", pika.BasicProperties(headers={"a": 1}, delivery_mode=2))
    ch.basic_publish("", queue, b"\xff\x00binary")
    ch.basic_publish("", queue, b"third")
    url = f"/api/queues/%2F/{queue}/get"

    first = api("POST", url, {"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto",
                              "truncate": 50000}).json
    assert first == [
        {"payload_bytes": 5, "redelivered": False, "exchange": "", "routing_key": queue,
         "message_count": 2, "properties": {"delivery_mode": 2, "headers": {"a": 1}},
         "payload": "hello", "payload_encoding": "string"},
        {"payload_bytes": 8, "redelivered": False, "exchange": "", "routing_key": queue,
         "message_count": 1, "properties": [], "payload": base64.b64encode(b"\xff\x00binary").decode(),
         "payload_encoding": "base64"},
    ]
    again = api("POST", url, {"count": "5", "ackmode": "reject_requeue_true", "encoding": "base64",
                              "truncate": 2}).json
    assert [(m["redelivered"], m["payload"], m["payload_bytes"]) for m in again] == [
        (True, "aGU=", 5), (True, "/wA=", 8), (False, "dGg=", 5)]
    taken = api("POST", url, {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}).json
    assert [m["payload"] for m in taken] == ["hello"]
    rejected = api("POST", url, {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"}).json
    assert len(rejected) == 1
    assert api.ok(f"/api/queues/%2F/{queue}")["messages"] == 1
    # A message rejected without requeue is dead-lettered, as basic.reject would have it.
    assert ch.basic_get(dead, auto_ack=True)[2] == b"\xff\x00binary"

    assert api("POST", url, {"count": 1, "ackmode": "ack_requeue_true"}).json == {
        "error": "bad_request", "reason": "[{key_missing,encoding}]"}
    assert api("POST", url, {"count": 1, "ackmode": "ack_requeue_true", "encoding": "rot13"}).json == {
        "error": "bad_request", "reason": "Unsupported encoding. Please use auto or base64."}
    assert api("POST", url, {"count": 1, "ackmode": "nope", "encoding": "auto"}).status == 400
    missing = api("POST", f"/api/queues/%2F/{unique('none')}/get",
                  {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})
    assert missing.status == 404 and missing.json["error"] == "not_found"
    assert missing.json["reason"].startswith("NOT_FOUND - no queue ")
    ch.queue_delete(queue)
    ch.queue_delete(dead)


# -- exchanges, publish, bindings -----------------------------------------------------------------


def test_publish_through_the_api_reaches_a_pika_consumer(api, amqp):
    ch = amqp.channel()
    exchange, queue = unique("px"), unique("pq")
    assert api("PUT", f"/api/exchanges/%2F/{exchange}", {"type": "topic"}).status == 201
    ch.queue_declare(queue)
    ch.queue_bind(queue, exchange, "a.#")
    received = []
    ch.basic_consume(queue, lambda c, m, props, body: received.append((m, props, body)), auto_ack=True)
    url = f"/api/exchanges/%2F/{exchange}/publish"
    reply = api("POST", url, {"routing_key": "a.b", "payload": "hello", "payload_encoding": "string",
                              "properties": {"content_type": "text/plain", "delivery_mode": 2,
                                             "headers": {"k": "v"}, "unknown": 1}})
    assert reply.json == {"routed": True}
    assert api("POST", url, {"routing_key": "a.c", "payload": base64.b64encode(b"\x00\x01").decode(),
                             "payload_encoding": "base64", "properties": {}}).json == {"routed": True}
    assert api("POST", url, {"routing_key": "b", "payload": "x", "payload_encoding": "string",
                             "properties": {}}).json == {"routed": False}
    poll(lambda: amqp.process_data_events(0) or len(received) == 2, what="two deliveries")
    method, props, body = received[0]
    assert (method.exchange, method.routing_key, body) == (exchange, "a.b", b"hello")
    assert (props.content_type, props.delivery_mode, props.headers) == ("text/plain", 2, {"k": "v"})
    assert received[1][2] == b"\x00\x01"
    # The default exchange is amq.default in URLs.
    assert api("POST", "/api/exchanges/%2F/amq.default/publish",
               {"routing_key": queue, "payload": "d", "payload_encoding": "string",
                "properties": {}}).json == {"routed": True}
    poll(lambda: amqp.process_data_events(0) or len(received) == 3, what="a third delivery")

    bad = {"routing_key": "a", "payload": "x", "payload_encoding": "rot13", "properties": {}}
    assert api("POST", url, bad).json == {"error": "bad_request", "reason": ["unsupported_encoding", "rot13"]}
    assert api("POST", url, {**bad, "payload_encoding": "base64", "payload": "!!"}).json == {
        "error": "bad_request", "reason": ["not_base64", "!!"]}
    assert api("POST", url, {**bad, "payload_encoding": "string",
                             "properties": {"delivery_mode": "x"}}).json == {
        "error": "bad_request", "reason": ["not_int", "delivery_mode"]}
    assert api("POST", url, {"routing_key": "a", "payload": "x"}).json == {
        "error": "bad_request", "reason": "[{key_missing,properties},{key_missing,payload_encoding}]"}
    assert api("POST", "/api/exchanges/%2F/no-such-exchange/publish", {**bad, "payload_encoding": "string"}
               ).json == {"error": "bad_request",
                          "reason": "404 NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'"}
    ch.queue_delete(queue)
    assert api("DELETE", f"/api/exchanges/%2F/{exchange}").status == 204


def test_exchanges_put_get_delete(api):
    name = unique("x")
    path = f"/api/exchanges/%2F/{name}"
    assert api("PUT", path, {"type": "fanout", "durable": "true"}).status == 201
    assert api("PUT", path, {"type": "fanout", "durable": True}).status == 204
    info = api.ok(path)
    assert (info["type"], info["durable"], info["internal"], info["incoming"], info["outgoing"]) == (
        "fanout", True, False, [], [])
    assert name in [e["name"] for e in api.ok("/api/exchanges/%2F")]
    assert api.ok("/api/exchanges/%2F/amq.default")["name"] == ""
    assert api("PUT", path, {"type": "topic", "durable": True}).json == {
        "error": "bad_request", "reason": f"inequivalent arg 'type' for exchange '{name}' in vhost '/': "
                                          "received 'topic' but current is 'fanout'"}
    assert api("PUT", f"/api/exchanges/%2F/{unique('x')}", {"type": "no-such-type"}).json == {
        "error": "bad_request", "reason": "unknown exchange type 'no-such-type'"}
    assert api("PUT", "/api/exchanges/%2F/amq.mine", {"type": "direct"}).json == {
        "error": "not_authorised", "reason": "Access refused."}
    # A predeclared exchange is redeclared like any other (it is durable).
    assert api("PUT", "/api/exchanges/%2F/amq.direct", {"type": "direct", "durable": True}).status == 204
    assert api("PUT", "/api/exchanges/%2F/amq.direct", {"type": "direct"}).json["reason"] == (
        "inequivalent arg 'durable' for exchange 'amq.direct' in vhost '/': received 'false' but "
        "current is 'true'")
    for refused in ("amq.default", "amq.direct"):
        assert api("DELETE", f"/api/exchanges/%2F/{refused}").json == {
            "error": "not_authorised", "reason": "Access refused."}
    assert api("DELETE", path).status == 204
    assert api("DELETE", path).status == 404


def test_bindings(api, amqp):
    ch = amqp.channel()
    exchange, other, queue = unique("bx"), unique("by"), unique("bq")
    api("PUT", f"/api/exchanges/%2F/{exchange}", {"type": "direct"})
    api("PUT", f"/api/exchanges/%2F/{other}", {"type": "fanout"})
    api("PUT", f"/api/queues/%2F/{queue}", {})
    base = f"/api/bindings/%2F/e/{exchange}/q/{queue}"

    created = api("POST", base, {"routing_key": "rk"})
    assert (created.status, created.headers["location"]) == (201, f"{queue}/rk")
    with_args = api("POST", base, {"routing_key": "a/b%c", "arguments": {"x": 1}})
    assert with_args.status == 201
    assert api("POST", base, raw=b"").headers["location"] == f"{queue}/~"
    rows = api.ok(base)
    assert [(r["routing_key"], r["properties_key"]) for r in rows][:2] == [("", "~"), ("a/b%c", rows[1]["properties_key"])]
    props = rows[1]["properties_key"]
    assert props.startswith("a%2Fb%25c~") and with_args.headers["location"] == f"{queue}/{seg(props)}"
    assert api.ok(f"{base}/rk") == {"source": exchange, "vhost": "/", "destination": queue,
                                    "destination_type": "queue", "routing_key": "rk",
                                    "arguments": {}, "properties_key": "rk"}
    assert api.ok(f"{base}/{seg(props)}")["arguments"] == {"x": 1}
    assert api.ok(f"/api/queues/%2F/{queue}/bindings")[0]["source"] == ""
    assert len(api.ok(f"/api/exchanges/%2F/{exchange}/bindings/source")) == 3
    assert api.ok(f"/api/bindings/%2F/e/{exchange}/q/{unique('none')}") == []

    # The binding routes: a message published with its key reaches the queue.
    assert api("POST", f"/api/exchanges/%2F/{exchange}/publish",
               {"routing_key": "rk", "payload": "b", "payload_encoding": "string",
                "properties": {}}).json == {"routed": True}
    assert ch.basic_get(queue, auto_ack=True)[2] == b"b"

    e2e = api("POST", f"/api/bindings/%2F/e/{exchange}/e/{other}", {"routing_key": "to-other"})
    assert (e2e.status, e2e.headers["location"]) == (201, f"{other}/to-other")
    assert [b["source"] for b in api.ok(f"/api/exchanges/%2F/{other}/bindings/destination")] == [exchange]
    assert api.ok(f"/api/bindings/%2F/e/{exchange}/e/{other}/to-other")["destination_type"] == "exchange"
    assert len([b for b in api.ok("/api/bindings/%2F") if b["source"] == exchange]) == 4
    assert len([b for b in api.ok("/api/bindings") if b["source"] == exchange]) == 4

    assert api("POST", f"/api/bindings/%2F/e/{exchange}/q/no-such-queue", {}).json == {
        "error": "not_found", "reason": "no queue 'no-such-queue' in vhost '/'"}
    assert api("POST", f"/api/bindings/%2F/e/no-such-exchange/q/{queue}", {}).json == {
        "error": "not_found", "reason": "no exchange 'no-such-exchange' in vhost '/'"}
    assert api("POST", f"/api/bindings/%2F/e/amq.default/q/{queue}", {}).status == 401

    assert api("DELETE", f"{base}/rk").status == 204
    assert api("DELETE", f"{base}/rk").status == 404
    assert api.get(f"{base}/rk").status == 404
    assert api("DELETE", f"{base}/{seg(props)}").status == 204
    assert api("DELETE", f"/api/bindings/%2F/e/{exchange}/e/{other}/to-other").status == 204
    assert [r["routing_key"] for r in api.ok(base)] == [""]
    for path in (f"/api/queues/%2F/{queue}", f"/api/exchanges/%2F/{exchange}", f"/api/exchanges/%2F/{other}"):
        api("DELETE", path)


# -- connections ----------------------------------------------------------------------------------


def _connection_named(api, name: str) -> dict:
    def found():
        return [c for c in api.ok("/api/connections") if c.get("user_provided_name") == name]
    return poll(found, what=f"connection {name}")[0]


@pytest.mark.parametrize("reason", ["closed by the test", None])
def test_delete_connection_closes_it_with_320_and_the_reason(broker, api, reason):
    name = unique("doomed")
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.port, heartbeat=0, client_properties={"connection_name": name}))
    conn.channel()
    info = _connection_named(api, name)
    headers = {"X-Reason": reason} if reason else {}
    assert api("DELETE", f"/api/connections/{seg(info['name'])}", headers=headers).status == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            conn.process_data_events(0.05)
    expected = reason or "Closed via management plugin"
    assert (closed.value.reply_code, closed.value.reply_text) == (320, f"CONNECTION_FORCED - {expected}")
    poll(lambda: api.get(f"/api/connections/{seg(info['name'])}").status == 404, what="connection gone")
    assert api("DELETE", f"/api/connections/{seg(info['name'])}").status == 404


# -- definitions ----------------------------------------------------------------------------------


def test_definitions_round_trip_while_running(api, vhost, amqp):
    exchange, queue = unique("dx"), unique("dq")
    base = f"/api/exchanges/{seg(vhost)}/{exchange}"
    api("PUT", base, {"type": "topic", "durable": True})
    api("PUT", f"/api/queues/{seg(vhost)}/{queue}", {"durable": True, "arguments": {"x-max-length": 7}})
    api("POST", f"/api/bindings/{seg(vhost)}/e/{exchange}/q/{queue}", {"routing_key": "k.#"})
    exported = api.get("/api/definitions")
    assert exported.status == 200
    data = exported.json
    assert {"rabbit_version", "users", "vhosts", "permissions", "queues", "exchanges", "bindings"} <= set(data)
    assert {"name": queue, "vhost": vhost} .items() <= next(q for q in data["queues"] if q["name"] == queue).items()
    download = api.get("/api/definitions?download=defs.json")
    assert download.headers["content-disposition"] == 'attachment; filename="defs.json"'

    one = api.ok(f"/api/definitions/{seg(vhost)}")
    assert set(one) == {"rabbit_version", "parameters", "policies", "queues", "exchanges", "bindings"}
    assert [q["name"] for q in one["queues"]] == [queue] and "vhost" not in one["queues"][0]

    # Gone, then back from the export, while clients are connected.
    api("DELETE", f"/api/queues/{seg(vhost)}/{queue}")
    api("DELETE", base)
    assert api("POST", "/api/definitions", data).status == 204
    assert api.ok(f"/api/queues/{seg(vhost)}/{queue}")["arguments"] == {"x-max-length": 7}
    assert [b["routing_key"] for b in api.ok(f"/api/exchanges/{seg(vhost)}/{exchange}/bindings/source")] == ["k.#"]
    assert amqp.is_open

    # The single-vhost form imports into the vhost named in the path.
    target = unique("vh2")
    api("PUT", f"/api/vhosts/{target}", {})
    try:
        assert api("POST", f"/api/definitions/{target}", one).status == 204
        assert [q["name"] for q in api.ok(f"/api/queues/{target}")] == [queue]
    finally:
        api("DELETE", f"/api/vhosts/{target}")
    assert api("POST", "/api/definitions", raw=b"{not json").json == {
        "error": "bad_request", "reason": "failed_to_parse_json"}
    bad = api("POST", "/api/definitions", {"queues": [{"name": "q", "vhost": "no-such-vhost"}]})
    assert bad.status == 400 and bad.json["error"] == "bad_request"
    assert api.get("/api/definitions/no-such-vhost").status == 404


# -- health ---------------------------------------------------------------------------------------


def test_health_checks(broker, api):
    ok = {"status": "ok"}
    assert api.ok("/api/healthchecks/node") == ok
    assert api.ok("/api/health/checks/alarms") == ok
    assert api.ok("/api/health/checks/local-alarms") == ok
    assert api.ok("/api/health/checks/virtual-hosts") == ok
    assert api.ok(f"/api/health/checks/port-listener/{broker.port}") == {"status": "ok", "port": broker.port}
    assert api.ok(f"/api/health/checks/port-listener/{broker.management_port}")["status"] == "ok"
    missing = api.get("/api/health/checks/port-listener/1")
    assert missing.status == 503
    assert missing.json == {"status": "failed", "reason": "No active listener", "missing": 1,
                            "ports": sorted([broker.port, broker.management_port])}
    for name, canonical in (("amqp", "amqp"), ("amqp091", "amqp"), ("http", "http")):
        assert api.ok(f"/api/health/checks/protocol-listener/{name}") == {"status": "ok", "protocol": canonical}
    mqtt = api.get("/api/health/checks/protocol-listener/mqtt")
    assert mqtt.status == 503 and mqtt.json["missing"] == "mqtt" and mqtt.json["protocols"] == ["amqp", "http"]
    assert api.ok("/api/aliveness-test/%2F") == ok
    assert api.get("/api/aliveness-test/no-such-vhost").status == 404


def test_alarm_health_checks_fail_while_an_alarm_is_on():
    # A free-disk limit no disk meets raises the disk alarm at the monitor's first round.
    with BrokerThread(management=True, disk_free_limit_bytes=10**18) as running:
        api = Api(running.management_port)
        failed = poll(lambda: (r := api.get("/api/health/checks/alarms")).status == 503 and r,
                      what="the disk alarm")
        node = api.ok("/api/overview")["node"]
        assert failed.json == {"status": "failed", "reason": "There are alarms in effect in the cluster",
                               "alarms": [{"node": node, "resource": "disk"}]}
        assert api.get("/api/health/checks/local-alarms").json["reason"] == (
            "There are alarms in effect on the node")
        assert api.ok("/api/nodes")[0]["disk_free_alarm"] is True


# -- listing parameters ---------------------------------------------------------------------------


def test_columns_sort_and_pagination(api, vhost):
    v = seg(vhost)
    for name, count in (("b-two", 2), ("a-three", 3), ("c-one", 1)):
        api("PUT", f"/api/queues/{v}/{name}", {})
        for _ in range(count):
            api("POST", f"/api/exchanges/{v}/amq.default/publish",
                {"routing_key": name, "payload": "x", "payload_encoding": "string", "properties": {}})
    assert api.ok(f"/api/queues/{v}?columns=name,messages") == [
        {"name": "a-three", "messages": 3}, {"name": "b-two", "messages": 2}, {"name": "c-one", "messages": 1}]
    assert [q["name"] for q in api.ok(f"/api/queues/{v}?sort=messages")] == ["c-one", "b-two", "a-three"]
    assert [q["name"] for q in api.ok(f"/api/queues/{v}?sort=name&sort_reverse=true")] == [
        "c-one", "b-two", "a-three"]
    assert api.ok(f"/api/queues/{v}?columns=name,message_stats.publish&sort=message_stats.publish")[0] == {
        "name": "c-one", "message_stats": {"publish": 1}}
    assert api.ok(f"/api/queues/{v}/a-three?columns=name,durable") == {"name": "a-three", "durable": False}

    page = api.ok(f"/api/queues/{v}?page=1&page_size=2&columns=name")
    assert page == {"filtered_count": 3, "item_count": 2, "items": [{"name": "a-three"}, {"name": "b-two"}],
                    "page": 1, "page_count": 2, "page_size": 2, "total_count": 3}
    assert api.ok(f"/api/queues/{v}?page=2&page_size=2&columns=name")["items"] == [{"name": "c-one"}]
    assert api.ok(f"/api/queues/{v}?page=1&name=T&columns=name")["items"] == [
        {"name": "a-three"}, {"name": "b-two"}]
    assert api.ok(f"/api/queues/{v}?page=1&name=%5E.-t&use_regex=true&columns=name")["items"] == [
        {"name": "a-three"}, {"name": "b-two"}]
    assert api.get(f"/api/queues/{v}?page=3&page_size=2").json == {
        "error": "page_out_of_range", "reason": "Page out of range, page: 3 page size: 2, len: 3"}
    assert api.get(f"/api/queues/{v}?page=0").json == {
        "error": "invalid_pagination_parameters",
        "reason": "Invalid pagination parameters: page number 0, page size undefined"}
    assert api.get(f"/api/queues/{v}?page=1&page_size=501").status == 400
    assert api.get(f"/api/queues/{v}?page=x").status == 400
    # The overview keeps whole top-level columns, as RabbitMQ's does.
    assert set(api.ok("/api/overview?columns=rabbitmq_version,queue_totals.messages")) == {
        "rabbitmq_version", "queue_totals"}


# -- the web page ---------------------------------------------------------------------------------


def test_web_page_is_served_without_authentication(api):
    root = api.get("/", auth=None)
    assert root.status == 200 and root.headers["content-type"] == "text/html; charset=utf-8"
    assert b"<html" in root.body.lower()
    assert api.get("/no-such-file.js", auth=None).status == 404
    assert api.get("/..%2Fhttp.py", auth=None).status == 404
    assert api.get("/static/..%2F..%2Fconfig.py", auth=None).status == 404


def test_static_files_by_name_with_their_content_types(tmp_path):
    (tmp_path / "index.html").write_text("<html>page</html>")
    (tmp_path / "app.js").write_text("let a = 1;")
    (tmp_path / "app.css").write_text("p {}")
    files = StaticFiles(tmp_path)

    def get(path):
        return files(Request("GET", path, {}, {}, b""))

    assert get("/").body == b"<html>page</html>"
    assert get("/app.js").headers[0] == ("content-type", "text/javascript; charset=utf-8")
    assert get("/static/app.css").headers[0] == ("content-type", "text/css; charset=utf-8")
    assert get("/missing.js") is None and get("/../x") is None and get("/.hidden") is None
    assert StaticFiles(tmp_path / "absent")(Request("GET", "/", {}, {}, b"")).status == 200


# -- HTTP robustness ------------------------------------------------------------------------------


def _raw_http(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_garbage_and_silent_http_clients_do_not_disturb_amqp(broker, api, amqp):
    ch = amqp.channel()
    queue = unique("robust")
    ch.queue_declare(queue)
    silent = socket.create_connection(("127.0.0.1", broker.management_port))
    half = socket.create_connection(("127.0.0.1", broker.management_port))
    half.sendall(b"GET /api/overview HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    try:
        assert _raw_http(broker.management_port, b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert _raw_http(broker.management_port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").startswith(
            b"HTTP/1.1 400 ")
        too_large = _raw_http(broker.management_port,
                              b"POST /api/definitions HTTP/1.1\r\nHost: x\r\nContent-Length: 70000000\r\n\r\n")
        assert too_large.startswith(b"HTTP/1.1 400 ") and b"Exceeded HTTP request body size limit" in too_large
        # Meanwhile AMQP traffic and other HTTP clients go on.
        for i in range(50):
            ch.basic_publish("", queue, str(i).encode())
        assert ch.queue_declare(queue, passive=True).method.message_count == 50
        assert api.ok(f"/api/queues/%2F/{queue}")["messages"] == 50
    finally:
        silent.close()
        half.close()
    ch.queue_delete(queue)


def test_keep_alive_serves_many_requests_on_one_connection(api):
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
    try:
        conn.request("GET", "/api/whoami", headers=auth)
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        for _ in range(3):
            conn.request("GET", "/api/overview?columns=node", headers=auth)
            reply = conn.getresponse()
            assert reply.status == 200 and "node" in json.loads(reply.read())
        assert conn.sock is sock  # the same connection all along
    finally:
        conn.close()


def test_http_server_drops_slow_and_idle_clients_and_survives_a_failing_app():
    """The limits of amqp_broker.management.http, with short timeouts, on a real socket."""
    calls = []

    def app(request):
        calls.append(request.path)
        if request.path == "/boom":
            raise RuntimeError("handler bug")
        return Response.json({"path": request.path, "body": len(request.body)})

    limits = Limits(max_body=1000, head_timeout=0.3, idle_timeout=0.3, io_timeout=0.3, max_connections=3)
    server = HttpServer(app, limits)

    async def main():
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listeners)

            async def exchange(data: bytes) -> bytes:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    await stream.send_all(data)
                    received = b""
                    with trio.fail_after(5):
                        while chunk := await stream.receive_some(65536):
                            received += chunk
                    return received

            started = trio.current_time()
            assert await exchange(b"GET /x HTTP/1.1\r\nHost:") == b""  # dropped after head_timeout
            assert await exchange(b"") == b""  # idle: dropped after idle_timeout
            body = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
            assert await exchange(body) == b""  # a body that stops coming
            assert trio.current_time() - started < 3
            failing = await exchange(b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert failing.startswith(b"HTTP/1.1 500 ")
            chunked = await exchange(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                     b"Connection: close\r\n\r\n" + b"3e9\r\n" + b"a" * 1001 + b"\r\n0\r\n\r\n")
            assert chunked.startswith(b"HTTP/1.1 400 ") and b"body size limit" in chunked
            ok = await exchange(b"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b'{"path":"/fine","body":0}')
            # Over max_connections, new connections are closed at once.
            held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
            await trio.sleep(0.05)
            assert await exchange(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n") == b""
            for stream in held:
                await stream.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert calls == ["/boom", "/fine"]


# -- Prometheus -----------------------------------------------------------------------------------


def test_prometheus_listener_serves_metrics():
    with BrokerThread(prometheus=True) as running:
        assert running.management_port == 0 and running.prometheus_port
        reply = Api(running.prometheus_port).get("/metrics", auth=None)
        try:
            import amqp_broker.management.metrics  # noqa: F401 - written separately
        except ImportError:
            assert reply.status == 501
        else:
            assert reply.status == 200
            assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert Api(running.prometheus_port).get("/api/overview").status == 404


# -- rabbitmqadmin --------------------------------------------------------------------------------


RABBITMQADMIN = shutil.which("rabbitmqadmin")


@pytest.mark.skipif(RABBITMQADMIN is None, reason="rabbitmqadmin is not installed (it comes with rabbitmq-server)")
def test_rabbitmqadmin_against_our_broker(broker, tmp_path):
    def run(*args: str) -> str:
        result = subprocess.run([RABBITMQADMIN, "-P", str(broker.management_port), *args],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    queue = unique("admin-q")
    run("declare", "queue", f"name={queue}", "durable=false")
    assert "Message published" in run("publish", f"routing_key={queue}", "payload=hello")
    listed = json.loads(run("-f", "raw_json", "list", "queues", "name", "messages"))
    assert {"name": queue, "messages": 1} in listed
    assert queue in run("list", "queues")
    got = json.loads(run("-f", "raw_json", "get", f"queue={queue}", "ackmode=ack_requeue_false"))
    assert [(m["payload"], m["routing_key"]) for m in got] == [("hello", queue)]
    defs = tmp_path / "defs.json"
    run("export", str(defs))
    assert queue in [q["name"] for q in json.loads(defs.read_text())["queues"]]
    run("delete", "queue", f"name={queue}")
    assert queue not in run("list", "queues")
    run("import", str(defs))
    assert queue in run("list", "queues")
    assert "amqp_broker" in run("show", "overview")
    run("delete", "queue", f"name={queue}")
    assert os.path.exists(defs)
