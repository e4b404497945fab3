"""Unit tests for users, password hashes and connection.open permission checks."""

from __future__ import annotations

import base64
import hashlib

import pytest

from amqp_broker.broker.auth import User, UserStore, check_password, hash_password
from amqp_broker.broker.broker import Broker
from amqp_broker.errors import NOT_ALLOWED, ConnectionLevelError


def reference_hash(password: str, salt: bytes) -> str:
    """rabbit_password_hashing_sha256, computed independently: base64(salt ++ sha256(salt ++ pw))."""
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode()


# --- hash_password / check_password --------------------------------------------------------------


def test_rabbitmq_documented_vector():
    # rabbitmq.com "Credentials and Passwords": salt 0x908DC60A, password "test12".
    salt = bytes.fromhex("908DC60A")
    expected = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
    assert reference_hash("test12", salt) == expected
    assert hash_password("test12", salt) == expected
    assert check_password("test12", expected)
    assert not check_password("test13", expected)
    assert not check_password("", expected)


@pytest.mark.parametrize(
    "password, salt",
    [
        ("guest", b"\x00\x00\x00\x00"),
        ("guest", b"\xff\xfe\xfd\xfc"),
        ("", b"abcd"),
        ("pässwörd ✓", b"\x01\x02\x03\x04"),
        ("x" * 1000, b"\x10\x20\x30\x40"),
    ],
)
def test_hash_matches_independent_computation(password, salt):
    hashed = hash_password(password, salt)
    assert hashed == reference_hash(password, salt)
    raw = base64.b64decode(hashed)
    assert len(raw) == 36  # 4-byte salt + 32-byte SHA-256
    assert raw[:4] == salt
    assert raw[4:] == hashlib.sha256(salt + password.encode("utf-8")).digest()
    assert len(hashed) == 48
    assert check_password(password, hashed)
    assert not check_password(password + "x", hashed)


def test_hash_uses_random_salt():
    hashes = {hash_password("guest") for _ in range(20)}
    assert len(hashes) == 20
    for hashed in hashes:
        raw = base64.b64decode(hashed)
        assert len(raw) == 36
        assert reference_hash("guest", raw[:4]) == hashed
        assert check_password("guest", hashed)
        assert not check_password("Guest", hashed)


def test_check_password_accepts_hash_made_elsewhere():
    # A hash as RabbitMQ would export it in definitions.json.
    salt = b"\x9a\x1b\x00\x7f"
    assert check_password("s3cret", reference_hash("s3cret", salt))
    assert not check_password("s3cret", reference_hash("other", salt))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",  # not valid base64 padding
        "!!!!",
        "AAAA",  # decodes to 3 bytes: too short
        base64.b64encode(b"abcd").decode(),  # salt only, no digest
        "élan",  # non-ASCII
    ],
)
def test_check_password_rejects_malformed_hash(bad):
    assert check_password("guest", bad) is False


def test_check_password_rejects_truncated_digest():
    good = hash_password("guest", b"salt")
    raw = base64.b64decode(good)
    truncated = base64.b64encode(raw[:-1]).decode()
    assert not check_password("guest", truncated)


# --- UserStore -----------------------------------------------------------------------------------


def test_userstore_add_and_authenticate():
    store = UserStore()
    user = store.add_user("alice", "wonderland", ["monitoring"])
    assert isinstance(user, User)
    assert user.name == "alice"
    assert user.tags == ["monitoring"]
    assert user.vhosts == set()
    assert user.password_hash != "wonderland"
    assert check_password("wonderland", user.password_hash)
    assert store.authenticate("alice", "wonderland") is user
    assert store.authenticate("alice", "Wonderland") is None
    assert store.authenticate("alice", "") is None
    assert store.authenticate("bob", "wonderland") is None
    assert store.authenticate("ALICE", "wonderland") is None


def test_userstore_replace_user_changes_password():
    store = UserStore()
    store.add_user("alice", "one")
    store.grant("alice", "/")
    replaced = store.add_user("alice", "two")
    assert store.users["alice"] is replaced
    assert store.authenticate("alice", "one") is None
    assert store.authenticate("alice", "two") is replaced
    assert replaced.tags == []


def test_userstore_grant():
    store = UserStore()
    store.add_user("alice", "pw")
    store.grant("alice", "/")
    store.grant("alice", "dev")
    store.grant("alice", "dev")
    assert store.users["alice"].vhosts == {"/", "dev"}
    with pytest.raises(KeyError):
        store.grant("nobody", "/")


def test_userstore_tags_are_copied():
    tags = ["administrator"]
    store = UserStore()
    user = store.add_user("admin", "pw", tags)
    tags.append("other")
    assert user.tags == ["administrator"]


# --- Broker users and open_session ---------------------------------------------------------------


def test_broker_default_guest():
    broker = Broker()
    guest = broker.authenticate("guest", "guest")
    assert guest is not None
    assert guest.name == "guest"
    assert guest.tags == ["administrator"]
    assert guest.vhosts == {"/"}
    assert broker.authenticate("guest", "wrong") is None
    assert broker.authenticate("nobody", "guest") is None


def test_broker_custom_defaults():
    broker = Broker(default_user="admin", default_pass="pw", default_vhost="prod")
    assert set(broker.vhosts) == {"prod"}
    assert broker.authenticate("guest", "guest") is None
    admin = broker.authenticate("admin", "pw")
    assert admin is not None and admin.vhosts == {"prod"}
    session = broker.open_session(admin, "prod", {}, "peer")
    assert session.vhost is broker.vhosts["prod"]


def test_broker_without_default_user():
    broker = Broker(default_user="")
    assert broker.users.users == {}
    assert broker.authenticate("", "guest") is None


def test_open_session_ok():
    broker = Broker()
    guest = broker.authenticate("guest", "guest")
    props = {"product": "test", "capabilities": {"consumer_cancel_notify": True}}
    session = broker.open_session(guest, "/", props, "10.0.0.1:5555")
    assert session in broker.sessions
    assert session.user == "guest"
    assert session.vhost is broker.vhosts["/"]
    assert session.client_properties is props
    assert session.peer == "10.0.0.1:5555"
    assert session.consumer_cancel_notify is True
    assert session.channels == {}
    assert session.exclusive_queues == set()
    assert not session.closed
    other = broker.open_session(guest, "/", {}, "peer2")
    assert other.consumer_cancel_notify is False
    assert broker.sessions == {session, other}
    session.close()
    assert session.closed
    assert broker.sessions == {other}
    session.close()  # idempotent


def test_open_session_missing_vhost_is_530():
    broker = Broker()
    guest = broker.authenticate("guest", "guest")
    with pytest.raises(ConnectionLevelError) as info:
        broker.open_session(guest, "nope", {}, "peer")
    assert info.value.reply_code == NOT_ALLOWED
    assert info.value.text == "vhost nope not found"
    assert info.value.reply_text == "NOT_ALLOWED - vhost nope not found"
    assert broker.sessions == set()


def test_open_session_missing_vhost_checked_before_permission():
    broker = Broker()
    broker.users.add_user("bob", "pw")
    bob = broker.authenticate("bob", "pw")
    with pytest.raises(ConnectionLevelError) as info:
        broker.open_session(bob, "nope", {}, "peer")
    assert info.value.reply_text == "NOT_ALLOWED - vhost nope not found"


def test_open_session_without_permission_is_530():
    broker = Broker()
    broker.add_vhost("private")
    broker.users.add_user("bob", "pw")
    bob = broker.authenticate("bob", "pw")
    guest = broker.authenticate("guest", "guest")
    for user, vhost in ((bob, "/"), (bob, "private"), (guest, "private")):
        with pytest.raises(ConnectionLevelError) as info:
            broker.open_session(user, vhost, {}, "peer")
        assert info.value.reply_code == NOT_ALLOWED
        assert info.value.reply_text == (
            f"NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user.name}'"
        )
    assert broker.sessions == set()
    broker.users.grant("bob", "private")
    session = broker.open_session(bob, "private", {}, "peer")
    assert session.vhost is broker.vhosts["private"]
    assert session.user == "bob"
