"""The broker core's entry point: users, virtual hosts and open sessions."""

from __future__ import annotations

import gc
from typing import Any

from ..errors import NOT_ALLOWED, ConnectionLevelError
from .auth import User, UserStore
from .consumer_timeout import ConsumerTimeouts
from .counters import NodeCounters
from .persistence import Persistence
from .replyto import DirectReplyTo
from .session import Session
from .timers import Timers
from .vhost import VHost


class Broker:
    """All broker state of one process. Knows nothing of sockets or frames."""

    def __init__(self, default_user: str = "guest", default_pass: str = "guest", default_vhost: str = "/",
                 *, consumer_timeout_ms: int = 1800000):
        self.users = UserStore()
        self.vhosts: dict[str, VHost] = {}
        self.sessions: set[Session] = set()
        self.persistence: Persistence | None = None
        # Deadlines the server layer drives (TTLs, x-expires, consumer timeouts).
        self.timers = Timers()
        # Connection/channel churn and the message counts of deleted queues and vhosts (admin.py).
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
                self.persistence.store.put("vhost", (name,), {})
        return vhost

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
            store.put("vhost", (vhost.name,), {})
            for queue in vhost.queues.values():
                if queue.durable and queue.exclusive_owner is None:
                    queue.persistence = persistence
        if not snapshot_users:
            for name in self.users.users:
                self.save_user(name)
        return counts

    def authenticate(self, username: str, password: str) -> User | None:
        """Check credentials; None when refused."""
        return self.users.authenticate(username, password)

    def open_session(self, user: User, vhost_name: str, client_properties: dict, peer: str) -> Session:
        """connection.open: 530 NOT_ALLOWED for a missing vhost or one the user may not use."""
        vhost = self.vhosts.get(vhost_name)
        if vhost is None:
            raise ConnectionLevelError(NOT_ALLOWED, f"vhost {vhost_name} not found")
        if vhost_name not in user.vhosts:
            raise ConnectionLevelError(
                NOT_ALLOWED, f"access to vhost '{vhost_name}' refused for user '{user.name}'"
            )
        session = Session(self, user.name, vhost, client_properties, peer)
        self.sessions.add(session)
        self.counters.connections_opened += 1
        return session
