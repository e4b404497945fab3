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

The calls that act inside a vhost as a client would (declare, delete, purge, get, publish, bind,
unbind, the aliveness test) take the acting ``user``: then that user's permissions decide, through
broker/access.py, as RabbitMQ's management API decides them by acting over an AMQP connection of
that user's (a user with no permissions on the vhost is refused outright, an administrator too).
Without a user (the control CLI, the pytest plugin, definitions) the broker acts for itself.

Everything here runs on the broker's event loop, like any client's method.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..auth import FULL_ACCESS
from ..counters import CHANNEL_COUNTERS, QUEUE_COUNTERS, queue_counters
from ..exchange import Exchange
from ..queue_types import QUEUE_TYPES, queue_type_of
from ..vhost import MESSAGE_STATS

if TYPE_CHECKING:  # pragma: no cover
    from ..access import Grants
    from ..broker import Broker
    from ..queue import Queue
    from ..vhost import VHost

from .base import AdminError, ACCESS_REFUSED, DEFAULT_CLOSE_REASON, RATE_WINDOW, _core, _json, _not_found, properties_key
from .limits import LimitsAdmin
from .messages import MessagesAdmin
from .sessions import SessionsAdmin
from .users import UsersAdmin

__all__ = ["Admin", "AdminError", "DEFAULT_CLOSE_REASON", "RATE_WINDOW", "properties_key"]


class Admin(UsersAdmin, LimitsAdmin, MessagesAdmin, SessionsAdmin):
    """Snapshots and admin actions over one :class:`~amqp_broker.broker.broker.Broker`.

    ``node`` is filled in by whoever runs the broker (the server): a callable returning the
    node's facts (name, listeners, memory, alarms, start time) that the core cannot know."""

    def __init__(self, broker: "Broker", node: Callable[[], dict] | None = None):
        self.broker = broker
        self.node = node or (lambda: {})
        # The server's frame traces (server/trace.py: trace, untrace, traces), set by the server
        # that runs this broker: frames are not the core's, but the management API only has us.
        self.tracing: Any = None
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

    def strict_violations(self) -> dict[str, int]:
        """Strict-mode violations noted since start, by rule (empty unless strict mode is on)."""
        return dict(self.broker.counters.strict_violations)

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

    def _access(self, user: str | None, vhost: "VHost") -> "Grants | None":
        """``user``'s permissions on ``vhost`` (None when the broker acts for itself). A user
        without permissions there may not act in it at all: RabbitMQ's API cannot open its
        connection to the vhost and answers "Access refused.", whatever the user's tags."""
        if user is None:
            return None
        entry = self.broker.users.users.get(user)
        if entry is None or vhost.name not in entry.permissions:
            raise AdminError("not_authorised", ACCESS_REFUSED)
        return self.broker.grants_for(user, vhost.name)

    def login_refusal(self, user: str, host: str | None) -> str | None:
        """Why ``user`` may not log in from ``host`` (an address, no port), or None when it may:
        RabbitMQ's loopback_users, which its management API checks against the HTTP client's
        address."""
        return self.broker.loopback_refusal(user, host)

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
            **exchange.info(),
        }

    def declare_exchange(self, vhost: str, name: str, type_name: str = "direct", *, durable: bool = True,
                         auto_delete: bool = False, internal: bool = False,
                         arguments: dict | None = None, user: str | None = None) -> bool:
        """Declare an exchange (RabbitMQ's rules: reserved names, equivalence; ``user`` needs
        configure on it, and for a new one naming an alternate exchange write on that); True
        when it was created."""
        v = self._vhost(vhost)
        existed = name in v.exchanges
        _core(v.declare_exchange, name, type_name, durable=durable, auto_delete=auto_delete,
              internal=internal, arguments=dict(arguments or {}), access=self._access(user, v))
        return not existed

    def delete_exchange(self, vhost: str, name: str, if_unused: bool = False, *,
                        user: str | None = None) -> None:
        """Delete an exchange; the default and amq.* ones cannot be; ``user`` needs configure
        on it."""
        v = self._vhost(vhost)
        if name not in v.exchanges:
            raise _not_found(f"exchange '{name}' in vhost '{vhost}'")
        if not name or name.startswith("amq."):
            raise AdminError("not_authorised", ACCESS_REFUSED)
        access = self._access(user, v)
        if access is not None:
            _core(access.configure, "exchange", name)
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
                      arguments: dict | None = None, user: str | None = None) -> bool:
        """Declare a queue (RabbitMQ's rules); True when it was created. ``user`` needs
        configure on it, and for a new one with a dead-letter exchange read on it and write on
        that exchange."""
        v = self._vhost(vhost)
        access = self._access(user, v)
        existed = name in v.queues
        _core(v.declare_queue, None, name, durable=durable, auto_delete=auto_delete,
              arguments=dict(arguments or {}), access=access)
        return not existed

    def delete_queue(self, vhost: str, name: str, *, if_unused: bool = False, if_empty: bool = False,
                     user: str | None = None) -> int:
        """Delete a queue; returns how many ready messages went with it. ``user`` needs
        configure on it."""
        queue = self._queue(vhost, name)
        access = self._access(user, queue.vhost)
        if access is not None:
            _core(access.configure, "queue", name)
        _core(queue.check_delete, if_unused, if_empty)
        return queue.vhost.delete_queue(queue)

    def purge_queue(self, vhost: str, name: str, *, user: str | None = None) -> int:
        """Drop a queue's ready messages; returns how many. ``user`` needs read on it."""
        queue = self._queue(vhost, name)
        access = self._access(user, queue.vhost)
        if access is not None:
            _core(access.read, "queue", name)
        return _core(queue.purge)

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

    def _check_binding(self, user: str | None, v: "VHost", source: str, destination: str,
                       destination_type: str, routing_key: str) -> None:
        """rabbit_channel's checks of a (un)binding by ``user``, before either end is looked
        up: write on the destination, read on the source, and the source's topic permission on
        the routing key when it is a topic exchange."""
        access = self._access(user, v)
        if access is None:
            return
        _core(access.write, destination_type, destination)
        _core(access.read, "exchange", source)
        exchange = v.exchanges.get(source)
        if exchange is not None and not access.topic_free(source):
            _core(access.check_topic, False, exchange, routing_key)

    def bind(self, vhost: str, source: str, destination: str, destination_type: str = "queue",
             routing_key: str = "", arguments: dict | None = None, *, user: str | None = None) -> str:
        """Add a binding; returns its properties_key (the last part of its management URL).
        A missing end is not_found with RabbitMQ's ``no queue 'q' in vhost 'v'``, source first,
        after ``user``'s permissions are checked."""
        v = self._vhost(vhost)
        self._check_binding(user, v, source, destination, destination_type, routing_key)
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
               props: str, *, user: str | None = None) -> None:
        """Remove the binding whose properties_key is ``props`` (``user`` needs what binding
        needs)."""
        for row in self.bindings(vhost, source=source, destination=destination,
                                 destination_type=destination_type):
            if row["properties_key"] == props and source:
                v = self._vhost(vhost)
                self._check_binding(user, v, source, destination, destination_type,
                                    row["routing_key"])
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

    # -- definitions and reset --------------------------------------------------------------------

    def export_definitions(self, vhost: str | None = None) -> dict:
        """The running broker's definitions (RabbitMQ's definitions.json object).

        With ``vhost``, RabbitMQ's single-vhost form: only that vhost's queues, exchanges and
        bindings, without their ``vhost`` keys, and no users, vhosts or permissions."""
        from ...definitions import export_definitions

        data = export_definitions(self.broker)
        if vhost is None:
            return data
        self._vhost(vhost)
        one: dict[str, Any] = {"rabbit_version": data["rabbit_version"], "policies": [],
                               "parameters": [p for p in data["parameters"] if p["vhost"] == vhost]}
        for kind in ("queues", "exchanges", "bindings"):
            one[kind] = [{k: v for k, v in entry.items() if k != "vhost"}
                         for entry in data[kind] if entry.get("vhost") == vhost]
        return one

    def import_definitions(self, data: dict, vhost: str | None = None) -> dict[str, int]:
        """Apply a definitions object to the running broker; counts of what was applied.

        With ``vhost``, the single-vhost form: queues, exchanges and bindings go into that vhost
        whatever their ``vhost`` keys say; users, vhosts and permissions are ignored."""
        from ...definitions import DefinitionsError, import_definitions

        if vhost is not None:
            self._vhost(vhost)
        if vhost is not None and isinstance(data, dict):
            data = {kind: [dict(entry, vhost=vhost) if isinstance(entry, dict) else entry
                           for entry in data.get(kind) or []]
                    for kind in ("queues", "exchanges", "bindings", "parameters")}
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


