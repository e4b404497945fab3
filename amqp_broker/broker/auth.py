"""Users, password hashes and vhost permissions.

Passwords are stored the way RabbitMQ stores them (rabbit_password_hashing_sha256: base64 of a
4-byte salt followed by SHA-256(salt + password)), so definitions exported here load into RabbitMQ
and back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field


def hash_password(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ-compatible salted SHA-256 password hash (base64)."""
    salt = os.urandom(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def check_password(password: str, password_hash: str) -> bool:
    """Constant-time check of ``password`` against a hash made by :func:`hash_password`."""
    try:
        raw = base64.b64decode(password_hash)
    except ValueError:
        return False
    if len(raw) < 5:
        return False
    expected = hash_password(password, raw[:4])
    return hmac.compare_digest(expected, password_hash)


#: Full access, as RabbitMQ's default user has on the default vhost.
FULL_ACCESS = (".*", ".*", ".*")


@dataclass
class User:
    """A user: its password hash, tags and its permissions per vhost.

    ``permissions`` maps a vhost name to its (configure, write, read) regular expressions, as
    RabbitMQ's set_permissions takes them; a vhost in it may be opened by the user."""

    name: str
    password_hash: str
    tags: list[str] = field(default_factory=list)
    permissions: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    @property
    def vhosts(self) -> set[str]:
        """The vhosts the user may open."""
        return set(self.permissions)


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

    def record(self, name: str) -> dict:
        """A user as a store record."""
        user = self.users[name]
        return {
            "password_hash": user.password_hash,
            "tags": list(user.tags),
            "permissions": {vhost: list(perms) for vhost, perms in sorted(user.permissions.items())},
        }

    def restore_user(self, name: str, record: dict) -> User:
        """Re-create a user from a store record (or a definitions file entry).

        Records written before permissions carried their regular expressions list the vhosts
        only (``vhosts``): those grants were full access."""
        permissions = {vhost: tuple(perms) for vhost, perms in (record.get("permissions") or {}).items()}
        for vhost in record.get("vhosts", ()):
            permissions.setdefault(vhost, FULL_ACCESS)
        user = User(name, record["password_hash"], list(record.get("tags", [])), permissions)
        self.users[name] = user
        return user

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password matches, else None."""
        user = self.users.get(name)
        if user is None or not check_password(password, user.password_hash):
            return None
        return user
