"""Messages and their per-queue entries.

A :class:`Message` is shared by every queue it was routed to; the publisher's content-header
properties are kept as the undecoded wire bytes (``properties_raw``) and forwarded as they are in
every delivery, as RabbitMQ does (rabbit_command_assembler keeps them undecoded). Only the few fields
the broker acts on are peeked when the message is built; the headers table is decoded on first use
and the rest only when a message is rewritten (:mod:`.properties`).
"""

from __future__ import annotations

from typing import Any, Final

from .properties import peek_headers, peek_properties, properties_from_dict, properties_to_dict

from .fields import TypedTable

_UNDECODED: Final[Any] = object()


class Message:
    """One published message: routing data, raw properties, body and the fields the broker needs."""

    __slots__ = (
        "exchange",
        "routing_key",
        "properties_raw",
        "body",
        "delivery_mode",
        "priority",
        "expiration",
        "user_id",
        "direct_reply_hint",
        "_headers",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        properties_raw: bytes,
        body: bytes,
        delivery_mode: int = 0,
        priority: int | None = None,
        expiration: str | None = None,
        headers: Any = _UNDECODED,
        user_id: str | None = None,
    ):
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties_raw = properties_raw
        self.body = body
        self.delivery_mode = delivery_mode
        self.priority = priority
        self.expiration = expiration
        self._headers = headers
        # Set only when the publisher set the property: RabbitMQ validates it against the login.
        self.user_id = user_id
        # Truthy when reply_to may be direct reply-to's "amq.rabbitmq.reply-to": set by the protocol
        # layer from the raw properties without decoding them (a publish pays one byte test), so
        # it may be wrong the other way only; replyto.publish decodes to be sure.
        self.direct_reply_hint: int = False

    @property
    def headers(self) -> dict | None:
        """The ``headers`` property, decoded on first use."""
        if self._headers is _UNDECODED:
            self._headers = peek_headers(self.properties_raw)
        return self._headers

    @classmethod
    def from_stored(cls, exchange: str, routing_key: str, properties_raw: bytes, body: bytes) -> "Message":
        """Rebuild a message read back from the store, peeking its properties again."""
        delivery_mode, priority, expiration = peek_properties(properties_raw)
        return cls(exchange, routing_key, properties_raw, body, delivery_mode, priority, expiration)

    def properties(self) -> dict:
        """Every set property by its AMQP name (``content_type``, ``headers``, ...), decoded."""
        return properties_to_dict(self.properties_raw)

    def with_properties(self, properties: dict, exchange: str | None = None,
                        routing_key: str | None = None) -> "Message":
        """A copy of this message with other properties (and optionally a new exchange/key)."""
        raw = properties_from_dict(properties)
        return Message(
            self.exchange if exchange is None else exchange,
            self.routing_key if routing_key is None else routing_key,
            raw,
            self.body,
            properties.get("delivery_mode") or 0,
            properties.get("priority"),
            properties.get("expiration"),
            properties.get("headers"),
            properties.get("user_id"),
        )

    def with_header(self, key: str, kind: str, value: Any) -> "Message":
        """A copy with header ``key`` set, as rabbit_basic:add_header/4 does for the headers a
        queue adds (a quorum queue's x-delivery-count, a stream's x-stream-offset): the table
        comes back sorted by key, and without cluster_id, as RabbitMQ 3.10 delivers them."""
        properties = self.properties()
        properties.pop("cluster_id", None)
        headers = properties.get("headers")
        headers = headers.copy() if isinstance(headers, TypedTable) else TypedTable()
        headers.set(key, kind, value)
        properties["headers"] = headers.sorted()
        return self.with_properties(properties)

    @property
    def persistent(self) -> bool:
        """True for delivery_mode 2 (AMQP 0-9-1 basic.properties)."""
        return self.delivery_mode == 2

    @property
    def body_size(self) -> int:
        """Body length in bytes."""
        return len(self.body)


class QueueEntry:
    """A message's place in one queue: its sequence number, redelivery flag and current holder.

    The same object serves as the unacked record while a consumer holds it, so a delivery costs no
    extra allocation. ``seq`` orders entries so that a requeued message goes back to its original
    position (RabbitMQ 3.x classic queues do the same).
    """

    __slots__ = (
        "message", "queue", "seq", "redelivered", "consumer", "delivery_tag", "stored",
        "expires", "delivery_count",
    )

    def __init__(self, message: Message, queue: Any, seq: int):
        self.message = message
        self.queue = queue
        self.seq = seq
        self.redelivered = False
        self.consumer: Any = None
        self.delivery_tag = 0
        # True while a copy is in the store: leaving the queue must then delete it there too.
        self.stored = False
        # Deadline (Timers.clock seconds) after which it is dead (message TTL), or None.
        self.expires: float | None = None
        # Times it went back to a quorum queue (x-delivery-count, x-delivery-limit).
        self.delivery_count = 0

    def __lt__(self, other: "QueueEntry") -> bool:
        return self.seq < other.seq
