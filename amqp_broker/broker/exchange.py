"""Exchange types: one small class each (as RabbitMQ and LavinMQ do), sharing binding bookkeeping.

A binding is identified by (destination, routing key, arguments) as in RabbitMQ, so the same queue
may be bound twice with different arguments; routing still yields each destination once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final, Iterable

from ..compiled import mypyc_attr
from .headers import parse_binding_arguments
from .message import Message
from .topic import TopicTrie

if TYPE_CHECKING:  # pragma: no cover
    from .vhost import VHost

_EMPTY: Final[dict] = {}


def freeze(value: Any) -> Any:
    """A hashable stand-in for a field-table value, so binding arguments can key a dict."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, bytearray):
        return bytes(value)
    return value


# Subclassed by interpreted modules (consistent_hash.py, delayed.py): a compiled build must allow it.
@mypyc_attr(allow_interpreted_subclasses=True)
class Exchange:
    """Common state and binding bookkeeping; subclasses index bindings for routing."""

    type_name: ClassVar[str] = ""

    def __init__(
        self,
        vhost: "VHost",
        name: str,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict | None = None,
    ):
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments or {}
        # alternate-exchange (a RabbitMQ extension): where a message this exchange cannot route goes
        # (by name, looked up at routing time: it may be declared later); checked once here so the
        # hot path tests one attribute.
        alternate = self.arguments.get("alternate-exchange")
        if isinstance(alternate, bytes):
            alternate = alternate.decode("utf-8", "replace")
        self.alternate: str | None = alternate if isinstance(alternate, str) else None
        # (destination, routing_key, frozen arguments) -> arguments, in binding order.
        self.bindings: dict[tuple, dict] = {}
        # destination -> its keys in ``bindings``: what one destination's bindings are, without a
        # walk over all of them (an exchange can hold 100,000 bindings, one per queue).
        self.by_destination: dict[Any, dict[tuple, None]] = {}

    def describe(self) -> str:
        """``exchange 'name' in vhost '/'`` as RabbitMQ names exchanges in reply texts."""
        return f"exchange '{self.name}' in vhost '{self.vhost.name}'"

    def bind(self, destination: Any, routing_key: str, arguments: dict) -> bool:
        """Add a binding; returns False when the identical binding already exists."""
        key = (destination, routing_key, freeze(arguments))
        if key in self.bindings:
            return False
        self._index(destination, routing_key, arguments)
        self.bindings[key] = arguments
        self.by_destination.setdefault(destination, {})[key] = None
        return True

    def unbind(self, destination: Any, routing_key: str, arguments: dict) -> bool:
        """Remove a binding; returns False when it did not exist."""
        key = (destination, routing_key, freeze(arguments))
        if key not in self.bindings:
            return False
        del self.bindings[key]
        keys = self.by_destination[destination]
        del keys[key]
        if not keys:
            del self.by_destination[destination]
        self._unindex(destination, routing_key, arguments)
        return True

    def has_binding(self, destination: Any, routing_key: str, arguments: dict) -> bool:
        """Whether exactly this binding exists."""
        return (destination, routing_key, freeze(arguments)) in self.bindings

    def unbind_destination(self, destination: Any) -> None:
        """Remove every binding to ``destination`` (it is being deleted)."""
        for key in self.by_destination.pop(destination, ()):
            args = self.bindings.pop(key)
            self._unindex(destination, key[1], args)

    def bindings_to(self, destination: Any) -> list[tuple[str, dict]]:
        """(routing key, arguments) of every binding to ``destination``, in binding order."""
        bindings = self.bindings
        return [(key[1], bindings[key]) for key in self.by_destination.get(destination, ())]

    def clear_bindings(self) -> None:
        """Drop every binding (the exchange is being deleted; its destinations are told apart)."""
        self.bindings.clear()
        self.by_destination.clear()

    def validate_binding(self, routing_key: str, arguments: dict) -> None:
        """Raise ValueError for binding arguments this type rejects (headers' x-match)."""

    # Hooks for the plugin exchange types (consistent_hash.py, delayed.py); none is on the
    # routing path.

    @classmethod
    def validate_declare(cls, arguments: dict) -> None:
        """Raise the AMQP error RabbitMQ's type module gives for a new exchange's arguments
        (rabbit_exchange_type:validate/1)."""

    def recovered(self) -> None:
        """Called once the exchange and its bindings were rebuilt from the store."""

    def deleted(self) -> None:
        """Called when the exchange is deleted (after its bindings are gone)."""

    def info(self) -> dict:
        """Type-specific items of the management API's exchange object (rabbit_exchange:info/1
        appends the type module's info/1)."""
        return _EMPTY

    def route(self, message: Message) -> Iterable[Any]:
        """Destinations (queues or exchanges) for ``message``; callers must not mutate the result."""
        raise NotImplementedError

    def _index(self, destination: Any, routing_key: str, arguments: dict) -> None:
        raise NotImplementedError

    def _unindex(self, destination: Any, routing_key: str, arguments: dict) -> None:
        raise NotImplementedError


def _count_up(table: dict, destination: Any) -> None:
    table[destination] = table.get(destination, 0) + 1


def _count_down(table: dict, destination: Any) -> None:
    count = table.get(destination, 0) - 1
    if count > 0:
        table[destination] = count
    else:
        table.pop(destination, None)


class DirectExchange(Exchange):
    """Routes on exact routing-key equality: one dict lookup per message."""

    type_name: ClassVar[str] = "direct"

    # The parameters spelled out: mypyc mis-compiles super().__init__(*args, **kwargs).
    def __init__(self, vhost: "VHost", name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None):
        super().__init__(vhost, name, durable, auto_delete, internal, arguments)
        # routing key -> {destination: number of bindings}; the inner dict doubles as the result set.
        self._table: dict[str, dict[Any, int]] = {}

    def route(self, message: Message) -> Iterable[Any]:
        return self._table.get(message.routing_key, _EMPTY)

    def _index(self, destination: Any, routing_key: str, arguments: dict) -> None:
        _count_up(self._table.setdefault(routing_key, {}), destination)

    def _unindex(self, destination: Any, routing_key: str, arguments: dict) -> None:
        inner = self._table.get(routing_key)
        if inner is not None:
            _count_down(inner, destination)
            if not inner:
                del self._table[routing_key]


class FanoutExchange(Exchange):
    """Routes to every bound destination, once each."""

    type_name: ClassVar[str] = "fanout"

    # The parameters spelled out: mypyc mis-compiles super().__init__(*args, **kwargs).
    def __init__(self, vhost: "VHost", name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None):
        super().__init__(vhost, name, durable, auto_delete, internal, arguments)
        self._destinations: dict[Any, int] = {}

    def route(self, message: Message) -> Iterable[Any]:
        return self._destinations

    def _index(self, destination: Any, routing_key: str, arguments: dict) -> None:
        _count_up(self._destinations, destination)

    def _unindex(self, destination: Any, routing_key: str, arguments: dict) -> None:
        _count_down(self._destinations, destination)


class TopicExchange(Exchange):
    """Routes on dotted patterns with ``*`` and ``#`` through a trie with a per-key cache."""

    type_name: ClassVar[str] = "topic"

    # The parameters spelled out: mypyc mis-compiles super().__init__(*args, **kwargs).
    def __init__(self, vhost: "VHost", name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None):
        super().__init__(vhost, name, durable, auto_delete, internal, arguments)
        self._trie = TopicTrie()
        self._counts: dict[tuple[str, Any], int] = {}

    def route(self, message: Message) -> Iterable[Any]:
        return self._trie.match(message.routing_key)

    def _index(self, destination: Any, routing_key: str, arguments: dict) -> None:
        key = (routing_key, destination)
        count = self._counts.get(key, 0)
        self._counts[key] = count + 1
        if not count:
            self._trie.add(routing_key, destination)

    def _unindex(self, destination: Any, routing_key: str, arguments: dict) -> None:
        key = (routing_key, destination)
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)
            self._trie.remove(routing_key, destination)


class HeadersExchange(Exchange):
    """Routes on the message's headers table against each binding's arguments (x-match)."""

    type_name: ClassVar[str] = "headers"

    # The parameters spelled out: mypyc mis-compiles super().__init__(*args, **kwargs).
    def __init__(self, vhost: "VHost", name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None):
        super().__init__(vhost, name, durable, auto_delete, internal, arguments)
        self._matchers: dict[tuple, tuple[Any, Any]] = {}

    def validate_binding(self, routing_key: str, arguments: dict) -> None:
        parse_binding_arguments(arguments)

    def route(self, message: Message) -> Iterable[Any]:
        if not self._matchers:
            return _EMPTY
        headers = message.headers
        return {dest for matcher, dest in self._matchers.values() if matcher.matches(headers)}

    def _index(self, destination: Any, routing_key: str, arguments: dict) -> None:
        key = (destination, routing_key, freeze(arguments))
        self._matchers[key] = (parse_binding_arguments(arguments), destination)

    def _unindex(self, destination: Any, routing_key: str, arguments: dict) -> None:
        self._matchers.pop((destination, routing_key, freeze(arguments)), None)


class DefaultExchange(DirectExchange):
    """The nameless exchange: every queue is implicitly bound by its own name (spec 3.1.3.1)."""

    def route(self, message: Message) -> Iterable[Any]:
        queue = self.vhost.queues.get(message.routing_key)
        return (queue,) if queue is not None else ()


EXCHANGE_TYPES: Final[dict[str, type[Exchange]]] = {
    cls.type_name: cls for cls in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange)
}


def _register_plugin_types() -> None:
    # The types RabbitMQ's plugins add, always on here; imported late as they build on the above.
    from .consistent_hash import ConsistentHashExchange
    from .delayed import DelayedExchange

    for cls in (ConsistentHashExchange, DelayedExchange):
        EXCHANGE_TYPES[cls.type_name] = cls


_register_plugin_types()
