"""The ``x-delayed-message`` exchange, as the rabbitmq-delayed-message-exchange plugin (3.10.x).

The exchange routes like the type its ``x-delayed-type`` argument names (an inner exchange of that
type holds the bindings), except that a message with an ``x-delay`` header of 1 .. 2^32-1 ms is
held back and routed when the delay ends, with ``x-delay`` rewritten to minus the delay (the
plugin's swap_delay_header, so it is not delayed again further on). Meanwhile publishing routes it
nowhere, exactly as the plugin's route/2 answers ``[]``: a mandatory publish gets basic.return
NO_ROUTE at once, and an alternate exchange receives it at once too.

Held messages wait in one heap per exchange with one broker timer armed for the earliest (the
plugin's single gen_server timer): nothing per message but a heap entry. A persistent message held
by a durable exchange is written to the store under the exchange's own store id, its deadline (wall
clock, epoch ms, like the plugin's) prefixed to the routing key, so it survives a restart or a
crash; its delay then runs on from the wall clock.
"""

from __future__ import annotations

import heapq
import itertools
import re
import time
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import COMMAND_INVALID, ConnectionLevelError, precondition_failed
from .exchange import _EMPTY, EXCHANGE_TYPES, Exchange
from .message import Message

if TYPE_CHECKING:  # pragma: no cover
    from .persistence import Persistence
    from .timers import Timer

# erlang:start_timer/3's limit, which the plugin applies (?ERL_MAX_T).
MAX_DELAY_MS = 4294967295

# binary_to_integer/1's syntax.
_INTEGER = re.compile(r"[+-]?[0-9]+\Z")


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value


def _delayed_type(arguments: dict) -> str | None:
    value = arguments.get("x-delayed-type")
    return _text(value) if isinstance(value, (str, bytes, bytearray)) else None


def message_delay(message: Message) -> int | None:
    """The ``x-delay`` header in ms as the plugin reads it (get_delay/1): integers as they are,
    strings of digits parsed, floats truncated; None when absent or of another type (where the
    plugin's binary_to_integer or trunc fails: a word, a decimal)."""
    headers = message.headers
    if not headers:
        return None
    value = headers.get("x-delay")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (str, bytes)):
        text = _text(value)
        return int(text) if _INTEGER.match(text) else None
    if isinstance(value, float):
        return int(value)
    return None


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class DelayedExchange(Exchange):
    """Holds messages with a positive ``x-delay``; routes the rest, and the held ones when due, as
    its ``x-delayed-type``."""

    type_name = "x-delayed-message"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        inner_class = EXCHANGE_TYPES.get(_delayed_type(self.arguments) or "")
        if inner_class is DelayedExchange:
            inner_class = None
        # The exchange of the delayed type that indexes the bindings and routes (None only for
        # the throw-away instances definitions.py builds to check a binding).
        self.inner: Exchange | None = (
            inner_class(self.vhost, self.name, self.durable, self.auto_delete, self.internal,
                        self.arguments)
            if inner_class is not None else None
        )
        # (monotonic deadline, sequence, wall-clock deadline in ms, message): the held messages.
        self._held: list[tuple[float, int, int, Message]] = []
        self._timer: "Timer | None" = None
        self._sequence = itertools.count(1)
        # Where held messages are written (a durable exchange of a broker with a store).
        self.persistence: "Persistence | None" = None
        self.store_id: int | None = None

    @classmethod
    def validate_declare(cls, arguments: dict) -> None:
        """rabbit_exchange_type_delayed_message:validate/1, then the delayed type's own."""
        value = arguments.get("x-delayed-type")
        if isinstance(value, (str, bytes, bytearray)):
            type_name = _text(value)
            if type_name == cls.type_name:
                raise precondition_failed(
                    "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'")
            inner_class = EXCHANGE_TYPES.get(type_name)
            if inner_class is None:  # rabbit_exchange:check_type/1
                what = "invalid" if not type_name else "unknown"
                raise ConnectionLevelError(COMMAND_INVALID, f"{what} exchange type '{type_name}'")
            inner_class.validate_declare(arguments)
            return
        raise precondition_failed("Invalid argument, 'x-delayed-type' must be an existing exchange type")

    # -- bindings: the delayed type's ---------------------------------------------------------------

    def validate_binding(self, routing_key: str, arguments: dict) -> None:
        if self.inner is not None:
            self.inner.validate_binding(routing_key, arguments)

    def _index(self, destination: Any, routing_key: str, arguments: dict) -> None:
        if self.inner is not None:
            self.inner._index(destination, routing_key, arguments)

    def _unindex(self, destination: Any, routing_key: str, arguments: dict) -> None:
        if self.inner is not None:
            self.inner._unindex(destination, routing_key, arguments)

    def clear_bindings(self) -> None:
        super().clear_bindings()
        if self.inner is not None:
            self.inner.clear_bindings()

    def recovered(self) -> None:
        if self.inner is not None:
            self.inner.bindings = self.bindings
            self.inner.recovered()

    # -- routing ----------------------------------------------------------------------------------

    def route(self, message: Message) -> Iterable[Any]:
        delay = message_delay(message)
        if delay is not None and 0 < delay <= MAX_DELAY_MS:
            self._hold(message, delay)
            return _EMPTY
        return self.inner.route(message) if self.inner is not None else _EMPTY

    def _hold(self, message: Message, delay_ms: int) -> None:
        timers = self.vhost.timers
        wall_deadline = _wall_ms() + delay_ms
        self._push(timers.clock() + delay_ms / 1000, wall_deadline, message, next(self._sequence))

    def _push(self, deadline: float, wall_deadline: int, message: Message, sequence: int,
              store: bool = True) -> None:
        heapq.heappush(self._held, (deadline, sequence, wall_deadline, message))
        if store and self.persistence is not None and message.delivery_mode == 2:
            self.persistence.store.add_message(
                self.store_id, sequence, message.exchange, f"{wall_deadline}:{message.routing_key}",
                message.properties_raw, message.body, True,
            )
        timer = self._timer
        if timer is None or deadline < timer.deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.vhost.timers.call_at(deadline, self._release_due)

    def _release_due(self) -> None:
        self._timer = None
        held = self._held
        timers = self.vhost.timers
        now = timers.clock()
        while held and held[0][0] <= now:
            _, sequence, _, message = heapq.heappop(held)
            if self.persistence is not None and message.delivery_mode == 2:
                self.persistence.store.remove_message(self.store_id, sequence)
            self._deliver(message)
        if held:
            self._timer = timers.call_at(held[0][0], self._release_due)

    def _deliver(self, message: Message) -> None:
        """Route a message whose delay ended (rabbit_delayed_message:route/3): through this
        exchange again, with x-delay negated, to every queue it reaches now."""
        delay = message_delay(message)
        if delay is not None:
            properties = message.properties()
            headers = properties["headers"]
            headers.set("x-delay", "I", -delay)  # signedint, in place (set_table_value/4)
            message = message.with_properties(properties)
        for queue in self.vhost.route(self, message):
            queue.publish(message)

    @property
    def messages_delayed(self) -> int:
        """How many messages this exchange holds."""
        return len(self._held)

    def info(self) -> dict:
        return {"messages_delayed": len(self._held)}

    # -- persistence ------------------------------------------------------------------------------

    def restore_held(self, stored: Iterable[Any]) -> int:
        """Hold again the messages the store kept for this exchange; returns how many."""
        count = last = 0
        clock = self.vhost.timers.clock()
        now_ms = _wall_ms()
        for row in stored:
            deadline_text, _, routing_key = row.routing_key.partition(":")
            wall_deadline = int(deadline_text)
            message = Message.from_stored(row.exchange, routing_key, row.properties, row.body)
            # The stored row stays, under its sequence number, until the message is released.
            self._push(clock + max(0, wall_deadline - now_ms) / 1000, wall_deadline, message,
                       row.seq, store=False)
            last = max(last, row.seq)
            count += 1
        self._sequence = itertools.count(last + 1)
        return count

    def deleted(self) -> None:
        """Drop the held messages (the plugin would route them later through whatever exchange
        then has this name; here they go with the exchange)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held.clear()
