"""Admin's messages: publish and get as a client would."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import AMQPError
from ..message import Message
from ..properties import properties_from_dict

if TYPE_CHECKING:  # pragma: no cover
    from ..broker import Broker

from .base import AdminError, _json, _refused, _set_properties


class MessagesAdmin:
    """Admin's messages: publish and get as a client would."""

    broker: "Broker"

    # -- messages ---------------------------------------------------------------------------------

    def publish(self, vhost: str, exchange: str, routing_key: str, payload: bytes,
                properties: dict | None = None, *, user: str | None = None) -> bool:
        """Publish a message as a client would; True when it was routed to at least one queue.
        ``user`` needs write on the exchange (checked before it is looked up, as on AMQP) and
        its topic permission on the routing key.

        Counted as RabbitMQ's management API publishes: on a confirm-mode channel with
        mandatory set, so an unroutable message counts as returned."""
        v = self._vhost(vhost)
        access = self._access(user, v)
        # RabbitMQ's publish reports its channel's errors as a bad request, with the reply code.
        try:
            if access is not None:
                access.write("exchange", exchange)
        except AMQPError as exc:
            raise _refused(exc, "bad_request", code=True) from None
        target = v.exchanges.get(exchange)
        if target is None:
            raise AdminError("bad_request", f"404 NOT_FOUND - no exchange '{exchange}' in vhost '{vhost}'")
        if target.internal:
            raise AdminError("bad_request", f"403 ACCESS_REFUSED - cannot publish to internal "
                                            f"exchange '{exchange}' in vhost '{vhost}'")
        if access is not None and not access.topic_free(exchange):
            try:
                access.check_topic(True, target, routing_key)
            except AMQPError as exc:
                raise _refused(exc, "bad_request", code=True) from None
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
                     truncate: int | None = None, reject: bool = False,
                     user: str | None = None) -> list[dict]:
        """Take up to ``count`` ready messages as basic.get would and put them back (flagged
        redelivered) when ``requeue``, else drop them: as acked, or as rejected when ``reject``
        (then they are dead-lettered where the queue says so, as basic.reject would). ``user``
        needs read on the queue, checked before it is looked up, as on AMQP."""
        v = self._vhost(vhost)
        access = self._access(user, v)
        if access is not None:
            try:
                access.read("queue", queue)
            except AMQPError as exc:
                raise _refused(exc) from None
        q = v.queues.get(queue)
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

    def aliveness_test(self, vhost: str, *, user: str | None = None) -> bool:
        """RabbitMQ's aliveness test: declare the queue ``aliveness-test`` (left in place, as
        RabbitMQ leaves it), publish a message to it through the default exchange and take it
        back; whether it came back. ``user`` needs configure and read on the queue and write on
        the default exchange; a refusal is RabbitMQ's channel text, not "Access refused."."""
        v = self._vhost(vhost)
        access = self._access(user, v)
        queue = "aliveness-test"
        try:
            v.declare_queue(None, queue, durable=False, access=access)
            if access is not None:
                access.write("exchange", "")
                access.read("queue", queue)
        except AMQPError as exc:
            # RabbitMQ's words: a refusal's text alone, any other error (a queue limit, say)
            # with its code in front.
            raise (_refused(exc) if exc.reply_code == 403 else _refused(exc, "bad_request", code=True)) from None
        self.publish(vhost, "", queue, b"test_message")
        messages = self.get_messages(vhost, queue, 1, requeue=False)
        return bool(messages) and messages[0]["body"] == b"test_message"

