"""broker/access.py: loopback addresses, patterns, grants (no sockets: the rules themselves).
tests/security runs the same rules through real clients, against RabbitMQ too."""

from __future__ import annotations

import pytest
from pamqp import commands, frame

from amqp_broker.broker.access import (
    Grants,
    compile_pattern,
    expand_topic_pattern,
    is_loopback,
    loopback_refusal,
)
from amqp_broker.broker.auth import User
from amqp_broker.broker.broker import Broker
from amqp_broker.broker.exchange import EXCHANGE_TYPES
from amqp_broker.errors import ACCESS_REFUSED, AMQPError
from amqp_broker.protocol.connection import Connection


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("192.0.2.2", False), ("10.0.0.1", False), ("fd00::2", False), ("::ffff:10.0.0.1", False),
    ("0.0.0.0", False), ("fe80::1%eth0", False), ("unknown", False), ("", False),
])
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


def test_loopback_refusal():
    users = frozenset({"guest"})
    assert loopback_refusal("guest", "192.0.2.2", users) == "user 'guest' can only connect via localhost"
    assert loopback_refusal("guest", "127.0.0.1", users) is None
    assert loopback_refusal("guest", None, users) is None  # in-process: no socket at all
    assert loopback_refusal("alice", "192.0.2.2", users) is None
    assert loopback_refusal("guest", "192.0.2.2", frozenset()) is None


def test_empty_pattern_matches_only_the_empty_name():
    match = compile_pattern("", "test")
    assert match("") is not None
    assert match("q") is None


def test_patterns_are_searched_not_anchored():
    match = compile_pattern(r"app\.", "test")
    assert match("app.q") is not None
    assert match("my.app.q") is not None  # re:run finds it anywhere
    assert compile_pattern(r"^app\.", "test")("my.app.q") is None


def test_a_pattern_python_cannot_compile_matches_nothing(caplog):
    match = compile_pattern("(?<name>x)+(", "configure permission of user 'u' on vhost '/'")
    assert match("x") is None and match("") is None
    assert "matches nothing" in caplog.text and "user 'u'" in caplog.text


def test_topic_variables_are_replaced_as_text():
    assert expand_topic_pattern(r"^{username}\.{vhost}\.{client_id}", "a.b", "/") == (
        r"^a.b\./\.{client_id}")


def _grants(permissions=None, topics=None, name="u", vhost="/") -> Grants:
    user = User(name, "", permissions={vhost: permissions} if permissions else {},
                topic_permissions={vhost: topics} if topics else {})
    return Grants(user, name, vhost)


def _refused(fn, *args) -> str:
    with pytest.raises(AMQPError) as info:
        fn(*args)
    assert info.value.reply_code == ACCESS_REFUSED
    return info.value.reply_text


def test_grants_check_each_permission_and_name_the_resource():
    grants = _grants((r"^c", r"^w", r"^r"))
    grants.configure("queue", "cq")
    grants.write("exchange", "wx")
    grants.read("queue", "rq")
    assert _refused(grants.configure, "queue", "wq") == (
        "ACCESS_REFUSED - access to queue 'wq' in vhost '/' refused for user 'u'")
    assert _refused(grants.write, "exchange", "cx") == (
        "ACCESS_REFUSED - access to exchange 'cx' in vhost '/' refused for user 'u'")
    assert _refused(grants.read, "queue", "") == (
        "ACCESS_REFUSED - access to queue '' in vhost '/' refused for user 'u'")


def test_default_exchange_is_checked_as_amq_default():
    assert _refused(_grants((".*", "^x$", ".*")).write, "exchange", "") == (
        "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'u'")
    _grants((".*", r"^amq\.default$", ".*")).write("exchange", "")


def test_no_permissions_on_the_vhost_refuse_everything():
    grants = _grants()
    assert not grants.full
    for check in (grants.configure, grants.write, grants.read):
        _refused(check, "queue", "q")


def test_full_access_is_known_without_matching():
    assert _grants((".*", ".*", ".*")).full
    assert not _grants((".*", ".*", "^q")).full


def test_topic_checks_apply_to_topic_exchanges_only():
    grants = _grants((".*",) * 3, {"amq.topic": (r"^{username}\.", "^$"), "d": ("^never$", "^never$")},
                     name="bob")
    topic = EXCHANGE_TYPES["topic"](None, "amq.topic")
    direct = EXCHANGE_TYPES["direct"](None, "d")
    other = EXCHANGE_TYPES["topic"](None, "other")
    grants.check_topic(True, topic, "bob.x")
    assert _refused(grants.check_topic, True, topic, "x.y") == (
        "ACCESS_REFUSED - access to topic 'x.y' in exchange 'amq.topic' in vhost '/' refused for "
        "user 'bob'")
    grants.check_topic(False, topic, "")  # read "" is ^$
    _refused(grants.check_topic, False, topic, "bob.x")
    grants.check_topic(True, direct, "anything")  # a direct exchange: topic permissions ignored
    grants.check_topic(True, other, "anything")  # no topic permission on it: open
    assert not grants.topic_free("amq.topic") and grants.topic_free("other")


def test_answers_are_cached_and_the_cache_is_bounded(monkeypatch):
    from amqp_broker.broker import access

    monkeypatch.setattr(access, "CACHE_LIMIT", 3)
    grants = _grants(("^a", "^a", "^a"))
    for name in ("a1", "a2", "a3", "a4", "b"):
        grants.allows("read", name)
    assert len(grants._answers) <= 3
    assert grants.allows("read", "a9") and not grants.allows("read", "b")


# -- the broker's door: permissions changed while sessions are open --------------------------------


def test_permission_changes_reach_open_sessions_and_their_publish_cache():
    broker = Broker()
    guest = broker.authenticate("guest", "guest")
    session = broker.open_session(guest, "/", {}, "peer")

    class Sink:
        def __getattr__(self, name):
            return lambda *args: None

    channel = session.open_channel(1, Sink())
    vhost = broker.vhosts["/"]
    vhost.declare_queue(None, "q")
    from amqp_broker.broker.message import Message

    channel.basic_publish("", "q", False, False, Message("", "q", b"", b"x", 0, None, None))
    assert "" in channel.may_publish
    broker.set_permissions("guest", "/", (".*", "^x$", ".*"))
    assert channel.may_publish == {}
    assert session.grants is broker.grants_for("guest", "/")
    with pytest.raises(AMQPError) as info:
        channel.basic_publish("", "q", False, False, Message("", "q", b"", b"x", 0, None, None))
    assert "access to exchange 'amq.default'" in info.value.reply_text
    broker.set_topic_permissions("guest", "/", "amq.topic", "^a", "^a")
    assert not session.grants.topic_free("amq.topic")
    assert broker.clear_topic_permissions("guest", "/", "amq.topic")
    assert not broker.clear_topic_permissions("guest", "/")
    assert broker.clear_permissions("guest", "/") and not broker.clear_permissions("guest", "/")
    with pytest.raises(AMQPError):
        session.grants.read("queue", "q")


# -- login over a socket whose local end is not loopback (sans-IO: the address is given) ------------


def _login(broker: Broker, local: str, user: str = "guest", capabilities=True) -> Connection:
    conn = Connection(broker, "192.0.2.9:40000", local=local)
    conn.receive_data(b"AMQP\x00\x00\x09\x01")
    props = {"capabilities": {"authentication_failure_close": True}} if capabilities else {}
    conn.receive_data(frame.marshal(commands.Connection.StartOk(
        client_properties=props, mechanism="PLAIN", response=f"\0{user}\0{user}"), 0))
    return conn


def _methods(conn: Connection) -> list:
    out, methods = bytes(conn.out), []
    while out:
        consumed, _channel, value = frame.unmarshal(out)
        out = out[consumed:]
        methods.append(value)
    return methods


def test_guest_is_refused_over_a_non_loopback_address(caplog):
    broker = Broker()
    conn = _login(broker, "192.0.2.2:5672")
    close = _methods(conn)[-1]
    assert isinstance(close, commands.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details "
        "see the broker logfile.", 0, 0)
    assert conn.finished
    line = next(r.getMessage() for r in caplog.records if "can only connect" in r.getMessage())
    assert "PLAIN login refused: user 'guest' can only connect via localhost" in line
    assert '--loopback-users ""' in line and "AMQP_BROKER_LOOPBACK_USERS=" in line


def test_guest_without_the_close_capability_is_dropped_silently():
    conn = _login(Broker(), "192.0.2.2:5672", capabilities=False)
    assert not any(isinstance(m, commands.Connection.Close) for m in _methods(conn))
    assert conn.finished


@pytest.mark.parametrize("local", ["127.0.0.1:5672", "127.0.0.53:5672", "::1:5672", ""])
def test_guest_logs_in_over_loopback_or_in_process(local):
    conn = _login(Broker(), local)
    assert isinstance(_methods(conn)[-1], commands.Connection.Tune)


def test_other_users_and_an_empty_loopback_list_are_not_restricted():
    broker = Broker()
    broker.users.add_user("alice", "alice")
    assert isinstance(_methods(_login(broker, "192.0.2.2:5672", "alice"))[-1], commands.Connection.Tune)
    open_broker = Broker(loopback_users=())
    assert isinstance(_methods(_login(open_broker, "192.0.2.2:5672"))[-1], commands.Connection.Tune)
