"""Permissions on this broker alone, through real clients: each rule of RabbitMQ's table (the
differential test compares the same with RabbitMQ), what RabbitMQ cannot show here (a change
reaching connections already open), and how users, topic permissions and password hashes are
kept, exported and imported."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pika
import pika.exceptions
import pytest

from amqp_broker.broker.admin import AdminError
from amqp_broker.definitions import export_definitions
from amqp_broker.testing import BrokerThread


@pytest.fixture(scope="module")
def broker():
    with BrokerThread() as running:
        yield running


@pytest.fixture
def user(broker):
    """Make a user with these permissions on "/" (and topic permissions); returns its name."""
    made = []

    def make(configure: str, write: str, read: str, topics=()) -> str:
        name = f"u-{uuid.uuid4().hex[:8]}"
        admin = broker.server.admin

        def go() -> None:
            admin.add_user(name, "pw")
            admin.set_permissions(name, "/", configure, write, read)
            for exchange, topic_write, topic_read in topics:
                admin.set_topic_permissions(name, "/", exchange, topic_write, topic_read)
        broker.call(go)
        made.append(name)
        return name

    yield make
    for name in made:
        broker.call(broker.server.admin.delete_user, name)


def connect(broker, name: str, password: str = "pw") -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.port, credentials=pika.PlainCredentials(name, password), heartbeat=0))


def refused(fn, *args, **kw) -> str:
    """The text of the 403 channel close ``fn`` provokes."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        fn(*args, **kw)
    assert info.value.reply_code == 403
    return info.value.reply_text


def denied(kind: str, name: str, user: str) -> str:
    return f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '/' refused for user '{user}'"


def publish(ch, exchange: str, key: str) -> None:
    ch.confirm_delivery()
    ch.basic_publish(exchange, key, b"m")


@pytest.fixture
def admin_ch(broker):
    conn = connect(broker, "guest", "guest")
    yield conn.channel()
    conn.close()


def test_configure_covers_declare_and_delete(broker, user, unique):
    name = user(r"^app\.", ".*", ".*")
    conn = connect(broker, name)
    ok, other = "app." + unique("q"), unique("q")
    conn.channel().queue_declare(ok)
    conn.channel().exchange_declare(ok, "fanout")
    assert refused(conn.channel().queue_declare, other) == denied("queue", other, name)
    assert refused(conn.channel().exchange_declare, other, "fanout") == denied("exchange", other, name)
    assert refused(conn.channel().queue_delete, other) == denied("queue", other, name)  # even missing
    assert refused(conn.channel().exchange_delete, other) == denied("exchange", other, name)
    conn.channel().queue_delete(ok)
    conn.channel().exchange_delete(ok)
    conn.close()


def test_passive_declares_need_no_permission(broker, user, admin_ch, unique):
    q, x = unique("q"), unique("x")
    admin_ch.queue_declare(q)
    admin_ch.exchange_declare(x, "topic")
    name = user("", "", "")
    conn = connect(broker, name)
    assert conn.channel().queue_declare(q, passive=True).method.queue == q
    conn.channel().exchange_declare(x, passive=True)
    conn.close()
    admin_ch.queue_delete(q)
    admin_ch.exchange_delete(x)


def test_server_named_queues_are_checked_under_their_amq_gen_name(broker, user):
    conn = connect(broker, user(r"^amq\.gen-", "", ""))
    assert conn.channel().queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")
    text = refused(connect(broker, user(r"^app\.", "", "")).channel().queue_declare, "", exclusive=True)
    assert text.startswith("ACCESS_REFUSED - access to queue 'amq.gen-")
    conn.close()


def test_write_and_read_cover_publish_get_consume_purge(broker, user, admin_ch, unique):
    q = unique("q")
    admin_ch.queue_declare(q)
    writer, reader = user("", ".*", ""), user("", "", ".*")
    w = connect(broker, writer)
    publish(w.channel(), "", q)
    assert refused(w.channel().basic_get, q) == denied("queue", q, writer)
    assert refused(w.channel().queue_purge, q) == denied("queue", q, writer)
    assert refused(w.channel().basic_consume, q, lambda *a: None) == denied("queue", q, writer)
    r = connect(broker, reader)
    assert refused(publish, r.channel(), "", q) == denied("exchange", "amq.default", reader)
    assert r.channel().basic_get(q, auto_ack=True)[2] == b"m"
    r.channel().queue_purge(q)
    r.channel().basic_consume(q, lambda *a: None)
    w.close()
    r.close()
    admin_ch.queue_delete(q)


def test_bindings_need_write_on_the_destination_and_read_on_the_source(broker, user, admin_ch):
    admin_ch.exchange_declare("app.src", "direct")
    admin_ch.exchange_declare("other.src", "direct")
    admin_ch.queue_declare("app.dst")
    admin_ch.queue_declare("other.dst")
    name = user("", r"^app\.", r"^app\.")
    conn = connect(broker, name)
    conn.channel().queue_bind("app.dst", "app.src", "k")
    assert refused(conn.channel().queue_bind, "other.dst", "app.src", "k") == denied("queue", "other.dst", name)
    assert refused(conn.channel().queue_bind, "app.dst", "other.src", "k") == denied("exchange", "other.src", name)
    assert refused(conn.channel().queue_unbind, "app.dst", "other.src", "k") == denied(
        "exchange", "other.src", name)
    assert refused(conn.channel().exchange_bind, "other.src", "app.src", "k") == denied(
        "exchange", "other.src", name)
    conn.channel().queue_unbind("app.dst", "app.src", "k")
    conn.close()
    for q in ("app.dst", "other.dst"):
        admin_ch.queue_delete(q)
    for x in ("app.src", "other.src"):
        admin_ch.exchange_delete(x)


def test_topic_permissions_on_publish_and_bind(broker, user, admin_ch, unique):
    name = user(".*", ".*", ".*", topics=[("amq.topic", r"^{username}\.", r"^{vhost}\.")])
    q = unique("q")
    admin_ch.queue_declare(q)
    conn = connect(broker, name)
    publish(conn.channel(), "amq.topic", f"{name}.x")
    assert refused(publish, conn.channel(), "amq.topic", "x.y") == (
        f"ACCESS_REFUSED - access to topic 'x.y' in exchange 'amq.topic' in vhost '/' refused for "
        f"user '{name}'")
    conn.channel().queue_bind(q, "amq.topic", "/.x")
    assert "access to topic 'x'" in refused(conn.channel().queue_bind, q, "amq.topic", "x")
    publish(conn.channel(), "amq.direct", "x.y")  # no topic permission on it
    conn.close()
    admin_ch.queue_delete(q)


def test_a_change_applies_to_connections_already_open(broker, user, unique):
    """RabbitMQ's channels may keep an answer cached until they go idle; here the next operation
    sees the change, including the publish that was already allowed."""
    name = user(".*", ".*", ".*")
    conn = connect(broker, name)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "a.b", b"1")
    broker.call(broker.server.admin.set_permissions, name, "/", ".*", "^amq\\.direct$", ".*")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish("amq.topic", "a.b", b"2")
    assert info.value.reply_text == denied("exchange", "amq.topic", name)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.direct", "a.b", b"3")
    broker.call(broker.server.admin.set_permissions, name, "/", ".*", ".*", ".*")
    broker.call(broker.server.admin.set_topic_permissions, name, "/", "amq.topic", "^a\\.", "")
    ch.basic_publish("amq.topic", "a.b", b"4")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.basic_publish("amq.topic", "b.a", b"5")
    broker.call(broker.server.admin.clear_permissions, name, "/")
    assert refused(conn.channel().queue_declare, unique("q")).startswith("ACCESS_REFUSED - access to queue")
    conn.close()


def test_admin_topic_permissions(broker, user):
    admin = broker.server.admin
    name = user(".*", ".*", ".*")
    broker.call(admin.set_topic_permissions, name, "/", "amq.topic", "^a", "^b")
    broker.call(admin.set_topic_permissions, name, "/", "events", ".*", "")
    assert broker.call(admin.topic_permissions, None, name) == [
        {"user": name, "vhost": "/", "exchange": "amq.topic", "write": "^a", "read": "^b"},
        {"user": name, "vhost": "/", "exchange": "events", "write": ".*", "read": ""},
    ]
    broker.call(admin.clear_topic_permissions, name, "/", "events")
    assert [p["exchange"] for p in broker.call(admin.topic_permissions, "/", name)] == ["amq.topic"]
    broker.call(admin.clear_topic_permissions, name, "/")
    assert broker.call(admin.topic_permissions, "/", name) == []
    for call, kind in (
        (lambda: admin.set_topic_permissions("nobody", "/", "x"), "not_found"),
        (lambda: admin.set_topic_permissions(name, "nope", "x"), "not_found"),
        (lambda: admin.set_topic_permissions(name, "/", "x", "("), "bad_request"),
        (lambda: admin.clear_topic_permissions(name, "/"), "not_found"),
    ):
        with pytest.raises(AdminError) as info:
            broker.call(call)
        assert info.value.kind == kind


def test_topic_permissions_and_hashes_survive_a_restart(tmp_path):
    data_dir = str(tmp_path / "data")
    with BrokerThread(data_dir=data_dir) as first:
        admin = first.server.admin

        def setup() -> None:
            admin.add_user("t", password_hash=_hash("sha512", "secret"),
                           hashing_algorithm="rabbit_password_hashing_sha512")
            admin.set_permissions("t", "/", "^t", "^t", "^t")
            admin.set_topic_permissions("t", "/", "amq.topic", "^{username}", "")
        first.call(setup)
    with BrokerThread(data_dir=data_dir) as second:
        admin = second.server.admin
        assert second.call(admin.topic_permissions) == [
            {"user": "t", "vhost": "/", "exchange": "amq.topic", "write": "^{username}", "read": ""}]
        assert second.call(admin.user, "t")["hashing_algorithm"] == "rabbit_password_hashing_sha512"
        conn = connect(second, "t", "secret")
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.basic_publish("amq.topic", "x", b"m")
        assert info.value.reply_text == denied("exchange", "amq.topic", "t")
        conn.close()


# -- password hashes --------------------------------------------------------------------------------


def _hash(digest: str, password: str, salt: bytes = b"salt") -> str:
    """RabbitMQ's hash: base64(salt + DIGEST(salt + password)), computed independently."""
    return base64.b64encode(salt + hashlib.new(digest, salt + password.encode()).digest()).decode()


@pytest.mark.parametrize("algorithm, digest", [
    ("rabbit_password_hashing_sha256", "sha256"),
    ("rabbit_password_hashing_sha512", "sha512"),
    ("rabbit_password_hashing_md5", "md5"),
])
def test_each_rabbitmq_hash_imports_and_logs_in(broker, algorithm, digest):
    name = f"h-{digest}-{uuid.uuid4().hex[:6]}"
    admin = broker.server.admin
    broker.call(admin.import_definitions, {
        "users": [{"name": name, "password_hash": _hash(digest, "s3cret"), "hashing_algorithm": algorithm,
                   "tags": []}],
        "permissions": [{"user": name, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    })
    connect(broker, name, "s3cret").close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(broker, name, "wrong")
    exported = broker.call(export_definitions, broker.server.broker)
    entry = next(u for u in exported["users"] if u["name"] == name)
    assert entry["hashing_algorithm"] == algorithm
    assert entry["password_hash"] == _hash(digest, "s3cret")
    broker.call(admin.change_password, name, "new")  # a new password gets the default hash
    assert broker.call(admin.user, name)["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    connect(broker, name, "new").close()
    broker.call(admin.delete_user, name)


def test_a_file_from_rabbitmq_before_3_6_is_md5(broker):
    name = f"legacy-{uuid.uuid4().hex[:6]}"
    broker.call(broker.server.admin.import_definitions, {
        "rabbit_version": "3.5.7",
        "users": [{"name": name, "password_hash": _hash("md5", "old"), "tags": ""}],
        "permissions": [{"user": name, "vhost": "/", "configure": "", "write": "", "read": ""}],
    })
    connect(broker, name, "old").close()
    broker.call(broker.server.admin.delete_user, name)


def test_a_blank_password_never_logs_in(broker):
    """RabbitMQ's internal database refuses blank passwords, whatever the stored hash."""
    name = f"blank-{uuid.uuid4().hex[:6]}"
    broker.call(broker.server.admin.add_user, name, "")
    broker.call(broker.server.admin.set_permissions, name, "/")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(broker, name, "")
    broker.call(broker.server.admin.delete_user, name)


def test_topic_permissions_export_and_import(broker, user):
    name = user("", "", "", topics=[("amq.topic", "^w", "^r")])
    data = broker.call(export_definitions, broker.server.broker)
    mine = [p for p in data["topic_permissions"] if p["user"] == name]
    assert mine == [{"user": name, "vhost": "/", "exchange": "amq.topic", "write": "^w", "read": "^r"}]
    with BrokerThread() as other:
        data = json.loads(json.dumps(data))
        other.call(other.server.admin.import_definitions, data)
        assert [p for p in other.call(other.server.admin.topic_permissions) if p["user"] == name] == mine


def test_only_an_impersonator_publishes_with_another_user_id(broker, user, admin_ch, unique):
    """Tags give no AMQP powers but this one (rabbit_channel:check_user_id_header)."""
    q = unique("q")
    admin_ch.queue_declare(q)
    plain = user(".*", ".*", ".*")
    props = pika.BasicProperties(user_id="someone-else")
    conn = connect(broker, plain)
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish("", q, b"m", props)
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - user_id property set to 'someone-else' but authenticated user was "
        f"'{plain}'")
    conn.close()
    impersonator = user(".*", ".*", ".*")
    broker.call(broker.server.admin.set_user_tags, impersonator, ["impersonator"])
    conn = connect(broker, impersonator)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", q, b"m", props)
    assert ch.basic_get(q, auto_ack=True)[1].user_id == "someone-else"
    conn.close()
    admin_ch.queue_delete(q)
