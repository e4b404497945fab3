"""The sans-IO STOMP server connection: bytes in, bytes out, broker core calls in between, as
RabbitMQ's rabbitmq_stomp plugin (rabbit_stomp_processor) does it.

A STOMP session is one broker :class:`~amqp_broker.broker.session.Session` with one core channel,
driven by the same calls an AMQP channel makes (queue_declare, queue_bind, basic_consume,
basic_publish, basic_ack...); this class is that channel's
:class:`~amqp_broker.broker.sink.DeliverySink`, writing MESSAGE and RECEIPT frames into
:attr:`output`. The core knows nothing of STOMP.

Errors come in RabbitMQ's two kinds: a STOMP-level one (bad header, unknown subscription...) is
an ERROR frame and the session goes on; an error of the core (404, 403, 406: what an AMQP channel
would be closed with) is an ERROR frame named after the AMQP error (``not_found``) and the end of
the connection, as the plugin's ``amqp_death``.

The server layer feeds :meth:`receive_data`, sends :attr:`output`, calls :meth:`heartbeat_tick`
on a timer, :meth:`writer_drained` after each flush and :meth:`connection_lost` at the end.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import logging
import os
import struct
from dataclasses import dataclass
from typing import Any, Callable

from .. import __version__
from ..broker.broker import Broker
from ..broker.message import Message
from ..broker.replyto import REPLY_QUEUE
from ..broker.session import Session
from ..errors import CONNECTION_FORCED, AMQPError, ConnectionLevelError
from ..protocol.output import WRITE_HIGH_WATER, WRITE_LOW_WATER, Output
from . import destinations
from .destinations import Destination, DestinationError
from .frame import HEARTBEAT, Frame, FrameError, FrameParser, frame_bytes, header_lines, serialize

log = logging.getLogger("amqp_broker.stomp")

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
VERSIONS_HEADER = ",".join(SUPPORTED_VERSIONS)
# A client that has not sent CONNECT by then is dropped (the plugin's login_timeout).
LOGIN_TIMEOUT = 10.0
# The consumer tag prefixes: a subscription with an id, one named by its destination only.
INTERNAL_TAG = "T_"
QUEUE_TAG = "Q_"
MESSAGE_ID_SEPARATOR = "@@"

# AMQP reply codes by the name the plugin's ERROR frames give them (amqp_connection:error_atom).
ERROR_NAMES = {
    311: "content_too_large", 312: "no_route", 313: "no_consumers", 320: "connection_forced",
    402: "invalid_path", 403: "access_refused", 404: "not_found", 405: "resource_locked",
    406: "precondition_failed", 501: "frame_error", 502: "syntax_error", 503: "command_invalid",
    504: "channel_error", 505: "unexpected_frame", 506: "resource_error", 530: "not_allowed",
    540: "not_implemented", 541: "internal_error",
}  # fmt: skip

# SEND headers that are message properties, not application headers (rabbit_stomp_util:user_header).
PROPERTY_HEADERS = frozenset({
    "content-type", "content-encoding", "persistent", "priority", "correlation-id", "reply-to",
    "expiration", "amqp-message-id", "timestamp", "type", "user-id", "app-id", "destination",
})  # fmt: skip
# Property -> MESSAGE header, in the order the plugin writes them (its fold reverses its list).
MESSAGE_PROPERTY_HEADERS = (
    ("app_id", "app-id"), ("user_id", "user-id"), ("message_type", "type"),
    ("timestamp", "timestamp"), ("message_id", "amqp-message-id"), ("expiration", "expiration"),
    ("reply_to", "reply-to"), ("correlation_id", "correlation-id"), ("priority", "priority"),
    ("delivery_mode", "persistent"), ("content_encoding", "content-encoding"),
    ("content_type", "content-type"),
)  # fmt: skip
# Queue arguments a SUBSCRIBE or SEND may set with headers, and whether each is an integer.
ARGUMENT_HEADERS = {
    "x-dead-letter-exchange": False, "x-dead-letter-routing-key": False, "x-expires": True,
    "x-max-length": True, "x-max-length-bytes": True, "x-max-priority": True,
    "x-message-ttl": True, "x-queue-type": False,
}  # fmt: skip


@dataclass(frozen=True)
class StompConfig:
    """The plugin's settings (rabbitmq_stomp's default_user, default_vhost, implicit_connect)."""

    #: Login and passcode used when CONNECT has no login header; None: such a CONNECT is refused.
    default_login: str | None = "guest"
    default_passcode: str | None = "guest"
    default_vhost: str = "/"
    #: Frames before CONNECT log in as the default user instead of being refused.
    implicit_connect: bool = False
    #: The largest frame accepted (a larger one ends the connection); 0: no limit.
    max_frame: int = 0


class StompError(Exception):
    """A STOMP-level error: an ERROR frame, and the session carries on."""

    def __init__(self, message: str, detail: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(f"{message}: {detail}")
        self.message = message
        self.detail = detail
        self.headers = headers or []


def processing_error() -> StompError:
    """What the plugin answers when its handler crashes on input it did not expect (a header that
    is not a number, an unknown ack mode...)."""
    return StompError("Processing error", "Processing error")


@dataclass
class Subscription:
    destination: str
    ack_mode: str | None  # "auto", "client" (both client modes) or None (a reply queue)
    multiple: bool
    description: str


def _erl_string(text: str) -> str:
    """``text`` as Erlang's ~p prints a string (the plugin's messages quote with it)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _boolean(value: str | None) -> bool | None:
    # rabbit_stomp_frame:boolean_header (Python clients send True/False).
    if value in ("true", "True"):
        return True
    if value in ("false", "False"):
        return False
    return None


def _integer(frame: Frame, name: str) -> int | None:
    value = frame.headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise processing_error() from None


def _millis_to_seconds(millis: int) -> int:
    if millis <= 0:
        return 0
    if millis < 1000:
        return 1
    return millis // 1000


def _new_session_id() -> str:
    return "session-" + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")


def _negotiate(accept: str) -> str | None:
    common = [v for v in accept.split(",") if v in SUPPORTED_VERSIONS]
    if not common:
        return None
    return max(common, key=lambda v: tuple(int(p) for p in v.split(".")))


class StompConnection:
    """One STOMP connection, server side, with no I/O of its own."""

    def __init__(self, broker: Broker, peer: str = "", local: str = "",
                 config: StompConfig | None = None):
        self.broker = broker
        self.peer = peer
        self.local = local
        self.config = config or StompConfig()
        self.output = Output()
        self.parser = FrameParser(self.config.max_frame)
        # Set when the socket should be closed once the output is flushed.
        self.finished = False
        self.close_reason = ""
        # Heart-beat intervals in seconds agreed at CONNECT: how often we send when otherwise
        # silent, and how often the client promised to (0: never).
        self.send_heartbeat = 0
        self.receive_heartbeat = 0
        self.session: Session | None = None
        self.channel: Any = None
        self.version = "1.0"
        self.session_id = ""
        self.subscriptions: dict[str, Subscription] = {}
        # Queues of /queue/ destinations this connection declared already (the plugin declares
        # each once per connection).
        self.declared: set[str] = set()
        # /temp-queue/ name -> the server-named queue replies to it arrive on.
        self.reply_queues: dict[str, str] = {}
        # Transaction name -> actions staged until COMMIT (STOMP transactions are the plugin's own:
        # nothing reaches the broker before COMMIT).
        self.transactions: dict[str, list[Callable[[], None]]] = {}
        # Publish sequence -> receipt id of a SEND whose RECEIPT waits for the publisher confirm;
        # None until the first SEND asking for a receipt puts the channel in confirm mode.
        self.pending_receipts: dict[int, str] | None = None
        self.delivery_blocked = False
        # While a frame is handled, what the core sends meanwhile (deliveries, receipts of
        # confirms) waits here, so that the frame's own RECEIPT goes first, as with RabbitMQ,
        # whose queues deliver asynchronously: a SUBSCRIBE's receipt precedes its first MESSAGE.
        self._deferred: list[bytes] | None = None
        self._deferred_bytes = 0
        # Set when a SEND published something; the server resets it per read, and holds a
        # publishing connection while flow control (an alarm, the store's backlog) is on.
        self.published = False
        # (raw AMQP properties, their MESSAGE header lines) of the last delivery: consecutive
        # messages mostly share their properties (one publisher's, or none).
        self._last_delivered: tuple[bytes, bytes] = (b"\x00\x00", b"")
        # (SEND headers, what send_properties made of them) of the last SEND.
        self._last_properties: tuple | None = None

    # -- output -------------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        output = self.output
        output.wake()
        output.buf += data

    def send_frame(self, command: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        self._write(serialize(command, headers, body))

    def _send_async(self, command: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        """A frame the core's callbacks send: after the current frame's RECEIPT, if any."""
        data = serialize(command, headers, body)
        deferred = self._deferred
        if deferred is None:
            self._write(data)
        else:
            deferred.append(data)
            self._deferred_bytes += len(data)

    def _flush_deferred(self) -> None:
        deferred, self._deferred = self._deferred, None
        self._deferred_bytes = 0
        if deferred:
            self._write(b"".join(deferred))

    def send_error(self, message: str, detail: str, extra: list[tuple[str, str]] | None = None) -> None:
        self.send_frame("ERROR", _error_headers(message) + (extra or []),
                        detail.encode("utf-8", "surrogateescape"))

    # -- input --------------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Handle the frames ``data`` completes."""
        if self.finished:
            return
        try:
            frames = self.parser.feed(data)
        except FrameError as exc:
            # The plugin logs the parse error and drops the socket, with no ERROR frame.
            log.warning("%s: STOMP detected network error: %s", self.peer, exc)
            self._terminate(f"frame error: {exc}")
            return
        for frame in frames:
            if self.finished:
                return
            self._process(frame)

    def _process(self, frame: Frame) -> None:
        command = frame.command
        if command in ("CONNECT", "STOMP"):
            if self.channel is not None:
                # The plugin's processor has no clause for it and its connection process exits.
                self._terminate("CONNECT on a connected session")
                return
            self._connect(frame)
            return
        if self.channel is None:
            if not self.config.implicit_connect:
                self.send_error("Illegal command", "You must log in using CONNECT first")
                return
            self._connect(Frame("CONNECT", {}), implicit=True)
            if self.channel is None:
                self._terminate("implicit connect failed")
                return
        if self.version == "1.0":
            frame.headers = {k: v.lstrip() for k, v in frame.headers.items()}
        handler = _HANDLERS.get(command)
        persistence = self.broker.persistence
        writes = persistence.store.writes if persistence is not None else 0
        self._deferred = []
        try:
            if handler is None:
                raise StompError("Bad command", f"Could not interpret command {_erl_string(command)}\n")
            if command in ("SUBSCRIBE", "UNSUBSCRIBE") and "id" not in frame.headers and (
                _boolean(frame.headers.get("durable")) or _boolean(frame.headers.get("persistent"))
            ):
                raise StompError("Missing Header", "Header 'id' is required for durable subscriptions")
            handler(self, frame)
        except StompError as exc:
            log.warning("%s: STOMP error frame sent: %s: %s", self.peer, exc.message, exc.detail.strip())
            self.send_error(exc.message, exc.detail, exc.headers)
            self._flush_deferred()
            return
        except AMQPError as exc:
            self._flush_deferred()
            self._amqp_death(exc)
            return
        except BaseException:
            self._deferred = None
            raise
        receipt = frame.headers.get("receipt")
        if receipt is not None and command != "SEND":
            if persistence is not None and persistence.store.writes != writes:
                # A durable declaration, binding or deletion: its RECEIPT (and what follows, in
                # order) waits for the commit, so that what the client was told is done survives
                # a crash. A SEND's RECEIPT is a publisher confirm, which waits for it already.
                self.output.barrier = persistence.store.batch_id
            self.send_frame("RECEIPT", [("receipt-id", receipt)])
        self._flush_deferred()
        if command == "DISCONNECT":
            self._terminate("client disconnected")

    def _amqp_death(self, exc: AMQPError) -> None:
        """A core error ends the connection, as a closed AMQP channel ends the plugin's session."""
        name = ERROR_NAMES.get(exc.reply_code, str(exc.reply_code))
        log.warning("%s: STOMP connection closed by error: %s", self.peer, exc.reply_text)
        self.send_error(name, exc.reply_text)
        self._terminate(exc.reply_text)

    # -- CONNECT ------------------------------------------------------------------------------------

    def _connect(self, frame: Frame, implicit: bool = False) -> None:
        version = _negotiate(frame.headers.get("accept-version", "1.0"))
        if version is None:
            self.send_error("Version mismatch", f"Supported versions are {VERSIONS_HEADER}\n")
            return
        headers = frame.headers
        if version == "1.0":
            headers = {k: v.lstrip() for k, v in headers.items()}
        config = self.config
        login = headers.get("login", config.default_login)
        passcode = headers.get("passcode", config.default_passcode)
        vhost = headers.get("host", config.default_vhost)
        try:
            send_ms, receive_ms = (int(part) for part in headers.get("heart-beat", "0,0").split(","))
        except ValueError:
            self.send_error("Processing error", "Processing error")
            return
        if login is None or passcode is None:
            self.send_error("Bad CONNECT", "Missing login or passcode header(s)")
            return
        user = self.broker.authenticate(login, passcode)
        if user is None:
            log.warning("%s: STOMP login failed for user '%s': authentication failed", self.peer, login)
            self.send_error("Bad CONNECT", f"Access refused for user '{login}'\n")
            return
        try:
            session = self.broker.open_session(user, vhost, {"product": "STOMP client"}, self.peer)
        except ConnectionLevelError:
            log.warning("%s: STOMP login failed for user '%s': virtual host access not allowed",
                        self.peer, login)
            self.send_error("Bad CONNECT", f"Virtual host '{vhost}' access denied")
            return
        local_host = self.local.rpartition(":")[0] if self.local else None
        if self.broker.loopback_refusal(login, local_host) is not None:
            session.close()
            log.warning("%s: STOMP login failed for user '%s': this user's access is restricted to "
                        "localhost", self.peer, login)
            self.send_error("Bad CONNECT", "non-loopback access denied")
            return
        # Our server-sent ERROR for a deleted queue is the plugin's; every STOMP client gets it.
        session.consumer_cancel_notify = True
        self.session = session
        self.version = version
        self.session_id = _new_session_id()
        self.send_heartbeat = _millis_to_seconds(receive_ms)
        self.receive_heartbeat = _millis_to_seconds(send_ms)
        if self.local:
            session.name = f"{self.peer} -> {self.local}"
        session.details = {
            "protocol": f"STOMP {version}",
            "auth_mechanism": "STOMP",
            "frame_max": 0,
            "channel_max": 1,
            "timeout": self.receive_heartbeat,
            "local": self.local,
        }
        session.closer = self.force_close
        self.channel = session.open_channel(1, self)
        log.info("%s: STOMP connection opened (user '%s', vhost '%s', version %s)",
                 self.peer, login, vhost, version)
        if implicit:
            return  # the plugin answers an implicit connect with nothing
        self.send_frame("CONNECTED", [
            ("server", f"amqp_broker/{__version__}"),
            ("session", self.session_id),
            ("heart-beat", f"{self.send_heartbeat * 1000},{self.receive_heartbeat * 1000}"),
            ("version", version),
        ])

    # -- destinations -------------------------------------------------------------------------------

    def _destination(self, frame: Frame) -> tuple[str, Destination]:
        header = frame.headers.get("destination")
        if header is None:
            raise StompError("Missing destination",
                             f"{_erl_string(frame.command)} must include a 'destination' header\n")
        try:
            return header, destinations.parse(header)
        except DestinationError as exc:
            raise StompError(exc.message, exc.detail) from None

    @staticmethod
    def _queue_params(frame: Frame, destination: Destination) -> dict[str, bool]:
        """durable/auto_delete/exclusive from the headers over the destination's defaults
        (rabbit_stomp_util:build_params)."""
        kind = destination[0]
        if kind == "queue":
            params: dict[str, bool] = {"durable": True}
        elif kind in ("exchange", "topic"):
            params = {"exclusive": False, "auto_delete": True}
        else:
            params = {"durable": False}
        for header, key in (("persistent", "durable"), ("durable", "durable"),
                            ("auto-delete", "auto_delete"), ("exclusive", "exclusive")):
            value = _boolean(frame.headers.get(header))
            if value is not None:
                params[key] = value
        return params

    @staticmethod
    def _queue_arguments(frame: Frame) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        for header, integer in ARGUMENT_HEADERS.items():
            value = frame.headers.get(header)
            if value is None:
                continue
            if integer:
                try:
                    arguments[header] = int(value.strip())
                except ValueError:
                    raise processing_error() from None
            else:
                arguments[header] = value.strip()
        return arguments

    def _declare(self, name: str, params: dict[str, bool], arguments: dict) -> str:
        """queue.declare as rabbit_routing_util:queue_declare_method builds it."""
        if params.get("durable"):
            durable, auto_delete, exclusive = True, False, False
        else:
            durable, auto_delete, exclusive = False, True, True
        exclusive = params.get("exclusive", exclusive)
        auto_delete = params.get("auto_delete", auto_delete)
        declared, _, _ = self.channel.queue_declare(name, False, durable, exclusive, auto_delete, arguments)
        return declared

    def _ensure_endpoint(self, source: bool, header: str, destination: Destination, frame: Frame) -> str | None:
        """Declare what ``destination`` needs; the queue to consume from (or None)."""
        kind, name, _ = destination
        if kind == "queue" and name == "":
            raise StompError("Invalid destination", "Destination cannot be blank")
        if kind == "temp_queue":
            raise StompError("Invalid destination",
                             f"'{header}' is not a valid destination for '{frame.command}'\n")
        if kind in ("exchange", "topic"):
            if not source:
                return None
            params = self._queue_params(frame, destination)
            return self._declare(self._subscription_queue_name(name, frame), params,
                                 self._queue_arguments(frame))
        if kind == "queue":
            if name not in self.declared:
                self._declare(name, self._queue_params(frame, destination), self._queue_arguments(frame))
                self.declared.add(name)
            return name
        return name  # amqqueue, reply_queue: used as they are

    @staticmethod
    def _subscription_queue_name(name: str, frame: Frame) -> str:
        """A topic or exchange subscription's queue: x-queue-name, else stomp-subscription-<hash>
        of the destination and the id of a durable subscription (a random one otherwise)."""
        explicit = frame.headers.get("x-queue-name")
        if explicit is not None:
            return explicit
        if _boolean(frame.headers.get("durable")) or _boolean(frame.headers.get("persistent")):
            seed = f"{name}\x00{frame.headers.get('id', '')}".encode("utf-8", "surrogateescape")
            digest = hashlib.md5(seed).digest()
        else:
            digest = os.urandom(16)
        return "stomp-subscription-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    # -- frames -------------------------------------------------------------------------------------

    def _subscribe(self, frame: Frame) -> None:
        header, destination = self._destination(frame)
        channel = self.channel
        exchange, routing_key = destinations.routing(destination)
        if destination[0] == "topic":
            # The topic permission on amq.topic, read (rabbit_stomp_processor:check_subscription_access).
            grants = self.session.grants
            if not grants.topic_free(exchange):
                grants.check_topic(False, self.session.vhost.get_exchange(exchange), routing_key)
        prefetch = _integer(frame, "prefetch-count")
        ack = frame.headers.get("ack", "auto")
        if ack not in ("auto", "client", "client-individual"):
            raise processing_error()
        ack_mode = "auto" if ack == "auto" else "client"
        queue = self._ensure_endpoint(True, header, destination, frame)
        tag, description = self._consumer_tag(frame)
        if prefetch is not None:
            channel.basic_qos(0, prefetch, False)
        if tag in self.subscriptions:
            self.send_error("Duplicated subscription identifier",
                            f"A subscription identified by '{tag}' already exists.")
            self._terminate("duplicated subscription identifier")
            return
        arguments = {}
        offset = _stream_offset(frame.headers.get("x-stream-offset"))
        if offset is not None:
            arguments["x-stream-offset"] = offset
        self.subscriptions[tag] = Subscription(header, ack_mode, ack == "client", description)
        try:
            channel.basic_consume(queue, tag, ack_mode == "auto", False, arguments)
            if exchange:
                channel.queue_bind(queue, exchange, routing_key, {})
        except AMQPError:
            del self.subscriptions[tag]
            if destination[0] in ("exchange", "topic"):
                # Server-named and declared just now: safe to delete (the plugin does too).
                channel.basic_cancel(tag)
                try:
                    channel.queue_delete(queue, False, False)
                except AMQPError:
                    pass
            raise
        channel.start_consumer(tag)

    @staticmethod
    def _consumer_tag(frame: Frame) -> tuple[str, str]:
        sub_id = frame.headers.get("id")
        if sub_id is not None:
            if sub_id.startswith(destinations.TEMP_QUEUE_PREFIX + "/"):
                if frame.command == "UNSUBSCRIBE":
                    raise StompError("Invalid id", "UNSUBSCRIBE 'id' may not start with /temp-queue/\n")
                raise processing_error()
            return INTERNAL_TAG + sub_id, f"id='{sub_id}'"
        header = frame.headers.get("destination")
        if header is not None:
            return QUEUE_TAG + header, f"destination='{header}'"
        if frame.command == "UNSUBSCRIBE":
            raise StompError("Missing destination or id",
                             "UNSUBSCRIBE must include a 'destination' or 'id' header")
        raise processing_error()

    def _unsubscribe(self, frame: Frame) -> None:
        tag, description = self._consumer_tag(frame)
        subscription = self.subscriptions.get(tag)
        if subscription is None:
            raise StompError(
                "No subscription found",
                "UNSUBSCRIBE must refer to an existing subscription.\n"
                f"Subscription to {_erl_string(description)} not found.\n",
            )
        self.channel.basic_cancel(tag)
        del self.subscriptions[tag]
        destination = destinations.parse(subscription.destination)
        if destination[0] == "topic" and (
            _boolean(frame.headers.get("durable")) or _boolean(frame.headers.get("persistent"))
        ):
            name = self._subscription_queue_name(destination[1], frame)
            self.channel.queue_delete(name, False, False)

    def _send(self, frame: Frame) -> None:
        if "message-id" in frame.headers:
            raise StompError("Invalid header", "'message-id' is not allowed on 'SEND'.\n")
        header, destination = self._destination(frame)
        self._ensure_endpoint(False, header, destination, frame)
        headers = frame.headers
        reply_to = headers.get("reply-to")
        if reply_to is not None:
            try:
                reply_destination = destinations.parse(reply_to)
            except DestinationError:
                raise processing_error() from None
            if reply_destination[0] == "temp_queue":
                headers = dict(headers)
                headers["reply-to"] = self._reply_queue(reply_destination[1])
        message = self._message(destination, headers, frame.body)
        receipt = frame.headers.get("receipt")
        transaction = frame.headers.get("transaction")
        if transaction is not None:
            self._stage(transaction, lambda: self._publish(message, receipt))
        else:
            self._publish(message, receipt)

    def _publish(self, message: Message, receipt: str | None) -> None:
        channel = self.channel
        self.published = True
        if receipt is not None:
            if self.pending_receipts is None:
                # RECEIPTs for SENDs are publisher confirms, as the plugin does it: a persistent
                # message to a durable queue is receipted once it is on disk.
                self.pending_receipts = {}
                channel.confirm_select()
            self.pending_receipts[channel.publish_seq + 1] = receipt
        channel.basic_publish(message.exchange, message.routing_key, False, False, message)

    def _message(self, destination: Destination, headers: dict[str, str], body: bytes) -> Message:
        """The AMQP message a SEND makes (rabbit_stomp_util:message_properties)."""
        exchange, routing_key = destinations.routing(destination)
        # Publishers mostly repeat the same headers: the last encoding is reused.
        key = tuple(headers.items())
        cached = self._last_properties
        if cached is not None and cached[0] == key:
            properties = cached[1]
        else:
            properties = send_properties(headers)
            self._last_properties = (key, properties)
        raw, delivery_mode, priority, expiration, user_id, reply_hint = properties
        message = Message(exchange, routing_key, raw, body, delivery_mode, priority, expiration,
                          user_id=user_id)
        message.direct_reply_hint = reply_hint
        return message

    def _reply_queue(self, temp_id: str) -> str:
        """The queue replies to /temp-queue/``temp_id`` arrive on: declared and consumed (no ack)
        on first use, as the plugin's ensure_reply_queue."""
        queue = self.reply_queues.get(temp_id)
        if queue is not None:
            return queue
        channel = self.channel
        queue, _, _ = channel.queue_declare("", False, False, True, True, {})
        tag = INTERNAL_TAG + destinations.TEMP_QUEUE_PREFIX + "/" + temp_id
        self.subscriptions[tag] = Subscription(queue, None, False, "")
        channel.basic_consume(queue, tag, True, False, {})
        channel.start_consumer(tag)
        self.reply_queues[temp_id] = queue
        return queue

    def _ack(self, frame: Frame) -> None:
        self._ack_action(frame, nack=False)

    def _nack(self, frame: Frame) -> None:
        self._ack_action(frame, nack=True)

    def _ack_action(self, frame: Frame, nack: bool) -> None:
        command = frame.command
        header = "id" if self.version == "1.2" else "message-id"
        value = frame.headers.get(header)
        if value is None:
            raise StompError("Missing header",
                             f"{_erl_string(command)} must include the {_erl_string(header)} header\n")
        parts = value.split(MESSAGE_ID_SEPARATOR)
        if len(parts) != 3:
            raise StompError("Invalid header",
                             f"{_erl_string(command)} must include a valid {_erl_string(header)} header\n")
        tag, _session, delivery = parts
        try:
            delivery_tag = int(delivery)
        except ValueError:
            raise processing_error() from None
        subscription = self.subscriptions.get(tag)
        if subscription is None:
            raise StompError("Subscription not found",
                             f"Message with id {_erl_string(value)} has no subscription")
        requeue = _boolean(frame.headers.get("requeue"))
        requeue = True if requeue is None else requeue
        channel = self.channel
        multiple = subscription.multiple
        if nack:
            action = lambda: channel.basic_nack(delivery_tag, multiple, requeue)  # noqa: E731
        else:
            action = lambda: channel.basic_ack(delivery_tag, multiple)  # noqa: E731
        transaction = frame.headers.get("transaction")
        if transaction is not None:
            self._stage(transaction, action)
        else:
            action()

    def _stage(self, transaction: str, action: Callable[[], None]) -> None:
        actions = self.transactions.get(transaction)
        if actions is None:
            raise StompError("Bad transaction",
                             f"Invalid transaction identifier: {_erl_string(transaction)}\n")
        actions.append(action)

    def _transaction_name(self, frame: Frame) -> str:
        name = frame.headers.get("transaction")
        if name is None:
            raise StompError("Missing transaction",
                             f"{_erl_string(frame.command)} must include a 'transaction' header\n")
        return name

    def _begin(self, frame: Frame) -> None:
        self.transactions[self._transaction_name(frame)] = []

    def _commit(self, frame: Frame) -> None:
        name = self._transaction_name(frame)
        actions = self.transactions.get(name)
        if actions is None:
            raise StompError("Bad transaction", f"Invalid transaction identifier: {_erl_string(name)}\n")
        for action in actions:
            action()
        del self.transactions[name]

    def _abort(self, frame: Frame) -> None:
        name = self._transaction_name(frame)
        if self.transactions.pop(name, None) is None:
            raise StompError("Bad transaction", f"Invalid transaction identifier: {_erl_string(name)}\n")

    def _disconnect(self, frame: Frame) -> None:
        self._release()

    # -- broker.sink.DeliverySink ------------------------------------------------------------------

    def deliver(self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message) -> None:
        """A MESSAGE frame for the subscription ``consumer_tag``."""
        subscription = self.subscriptions.get(consumer_tag)
        if subscription is None:
            self._send_async("ERROR", _error_headers("Subscription not found"),
                             f"There is no current subscription with tag '{consumer_tag}'.".encode())
            return
        message_id = f"{consumer_tag}{MESSAGE_ID_SEPARATOR}{self.session_id}{MESSAGE_ID_SEPARATOR}{delivery_tag}"
        headers: list[tuple[str, str]] = []
        if consumer_tag.startswith(INTERNAL_TAG):
            headers.append(("subscription", consumer_tag[len(INTERNAL_TAG):]))
        headers.append(("destination", destinations.format_destination(message.exchange, message.routing_key)))
        headers.append(("message-id", message_id))
        headers.append(("redelivered", "true" if redelivered else "false"))
        if subscription.ack_mode == "client" and self.version == "1.2":
            headers.append(("ack", message_id))
        raw = message.properties_raw
        last_raw, properties = self._last_delivered
        if raw is not last_raw and raw != last_raw:
            properties = header_lines(_message_headers(message))
            self._last_delivered = (raw, properties)
        data = frame_bytes(b"MESSAGE", header_lines(headers) + properties, message.body)
        deferred = self._deferred
        if deferred is None:
            self._write(data)
        else:
            deferred.append(data)
            self._deferred_bytes += len(data)

    def basic_return(self, reply_code: int, reply_text: str, message: Message) -> None:
        pass  # STOMP publishes are never mandatory

    def confirm(self, sequence: int, ack: bool) -> None:
        pending = self.pending_receipts
        if pending:
            receipt = pending.pop(sequence, None)
            # A nacked SEND gets no RECEIPT (the plugin only handles basic.ack).
            if receipt is not None and ack:
                self._send_async("RECEIPT", [("receipt-id", receipt)])

    def flush_confirms(self) -> None:
        pass  # receipts are written as their confirms arrive

    def cancel_notify(self, consumer_tag: str) -> None:
        """The subscription's queue was deleted."""
        subscription = self.subscriptions.pop(consumer_tag, None)
        if subscription is None:
            self._send_async("ERROR", _error_headers("Server cancelled unknown subscription"),
                             f'Consumer tag <<"{consumer_tag}">> is not associated with a '
                             'subscription.\n'.encode())
            return
        sub_id = consumer_tag[len(INTERNAL_TAG):] if consumer_tag.startswith(INTERNAL_TAG) else \
            f"Unknown[{consumer_tag}]"
        self._send_async(
            "ERROR", _error_headers("Server cancelled subscription") + [("subscription", sub_id)],
            ("The server has canceled a subscription.\n"
             f"No more messages will be delivered for {_erl_string(subscription.description)}.\n").encode(),
        )

    def writable(self) -> bool:
        output = self.output
        if len(output.buf) + output.pieces_bytes + self._deferred_bytes < WRITE_HIGH_WATER:
            return True
        self.delivery_blocked = True
        return False

    def headroom(self) -> int:
        output = self.output
        room = WRITE_HIGH_WATER - len(output.buf) - output.pieces_bytes - self._deferred_bytes
        if room <= 0:
            self.delivery_blocked = True
        return room

    def fail(self, error: AMQPError) -> None:
        """The core closes the channel on its own (a consumer timeout)."""
        if not self.finished:
            self._amqp_death(error)

    # -- lifecycle ----------------------------------------------------------------------------------

    def force_close(self, reply_text: str) -> None:
        """An operator's or a shutdown's close (``reply_text`` is the AMQP close's, "CONNECTION_FORCED
        - ..."): the ERROR the plugin sends when its AMQP connection is closed under it, then the
        end."""
        if self.finished:
            return
        if self.session is not None:
            log.info("%s: STOMP connection closed: %s", self.peer, reply_text)
            self.send_error(ERROR_NAMES[CONNECTION_FORCED], reply_text)
        self._terminate(reply_text)

    def _release(self) -> None:
        session, self.session = self.session, None
        self.channel = None
        self.subscriptions.clear()
        self.transactions.clear()
        if session is not None:
            session.close()

    def _terminate(self, reason: str = "") -> None:
        self._release()
        if reason and not self.close_reason:
            self.close_reason = reason
        self.finished = True
        self.output.on_output()

    def connection_lost(self, reason: str = "") -> None:
        """The socket is gone: free broker state (requeue unacked, drop exclusive queues)."""
        self._release()
        if reason and not self.close_reason:
            self.close_reason = reason
        self.finished = True

    def heartbeat_tick(self, idle_receive: float, idle_send: float, connected_for: float) -> bool:
        """Timer hook: a heart-beat when we have been quiet; False when the client is gone (silent
        for two of its intervals, as rabbit_heartbeat) or never logged in."""
        if self.finished:
            return True
        if self.channel is None:
            if connected_for > LOGIN_TIMEOUT:
                self.connection_lost("login timeout")
                return False
            return True
        if self.receive_heartbeat and idle_receive > 2 * self.receive_heartbeat:
            log.warning("%s: STOMP detected missed client heartbeat(s), closing it", self.peer)
            self.connection_lost("missed heartbeats")
            return False
        if self.send_heartbeat and idle_send >= self.send_heartbeat:
            self._write(HEARTBEAT)
        return True

    def writer_drained(self) -> None:
        """The writer flushed the output; resume deliveries held back while it was full."""
        if self.delivery_blocked and self.output.size() < WRITE_LOW_WATER:
            self.delivery_blocked = False
            channel = self.channel
            if channel is not None:
                channel.resume()


# The string properties a SEND header sets, in AMQP's property order, with their flag bits
# (AMQP 0-9-1 basic properties: content-type is bit 15 of the flags, cluster-id bit 2).
_STRING_PROPERTIES_HEAD = (("content-type", 0x8000), ("content-encoding", 0x4000))
_STRING_PROPERTIES_TAIL = (
    ("correlation-id", 0x0400), ("reply-to", 0x0200), ("expiration", 0x0100),
    ("amqp-message-id", 0x0080),
)
_STRING_PROPERTIES_LAST = (("type", 0x0020), ("user-id", 0x0010), ("app-id", 0x0008))
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def _shortstr(value: str) -> bytes:
    data = value.encode("utf-8", "surrogateescape")
    if len(data) > 255:
        raise processing_error()
    return bytes((len(data),)) + data


def send_properties(headers: dict[str, str]) -> tuple:
    """The raw AMQP properties of a SEND with ``headers``, and the fields the core peeks at:
    (raw, delivery_mode, priority, expiration, user_id, direct reply-to hint). Application
    headers become longstr entries, in the order the plugin gives them (its parser prepends, so
    the last header sent comes first)."""
    flags = 0
    parts: list[bytes] = []
    for name, flag in _STRING_PROPERTIES_HEAD:
        value = headers.get(name)
        if value is not None:
            flags |= flag
            parts.append(_shortstr(value))
    entries = []
    for name, value in reversed(list(headers.items())):
        if name not in PROPERTY_HEADERS:
            entries.append(_shortstr(name))
            data = value.encode("utf-8", "surrogateescape")
            entries.append(b"S" + _U32.pack(len(data)) + data)
    if entries:
        flags |= 0x2000
        table = b"".join(entries)
        parts.append(_U32.pack(len(table)) + table)
    delivery_mode = 0
    if _boolean(headers.get("persistent")):
        delivery_mode = 2
        flags |= 0x1000
        parts.append(b"\x02")
    priority = _integer_value(headers.get("priority"))
    if priority is not None:
        if not 0 <= priority <= 255:
            raise processing_error()
        flags |= 0x0800
        parts.append(bytes((priority,)))
    for name, flag in _STRING_PROPERTIES_TAIL:
        value = headers.get(name)
        if value is not None:
            flags |= flag
            parts.append(_shortstr(value))
    timestamp = _integer_value(headers.get("timestamp"))
    if timestamp is not None:
        if not 0 <= timestamp < 2**64:
            raise processing_error()
        flags |= 0x0040
        parts.append(_U64.pack(timestamp))
    for name, flag in _STRING_PROPERTIES_LAST:
        value = headers.get(name)
        if value is not None:
            flags |= flag
            parts.append(_shortstr(value))
    reply_to = headers.get("reply-to")
    return (
        flags.to_bytes(2, "big") + b"".join(parts), delivery_mode, priority,
        headers.get("expiration"), headers.get("user-id"),
        reply_to is not None and REPLY_QUEUE in reply_to,
    )


def _error_headers(message: str) -> list[tuple[str, str]]:
    return [("message", message), ("content-type", "text/plain"), ("version", VERSIONS_HEADER)]


def _integer_value(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise processing_error() from None


def _stream_offset(value: str | None) -> Any:
    if value in ("first", "last", "next"):
        return value
    if value is not None:
        for prefix in ("offset=", "timestamp="):
            if value.startswith(prefix):
                try:
                    number = int(value[len(prefix):])
                except ValueError:
                    raise processing_error() from None
                if prefix == "timestamp=":
                    return datetime.datetime.fromtimestamp(number, datetime.timezone.utc)
                return number
    return None


def _message_headers(message: Message) -> list[tuple[str, str]]:
    """A delivered message's properties as MESSAGE headers (rabbit_stomp_util:message_headers):
    its longstr and integer application headers first, then the properties."""
    if message.properties_raw == b"\x00\x00":
        return []
    properties = message.properties()
    headers: list[tuple[str, str]] = []
    table = properties.get("headers")
    if table:
        kinds = getattr(table, "types", {})
        for key, value in table.items():
            kind = kinds.get(key)
            if kind == "S" or (kind is None and isinstance(value, (str, bytes))):
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "surrogateescape")
                headers.append((key, value))
            elif kind in ("I", "l") and isinstance(value, int) and not isinstance(value, bool):
                headers.append((key, str(value)))
    for name, header in MESSAGE_PROPERTY_HEADERS:
        value = properties.get(name)
        if value is None:
            continue
        if name == "delivery_mode":
            if value == 2:
                headers.append((header, "true"))
            continue
        if name == "timestamp":
            if isinstance(value, datetime.datetime):
                if value.tzinfo is None:
                    value = value.replace(tzinfo=datetime.timezone.utc)
                value = int(value.timestamp())
        elif name == "reply_to":
            value = destinations.reply_to_header(value)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "surrogateescape")
        headers.append((header, str(value)))
    return headers


_HANDLERS: dict[str, Callable[[StompConnection, Frame], None]] = {
    "SEND": StompConnection._send,
    "SUBSCRIBE": StompConnection._subscribe,
    "UNSUBSCRIBE": StompConnection._unsubscribe,
    "ACK": StompConnection._ack,
    "NACK": StompConnection._nack,
    "BEGIN": StompConnection._begin,
    "COMMIT": StompConnection._commit,
    "ABORT": StompConnection._abort,
    "DISCONNECT": StompConnection._disconnect,
}
