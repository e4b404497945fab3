"""Real MQTT clients (paho-mqtt, mosquitto_pub/mosquitto_sub) against the broker's MQTT listener,
with pika on the AMQP side: MQTT to AMQP and back, QoS 1 redelivery in a persistent session,
retained messages, wills, keep-alive, duplicate client ids, and the management API's view."""

from __future__ import annotations

import base64
import json
import queue
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pika
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import mqttwire as w  # noqa: E402

from amqp_broker.testing import BrokerThread  # noqa: E402

MOSQUITTO = shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub")


@pytest.fixture(scope="module")
def broker():
    with BrokerThread(mqtt=True, management=True) as running:
        yield running


@pytest.fixture
def ids():
    tag = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{tag}"


@pytest.fixture
def amqp(broker):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0))
    yield conn
    conn.close()


class Paho:
    """A paho client whose callbacks feed queues the test waits on."""

    def __init__(self, port: int, client_id: str, clean_session: bool = True, **credentials):
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean_session, protocol=paho.MQTTv311)
        if credentials:
            self.client.username_pw_set(credentials["username"], credentials.get("password"))
        self.messages: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_connect = lambda c, u, f, rc, p: self.events.put(("connect", f.session_present, rc))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.events.put(("subscribe", [r.value for r in rcs]))
        self.client.on_publish = lambda c, u, mid, rc, p: self.events.put(("publish", mid))
        self.port = port

    def connect(self, **kwargs):
        self.client.connect("127.0.0.1", self.port, **kwargs)
        self.client.loop_start()
        return self.event()

    def event(self, timeout: float = 10.0):
        return self.events.get(timeout=timeout)

    def subscribe(self, topic: str, qos: int):
        self.client.subscribe(topic, qos)
        return self.event()

    def message(self, timeout: float = 10.0) -> paho.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _amqp_queue(conn, *keys: str):
    channel = conn.channel()
    name = channel.queue_declare("", exclusive=True).method.queue
    for key in keys:
        channel.queue_bind(name, "amq.topic", key)
    return channel, name


def _get(channel, name: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, properties, body = channel.basic_get(name, auto_ack=True)
        if method is not None:
            return method, properties, body
        time.sleep(0.02)
    raise AssertionError(f"nothing arrived on {name} within {timeout} s")


def test_paho_to_amqp_and_back(broker, amqp, ids):
    channel, name = _amqp_queue(amqp, "sensors.*.temp")
    client = Paho(broker.mqtt_port, ids("paho"))
    assert client.connect()[2] == 0
    assert client.subscribe("replies/#", 1) == ("subscribe", [1])
    info = client.client.publish("sensors/kitchen/temp", b"21.5", qos=1)
    assert client.event() == ("publish", info.mid)  # PUBACK once the broker took it
    method, properties, body = _get(channel, name)
    assert (method.routing_key, body, properties.delivery_mode) == ("sensors.kitchen.temp", b"21.5", 2)
    assert properties.headers == {"x-mqtt-publish-qos": 1, "x-mqtt-dup": False}
    channel.basic_publish("amq.topic", "replies.kitchen", b"ack", pika.BasicProperties(content_type="text/plain"))
    message = client.message()
    assert (message.topic, message.payload, message.qos) == ("replies/kitchen", b"ack", 1)
    client.stop()


def test_qos2_is_downgraded_and_wildcards_map(broker, amqp, ids):
    client = Paho(broker.mqtt_port, ids("qos2"))
    client.connect()
    assert client.subscribe("a/+/c/#", 2) == ("subscribe", [1])
    info = client.client.publish("a/b/c/d/e", b"x", qos=2)
    info.wait_for_publish(10)  # answered with PUBACK, which paho accepts for QoS 2 as well
    message = client.message()
    assert (message.topic, message.qos) == ("a/b/c/d/e", 1)
    client.stop()


def test_persistent_session_redelivers_unacked_qos1(broker, amqp, ids):
    client_id = ids("persistent")
    raw = w.Client(broker.mqtt_port)
    assert raw.send(w.connect(client_id, clean=False)).read(1) == ["20020000"]
    raw.send(w.subscribe(1, ("jobs/#", 1))).read(1)
    amqp.channel().basic_publish("amq.topic", "jobs.1", b"work", pika.BasicProperties(delivery_mode=2))
    first = w.decode_publish(raw.read(1)[0])
    assert (first["payload"], first["qos"], first["dup"]) == (b"work", 1, False)
    raw.close()  # gone without PUBACK: the message goes back to the session's queue

    client = Paho(broker.mqtt_port, client_id, clean_session=False)
    assert client.connect() == ("connect", True, 0)  # session present
    message = client.message()
    assert (message.topic, message.payload, message.qos, message.dup) == ("jobs/1", b"work", 1, True)
    client.stop()
    check = amqp.channel()
    assert check.queue_declare(f"mqtt-subscription-{client_id}qos1", passive=True).method.message_count == 0
    clean = Paho(broker.mqtt_port, client_id, clean_session=True)
    assert clean.connect() == ("connect", False, 0)
    clean.stop()


def test_retained_message_reaches_later_subscriber(broker, ids):
    topic = f"status/{ids('dev')}"
    publisher = Paho(broker.mqtt_port, ids("retainer"))
    publisher.connect()
    publisher.client.publish(topic, b"online", qos=1, retain=True).wait_for_publish(10)
    publisher.stop()
    subscriber = Paho(broker.mqtt_port, ids("late"))
    subscriber.connect()
    subscriber.subscribe(topic, 1)
    message = subscriber.message()
    assert (message.payload, message.retain) == (b"online", True)
    subscriber.client.publish(topic, b"", retain=True).wait_for_publish(10)  # clears it
    subscriber.stop()


def test_will_on_abrupt_close_and_keepalive_timeout(broker, amqp, ids):
    channel, name = _amqp_queue(amqp, "wills.#")
    raw = w.Client(broker.mqtt_port)
    raw.send(w.connect(ids("crash"), will=("wills/crash", b"lost", 1, False))).read(1)
    raw.close()
    method, properties, body = _get(channel, name)
    assert (method.routing_key, body, properties.delivery_mode) == ("wills.crash", b"lost", 2)

    silent = w.Client(broker.mqtt_port)
    silent.send(w.connect(ids("silent"), keep_alive=1, will=("wills/silent", b"timeout", 0, False))).read(1)
    started = time.monotonic()
    assert silent.read_eof() == [w.EOF]
    assert 1.4 <= time.monotonic() - started < 5  # 1.5 keep-alive periods
    method, _, body = _get(channel, name)
    assert (method.routing_key, body) == ("wills.silent", b"timeout")


def test_duplicate_client_id_takes_over(broker, ids):
    client_id = ids("twin")
    first = w.Client(broker.mqtt_port)
    first.send(w.connect(client_id)).read(1)
    second = w.Client(broker.mqtt_port)
    assert second.send(w.connect(client_id)).read(1) == ["20020000"]
    assert first.read_eof() == [w.EOF]
    assert second.send(w.PINGREQ).read(1) == ["d000"]
    second.close()


def test_anonymous_and_vhost_user_names(broker, ids):
    assert w.Client(broker.mqtt_port).send(w.connect(ids("anon"))).read(1) == ["20020000"]
    named = w.Client(broker.mqtt_port).send(w.connect(ids("vh"), username="/:guest", password="guest"))
    assert named.read(1) == ["20020000"]
    refused = w.Client(broker.mqtt_port).send(w.connect(ids("bad"), username="guest", password="nope"))
    assert refused.read_eof() == ["20020004", w.EOF]


def test_no_anonymous_without_default_user(ids):
    with BrokerThread(mqtt=True, mqtt_default_user="") as running:
        client = w.Client(running.mqtt_port)
        assert client.send(w.connect(ids("anon"))).read_eof() == ["20020004", w.EOF]


def test_management_lists_listener_and_connection(broker, ids):
    client_id = ids("listed")
    client = w.Client(broker.mqtt_port)
    client.send(w.connect(client_id)).read(1)
    auth = "Basic " + base64.b64encode(b"guest:guest").decode()

    def get(path):
        request = urllib.request.Request(f"http://127.0.0.1:{broker.management_port}{path}",
                                         headers={"Authorization": auth})
        return json.load(urllib.request.urlopen(request, timeout=10))

    listeners = get("/api/overview")["listeners"]
    assert {"protocol": "mqtt", "port": broker.mqtt_port} in [
        {"protocol": item["protocol"], "port": item["port"]} for item in listeners]
    assert get("/api/health/checks/protocol-listener/mqtt311") == {"status": "ok", "protocol": "mqtt"}
    [row] = [c for c in get("/api/connections") if c["client_properties"].get("client_id") == client_id]
    assert (row["protocol"], row["user"], row["vhost"]) == ("MQTT 3.1.1", "guest", "/")
    # An operator closing it (DELETE /api/connections/NAME) ends the MQTT connection.
    request = urllib.request.Request(
        f"http://127.0.0.1:{broker.management_port}/api/connections/{urllib.parse.quote(row['name'], safe='')}",
        method="DELETE", headers={"Authorization": auth})
    urllib.request.urlopen(request, timeout=10)
    assert client.read_eof() == [w.EOF]


def test_mosquitto_pub_sub(broker, amqp, ids):
    assert MOSQUITTO, "mosquitto_pub/mosquitto_sub missing: apt-get install mosquitto-clients"
    topic = f"mosq/{ids('t')}"
    sub = subprocess.Popen(
        ["mosquitto_sub", "-p", str(broker.mqtt_port), "-i", ids("sub"), "-t", topic + "/+", "-q", "1",
         "-C", "2", "-v", "-W", "20"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        # mosquitto_sub prints nothing once subscribed: wait until the binding exists.
        channel = amqp.channel()
        queue_name = f"mqtt-subscription-{ids('sub')}qos1"
        deadline = time.monotonic() + 10
        while True:
            try:
                if channel.queue_declare(queue_name, passive=True).method.consumer_count:
                    break
            except pika.exceptions.ChannelClosedByBroker:
                channel = amqp.channel()
            assert time.monotonic() < deadline, "mosquitto_sub did not subscribe"
            time.sleep(0.05)
        subprocess.run(["mosquitto_pub", "-p", str(broker.mqtt_port), "-t", topic + "/one", "-m", "from mqtt",
                        "-q", "1"], check=True, timeout=20)
        channel.basic_publish("amq.topic", topic.replace("/", ".") + ".two", b"from amqp")
        out, _ = sub.communicate(timeout=20)
    finally:
        if sub.poll() is None:
            sub.kill()
    assert out.splitlines() == [f"{topic}/one from mqtt", f"{topic}/two from amqp"]


def test_persistent_session_survives_restart(tmp_path, ids):
    client_id = ids("durable")
    with BrokerThread(mqtt=True, data_dir=str(tmp_path)) as running:
        client = w.Client(running.mqtt_port)
        client.send(w.connect(client_id, clean=False)).read(1)
        assert client.send(w.subscribe(1, ("orders/#", 1))).read(1) == ["9003000101"]
        client.send(w.DISCONNECT).read_eof()
        publisher = w.Client(running.mqtt_port)
        publisher.send(w.connect(ids("pub"))).read(1)
        assert publisher.send(w.publish("orders/7", b"kept", qos=1, packet_id=3)).read(1) == ["40020003"]
    with BrokerThread(mqtt=True, data_dir=str(tmp_path)) as running:
        client = w.Client(running.mqtt_port)
        connack, delivery = client.send(w.connect(client_id, clean=False)).read(2)
        assert connack == "20020100"  # session present
        assert w.decode_publish(delivery)["payload"] == b"kept"
        client.close()


def test_deleting_the_subscription_queue_ends_the_connection(broker, amqp, ids):
    client_id = ids("deleted")
    client = w.Client(broker.mqtt_port)
    client.send(w.connect(client_id)).read(1)
    client.send(w.subscribe(1, ("gone/#", 0))).read(1)
    amqp.channel().queue_delete(f"mqtt-subscription-{client_id}qos0")
    assert client.read_eof() == [w.EOF]  # as RabbitMQ: the consumer's cancel ends it


def test_memory_alarm_holds_mqtt_publishers(ids):
    with BrokerThread(mqtt=True) as running:
        server = running.server
        client = w.Client(running.mqtt_port)
        client.send(w.connect(ids("held"), keep_alive=1)).read(1)
        limit = server.memory_limit
        running.call(setattr, server, "memory_limit", 1)  # the monitor raises the alarm
        deadline = time.monotonic() + 10
        while "memory" not in running.call(lambda: set(server.flow.reasons)):
            assert time.monotonic() < deadline, "no memory alarm"
            time.sleep(0.05)
        client.send(w.publish("held/x", b"waits", qos=1, packet_id=1))
        # Unread while the alarm lasts, longer than 1.5 keep-alive periods without a timeout.
        with pytest.raises(TimeoutError):
            client.read(1, timeout=2)
        running.call(setattr, server, "memory_limit", limit)
        assert client.read(1) == ["40020001"]
        client.close()


def test_retained_messages_survive_restart(tmp_path, ids):
    with BrokerThread(mqtt=True, data_dir=str(tmp_path)) as running:
        client = w.Client(running.mqtt_port)
        client.send(w.connect(ids("keeper"))).read(1)
        client.send(w.publish("config/a", b"kept", qos=1, packet_id=1, retain=True)).read(1)
        client.send(w.publish("config/b", b"cleared", retain=True))
        client.send(w.publish("config/b", b"", retain=True))
        client.send(w.DISCONNECT).read_eof()
    with BrokerThread(mqtt=True, data_dir=str(tmp_path)) as running:
        client = w.Client(running.mqtt_port)
        client.send(w.connect(ids("reader"))).read(1)
        suback, retained = client.send(w.subscribe(1, ("config/b", 1), ("config/a", 1))).read(2)
        assert (w.decode_publish(retained)["topic"], w.decode_publish(retained)["payload"]) == ("config/a", b"kept")
        assert client.send(w.PINGREQ).read(1) == ["d000"]  # nothing for config/b
        client.close()
