"""The broker core's entry point: users, virtual hosts and open sessions."""

from __future__ import annotations

import gc
from typing import Any

from ..errors import NOT_ALLOWED, ConnectionLevelError
from .access import Grants, loopback_refusal
from .auth import FULL_ACCESS, User, UserStore
from .consumer_timeout import ConsumerTimeouts
from .counters import NodeCounters
from .limits import check_connection
from .login_log import FailedLogins
from .persistence import Persistence
from .replyto import DirectReplyTo
from .session import Session
from .timers import Timers
from .vhost import VHost


class Broker:
    """All broker state of one process. Knows nothing of sockets or frames."""

    def __init__(self, default_user: str = "guest", default_pass: str = "guest", default_vhost: str = "/",
                 *, consumer_timeout_ms: int = 1800000, loopback_users: tuple[str, ...] = ("guest",),
                 failed_login_log_interval: float = 60.0):
        self.users = UserStore()
        # Users who may log in only over a loopback connection (RabbitMQ's loopback_users).
        self.loopback_users = frozenset(loopback_users)
        # Compiled permissions per (user, vhost), shared by that user's sessions on the vhost.
        self._grants: dict[tuple[str, str], Grants] = {}
        self.vhosts: dict[str, VHost] = {}
        self.sessions: set[Session] = set()
        self.persistence: Persistence | None = None
        # Deadlines the server layer drives (TTLs, x-expires, consumer timeouts).
        self.timers = Timers()
        # Refused logins, logged once per peer address and interval (login_log.py).
        self.failed_logins = FailedLogins(self.timers, failed_login_log_interval)
        # Connection/channel churn and the message counts of deleted queues and vhosts (broker/admin/).
        self.counters = NodeCounters()
        # Direct reply-to consumers, one registry for every vhost (reply names are broker-wide).
        self.replies = DirectReplyTo()
        # RabbitMQ's consumer_timeout (ms an unacked delivery may wait; 0 disables it).
        self.consumer_timeouts = (
            ConsumerTimeouts(self, consumer_timeout_ms) if consumer_timeout_ms > 0 else None
        )
        self.add_vhost(default_vhost)
        if default_user:
            self.users.add_user(default_user, default_pass, ["administrator"])
            self.users.grant(default_user, default_vhost)

    def add_vhost(self, name: str) -> VHost:
        """Create a virtual host (idempotent)."""
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VHost(name)
            vhost.replies = self.replies
            vhost.timers = self.timers
            vhost.counters = self.counters
            if self.persistence is not None:
                vhost.persistence = self.persistence
                self.save_vhost(name)
        return vhost

    def save_vhost(self, name: str) -> None:
        """Write a vhost (after a change of its limits) to the store, when there is one."""
        if self.persistence is not None:
            limits = self.vhosts[name].limits
            self.persistence.store.put("vhost", (name,), {} if limits is None else {"limits": dict(limits)})

    def save_user(self, name: str) -> None:
        """Write a user (after a change) to the store, when there is one."""
        if self.persistence is not None:
            self.persistence.store.put("user", (name,), self.users.record(name))

    def attach_store(self, store: Any, page_limit: int | None = None) -> dict[str, int]:
        """Rebuild durable state from ``store`` and write through to it from now on.

        On a first start (an empty store) the default vhost and user are written to it; after
        that the store's users and vhosts are the truth, as with RabbitMQ's default_user, which
        only applies to a fresh node."""
        persistence = Persistence(store) if page_limit is None else Persistence(store, page_limit)
        snapshot = store.load()
        snapshot_users = bool(snapshot.definitions.get("user"))
        if snapshot_users:
            self.users.users.clear()
        collecting = gc.isenabled()
        # Every object restored lives on; a collection in the middle (100,000 queues make
        # several) would only rescan them.
        gc.disable()
        try:
            counts = persistence.restore(self, snapshot)
        finally:
            if collecting:
                gc.enable()
        self.persistence = persistence
        for vhost in self.vhosts.values():
            vhost.persistence = persistence
            self.save_vhost(vhost.name)
            for queue in vhost.queues.values():
                if queue.durable and queue.exclusive_owner is None:
                    queue.persistence = persistence
        if not snapshot_users:
            for name in self.users.users:
                self.save_user(name)
        self._grants.clear()
        return counts

    def authenticate(self, username: str, password: str) -> User | None:
        """Check credentials; None when refused."""
        return self.users.authenticate(username, password)

    def external_user(self, username: str) -> User | None:
        """The user a TLS client certificate names (EXTERNAL: the certificate is the credential,
        no password is checked); None when there is no such user."""
        return self.users.users.get(username)

    def loopback_refusal(self, username: str, local_host: str | None) -> str | None:
        """Why ``username`` may not log in over a connection whose local address is
        ``local_host`` (None: no socket), or None when it may (see access.py)."""
        return loopback_refusal(username, local_host, self.loopback_users)

    # -- permissions ----------------------------------------------------------------------------
    # The one way permissions change, so that open sessions see the change at once.

    def grants_for(self, user_name: str, vhost_name: str) -> Grants:
        """``user_name``'s compiled permissions on ``vhost_name`` (built once, then shared)."""
        key = (user_name, vhost_name)
        grants = self._grants.get(key)
        if grants is None:
            grants = self._grants[key] = Grants(self.users.users.get(user_name), user_name, vhost_name)
        return grants

    def set_permissions(self, user: str, vhost: str, permissions: tuple[str, str, str] = FULL_ACCESS) -> None:
        """Set ``user``'s (configure, write, read) patterns on ``vhost``."""
        self.users.grant(user, vhost, permissions)
        self._permissions_changed(user)

    def clear_permissions(self, user: str, vhost: str) -> bool:
        """Remove ``user``'s permissions on ``vhost`` (and with them its access); False when it
        had none."""
        if self.users.users[user].permissions.pop(vhost, None) is None:
            return False
        self._permissions_changed(user)
        return True

    def set_topic_permissions(self, user: str, vhost: str, exchange: str, write: str, read: str) -> None:
        """Set ``user``'s topic permissions (routing-key patterns) on ``exchange`` in ``vhost``."""
        self.users.grant_topic(user, vhost, exchange, write, read)
        self._permissions_changed(user)

    def clear_topic_permissions(self, user: str, vhost: str, exchange: str | None = None) -> bool:
        """Remove ``user``'s topic permissions in ``vhost`` (on ``exchange`` only, when given);
        False when there were none."""
        topics = self.users.users[user].topic_permissions
        by_exchange = topics.get(vhost)
        if not by_exchange or (exchange is not None and exchange not in by_exchange):
            return False
        if exchange is None:
            del topics[vhost]
        else:
            del by_exchange[exchange]
            if not by_exchange:
                del topics[vhost]
        self._permissions_changed(user)
        return True

    def forget_grants(self, user: str) -> None:
        """Drop ``user``'s compiled permissions (the user is gone or changed)."""
        for key in [key for key in self._grants if key[0] == user]:
            del self._grants[key]

    def _permissions_changed(self, user: str) -> None:
        """Store the user, and give its open sessions and channels the new grants: unlike
        RabbitMQ, whose channels may keep an answer cached until they go idle, a change applies
        to the next operation."""
        if user in self.users.users:
            self.save_user(user)
        self.forget_grants(user)
        for session in self.sessions:
            if session.user == user:
                session.grants = self.grants_for(user, session.vhost.name)
                for channel in session.channels.values():
                    channel.may_publish.clear()

    def open_session(self, user: User, vhost_name: str, client_properties: dict, peer: str) -> Session:
        """connection.open: 530 NOT_ALLOWED for a missing vhost, one whose or whose user's
        connection limit is reached, or one the user may not use."""
        vhost = self.vhosts.get(vhost_name)
        if vhost is None:
            raise ConnectionLevelError(NOT_ALLOWED, f"vhost {vhost_name} not found")
        check_connection(self, user.name, vhost)  # before the access check, as rabbit_reader
        if vhost_name not in user.vhosts:
            raise ConnectionLevelError(
                NOT_ALLOWED, f"access to vhost '{vhost_name}' refused for user '{user.name}'"
            )
        session = Session(self, user.name, vhost, client_properties, peer)
        self.sessions.add(session)
        self.counters.connections_opened += 1
        return session
