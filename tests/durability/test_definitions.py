"""Definitions in RabbitMQ's ``definitions.json`` format: ``amqp-broker definitions export|import``
on a data directory, ``--definitions FILE`` at start-up, round trips, and a real RabbitMQ file.

``rabbitmq_definitions_sample.json`` beside this file was written by ``rabbitmqctl
export_definitions`` on RabbitMQ 3.10.8 and cut down to one vhost (``amqp-broker-sample``), the
users ``guest`` (password guest) and ``sample-user`` (password ``sample-pass``) and their
permissions. It holds what RabbitMQ exports and this broker must cope with: a transient queue and
exchange, bindings of an internal exchange that RabbitMQ leaves out of the file, a policy, a topic
permission, vhost metadata with tags, queue and binding arguments.

The last test round-trips through a live RabbitMQ when ``rabbitmqctl`` can reach one, and skips
otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pika
import pika.exceptions
import pytest

from amqp_broker.broker.broker import Broker
from amqp_broker.definitions import DefinitionsError, export_definitions, import_definitions
from amqp_broker.testing import BrokerThread

SAMPLE = Path(__file__).with_name("rabbitmq_definitions_sample.json")
SAMPLE_VHOST = "amqp-broker-sample"
SAMPLE_USER = ("sample-user", "sample-pass")
STARTED = re.compile(r"Server startup complete; listening on \S+:(\d+)")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_BROKER_", "RABBITMQ_"))}
    # No HTTP listeners: 15672/15692 belong to the RabbitMQ these tests compare with.
    env.update(AMQP_BROKER_MANAGEMENT_PORT="0", AMQP_BROKER_PROMETHEUS_PORT="0")
    return env


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``python -m amqp_broker ARGS``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "amqp_broker", *args],
        capture_output=True, text=True, env=clean_env(), input=stdin, timeout=60,
    )


def export_dir(data_dir: Path) -> dict:
    """``definitions export -`` of ``data_dir``, parsed."""
    result = cli("definitions", "export", "-", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def import_dir(data_dir: Path, path: Path | str, *extra: str) -> subprocess.CompletedProcess:
    return cli("definitions", "import", str(path), "--data-dir", str(data_dir), *extra)


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


class BrokerProc:
    """``python -m amqp_broker --host 127.0.0.1 --port 0 ARGS`` as a child process."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(),
        )
        self.log: list[str] = []
        self.port = 0
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)
            found = STARTED.search(line)
            if found:
                self.port = int(found.group(1))
                break
        else:
            self.proc.wait(10)
            raise AssertionError(f"broker exited {self.proc.returncode}: {''.join(self.log)}")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@contextlib.contextmanager
def running(*args: str):
    broker = BrokerProc(*args)
    try:
        yield broker
    finally:
        assert broker.stop() == 0, "".join(broker.log)


def connect(port: int, vhost: str = "/", user: str = "guest", password: str = "guest"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, vhost, pika.PlainCredentials(user, password), heartbeat=0,
        connection_attempts=1,
    ))


def login_refused(port: int, vhost: str, user: str, password: str) -> bool:
    """Whether the broker refuses the login (wrong password) or the vhost (no permission)."""
    try:
        connect(port, vhost, user, password).close()
    except (pika.exceptions.ProbableAuthenticationError,
            pika.exceptions.ProbableAccessDeniedError,
            pika.exceptions.ConnectionClosedByBroker):
        return True
    return False


def check_sample_routing(port: int) -> None:
    """The sample's exchanges, queues and bindings route as they do on RabbitMQ."""
    conn = connect(port, SAMPLE_VHOST, *SAMPLE_USER)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for queue in ("orders", "audit", "invoices", "unrouted", "dead-letters", "ttl.short"):
            ch.queue_purge(queue)
        ch.basic_publish("events", "order.created", b"order")        # orders + audit ("#")
        ch.basic_publish("ingress", "event", b"via-ingress")          # ingress -> events -> audit
        ch.basic_publish("by-header", "", b"invoice",
                         pika.BasicProperties(headers={"type": "invoice", "version": 2}))
        ch.basic_publish("by-header", "", b"not-an-invoice",
                         pika.BasicProperties(headers={"type": "invoice", "version": 3}))
        ch.basic_publish("amq.topic", "sensors.t1", b"sensor")        # a binding from amq.topic
        expected = {
            "orders": [b"order"],
            "audit": [b"order", b"via-ingress"],
            "unrouted": [],
            "invoices": [b"invoice"],
            "ttl.short": [b"sensor"],
            "dead-letters": [],
        }
        for queue, bodies in expected.items():
            got = []
            while True:
                method, _props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                got.append(body)
            assert got == bodies, queue
        # Arguments came through: redeclaring with other ones is refused, as on RabbitMQ.
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.exchange_declare("ingress", "direct", durable=True,
                                arguments={"alternate-exchange": "other"})
        assert refused.value.reply_code == 406
        assert "inequivalent arg 'alternate-exchange'" in refused.value.reply_text
        ch = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.queue_declare("orders", durable=True,
                             arguments={"x-dead-letter-exchange": "events.dlx", "x-max-length": 1})
        assert "inequivalent arg 'x-max-length'" in refused.value.reply_text
    finally:
        if conn.is_open:
            conn.close()


# -- the CLI on a data directory -------------------------------------------------------------------


def test_import_sample_export_import_export_round_trip(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    result = import_dir(first, SAMPLE)
    assert result.returncode == 0, result.stderr
    assert ("2 users, 2 vhosts, 2 permissions, 1 topic_permissions, 6 exchanges, 7 queues, "
            "8 bindings") in result.stderr
    # Transient entities are applied but a data directory keeps durable ones only: said so.
    assert "exchange 'scratch'" in result.stderr and "queue 'transient-work'" in result.stderr
    exported = export_dir(first)

    sample = json.loads(SAMPLE.read_text())
    assert [u["name"] for u in exported["users"]] == ["guest", "sample-user"]
    assert exported["users"] == sorted(sample["users"], key=lambda u: u["name"])
    assert [v["name"] for v in exported["vhosts"]] == ["/", SAMPLE_VHOST]
    assert {(p["user"], p["vhost"]) for p in exported["permissions"]} == {
        ("guest", "/"), ("sample-user", SAMPLE_VHOST)}
    assert exported["topic_permissions"] == sample["topic_permissions"]
    assert [q["name"] for q in exported["queues"]] == [
        "audit", "dead-letters", "invoices", "orders", "ttl.short", "unrouted"]
    sample_queues = {q["name"]: q for q in sample["queues"]}
    for queue in exported["queues"]:
        assert queue == sample_queues[queue["name"]]
    sample_exchanges = {x["name"]: x for x in sample["exchanges"]}
    assert [x["name"] for x in exported["exchanges"]] == [
        "by-header", "events", "events.ae", "events.dlx", "ingress"]
    for exchange in exported["exchanges"]:
        rest = dict(exchange)
        assert rest.pop("internal") is False  # RabbitMQ 3.10 does not write the key
        assert rest == sample_exchanges[exchange["name"]]
    # The sample's 10 bindings less the transient one and the two of the internal exchange that
    # RabbitMQ did not export.
    key = lambda b: json.dumps(b, sort_keys=True)  # noqa: E731
    assert sorted(map(key, exported["bindings"])) == sorted(
        key(b) for b in sample["bindings"]
        if "events.internal" not in (b["source"], b["destination"]) and b["source"] != "scratch"
    )
    assert exported["rabbitmq_version"] == "3.10.8" and exported["product_name"] == "amqp_broker"

    # export -> import into a fresh directory -> export gives the same file, and so does a second
    # import of it (idempotent).
    path = write_json(tmp_path / "exported.json", exported)
    assert import_dir(second, path).returncode == 0
    assert export_dir(second) == exported
    again = import_dir(second, path)
    assert again.returncode == 0, again.stderr
    assert export_dir(second) == exported
    # "-" reads standard input.
    result = cli("definitions", "import", "-", "--data-dir", str(second), stdin=json.dumps(exported))
    assert result.returncode == 0, result.stderr
    assert export_dir(second) == exported


def test_export_to_a_file_and_help(tmp_path):
    data_dir = tmp_path / "data"
    assert import_dir(data_dir, SAMPLE).returncode == 0
    out = tmp_path / "out.json"
    result = cli("definitions", "export", str(out), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert f"exported from {data_dir} to {out}" in result.stderr
    assert json.loads(out.read_text()) == export_dir(data_dir)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    # Settings flags work before the subcommand too, and the environment is read as for serve.
    before = cli("--data-dir", str(data_dir), "definitions", "export", "-")
    assert before.returncode == 0 and json.loads(before.stdout) == export_dir(data_dir)
    usage = cli("definitions", "--help")
    assert usage.returncode == 0 and "export" in usage.stdout and "import" in usage.stdout
    assert cli("definitions").returncode == 2  # an action is required


def test_failed_import_names_the_entry_and_writes_nothing(tmp_path):
    data_dir = tmp_path / "data"
    assert import_dir(data_dir, SAMPLE).returncode == 0
    before = export_dir(data_dir)
    bad = write_json(tmp_path / "bad.json", {
        "vhosts": [{"name": "new-vhost"}],
        "queues": [
            {"name": "fine", "vhost": "new-vhost", "durable": True, "auto_delete": False,
             "arguments": {}},
            {"name": "broken", "vhost": "new-vhost", "durable": True, "auto_delete": False,
             "arguments": {"x-max-length": "ten"}},
        ],
    })
    result = import_dir(data_dir, bad)
    assert result.returncode == 1
    assert (
        "amqp-broker: definitions import: queues[1] (queue 'broken' in vhost 'new-vhost'): "
        "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'broken' in vhost "
        "'new-vhost': \"expected integer, got longstr\""
    ) in result.stderr
    assert export_dir(data_dir) == before  # not even the valid vhost and queue before it

    # An entity that exists with other properties stops the import, named as RabbitMQ names it.
    clash = write_json(tmp_path / "clash.json", {"exchanges": [
        {"name": "events", "vhost": SAMPLE_VHOST, "type": "fanout", "durable": True,
         "auto_delete": False, "internal": False, "arguments": {}}]})
    result = import_dir(data_dir, clash)
    assert result.returncode == 1
    assert (
        f"exchanges[0] (exchange 'events' in vhost '{SAMPLE_VHOST}'): PRECONDITION_FAILED - "
        f"inequivalent arg 'type' for exchange 'events' in vhost '{SAMPLE_VHOST}': received "
        "'fanout' but current is 'topic'"
    ) in result.stderr
    assert export_dir(data_dir) == before

    (tmp_path / "not.json").write_text("{users: []")
    result = import_dir(data_dir, tmp_path / "not.json")
    assert result.returncode == 1 and "is not valid JSON" in result.stderr
    result = import_dir(data_dir, tmp_path / "missing.json")
    assert result.returncode == 1 and "cannot read" in result.stderr


def test_import_refuses_a_data_dir_in_use_and_export_reads_it_live(tmp_path):
    data_dir = tmp_path / "data"
    with running("--data-dir", str(data_dir)) as broker:
        conn = connect(broker.port)
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("live.q", durable=True)
        # A confirmed persistent message: its commit covers the declaration made before it.
        ch.basic_publish("", "live.q", b"m", pika.BasicProperties(delivery_mode=2))
        conn.close()
        live = export_dir(data_dir)  # read only: safe while the broker runs
        assert [q["name"] for q in live["queues"]] == ["live.q"]
        for extra in ((), ("--force",)):  # --force is for a crashed broker's directory only
            result = import_dir(data_dir, SAMPLE, *extra)
            assert result.returncode == 1
            assert f"is in use by the broker with pid {broker.proc.pid}" in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # Stopped: the import goes in, and the broker picks it up on its next start.
    result = import_dir(data_dir, SAMPLE)
    assert result.returncode == 0, result.stderr
    with running("--data-dir", str(data_dir)) as broker:
        check_sample_routing(broker.port)
        conn = connect(broker.port)
        assert conn.channel().queue_declare("live.q", passive=True).method.message_count == 1
        conn.close()

    # After a crash the store is marked unclean: --force imports and keeps the crash marker (so
    # the broker still flags recovered messages as redelivered).
    db = sqlite3.connect(data_dir / "amqp_broker.sqlite3")
    db.execute("UPDATE meta SET value = '0' WHERE key = 'clean_shutdown'")
    db.commit()
    db.close()
    extra = write_json(tmp_path / "extra.json", {"queues": [
        {"name": "extra.q", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}]})
    assert "did not shut down cleanly" in import_dir(data_dir, extra).stderr
    result = import_dir(data_dir, extra, "--force")
    assert result.returncode == 0, result.stderr
    assert "extra.q" in [q["name"] for q in export_dir(data_dir)["queues"]]
    db = sqlite3.connect(data_dir / "amqp_broker.sqlite3")
    assert db.execute("SELECT value FROM meta WHERE key = 'clean_shutdown'").fetchone() == ("0",)
    db.close()


def test_export_of_a_missing_data_dir_fails(tmp_path):
    result = cli("definitions", "export", "-", "--data-dir", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "no broker data in" in result.stderr
    assert not (tmp_path / "nowhere").exists()


# -- --definitions at start-up ---------------------------------------------------------------------


def test_definitions_at_startup_load_the_rabbitmq_sample(tmp_path):
    data_dir = tmp_path / "data"
    args = ("--data-dir", str(data_dir), "--definitions", str(SAMPLE))
    with running(*args) as broker:
        log = "".join(broker.log)
        assert "Will not seed default virtual host and user: have definitions to load" in log
        assert "skipped, no exchange 'events.internal'" in log
        assert "1 policies ignored" in log
        # guest logs in with the hash RabbitMQ made, sample-user with its own.
        connect(broker.port).close()
        check_sample_routing(broker.port)
        assert login_refused(broker.port, SAMPLE_VHOST, "sample-user", "wrong")
        assert login_refused(broker.port, SAMPLE_VHOST, "guest", "guest")  # no permission there
        conn = connect(broker.port, SAMPLE_VHOST, *SAMPLE_USER)
        ch = conn.channel()
        ch.queue_declare("transient-work", passive=True)  # transient ones are declared too
        ch.confirm_delivery()
        ch.basic_publish("events", "order.kept", b"kept", pika.BasicProperties(delivery_mode=2))
        conn.close()
    # Applied again at the next start: nothing doubles, messages stay.
    with running(*args) as broker:
        conn = connect(broker.port, SAMPLE_VHOST, *SAMPLE_USER)
        ch = conn.channel()
        assert ch.queue_declare("orders", passive=True).method.message_count == 1
        assert ch.queue_declare("audit", passive=True).method.message_count == 1
        conn.close()
        check_sample_routing(broker.port)
    assert export_dir(data_dir)["users"] == sorted(
        json.loads(SAMPLE.read_text())["users"], key=lambda u: u["name"])


def test_definitions_at_startup_seed_no_default_user(tmp_path):
    definitions = write_json(tmp_path / "app.json", {
        "users": [{"name": "app", "password": "app-pass", "tags": "management"}],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": "app", "vhost": "/", "configure": ".*", "write": ".*",
                         "read": ".*"}],
        "queues": [{"name": "jobs", "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {"x-max-priority": 3}}],
    })
    data_dir = tmp_path / "data"
    for _start in range(2):
        with BrokerThread(data_dir=str(data_dir), definitions=str(definitions)) as broker:
            assert login_refused(broker.port, "/", "guest", "guest")
            conn = connect(broker.port, "/", "app", "app-pass")
            conn.channel().queue_declare("jobs", passive=True)
            conn.close()
            users = broker.call(lambda: sorted(broker.server.broker.users.users))
            assert users == ["app"]
    # Without --definitions the data directory's users are the truth: still no guest.
    with BrokerThread(data_dir=str(data_dir)) as broker:
        assert login_refused(broker.port, "/", "guest", "guest")
        connect(broker.port, "/", "app", "app-pass").close()
    # A data directory that already has users keeps them: --definitions adds to it.
    other = tmp_path / "other"
    with BrokerThread(data_dir=str(other)):
        pass
    with BrokerThread(data_dir=str(other), definitions=str(definitions)) as broker:
        connect(broker.port).close()
        connect(broker.port, "/", "app", "app-pass").close()


def test_bad_definitions_file_stops_the_start(tmp_path):
    bad = write_json(tmp_path / "bad.json", {"bindings": [
        {"source": "amq.direct", "vhost": "/", "destination": "q", "destination_type": "topic"}]})
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data_dir), "--definitions", str(bad)],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )
    assert result.returncode == 1
    assert (
        f"amqp-broker: configuration error: definitions file {bad}: bindings[0] (from exchange "
        "'amq.direct' to topic 'q' in vhost '/'): 'destination_type' must be \"queue\" or "
        "\"exchange\", got 'topic'"
    ) in result.stderr
    assert "Server startup complete" not in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "amqp_broker", "--port", "0", "--data-dir", str(data_dir),
         "--definitions", str(tmp_path / "none.json")],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    # Nothing of the failed starts was written: a later normal start seeds the defaults.
    with BrokerThread(data_dir=str(data_dir)) as broker:
        connect(broker.port).close()


# -- export_definitions / import_definitions on live brokers ---------------------------------------


def declare_everything(port: int) -> None:
    conn = connect(port)
    ch = conn.channel()
    ch.exchange_declare("rt.topic", "topic", durable=True)
    ch.exchange_declare("rt.ae", "fanout", durable=True)
    ch.exchange_declare("rt.in", "direct", durable=True, arguments={"alternate-exchange": "rt.ae"})
    ch.exchange_declare("rt.internal", "fanout", durable=True, internal=True)
    ch.exchange_declare("rt.headers", "headers", durable=False, auto_delete=True)
    ch.queue_declare("rt.q1", durable=True, arguments={
        "x-message-ttl": 5000, "x-dead-letter-exchange": "rt.ae", "x-max-length": 10,
        "x-overflow": "reject-publish", "x-queue-type": "classic"})
    ch.queue_declare("rt.q2", durable=True, arguments={"x-max-priority": 9})
    ch.queue_declare("rt.transient", durable=False, auto_delete=True)
    ch.queue_declare("rt.exclusive", exclusive=True)
    ch.queue_bind("rt.q1", "rt.topic", "a.*.c")
    ch.queue_bind("rt.q1", "rt.topic", "a.#")
    ch.queue_bind("rt.q2", "rt.ae")
    ch.queue_bind("rt.q2", "amq.direct", "to-q2")
    ch.queue_bind("rt.transient", "rt.headers", "", arguments={
        "x-match": "any", "kind": "x", "n": 7, "flag": True, "nested": {"k": "v"}})
    ch.queue_bind("rt.exclusive", "rt.topic", "#")
    ch.exchange_bind("rt.topic", "rt.in", "key")
    ch.exchange_bind("rt.internal", "rt.topic", "b.#")
    ch.queue_bind("rt.q2", "rt.internal")
    conn.close()


def test_live_round_trip_export_import_export():
    with BrokerThread() as first, BrokerThread() as second:
        declare_everything(first.port)
        exported = first.call(export_definitions, first.server.broker)
        names = [q["name"] for q in exported["queues"]]
        assert names == ["rt.q1", "rt.q2", "rt.transient"]  # no exclusive queue, as RabbitMQ
        assert [x["name"] for x in exported["exchanges"]] == [
            "rt.ae", "rt.headers", "rt.in", "rt.internal", "rt.topic"]
        assert {(b["source"], b["destination"]) for b in exported["bindings"]} == {
            ("rt.topic", "rt.q1"), ("rt.ae", "rt.q2"), ("amq.direct", "rt.q2"),
            ("rt.headers", "rt.transient"), ("rt.in", "rt.topic"), ("rt.topic", "rt.internal"),
            ("rt.internal", "rt.q2"),
        }
        headers = [b for b in exported["bindings"] if b["source"] == "rt.headers"][0]
        assert headers["arguments"] == {
            "x-match": "any", "kind": "x", "n": 7, "flag": True, "nested": {"k": "v"}}
        json.dumps(exported)  # plain JSON all the way down

        second.call(import_definitions, second.server.broker, json.loads(json.dumps(exported)))
        assert second.call(export_definitions, second.server.broker) == exported
        second.call(import_definitions, second.server.broker, exported)  # idempotent
        assert second.call(export_definitions, second.server.broker) == exported
        # The imported state works: guest logs in with first's hash; routing is the same.
        conn = connect(second.port)
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("rt.in", "key", b"x")            # rt.in -> rt.topic: "key" matches none
        ch.basic_publish("rt.topic", "a.b.c", b"abc")     # rt.q1 once, though two bindings match
        ch.basic_publish("rt.topic", "b.1", b"internal")  # rt.topic -> rt.internal -> rt.q2
        ch.basic_publish("amq.direct", "to-q2", b"direct")
        assert ch.queue_declare("rt.q1", passive=True).method.message_count == 1
        assert ch.queue_declare("rt.q2", passive=True).method.message_count == 2
        conn.close()


# -- import_definitions on a bare Broker ------------------------------------------------------------


BAD_FILES = [
    ({"queues": [{"name": "q", "vhost": "nope", "durable": True}]},
     "queues[0] (queue 'q' in vhost 'nope'): vhost 'nope' does not exist"),
    ({"exchanges": [{"name": "x", "vhost": "/", "type": "x-modulus-hash"}]},
     "exchanges[0] (exchange 'x' in vhost '/'): unknown exchange type 'x-modulus-hash'"),
    ({"users": [{"name": "u", "password_hash": "abc",
                 "hashing_algorithm": "rabbit_password_hashing_bcrypt"}]},
     "users[0] ('u'): hashing_algorithm 'rabbit_password_hashing_bcrypt' is not supported"),
    ({"users": [{"name": "u", "password_hash": "bm90IGEgaGFzaA==",
                 "hashing_algorithm": "rabbit_password_hashing_sha512"}]},
     "users[0] ('u'): 'password_hash' is not a rabbit_password_hashing_sha512 hash (10 bytes, not 68)"),
    ({"permissions": [{"user": "guest", "vhost": "/", "configure": "(", "write": "", "read": ""}]},
     "permissions[0] (user 'guest' on vhost '/'): '(' is not a valid regular expression"),
    ({"topic_permissions": [{"user": "nobody", "vhost": "/", "exchange": "amq.topic"}]},
     "topic_permissions[0] (user 'nobody' on exchange 'amq.topic' in vhost '/'): user 'nobody' "
     "does not exist"),
    ({"users": [{"name": "u", "password_hash": "bm90IGEgaGFzaA=="}]},
     "users[0] ('u'): 'password_hash' is not a rabbit_password_hashing_sha256 hash"),
    ({"users": [{"name": "u", "password": "p", "password_hash": ""}]},
     "users[0] ('u'): both 'password' and 'password_hash' are given"),
    ({"users": [{"password_hash": ""}]}, "users[0]: 'name' is missing"),
    ({"users": [{"name": "u", "tags": 3}]}, "users[0] ('u'): 'tags' must be a list of strings"),
    ({"queues": [{"name": "q", "vhost": "/", "durable": "yes"}]},
     "queues[0] (queue 'q' in vhost '/'): 'durable' must be true or false, got a string"),
    ({"queues": [{"name": "q", "vhost": "/", "arguments": "none"}]},
     "queues[0] (queue 'q' in vhost '/'): 'arguments' must be an object, got a string"),
    ({"queues": {"name": "q"}}, "'queues' must be a list, got an object"),
    ({"queues": ["q"]}, "queues[0]: expected an object, got a string"),
    ({"permissions": [{"user": "nobody", "vhost": "/"}]},
     "permissions[0] (user 'nobody' on vhost '/'): user 'nobody' does not exist"),
    ({"vhosts": [{"name": ""}]}, "vhosts[0]: 'name' must not be empty"),
    ({"bindings": [{"source": "amq.direct", "vhost": "/", "destination": "q"}]},
     "bindings[0]: 'destination_type' is missing"),
    ({"users": [{"name": "", "password_hash": ""}]}, "users[0]: 'name' must not be empty"),
    ({"queues": [{"name": "q", "vhost": "/"}],
      "bindings": [{"source": "amq.headers", "vhost": "/", "destination": "q",
                    "destination_type": "queue", "arguments": {"x-match": "some"}}]},
     "bindings[0] (from exchange 'amq.headers' to queue 'q' in vhost '/'): PRECONDITION_FAILED - "
     "Invalid x-match field value"),
    ([], "expected a JSON object"),
]


@pytest.mark.parametrize("data, message", BAD_FILES, ids=[m.split(":")[0] for _d, m in BAD_FILES])
def test_bad_entries_are_named(data, message):
    broker = Broker()
    before = export_definitions(broker)
    with pytest.raises(DefinitionsError) as error:
        import_definitions(broker, data)
    assert message in str(error.value)
    assert export_definitions(broker) == before


def test_import_is_tolerant_and_follows_rabbitmq(caplog):
    broker = Broker()
    vhost = broker.vhosts["/"]
    vhost.declare_queue(None, "existing", durable=True)
    caplog.set_level(logging.WARNING, logger="amqp_broker.definitions")
    counts = import_definitions(broker, {
        "rabbit_version": "3.8.0",
        "something_new": {"ignored": True},
        "users": [
            {"name": "old-style", "password": "pw", "tags": "administrator, management",
             "future_key": 1},
            {"name": "guest", "password_hash": "rbn0relyMSNu0IIghGdcAt+mwlADvsDEs8d7kTv1HOtjSCFO",
             "tags": ["administrator"], "limits": {"max-connections": 5}},
            {"name": "no-password", "tags": []},
        ],
        "vhosts": [{"name": "v2", "description": "older format", "tracing": False}],
        "permissions": [{"user": "old-style", "vhost": "v2", "configure": "^$", "write": ".*",
                         "read": ".*"}],
        "exchanges": [
            {"name": "amq.direct", "vhost": "/", "type": "direct"},
            {"name": "plain", "vhost": "v2", "type": "fanout", "arguments": []},
        ],
        "queues": [
            {"name": "amq.gen-abc", "vhost": "/", "durable": True},
            {"name": "existing", "vhost": "/", "durable": True, "auto_delete": False,
             "arguments": {}},
        ],
        "bindings": [
            {"source": "", "vhost": "/", "destination": "existing", "destination_type": "queue",
             "routing_key": "existing"},
            {"source": "plain", "vhost": "v2", "destination": "gone", "destination_type": "queue"},
            {"source": "amq.fanout", "vhost": "/", "destination": "existing",
             "destination_type": "queue"},
        ],
        "policies": [{"vhost": "/", "name": "p", "pattern": ".*", "definition": {}}],
    })
    assert counts == {"users": 3, "vhosts": 1, "permissions": 1, "topic_permissions": 0,
                      "exchanges": 1, "queues": 1,
                      "bindings": 1, "skipped": 5}
    users = broker.users.users
    assert users["guest"].limits == {"max-connections": 5}
    assert users["old-style"].tags == ["administrator", "management"]
    assert broker.authenticate("old-style", "pw") is not None
    assert broker.authenticate("guest", "guest") is not None  # RabbitMQ's hash of "guest"
    assert broker.authenticate("no-password", "") is None
    assert users["old-style"].vhosts == {"v2"}
    assert "plain" in broker.vhosts["v2"].exchanges
    assert "amq.gen-abc" not in vhost.queues
    assert vhost.exchanges["amq.fanout"].has_binding(vhost.queues["existing"], "", {})
    warnings = caplog.text
    for expected in (
        "exchanges[0] (exchange 'amq.direct' in vhost '/'): the default and amq.* exchanges",
        "queues[0] (queue 'amq.gen-abc' in vhost '/'): queues named amq.*",
        "bindings[0] (from exchange '' to queue 'existing' in vhost '/'): bindings of the default",
        "bindings[1] (from exchange 'plain' to queue 'gone' in vhost 'v2'): skipped, no queue",
        "1 policies ignored",
    ):
        assert expected in warnings


def test_export_leaves_out_what_rabbitmq_leaves_out():
    broker = Broker()
    data = export_definitions(broker)
    assert data["exchanges"] == [] and data["queues"] == [] and data["bindings"] == []
    assert data["users"] == [{
        "name": "guest", "password_hash": broker.users.users["guest"].password_hash,
        "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"],
        "limits": {},
    }]
    assert data["permissions"] == [
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
    assert data["vhosts"] == [
        {"name": "/", "limits": [], "metadata": {"description": "", "tags": []}}]
    for key in ("topic_permissions", "parameters", "global_parameters", "policies"):
        assert data[key] == []


# -- a round trip through a real RabbitMQ ----------------------------------------------------------


def _rabbitmqctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                          timeout=timeout)


def _rabbitmq_available() -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        if _rabbitmqctl("list_vhosts", timeout=30).returncode != 0:
            return False
        connect(5672).close()
    except Exception:
        return False
    return True


def test_round_trip_through_rabbitmq():
    """Our export imports into RabbitMQ (our password hash logs in there), and RabbitMQ's export
    of it imports back (its hash logs in here). Uses a vhost and user of its own, deleted after."""
    if not _rabbitmq_available():
        pytest.skip("no RabbitMQ reachable with rabbitmqctl and on 127.0.0.1:5672")
    tag = uuid.uuid4().hex[:8]
    vhost, user, password = f"amqp-broker-defs-{tag}", f"defs-user-{tag}", f"pw-{tag}"
    # rabbitmqctl's node runs as another user: files go through a directory it can use.
    workdir = tempfile.mkdtemp(prefix="amqp-broker-defs-")
    os.chmod(workdir, 0o777)
    ours = os.path.join(workdir, "ours.json")
    theirs = os.path.join(workdir, "theirs.json")
    try:
        with BrokerThread() as broker:
            def setup(b=broker.server.broker):
                import_definitions(b, {
                    "vhosts": [{"name": vhost}],
                    "users": [{"name": user, "password": password, "tags": ["management"]}],
                    "permissions": [{"user": user, "vhost": vhost, "configure": ".*",
                                     "write": ".*", "read": ".*"}],
                })
            broker.call(setup)
            conn = connect(broker.port, vhost, user, password)
            ch = conn.channel()
            ch.exchange_declare("x.topic", "topic", durable=True)
            ch.exchange_declare("x.in", "direct", durable=True,
                                arguments={"alternate-exchange": "x.topic"})
            ch.queue_declare("q.args", durable=True, arguments={"x-max-length": 5,
                                                               "x-message-ttl": 60000})
            ch.queue_declare("q.plain", durable=True)
            ch.queue_bind("q.args", "x.topic", "a.#")
            ch.queue_bind("q.plain", "amq.headers", "", arguments={"x-match": "all", "k": "v"})
            ch.exchange_bind("x.topic", "x.in", "fwd")
            conn.close()
            exported = broker.call(export_definitions, broker.server.broker)
        mine = {key: [e for e in exported[key] if e.get("vhost", e.get("name")) == vhost]
                for key in ("vhosts", "permissions", "queues", "exchanges", "bindings")}
        mine["users"] = [u for u in exported["users"] if u["name"] == user]
        with open(ours, "w") as fh:
            json.dump({**exported, **mine}, fh)
        os.chmod(ours, 0o644)

        result = _rabbitmqctl("import_definitions", ours)
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 30
        while True:  # RabbitMQ imports asynchronously
            try:
                conn = connect(5672, vhost, user, password)
                ch = conn.channel()
                ch.queue_declare("q.plain", passive=True)
                break
            except pika.exceptions.AMQPError:
                assert time.monotonic() < deadline, "RabbitMQ did not apply the import"
                time.sleep(0.5)
        ch.confirm_delivery()
        ch.basic_publish("x.in", "a.x", b"via-ae")     # no binding: alternate exchange x.topic
        ch.basic_publish("x.in", "fwd", b"forwarded")  # x.in -> x.topic: "fwd" matches no a.#
        ch.basic_publish("x.topic", "a.b", b"ab")
        ch.basic_publish("amq.headers", "", b"h", pika.BasicProperties(headers={"k": "v"}))
        assert ch.queue_declare("q.args", passive=True).method.message_count == 2  # on RabbitMQ
        assert ch.queue_declare("q.plain", passive=True).method.message_count == 1
        conn.close()

        result = _rabbitmqctl("export_definitions", theirs)
        assert result.returncode == 0, result.stderr
        with open(theirs) as fh:
            rabbit = json.load(fh)
        back = {key: [e for e in rabbit[key] if e.get("vhost", e.get("name")) == vhost]
                for key in ("vhosts", "permissions", "queues", "exchanges", "bindings")}
        back["users"] = [u for u in rabbit["users"] if u["name"] == user]
        assert back["users"][0]["password_hash"] == mine["users"][0]["password_hash"]
        with BrokerThread() as broker:
            broker.call(import_definitions, broker.server.broker, back)
            again = broker.call(export_definitions, broker.server.broker)
            connect(broker.port, vhost, user, password).close()  # RabbitMQ's hash logs in here

        def entries(data: dict, key: str) -> list[str]:
            out = []
            for entry in data[key]:
                if entry.get("vhost", entry.get("name")) in (vhost, user):
                    entry = {k: v for k, v in entry.items() if k != "internal"}
                    out.append(json.dumps(entry, sort_keys=True))
            return sorted(out)

        for key in ("users", "permissions", "queues", "exchanges", "bindings"):
            assert entries(again, key) == entries(mine, key), key
    finally:
        _rabbitmqctl("delete_vhost", vhost)
        _rabbitmqctl("delete_user", user)
        shutil.rmtree(workdir, ignore_errors=True)
