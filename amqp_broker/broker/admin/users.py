"""Admin's users, permissions and topic permissions."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

from ..auth import DEFAULT_HASHING, HASHING_ALGORITHMS, hash_password

if TYPE_CHECKING:  # pragma: no cover
    from ..broker import Broker

from .base import AdminError, _not_found, _tag_list


class UsersAdmin:
    """Admin's users, permissions and topic permissions."""

    broker: "Broker"

    # -- users and permissions ----------------------------------------------------------------------

    def users(self) -> list[dict]:
        """Every user (name, password hash, tags), sorted by name."""
        return [self.user(name) for name in sorted(self.broker.users.users)]

    def user(self, name: str) -> dict:
        """One user."""
        user = self.broker.users.users.get(name)
        if user is None:
            raise _not_found(f"user '{name}'")
        return {
            "name": name,
            "password_hash": user.password_hash,
            "hashing_algorithm": user.hashing_algorithm,
            "tags": list(user.tags),
            "limits": dict(user.limits),
        }

    def add_user(self, name: str, password: str | None = None, *, password_hash: str | None = None,
                 tags: Iterable[str] = (), hashing_algorithm: str = DEFAULT_HASHING) -> bool:
        """Create or update a user (RabbitMQ's PUT /api/users/u); True when it was created.

        Give ``password`` or ``password_hash`` ("" for a user that cannot log in by password;
        ``hashing_algorithm`` names the hash's, RabbitMQ's names); ``tags`` is a list or a
        comma-separated string. An existing user keeps its permissions."""
        if not name:
            raise AdminError("bad_request", "user name must not be empty")
        if password is not None and password_hash is not None:
            raise AdminError("bad_request", "give password or password_hash, not both")
        if password is None and password_hash is None:
            raise AdminError("bad_request", "password or password_hash is required")
        if hashing_algorithm not in HASHING_ALGORITHMS:
            raise AdminError("bad_request", f"unknown hashing algorithm '{hashing_algorithm}'")
        if password is not None:
            digest, hashing_algorithm = hash_password(password), DEFAULT_HASHING
        else:
            digest = password_hash
        tags = _tag_list(tags)
        users = self.broker.users.users
        existing = users.get(name)
        if existing is None:
            user = self.broker.users.add_user(name, "", list(tags))
        else:
            user = existing
            user.tags = list(tags)
        user.password_hash = digest or ""
        user.hashing_algorithm = hashing_algorithm
        self.broker.save_user(name)
        return existing is None

    def delete_user(self, name: str) -> None:
        """Delete a user and close its connections (RabbitMQ does the same)."""
        if name not in self.broker.users.users:
            raise _not_found(f"user '{name}'")
        del self.broker.users.users[name]
        self.broker.forget_grants(name)
        store = self._store()
        if store is not None:
            store.delete("user", (name,))
        for session in [s for s in self.broker.sessions if s.user == name]:
            self._close(session, f"user '{name}' is deleted")

    def change_password(self, name: str, password: str) -> None:
        """Set a user's password."""
        user = self.broker.users.users.get(name)
        if user is None:
            raise _not_found(f"user '{name}'")
        user.password_hash = hash_password(password)
        user.hashing_algorithm = DEFAULT_HASHING
        self.broker.save_user(name)

    def clear_password(self, name: str) -> None:
        """Remove a user's password: it can no longer log in with one."""
        user = self.broker.users.users.get(name)
        if user is None:
            raise _not_found(f"user '{name}'")
        user.password_hash = ""
        self.broker.save_user(name)

    def set_user_tags(self, name: str, tags: Iterable[str]) -> None:
        """Replace a user's tags (administrator, monitoring, management...): a list, or a
        comma-separated string."""
        user = self.broker.users.users.get(name)
        if user is None:
            raise _not_found(f"user '{name}'")
        user.tags = _tag_list(tags)
        self.broker.save_user(name)

    def authenticate_user(self, name: str, password: str) -> dict | None:
        """The user's snapshot when ``password`` is right, else None."""
        user = self.broker.users.users.get(name)
        if user is None or not user.check_password(password):
            return None
        return self.user(name)

    def permissions(self, vhost: str | None = None, user: str | None = None) -> list[dict]:
        """Permissions (user, vhost, configure, write, read), of a vhost and/or user, sorted."""
        if vhost is not None:
            self._vhost(vhost)
        if user is not None and user not in self.broker.users.users:
            raise _not_found(f"user '{user}'")
        rows = []
        for name, entry in sorted(self.broker.users.users.items()):
            if user is not None and name != user:
                continue
            for vhost_name, (configure, write, read) in sorted(entry.permissions.items()):
                if (vhost is None or vhost_name == vhost) and vhost_name in self.broker.vhosts:
                    rows.append({"user": name, "vhost": vhost_name,
                                 "configure": configure, "write": write, "read": read})
        return rows

    def user_vhosts(self, user: str) -> list[str]:
        """The vhosts ``user`` has permissions on (those it may log in to), sorted; [] for an
        unknown user."""
        entry = self.broker.users.users.get(user)
        if entry is None:
            return []
        return sorted(v for v in entry.permissions if v in self.broker.vhosts)

    def set_permissions(self, user: str, vhost: str, configure: str = ".*", write: str = ".*",
                        read: str = ".*") -> None:
        """Grant ``user`` access to ``vhost`` with these regular expressions."""
        if user not in self.broker.users.users or vhost not in self.broker.vhosts:
            raise AdminError("bad_request", "vhost_or_user_not_found")
        for label, pattern in (("configure", configure), ("write", write), ("read", read)):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise AdminError("bad_request", f"invalid {label} regex '{pattern}': {exc}") from None
        self.broker.set_permissions(user, vhost, (configure, write, read))

    def clear_permissions(self, user: str, vhost: str) -> None:
        """Revoke ``user``'s access to ``vhost``."""
        if user not in self.broker.users.users:
            raise _not_found(f"user '{user}'")
        self._vhost(vhost)
        if not self.broker.clear_permissions(user, vhost):
            raise _not_found(f"permissions of user '{user}' on vhost '{vhost}'")

    def topic_permissions(self, vhost: str | None = None, user: str | None = None) -> list[dict]:
        """Topic permissions (user, vhost, exchange, write, read), of a vhost and/or user, sorted
        (RabbitMQ's list_topic_permissions)."""
        if vhost is not None:
            self._vhost(vhost)
        if user is not None and user not in self.broker.users.users:
            raise _not_found(f"user '{user}'")
        rows = []
        for name, entry in sorted(self.broker.users.users.items()):
            if user is not None and name != user:
                continue
            for vhost_name, by_exchange in sorted(entry.topic_permissions.items()):
                if (vhost is None or vhost_name == vhost) and vhost_name in self.broker.vhosts:
                    for exchange, (write, read) in sorted(by_exchange.items()):
                        rows.append({"user": name, "vhost": vhost_name, "exchange": exchange,
                                     "write": write, "read": read})
        return rows

    def set_topic_permissions(self, user: str, vhost: str, exchange: str, write: str = ".*",
                              read: str = ".*") -> None:
        """Let ``user`` publish to (write) and bind from (read) the topic exchange ``exchange``
        in ``vhost`` only with routing keys these patterns match; ``{username}`` and ``{vhost}``
        in them stand for the user's and the vhost's names (RabbitMQ's set_topic_permissions)."""
        if user not in self.broker.users.users:
            raise _not_found(f"user '{user}'")
        self._vhost(vhost)
        for label, pattern in (("write", write), ("read", read)):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise AdminError("bad_request", f"invalid {label} regex '{pattern}': {exc}") from None
        self.broker.set_topic_permissions(user, vhost, exchange, write, read)

    def clear_topic_permissions(self, user: str, vhost: str, exchange: str | None = None) -> None:
        """Remove ``user``'s topic permissions in ``vhost``, on ``exchange`` only when given."""
        if user not in self.broker.users.users:
            raise _not_found(f"user '{user}'")
        self._vhost(vhost)
        if not self.broker.clear_topic_permissions(user, vhost, exchange):
            on = f" on exchange '{exchange}'" if exchange is not None else ""
            raise _not_found(f"topic permissions of user '{user}'{on} in vhost '{vhost}'")

