"""A virtual host: its exchanges, queues and bindings, and routing through them.

Every check here follows RabbitMQ 3.10's rabbit_channel / rabbit_amqqueue / rabbit_exchange,
including the reply texts, since applications and client libraries match on them.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import (
    COMMAND_INVALID,
    ConnectionLevelError,
    access_refused,
    not_found,
    precondition_failed,
    resource_locked,
)
from .arguments import (
    check_dead_letter_exchange,
    check_exchange_arguments_equivalent,
    check_queue_arguments_equivalent,
    inequivalent,
    validate_queue_arguments,
)
from .exchange import EXCHANGE_TYPES, DefaultExchange, Exchange
from .limits import check_new_queue
from .fields import field_type_name
from .counters import CHANNEL_COUNTERS, NodeCounters
from .message import Message
from .queue import Queue, describe_queue, no_queue
from .queue_types import queue_type_of
from .replyto import DirectReplyTo
from .timers import Timers

if TYPE_CHECKING:  # pragma: no cover
    from .access import Grants
    from .session import Session

#: The message counters a channel keeps (Channel.message_stats), by RabbitMQ's names.
MESSAGE_STATS = (
    "publish", "deliver_get", "ack", "confirm", "redeliver", "return_unroutable", "drop_unroutable",
)

# The exchanges every RabbitMQ vhost starts with (AMQP 0-9-1 spec 3.1.3: amq.direct, amq.fanout,
# amq.topic, amq.headers/amq.match; all durable).
PREDECLARED = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def generate_name(prefix: str) -> str:
    """A server-generated name like RabbitMQ's: ``amq.gen-`` + 22 url-safe base64 characters."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")


class VHost:
    """Exchanges, queues and bindings of one virtual host."""

    def __init__(self, name: str):
        self.name = name
        self.exchanges: dict[str, Exchange] = {"": DefaultExchange(self, "", durable=True)}
        for ex_name, ex_type in PREDECLARED:
            self.exchanges[ex_name] = EXCHANGE_TYPES[ex_type](self, ex_name, durable=True)
        self.queues: dict[str, Queue] = {}
        # Number of exchange-to-exchange bindings; while zero, routing skips the graph walk.
        self.exchange_bindings = 0
        # The broker's Persistence when it has a store: durable definitions are written through it.
        self.persistence: Any = None
        # Live direct reply-to consumers; the Broker gives all its vhosts one shared registry.
        self.replies = DirectReplyTo()
        # Message TTL and x-expires deadlines; the Broker gives all its vhosts its own heap.
        self.timers = Timers()
        # Message counters of this vhost's closed channels (the live ones keep their own).
        self.retired_stats: dict[str, int] = dict.fromkeys(CHANNEL_COUNTERS, 0)
        # Node-wide churn counters and deleted queues' counts; the Broker gives all its vhosts one.
        self.counters = NodeCounters()
        # RabbitMQ's vhost-limits parameter (broker/limits.py): None when never set or cleared,
        # else {name: value}, possibly empty once each limit was removed one by one.
        self.limits: dict[str, int] | None = None

    # -- lookups ----------------------------------------------------------------------------------

    def get_exchange(self, name: str) -> Exchange:
        """The exchange, or 404 ``no exchange 'x' in vhost '/'``."""
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise not_found(f"no exchange '{name}' in vhost '{self.name}'")
        return exchange

    def get_queue(self, name: str, session: "Session | None" = None) -> Queue:
        """The queue, or 404; an exclusive queue of another connection gives 405."""
        queue = self.queues.get(name)
        if queue is None:
            raise no_queue(name, self.name)
        if queue.exclusive_owner is not None and queue.exclusive_owner is not session:
            raise self._locked(queue)
        return queue

    def _locked(self, queue: Queue) -> Exception:
        return resource_locked(
            f"cannot obtain exclusive access to locked {queue.describe()}. "
            "It could be originally declared on another connection or the exclusive property "
            "value does not match that of the original declaration."
        )

    # -- exchanges --------------------------------------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        type_name: str,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict | None = None,
        access: "Grants | None" = None,
    ) -> Exchange:
        """exchange.declare with RabbitMQ's passive, reserved-name and equivalence rules, in
        rabbit_channel's order: the type, the default exchange, ``access``'s configure check
        (a client's declare; none for the broker's own), then for a new exchange its name and
        alternate exchange. A passive declare needs no permission."""
        arguments = arguments or {}
        if passive:
            if name == "":
                raise access_refused("operation not permitted on the default exchange")
            return self.get_exchange(name)
        cls = EXCHANGE_TYPES.get(type_name)
        if cls is None:
            if not type_name:
                raise ConnectionLevelError(COMMAND_INVALID, "invalid exchange type ''")
            raise ConnectionLevelError(COMMAND_INVALID, f"unknown exchange type '{type_name}'")
        if name == "":
            raise access_refused("operation not permitted on the default exchange")
        if access is not None:
            access.configure("exchange", name)
        existing = self.exchanges.get(name)
        if existing is not None:
            self._check_exchange_equivalence(existing, type_name, durable, auto_delete, internal, arguments)
            return existing
        if name.startswith("amq."):
            raise access_refused(f"exchange name '{name}' contains reserved prefix 'amq.*'")
        alternate = arguments.get("alternate-exchange")
        if alternate is not None and not isinstance(alternate, (str, bytes)):
            # rabbit_channel (new exchanges only): rabbit_misc:r_arg/4 wants a longstr.
            raise precondition_failed(
                f"invalid type '{field_type_name(alternate)}' for arg 'alternate-exchange' in exchange '{name}' in vhost '{self.name}'"
            )
        if alternate is not None and access is not None:
            access.new_with_link("exchange", name, _text(alternate))
        cls.validate_declare(arguments)
        exchange = cls(self, name, durable, auto_delete, internal, arguments)
        self.exchanges[name] = exchange
        if durable and self.persistence is not None:
            self.persistence.save_exchange(exchange)
        return exchange

    def _check_exchange_equivalence(
        self, ex: Exchange, type_name: str, durable: bool, auto_delete: bool, internal: bool, args: dict
    ) -> None:
        owner = ex.describe()
        for field, new, old in (
            ("type", type_name, ex.type_name),
            ("durable", durable, ex.durable),
            ("auto_delete", auto_delete, ex.auto_delete),
            ("internal", internal, ex.internal),
        ):
            if new != old:
                raise inequivalent(field, owner, new, old)
        check_exchange_arguments_equivalent(owner, args, ex.arguments)

    def delete_exchange(self, name: str, if_unused: bool = False) -> None:
        """exchange.delete: idempotent for a missing exchange, as RabbitMQ 3.x."""
        if name == "":
            raise access_refused("operation not permitted on the default exchange")
        if name.startswith("amq."):
            raise access_refused(f"deletion of system exchange '{name}' in vhost '{self.name}' not allowed")
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.bindings:
            raise precondition_failed(f"exchange '{name}' in vhost '{self.name}' in use")
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange) -> None:
        del self.exchanges[exchange.name]
        destinations = list({key[0]: None for key in exchange.bindings})
        for (dest, _rk, _args) in list(exchange.bindings):
            if isinstance(dest, Exchange):
                self.exchange_bindings -= 1
            else:
                dest.bound_from.pop(exchange, None)
        exchange.clear_bindings()
        exchange.deleted()
        for source in list(self.exchanges.values()):
            before = len(source.bindings)
            source.unbind_destination(exchange)
            removed = before - len(source.bindings)
            if removed:
                self.exchange_bindings -= removed
                self._maybe_auto_delete(source)
        if self.persistence is not None:
            self.persistence.delete_exchange(exchange, destinations)

    def _maybe_auto_delete(self, exchange: Exchange) -> None:
        # An auto-delete exchange goes once its last binding as a source is removed (RabbitMQ).
        if exchange.auto_delete and not exchange.bindings and exchange.name in self.exchanges:
            self._remove_exchange(exchange)

    # -- queues -----------------------------------------------------------------------------------

    def declare_queue(
        self,
        session: "Session | None",
        name: str,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict | None = None,
        access: "Grants | None" = None,
        limit: bool = True,
    ) -> Queue:
        """queue.declare with RabbitMQ's passive, exclusive, reserved-name and equivalence rules.

        ``access`` (a client's declare) is asked where rabbit_channel asks: configure once the
        name is settled (a server-named queue's ``amq.gen-…`` included), and for a new queue
        with a dead-letter exchange read on the queue and write on that exchange. A passive
        declare needs no permission. A new queue counts against the vhost's max-queues unless
        ``limit`` is false (recovery and definitions, which RabbitMQ does not limit either)."""
        arguments = arguments or {}
        if passive:
            if not name:
                raise no_queue(name, self.name)
            queue = self.get_queue(name, session)
            if queue.ext is not None:
                queue.ext.touch()  # a (passive) redeclare counts as use for x-expires
            return queue
        if not name:
            queue_type_of(arguments).check_server_named()
            name = generate_name("amq.gen-")
        elif name.startswith("amq."):
            raise access_refused(f"queue name '{name}' contains reserved prefix 'amq.*'")
        if access is not None:
            access.configure("queue", name)
        if limit and self.limits is not None and name not in self.queues:
            check_new_queue(self, name)
        check_dead_letter_exchange(describe_queue(name, self.name), arguments)
        existing = self.queues.get(name)
        dead_letter_exchange = arguments.get("x-dead-letter-exchange")
        if existing is None and dead_letter_exchange is not None and access is not None:
            access.new_with_link("queue", name, _text(dead_letter_exchange))
        validate_queue_arguments(name, self.name, arguments)
        if existing is not None:
            if existing.exclusive_owner is not None and existing.exclusive_owner is not session:
                raise self._locked(existing)
            self._check_queue_equivalence(existing, durable, exclusive, auto_delete, arguments)
            if existing.ext is not None:
                existing.ext.touch()
            return existing
        kind = queue_type_of(arguments)
        kind.check_new_queue(describe_queue(name, self.name), durable, exclusive, auto_delete, arguments)
        queue = kind.queue_class(
            self,
            name,
            durable=durable,
            exclusive_owner=session if exclusive else None,
            auto_delete=auto_delete,
            arguments=arguments,
        )
        self.queues[name] = queue
        if exclusive and session is not None:
            session.exclusive_queues.add(queue)
        if self.persistence is not None:
            self.persistence.attach_queue(queue)
        return queue

    def _check_queue_equivalence(
        self, queue: Queue, durable: bool, exclusive: bool, auto_delete: bool, args: dict
    ) -> None:
        owner = queue.describe()
        if queue.durable != durable:
            raise inequivalent("durable", owner, durable, queue.durable)
        if queue.exclusive != exclusive:
            raise self._locked(queue)
        if queue.auto_delete != auto_delete:
            raise inequivalent("auto_delete", owner, auto_delete, queue.auto_delete)
        check_queue_arguments_equivalent(owner, args, queue.arguments)

    def delete_queue(self, queue: Queue) -> int:
        """Remove a queue, its bindings and consumers (they get basic.cancel); returns ready count."""
        if queue.deleted:
            return 0
        queue.deleted = True
        count = queue.message_count
        if self.queues.get(queue.name) is queue:
            del self.queues[queue.name]
        for exchange in list(queue.bound_from):
            exchange.unbind_destination(queue)
            self._maybe_auto_delete(exchange)
        queue.bound_from.clear()
        owner = queue.exclusive_owner
        if owner is not None:
            owner.exclusive_queues.discard(queue)
        for consumer in queue.all_consumers():
            consumer.channel.consumer_cancelled_by_server(consumer)
        queue.consumers.clear()
        queue.waiting_consumers.clear()
        queue.buffer.clear()
        if self.persistence is not None:
            self.persistence.delete_queue(queue)
        self.counters.retire_queue(queue_type_of(queue.arguments).name, queue)
        return count

    # -- bindings ---------------------------------------------------------------------------------

    def _check_bindable(self, exchange: Exchange) -> None:
        if exchange.name == "":
            raise access_refused("operation not permitted on the default exchange")

    def bind_queue(self, queue: Queue, exchange: Exchange, routing_key: str, arguments: dict) -> None:
        """queue.bind (idempotent)."""
        self._check_bindable(exchange)
        self._validate(exchange, routing_key, arguments)
        if exchange.bind(queue, routing_key, arguments):
            queue.bound_from[exchange] = None
            if queue.persistence is not None and exchange.durable:
                queue.persistence.save_queue(queue)

    def unbind_queue(
        self, queue: Queue, exchange: Exchange, routing_key: str, arguments: dict,
        session: "Session | None" = None,
    ) -> None:
        """queue.unbind (idempotent, as RabbitMQ 3.x).

        A missing binding is fine even on another connection's exclusive queue, but removing an
        existing one needs exclusive access (405), as rabbit_binding:remove checks only then.
        Callers pass ``session`` to get that check.
        """
        self._check_bindable(exchange)
        if (
            session is not None
            and queue.exclusive_owner is not None
            and queue.exclusive_owner is not session
            and exchange.has_binding(queue, routing_key, arguments)
        ):
            raise self._locked(queue)
        if exchange.unbind(queue, routing_key, arguments):
            if queue not in exchange.by_destination:
                queue.bound_from.pop(exchange, None)
            if queue.persistence is not None and exchange.durable:
                queue.persistence.save_queue(queue)
            self._maybe_auto_delete(exchange)

    def bind_exchange(self, destination: Exchange, source: Exchange, routing_key: str, arguments: dict) -> None:
        """exchange.bind (exchange-to-exchange, a RabbitMQ extension)."""
        self._check_bindable(source)
        self._check_bindable(destination)
        self._validate(source, routing_key, arguments)
        if source.bind(destination, routing_key, arguments):
            self.exchange_bindings += 1
            if self.persistence is not None and source.durable and destination.durable:
                self.persistence.save_exchange(destination)

    def unbind_exchange(self, destination: Exchange, source: Exchange, routing_key: str, arguments: dict) -> None:
        """exchange.unbind (idempotent)."""
        self._check_bindable(source)
        self._check_bindable(destination)
        if source.unbind(destination, routing_key, arguments):
            self.exchange_bindings -= 1
            if self.persistence is not None and source.durable and destination.durable:
                self.persistence.save_exchange(destination)
            self._maybe_auto_delete(source)

    @staticmethod
    def _validate(exchange: Exchange, routing_key: str, arguments: dict) -> None:
        try:
            exchange.validate_binding(routing_key, arguments)
        except ValueError as exc:
            raise precondition_failed(str(exc)) from None

    # -- routing ----------------------------------------------------------------------------------

    def route(self, exchange: Exchange, message: Message) -> Iterable[Queue]:
        """Queues a message published to ``exchange`` reaches, each once.

        While the vhost has no exchange-to-exchange bindings every destination is a queue, so the
        exchange's own result is returned as it is (no copy on the hot path).
        """
        destinations = exchange.route(message)
        if not self.exchange_bindings and (destinations or exchange.alternate is None):
            return destinations
        return self.walk(exchange, message, destinations)

    def walk(self, exchange: Exchange, message: Message, destinations: Iterable[Any]) -> Iterable[Queue]:
        """The queues reached from ``exchange``'s own ``destinations`` (already asked of it: an
        exchange is asked once per publish, which a stateful one such as x-delayed-message relies
        on) through exchange-to-exchange bindings and alternate exchanges.
        """
        # The graph walk (rabbit_exchange:route1/3): exchange-to-exchange bindings, and alternate
        # exchanges: every exchange reached that routes nowhere itself passes the message to its
        # alternate-exchange (process_alternate/2), if that exists; ``seen`` stops cycles.
        queues: dict[Queue, None] = {}
        seen = {exchange}
        pending = list(destinations)
        if not destinations:
            self._add_alternate(exchange, pending)
        while pending:
            dest = pending.pop()
            if isinstance(dest, Exchange):
                if dest not in seen:
                    seen.add(dest)
                    routed = dest.route(message)
                    if routed:
                        pending.extend(routed)
                    elif dest.alternate is not None:
                        self._add_alternate(dest, pending)
            else:
                queues[dest] = None
        return queues

    def _add_alternate(self, exchange: Exchange, pending: list) -> None:
        alternate = self.exchanges.get(exchange.alternate) if exchange.alternate is not None else None
        if alternate is not None:
            pending.append(alternate)
