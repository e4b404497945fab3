"""Users, password hashes, vhost permissions and topic permissions.

Passwords are stored the way RabbitMQ stores them: base64 of a 4-byte salt followed by
HASH(salt + password), where HASH is the user's hashing algorithm. New passwords are hashed with
RabbitMQ's default, ``rabbit_password_hashing_sha256``; hashes made with SHA-512 or with the MD5
of RabbitMQ before 3.6 are checked as they are, so definitions move between this broker and
RabbitMQ both ways without anyone re-setting a password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field

#: RabbitMQ's hashing modules by name, and the digest each one stands for.
HASHING_ALGORITHMS = {
    "rabbit_password_hashing_sha256": "sha256",
    "rabbit_password_hashing_sha512": "sha512",
    "rabbit_password_hashing_md5": "md5",
}

#: The algorithm new passwords are hashed with (RabbitMQ's default since 3.6).
DEFAULT_HASHING = "rabbit_password_hashing_sha256"


def hash_password(password: str, salt: bytes | None = None, algorithm: str = DEFAULT_HASHING) -> str:
    """RabbitMQ-compatible salted password hash (base64) with ``algorithm``."""
    salt = os.urandom(4) if salt is None else salt
    digest = hashlib.new(HASHING_ALGORITHMS[algorithm], salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def hash_length(algorithm: str) -> int:
    """Bytes in a decoded hash of ``algorithm``: the 4-byte salt and the digest."""
    return 4 + hashlib.new(HASHING_ALGORITHMS[algorithm]).digest_size


def check_password(password: str, password_hash: str, algorithm: str = DEFAULT_HASHING) -> bool:
    """Constant-time check of ``password`` against a hash made by :func:`hash_password`."""
    try:
        raw = base64.b64decode(password_hash)
    except ValueError:
        return False
    if algorithm not in HASHING_ALGORITHMS or len(raw) < 5:
        return False
    expected = hash_password(password, raw[:4], algorithm)
    return hmac.compare_digest(expected, password_hash)


#: Full access, as RabbitMQ's default user has on the default vhost.
FULL_ACCESS = (".*", ".*", ".*")


@dataclass
class User:
    """A user: its password hash, tags, permissions per vhost and topic permissions.

    ``permissions`` maps a vhost name to its (configure, write, read) regular expressions, as
    RabbitMQ's set_permissions takes them; a vhost in it may be opened by the user.
    ``topic_permissions`` maps a vhost name to {exchange name: (write, read)} regular
    expressions on routing keys, as RabbitMQ's set_topic_permissions takes them."""

    name: str
    password_hash: str
    tags: list[str] = field(default_factory=list)
    permissions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    topic_permissions: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    hashing_algorithm: str = DEFAULT_HASHING
    # RabbitMQ's user limits (broker/limits.py): {"max-connections": n, "max-channels": n}.
    limits: dict[str, int] = field(default_factory=dict)

    @property
    def vhosts(self) -> set[str]:
        """The vhosts the user may open."""
        return set(self.permissions)

    def check_password(self, password: str) -> bool:
        """Whether ``password`` is this user's. A blank password never is: RabbitMQ's internal
        user database refuses blank passwords whatever the stored hash."""
        return bool(password) and bool(self.password_hash) and check_password(
            password, self.password_hash, self.hashing_algorithm)


class UserStore:
    """The broker's users (in memory; persisted with definitions)."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}

    def add_user(self, name: str, password: str, tags: list[str] | None = None) -> User:
        """Create or replace a user."""
        user = User(name, hash_password(password), list(tags or []))
        self.users[name] = user
        return user

    def grant(self, name: str, vhost: str, permissions: tuple[str, str, str] = FULL_ACCESS) -> None:
        """Set user ``name``'s (configure, write, read) permissions on ``vhost``; full by default,
        as guest has on '/'."""
        self.users[name].permissions[vhost] = tuple(permissions)  # type: ignore[assignment]

    def grant_topic(self, name: str, vhost: str, exchange: str, write: str, read: str) -> None:
        """Set user ``name``'s topic permissions (write, read) on ``exchange`` in ``vhost``."""
        self.users[name].topic_permissions.setdefault(vhost, {})[exchange] = (write, read)

    def record(self, name: str) -> dict:
        """A user as a store record."""
        user = self.users[name]
        record = {
            "password_hash": user.password_hash,
            "tags": list(user.tags),
            "permissions": {vhost: list(perms) for vhost, perms in sorted(user.permissions.items())},
        }
        if user.topic_permissions:
            record["topic_permissions"] = {
                vhost: {exchange: list(perms) for exchange, perms in sorted(by_exchange.items())}
                for vhost, by_exchange in sorted(user.topic_permissions.items())
            }
        if user.hashing_algorithm != DEFAULT_HASHING:
            record["hashing_algorithm"] = user.hashing_algorithm
        if user.limits:
            record["limits"] = dict(user.limits)
        return record

    def restore_user(self, name: str, record: dict) -> User:
        """Re-create a user from a store record (or a definitions file entry).

        Records written before permissions carried their regular expressions list the vhosts
        only (``vhosts``): those grants were full access."""
        permissions = {vhost: tuple(perms) for vhost, perms in (record.get("permissions") or {}).items()}
        for vhost in record.get("vhosts", ()):
            permissions.setdefault(vhost, FULL_ACCESS)
        topic_permissions = {
            vhost: {exchange: tuple(perms) for exchange, perms in by_exchange.items()}
            for vhost, by_exchange in (record.get("topic_permissions") or {}).items()
        }
        user = User(
            name, record["password_hash"], list(record.get("tags", [])), permissions,
            topic_permissions,  # type: ignore[arg-type]
            record.get("hashing_algorithm") or DEFAULT_HASHING,
            dict(record.get("limits") or {}),
        )
        self.users[name] = user
        return user

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password matches, else None."""
        user = self.users.get(name)
        if user is None or not user.check_password(password):
            return None
        return user
