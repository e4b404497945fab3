"""The STOMP listener with real clients over real sockets: stomp.py and pika against one broker,
every destination form, ack modes, transactions, receipts, heart-beats, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pika
import pytest

import stomp
from stomp_wire import Events, RawStomp, headers_of, open_client


@pytest.fixture
def name():
    tag = uuid.uuid4().hex[:8]
    return lambda base="q": f"stomp.{base}.{tag}"


@pytest.fixture
def client(stomp_broker):
    opened = []

    def make(**kwargs):
        conn, events = open_client(stomp_broker.stomp_port, **kwargs)
        opened.append(conn)
        return conn, events

    yield make
    for conn in opened:
        if conn.is_connected():
            conn.disconnect()


def _get(amqp, queue, deadline=10.0):
    """basic.get until a message is there (it is routed by another connection's thread)."""
    end = time.monotonic() + deadline
    while True:
        method, props, body = amqp.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        assert time.monotonic() < end, f"no message on {queue}"
        time.sleep(0.02)


# -- destinations ------------------------------------------------------------------------------


def test_queue_destination_declares_a_durable_queue_and_delivers(client, amqp, name):
    queue = name()
    conn, events = client()
    conn.subscribe(f"/queue/{queue}", id="1", ack="auto")
    conn.send(f"/queue/{queue}", "hello", receipt="sent")
    assert events.receipt() == "sent"
    message = events.message()
    assert message.body == "hello"
    assert message.headers["destination"] == f"/queue/{queue}"
    assert message.headers["subscription"] == "1"
    assert message.headers["redelivered"] == "false"
    declared = amqp.queue_declare(queue, passive=True)
    assert declared.method.consumer_count == 1
    conn.unsubscribe("1")
    amqp.queue_delete(queue)


def test_topic_subscriptions_each_get_a_copy(client, name):
    key = name("key")
    one, events_one = client()
    two, events_two = client()
    one.subscribe(f"/topic/{key}", id="a", receipt="ra")
    two.subscribe(f"/topic/{key}.*", id="b", receipt="rb")
    assert events_one.receipt() == "ra" and events_two.receipt() == "rb"
    one.send(f"/topic/{key}", "to one")
    one.send(f"/topic/{key}.x", "to two")
    first, second = events_one.message(), events_two.message()
    assert (first.body, first.headers["destination"]) == ("to one", f"/topic/{key}")
    assert (second.body, second.headers["destination"]) == ("to two", f"/topic/{key}.x")


def test_topic_subscription_queue_goes_with_the_subscription(client, stomp_broker, name):
    key = name("gone")
    existing = lambda: set(stomp_broker.server.broker.vhosts["/"].queues)  # noqa: E731
    before = stomp_broker.call(existing)
    conn, events = client()
    conn.subscribe(f"/topic/{key}", id="t", receipt="sub")
    assert events.receipt() == "sub"
    queues = stomp_broker.call(existing) - before
    assert len(queues) == 1 and next(iter(queues)).startswith("stomp-subscription-")
    conn.unsubscribe("t", receipt="unsub")
    assert events.receipt() == "unsub"
    left = stomp_broker.call(lambda: queues & existing())
    assert left == set()  # auto-delete, as RabbitMQ declares it


def test_durable_topic_subscription_keeps_messages_while_away(client, amqp, name):
    key = name("durable")
    conn, events = client()
    conn.subscribe(f"/topic/{key}", id="d", headers={"durable": "true", "auto-delete": "false",
                                                     "x-queue-name": key})
    conn.disconnect(receipt="bye")
    publisher, pub_events = client()
    publisher.send(f"/topic/{key}", "while away", receipt="p")
    assert pub_events.receipt() == "p"
    assert amqp.queue_declare(key, passive=True).method.message_count == 1
    again, events = client()
    again.subscribe(f"/topic/{key}", id="d", headers={"durable": "true", "auto-delete": "false",
                                                      "x-queue-name": key})
    assert events.message().body == "while away"
    again.unsubscribe("d", headers={"durable": "true", "x-queue-name": key}, receipt="u")
    assert events.receipt() == "u"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        amqp.queue_declare(key, passive=True)  # the durable unsubscribe deleted it


def test_exchange_destination_binds_with_the_pattern(client, amqp, name):
    exchange = name("x")
    amqp.exchange_declare(exchange, "direct")
    conn, events = client()
    conn.subscribe(f"/exchange/{exchange}/red", id="e", receipt="s")
    assert events.receipt() == "s"
    amqp.basic_publish(exchange, "blue", b"not me")
    amqp.basic_publish(exchange, "red", b"me")
    message = events.message()
    assert message.body == "me"
    assert message.headers["destination"] == f"/exchange/{exchange}/red"
    conn.send(f"/exchange/{exchange}/red", "from stomp")
    assert events.message().body == "from stomp"
    amqp.exchange_delete(exchange)


def test_amq_queue_destination_uses_an_existing_queue_without_declaring(client, amqp, name):
    queue = name()
    amqp.queue_declare(queue, arguments={"x-max-length": 5})  # a redeclare would clash
    conn, events = client()
    conn.subscribe(f"/amq/queue/{queue}", id="q", receipt="s")
    assert events.receipt() == "s"
    conn.send(f"/amq/queue/{queue}", "ok")
    assert events.message().headers["destination"] == f"/queue/{queue}"
    conn.unsubscribe("q")
    amqp.queue_delete(queue)


def test_amq_queue_destination_for_a_missing_queue_is_an_error_that_ends_the_session(stomp_broker, name):
    raw = RawStomp("127.0.0.1", stomp_broker.stomp_port)
    assert raw.connect()[0] == "CONNECTED"
    raw.send(f"SUBSCRIBE\nid:1\ndestination:/amq/queue/{name()}\n\n".encode() + b"\x00")
    command, headers, body = raw.frame()
    assert command == "ERROR" and dict(headers)["message"] == "not_found"
    assert body.decode().startswith("NOT_FOUND - no queue 'stomp.q.")
    raw.wait_closed()


def test_temp_queue_reply_to_round_trip_with_an_amqp_service(client, amqp, name):
    service = name("rpc")
    amqp.queue_declare(service, durable=True)
    conn, events = client()
    conn.send(f"/queue/{service}", "ping", headers={"reply-to": "/temp-queue/answers"},
              receipt="sent")
    assert events.receipt() == "sent"
    _, props, body = _get(amqp, service)
    assert body == b"ping" and props.reply_to.startswith("amq.gen-")
    amqp.basic_publish("", props.reply_to, b"pong", pika.BasicProperties(correlation_id="c7"))
    reply = events.message()
    assert reply.body == "pong"
    assert reply.headers["subscription"] == "/temp-queue/answers"
    assert reply.headers["correlation-id"] == "c7"
    assert "ack" not in reply.headers
    # The same temp queue name reuses the same reply queue.
    conn.send(f"/queue/{service}", "again", headers={"reply-to": "/temp-queue/answers"}, receipt="2")
    assert events.receipt() == "2"
    assert _get(amqp, service)[1].reply_to == props.reply_to
    amqp.queue_delete(service)


def test_reply_queue_destination_answers_a_stomp_requester(client, name):
    service = name("svc")
    requester, req_events = client()
    responder, resp_events = client()
    responder.subscribe(f"/queue/{service}", id="svc", receipt="s")
    assert resp_events.receipt() == "s"
    requester.send(f"/queue/{service}", "question", headers={"reply-to": "/temp-queue/r"})
    request = resp_events.message()
    assert request.headers["reply-to"].startswith("/reply-queue/amq.gen-")
    responder.send(request.headers["reply-to"], "answer")
    assert req_events.message().body == "answer"


# -- STOMP <-> AMQP --------------------------------------------------------------------------------


def test_stomp_headers_become_amqp_properties(client, amqp, name):
    queue = name()
    amqp.queue_declare(queue, durable=True)
    conn, events = client()
    conn.send(f"/queue/{queue}", "body", content_type="application/json", receipt="r", headers={
        "correlation-id": "c1", "reply-to": "/queue/back", "persistent": "true", "priority": "5",
        "expiration": "60000", "amqp-message-id": "m1", "timestamp": "1700000000", "type": "kind",
        "app-id": "app", "user-id": "guest", "x-custom": "v", "content-encoding": "gzip",
    })
    assert events.receipt() == "r"
    method, props, body = _get(amqp, queue)
    assert body == b"body" and method.routing_key == queue and method.exchange == ""
    assert props.content_type == "application/json"
    assert props.content_encoding == "gzip"
    assert props.correlation_id == "c1"
    assert props.reply_to == "/queue/back"
    assert props.delivery_mode == 2
    assert props.priority == 5
    assert props.expiration == "60000"
    assert props.message_id == "m1"
    assert props.timestamp == 1700000000
    assert props.type == "kind" and props.app_id == "app" and props.user_id == "guest"
    # Every other header is an application header, receipt and content-length included (RabbitMQ).
    assert props.headers == {"x-custom": "v", "receipt": "r", "content-length": "4"}
    amqp.queue_delete(queue)


def test_amqp_properties_become_stomp_headers(client, amqp, name):
    queue = name()
    conn, events = client()
    conn.subscribe(f"/queue/{queue}", id="p", receipt="s")
    assert events.receipt() == "s"
    amqp.basic_publish("", queue, b"\x00binary\xff", pika.BasicProperties(
        content_type="text/plain", correlation_id="c2", reply_to="amq.gen-reply", delivery_mode=2,
        priority=1, message_id="id9", timestamp=1600000000, type="t", app_id="a",
        headers={"s": "text", "n": 7, "big": 2**40, "flag": True, "nested": {"x": 1}},
    ))
    message = events.message()
    headers = message.headers
    assert headers["content-type"] == "text/plain"
    assert headers["correlation-id"] == "c2"
    assert headers["reply-to"] == "/reply-queue/amq.gen-reply"
    assert headers["persistent"] == "true"
    assert headers["priority"] == "1"
    assert headers["amqp-message-id"] == "id9"
    assert headers["timestamp"] == "1600000000"
    assert headers["type"] == "t" and headers["app-id"] == "a"
    # longstr and integer headers cross over; booleans and tables do not (as the plugin).
    assert (headers["s"], headers["n"], headers["big"]) == ("text", "7", str(2**40))
    assert "flag" not in headers and "nested" not in headers
    conn.unsubscribe("p")
    amqp.queue_delete(queue)


def test_binary_body_with_nul_crosses_both_ways(stomp_broker, amqp, name):
    queue = name()
    amqp.queue_declare(queue, durable=True)
    raw = RawStomp("127.0.0.1", stomp_broker.stomp_port)
    raw.connect()
    body = b"a\x00b\x00"
    raw.send(f"SEND\ndestination:/queue/{queue}\ncontent-length:{len(body)}\nreceipt:r\n\n".encode()
             + body + b"\x00")
    assert raw.frame()[0] == "RECEIPT"
    assert _get(amqp, queue)[2] == body
    amqp.basic_publish("", queue, body)
    raw.send(f"SUBSCRIBE\nid:1\ndestination:/queue/{queue}\n\n".encode() + b"\x00")
    command, headers, got = raw.frame()
    assert command == "MESSAGE" and got == body
    amqp.queue_delete(queue)


# -- acknowledgements --------------------------------------------------------------------------


def test_client_individual_ack_and_nack_requeue(client, amqp, name):
    queue = name()
    amqp.queue_declare(queue, durable=True)
    for n in range(3):
        amqp.basic_publish("", queue, str(n).encode())
    conn, events = client()
    conn.subscribe(f"/queue/{queue}", id="ci", ack="client-individual",
                   headers={"prefetch-count": "3"})
    got = [events.message() for _ in range(3)]
    assert [m.body for m in got] == ["0", "1", "2"]
    conn.ack(got[1].headers["ack"], receipt="a1")
    assert events.receipt() == "a1"
    conn.nack(got[0].headers["ack"], receipt="n0")
    assert events.receipt() == "n0"
    redelivered = events.message()
    assert (redelivered.body, redelivered.headers["redelivered"]) == ("0", "true")
    conn.nack(redelivered.headers["ack"], requeue="false", receipt="drop")
    assert events.receipt() == "drop"
    conn.disconnect(receipt="bye")  # "2" is unacked: back to the queue
    assert amqp.queue_declare(queue, passive=True).method.message_count == 1
    amqp.queue_delete(queue)


def test_client_ack_is_cumulative(client, amqp, name):
    queue = name()
    amqp.queue_declare(queue, durable=True)
    for n in range(4):
        amqp.basic_publish("", queue, str(n).encode())
    conn, events = client()
    conn.subscribe(f"/queue/{queue}", id="c", ack="client")
    got = [events.message() for _ in range(4)]
    conn.ack(got[2].headers["ack"], receipt="upto2")
    assert events.receipt() == "upto2"
    conn.disconnect(receipt="bye")
    _, _, body = _get(amqp, queue)
    assert body == b"3"  # 0..2 were acked together
    amqp.queue_delete(queue)


def test_prefetch_count_limits_unacked_deliveries(client, amqp, name):
    queue = name()
    amqp.queue_declare(queue, durable=True)
    for n in range(5):
        amqp.basic_publish("", queue, str(n).encode())
    conn, events = client()
    conn.subscribe(f"/queue/{queue}", id="p", ack="client-individual", headers={"prefetch-count": "2"})
    first, second = events.message(), events.message()
    assert (first.body, second.body) == ("0", "1")
    assert events.no_message()
    conn.ack(first.headers["ack"])
    assert events.message().body == "2"
    assert events.no_message()
    conn.disconnect()
    amqp.queue_delete(queue)


def test_stomp_1_1_acks_by_message_id(client, amqp, name):
    queue = name()
    amqp.queue_declare(queue, durable=True)
    amqp.basic_publish("", queue, b"x")
    conn, events = client(version="1.1")
    conn.subscribe(f"/queue/{queue}", id="11", ack="client")
    message = events.message()
    assert "ack" not in message.headers  # 1.2 only
    conn.ack(message.headers["message-id"], "11", receipt="ok")
    assert events.receipt() == "ok"
    conn.disconnect()
    assert amqp.queue_declare(queue, passive=True).method.message_count == 0
    amqp.queue_delete(queue)


# -- transactions and receipts ---------------------------------------------------------------------


def test_transaction_commit_publishes_and_acks_together(client, amqp, name):
    queue, out = name("in"), name("out")
    amqp.queue_declare(queue, durable=True)
    amqp.queue_declare(out, durable=True)
    amqp.basic_publish("", queue, b"work")
    conn, events = client()
    conn.subscribe(f"/queue/{queue}", id="w", ack="client-individual")
    work = events.message()
    tx = conn.begin()
    conn.send(f"/queue/{out}", "result", transaction=tx)
    conn.ack(work.headers["ack"], transaction=tx)
    assert amqp.queue_declare(out, passive=True).method.message_count == 0
    conn.commit(tx, receipt="done")
    assert events.receipt() == "done"
    assert _get(amqp, out)[2] == b"result"
    conn.unsubscribe("w", receipt="u")
    assert events.receipt() == "u"
    assert amqp.queue_declare(queue, passive=True).method.message_count == 0
    amqp.queue_delete(queue)
    amqp.queue_delete(out)


def test_transaction_abort_discards(client, amqp, name):
    queue = name()
    amqp.queue_declare(queue, durable=True)
    conn, events = client()
    tx = conn.begin()
    conn.send(f"/queue/{queue}", "never", transaction=tx)
    conn.abort(tx, receipt="aborted")
    assert events.receipt() == "aborted"
    conn.commit(tx)
    error = events.error()
    assert error.headers["message"] == "Bad transaction"
    assert error.body == f'Invalid transaction identifier: "{tx}"\n'
    assert amqp.queue_declare(queue, passive=True).method.message_count == 0
    amqp.queue_delete(queue)


def test_send_receipt_waits_for_the_disk_for_persistent_messages(client, amqp, name, stomp_broker):
    queue = name()
    conn, events = client()
    conn.send(f"/queue/{queue}", "durable", headers={"persistent": "true"}, receipt="on-disk")
    assert events.receipt() == "on-disk"
    # The receipt is a publisher confirm: the message is in the store by now.
    stored = stomp_broker.call(lambda: stomp_broker.server.broker.vhosts["/"].queues[queue].message_count)
    assert stored == 1
    amqp.queue_delete(queue)


# -- heart-beats -----------------------------------------------------------------------------------


def test_heartbeats_flow_both_ways(stomp_broker):
    conn, events = open_client(stomp_broker.stomp_port, heartbeats=(500, 500))
    deadline = time.monotonic() + 10
    while events.heartbeats < 2:
        assert time.monotonic() < deadline, "no heart-beats from the broker"
        time.sleep(0.1)
    assert conn.is_connected()  # stomp.py's beats kept us alive
    conn.disconnect()


def test_a_silent_client_is_dropped_after_two_missed_heartbeats(stomp_broker):
    raw = RawStomp("127.0.0.1", stomp_broker.stomp_port)
    command, headers, _ = raw.connect("heart-beat:1000,0")
    assert command == "CONNECTED" and headers_of((command, headers, b""))["heart-beat"] == "0,1000"
    started = time.monotonic()
    raw.wait_closed(timeout=10)
    assert 1.5 < time.monotonic() - started < 6


# -- errors and sessions ---------------------------------------------------------------------------


def test_bad_login_is_refused_and_the_connection_stays(stomp_broker):
    raw = RawStomp("127.0.0.1", stomp_broker.stomp_port)
    command, headers, body = raw.connect(passcode="wrong")
    assert (command, dict(headers)["message"], body) == ("ERROR", "Bad CONNECT", b"Access refused for user 'guest'\n")
    assert raw.connect()[0] == "CONNECTED"


def test_frames_before_connect_are_refused(stomp_broker):
    raw = RawStomp("127.0.0.1", stomp_broker.stomp_port)
    raw.send(b"SEND\ndestination:/queue/x\n\nx\x00")
    command, headers, body = raw.frame()
    assert dict(headers)["message"] == "Illegal command"
    assert body == b"You must log in using CONNECT first"


def test_unknown_vhost_and_version_mismatch(stomp_broker):
    raw = RawStomp("127.0.0.1", stomp_broker.stomp_port)
    _, headers, body = raw.connect("host:no-such-vhost")
    assert dict(headers)["message"] == "Bad CONNECT" and body == b"Virtual host 'no-such-vhost' access denied"
    raw.send(b"CONNECT\naccept-version:2.0\n\n\x00")
    _, headers, body = raw.frame()
    assert dict(headers)["message"] == "Version mismatch"
    assert body == b"Supported versions are 1.0,1.1,1.2\n"


def test_duplicate_subscription_id_ends_the_session(stomp_broker, name):
    raw = RawStomp("127.0.0.1", stomp_broker.stomp_port)
    raw.connect()
    frame = f"SUBSCRIBE\nid:dup\ndestination:/topic/{name()}\n\n".encode() + b"\x00"
    raw.send(frame + frame)
    _, headers, body = raw.frame()
    assert dict(headers)["message"] == "Duplicated subscription identifier"
    assert body == b"A subscription identified by 'T_dup' already exists."
    raw.wait_closed()


def test_deleted_queue_cancels_the_subscription_with_an_error(client, amqp, name):
    queue = name()
    conn, events = client()
    conn.subscribe(f"/queue/{queue}", id="gone", receipt="s")
    assert events.receipt() == "s"
    amqp.queue_delete(queue)
    error = events.error()
    assert error.headers["message"] == "Server cancelled subscription"
    assert error.headers["subscription"] == "gone"
    assert conn.is_connected()


def test_listener_and_connection_in_the_management_view(stomp_broker, client):
    conn, _ = client()
    info = stomp_broker.call(stomp_broker.server.admin.node_info)
    assert {"protocol": "stomp", "ip_address": "127.0.0.1", "port": stomp_broker.stomp_port} in info["listeners"]
    connections = stomp_broker.call(stomp_broker.server.admin.connections)
    stomp_connections = [c for c in connections if c["protocol"] == "STOMP 1.2"]
    assert stomp_connections and stomp_connections[0]["client_properties"] == {"product": "STOMP client"}


def test_disabled_by_default_and_port_from_the_command_line(tmp_path):
    from amqp_broker.config import Settings, load_settings

    assert Settings().stomp_port == 0
    settings = load_settings(["--stomp-port", "61999", "--stomp-implicit-connect", "true"], environ={})
    assert settings.stomp_port == 61999 and settings.stomp_implicit_connect
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text("stomp.listeners.tcp.default = 61998\nstomp.default_user = u\nstomp.implicit_connect = true\n")
    settings = load_settings([], environ={"RABBITMQ_CONFIG_FILE": str(conf)})
    assert (settings.stomp_port, settings.stomp_default_user, settings.stomp_implicit_connect) == (61998, "u", True)
    # Enabling RabbitMQ's plugin turns the listener on at its port, unless rabbitmq.conf names one.
    plugins = tmp_path / "enabled_plugins"
    plugins.write_text("[rabbitmq_management,rabbitmq_stomp].")
    assert load_settings([], environ={"RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins)}).stomp_port == 61613
    assert load_settings([], environ={"RABBITMQ_ENABLED_PLUGINS": "ALL"}).stomp_port == 61613
    both = {"RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins), "RABBITMQ_CONFIG_FILE": str(conf)}
    assert load_settings([], environ=both).stomp_port == 61998
    assert load_settings(["--stomp-port", "0"], environ=both).stomp_port == 0


def test_busy_stomp_port_is_one_line_on_stderr(tmp_path, stomp_broker):
    proc = subprocess.run(
        [sys.executable, "-m", "amqp_broker", "--port", "0", "--management-port", "0",
         "--prometheus-port", "0", "--data-dir", str(tmp_path), "--stomp-port", str(stomp_broker.stomp_port)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert f"cannot listen for STOMP clients on *:{stomp_broker.stomp_port}" in proc.stderr


def test_implicit_connect_logs_in_as_the_default_user(name):
    from amqp_broker.testing import BrokerThread

    with BrokerThread(stomp=True, stomp_implicit_connect=True) as broker:
        raw = RawStomp("127.0.0.1", broker.stomp_port)
        raw.send(f"SUBSCRIBE\nid:1\ndestination:/queue/{name()}\nreceipt:r\n\n".encode() + b"\x00")
        assert raw.frame() == ("RECEIPT", [("receipt-id", "r")], b"")
        sessions = broker.call(broker.server.admin.connections)
        assert json.dumps(sessions) and sessions[0]["user"] == "guest"


def test_a_publisher_is_held_while_publishers_must_wait(stomp_broker, name):
    queue = name()
    raw = RawStomp("127.0.0.1", stomp_broker.stomp_port)
    raw.connect()
    flow = stomp_broker.server.flow
    stomp_broker.call(flow.block, "test")  # a reason no monitor clears
    try:
        raw.send(f"SEND\ndestination:/queue/{queue}\nreceipt:first\n\nx".encode() + b"\x00")
        assert raw.frame() == ("RECEIPT", [("receipt-id", "first")], b"")
        raw.send(f"SEND\ndestination:/queue/{queue}\nreceipt:held\n\nx".encode() + b"\x00")
        with pytest.raises(TimeoutError):
            raw.frame(timeout=0.5)  # not read while the alarm is on
    finally:
        stomp_broker.call(flow.unblock, "test")
    assert raw.frame() == ("RECEIPT", [("receipt-id", "held")], b"")
    raw.send(b"UNSUBSCRIBE\nid:none\n\n\x00")
    assert raw.frame()[0] == "ERROR"  # read again: the session goes on
    stomp_broker.call(lambda: stomp_broker.server.broker.vhosts["/"].delete_queue(
        stomp_broker.server.broker.vhosts["/"].queues[queue]))


def test_an_operator_closes_a_stomp_connection(stomp_broker):
    raw = RawStomp("127.0.0.1", stomp_broker.stomp_port)
    raw.connect()
    admin = stomp_broker.server.admin
    names = stomp_broker.call(lambda: [c["name"] for c in admin.connections() if c["protocol"] == "STOMP 1.2"])
    stomp_broker.call(admin.close_connection, names[0], "maintenance")
    command, headers, body = raw.frame()
    assert (command, dict(headers)["message"]) == ("ERROR", "connection_forced")
    assert body == b"CONNECTION_FORCED - maintenance"
    raw.wait_closed()


def test_shutdown_tells_stomp_clients():
    from amqp_broker.testing import BrokerThread

    broker = BrokerThread(stomp=True).start()
    try:
        raw = RawStomp("127.0.0.1", broker.stomp_port)
        raw.connect()
    finally:
        broker.stop()
    command, headers, body = raw.frame()
    assert (command, dict(headers)["message"]) == ("ERROR", "connection_forced")
    assert body == b"CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
    raw.wait_closed()


def test_stomp_1_0_client(stomp_broker, amqp, name):
    queue = name()
    amqp.queue_declare(queue, durable=True)
    amqp.basic_publish("", queue, b"old protocol")
    conn = stomp.Connection10([("127.0.0.1", stomp_broker.stomp_port)])
    events = Events()
    conn.set_listener("events", events)
    conn.connect("guest", "guest", wait=True)
    conn.subscribe(f"/queue/{queue}", id="10", ack="client")
    message = events.message()
    assert message.body == "old protocol" and "ack" not in message.headers
    conn.ack(message.headers["message-id"], receipt="acked")
    assert events.receipt() == "acked"
    conn.disconnect()
    assert amqp.queue_declare(queue, passive=True).method.message_count == 0
    amqp.queue_delete(queue)
