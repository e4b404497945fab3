"""The core query/admin API (broker/admin/) against a running broker with real pika clients.

Every call goes through ``BrokerThread.call``, on the broker's loop, as the management HTTP API
and the control CLI make them. Expected error kinds and texts are RabbitMQ 3.10's management API
answers (its ``error`` and ``reason``), measured on a live RabbitMQ.
"""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import (
    AuthenticationError,
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
)
from pika_helpers import wait_for

from amqp_broker.broker.admin import AdminError
from amqp_broker.testing import BrokerThread

REFUSED_LOGIN = (ProbableAuthenticationError, AuthenticationError)
DEFAULT_EXCHANGES = ["", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic"]


class Admin:
    """The broker's Admin, each method called on the broker's loop."""

    def __init__(self, broker: BrokerThread):
        self._broker = broker

    def __getattr__(self, name):
        method = getattr(self._broker.server.admin, name)
        return lambda *args, **kwargs: self._broker.call(lambda: method(*args, **kwargs))


@pytest.fixture
def admin(fresh_broker) -> Admin:
    return Admin(fresh_broker)


def connect(broker: BrokerThread, vhost: str = "/", user: str = "guest", password: str = "guest",
            **client_properties) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.port, virtual_host=vhost, heartbeat=0,
        credentials=pika.PlainCredentials(user, password),
        client_properties=client_properties or None))


def fails(kind: str, reason: str, call, *args, **kwargs) -> None:
    """``call`` must raise AdminError(kind, reason)."""
    with pytest.raises(AdminError) as info:
        call(*args, **kwargs)
    assert (info.value.kind, info.value.reason) == (kind, reason)


def counts(stats: dict) -> dict:
    """A message_stats without its rates."""
    return {key: value for key, value in stats.items() if not key.endswith("_details")}


def round_trip(channel) -> None:
    """A synchronous method: everything sent before it has been read by the broker."""
    channel.exchange_declare("amq.direct", passive=True)


def closed_with(connection, code: int, text: str) -> None:
    """The broker closes ``connection`` with ``code`` and ``text``."""
    with pytest.raises(ConnectionClosedByBroker) as info:
        wait_for(connection, lambda: False)
    assert (info.value.reply_code, info.value.reply_text) == (code, text)


# -- snapshots --------------------------------------------------------------------------------------


def test_queue_snapshot_has_ready_unacked_and_consumers(fresh_broker, admin):
    conn = connect(fresh_broker)
    ch = conn.channel()
    ch.queue_declare("work", durable=True, arguments={"x-max-length": 10})
    ch.queue_declare("mine", exclusive=True)
    for _ in range(3):
        ch.basic_publish("", "work", b"12345")
    ch.basic_qos(prefetch_count=1)
    delivered = []
    ch.basic_consume("work", lambda c, m, p, b: delivered.append(m))
    wait_for(conn, lambda: delivered)

    work = admin.queue("/", "work")
    assert {key: work[key] for key in (
        "name", "vhost", "type", "durable", "auto_delete", "exclusive", "arguments", "messages",
        "messages_ready", "messages_unacknowledged", "message_bytes_ready", "consumers", "state",
    )} == {
        "name": "work", "vhost": "/", "type": "classic", "durable": True, "auto_delete": False,
        "exclusive": False, "arguments": {"x-max-length": 10}, "messages": 3, "messages_ready": 2,
        "messages_unacknowledged": 1, "message_bytes_ready": 10, "consumers": 1, "state": "running",
    }
    assert counts(work["message_stats"]) == {"publish": 3, "deliver_get": 1, "ack": 0, "redeliver": 0}
    (connection,) = admin.connections()
    mine = admin.queue("/", "mine")
    assert mine["exclusive"] and mine["owner_pid_details"] == {"name": connection["name"]}
    assert [q["name"] for q in admin.queues()] == ["mine", "work"]
    assert [q["name"] for q in admin.queues("/")] == ["mine", "work"]
    fails("not_found", "queue 'nope' in vhost '/' not found", admin.queue, "/", "nope")
    fails("not_found", "vhost 'nope' not found", admin.queues, "nope")
    conn.close()


def test_connection_snapshot_names_the_client(fresh_broker, admin):
    conn = connect(fresh_broker, connection_name="billing-worker")
    conn.channel()
    conn.channel()
    (info,) = admin.connections()
    peer_port = info["peer_port"]
    assert info["name"] == f"127.0.0.1:{peer_port} -> 127.0.0.1:{fresh_broker.port}"
    assert {key: info[key] for key in (
        "user", "vhost", "peer_host", "host", "port", "channels", "state", "type", "protocol",
        "auth_mechanism", "frame_max", "ssl",
    )} == {
        "user": "guest", "vhost": "/", "peer_host": "127.0.0.1", "host": "127.0.0.1",
        "port": fresh_broker.port, "channels": 2, "state": "running", "type": "network",
        "protocol": "AMQP 0-9-1", "auth_mechanism": "PLAIN", "frame_max": 131072, "ssl": False,
    }
    properties = info["client_properties"]
    assert properties["connection_name"] == "billing-worker"
    assert properties["product"] == "Pika Python Client Library"
    assert properties["capabilities"]["publisher_confirms"] is True
    assert admin.connection(info["name"]) == info
    assert admin.connections("/") == [info]
    assert admin.connections("other") == []
    fails("not_found", "connection 'nope' not found", admin.connection, "nope")
    conn.close()
    assert admin.connections() == []


def test_channel_and_consumer_snapshots(fresh_broker, admin):
    conn = connect(fresh_broker)
    plain = conn.channel()
    plain.queue_declare("q")
    plain.basic_qos(prefetch_count=7)
    plain.basic_consume("q", lambda *args: None, consumer_tag="the-tag", arguments={"x-priority": 3})
    confirming = conn.channel()
    confirming.confirm_delivery()
    confirming.basic_publish("", "q", b"x")
    transactional = conn.channel()
    transactional.tx_select()
    wait_for(conn, lambda: admin.channels()[0]["messages_unacknowledged"] == 1)

    rows = admin.channels()
    connection_name = admin.connections()[0]["name"]
    assert [(row["number"], row["name"]) for row in rows] == [
        (n, f"{connection_name} ({n})") for n in (1, 2, 3)
    ]
    first, second, third = rows
    assert (first["consumer_count"], first["prefetch_count"], first["messages_unacknowledged"]) == (1, 7, 1)
    assert (first["confirm"], first["transactional"]) == (False, False)
    assert (second["confirm"], second["transactional"]) == (True, False)
    assert (third["confirm"], third["transactional"]) == (False, True)
    assert counts(first["message_stats"])["deliver_get"] == 1
    assert counts(second["message_stats"])["publish"] == 1
    assert counts(second["message_stats"])["confirm"] == 1
    assert first["connection_details"]["name"] == connection_name
    assert admin.channels("other") == []

    (consumer,) = admin.consumers()
    assert {key: consumer[key] for key in (
        "consumer_tag", "queue", "ack_required", "exclusive", "prefetch_count", "active",
        "activity_status", "arguments",
    )} == {
        "consumer_tag": "the-tag", "queue": {"name": "q", "vhost": "/"}, "ack_required": True,
        "exclusive": False, "prefetch_count": 7, "active": True, "activity_status": "up",
        "arguments": {"x-priority": 3},
    }
    assert consumer["channel_details"]["connection_name"] == connection_name
    assert consumer["channel_details"]["number"] == 1
    plain.basic_cancel("the-tag")
    assert admin.consumers() == []
    conn.close()


def test_bindings_list_the_default_exchange_binding_first(fresh_broker, admin):
    conn = connect(fresh_broker)
    ch = conn.channel()
    ch.queue_declare("b-queue")
    ch.queue_declare("a-queue")
    ch.exchange_declare("events", "topic")
    ch.exchange_declare("audit", "fanout")
    ch.queue_bind("a-queue", "events", "order.*")
    ch.queue_bind("a-queue", "events", "order.created", arguments={"x-note": "kept"})
    ch.exchange_bind("audit", "events", "#")

    rows = admin.bindings("/")
    assert [(r["source"], r["destination"], r["destination_type"], r["routing_key"]) for r in rows] == [
        ("", "a-queue", "queue", "a-queue"),
        ("", "b-queue", "queue", "b-queue"),
        ("events", "audit", "exchange", "#"),
        ("events", "a-queue", "queue", "order.*"),
        ("events", "a-queue", "queue", "order.created"),
    ]
    assert rows[0]["properties_key"] == "a-queue" and rows[0]["arguments"] == {}
    assert rows[2]["properties_key"] == "%23"
    assert rows[3]["properties_key"] == "order.%2A"
    with_arguments = rows[4]
    assert with_arguments["arguments"] == {"x-note": "kept"}
    assert with_arguments["properties_key"].startswith("order.created~")
    assert admin.bindings() == rows
    assert admin.bindings("/", source="events", destination_type="exchange") == [rows[2]]
    assert admin.bindings("/", destination="a-queue") == [rows[0], rows[3], rows[4]]
    assert admin.bindings("/", source="", destination="b-queue") == [rows[1]]
    fails("not_found", "exchange 'nope' in vhost '/' not found", admin.bindings, "/", source="nope")
    conn.close()


def test_exchange_snapshots(fresh_broker, admin):
    conn = connect(fresh_broker)
    ch = conn.channel()
    ch.exchange_declare("alt", "fanout", durable=True)
    ch.exchange_declare("routed", "headers", auto_delete=True, internal=True,
                        arguments={"alternate-exchange": "alt"})
    assert [e["name"] for e in admin.exchanges()] == sorted(DEFAULT_EXCHANGES + ["alt", "routed"])
    assert admin.exchange("/", "routed") == {
        "name": "routed", "vhost": "/", "type": "headers", "durable": False, "auto_delete": True,
        "internal": True, "arguments": {"alternate-exchange": "alt"},
    }
    assert admin.exchange("/", "")["type"] == "direct"
    assert admin.exchange("/", "amq.match")["type"] == "headers"
    fails("not_found", "exchange 'nope' in vhost '/' not found", admin.exchange, "/", "nope")
    conn.close()


def test_users_vhosts_and_permissions_of_a_fresh_broker(admin):
    (guest,) = admin.users()
    assert guest["name"] == "guest" and guest["tags"] == ["administrator"]
    assert guest["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert admin.authenticate_user("guest", "guest")["name"] == "guest"
    assert admin.authenticate_user("guest", "wrong") is None
    assert [v["name"] for v in admin.vhosts()] == ["/"]
    assert admin.permissions() == [
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
    ]
    fails("not_found", "user 'nope' not found", admin.user, "nope")
    fails("not_found", "vhost 'nope' not found", admin.vhost, "nope")


# -- counters ---------------------------------------------------------------------------------------


def test_message_counters_after_known_traffic(fresh_broker, admin):
    """4 confirmed publishes, 1 dropped and 1 returned unroutable; a consumer acks 2, requeues 1
    (redelivered to it) and a basic.get takes 1. Closing the channels keeps every count."""
    conn = connect(fresh_broker)
    publisher = conn.channel()
    publisher.confirm_delivery()
    publisher.queue_declare("q")
    for n in range(4):
        publisher.basic_publish("", "q", b"%d" % n)
    publisher.basic_publish("amq.direct", "nowhere", b"dropped")
    returns = conn.channel()
    returned = []
    returns.add_on_return_callback(lambda *args: returned.append(args))
    returns.basic_publish("amq.direct", "nowhere", b"returned", mandatory=True)
    wait_for(conn, lambda: returned)

    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=3)
    got = []
    consumer.basic_consume("q", lambda c, m, p, b: got.append(m), consumer_tag="c")
    wait_for(conn, lambda: len(got) == 3)
    consumer.basic_ack(got[0].delivery_tag)
    consumer.basic_ack(got[1].delivery_tag)
    consumer.basic_nack(got[2].delivery_tag, requeue=True)
    wait_for(conn, lambda: len(got) == 5)  # the requeued one and the fourth
    assert sorted(m.redelivered for m in got[3:]) == [False, True]
    consumer.basic_cancel("c")
    consumer.basic_nack(0, multiple=True, requeue=True)
    getter = conn.channel()
    method, _, _ = getter.basic_get("q", auto_ack=True)
    assert method is not None and method.redelivered
    round_trip(consumer)

    expected = {"publish": 6, "deliver_get": 6, "ack": 2, "confirm": 5, "redeliver": 2,
                "return_unroutable": 1, "drop_unroutable": 1}
    assert counts(admin.overview()["message_stats"]) == expected
    assert counts(admin.vhost("/")["message_stats"]) == expected
    assert admin.message_totals() == expected
    by_channel = {row["number"]: counts(row["message_stats"]) for row in admin.channels()}
    assert by_channel[1]["publish"] == 5 and by_channel[1]["confirm"] == 5
    assert by_channel[2]["return_unroutable"] == 1
    assert (by_channel[3]["deliver_get"], by_channel[3]["ack"], by_channel[3]["redeliver"]) == (5, 2, 1)
    assert (by_channel[4]["deliver_get"], by_channel[4]["redeliver"]) == (1, 1)
    assert counts(admin.queue("/", "q")["message_stats"]) == {
        "publish": 4, "deliver_get": 6, "ack": 2, "redeliver": 2}
    overview = admin.overview()
    assert overview["object_totals"] == {
        "connections": 1, "channels": 4, "consumers": 0, "queues": 1, "exchanges": 6}
    assert overview["queue_totals"] == {
        "messages": 1, "messages_ready": 1, "messages_unacknowledged": 0}

    for channel in (publisher, returns, consumer, getter):
        channel.close()
    assert admin.channels() == []
    assert admin.message_totals() == expected
    assert counts(admin.vhost("/")["message_stats"]) == expected
    conn.close()
    assert admin.message_totals() == expected


# -- queues and exchanges ---------------------------------------------------------------------------


def test_declare_and_delete_queues_with_rabbitmqs_errors(fresh_broker, admin):
    assert admin.declare_queue("/", "q") is True
    assert admin.declare_queue("/", "q") is False  # an equivalent redeclare
    assert admin.queue("/", "q")["durable"] is True
    fails("bad_request",
          "inequivalent arg 'durable' for queue 'q' in vhost '/': received 'false' but current is 'true'",
          admin.declare_queue, "/", "q", durable=False)
    fails("bad_request",
          "invalid arg 'x-max-length' for queue 'bad' in vhost '/': \"expected integer, got longstr\"",
          admin.declare_queue, "/", "bad", arguments={"x-max-length": "ten"})
    fails("not_authorised", "Access refused.", admin.declare_queue, "/", "amq.mine")
    fails("not_found", "vhost 'nope' not found", admin.declare_queue, "nope", "q")

    conn = connect(fresh_broker)
    ch = conn.channel()
    ch.queue_declare("q", passive=True)  # a client sees the queue the API declared
    ch.basic_publish("", "q", b"one")
    ch.basic_publish("", "q", b"two")
    ch.basic_consume("q", lambda *args: None, auto_ack=False, consumer_tag="c")
    round_trip(ch)
    fails("bad_request", "queue 'q' in vhost '/' in use", admin.delete_queue, "/", "q", if_unused=True)
    ch.basic_cancel("c")
    ch.basic_recover(requeue=True)
    wait_for(conn, lambda: admin.queue("/", "q")["messages_ready"] == 2)
    fails("bad_request", "queue 'q' in vhost '/' not empty", admin.delete_queue, "/", "q", if_empty=True)
    assert admin.delete_queue("/", "q") == 2
    fails("not_found", "queue 'q' in vhost '/' not found", admin.delete_queue, "/", "q")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare("q", passive=True)
    assert info.value.reply_code == 404

    # A consumer of a queue the API deletes is cancelled, as by any other delete.
    ch = conn.channel()
    cancelled = []
    ch.add_on_cancel_callback(cancelled.append)
    ch.queue_declare("watched")
    ch.basic_consume("watched", lambda *args: None, consumer_tag="w")
    assert admin.delete_queue("/", "watched") == 0
    wait_for(conn, lambda: cancelled)
    assert cancelled[0].method.consumer_tag == "w"
    conn.close()


def test_declare_and_delete_exchanges_with_rabbitmqs_errors(fresh_broker, admin):
    admin.declare_exchange("/", "events", "topic", durable=False, arguments={"x-note": 1})
    admin.declare_exchange("/", "events", "topic", durable=False, arguments={"x-note": 1})
    assert admin.exchange("/", "events")["arguments"] == {"x-note": 1}
    fails("bad_request",
          "inequivalent arg 'type' for exchange 'events' in vhost '/': received 'direct' but current is 'topic'",
          admin.declare_exchange, "/", "events", "direct", durable=False, arguments={"x-note": 1})
    fails("bad_request", "unknown exchange type 'nosuch'", admin.declare_exchange, "/", "x", "nosuch")
    fails("not_authorised", "Access refused.", admin.declare_exchange, "/", "amq.mine", "direct")
    fails("not_authorised", "Access refused.", admin.delete_exchange, "/", "amq.direct")
    fails("not_authorised", "Access refused.", admin.delete_exchange, "/", "")
    fails("not_found", "exchange 'nope' in vhost '/' not found", admin.delete_exchange, "/", "nope")

    conn = connect(fresh_broker)
    ch = conn.channel()
    ch.exchange_declare("events", "topic", passive=True)
    ch.queue_declare("q")
    ch.queue_bind("q", "events", "#")
    fails("bad_request", "exchange 'events' in vhost '/' in use",
          admin.delete_exchange, "/", "events", if_unused=True)
    admin.delete_exchange("/", "events")
    assert admin.bindings("/", destination="q") == [admin.bindings("/")[0]]  # the default one left
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_declare("events", "topic", passive=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        404, "NOT_FOUND - no exchange 'events' in vhost '/'")
    conn.close()


def test_bind_and_unbind_by_properties_key(fresh_broker, admin):
    admin.declare_queue("/", "q", durable=False)
    admin.declare_exchange("/", "events", "topic", durable=False)
    admin.declare_exchange("/", "fan", "fanout", durable=False)
    plain = admin.bind("/", "events", "q", "queue", "a/b.*")
    assert plain == "a%2Fb.%2A"
    with_arguments = admin.bind("/", "events", "q", "queue", "a/b.*", {"x-tag": "second"})
    assert with_arguments.startswith("a%2Fb.%2A~") and with_arguments != plain
    assert admin.bind("/", "fan", "events", "exchange", "") == "~"
    fails("not_found", "no queue 'nope' in vhost '/'", admin.bind, "/", "events", "nope", "queue", "k")
    fails("not_found", "no exchange 'nope' in vhost '/'", admin.bind, "/", "nope", "q", "queue", "k")
    fails("not_found", "no exchange 'nope' in vhost '/'", admin.bind, "/", "fan", "nope", "exchange")
    fails("not_authorised", "Access refused.", admin.bind, "/", "", "q", "queue", "k")

    conn = connect(fresh_broker)
    ch = conn.channel()
    ch.basic_publish("fan", "ignored", b"through two exchanges")
    round_trip(ch)
    method, _, body = ch.basic_get("q", auto_ack=True)
    assert method is None  # the fanout's key does not match a/b.* ...
    ch.basic_publish("fan", "a/b.c", b"matched")
    ch.basic_publish("events", "a/b.c", b"direct")
    round_trip(ch)
    bodies = [ch.basic_get("q", auto_ack=True)[2] for _ in range(2)]
    assert bodies == [b"matched", b"direct"]

    keys = [(r["properties_key"], r["arguments"]) for r in admin.bindings("/", source="events")]
    assert keys == [(plain, {}), (with_arguments, {"x-tag": "second"})]
    admin.unbind("/", "events", "q", "queue", with_arguments)
    assert [r["properties_key"] for r in admin.bindings("/", source="events")] == [plain]
    fails("not_found", "binding not found", admin.unbind, "/", "events", "q", "queue", with_arguments)
    admin.unbind("/", "events", "q", "queue", plain)
    admin.unbind("/", "fan", "events", "exchange", "~")
    assert admin.bindings("/", source="events") == admin.bindings("/", source="fan") == []
    ch.basic_publish("events", "a/b.c", b"unrouted now")
    round_trip(ch)
    assert ch.basic_get("q", auto_ack=True)[0] is None
    conn.close()


def test_purge(fresh_broker, admin):
    conn = connect(fresh_broker)
    ch = conn.channel()
    ch.queue_declare("q")
    for _ in range(3):
        ch.basic_publish("", "q", b"x")
    round_trip(ch)
    assert admin.purge_queue("/", "q") == 3
    assert ch.queue_declare("q", passive=True).method.message_count == 0
    fails("not_found", "queue 'nope' in vhost '/' not found", admin.purge_queue, "/", "nope")
    conn.close()


# -- messages ---------------------------------------------------------------------------------------


def test_get_with_and_without_requeue(fresh_broker, admin):
    conn = connect(fresh_broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"first body", pika.BasicProperties(
        content_type="text/plain", headers={"n": 1}, delivery_mode=2))
    ch.basic_publish("", "q", b"second")
    ch.basic_publish("", "q", b"third")
    round_trip(ch)

    first, second = admin.get_messages("/", "q", 2, requeue=True, truncate=5)
    assert first == {
        "payload_bytes": 10, "redelivered": False, "exchange": "", "routing_key": "q",
        "message_count": 2, "properties": {"content_type": "text/plain", "headers": {"n": 1},
                                           "delivery_mode": 2},
        "body": b"first",
    }
    assert (second["body"], second["message_count"]) == (b"secon", 1)
    assert admin.queue("/", "q")["messages_ready"] == 3  # put back, in place

    (again,) = admin.get_messages("/", "q", 1, requeue=False)
    assert (again["body"], again["redelivered"]) == (b"first body", True)
    assert admin.queue("/", "q")["messages_ready"] == 2

    got = []
    ch.basic_consume("q", lambda c, m, p, b: got.append((b, m.redelivered)), auto_ack=True)
    wait_for(conn, lambda: len(got) == 2)
    assert got == [(b"second", True), (b"third", False)]
    assert admin.get_messages("/", "q", 5) == []
    fails("not_found", "NOT_FOUND - no queue 'nope' in vhost '/'", admin.get_messages, "/", "nope")
    conn.close()


def test_publish_reports_whether_it_was_routed(fresh_broker, admin):
    conn = connect(fresh_broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.exchange_declare("hidden", "fanout", internal=True)
    assert admin.publish("/", "", "q", b"hello", {
        "content_type": "application/json", "headers": {"k": "v"}, "delivery_mode": 2,
        "correlation_id": "c-1"}) is True
    assert admin.publish("/", "amq.direct", "nowhere", b"lost") is False
    fails("bad_request", "404 NOT_FOUND - no exchange 'nope' in vhost '/'",
          admin.publish, "/", "nope", "q", b"x")
    fails("bad_request", "403 ACCESS_REFUSED - cannot publish to internal exchange 'hidden' in vhost '/'",
          admin.publish, "/", "hidden", "", b"x")
    method, properties, body = ch.basic_get("q", auto_ack=True)
    assert (body, method.exchange, method.routing_key) == (b"hello", "", "q")
    assert (properties.content_type, properties.headers, properties.delivery_mode,
            properties.correlation_id) == ("application/json", {"k": "v"}, 2, "c-1")
    assert ch.basic_get("q", auto_ack=True)[0] is None
    conn.close()


# -- connections ------------------------------------------------------------------------------------


def test_close_connection_with_320_and_the_reason(fresh_broker, admin):
    first = connect(fresh_broker, connection_name="first")
    second = connect(fresh_broker, connection_name="second")
    names = {c["client_properties"]["connection_name"]: c["name"] for c in admin.connections()}
    admin.close_connection(names["first"])
    closed_with(first, 320, "CONNECTION_FORCED - Closed via management plugin")
    admin.close_connection(names["second"], "maintenance window")
    closed_with(second, 320, "CONNECTION_FORCED - maintenance window")
    assert admin.connections() == []
    fails("not_found", f"connection '{names['first']}' not found", admin.close_connection, names["first"])

    admin.add_vhost("other")
    admin.set_permissions("guest", "other")
    on_root, on_other = connect(fresh_broker), connect(fresh_broker, "other")
    assert admin.close_all_connections("moving", vhost="other") == 1
    closed_with(on_other, 320, "CONNECTION_FORCED - moving")
    assert on_root.is_open
    assert admin.close_all_connections() == 1
    closed_with(on_root, 320, "CONNECTION_FORCED - Closed via management plugin")
    assert admin.close_all_connections() == 0


# -- users, vhosts, permissions ---------------------------------------------------------------------


def test_users_crud(fresh_broker, admin):
    assert admin.add_user("alice", "secret", tags=["monitoring"]) is True
    admin.set_permissions("alice", "/")
    connect(fresh_broker, user="alice", password="secret").close()
    assert admin.user("alice")["tags"] == ["monitoring"]
    assert admin.add_user("alice", "other", tags=["management"]) is False  # an update
    assert admin.user("alice")["tags"] == ["management"]
    assert admin.permissions(user="alice")[0]["vhost"] == "/"  # kept by the update
    with pytest.raises(REFUSED_LOGIN):
        connect(fresh_broker, user="alice", password="secret")
    admin.change_password("alice", "third")
    connect(fresh_broker, user="alice", password="third").close()
    admin.set_user_tags("alice", ["administrator", "policymaker"])
    assert admin.user("alice")["tags"] == ["administrator", "policymaker"]
    assert admin.authenticate_user("alice", "third")["name"] == "alice"
    admin.clear_password("alice")
    assert admin.authenticate_user("alice", "third") is None
    with pytest.raises(REFUSED_LOGIN):
        connect(fresh_broker, user="alice", password="third")

    # A hash made elsewhere (RabbitMQ's own format) logs in as its password.
    hashed = admin.user("guest")["password_hash"]
    assert admin.add_user("bob", password_hash=hashed) is True
    admin.set_permissions("bob", "/")
    bob = connect(fresh_broker, user="bob", password="guest")
    assert [u["name"] for u in admin.users()] == ["alice", "bob", "guest"]
    admin.delete_user("bob")
    closed_with(bob, 320, "CONNECTION_FORCED - user 'bob' is deleted")
    assert [u["name"] for u in admin.users()] == ["alice", "guest"]
    fails("not_found", "user 'bob' not found", admin.delete_user, "bob")
    fails("not_found", "user 'bob' not found", admin.change_password, "bob", "x")
    fails("bad_request", "user name must not be empty", admin.add_user, "", "x")
    fails("bad_request", "password or password_hash is required", admin.add_user, "carol")
    fails("bad_request", "give password or password_hash, not both",
          admin.add_user, "carol", "x", password_hash=hashed)


def test_vhosts_and_permissions_crud(fresh_broker, admin):
    assert admin.add_vhost("staging") is True
    assert admin.add_vhost("staging") is False
    assert [v["name"] for v in admin.vhosts()] == ["/", "staging"]
    with pytest.raises(ProbableAccessDeniedError) as info:
        connect(fresh_broker, "staging")
    assert "(530) \"NOT_ALLOWED - access to vhost 'staging' refused for user 'guest'\"" in str(info.value)

    admin.set_permissions("guest", "staging", "^conf", "^write", "^read")
    conn = connect(fresh_broker, "staging")
    assert admin.permissions("staging") == [
        {"user": "guest", "vhost": "staging", "configure": "^conf", "write": "^write", "read": "^read"}
    ]
    assert [p["vhost"] for p in admin.permissions(user="guest")] == ["/", "staging"]
    conn.close()

    admin.clear_permissions("guest", "staging")
    assert admin.permissions("staging") == []
    with pytest.raises(ProbableAccessDeniedError):
        connect(fresh_broker, "staging")
    fails("not_found", "permissions of user 'guest' on vhost 'staging' not found",
          admin.clear_permissions, "guest", "staging")
    fails("bad_request", "vhost_or_user_not_found", admin.set_permissions, "nobody", "staging")
    fails("bad_request", "vhost_or_user_not_found", admin.set_permissions, "guest", "nowhere")
    with pytest.raises(AdminError) as bad_regex:
        admin.set_permissions("guest", "staging", "(")
    assert bad_regex.value.kind == "bad_request"
    assert bad_regex.value.reason.startswith("invalid configure regex '('")
    fails("bad_request", "vhost name must not be empty", admin.add_vhost, "")


def test_delete_vhost_closes_its_connections_and_takes_its_grants(fresh_broker, admin):
    admin.add_vhost("doomed")
    admin.set_permissions("guest", "doomed")
    admin.declare_queue("doomed", "q")
    admin.declare_exchange("doomed", "x", "topic")
    admin.bind("doomed", "x", "q", "queue", "#")
    inside, outside = connect(fresh_broker, "doomed"), connect(fresh_broker)
    admin.delete_vhost("doomed")
    closed_with(inside, 320, "CONNECTION_FORCED - vhost 'doomed' is deleted")
    assert outside.is_open
    assert [v["name"] for v in admin.vhosts()] == ["/"]
    assert [p["vhost"] for p in admin.permissions()] == ["/"]
    assert admin.queues() == []
    fails("not_found", "vhost 'doomed' not found", admin.exchanges, "doomed")
    fails("not_found", "vhost 'doomed' not found", admin.delete_vhost, "doomed")
    # Made again, the vhost is empty and nobody may use it until granted.
    admin.add_vhost("doomed")
    assert admin.queues("doomed") == [] and admin.permissions("doomed") == []
    assert [e["name"] for e in admin.exchanges("doomed")] == DEFAULT_EXCHANGES
    outside.close()


# -- definitions, reset and restarts ----------------------------------------------------------------


DEFINITIONS = {
    "vhosts": [{"name": "imported"}],
    "users": [{"name": "importer", "password_hash": "", "tags": ["management"]}],
    "permissions": [{"user": "guest", "vhost": "imported", "configure": ".*", "write": ".*",
                     "read": ".*"}],
    "exchanges": [{"name": "incoming", "vhost": "imported", "type": "direct", "durable": True,
                   "auto_delete": False, "internal": False, "arguments": {}}],
    "queues": [{"name": "kept", "vhost": "imported", "durable": True, "auto_delete": False,
                "arguments": {"x-queue-type": "classic"}}],
    "bindings": [{"source": "incoming", "vhost": "imported", "destination": "kept",
                  "destination_type": "queue", "routing_key": "in", "arguments": {}}],
}


def test_definitions_export_and_import_while_running_survive_a_restart(tmp_path):
    with BrokerThread(data_dir=str(tmp_path)) as broker:
        admin = Admin(broker)
        bystander = connect(broker)
        applied = admin.import_definitions(DEFINITIONS)
        assert applied["queues"] == 1 and applied["bindings"] == 1
        assert bystander.is_open  # an import does not disturb open connections
        conn = connect(broker, "imported")
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("incoming", "in", b"persisted", pika.BasicProperties(delivery_mode=2))
        exported = admin.export_definitions()
        assert {"name": "kept", "vhost": "imported", "type": "classic", "durable": True,
                "auto_delete": False, "arguments": {"x-queue-type": "classic"}} in exported["queues"]
        assert any(b["source"] == "incoming" and b["destination"] == "kept" and b["routing_key"] == "in"
                   for b in exported["bindings"])
        assert "importer" in [u["name"] for u in exported["users"]]
        with pytest.raises(AdminError) as info:
            admin.import_definitions({"queues": [{"name": "x", "vhost": "nowhere", "durable": True}]})
        assert info.value.kind == "bad_request"
        conn.close()
        bystander.close()

    with BrokerThread(data_dir=str(tmp_path)) as broker:
        admin = Admin(broker)
        assert admin.queue("imported", "kept")["messages_ready"] == 1
        assert admin.exchange("imported", "incoming")["durable"] is True
        assert [b["routing_key"] for b in admin.bindings("imported", source="incoming")] == ["in"]
        assert admin.user("importer")["tags"] == ["management"]
        conn = connect(broker, "imported")
        ch = conn.channel()
        assert ch.basic_get("kept", auto_ack=True)[2] == b"persisted"
        conn.close()
        # Importing RabbitMQ's export of itself changes nothing.
        before = admin.export_definitions()
        admin.import_definitions(before)
        assert admin.export_definitions() == before


def test_users_vhosts_and_permissions_made_through_admin_survive_a_restart(tmp_path):
    with BrokerThread(data_dir=str(tmp_path)) as broker:
        admin = Admin(broker)
        admin.add_vhost("app")
        admin.add_vhost("gone")
        admin.add_user("app-user", "pw1", tags=["monitoring"])
        admin.change_password("app-user", "pw2")
        admin.set_permissions("app-user", "app", "^app\\.", ".*", ".*")
        admin.set_permissions("app-user", "/")
        admin.clear_permissions("app-user", "/")
        admin.add_user("temporary", "x")
        admin.delete_user("temporary")
        admin.set_user_tags("guest", ["administrator", "management"])
        admin.delete_vhost("gone")
        users, vhosts, permissions = admin.users(), admin.vhosts(), admin.permissions()

    with BrokerThread(data_dir=str(tmp_path)) as broker:
        admin = Admin(broker)
        assert admin.users() == users
        assert [v["name"] for v in admin.vhosts()] == [v["name"] for v in vhosts] == ["/", "app"]
        assert admin.permissions() == permissions
        assert admin.permissions(user="app-user") == [
            {"user": "app-user", "vhost": "app", "configure": "^app\\.", "write": ".*", "read": ".*"}
        ]
        connect(broker, "app", "app-user", "pw2").close()
        with pytest.raises(ProbableAccessDeniedError):
            connect(broker, "/", "app-user", "pw2")


def test_reset_goes_back_to_guest_and_the_default_vhost(tmp_path):
    with BrokerThread(data_dir=str(tmp_path)) as broker:
        admin = Admin(broker)
        admin.add_vhost("extra")
        admin.add_user("someone", "pw")
        admin.set_permissions("someone", "extra")
        admin.change_password("guest", "changed")
        admin.declare_queue("/", "durable-q")
        admin.declare_exchange("/", "durable-x", "fanout")
        conn = connect(broker, password="changed")
        conn.channel().basic_publish("", "durable-q", b"x")

        admin.reset()
        closed_with(conn, 320, "CONNECTION_FORCED - broker reset")
        assert [u["name"] for u in admin.users()] == ["guest"]
        assert admin.user("guest")["tags"] == ["administrator"]
        assert [v["name"] for v in admin.vhosts()] == ["/"]
        assert admin.permissions() == [
            {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
        assert admin.queues() == []
        assert [e["name"] for e in admin.exchanges()] == DEFAULT_EXCHANGES
        assert set(admin.message_totals().values()) == {0}
        connect(broker).close()  # guest/guest again

    with BrokerThread(data_dir=str(tmp_path)) as broker:  # the reset state is the stored one
        admin = Admin(broker)
        assert [u["name"] for u in admin.users()] == ["guest"]
        assert [v["name"] for v in admin.vhosts()] == ["/"]
        assert admin.queues() == []
        assert [e["name"] for e in admin.exchanges()] == DEFAULT_EXCHANGES
        connect(broker).close()


# -- edges ------------------------------------------------------------------------------------------


def test_streams_refuse_purge_and_get_as_rabbitmq_does(admin):
    admin.declare_queue("/", "s", arguments={"x-queue-type": "stream"})
    fails("bad_request", "queue.purge not supported by stream queues queue 's' in vhost '/'",
          admin.purge_queue, "/", "s")
    fails("bad_request", "540 basic.get not supported by stream queues queue 's' in vhost '/'",
          admin.get_messages, "/", "s")


def test_tags_may_be_a_comma_separated_string(admin):
    admin.add_user("tagged", "pw", tags="administrator, management")
    assert admin.user("tagged")["tags"] == ["administrator", "management"]
    admin.set_user_tags("tagged", "monitoring")
    assert admin.user("tagged")["tags"] == ["monitoring"]
    admin.set_user_tags("tagged", "")
    assert admin.user("tagged")["tags"] == []


def test_bindings_of_a_source_across_vhosts(admin):
    admin.add_vhost("second")
    admin.declare_exchange("second", "only-here", "fanout")
    admin.declare_queue("second", "q")
    admin.bind("second", "only-here", "q")
    assert [(b["vhost"], b["source"]) for b in admin.bindings(source="only-here")] == [
        ("second", "only-here")]


def test_rates_of_objects_gone_are_forgotten(fresh_broker, admin):
    """Every listing samples the counters of what it lists for its rates; the samples of
    channels since closed go once a whole rate window has passed without them."""
    conn = connect(fresh_broker)
    kept = conn.channel()
    for _ in range(20):
        doomed = connect(fresh_broker)  # a new connection each time: channel numbers repeat
        doomed.channel()
        assert len(admin.channels()) == 2
        doomed.close()
    server_admin = fresh_broker.server.admin

    def age_samples() -> None:
        from amqp_broker.broker.admin import RATE_WINDOW

        for samples in server_admin._samples.values():
            samples[:] = [(at - RATE_WINDOW - 1, totals) for at, totals in samples]
        server_admin._pruned_at -= RATE_WINDOW + 1

    assert fresh_broker.call(lambda: len(server_admin._samples)) == 21
    fresh_broker.call(age_samples)
    assert [row["number"] for row in admin.channels()] == [kept.channel_number]
    assert fresh_broker.call(lambda: len(server_admin._samples)) == 1  # the open channel's
    kept.close()
    conn.close()


def test_an_acting_user_is_held_to_its_permissions(fresh_broker, admin):
    """Given the acting user, Admin decides as RabbitMQ's management API does (the HTTP table is
    tests/management/test_http_permissions.py); without one the broker acts for itself."""
    admin.add_user("narrow", "pw", tags=["management"])
    admin.set_permissions("narrow", "/", "^cfg-", "^w-", "^r-")
    for exchange in ("w-t", "r-t"):
        admin.declare_exchange("/", exchange, "topic", durable=False)
        admin.set_topic_permissions("narrow", "/", exchange, "^a\\.", "^a\\.")
    admin.add_user("boss", "pw", tags=["administrator"])  # no permissions on "/"
    for name in ("r-q", "w-q", "plain-q"):
        admin.declare_queue("/", name, durable=False)
        admin.publish("/", "", name, b"m")
    admin.declare_exchange("/", "plain-x", "direct", durable=False)
    refused = ("not_authorised", "Access refused.")

    assert admin.declare_queue("/", "cfg-q", durable=False, user="narrow") is True
    fails(*refused, admin.declare_queue, "/", "plain-new", durable=False, user="narrow")
    fails(*refused, admin.declare_queue, "/", "cfg-dl", durable=False,
          arguments={"x-dead-letter-exchange": "plain-x"}, user="narrow")
    fails(*refused, admin.delete_queue, "/", "plain-q", user="narrow")
    fails(*refused, admin.purge_queue, "/", "plain-q", user="narrow")
    assert admin.purge_queue("/", "r-q", user="narrow") == 1
    fails("not_authorised", "ACCESS_REFUSED - access to queue 'plain-q' in vhost '/' refused for "
          "user 'narrow'", admin.get_messages, "/", "plain-q", user="narrow")
    fails("bad_request", "403 ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' "
          "refused for user 'narrow'", admin.publish, "/", "", "w-q", b"m", user="narrow")
    fails("bad_request", "403 ACCESS_REFUSED - access to topic 'b' in exchange 'w-t' in "
          "vhost '/' refused for user 'narrow'", admin.publish, "/", "w-t", "b", b"m",
          user="narrow")
    fails(*refused, admin.bind, "/", "plain-x", "w-q", user="narrow")
    fails(*refused, admin.bind, "/", "r-t", "w-q", routing_key="b", user="narrow")
    assert admin.bind("/", "r-t", "w-q", routing_key="a.b", user="narrow") == "a.b"
    assert admin.publish("/", "w-t", "a.b", b"m", user="narrow") is False
    fails(*refused, admin.declare_exchange, "/", "plain-x2", "direct", user="narrow")
    fails(*refused, admin.delete_exchange, "/", "plain-x", user="narrow")
    fails("not_authorised", "ACCESS_REFUSED - access to queue 'aliveness-test' in vhost '/' "
          "refused for user 'narrow'", admin.aliveness_test, "/", user="narrow")

    # An administrator without permissions on the vhost may not act in it at all.
    for call, args in ((admin.declare_queue, ("/", "cfg-q2")), (admin.get_messages, ("/", "r-q")),
                       (admin.publish, ("/", "", "r-q", b"m")), (admin.purge_queue, ("/", "r-q")),
                       (admin.aliveness_test, ("/",))):
        fails(*refused, call, *args, user="boss")
    # The broker's own calls are not checked.
    assert admin.aliveness_test("/") is True
    assert admin.delete_queue("/", "plain-q") == 1
