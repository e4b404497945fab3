"""The one test double of the connection side of a channel (broker/sink.py's DeliverySink).

The core's unit tests drive Broker/Session/Channel with plain calls and hand each channel a
:class:`SinkDouble` where the protocol layer would hand its ChannelState. It implements every
method of the protocol and records each call in ``events``, in order, so a test can assert
exactly what the core sent.
"""

from __future__ import annotations

from typing import Callable

from amqp_broker.errors import AMQPError

UNLIMITED = 1 << 30


class SinkDouble:
    """Records everything the core asks of its sink.

    ``blocked`` makes the sink report a backed-up output (no headroom, not writable);
    ``capacity``, when set, is the body bytes it takes before it reports itself full (each
    delivery spends its body's length). ``on_fail`` runs after a ``fail`` is recorded, for a test
    that must act as the protocol layer's channel close does.
    """

    def __init__(self, capacity: int | None = None, on_fail: Callable[[AMQPError], None] | None = None):
        self.events: list[tuple] = []
        self.blocked = False
        self.capacity = capacity
        self.on_fail = on_fail

    # -- DeliverySink ------------------------------------------------------------------------------

    def deliver(self, consumer_tag, delivery_tag, redelivered, message):
        self.events.append(("deliver", consumer_tag, delivery_tag, redelivered, message.body))
        if self.capacity is not None:
            self.capacity -= len(message.body)

    def basic_return(self, reply_code, reply_text, message):
        self.events.append(("return", reply_code, reply_text, message.exchange, message.routing_key, message.body))

    def confirm(self, sequence, ack):
        self.events.append(("confirm", sequence, ack))

    def flush_confirms(self):
        self.events.append(("flush_confirms",))

    def cancel_notify(self, consumer_tag):
        self.events.append(("cancel", consumer_tag))

    def writable(self):
        return self.headroom() > 0

    def headroom(self):
        if self.blocked:
            return 0
        return UNLIMITED if self.capacity is None else self.capacity

    def fail(self, error):
        self.events.append(("fail", error.reply_code, error.reply_text))
        if self.on_fail is not None:
            self.on_fail(error)

    # -- views of the record -----------------------------------------------------------------------

    @property
    def deliveries(self) -> list[tuple]:
        """(consumer_tag, delivery_tag, redelivered, body) per basic.deliver."""
        return [e[1:] for e in self.events if e[0] == "deliver"]

    @property
    def bodies(self) -> list[bytes]:
        return [e[4] for e in self.events if e[0] == "deliver"]

    @property
    def delivered(self) -> list[tuple]:
        """(body, redelivered, delivery_tag) like the interop reference prints them."""
        return [(e[4].decode(), e[3], e[2]) for e in self.events if e[0] == "deliver"]

    @property
    def failures(self) -> list[str]:
        """The reply texts the channel was closed with, in order."""
        return [e[2] for e in self.events if e[0] == "fail"]

    def clear(self) -> None:
        self.events.clear()

