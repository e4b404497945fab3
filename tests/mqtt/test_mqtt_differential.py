"""MQTT differential tests: the same raw packets to our MQTT listener and to RabbitMQ's
rabbitmq_mqtt plugin, compared byte for byte (with what an AMQP client sees beside them).

RabbitMQ is the one named by ``MQTT_RABBITMQ`` (``HOST:MQTT_PORT:AMQP_PORT``, guest/guest, e.g.
a throw-away node with the plugin enabled) when it answers; otherwise every scenario is compared
with RabbitMQ 3.10.8's recorded observations in ``rabbitmq_mqtt_expectations.json``, and a
warning says so. Scenarios that need users of their own (:data:`USERS`) create them on RabbitMQ
with the command in ``MQTT_RABBITMQ_CTL`` (a rabbitmqctl command line for that node, e.g.
``rabbitmqctl --erlang-cookie COOKIE -n twin@localhost``); without it they use the recording.
Re-record against a live node with

    MQTT_RABBITMQ_CTL="rabbitmqctl ..." python tests/mqtt/test_mqtt_differential.py --record HOST:MQTT_PORT:AMQP_PORT
"""

from __future__ import annotations

import json
import shutil
import os
import shlex
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import pika
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import mqttwire as w  # noqa: E402

from amqp_broker.testing import BrokerThread  # noqa: E402

EXPECTATIONS = Path(__file__).with_name("rabbitmq_mqtt_expectations.json")
PREFIX = "difftest-"
# Queues a scenario may leave behind on a failure, removed before and after each one.
CLIENT_IDS = ("e5", "e6", "e7", "e8", "e9", "e10", "e11", "e12", "dup")
RETAINED_TOPICS = ("r/3", "r/4")


# Users of the permission scenario: (name, (configure, write, read) on "/" or None,
# (topic write, topic read) on amq.topic or None).
USERS = [
    ("difftest-noaccess", None, None),
    ("difftest-limited", ("^mqtt-subscription-", "^mqtt-subscription-|^amq\\.topic$",
                          "^mqtt-subscription-|^amq\\.topic$"), ("^allowed\\.", "^readable\\.")),
]


class Target:
    def __init__(self, host: str, mqtt_port: int, amqp_port: int, add_users: Callable | None = None,
                 remove_users: Callable | None = None):
        self.host = host
        self.mqtt_port = mqtt_port
        self.amqp_port = amqp_port
        # Creates USERS on the broker (None: it cannot be done here), and removes them again
        # (None: nothing to undo, e.g. a broker of the test's own).
        self.add_users = add_users
        self.remove_users = remove_users

    def mqtt(self) -> w.Client:
        return w.Client(self.mqtt_port, self.host)

    def amqp(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.ConnectionParameters(self.host, self.amqp_port, heartbeat=0))

    def cleanup(self) -> None:
        with self.amqp() as conn:
            channel = conn.channel()
            for client_id in CLIENT_IDS + ("perm",):
                for qos in (0, 1):
                    channel.queue_delete(f"mqtt-subscription-{PREFIX}{client_id}qos{qos}")
        client = self.mqtt()
        client.send(w.connect(PREFIX + "cleanup")).read(1)
        for topic in RETAINED_TOPICS:
            client.send(w.publish(topic, b"", retain=True))
        client.send(w.DISCONNECT).read_eof()


def _queue_exists(conn: pika.BlockingConnection, name: str) -> bool:
    channel = conn.channel()
    try:
        channel.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        return False
    channel.close()
    return True


def _get(channel, queue: str, timeout: float = 10.0):
    """The next message on ``queue`` as (routing key, delivery mode, headers, body), polling
    with a deadline (another connection's publish is external state)."""
    deadline = time.monotonic() + timeout
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return [method.routing_key, properties.delivery_mode, properties.headers, body.decode()]
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def _amqp_queue(conn, *keys: str) -> tuple:
    channel = conn.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    for key in keys:
        channel.queue_bind(queue, "amq.topic", key)
    return channel, queue


# -- scenarios: each returns a list of observations ------------------------------------------------


def suback_and_protocol_levels(t: Target) -> list:
    seen = []
    client = t.mqtt()
    seen.append(client.send(w.connect(PREFIX + "e1")).read(1))
    seen.append(client.send(w.subscribe(7, ("d/0", 0), ("d/1", 1), ("d/2", 2))).read(1))
    seen.append(client.send(w.subscribe(8, ("d/0", 1))).read(1))
    seen.append(client.send(w.PINGREQ).read(1))
    seen.append(client.send(w.DISCONNECT).read_eof())
    seen.append(t.mqtt().send(w.connect(PREFIX + "e2", level=5, name="MQTT")).read_eof())
    seen.append(t.mqtt().send(w.connect(PREFIX + "e2", level=3)).read(1))
    seen.append(t.mqtt().send(w.connect(PREFIX + "e2", level=3, name="MQTT")).read_eof())
    seen.append(t.mqtt().send(w.PINGREQ).read_eof())
    return seen


def credentials(t: Target) -> list:
    cases = [
        dict(username="guest", password="wrong"),
        dict(username="guest"),
        dict(password="guest"),
        dict(username="no-such-vhost:guest", password="guest"),
        dict(username="/:guest", password="guest"),
        dict(username="nobody", password="guest"),
    ]
    seen = []
    for case in cases:
        client = t.mqtt().send(w.connect(PREFIX + "e3", **case))
        packets = client.read(1)
        accepted = packets[0] == "20020000"
        seen.append([case, packets + ([] if accepted else client.read_eof())])
        client.close()
    seen.append(t.mqtt().send(w.connect("", clean=False)).read_eof())
    return seen


def persistent_session(t: Target) -> list:
    seen = []
    cid = PREFIX + "e5"
    client = t.mqtt()
    seen.append(client.send(w.connect(cid, clean=False)).read(1))
    seen.append(client.send(w.subscribe(1, ("p/q", 1), ("p/z", 0))).read(1))
    client.send(w.DISCONNECT).read_eof()
    with t.amqp() as conn:
        seen.append([_queue_exists(conn, f"mqtt-subscription-{cid}qos{q}") for q in (0, 1)])
        conn.channel().basic_publish("amq.topic", "p.q", b"while away", pika.BasicProperties(delivery_mode=2))
        # Session present, the message waiting is delivered at QoS 1; left unacknowledged.
        client = t.mqtt()
        seen.append(client.send(w.connect(cid, clean=False)).read(2))
        client.close()
        # Redelivered (dup) on the next connection; acknowledged this time.
        client = t.mqtt()
        packets = client.send(w.connect(cid, clean=False)).read(2)
        seen.append(packets)
        client.send(w.puback(w.decode_publish(packets[1])["packet_id"]))
        client.send(w.DISCONNECT).read_eof()
        client = t.mqtt()
        seen.append(client.send(w.connect(cid, clean=False)).read(1))
        seen.append(client.send(w.PINGREQ).read(1))  # nothing was waiting before the PINGRESP
        client.send(w.DISCONNECT).read_eof()
        # A clean session deletes the old one's queue.
        seen.append(t.mqtt().send(w.connect(cid, clean=True)).send(w.DISCONNECT).read_eof())
        seen.append(_queue_exists(conn, f"mqtt-subscription-{cid}qos1"))
    return seen


def mqtt_to_amqp(t: Target) -> list:
    seen = []
    with t.amqp() as conn:
        channel, queue = _amqp_queue(conn, "h.#", "x.*.z")
        client = t.mqtt()
        client.send(w.connect(PREFIX + "e6")).read(1)
        client.send(w.publish("h/1", b"qos1", qos=1, packet_id=5))
        client.send(w.publish("h/2", b"qos2 dup", qos=2, packet_id=6, dup=True))
        client.send(w.publish("h/3", b"qos0"))
        client.send(w.publish("x/y/z", b"levels"))
        client.send(w.publish("h.dots", b"dots"))
        seen.append(client.read(2))
        # QoS 0 and QoS 1 publishes travel on different channels in RabbitMQ: no order between them.
        seen.append(sorted((_get(channel, queue) for _ in range(5)), key=json.dumps))
        client.send(w.DISCONNECT).read_eof()
    return seen


def amqp_to_mqtt(t: Target) -> list:
    seen = []
    client = t.mqtt()
    client.send(w.connect(PREFIX + "e7")).read(1)
    seen.append(client.send(w.subscribe(1, ("a/+/c", 1), ("a/#", 0), ("m/q1", 1))).read(1))
    with t.amqp() as conn:
        channel = conn.channel()
        channel.basic_publish("amq.topic", "a.b.c", b"to both")
        channel.basic_publish("amq.topic", "m.q1", b"plain", pika.BasicProperties(delivery_mode=2))
        packets = client.read(3)
    # The two queues deliver independently: compare as a set.
    seen.append(sorted(packets[:2]))
    seen.append(packets[2:])
    for packet in packets:
        fields = w.decode_publish(packet)
        if fields["qos"]:
            client.send(w.puback(fields["packet_id"]))
    seen.append(client.send(w.unsubscribe(2, "a/#", "never/subscribed")).read(1))
    with t.amqp() as conn:
        channel = conn.channel()
        channel.basic_publish("amq.topic", "a.x", b"after unsubscribe")
        channel.basic_publish("amq.topic", "m.q1", b"marker")
        seen.append(client.read(1))
    client.send(w.DISCONNECT).read_eof()
    return seen


def retained(t: Target) -> list:
    seen = []
    client = t.mqtt()
    client.send(w.connect(PREFIX + "e8")).read(1)
    client.send(w.publish("r/3", b"retained qos0", retain=True))
    client.send(w.publish("r/4", b"retained qos1", qos=1, packet_id=9, retain=True))
    seen.append(client.read(1))
    # Exact topics only: the wildcard filter gets nothing; the reply order is RabbitMQ's.
    seen.append(client.send(w.subscribe(3, ("r/+", 1), ("r/3", 1), ("r/4", 1), ("r/5", 0))).read(3))
    client.send(w.DISCONNECT).read_eof()
    other = t.mqtt()
    other.send(w.connect(PREFIX + "e9")).read(1)
    seen.append(other.send(w.subscribe(4, ("r/4", 0))).read(2))
    other.send(w.publish("r/4", b"", retain=True))  # an empty retained message clears the topic
    seen.append(other.read(1))  # the empty message itself, delivered to the subscription
    seen.append(other.send(w.subscribe(5, ("r/4", 1))).read(1))
    seen.append(other.send(w.PINGREQ).read(1))
    other.send(w.DISCONNECT).read_eof()
    return seen


def wills(t: Target) -> list:
    seen = []
    with t.amqp() as conn:
        channel, queue = _amqp_queue(conn, "w.#")
        client = t.mqtt()
        client.send(w.connect(PREFIX + "e10", will=("w/lost", b"gone", 1, False))).read(1)
        client.close()  # no DISCONNECT: the will goes out
        seen.append(_get(channel, queue))
        client = t.mqtt()
        client.send(w.connect(PREFIX + "e10", will=("w/said-bye", b"not sent", 0, False))).read(1)
        client.send(w.DISCONNECT).read_eof()
        first = t.mqtt()
        first.send(w.connect(PREFIX + "dup", will=("w/kicked", b"not sent either", 0, False))).read(1)
        second = t.mqtt()
        seen.append(second.send(w.connect(PREFIX + "dup")).read(1))
        seen.append(first.read_eof())
        second.send(w.publish("w/marker", b"marker")).send(w.DISCONNECT).read_eof()
        seen.append(_get(channel, queue))  # the marker: neither will went out
        client = t.mqtt()
        client.send(w.connect(PREFIX + "e10", keep_alive=1, will=("w/silent", b"timed out", 0, False))).read(1)
        started = time.monotonic()
        seen.append(client.read_eof(timeout=10))
        elapsed = time.monotonic() - started
        seen.append(1.0 <= elapsed <= 6)  # 1.5 periods here, one to two in RabbitMQ
        seen.append(_get(channel, queue))
    return seen


def prefetch_and_second_connect(t: Target) -> list:
    """A QoS 1 subscriber gets 10 unacknowledged messages at most; a PUBACK lets one more go.
    A second CONNECT on the same connection is answered again."""
    seen = []
    client = t.mqtt()
    client.send(w.connect(PREFIX + "e11")).read(1)
    seen.append(client.send(w.subscribe(1, ("f/q", 1))).read(1))
    with t.amqp() as conn:
        channel = conn.channel()
        for i in range(12):
            channel.basic_publish("amq.topic", "f.q", f"m{i}".encode(),
                                  pika.BasicProperties(headers={"x-mqtt-dup": i == 0}))
        seen.append(client.read(10))
        seen.append(client.send(w.PINGREQ).read(1))
        seen.append(client.send(w.puback(3)).send(w.puback(99)).read(1))
        # Clean session: the QoS 1 queue this connection consumes from is deleted, which ends it.
        seen.append(client.send(w.connect(PREFIX + "e11")).read_eof())
    client = t.mqtt()
    client.send(w.connect(PREFIX + "e12", clean=False)).read(1)
    client.send(w.subscribe(1, ("f/r", 1))).read(1)
    seen.append(client.send(w.connect(PREFIX + "e12", clean=False)).read(1))  # session present
    seen.append(client.send(w.PINGREQ).read(1))
    client.send(w.DISCONNECT).read_eof()
    return seen


def permissions(t: Target) -> list:
    """The broker's permissions apply: no vhost access is CONNACK 5; a refused bind, consume or
    publish (topic permissions included) closes the connection, without SUBACK."""
    seen = []
    steps = {
        "no access": ("difftest-noaccess", []),
        "subscribe allowed": ("difftest-limited", [(w.subscribe(1, ("readable/x", 0), ("readable/y", 1)), 1)]),
        "subscribe refused topic": ("difftest-limited", [(w.subscribe(2, ("other/x", 1)), 1)]),
        "one refused topic of two": ("difftest-limited", [(w.subscribe(3, ("readable/z", 1), ("other/y", 0)), 1)]),
        "publish allowed": ("difftest-limited", [(w.publish("allowed/x", b"a", qos=1, packet_id=2), 1)]),
        "publish refused qos0": ("difftest-limited", [(w.publish("other/x", b"a"), 1)]),
        "publish refused qos1": ("difftest-limited", [(w.publish("other/x", b"a", qos=1, packet_id=3), 1)]),
    }
    for label, (user, actions) in steps.items():
        client = t.mqtt()
        packets = client.send(w.connect(PREFIX + "perm", username=user, password=user)).read(1)
        for data, count in actions:
            packets += client.send(data).read(count)
        if packets[-1] != w.EOF and packets[0] != "20020000":
            packets += client.read_eof()
        seen.append([label, packets])
        client.close()
    return seen


SCENARIOS: dict[str, Callable[[Target], list]] = {
    f.__name__: f for f in (suback_and_protocol_levels, credentials, persistent_session,
                            mqtt_to_amqp, amqp_to_mqtt, retained, wills, prefetch_and_second_connect,
                            permissions)
}
#: Scenarios that need USERS on the broker.
NEEDS_USERS = {"permissions"}


def _normalise(value):
    """JSON's view of the observations (tuples become lists, bytes hex)."""
    return json.loads(json.dumps(value, default=lambda o: o.hex() if isinstance(o, bytes) else str(o)))


def run(target: Target, name: str) -> list:
    if name in NEEDS_USERS:
        target.add_users()
    target.cleanup()
    try:
        return _normalise(SCENARIOS[name](target))
    finally:
        target.cleanup()
        if name in NEEDS_USERS and target.remove_users is not None:
            target.remove_users()


def _rabbitmqctl_users(command: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """Functions that make USERS with rabbitmqctl (existing ones are set again) and delete them."""
    def run(*args: str) -> None:
        subprocess.run(shlex.split(command) + ["-q", *args], capture_output=True, timeout=120)

    def add() -> None:
        for name, permissions, topics in USERS:
            run("add_user", name, name)
            run("clear_permissions", "-p", "/", name)
            if permissions is not None:
                run("set_permissions", "-p", "/", name, *permissions)
            if topics is not None:
                run("set_topic_permissions", "-p", "/", name, "amq.topic", *topics)

    def remove() -> None:
        for name, _permissions, _topics in USERS:
            run("delete_user", name)
    return add, remove


def _target(spec: str) -> Target:
    host, mqtt_port, amqp_port = spec.rsplit(":", 2)
    ctl = os.environ.get("MQTT_RABBITMQ_CTL") or (
        "rabbitmqctl" if spec == "127.0.0.1:1883:5672" and shutil.which("rabbitmqctl") else None)
    add, remove = _rabbitmqctl_users(ctl) if ctl else (None, None)
    return Target(host, int(mqtt_port), int(amqp_port), add, remove)


def _live_target() -> Target | None:
    # By default the local RabbitMQ (CI enables rabbitmq_mqtt there), whose rabbitmqctl is on PATH.
    spec = os.environ.get("MQTT_RABBITMQ", "127.0.0.1:1883:5672")
    if not spec:
        return None
    target = _target(spec)
    try:
        socket.create_connection((target.host, target.mqtt_port), timeout=2).close()
    except OSError:
        return None
    return target


@pytest.fixture(scope="module")
def ours():
    with BrokerThread(mqtt=True, loopback_users=()) as running:
        admin = running.server.admin

        def add_users() -> None:
            for name, permissions, topics in USERS:
                if name not in [user["name"] for user in admin.users()]:
                    admin.add_user(name, name)
                if permissions is not None:
                    admin.set_permissions(name, "/", *permissions)
                if topics is not None:
                    admin.set_topic_permissions(name, "/", "amq.topic", *topics)

        yield Target("127.0.0.1", running.mqtt_port, running.port, lambda: running.call(add_users))


@pytest.fixture(scope="module")
def oracle():
    live = _live_target()
    if live is not None:
        return {"live": live}
    warnings.warn(
        "no RabbitMQ with rabbitmq_mqtt at MQTT_RABBITMQ (HOST:MQTT_PORT:AMQP_PORT): MQTT "
        f"differential tests compare against the recorded observations in {EXPECTATIONS.name}",
        UserWarning, stacklevel=1,
    )
    return {"recorded": json.loads(EXPECTATIONS.read_text())["scenarios"]}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str, ours: Target, oracle: dict) -> None:
    mine = run(ours, name)
    live = oracle.get("live")
    if live is not None and (name not in NEEDS_USERS or live.add_users is not None):
        expected = run(live, name)
    else:
        expected = json.loads(EXPECTATIONS.read_text())["scenarios"][name]
    assert mine == expected


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--record":
        sys.exit("usage: test_mqtt_differential.py --record HOST:MQTT_PORT:AMQP_PORT")
    target = _target(sys.argv[2])
    if target.add_users is None:
        sys.exit("set MQTT_RABBITMQ_CTL to a rabbitmqctl command line for that node (users are needed)")
    with pika.BlockingConnection(pika.ConnectionParameters(target.host, target.amqp_port)) as conn:
        version = conn._impl.server_properties.get("version", b"?")
    observed = {name: run(target, name) for name in SCENARIOS}
    EXPECTATIONS.write_text(json.dumps(
        {"server": f"RabbitMQ {version.decode() if isinstance(version, bytes) else version} with rabbitmq_mqtt",
         "scenarios": observed}, indent=1) + "\n")
    print(f"recorded {len(observed)} scenarios in {EXPECTATIONS}")
