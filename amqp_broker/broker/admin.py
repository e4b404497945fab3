"""The query and admin API of the broker core: what operators see and do, as plain calls.

The management HTTP API, the control CLI and the pytest plugin all go through :class:`Admin` and
nothing else; none of them reaches into queues, channels or sessions. Snapshots are plain
JSON-ready dicts whose keys are those of RabbitMQ's management API (``messages_ready``,
``consumer_count``...), because every consumer of this API speaks RabbitMQ's vocabulary; a caller
adds or renames what its own format needs.

Failures raise :class:`AdminError` with a kind (``not_found``, ``bad_request``,
``not_authorised``: the ``error`` of RabbitMQ's management API) and RabbitMQ's reason text; errors
of the core (an inequivalent redeclare) arrive as ``bad_request`` with the text a client would
have read after the reply code, and a refused access (a reserved ``amq.`` name, the default
exchange) as ``not_authorised`` with RabbitMQ's "Access refused.".

Everything here runs on the broker's event loop, like any client's method.
"""

from __future__ import annotations

import base64
import re
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import AMQPError
from .auth import DEFAULT_HASHING, FULL_ACCESS, HASHING_ALGORITHMS, hash_password
from .counters import CHANNEL_COUNTERS, QUEUE_COUNTERS, queue_counters
from .exchange import Exchange
from .message import Message
from .properties import properties_from_dict
from .queue_types import QUEUE_TYPES, queue_type_of
from .vhost import MESSAGE_STATS

if TYPE_CHECKING:  # pragma: no cover
    from .broker import Broker
    from .channel import Channel
    from .queue import Queue
    from .session import Session
    from .vhost import VHost


#: Seconds of samples the message rates are computed over.
RATE_WINDOW = 10.0

#: The reason RabbitMQ's management API gives a connection it closes without one.
DEFAULT_CLOSE_REASON = "Closed via management plugin"


#: What RabbitMQ's management API answers when the operation is refused with 403 ACCESS_REFUSED.
ACCESS_REFUSED = "Access refused."


class AdminError(Exception):
    """An admin call that cannot be done: ``kind`` is ``not_found``, ``bad_request`` or
    ``not_authorised`` (RabbitMQ's 404, 400 and 401)."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _not_found(what: str) -> AdminError:
    return AdminError("not_found", f"{what} not found")


def _core(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a core call; its protocol error becomes a bad request with the error's own text, a
    404 not found and a 403 RabbitMQ's generic refusal."""
    try:
        return call(*args, **kwargs)
    except AMQPError as exc:
        if exc.reply_code == 403:
            raise AdminError("not_authorised", ACCESS_REFUSED) from None
        raise AdminError("not_found" if exc.reply_code == 404 else "bad_request", exc.text) from None


def _json(value: Any) -> Any:
    """A field-table value as JSON, as RabbitMQ's management API shows it."""
    from ..definitions_file import json_value  # a leaf module of plain conversions

    return json_value(value)


class Admin:
    """Snapshots and admin actions over one :class:`~amqp_broker.broker.broker.Broker`.

    ``node`` is filled in by whoever runs the broker (the server): a callable returning the
    node's facts (name, listeners, memory, alarms, start time) that the core cannot know."""

    def __init__(self, broker: "Broker", node: Callable[[], dict] | None = None):
        self.broker = broker
        self.node = node or (lambda: {})
        # (monotonic time, totals) samples for the rates of message_stats (see :meth:`_with_rates`).
        self._samples: dict[Any, list[tuple[float, dict[str, int]]]] = {}
        self._pruned_at = time.monotonic()

    # -- node -------------------------------------------------------------------------------------

    def node_info(self) -> dict:
        """The node's facts (name, listeners, memory, alarms...) as the server reports them."""
        return dict(self.node())

    def overview(self, vhosts: Iterable[str] | None = None) -> dict:
        """Object totals, queued message totals and global message counters with rates.

        ``vhosts`` limits the totals to those vhosts (what a user who sees only some of them is
        shown); the message counters stay the node's."""
        if vhosts is None:
            totals = self.totals()
        else:
            totals = self._totals_of(set(vhosts))
        return {
            "object_totals": {
                key: totals[key] for key in ("connections", "channels", "consumers", "queues", "exchanges")
            },
            "queue_totals": {
                "messages": totals["messages_ready"] + totals["messages_unacknowledged"],
                "messages_ready": totals["messages_ready"],
                "messages_unacknowledged": totals["messages_unacknowledged"],
            },
            "message_stats": self._with_rates("overview", self.message_totals()),
        }

    def totals(self) -> dict[str, int]:
        """The node's object counts (connections, channels, consumers, queues, exchanges) and
        messages held (messages_ready, messages_unacknowledged, messages_unconfirmed: confirms
        not yet sent), without the rates :meth:`overview` samples: cheap enough for every scrape."""
        broker = self.broker
        queues = consumers = ready = 0
        for v in broker.vhosts.values():
            queues += len(v.queues)
            for queue in v.queues.values():  # one pass: a scrape of 100,000 queues must be quick
                consumers += queue.consumer_count
                ready += queue.message_count
        channels = [ch for s in broker.sessions for ch in s.channels.values()]
        return {
            "connections": len(broker.sessions),
            "channels": len(channels),
            "consumers": consumers,
            "queues": queues,
            "exchanges": sum(len(v.exchanges) for v in broker.vhosts.values()),
            "messages_ready": ready,
            "messages_unacknowledged": sum(len(ch.unacked) for ch in channels),
            "messages_unconfirmed": sum(len(ch.confirm_backlog) for ch in channels),
        }

    def _totals_of(self, vhosts: set[str]) -> dict[str, int]:
        """:meth:`totals` of some vhosts only (what a user who sees only those is shown)."""
        broker = self.broker
        shown = [v for v in broker.vhosts.values() if v.name in vhosts]
        queues = [q for v in shown for q in v.queues.values()]
        channels = [ch for s in broker.sessions if s.vhost.name in vhosts for ch in s.channels.values()]
        return {
            "connections": sum(1 for s in broker.sessions if s.vhost.name in vhosts),
            "channels": len(channels),
            "consumers": sum(q.consumer_count for q in queues),
            "queues": len(queues),
            "exchanges": sum(len(v.exchanges) for v in shown),
            "messages_ready": sum(q.message_count for q in queues),
            "messages_unacknowledged": sum(len(ch.unacked) for ch in channels),
            "messages_unconfirmed": sum(len(ch.confirm_backlog) for ch in channels),
        }

    def message_totals(self, vhost: str | None = None) -> dict[str, int]:
        """Message counters (RabbitMQ's message_stats names) since start, of one vhost or all."""
        counters = self.message_counters(vhost)
        return {key: counters[key] for key in MESSAGE_STATS}

    def message_counters(self, vhost: str | None = None) -> dict[str, int]:
        """:meth:`message_totals` plus ``routed`` (queues reached, one per queue a message was
        enqueued on) and ``publish_confirm`` (publishes on confirm-mode channels): the
        counters.CHANNEL_COUNTERS of open channels, closed ones and, for the whole node, of
        deleted vhosts too, so that node totals never go down (RabbitMQ's global counters)."""
        totals = dict.fromkeys(CHANNEL_COUNTERS, 0)
        sources = [v.retired_stats for v in self._vhosts(vhost)]
        if vhost is None:
            sources.append(self.broker.counters.retired_channels)
        for source in sources:
            for key, value in source.items():
                totals[key] += value
        for session in self.broker.sessions:
            if vhost is not None and session.vhost.name != vhost:
                continue
            for channel in session.channels.values():
                for key, value in channel.counters().items():
                    totals[key] += value
        return totals

    def queue_type_counters(self) -> dict[str, dict[str, int]]:
        """Per queue type (``classic``, ``quorum``, ``stream``: every type, counted or not), the
        messages its queues took (``publish``), handed out (``deliver_get``), had acked and
        redelivered since start, deleted queues included: RabbitMQ's global counters by
        queue_type."""
        totals = {name: dict.fromkeys(QUEUE_COUNTERS, 0) for name in QUEUE_TYPES}
        for name, retired in self.broker.counters.retired_queues.items():
            for key, value in retired.items():
                totals[name][key] += value
        classic = totals["classic"]
        for v in self.broker.vhosts.values():
            for queue in v.queues.values():
                # Plain sums, the type looked up only when declared: a scrape must stay quick.
                row = (totals[queue_type_of(queue.arguments).name]
                       if "x-queue-type" in queue.arguments else classic)
                row["publish"] += queue.stat_published
                row["deliver_get"] += queue.stat_delivered
                row["ack"] += queue.stat_acked
                row["redeliver"] += queue.stat_redelivered
        return totals

    def churn(self) -> dict[str, int]:
        """Connections and channels opened and closed since start (RabbitMQ's
        connections_opened_total...)."""
        counters = self.broker.counters
        return {
            "connections_opened": counters.connections_opened,
            "connections_closed": counters.connections_closed,
            "channels_opened": counters.channels_opened,
            "channels_closed": counters.channels_closed,
        }

    def _with_rates(self, key: Any, totals: dict[str, int]) -> dict:
        """``totals`` plus a ``<name>_details: {"rate": per second}`` for each, as RabbitMQ's
        message_stats; rates come from the difference with the oldest sample of the last 10 s."""
        now = time.monotonic()
        if now - self._pruned_at > RATE_WINDOW:
            # Channels and queues come and go: forget the samples of those nobody asked about
            # for a whole window (gone, most likely), or they would pile up for ever.
            self._pruned_at = now
            for stale in [k for k, v in self._samples.items() if now - v[-1][0] > RATE_WINDOW]:
                del self._samples[stale]
        samples = self._samples.setdefault(key, [])
        while samples and now - samples[0][0] > RATE_WINDOW:
            samples.pop(0)
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, dict(totals)))
        stats: dict[str, Any] = {}
        then, old = samples[0]
        elapsed = now - then
        for name, value in totals.items():
            stats[name] = value
            rate = (value - old.get(name, 0)) / elapsed if elapsed > 0.5 else 0.0
            stats[f"{name}_details"] = {"rate": round(max(rate, 0.0), 1)}
        return stats

    # -- vhosts -----------------------------------------------------------------------------------

    def _vhosts(self, name: str | None) -> Iterable["VHost"]:
        if name is None:
            return list(self.broker.vhosts.values())
        return [self._vhost(name)]

    def _vhost(self, name: str) -> "VHost":
        vhost = self.broker.vhosts.get(name)
        if vhost is None:
            raise _not_found(f"vhost '{name}'")
        return vhost

    def vhost_names(self) -> list[str]:
        """The names of every vhost, sorted (cheap: no totals)."""
        return sorted(self.broker.vhosts)

    def vhosts(self) -> list[dict]:
        """Every vhost with its message totals, sorted by name."""
        return [self.vhost(name) for name in sorted(self.broker.vhosts)]

    def vhost(self, name: str) -> dict:
        """One vhost."""
        vhost = self._vhost(name)
        ready = sum(q.message_count for q in vhost.queues.values())
        unacked = sum(
            len(ch.unacked) for s in self.broker.sessions if s.vhost is vhost for ch in s.channels.values()
        )
        return {
            "name": name,
            "description": "",
            "tags": [],
            "tracing": False,
            "messages": ready + unacked,
            "messages_ready": ready,
            "messages_unacknowledged": unacked,
            "message_stats": self._with_rates(("vhost", name), self.message_totals(name)),
        }

    def add_vhost(self, name: str) -> bool:
        """Create a vhost; False when it existed already (idempotent, as RabbitMQ)."""
        if not name:
            raise AdminError("bad_request", "vhost name must not be empty")
        existed = name in self.broker.vhosts
        self.broker.add_vhost(name)
        return not existed

    def delete_vhost(self, name: str) -> None:
        """Delete a vhost: its connections are closed, its queues and exchanges go, grants on it
        are revoked (RabbitMQ's rabbit_vhost:delete)."""
        vhost = self._vhost(name)
        for session in [s for s in self.broker.sessions if s.vhost is vhost]:
            self._close(session, f"vhost '{name}' is deleted")
        for queue in list(vhost.queues.values()):
            vhost.delete_queue(queue)
        for exchange_name in [n for n in vhost.exchanges if n and not n.startswith("amq.")]:
            if exchange_name in vhost.exchanges:
                _core(vhost.delete_exchange, exchange_name)
        del self.broker.vhosts[name]
        self.broker.counters.retire_vhost_channels(vhost.retired_stats)
        store = self._store()
        if store is not None:
            store.delete("vhost", (name,))
        for user in list(self.broker.users.users.values()):
            self.broker.clear_topic_permissions(user.name, name)
            self.broker.clear_permissions(user.name, name)

    def _store(self) -> Any:
        persistence = self.broker.persistence
        return None if persistence is None else persistence.store

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
            "limits": {},
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

    # -- exchanges --------------------------------------------------------------------------------

    def exchanges(self, vhost: str | None = None) -> list[dict]:
        """Every exchange (the default one included, named ""), by vhost then name."""
        return [
            self._exchange_info(v, v.exchanges[name])
            for v in sorted(self._vhosts(vhost), key=lambda v: v.name)
            for name in sorted(v.exchanges)
        ]

    def exchange(self, vhost: str, name: str) -> dict:
        """One exchange."""
        v = self._vhost(vhost)
        exchange = v.exchanges.get(name)
        if exchange is None:
            raise _not_found(f"exchange '{name}' in vhost '{vhost}'")
        return self._exchange_info(v, exchange)

    @staticmethod
    def _exchange_info(vhost: "VHost", exchange: Exchange) -> dict:
        return {
            "name": exchange.name,
            "vhost": vhost.name,
            "type": exchange.type_name or "direct",
            "durable": exchange.durable,
            "auto_delete": exchange.auto_delete,
            "internal": exchange.internal,
            "arguments": _json(exchange.arguments),
        }

    def declare_exchange(self, vhost: str, name: str, type_name: str = "direct", *, durable: bool = True,
                         auto_delete: bool = False, internal: bool = False,
                         arguments: dict | None = None) -> None:
        """Declare an exchange (RabbitMQ's rules: reserved names, equivalence)."""
        v = self._vhost(vhost)
        _core(v.declare_exchange, name, type_name, durable=durable, auto_delete=auto_delete,
              internal=internal, arguments=dict(arguments or {}))

    def delete_exchange(self, vhost: str, name: str, if_unused: bool = False) -> None:
        """Delete an exchange; the default and amq.* ones cannot be."""
        v = self._vhost(vhost)
        if name not in v.exchanges:
            raise _not_found(f"exchange '{name}' in vhost '{vhost}'")
        if not name or name.startswith("amq."):
            raise AdminError("not_authorised", ACCESS_REFUSED)
        _core(v.delete_exchange, name, if_unused)

    # -- queues -----------------------------------------------------------------------------------

    def queues(self, vhost: str | None = None) -> list[dict]:
        """Every queue, by vhost then name."""
        unacked = self._unacked_by_queue()
        return [
            self._queue_info(v.queues[name], unacked)
            for v in sorted(self._vhosts(vhost), key=lambda v: v.name)
            for name in sorted(v.queues)
        ]

    def queue(self, vhost: str, name: str) -> dict:
        """One queue."""
        return self._queue_info(self._queue(vhost, name), self._unacked_by_queue())

    def _queue(self, vhost: str, name: str) -> "Queue":
        queue = self._vhost(vhost).queues.get(name)
        if queue is None:
            raise _not_found(f"queue '{name}' in vhost '{vhost}'")
        return queue

    def _queue_info(self, queue: "Queue", unacked_by_queue: dict["Queue", list[int]]) -> dict:
        unacked, unacked_bytes = unacked_by_queue.get(queue, (0, 0))
        ready = queue.message_count
        owner = queue.exclusive_owner
        consumers = queue.all_consumers()
        stats = queue_counters(queue)
        return {
            "name": queue.name,
            "vhost": queue.vhost.name,
            "type": queue_type_of(queue.arguments).name,
            "durable": queue.durable,
            "auto_delete": queue.auto_delete,
            "exclusive": owner is not None,
            "owner_pid_details": {"name": owner.name} if owner is not None else None,
            "arguments": _json(queue.arguments),
            "messages": ready + unacked,
            "messages_ready": ready,
            "messages_unacknowledged": unacked,
            "message_bytes": queue.buffer.bytes + unacked_bytes,
            "message_bytes_ready": queue.buffer.bytes,
            "message_bytes_unacknowledged": unacked_bytes,
            "consumers": len(consumers),
            "consumer_utilisation": None,
            # Bodies held in memory plus a fixed bookkeeping cost per message (as the paging
            # accounts them): an estimate, where RabbitMQ reports its queue process's heap.
            "memory": queue.buffer.bytes + ready * 300,
            "state": "running",
            "message_stats": self._with_rates(("queue", queue.vhost.name, queue.name), stats),
        }

    def _unacked_by_queue(self) -> dict["Queue", list[int]]:
        """[unacknowledged deliveries, their body bytes] per queue (they are held by channels,
        not by the queue)."""
        counts: dict[Queue, list[int]] = {}
        for session in self.broker.sessions:
            for channel in session.channels.values():
                for entry in channel.unacked.values():
                    count = counts.get(entry.queue)
                    if count is None:
                        count = counts[entry.queue] = [0, 0]
                    count[0] += 1
                    count[1] += len(entry.message.body)
        return counts

    def declare_queue(self, vhost: str, name: str, *, durable: bool = True, auto_delete: bool = False,
                      arguments: dict | None = None) -> bool:
        """Declare a queue (RabbitMQ's rules); True when it was created."""
        v = self._vhost(vhost)
        existed = name in v.queues
        _core(v.declare_queue, None, name, durable=durable, auto_delete=auto_delete,
              arguments=dict(arguments or {}))
        return not existed

    def delete_queue(self, vhost: str, name: str, *, if_unused: bool = False, if_empty: bool = False) -> int:
        """Delete a queue; returns how many ready messages went with it."""
        queue = self._queue(vhost, name)
        _core(queue.check_delete, if_unused, if_empty)
        return queue.vhost.delete_queue(queue)

    def purge_queue(self, vhost: str, name: str) -> int:
        """Drop a queue's ready messages; returns how many."""
        return _core(self._queue(vhost, name).purge)

    # -- bindings ---------------------------------------------------------------------------------

    def bindings(self, vhost: str | None = None, *, source: str | None = None,
                 destination: str | None = None, destination_type: str | None = None) -> list[dict]:
        """Bindings as RabbitMQ lists them: each queue's implicit default-exchange binding first,
        then the explicit ones, by source, destination and routing key."""
        rows = []
        for v in sorted(self._vhosts(vhost), key=lambda v: v.name):
            if source is not None and source not in v.exchanges:
                if vhost is None:
                    continue  # across vhosts, those without the exchange have nothing to list
                raise _not_found(f"exchange '{source}' in vhost '{v.name}'")
            if source in (None, ""):
                for name in sorted(v.queues):
                    if destination is None or destination == name:
                        if destination_type in (None, "queue"):
                            rows.append(self._binding(v.name, "", name, "queue", name, {}))
            explicit = []
            for exchange_name, exchange in v.exchanges.items():
                if not exchange_name or (source is not None and exchange_name != source):
                    continue
                for (dest, routing_key, _frozen), arguments in exchange.bindings.items():
                    kind = "exchange" if isinstance(dest, Exchange) else "queue"
                    if destination is not None and dest.name != destination:
                        continue
                    if destination_type is not None and kind != destination_type:
                        continue
                    explicit.append(self._binding(v.name, exchange_name, dest.name, kind, routing_key,
                                                  arguments))
            explicit.sort(key=lambda b: (b["source"], b["destination_type"], b["destination"],
                                         b["routing_key"], b["properties_key"]))
            rows.extend(explicit)
        return rows

    @staticmethod
    def _binding(vhost: str, source: str, destination: str, kind: str, routing_key: str,
                 arguments: dict) -> dict:
        return {
            "source": source,
            "vhost": vhost,
            "destination": destination,
            "destination_type": kind,
            "routing_key": routing_key,
            "arguments": _json(arguments),
            "properties_key": properties_key(routing_key, arguments),
        }

    def bind(self, vhost: str, source: str, destination: str, destination_type: str = "queue",
             routing_key: str = "", arguments: dict | None = None) -> str:
        """Add a binding; returns its properties_key (the last part of its management URL)."""
        v = self._vhost(vhost)
        exchange = _core(v.get_exchange, source)
        arguments = dict(arguments or {})
        if destination_type == "queue":
            queue = v.queues.get(destination)
            if queue is None:
                raise AdminError("not_found", f"no queue '{destination}' in vhost '{vhost}'")
            _core(v.bind_queue, queue, exchange, routing_key, arguments)
        else:
            _core(v.bind_exchange, _core(v.get_exchange, destination), exchange, routing_key, arguments)
        return properties_key(routing_key, arguments)

    def unbind(self, vhost: str, source: str, destination: str, destination_type: str,
               props: str) -> None:
        """Remove the binding whose properties_key is ``props``."""
        for row in self.bindings(vhost, source=source, destination=destination,
                                 destination_type=destination_type):
            if row["properties_key"] == props and source:
                v = self._vhost(vhost)
                exchange = v.exchanges[source]
                arguments = self._binding_arguments(exchange, destination, row["routing_key"], props)
                if destination_type == "queue":
                    _core(v.unbind_queue, self._queue(vhost, destination), exchange,
                          row["routing_key"], arguments)
                else:
                    _core(v.unbind_exchange, v.exchanges[destination], exchange, row["routing_key"],
                          arguments)
                return
        raise _not_found("binding")

    @staticmethod
    def _binding_arguments(exchange: Exchange, destination: str, routing_key: str, props: str) -> dict:
        for (dest, key, _frozen), arguments in exchange.bindings.items():
            if dest.name == destination and key == routing_key and properties_key(key, arguments) == props:
                return arguments
        return {}

    # -- messages ---------------------------------------------------------------------------------

    def publish(self, vhost: str, exchange: str, routing_key: str, payload: bytes,
                properties: dict | None = None) -> bool:
        """Publish a message as a client would; True when it was routed to at least one queue.

        Counted as RabbitMQ's management API publishes: on a confirm-mode channel with
        mandatory set, so an unroutable message counts as returned."""
        v = self._vhost(vhost)
        target = v.exchanges.get(exchange)
        # RabbitMQ's publish reports its channel's errors as a bad request, with the reply code.
        if target is None:
            raise AdminError("bad_request", f"404 NOT_FOUND - no exchange '{exchange}' in vhost '{vhost}'")
        if target.internal:
            raise AdminError("bad_request", f"403 ACCESS_REFUSED - cannot publish to internal "
                                            f"exchange '{exchange}' in vhost '{vhost}'")
        properties = dict(properties or {})
        try:
            raw = properties_from_dict(properties)
        except Exception as exc:  # pamqp's validation of a property value
            raise AdminError("bad_request", f"invalid properties: {exc}") from None
        message = Message(exchange, routing_key, raw, payload, properties.get("delivery_mode") or 0,
                          properties.get("priority"), properties.get("expiration"),
                          properties.get("headers"), properties.get("user_id"))
        if target.name == "":
            queue = v.queues.get(routing_key)
            queues = [queue] if queue is not None else []
        else:
            queues = list(v.route(target, message))
        for queue in queues:
            queue.publish(message)
        stats = v.retired_stats
        stats["publish"] += 1
        stats["publish_confirm"] += 1
        stats["confirm"] += 1
        stats["routed"] += len(queues)
        if not queues:
            stats["return_unroutable"] += 1
        return bool(queues)

    def get_messages(self, vhost: str, queue: str, count: int = 1, *, requeue: bool = True,
                     truncate: int | None = None, reject: bool = False) -> list[dict]:
        """Take up to ``count`` ready messages as basic.get would and put them back (flagged
        redelivered) when ``requeue``, else drop them: as acked, or as rejected when ``reject``
        (then they are dead-lettered where the queue says so, as basic.reject would)."""
        q = self._vhost(vhost).queues.get(queue)
        if q is None:
            raise AdminError("not_found", f"NOT_FOUND - no queue '{queue}' in vhost '{vhost}'")
        taken = []
        for _ in range(max(count, 0)):
            try:
                entry = q.get()
            except AMQPError as exc:  # a stream: RabbitMQ reports the channel error, code first
                raise AdminError("bad_request", f"{exc.reply_code} {exc.text}") from None
            if entry is None:
                break
            q.stat_delivered += 1
            if entry.redelivered:
                q.stat_redelivered += 1
            taken.append(entry)
        stats = q.vhost.retired_stats
        stats["deliver_get"] += len(taken)
        stats["redeliver"] += sum(1 for entry in taken if entry.redelivered)
        result = []
        before = q.message_count + len(taken)
        for index, entry in enumerate(taken):
            message = entry.message
            body = message.body if truncate is None else message.body[:truncate]
            result.append({
                "payload_bytes": len(message.body),
                "redelivered": entry.redelivered,
                "exchange": message.exchange,
                "routing_key": message.routing_key,
                "message_count": before - index - 1,
                "properties": _json(_set_properties(message)),
                "body": bytes(body),
            })
        if requeue:
            q.requeue(taken)
        else:
            for entry in taken:
                if entry.stored or reject:
                    q.drop(entry, "rejected" if reject else None)
        return result

    # -- connections, channels, consumers ---------------------------------------------------------

    def connections(self, vhost: str | None = None) -> list[dict]:
        """Every open connection (after connection.open), oldest first."""
        sessions = sorted(self.broker.sessions, key=lambda s: (s.connected_at, s.name))
        return [self._connection_info(s) for s in sessions if vhost is None or s.vhost.name == vhost]

    def connection(self, name: str) -> dict:
        """One connection, by its name (``peer -> local``)."""
        return self._connection_info(self._session(name))

    def _session(self, name: str) -> "Session":
        for session in self.broker.sessions:
            if session.name == name:
                return session
        raise _not_found(f"connection '{name}'")

    @staticmethod
    def _connection_info(session: "Session") -> dict:
        peer_host, _, peer_port = session.peer.rpartition(":")
        details = session.details
        host, _, port = str(details.get("local", "")).rpartition(":")
        return {
            "name": session.name,
            "user": session.user,
            "vhost": session.vhost.name,
            "peer_host": peer_host,
            "peer_port": int(peer_port) if peer_port.isdigit() else None,
            "host": host,
            "port": int(port) if port.isdigit() else None,
            "channels": len(session.channels),
            "client_properties": _json(session.client_properties),
            "connected_at": session.connected_at,
            "state": "running",
            "type": "network",
            "protocol": details.get("protocol", "AMQP 0-9-1"),
            "auth_mechanism": details.get("auth_mechanism", ""),
            "frame_max": details.get("frame_max", 0),
            "channel_max": details.get("channel_max", 0),
            "timeout": details.get("timeout", 0),
            "ssl": False,
        }

    def close_connection(self, name: str, reason: str = DEFAULT_CLOSE_REASON) -> None:
        """Close a connection with 320 CONNECTION_FORCED and ``reason``, as RabbitMQ's
        management API and ``rabbitmqctl close_connection`` do."""
        self._close(self._session(name), reason)

    def close_all_connections(self, reason: str = DEFAULT_CLOSE_REASON, vhost: str | None = None) -> int:
        """Close every connection (of one vhost); returns how many."""
        sessions = [s for s in self.broker.sessions if vhost is None or s.vhost.name == vhost]
        for session in sessions:
            self._close(session, reason)
        return len(sessions)

    @staticmethod
    def _close(session: "Session", reason: str) -> None:
        text = f"CONNECTION_FORCED - {reason}"
        if session.closer is not None:
            session.closer(text)
        else:
            session.close()

    def channels(self, vhost: str | None = None) -> list[dict]:
        """Every open channel, by connection then number."""
        rows = []
        for session in sorted(self.broker.sessions, key=lambda s: (s.connected_at, s.name)):
            if vhost is not None and session.vhost.name != vhost:
                continue
            for number in sorted(session.channels):
                rows.append(self._channel_info(session, session.channels[number]))
        return rows

    def _channel_info(self, session: "Session", channel: "Channel") -> dict:
        return {
            "name": f"{session.name} ({channel.number})",
            "number": channel.number,
            "user": session.user,
            "vhost": session.vhost.name,
            "connection_details": {"name": session.name, "peer_host": session.peer.rpartition(":")[0],
                                   "peer_port": _port(session.peer)},
            "consumer_count": len(channel.consumers),
            "messages_unacknowledged": len(channel.unacked),
            "messages_unconfirmed": len(channel.confirm_backlog),
            "prefetch_count": channel.prefetch_count,
            "global_prefetch_count": channel.global_prefetch,
            "confirm": channel.confirm_mode,
            "transactional": channel.tx is not None,
            # Staged in an open transaction: publishes, and deliveries acknowledged.
            "messages_uncommitted": sum(1 for action in channel.tx or () if action[0] == "publish"),
            "acks_uncommitted": sum(len(action[1]) for action in channel.tx or () if action[0] == "ack"),
            "state": "running",
            "message_stats": self._with_rates(("channel", session.name, channel.number),
                                              channel.message_stats()),
        }

    def consumers(self, vhost: str | None = None) -> list[dict]:
        """Every consumer, by queue then tag."""
        rows = []
        for v in sorted(self._vhosts(vhost), key=lambda v: v.name):
            for name in sorted(v.queues):
                queue = v.queues[name]
                for consumer in queue.all_consumers():
                    session = consumer.channel.session
                    rows.append({
                        "consumer_tag": consumer.tag,
                        "queue": {"name": queue.name, "vhost": v.name},
                        "channel_details": {
                            "name": f"{session.name} ({consumer.channel.number})",
                            "number": consumer.channel.number,
                            "connection_name": session.name,
                            "peer_host": session.peer.rpartition(":")[0],
                            "peer_port": _port(session.peer),
                            "user": session.user,
                        },
                        "ack_required": not consumer.no_ack,
                        "exclusive": consumer.exclusive,
                        "prefetch_count": consumer.prefetch,
                        "active": consumer in queue.consumers,
                        "activity_status": "up" if consumer in queue.consumers else "waiting",
                        "arguments": _json(consumer.arguments or {}),
                    })
        return rows

    # -- definitions and reset --------------------------------------------------------------------

    def export_definitions(self, vhost: str | None = None) -> dict:
        """The running broker's definitions (RabbitMQ's definitions.json object).

        With ``vhost``, RabbitMQ's single-vhost form: only that vhost's queues, exchanges and
        bindings, without their ``vhost`` keys, and no users, vhosts or permissions."""
        from ..definitions import export_definitions

        data = export_definitions(self.broker)
        if vhost is None:
            return data
        self._vhost(vhost)
        one: dict[str, Any] = {"rabbit_version": data["rabbit_version"], "parameters": [],
                               "policies": []}
        for kind in ("queues", "exchanges", "bindings"):
            one[kind] = [{k: v for k, v in entry.items() if k != "vhost"}
                         for entry in data[kind] if entry.get("vhost") == vhost]
        return one

    def import_definitions(self, data: dict, vhost: str | None = None) -> dict[str, int]:
        """Apply a definitions object to the running broker; counts of what was applied.

        With ``vhost``, the single-vhost form: queues, exchanges and bindings go into that vhost
        whatever their ``vhost`` keys say; users, vhosts and permissions are ignored."""
        from ..definitions import DefinitionsError, import_definitions

        if vhost is not None:
            self._vhost(vhost)
        if vhost is not None and isinstance(data, dict):
            data = {kind: [dict(entry, vhost=vhost) if isinstance(entry, dict) else entry
                           for entry in data.get(kind) or []]
                    for kind in ("queues", "exchanges", "bindings")}
        try:
            return import_definitions(self.broker, data)
        except DefinitionsError as exc:
            raise AdminError("bad_request", str(exc)) from None

    def reset(self, default_user: str = "guest", default_pass: str = "guest",
              default_vhost: str = "/") -> None:
        """Back to a fresh broker's state, for test suites: every connection closed, every vhost,
        queue, exchange and user gone, the counters at zero, then the default vhost and user made
        again."""
        self.close_all_connections("broker reset")
        for name in list(self.broker.vhosts):
            self.delete_vhost(name)
        for name in list(self.broker.users.users):
            self.delete_user(name)
        self.broker.counters.clear()
        self._samples.clear()
        self.broker.add_vhost(default_vhost)
        if default_user:
            self.add_user(default_user, default_pass, tags=["administrator"])
            self.broker.set_permissions(default_user, default_vhost, FULL_ACCESS)


def properties_key(routing_key: str, arguments: dict | None) -> str:
    """The last part of a binding's management URL: the routing key (``~`` for none), with a
    hash of the arguments after ``~`` when there are any, as RabbitMQ's management API names
    bindings (rabbit_mgmt_format:pack_binding_props: the key form-encoded, ``~`` escaped too;
    the hash is ours, RabbitMQ's is Erlang's phash2 of the term)."""
    key = urllib.parse.quote_plus(routing_key, safe="").replace("~", "%7E") if routing_key else "~"
    if not arguments:
        return key
    digest = base64.urlsafe_b64encode(
        repr(sorted(_json(arguments).items())).encode("utf-8")
    ).decode("ascii").rstrip("=")[:22]
    return f"{key}~{digest}"


def _set_properties(message: Message) -> dict:
    """The properties a publisher set (pamqp fills an absent cluster_id with "")."""
    properties = message.properties()
    if not properties.get("cluster_id"):
        properties.pop("cluster_id", None)
    return properties


def _tag_list(tags: Iterable[str] | str) -> list[str]:
    """User tags from a list or, as RabbitMQ's API also takes them, a comma-separated string."""
    if isinstance(tags, str):
        return [tag.strip() for tag in tags.split(",") if tag.strip()]
    return list(tags)


def _port(peer: str) -> int | None:
    port = peer.rpartition(":")[2]
    return int(port) if port.isdigit() else None
