"""One MQTT client connection as a sans-IO state machine, RabbitMQ 3.10's rabbitmq_mqtt semantics.

Bytes go in through :meth:`MqttConnection.receive`; packets for the client accumulate in
:attr:`MqttConnection.out`, and ``on_output`` is called when it stops being empty. The server
part (:mod:`amqp_broker.mqtt.server`) owns the socket and the clock.

The connection talks to the broker core exactly as an AMQP client's channels do: it opens a
:class:`~amqp_broker.broker.session.Session` and core channels, declares and binds queues,
consumes, publishes and acks, with the logged-in user's permissions checked by the core. It is
the :class:`~amqp_broker.broker.sink.DeliverySink` of those channels. The mapping is the
plugin's (rabbit_mqtt_processor):

- a QoS 0 subscription is a binding of the non-durable, auto-delete queue
  ``mqtt-subscription-<client id>qos0`` (consumed without acks); a QoS 1 (or 2, downgraded)
  subscription binds the durable queue ``mqtt-subscription-<client id>qos1``, auto-delete for a
  clean session, else with ``x-expires`` of 24 hours, consumed with acks (prefetch 10);
- a PUBLISH goes to the configured exchange (amq.topic) with the topic translated
  (:mod:`.topics`), delivery mode 1 for QoS 0 and 2 above, headers ``x-mqtt-publish-qos`` and
  ``x-mqtt-dup``; QoS 1 publishes go through a second, confirm-mode channel and are PUBACKed
  when the broker confirms them;
- a persistent session (clean session false) is the QoS 1 queue outliving the connection:
  "session present" means that queue exists, and connecting again consumes from it.
"""

from __future__ import annotations

import logging
import secrets
import struct
from typing import TYPE_CHECKING, Any, Callable

from ..broker.message import Message
from ..errors import AMQPError
from . import codec
from .codec import Connect, Publish, PubAck, Simple, Subscribe, Unsubscribe
from .topics import to_amqp, to_mqtt, to_mqtt_bytes

if TYPE_CHECKING:  # pragma: no cover
    from ..broker.broker import Broker
    from ..broker.channel import Channel
    from ..broker.session import Session

log = logging.getLogger("amqp_broker.mqtt")

#: rabbitmq_mqtt's defaults: prefetch of the QoS 1 consumer, x-expires of a persistent
#: session's queue (subscription_ttl), and how long a client may take to send CONNECT.
PREFETCH = 10
SUBSCRIPTION_TTL_MS = 86400000
LOGIN_TIMEOUT = 10.0
#: Bytes of output past which deliveries wait for the socket to drain.
OUTPUT_HIGH_WATER = 1 << 20

QUEUE_PREFIX = "mqtt-subscription-"
#: The store's record kind of a retained message, keyed (vhost, topic).
RETAINED_KIND = "mqtt_retained"


def subscription_queues(client_id: str) -> tuple[str, str]:
    """The names of a client's QoS 0 and QoS 1 subscription queues (rabbit_mqtt_util)."""
    base = f"{QUEUE_PREFIX}{client_id}qos"
    return base + "0", base + "1"


def _publish_properties(qos: int, dup: bool) -> bytes:
    """Raw AMQP properties of an MQTT publish: headers {x-mqtt-publish-qos: byte, x-mqtt-dup:
    bool} and delivery_mode, exactly as the plugin sets them (flags: headers 0x2000,
    delivery-mode 0x1000)."""
    table = (
        b"\x12x-mqtt-publish-qos" + b"b" + struct.pack(">b", qos)
        + b"\x0ax-mqtt-dup" + b"t" + (b"\x01" if dup else b"\x00")
    )
    return struct.pack(">HI", 0x3000, len(table)) + table + bytes((1 if qos == 0 else 2,))


#: (qos, dup) -> raw properties, and back: deliveries of MQTT-published messages need no decoding.
PUBLISH_PROPERTIES = {(qos, dup): _publish_properties(qos, dup) for qos in (0, 1) for dup in (False, True)}
_KNOWN_PROPERTIES = {raw: key for key, raw in PUBLISH_PROPERTIES.items()}


class Retained:
    __slots__ = ("qos", "payload")

    def __init__(self, qos: int, payload: bytes):
        self.qos = qos
        self.payload = payload


class MqttNode:
    """The MQTT state of one broker that outlives connections: the settings, the client ids
    connected (a second connection with the same id takes over), and the retained messages of
    every vhost (topic -> last retained message, matched exactly as in RabbitMQ 3.10)."""

    def __init__(self, broker: "Broker", vhost: str = "/", exchange: str = "amq.topic",
                 default_user: str = "guest", default_pass: str = "guest"):
        self.broker = broker
        self.vhost = vhost
        self.exchange = exchange
        # Credentials of a CONNECT without any (allow_anonymous); "" user: refuse those.
        self.default_user = default_user
        self.default_pass = default_pass
        self.clients: dict[str, MqttConnection] = {}
        self.retained: dict[str, dict[str, Retained]] = {}
        # The data directory's store, when there is one: retained messages outlive restarts, as
        # the plugin's default (disk) store keeps them.
        self.store: Any = None

    def attach_store(self, store: Any) -> None:
        """Keep retained messages in ``store`` from now on, starting with those it holds."""
        self.store = store
        for (vhost, topic), record in store.records(RETAINED_KIND):
            self.retained.setdefault(vhost, {})[topic] = Retained(record["qos"], record["payload"])

    def register(self, client_id: str, conn: "MqttConnection") -> None:
        """Make ``conn`` the connection of ``client_id``, closing the one that had it."""
        old = self.clients.get(client_id)
        self.clients[client_id] = conn
        if old is not None and old is not conn:
            log.warning("MQTT disconnecting client %s with duplicate id '%s'", old.peer, client_id)
            old.close("duplicate client id")

    def unregister(self, client_id: str, conn: "MqttConnection") -> None:
        if self.clients.get(client_id) is conn:
            del self.clients[client_id]

    def retain(self, vhost: str, topic: str, qos: int, payload: bytes) -> None:
        retained = self.retained.setdefault(vhost, {})
        if payload:
            retained[topic] = Retained(qos, payload)
            if self.store is not None:
                self.store.put(RETAINED_KIND, (vhost, topic), {"qos": qos, "payload": payload})
        elif retained.pop(topic, None) is not None and self.store is not None:
            self.store.delete(RETAINED_KIND, (vhost, topic))  # an empty message clears the topic

    def fetch_retained(self, vhost: str, topic: str) -> Retained | None:
        store = self.retained.get(vhost)
        return None if store is None else store.get(topic)


class MqttConnection:
    """The protocol state of one MQTT connection, and the sink of its core channels."""

    def __init__(self, node: MqttNode, peer: str, local: str = ""):
        self.node = node
        self.broker = node.broker
        self.peer = peer
        self.local = local
        self.parser = codec.Parser()
        self.out = bytearray()
        self.on_output: Callable[[], None] = lambda: None
        # Called when the connection is to end at once (another connection took its client id,
        # an operator closed it): the server drops the socket.
        self.on_close: Callable[[], None] = lambda: None
        # Set once nothing more is to be read: the socket closes after the output is flushed.
        self.finished = False
        self.close_reason = ""
        self.client_id: str | None = None
        self.keep_alive = 0
        self.protocol_level = 4
        self.clean_session = True
        self.will: codec.Will | None = None
        self.session: "Session | None" = None
        self.channel: "Channel | None" = None  # subscriptions and QoS 0 publishes
        self.publish_channel: "Channel | None" = None  # QoS 1 publishes, in confirm mode
        self.vhost_name = ""
        self.exchange = node.exchange
        self.consumer_tags: list[str | None] = [None, None]  # by subscription QoS
        self.subscriptions: dict[str, list[int]] = {}
        # Confirm sequence of a QoS 1 publish -> its packet id, until the broker confirms it.
        self.unacked_publishes: dict[int, int] = {}
        # Packet id of a QoS 1 delivery -> its delivery tag, until the client's PUBACK.
        self.awaiting_ack: dict[int, int] = {}
        self.message_id = 1
        # Delivery tags to ack once the delivery in progress is over (never from inside it).
        self.pending_acks: list[int] = []
        self.delivery_blocked = False
        # Store batch that must be committed before the output is sent (0: none): a CONNACK,
        # SUBACK or UNSUBACK after durable changes goes out once they are on disk, as an AMQP
        # declare-ok does.
        self.barrier = 0

    # -- input --------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Handle bytes from the client."""
        if self.finished:
            return
        try:
            packets = self.parser.feed(data)
        except codec.ProtocolError as exc:
            self._end(f"MQTT framing error: {exc}")
            return
        persistence = self.broker.persistence
        session = self.session
        if session is not None:
            # PUBACKs of one read only note the queues they made room on; those are dispatched
            # once after the read (as an AMQP connection does with a read of acks).
            session.owed_dispatch = {}
        try:
            self._handle_all(packets, persistence)
        finally:
            if session is not None:
                if session.owed_dispatch and not session.closed:
                    session.dispatch_owed()
                session.owed_dispatch = None
        self.service()

    def _handle_all(self, packets: list, persistence) -> None:
        for packet in packets:
            if self.finished:
                return
            writes = persistence.store.writes if persistence is not None else 0
            try:
                self._handle(packet)
                if persistence is not None and persistence.store.writes != writes and isinstance(
                        packet, (Connect, Subscribe, Unsubscribe)):
                    self.barrier = persistence.store.batch_id
            except AMQPError as exc:
                # What closes the plugin's internal AMQP channel closes the MQTT connection.
                self._end(exc.reply_text)
            except codec.ProtocolError as exc:
                self._end(str(exc))

    def _handle(self, packet: codec.Packet) -> None:
        if self.session is None:
            if not isinstance(packet, Connect):
                raise codec.ProtocolError("the first packet must be CONNECT")
            self._connect(packet)
        elif isinstance(packet, Publish):
            self._publish(packet)
        elif isinstance(packet, PubAck):
            tag = self.awaiting_ack.pop(packet.packet_id, None)
            if tag is not None:  # unknown ids (a retained delivery's, a bogus client's) are fine
                self.channel.basic_ack(tag, False)
        elif isinstance(packet, Subscribe):
            self._subscribe(packet)
        elif isinstance(packet, Unsubscribe):
            self._unsubscribe(packet)
        elif isinstance(packet, Simple):
            if packet.type == codec.PINGREQ:
                self._write(codec.write_pingresp)
            else:  # DISCONNECT: a clean end, without the will
                self.will = None
                self._end("client sent DISCONNECT")
        elif isinstance(packet, Connect):
            self._second_connect()

    # -- CONNECT ------------------------------------------------------------------------------

    def _connect(self, packet: Connect) -> None:
        client_id = packet.client_id
        if not client_id and not packet.clean_session:
            self._refuse(codec.REFUSED_IDENTIFIER, "an empty client id needs a clean session")
            return
        if not client_id:
            client_id = secrets.token_urlsafe(16)
        username, password = packet.username, packet.password
        if username is None and password is None:
            if not self.node.default_user:
                self._refuse(codec.REFUSED_BAD_CREDENTIALS, "no credentials provided")
                return
            username, password = self.node.default_user, self.node.default_pass
        elif username is None or password is None:
            self._refuse(codec.REFUSED_BAD_CREDENTIALS, "user name or password missing")
            return
        vhost_name = self.node.vhost
        if ":" in username:
            # "vhost:user", split at the last colon (a user name cannot hold one).
            vhost_name, _, username = username.rpartition(":")
        broker = self.broker
        if vhost_name not in broker.vhosts:
            self._refuse(codec.REFUSED_BAD_CREDENTIALS, f"virtual host '{vhost_name}' does not exist")
            return
        user = broker.authenticate(username, password)
        if user is None:
            self._refuse(codec.REFUSED_BAD_CREDENTIALS, f"authentication failed for user '{username}'")
            return
        if vhost_name not in user.vhosts:
            self._refuse(codec.REFUSED_NOT_AUTHORIZED, f"access to vhost '{vhost_name}' refused")
            return
        local_host = self.local.rpartition(":")[0] if self.local else None
        refusal = broker.loopback_refusal(username, local_host)
        if refusal is not None:
            self._refuse(codec.REFUSED_NOT_AUTHORIZED, refusal)
            return
        version = "3.1.1" if packet.protocol_level == 4 else "3.1.0"
        session = broker.open_session(
            user, vhost_name, {"product": "MQTT client", "client_id": client_id}, self.peer
        )
        if self.local:
            session.name = f"{self.peer} -> {self.local}"
        session.details = {
            "protocol": f"MQTT {version}", "local": self.local, "channel_max": 1, "frame_max": 0,
            "timeout": packet.keep_alive, "auth_mechanism": "none",
        }
        session.closer = self._closed_by_operator
        # The plugin's internal AMQP client hears of a subscription queue's deletion (basic.cancel)
        # and ends the MQTT connection; so does this one (see cancel_notify).
        session.consumer_cancel_notify = True
        self.session = session
        self.vhost_name = vhost_name
        self.client_id = client_id
        self.keep_alive = packet.keep_alive
        self.protocol_level = packet.protocol_level
        self.clean_session = packet.clean_session
        self.will = packet.will
        self.node.register(client_id, self)
        channel = self.channel = session.open_channel(1, self)
        channel.basic_qos(0, PREFETCH, False)
        qos1_queue = subscription_queues(client_id)[1]
        present = self._queue_exists(qos1_queue)
        start: list[str] = []
        if present and not packet.clean_session:
            start = self._ensure_queue(1)
        elif present:
            try:
                channel.queue_delete(qos1_queue, False, False)
            except AMQPError as exc:
                self._refuse(codec.REFUSED_SERVER_UNAVAILABLE, f"cannot start a clean session: {exc.reply_text}")
                return
        self._write(codec.write_connack, present and not packet.clean_session, codec.ACCEPTED)
        log.info("accepting MQTT connection (%s, client id: %s)", self.peer, client_id)
        self._start(start)

    def _second_connect(self) -> None:
        """A CONNECT on a connection already logged in: the plugin answers it again, after
        redoing the first CONNECT's session step with the first CONNECT's clean-session flag.
        For a clean session that deletes the QoS 1 queue, which ends this connection when it
        consumes from it (the consumer is cancelled)."""
        queue = subscription_queues(self.client_id)[1]
        present = self._queue_exists(queue)
        start: list[str] = []
        cancelled: list[str] = []
        if present and not self.clean_session:
            start = self._ensure_queue(1)
        elif present:
            _, cancelled = self.channel.queue_delete(queue, False, False)
        self._write(codec.write_connack, present and not self.clean_session, codec.ACCEPTED)
        if cancelled:
            self._end("subscription queue deleted")
        self._start(start)

    def _refuse(self, code: int, reason: str) -> None:
        log.error("MQTT login failed (%s): %s", self.peer, reason)
        self._write(codec.write_connack, False, code)
        self.will = None
        self._end(reason)

    def _queue_exists(self, name: str) -> bool:
        return name in self.session.vhost.queues

    # -- PUBLISH ------------------------------------------------------------------------------

    def _publish(self, packet: Publish) -> None:
        qos = 1 if packet.qos else 0  # QoS 2 is QoS 1 here, as in RabbitMQ
        self._amqp_publish(packet.topic, packet.payload, qos, packet.dup, packet.packet_id)
        if packet.retain:
            self.node.retain(self.vhost_name, to_mqtt(packet.topic), qos, packet.payload)

    def _amqp_publish(self, topic: str, payload: bytes, qos: int, dup: bool, packet_id: int | None) -> None:
        routing_key = to_amqp(topic)
        message = Message(
            self.exchange, routing_key, PUBLISH_PROPERTIES[(qos, dup)], payload, 1 if qos == 0 else 2
        )
        if qos and packet_id is not None:
            channel = self.publish_channel
            if channel is None:
                channel = self.publish_channel = self.session.open_channel(2, self)
                channel.confirm_select()
            # Recorded first: a confirm may come back from inside basic_publish.
            self.unacked_publishes[channel.publish_seq + 1] = packet_id
            channel.basic_publish(self.exchange, routing_key, False, False, message)
        else:
            self.channel.basic_publish(self.exchange, routing_key, False, False, message)

    # -- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------------------------------

    def _subscribe(self, packet: Subscribe) -> None:
        granted = []
        start: list[str] = []
        for topic, requested in packet.topics:
            qos = min(requested, 1)
            start += self._ensure_queue(qos)
            queue = subscription_queues(self.client_id)[qos]
            self.channel.queue_bind(queue, self.exchange, to_amqp(topic), {})
            self.subscriptions.setdefault(topic, []).append(qos)
            granted.append(qos)
        self._write(codec.write_suback, packet.packet_id, granted)
        # Retained messages follow the SUBACK, exact topic matches only, at the lower of the
        # requested and the published QoS; RabbitMQ sends them in reverse order of the filters.
        message_id = max(packet.packet_id, self.message_id)
        if message_id >= 0xFFFF:
            message_id = 1
        for topic, requested in reversed(packet.topics):
            name = to_mqtt(topic)
            retained = self.node.fetch_retained(self.vhost_name, name)
            if retained is None:
                continue
            qos = min(requested, retained.qos)
            self._write(codec.write_publish, name.encode("utf-8"), retained.payload, qos,
                        message_id if qos else None, True)
            if qos:
                message_id += 1
        self.message_id = message_id
        self._start(start)

    def _ensure_queue(self, qos: int) -> list[str]:
        """Declare and consume the subscription queue of ``qos`` unless done already; the new
        consumer's tag, to start once the answer is written."""
        if self.consumer_tags[qos] is not None:
            return []
        name = subscription_queues(self.client_id)[qos]
        channel = self.channel
        if qos == 0:
            channel.queue_declare(name, False, False, False, True, {})
        else:
            arguments = {} if self.clean_session else {"x-expires": SUBSCRIPTION_TTL_MS}
            channel.queue_declare(name, False, True, False, self.clean_session, arguments)
        tag = channel.basic_consume(name, "", qos == 0, False, {})
        self.consumer_tags[qos] = tag
        return [tag]

    def _start(self, tags: list[str]) -> None:
        for tag in tags:
            self.channel.start_consumer(tag)

    def _unsubscribe(self, packet: Unsubscribe) -> None:
        queues = subscription_queues(self.client_id)
        for topic in packet.topics:
            for qos in sorted(set(self.subscriptions.pop(topic, ()))):
                self.channel.queue_unbind(queues[qos], self.exchange, to_amqp(topic), {})
        self._write(codec.write_unsuback, packet.packet_id)

    # -- output -------------------------------------------------------------------------------

    def _write(self, writer: Callable, *args) -> None:
        out = self.out
        if not out:
            self.on_output()
        writer(out, *args)

    def take_output(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def service(self) -> None:
        """Work deferred out of deliveries: acks of messages not sent on with QoS 1."""
        acks = self.pending_acks
        if acks and self.channel is not None and self.channel.open:
            self.pending_acks = []
            for tag in acks:
                try:
                    self.channel.basic_ack(tag, False)
                except AMQPError:
                    pass  # requeued meanwhile (the channel closed)

    def drained(self) -> None:
        """The socket took the output: resume deliveries held back while it was full."""
        if self.delivery_blocked:
            self.delivery_blocked = False
            for channel in (self.channel,):
                if channel is not None:
                    channel.resume()

    # -- broker.sink.DeliverySink -----------------------------------------------------------------

    def deliver(self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message) -> None:
        if consumer_tag == self.consumer_tags[0]:
            qos, subscribed = 0, 0
            dup = redelivered
            if not dup:
                known = _KNOWN_PROPERTIES.get(message.properties_raw)
                dup = known[1] if known is not None else _header_dup(message)
        else:
            subscribed = 1
            known = _KNOWN_PROPERTIES.get(message.properties_raw)
            if known is not None:
                published, dup = known
            else:
                published, dup = _header_qos(message), _header_dup(message)
            qos = min(published, 1)
            dup = dup or redelivered
        if dup and qos == 0:
            # The plugin drops a redelivered message it would send at QoS 0 (acking it).
            if subscribed:
                self._defer_ack(delivery_tag)
            return
        out = self.out
        if not out:
            self.on_output()
        if qos:
            packet_id = self.message_id
            self.awaiting_ack[packet_id] = delivery_tag
            self.message_id = packet_id + 1 if packet_id + 1 < 0xFFFF else 1
            codec.write_publish(out, to_mqtt_bytes(message.routing_key), message.body, 1, packet_id, False, dup)
        else:
            codec.write_publish(out, to_mqtt_bytes(message.routing_key), message.body, 0, None, False, dup)
            if subscribed:
                self._defer_ack(delivery_tag)

    def _defer_ack(self, delivery_tag: int) -> None:
        self.pending_acks.append(delivery_tag)
        if not self.out:
            self.on_output()  # the server's writer calls service()

    def basic_return(self, reply_code: int, reply_text: str, message: Message) -> None:
        pass  # publishes are never mandatory

    def confirm(self, sequence: int, ack: bool) -> None:
        packet_id = self.unacked_publishes.pop(sequence, None)
        if packet_id is None:
            return
        if ack:
            self._write(codec.write_puback, packet_id)
        else:
            # The plugin has no answer for a refused publish; its connection ends.
            self._end("a QoS 1 publish was refused by a queue")
            self.on_close()

    def flush_confirms(self) -> None:
        pass  # confirms are written as they come

    def cancel_notify(self, consumer_tag: str) -> None:
        self._end("subscription queue deleted")
        self.on_close()

    def writable(self) -> bool:
        if len(self.out) < OUTPUT_HIGH_WATER:
            return True
        self.delivery_blocked = True
        return False

    def headroom(self) -> int:
        room = OUTPUT_HIGH_WATER - len(self.out)
        if room <= 0:
            self.delivery_blocked = True
        return room

    def fail(self, error: AMQPError) -> None:
        self._end(error.reply_text)
        self.on_close()

    # -- the end ------------------------------------------------------------------------------

    def _end(self, reason: str) -> None:
        """Stop reading; the socket is closed once the output is flushed."""
        if not self.finished:
            self.finished = True
            self.close_reason = reason
            self.on_output()

    def close(self, reason: str) -> None:
        """End the connection now, without the will (another connection took its client id)."""
        self.will = None
        self._end(reason)
        self._release()
        self.on_close()

    def _closed_by_operator(self, text: str) -> None:
        self.close(text)

    def keepalive_expired(self) -> None:
        """No packet for 1.5 keep-alive periods: the will goes out and the connection ends."""
        log.error("closing MQTT connection %s (keepalive timeout)", self.peer)
        self._end("keepalive timeout")
        self.connection_lost()

    def connection_lost(self) -> None:
        """The socket is gone (or given up on): publish the will unless the client said
        DISCONNECT or the connection ended for a reason of ours, then free broker state."""
        will, self.will = self.will, None
        if will is not None and self.session is not None and not self.session.closed:
            try:
                qos = 1 if will.qos else 0
                self._amqp_publish(will.topic, will.payload, qos, False, None)
                if will.retain:
                    self.node.retain(self.vhost_name, to_mqtt(will.topic), qos, will.payload)
            except AMQPError as exc:
                log.warning("could not send the last will of %s: %s", self.peer, exc.reply_text)
        self.finished = True
        self._release()

    def _release(self) -> None:
        if self.client_id is not None:
            self.node.unregister(self.client_id, self)
        session = self.session
        if session is not None and not session.closed:
            session.close()


if TYPE_CHECKING:  # pragma: no cover
    # The declaration that MqttConnection is the core's sink (tests/mqtt/test_codec.py checks it
    # at run time too).
    from ..broker.sink import DeliverySink

    _SINK_IMPLEMENTATION: type[DeliverySink] = MqttConnection


def _header_qos(message: Message) -> int:
    """The publisher's QoS from x-mqtt-publish-qos; a message from an AMQP client counts as 1."""
    try:
        headers = message.headers
    except ValueError:
        return 1
    value = headers.get("x-mqtt-publish-qos") if headers else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def _header_dup(message: Message) -> bool:
    try:
        headers = message.headers
    except ValueError:
        return False
    return bool(headers and headers.get("x-mqtt-dup") is True)
