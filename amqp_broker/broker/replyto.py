"""Direct reply-to (RabbitMQ's ``amq.rabbitmq.reply-to``): RPC replies without a reply queue.

A client consumes (no_ack=true) from the pseudo-queue ``amq.rabbitmq.reply-to`` without declaring
it; when it then publishes with ``reply_to = "amq.rabbitmq.reply-to"`` on that channel, the broker
rewrites the property to ``amq.rabbitmq.reply-to.<suffix>``, a name that identifies the channel's
reply consumer. A publish to the default exchange with that name as routing key is handed straight
to the consumer: no queue, no ack, no redelivery. Everything here follows RabbitMQ 3.10's
rabbit_channel (reply_consumer, maybe_set_fast_reply_to, deliver_reply) and rabbit_exchange:route,
as checked against a RabbitMQ 3.10.8 (tests/integration/test_extensions_consumers.py):

- The delivery does not count as routed: a mandatory publish is also returned with 312 NO_ROUTE
  (the RabbitMQ docs say so too), and an unknown or stale name is silently dropped unless mandatory.
- Only the default exchange delivers to reply names; other exchanges route them as ordinary keys.
- A reply's basic.deliver carries the channel's *next* delivery tag without consuming it (it is
  never acked), so the following ordinary delivery gets the same tag.
- A reply to the publishing channel itself is written after the publish's return and confirm.
- queue.declare of ``amq.rabbitmq.reply-to`` (or of a live full name), passive or not, answers
  declare-ok with 0 messages and 1 consumer; any other name under that prefix is 404.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING

from ..errors import ConnectionLevelError, NOT_ALLOWED, precondition_failed
from .queue import no_queue

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel
    from .message import Message

#: The pseudo-queue clients consume from and name in reply_to.
REPLY_QUEUE = "amq.rabbitmq.reply-to"
#: Routing keys of this form are reply names (rabbit_exchange:virtual_reply_queue/1).
REPLY_PREFIX = REPLY_QUEUE + "."


class ReplyConsumer:
    """A channel's direct reply-to consumer (RabbitMQ keeps at most one per channel)."""

    __slots__ = ("tag", "channel", "suffix")

    def __init__(self, tag: str, channel: "Channel", suffix: str):
        self.tag = tag
        self.channel = channel
        self.suffix = suffix

    @property
    def name(self) -> str:
        """The full reply name publishers route to: ``amq.rabbitmq.reply-to.<suffix>``."""
        return REPLY_PREFIX + self.suffix


def _new_suffix() -> str:
    # Same shape as RabbitMQ 3.10's (base64 channel id "." base64 16-byte key), unguessable: the
    # name is a capability, anyone who knows it can reply.
    channel_id = base64.b64encode(os.urandom(30)).decode("ascii")
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    return f"{channel_id}.{key}"


class DirectReplyTo:
    """The live reply consumers of one broker, by reply-name suffix.

    One registry serves every vhost of a broker: RabbitMQ's reply names identify a channel process,
    not a vhost, so a reply published in another vhost still arrives.
    """

    def __init__(self) -> None:
        # By full reply name, so that a publish tests a routing key with one dict lookup.
        self.consumers: dict[str, ReplyConsumer] = {}

    def register(self, channel: "Channel", tag: str) -> ReplyConsumer:
        """A new reply consumer for ``channel``."""
        consumer = ReplyConsumer(tag, channel, _new_suffix())
        while consumer.name in self.consumers:  # pragma: no cover - 2**272 names
            consumer.suffix = _new_suffix()
        self.consumers[consumer.name] = consumer
        return consumer

    def unregister(self, consumer: ReplyConsumer) -> None:
        """The consumer was cancelled or its channel closed; its name goes stale."""
        if self.consumers.get(consumer.name) is consumer:
            del self.consumers[consumer.name]

    def lookup(self, name: str) -> ReplyConsumer | None:
        """The live consumer a full reply name (``amq.rabbitmq.reply-to.<suffix>``) denotes."""
        return self.consumers.get(name)

    def exists(self, name: str) -> bool:
        """queue.declare's test: the bare pseudo-queue always exists, a full name while live."""
        return name == REPLY_QUEUE or self.lookup(name) is not None


# -- the channel-side operations (called by broker.channel.Channel) -------------------------------


def consume(channel: "Channel", consumer_tag: str, no_ack: bool, generate_tag) -> str:
    """basic.consume on ``amq.rabbitmq.reply-to``, with RabbitMQ's checks in its order."""
    if consumer_tag and consumer_tag in channel.consumers:
        raise ConnectionLevelError(NOT_ALLOWED, f"attempt to reuse consumer tag '{consumer_tag}'")
    if not no_ack:
        raise precondition_failed("reply consumer cannot acknowledge")
    if channel.reply_consumer is not None:
        raise precondition_failed("reply consumer already set")
    tag = consumer_tag or generate_tag()
    channel.reply_consumer = channel.vhost.replies.register(channel, tag)
    return tag


def publish(channel: "Channel", exchange_name: str, routing_key: str, mandatory: bool, message: "Message") -> None:
    """Direct reply-to's one door into a publish (Channel.basic_publish sends a message here when
    its properties may ask for a direct reply, or when it is a reply to a live reply consumer).

    The reply_to property is rewritten first (rabbit_channel:maybe_set_fast_reply_to, before the
    user_id check); the message is then published as any other: a reply, routed to no queue,
    is returned if mandatory and confirmed. Only then is it handed to the reply consumer: RabbitMQ
    hands it to the consumer's channel process, which runs after the publishing one (always so
    for a reply to itself). A transactional reply is handed over at once, uncommitted, since
    RabbitMQ hands it over while routing."""
    if message.direct_reply_hint:
        message = _rewrite_reply_to(channel, message)
    consumer = None if exchange_name else channel.vhost.replies.lookup(routing_key)
    if consumer is None:
        channel.basic_publish(exchange_name, routing_key, mandatory, False, message)
        return
    channel.replying = True  # the publish below must not come back through this door
    try:
        channel.basic_publish(exchange_name, routing_key, mandatory, False, message)
    finally:
        channel.replying = False
    if channel.tx is None:
        channel.sink.flush_confirms()
    consumer.channel.deliver_reply(consumer, message)


def _rewrite_reply_to(channel: "Channel", message: "Message") -> "Message":
    """A publish with ``reply_to = "amq.rabbitmq.reply-to"`` gets this channel's reply name
    (406 when the channel has no reply consumer); other messages are returned unchanged. Either
    way the result no longer asks for a direct reply."""
    properties = message.properties()
    if properties.get("reply_to") != REPLY_QUEUE:
        message.direct_reply_hint = False  # the hint was wrong: nothing to rewrite
        return message
    consumer = channel.reply_consumer
    if consumer is None:
        raise precondition_failed("fast reply consumer does not exist")
    properties["reply_to"] = consumer.name
    return message.with_properties(properties)


def declare(channel: "Channel", name: str) -> None:
    """queue.declare of a name under ``amq.rabbitmq.reply-to``: fine when it exists, else 404."""
    if not channel.vhost.replies.exists(name):
        raise no_queue(name, channel.vhost.name)
