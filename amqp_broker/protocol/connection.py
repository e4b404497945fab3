"""The sans-IO AMQP 0-9-1 server connection: bytes in, bytes out, broker calls in between.

Rules, in the order a connection lives them (AMQP 0-9-1 spec section 2.2.4 and RabbitMQ's
rabbit_reader):

1. ``AWAIT_HEADER``: the first 8 bytes must be ``AMQP\\x00\\x00\\x09\\x01``; anything else is
   answered with that header and the connection ends (spec 4.2.2).
2. ``AWAIT_START_OK``: connection.start was sent; start-ok authenticates (PLAIN or AMQPLAIN).
   Refused credentials end the connection, with a 403 connection.close first when the client
   announced ``authentication_failure_close``.
3. ``AWAIT_TUNE_OK``: tune was sent; the client may lower channel_max/frame_max/heartbeat, never
   raise them (530, RabbitMQ's rabbit_reader:validate_negotiated_integer_value).
4. ``AWAIT_OPEN``: connection.open selects the vhost (530 when missing or not permitted).
5. ``OPEN``: channels carry methods and content.
6. ``CLOSING``: we sent connection.close; everything but close/close-ok is discarded (spec 2.2.4).
7. ``CLOSED``: the server closes the socket once :attr:`output` is flushed.

The states and their allowed transitions are in :mod:`.state`; frames and the fast runs of
publishes and acks in :mod:`.framing` (a base class of :class:`Connection`); content assembly in
:mod:`.content`. Every protocol error is turned into channel.close or connection.close in exactly
one place, :meth:`Connection._fail`, and every end of a connection goes through
:meth:`Connection._terminate`.

The server layer drives this class: it feeds :meth:`receive_data`, sends :attr:`output` when
its ``on_output`` tells it there is something new, calls :meth:`heartbeat_tick` on a timer,
:meth:`writer_drained` after each flush, :meth:`set_publish_hold` when flow control changes and
:meth:`connection_lost` when the socket is gone.
"""

from __future__ import annotations

import logging
import platform
import struct
from typing import Any, Callable, Final

from pamqp import commands
from pamqp import exceptions as pamqp_exceptions

from .. import __version__
from ..compiled import mypyc_attr
from ..broker.access import LOOPBACK_HINT
from ..broker.broker import Broker
from ..broker.session import Session
from ..errors import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    CHANNEL_SCOPED,
    CONNECTION_FORCED,
    COMMAND_INVALID,
    FRAME_ERROR,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    ConnectionLevelError,
)
from . import codec
from .channel import CHANNEL_HANDLERS, UNSUPPORTED, ChannelState
from .confirms import ConfirmBatcher
from .codec import (
    BASIC_ACK,
    BASIC_PUBLISH,
    FRAME_METHOD,
    decode_basic_publish,
    write_method_frame,
)
from .errortext import amqp_name, erlang_binary_w, octets_text
from .framing import FRAME_HEADER_FIELDS, METHOD_INDEX, PRE_TUNE_FRAME_MAX, FrameReader
from .method_layout import check_arguments
from .output import WRITE_LOW_WATER, Output
from .sasl import MECHANISMS, TLS_MECHANISMS, ExternalIdentity, parse_credentials
from .state import (  # noqa: F401  (ConnectionState and its names are this module's API too)
    AWAIT_HEADER,
    AWAIT_OPEN,
    AWAIT_START_OK,
    AWAIT_TUNE_OK,
    CLOSED,
    CLOSING,
    OPEN,
    ConnectionState,
    check_transition,
)

log = logging.getLogger("amqp_broker.connection")

# channel.open-ok (20, 11) with an empty channel-id longstr, then frame-end.
_CHANNEL_OPEN_OK_TAIL: Final = b"\x00\x14\x00\x0b\x00\x00\x00\x00\xce"

# The capabilities RabbitMQ 3.10 announces in connection.start; clients switch features on them.
SERVER_CAPABILITIES: Final = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}

def server_properties(cluster_name: str, identity: dict[str, str] | None = None) -> dict:
    """connection.start server-properties, with RabbitMQ's keys and capabilities; ``identity``
    replaces ``product``, ``version`` and ``platform`` where it has a non-empty value (the
    settings server_product... for clients that check for RabbitMQ)."""
    properties = {
        "capabilities": dict(SERVER_CAPABILITIES),
        "cluster_name": cluster_name,
        "copyright": "Copyright (c) the amqp_broker authors",
        "information": "amqp_broker: an AMQP 0-9-1 broker in Python",
        "platform": f"Python {platform.python_version()}",
        "product": "amqp_broker",
        "version": __version__,
    }
    for key, value in (identity or {}).items():
        if value:
            properties[key] = value
    return properties


def _method_ids(method: Any) -> tuple[int, int]:
    index = method.index
    return index >> 16, index & 0xFFFF


# Subclassed by an interpreted module (strict.py): a compiled build must allow it.
@mypyc_attr(allow_interpreted_subclasses=True)
class Connection(FrameReader):
    """One AMQP connection, server side, with no I/O of its own."""

    def __init__(
        self,
        broker: Broker,
        peer: str = "",
        *,
        heartbeat: int = 60,
        frame_max: int = 131072,
        channel_max: int = 2047,
        cluster_name: str = "amqp_broker",
        identity: dict[str, str] | None = None,
        max_message_size: int = 134217728,
        local: str = "",
        external: ExternalIdentity | None = None,
    ):
        self.broker = broker
        # Set on TLS connections only: what EXTERNAL logs in with (see .sasl.TLS_MECHANISMS), and
        # what an operator sees of the TLS session (RabbitMQ's ssl_* and peer_cert_* keys).
        self.external = external
        self.tls_details: dict | None = None
        self.peer = peer
        # Our end of the socket ("127.0.0.1:5672"), for the connection's name.
        self.local = local
        self.auth_mechanism = ""
        # The transport's own forced close (the server's cancels a held read too).
        self.on_force_close: Callable[[str], None] | None = None
        # Everything to send; the server's writer takes it from there.
        self.output = Output()
        self.state: ConnectionState = AWAIT_HEADER
        self.server_heartbeat = heartbeat
        self.server_frame_max = frame_max
        self.server_channel_max = channel_max
        self.cluster_name = cluster_name
        self.identity = identity
        self.max_message_size = max_message_size
        self.heartbeat = 0
        self.frame_max = PRE_TUNE_FRAME_MAX
        self.channel_max = channel_max
        self.channels: dict[int, ChannelState] = {}
        self.session: Session | None = None
        self.user: Any = None
        self.client_properties: dict = {}
        # Publisher confirms held back to coalesce them (see .confirms for when they go).
        self.confirms = ConfirmBatcher()
        self.delivery_blocked = False
        # Set when the socket should be closed once the output is flushed.
        self.finished = False
        self.close_reason = ""
        # The start of a frame the last read ended in the middle of.
        self._tail = bytearray()
        self._auth_failure_close = False
        # Set when start-ok's credentials were refused: broker/login_log.py logs that, rate
        # limited, so the lines that would follow for each connection are left to debug.
        self.login_refused = False
        # True once a message was published here: only such connections feed the store's backlog.
        self.publishing = False
        # Set by the server while publishes must wait (an alarm, or the store's flow control):
        # None, or the connection.blocked reason to tell a client that publishes meanwhile ("" for
        # a silent hold, as RabbitMQ's internal flow control is). Input is then handled up to the
        # first publish method or content frame, and the rest waits in ``held_input``.
        self.hold_publishes: str | None = None
        self.held_input: bytes | None = None
        self._blocked_capable = False
        self._blocked_sent = False
        # Protocol violations noted (rule -> count), and who is told of each (see .violations).
        self.violations: dict[str, int] = {}
        self.violation_listeners: list = []

    # -- output -----------------------------------------------------------------------------------

    @property
    def out(self) -> bytearray:
        """The output buffer frames are appended to (``output.buf``; the writer swaps it)."""
        return self.output.buf

    def wake(self) -> None:
        """Tell the server there is output, if there was none (call before appending)."""
        self.output.wake()

    def send_method(self, channel: int, method: Any) -> None:
        """Queue one method frame (non-hot path, encoded by pamqp)."""
        output = self.output
        output.wake()
        write_method_frame(output.buf, channel, method)

    # -- frames -----------------------------------------------------------------------------------

    def _on_method(self, number: int, buf: Any, start: int, end: int, end_all: int = 0) -> int:
        """Handle one method frame; returns the position after any content frames it consumed
        too (the publish fast path), or 0."""
        if end - start < 4:
            raise ConnectionLevelError(FRAME_ERROR, "method frame too short")
        index = METHOD_INDEX.unpack_from(buf, start)[0]
        state = self.state
        if state == OPEN and number:
            channel = self.channels.get(number)
            if channel is not None and not channel.closing and channel.content is None:
                if index == BASIC_PUBLISH:
                    try:
                        publish = decode_basic_publish(buf, start + 4, end)
                    except ValueError as exc:
                        raise ConnectionLevelError(SYNTAX_ERROR, f"basic.publish: {exc}") from None
                    return self._publish_inline(channel, publish, buf, start - 7, end_all)
                if index == BASIC_ACK:
                    return self._ack_run(channel, buf, start, end, end_all)
        if number and state == OPEN and self.output.full():
            # A client that asks faster than it reads (a pipeline of basic.get, say) waits with
            # the rest of its input until its replies drain: replies share the bound that holds
            # deliveries back, so unread replies cannot grow without limit. Publishes and acks
            # (above) are not held: their replies are small and they make room.
            self.held_input = b""  # receive_data fills in the rest of its input
            return -1
        self._dispatch_owed()  # any other method sees the deliveries earlier acks made room for
        try:
            method = commands.INDEX_MAPPING[index]()
        except KeyError:
            # RabbitMQ drops the socket without a close frame for a method it cannot parse.
            log.warning("%s: unknown method class %d method %d", self.peer, index >> 16, index & 0xFFFF)
            self._terminate(f"unknown method class {index >> 16} method {index & 0xFFFF}")
            return 0
        try:
            check_arguments(index, buf, start + 4, end)
            method.unmarshal(bytes(buf[start + 4 : end]))
        except (struct.error, ValueError, TypeError, IndexError, EOFError, UnicodeDecodeError,
                pamqp_exceptions.PAMQPException):
            raise ConnectionLevelError(
                FRAME_ERROR, f"cannot decode {erlang_binary_w(buf[start + 4 : end])}",
                index >> 16, index & 0xFFFF,
            ) from None
        if state == CLOSING:
            if isinstance(method, commands.Connection.CloseOk):
                self._terminate("closed")
            elif isinstance(method, commands.Connection.Close):
                self.send_method(0, commands.Connection.CloseOk())
                self._terminate("closed")
            return 0
        if state < AWAIT_OPEN and (number or not isinstance(method, (commands.Connection.StartOk, commands.Connection.TuneOk))):
            # Before authentication RabbitMQ answers nothing unexpected; it just closes.
            self._terminate(f"unexpected {amqp_name(method)} during the handshake")
            return 0
        if number == 0:
            self._on_connection_method(method)
            return 0
        if state != OPEN:
            raise ConnectionLevelError(
                UNEXPECTED_FRAME, octets_text(1, buf[start:end])
            )
        self._on_channel_method(number, method)
        return 0

    # -- connection class (channel 0) -------------------------------------------------------------

    def _send_start(self) -> None:
        self._enter(AWAIT_START_OK)
        self.send_method(
            0,
            commands.Connection.Start(
                version_major=0,
                version_minor=9,
                server_properties=server_properties(self.cluster_name, self.identity),
                mechanisms=TLS_MECHANISMS if self.external and self.external.certificate else MECHANISMS,
                locales="en_US",
            ),
        )

    def _on_connection_method(self, method: Any) -> None:
        state = self.state
        try:
            if isinstance(method, commands.Connection.StartOk) and state == AWAIT_START_OK:
                self._on_start_ok(method)
            elif isinstance(method, commands.Connection.TuneOk) and state == AWAIT_TUNE_OK:
                self._on_tune_ok(method)
            elif isinstance(method, commands.Connection.Open) and state == AWAIT_OPEN:
                self.session = self.broker.open_session(
                    self.user, method.virtual_host, self.client_properties, self.peer
                )
                self._describe_session(self.session)
                self._enter(OPEN)
                self.send_method(0, commands.Connection.OpenOk())
                log.info(
                    "%s: connection opened (user '%s', vhost '%s')",
                    self.peer, self.user.name, method.virtual_host,
                )
            elif isinstance(method, commands.Connection.Close):
                self.confirms.flush()
                self.send_method(0, commands.Connection.CloseOk())
                if method.reply_code not in (0, 200):
                    log.info("%s: client closed the connection: %s %s",
                             self.peer, method.reply_code, method.reply_text)
                self._terminate("closed by client")
            elif isinstance(method, commands.Connection.CloseOk):
                self._terminate("closed")
            elif isinstance(method, commands.Connection.UpdateSecret) and state == OPEN:
                # RabbitMQ hands the new secret to each auth backend whose state can expire; the
                # internal (PLAIN/AMQPLAIN user database) backend's cannot, so any secret is
                # accepted unchecked and the connection carries on (rabbit_access_control).
                log.info("%s: user '%s' updated its secret (reason: %s)",
                         self.peer, self.user.name, method.reason)
                self.send_method(0, commands.Connection.UpdateSecretOk())
            else:
                # rabbit_reader names its state: "opening" until connection.open, then "running".
                phase = "opening" if state == AWAIT_OPEN else "running"
                raise ConnectionLevelError(CHANNEL_ERROR, f"unexpected method in connection state {phase}")
        except AMQPError as exc:
            class_id, method_id = _method_ids(method)
            self._fail(exc, 0, class_id, method_id)

    def _local_host(self) -> str | None:
        """Our end's address without the port ("127.0.0.1:5672" -> "127.0.0.1"); None for a
        connection without a socket (in-process), which is as local as a connection gets."""
        if not self.local:
            return None
        return self.local.rpartition(":")[0] if ":" in self.local else self.local

    def _describe_session(self, session: Session) -> None:
        """Give the core what an operator sees of this connection, and a way to close it."""
        if self.local:
            session.name = f"{self.peer} -> {self.local}"
        session.details = {
            "protocol": "AMQP 0-9-1",
            "auth_mechanism": self.auth_mechanism,
            "frame_max": self.frame_max,
            "channel_max": self.channel_max,
            "timeout": self.heartbeat,
            "local": self.local,
        }
        if self.tls_details:
            session.details.update(self.tls_details)
        session.closer = self.force_close

    def force_close(self, reply_text: str) -> None:
        """Close with 320 CONNECTION_FORCED (an operator's or a shutdown's close); the transport
        may replace this with its own (see :attr:`on_force_close`)."""
        if self.on_force_close is not None:
            self.on_force_close(reply_text)
        elif self.state == OPEN:
            self.close(CONNECTION_FORCED, reply_text)
            self.output.on_output()
        else:
            self.connection_lost()

    def _on_start_ok(self, method: Any) -> None:
        self.client_properties = method.client_properties or {}
        capabilities = self.client_properties.get("capabilities") or {}
        self._auth_failure_close = bool(capabilities.get("authentication_failure_close"))
        self._blocked_capable = bool(capabilities.get("connection.blocked"))
        mechanism = method.mechanism
        self.auth_mechanism = mechanism
        if mechanism == "EXTERNAL" and self.external is not None:
            username = self.external.username
            user = None if username is None else self.broker.external_user(username)
            if user is None:
                # RabbitMQ's reasons (rabbit_auth_mechanism_ssl, rabbit_auth_backend_internal).
                self._refuse_login(mechanism, self.external.refusal or f"user '{username}' - invalid credentials")
                return
            self._login(user, mechanism)
            return
        credentials = parse_credentials(mechanism, method.response)
        if credentials is None:
            # An unknown mechanism or a malformed response is a protocol error to RabbitMQ, not a
            # refused login: the socket is dropped without connection.close, whatever the client's
            # capabilities.
            log.warning("%s: invalid %s authentication response; closing", self.peer, mechanism)
            self._terminate(f"invalid {mechanism} authentication response")
            return
        username, password = credentials
        user = self.broker.authenticate(username, password)
        if user is None:
            self._refuse_login(mechanism, f"user '{username}' - invalid credentials")
            return
        self._login(user, mechanism)

    def _login(self, user: Any, mechanism: str) -> None:
        """Authenticated: refused still when loopback_users forbids it here, else tune."""
        refusal = self.broker.loopback_refusal(user.name, self._local_host())
        if refusal is not None:
            # RabbitMQ's words, then the setting that lifts it.
            self._refuse_login(mechanism, f"{refusal} ({LOOPBACK_HINT})")
            return
        self.user = user
        self._enter(AWAIT_TUNE_OK)
        self.send_method(
            0,
            commands.Connection.Tune(
                channel_max=self.server_channel_max,
                frame_max=self.server_frame_max,
                heartbeat=self.server_heartbeat,
            ),
        )

    def _refuse_login(self, mechanism: str, reason: str) -> None:
        self.login_refused = True
        # Logged once per peer address and interval, later ones counted (broker/login_log.py).
        self.broker.failed_logins.refused(self.peer, "%s: %s login refused: %s", self.peer, mechanism, reason)
        reply_text = ConnectionLevelError(
            ACCESS_REFUSED,
            f"Login was refused using authentication mechanism {mechanism}. "
            "For details see the broker logfile.",
        ).reply_text
        if self._auth_failure_close:
            self.close(ACCESS_REFUSED, reply_text)  # class/method 0, as RabbitMQ sends it
        else:
            self._terminate(reply_text)

    def _on_tune_ok(self, method: Any) -> None:
        self.frame_max = _negotiate("frame_max", codec.FRAME_MIN_SIZE, self.server_frame_max, method.frame_max)
        self.channel_max = _negotiate("channel_max", 1, self.server_channel_max, method.channel_max)
        if not self.frame_max:
            self.frame_max = 1 << 32
        if not self.channel_max:
            self.channel_max = 65535
        self.heartbeat = method.heartbeat
        self._enter(AWAIT_OPEN)

    # -- channels ---------------------------------------------------------------------------------

    def _on_channel_method(self, number: int, method: Any) -> None:
        channel = self.channels.get(number)
        if channel is None:
            if isinstance(method, commands.Channel.Open):
                # RabbitMQ limits how many channels are open, not their numbers (channel 2048 opens
                # fine with channel_max 2047), and names no method in the error.
                if len(self.channels) >= self.channel_max:
                    self._fail(
                        ConnectionLevelError(
                            NOT_ALLOWED,
                            f"number of channels opened ({len(self.channels)}) has reached the "
                            f"negotiated channel_max ({self.channel_max})",
                        ),
                        0, 0, 0,
                    )
                    return
                channel = ChannelState(self, number)
                assert self.session is not None
                try:
                    channel.core = self.session.open_channel(number, channel)
                except AMQPError as exc:  # the user's max-channels: names no method either
                    self._fail(exc, 0, 0, 0)
                    return
                self.channels[number] = channel
                # RabbitMQ's open-ok carries an empty channel-id; pamqp insists on "0".
                output = self.output
                output.wake()
                output.buf += FRAME_HEADER_FIELDS.pack(FRAME_METHOD, number, 8) + _CHANNEL_OPEN_OK_TAIL
                return
            class_id, method_id = _method_ids(method)
            self._fail(ConnectionLevelError(CHANNEL_ERROR, "expected 'channel.open'"), number, class_id, method_id)
            return
        if channel.closing:
            if isinstance(method, commands.Channel.CloseOk):
                del self.channels[number]
            elif isinstance(method, commands.Channel.Close):
                self.send_method(number, commands.Channel.CloseOk())
            return
        if channel.content is not None:
            self._fail(channel.content.method_error(), number, 60, 40)
            return
        handler = CHANNEL_HANDLERS.get(type(method))
        try:
            if handler is None:
                raise ConnectionLevelError(
                    NOT_IMPLEMENTED if type(method) in UNSUPPORTED else COMMAND_INVALID,
                    # rabbit_channel's catch-all clause for methods a client may not send.
                    "unimplemented method",
                )
            persistence = self.broker.persistence
            writes = persistence.store.writes if persistence is not None else 0
            handler(self, channel, method)
            if persistence is not None and persistence.store.writes != writes:
                # This method (a durable declaration, binding or deletion, a tx.commit of
                # persistent messages) wrote to the store: its reply, and everything after it so
                # that order holds, waits for the commit, so what a client was told is done
                # survives a crash right after.
                self.output.barrier = persistence.store.batch_id
        except AMQPError as exc:
            class_id, method_id = _method_ids(method)
            self._fail(exc, number, class_id, method_id)

    # -- errors and lifecycle ---------------------------------------------------------------------

    def _fail(self, exc: AMQPError, channel_number: int, class_id: int, method_id: int) -> None:
        """The one place an error becomes channel.close or connection.close."""
        # Publishes before the failing frame were routed: their confirms go out first, not
        # never (they are only held back to coalesce them per read).
        self.confirms.flush()
        class_id = exc.class_id or class_id
        method_id = exc.method_id or method_id
        channel = self.channels.get(channel_number) if channel_number else None
        if isinstance(exc, ChannelError) and exc.reply_code in CHANNEL_SCOPED and channel is not None:
            log.warning("%s: channel %d error: %s", self.peer, channel_number, exc.reply_text)
            channel.core.close()
            channel.closing = True
            channel.content = None
            self.confirms.discard(channel)
            self.send_method(
                channel_number,
                commands.Channel.Close(
                    reply_code=exc.reply_code, reply_text=exc.reply_text,
                    class_id=class_id, method_id=method_id,
                ),
            )
            return
        self.close(exc.reply_code, exc.reply_text, class_id, method_id)

    def close(self, reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0) -> None:
        """Server-initiated connection.close; the socket stays until close-ok (or a timeout)."""
        if self.state in (CLOSING, CLOSED):
            return
        level = logging.INFO if reply_code == CONNECTION_FORCED else logging.WARNING
        if self.login_refused:
            level = logging.DEBUG  # the refusal was logged already, once per peer and interval
        log.log(level, "%s: closing connection: %s", self.peer, reply_text)
        self._release()
        # Before tune-ok RabbitMQ answers only a refused login (start-ok) or a failed negotiation
        # (tune-ok, 530) with connection.close; any other error just drops the socket.
        if (self.state == AWAIT_START_OK and reply_code != ACCESS_REFUSED) or (
            self.state == AWAIT_TUNE_OK and reply_code != NOT_ALLOWED
        ):
            self._terminate(reply_text)
            return
        self.send_method(
            0,
            commands.Connection.Close(
                reply_code=reply_code, reply_text=reply_text, class_id=class_id, method_id=method_id
            ),
        )
        self._enter(CLOSING)
        self.close_reason = reply_text
        if reply_code == ACCESS_REFUSED and self.session is None:
            # Refused logins end right after the close frame (rabbit_reader does the same).
            self._terminate(reply_text)

    def _enter(self, state: ConnectionState) -> None:
        """Move to ``state``, one of those :data:`~amqp_broker.protocol.state.TRANSITIONS` allows."""
        check_transition(self.state, state)
        self.state = state

    def _terminate(self, reason: str = "", *, wake: bool = True) -> None:
        """End the connection: free its broker state and mark it finished, so the server closes
        the socket once the output is flushed. ``reason`` is kept unless one was set already (a
        close we sent names the cause); ``wake`` tells the server at once (not needed when the
        server itself reported the end)."""
        self._release()
        if reason and not self.close_reason:
            self.close_reason = reason
        self._enter(CLOSED)
        self.finished = True
        if wake:
            self.output.on_output()

    def _release(self) -> None:
        """Free what the connection holds in the broker (it may still send a close and wait)."""
        session, self.session = self.session, None
        self.confirms.clear()
        for channel in self.channels.values():
            # A half-received body (up to max_message_size) goes now, not whenever the cyclic
            # collector gets to this connection's objects.
            channel.content = None
        if session is not None:
            session.close()

    def connection_lost(self, reason: str = "") -> None:
        """The socket is gone: free broker state (requeue unacked, drop exclusive queues).
        ``reason`` names the end unless one was named already (a close we sent, say)."""
        self._terminate(reason, wake=False)

    def set_publish_hold(self, reason: str | None) -> None:
        """Flow control changed: see :attr:`hold_publishes` (None lets publishes go on)."""
        self.hold_publishes = reason

    def notify_blocked(self, reason: str) -> None:
        """An alarm went off: tell a client that understands connection.blocked (RabbitMQ)."""
        if self.state == OPEN and self._blocked_capable and not self._blocked_sent:
            self._blocked_sent = True
            self.send_method(0, commands.Connection.Blocked(reason=reason))

    def notify_unblocked(self) -> None:
        """The alarms cleared: connection.unblocked to those that were told they were blocked."""
        if self._blocked_sent and self.state == OPEN:
            self._blocked_sent = False
            self.send_method(0, commands.Connection.Unblocked())

    def heartbeat_tick(self, idle_receive: float, idle_send: float) -> bool:
        """Timer hook: send a heartbeat when we've been quiet; False when the peer is dead.

        ``idle_receive``/``idle_send`` are seconds since the last byte in/out. A peer silent for
        two heartbeat intervals is gone (spec 4.2.7; RabbitMQ uses the same factor).
        """
        if not self.heartbeat or self.state in (AWAIT_HEADER, CLOSED):
            return True
        if idle_receive > 2 * self.heartbeat:
            log.warning("%s: missed heartbeats from client, timeout: %ds", self.peer, self.heartbeat)
            self._terminate(wake=False)
            # Named even when a close of ours was under way: the peer never answered it.
            self.close_reason = "missed heartbeats"
            return False
        if idle_send >= self.heartbeat / 2:
            output = self.output
            output.wake()
            output.buf += codec.HEARTBEAT_FRAME
        return True

    def writer_drained(self) -> None:
        """The writer flushed the output; resume deliveries held back while it was full."""
        if self.delivery_blocked and self.output.size() < WRITE_LOW_WATER:
            self.delivery_blocked = False
            session = self.session
            if session is not None:
                for channel in list(session.channels.values()):
                    channel.resume()


def _negotiate(field: str, minimum: int, server_value: int, client_value: int) -> int:
    """RabbitMQ's rule: a client value may lower the server's, never raise it (530)."""
    # RabbitMQ names connection.tune (10, 30) as the failing method, and says "(no limit)" for a
    # channel_max of 0.
    if client_value != 0 and client_value < minimum:
        raise ConnectionLevelError(
            NOT_ALLOWED,
            f"negotiated {field} = {client_value} is lower than the minimum allowed value ({minimum})",
            10, 30,
        )
    if server_value != 0 and (client_value == 0 or client_value > server_value):
        detail = " (no limit)" if field == "channel_max" and client_value == 0 else ""
        raise ConnectionLevelError(
            NOT_ALLOWED,
            f"negotiated {field} = {client_value}{detail} is higher than the maximum allowed value "
            f"({server_value})",
            10, 30,
        )
    return client_value
