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
7. ``CLOSED``: the server closes the socket once :attr:`out` is flushed.

Until tune-ok a frame may be at most 8192 bytes; after it, frame_max. Every protocol error is
turned into channel.close or connection.close in exactly one place, :meth:`Connection._fail`.

The server layer drives this class: it feeds :meth:`receive_data`, sends :attr:`out` when
:attr:`on_output` tells it there is something new, calls :meth:`heartbeat_tick` on a timer,
:meth:`writer_drained` after each flush and :meth:`connection_lost` when the socket is gone.
"""

from __future__ import annotations

import logging
import platform
import struct
from typing import Any, Callable

from pamqp import commands
from pamqp import exceptions as pamqp_exceptions

from .. import __version__
from ..broker.broker import Broker
from ..broker.message import Message
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
    PRECONDITION_FAILED,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    ConnectionError,
)
from . import codec
from .channel import (
    CHANNEL_HANDLERS,
    DIRECT_REPLY_MARKER,
    EMPTY_PROPERTIES,
    REPLY_TO_FLAG,
    UNSUPPORTED,
    WRITE_HIGH_WATER,
    WRITE_LOW_WATER,
    ChannelState,
)
from .codec import (
    FRAME_END_BYTE,
    BASIC_ACK,
    BASIC_PUBLISH,
    FRAME_BODY,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    decode_basic_ack,
    decode_basic_publish,
    decode_content_header,
    peek_properties,
    write_method_frame,
)
from .errortext import amqp_name, erlang_binary_w, octets_text
from .sasl import MECHANISMS, parse_credentials

log = logging.getLogger("amqp_broker.connection")

Message.headers_decoder = staticmethod(codec.peek_headers)  # type: ignore[assignment]
Message.properties_decoder = staticmethod(codec.properties_to_dict)  # type: ignore[assignment]
Message.properties_encoder = staticmethod(codec.properties_from_dict)  # type: ignore[assignment]
Message.properties_peeker = staticmethod(peek_properties)  # type: ignore[assignment]

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
# Before tune-ok the peer does not know our frame_max yet; RabbitMQ bounds such frames too.
PRE_TUNE_FRAME_MAX = 8192
_FRAME_HEADER = struct.Struct(">BHI")
_METHOD_INDEX = struct.Struct(">I")
# body-size in a content header payload: after class-id (2) and weight (2).
_BODY_SIZE = struct.Struct(">Q")
# channel.open-ok (20, 11) with an empty channel-id longstr, then frame-end.
_CHANNEL_OPEN_OK_TAIL = b"\x00\x14\x00\x0b\x00\x00\x00\x00\xce"
# basic.properties flag bit of user-id (spec 4.2.6.1 order: bit 4 of the low octet).
_USER_ID_FLAG = 0x10

# The capabilities RabbitMQ 3.10 announces in connection.start; clients switch features on them.
SERVER_CAPABILITIES = {
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

AWAIT_HEADER, AWAIT_START_OK, AWAIT_TUNE_OK, AWAIT_OPEN, OPEN, CLOSING, CLOSED = range(7)



def server_properties(cluster_name: str) -> dict:
    """connection.start server-properties, with RabbitMQ's keys and capabilities."""
    return {
        "capabilities": dict(SERVER_CAPABILITIES),
        "cluster_name": cluster_name,
        "copyright": "Copyright (c) the amqp_broker authors",
        "information": "amqp_broker: an AMQP 0-9-1 broker in Python",
        "platform": f"Python {platform.python_version()}",
        "product": "amqp_broker",
        "version": __version__,
    }


def _method_ids(method: Any) -> tuple[int, int]:
    index = method.index
    return index >> 16, index & 0xFFFF




class Connection:
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
        max_message_size: int = 134217728,
    ):
        self.broker = broker
        self.peer = peer
        self.out = bytearray()
        # Large bodies queued ahead of ``out`` without being copied (see add_piece).
        self.out_pieces: list = []
        self.pieces_bytes = 0
        # Called when ``out`` goes from empty to non-empty: the server wakes its writer.
        self.on_output: Callable[[], None] = lambda: None
        self.state = AWAIT_HEADER
        self.server_heartbeat = heartbeat
        self.server_frame_max = frame_max
        self.server_channel_max = channel_max
        self.cluster_name = cluster_name
        self.max_message_size = max_message_size
        self.heartbeat = 0
        self.frame_max = PRE_TUNE_FRAME_MAX
        self.channel_max = channel_max
        self.channels: dict[int, ChannelState] = {}
        self.session: Session | None = None
        self.user: Any = None
        self.client_properties: dict = {}
        self.pending_confirms: dict[ChannelState, None] = {}
        self.delivery_blocked = False
        # Set when the socket should be closed once ``out`` is flushed.
        self.finished = False
        self.close_reason = ""
        # The start of a frame the last read ended in the middle of.
        self._tail = bytearray()
        self._auth_failure_close = False
        # True once a message was published here: only such connections feed the store's backlog.
        self.publishing = False
        # Set by the server while publishes must wait (an alarm, or the store's flow control):
        # None, or the connection.blocked reason to tell a client that publishes meanwhile ("" for
        # a silent hold, as RabbitMQ's internal flow control is). Input is then handled up to the
        # first publish method or content frame, and the rest waits in ``held_input``.
        self.hold_publishes: str | None = None
        self.held_input: bytes | None = None
        # A store batch id: output may not be sent before that batch is committed (0: none).
        self.output_barrier = 0
        self._blocked_capable = False
        self._blocked_sent = False

    # -- output -----------------------------------------------------------------------------------

    def wake(self) -> None:
        """Tell the server there is output, if ``out`` was empty (call before appending)."""
        if not self.out:
            self.on_output()

    def add_piece(self, body: bytes) -> None:
        """Queue ``body`` after everything written so far without copying it: ``out`` becomes a
        piece, then the body, and writing resumes in a fresh ``out`` with the body frame's end."""
        pieces = self.out_pieces
        pieces.append(self.out)
        pieces.append(body)
        self.pieces_bytes += len(self.out) + len(body)
        self.out = bytearray(FRAME_END_BYTE)

    def take_output(self) -> list:
        """Everything to send, in order, as buffers (the writer sends them with one sendmsg)."""
        pieces = self.out_pieces
        self.out_pieces = []
        self.pieces_bytes = 0
        pieces.append(self.out)
        self.out = bytearray()
        return pieces

    def send_method(self, channel: int, method: Any) -> None:
        """Queue one method frame (non-hot path, encoded by pamqp)."""
        self.wake()
        write_method_frame(self.out, channel, method)

    # -- input ------------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Handle every complete frame in ``data`` (plus what was left over from before)."""
        if self.state == CLOSED:
            return
        if type(data) is not bytes:
            data = bytes(data)
        tail = self._tail
        if self.state == AWAIT_HEADER:
            if tail:
                data = bytes(tail) + data
                tail.clear()
            if len(data) < 8:
                tail += data
                return
            if data[:8] != PROTOCOL_HEADER:
                log.warning("%s: bad protocol header %r", self.peer, data[:8])
                self.wake()
                self.out += PROTOCOL_HEADER
                self._finish("bad protocol header")
                return
            self._send_start()
            data = data[8:]
        session = self.session
        if session is not None:
            session.owed_dispatch = {}
        pos = 0
        try:
            if tail:
                # A frame straddles the previous read and this one. Only that frame's bytes are
                # joined (not the whole read, which may be 256 KiB of further frames); the rest
                # is parsed in place, so every body is copied out of ``data`` exactly once.
                pos = self._complete_tail(tail, data)
                if pos < 0:
                    return
            if pos < len(data):
                pos = self._parse(data, pos)
                if self.held_input is not None:
                    self.held_input = data[pos:]
                    return
        except AMQPError as exc:
            # Framing errors leave the byte stream unparseable: close without waiting for close-ok.
            self._fail(exc, 0, 0, 0)
            self._finish(exc.reply_text)
            return
        finally:
            if session is not None:
                # Deliveries freed by this read's acks go out before its confirms, as they would
                # have had each ack dispatched at once.
                if session.owed_dispatch:
                    session.dispatch_owed()
                session.owed_dispatch = None
            if self.pending_confirms:
                self.flush_confirms()
        if pos < len(data) and self.state != CLOSED:
            tail += memoryview(data)[pos:]

    def output_full(self) -> bool:
        """Whether the output is over its bound (WRITE_HIGH_WATER): deliveries wait, and so does
        any method but a publish or an ack (their replies are small and they make room)."""
        return len(self.out) + self.pieces_bytes > WRITE_HIGH_WATER

    def resume_input(self) -> None:
        """Handle the input held back while publishes had to wait (:attr:`hold_publishes`)."""
        data, self.held_input = self.held_input, None
        if data:
            self.receive_data(data)

    def _hold_here(self, frame_type: int, buf: Any, start: int, end: int) -> bool:
        """Whether a publish must wait at this frame (only called while holding): a content
        frame, or basic.publish. A client that announced the capability is told it is blocked
        the first time, as RabbitMQ tells a connection that publishes during an alarm."""
        if self.state != OPEN or not (
            frame_type in (FRAME_HEADER, FRAME_BODY)
            or (frame_type == FRAME_METHOD and end - start >= 4
                and _METHOD_INDEX.unpack_from(buf, start)[0] == BASIC_PUBLISH)
        ):
            return False
        if self.hold_publishes:
            self.notify_blocked(self.hold_publishes)
        self.held_input = b""  # receive_data fills in the rest of its input
        return True

    def partial_frame_size(self) -> int:
        """Payload size of the frame the last read ended inside; 0 when it ended between frames
        or inside a frame header (the I/O layer sizes its next read by it)."""
        tail = self._tail
        if len(tail) < 7 or self.state == AWAIT_HEADER:
            return 0
        return _FRAME_HEADER.unpack_from(tail)[2]

    def _complete_tail(self, tail: bytearray, data: bytes) -> int:
        """Add to ``tail`` (a partial frame) what ``data`` holds of it, and handle the frame once
        complete. Returns where the rest of ``data`` starts, or -1 when the frame is still
        incomplete (or the connection closed)."""
        missing = 7 - len(tail)
        if missing > 0:
            if len(data) < missing:
                tail += data
                return -1
            tail += memoryview(data)[:missing]
            used = missing
        else:
            used = 0
        size = _FRAME_HEADER.unpack_from(tail)[2]
        if size > self.frame_max:
            self._parse(bytes(tail), 0)  # raises the frame-size error
        need = 8 + size - len(tail)  # 7-byte header + payload + frame-end, minus what we hold
        if len(data) - used < need:
            tail += memoryview(data)[used:]
            return -1
        tail += memoryview(data)[used : used + need]
        frame = bytes(tail)
        tail.clear()
        self._parse(frame, 0)
        if self.held_input is not None:
            self.held_input = frame + data[used + need :]
            return -1
        return -1 if self.state == CLOSED else used + need

    def _parse(self, buf: bytes, pos: int) -> int:
        """Handle every complete frame in ``buf`` from ``pos``; returns where an incomplete frame
        starts (``len(buf)`` when none). Framing errors raise."""
        end_all = len(buf)
        unpack_header = _FRAME_HEADER.unpack_from
        holding = self.hold_publishes is not None
        while end_all - pos >= 7:
            frame_start = pos
            frame_type, channel, size = unpack_header(buf, pos)
            start = pos + 7
            end = start + size
            # RabbitMQ accepts payloads up to frame_max (not frame_max - 8) but names the
            # spec's limit in the error.
            if size > self.frame_max:
                raise ConnectionError(
                    FRAME_ERROR,
                    octets_text(frame_type, b"", ("frame_too_large", size, self.frame_max - 8)),
                )
            if end >= end_all:
                break
            if buf[end] != FRAME_END:
                raise ConnectionError(
                    FRAME_ERROR,
                    octets_text(frame_type, buf[start:end], ("invalid_frame_end_marker", buf[end])),
                )
            if holding and channel and self._hold_here(frame_type, buf, start, end):
                return pos
            pos = end + 1
            if frame_type == FRAME_METHOD:
                after = self._on_method(channel, buf, start, end, end_all)
                if after:
                    if after < 0:
                        return frame_start  # held: see output_full
                    pos = after
            elif frame_type == FRAME_BODY:
                self._on_body(channel, buf, start, end)
            elif frame_type == FRAME_HEADER:
                self._on_header(channel, buf, start, end)
            elif frame_type == FRAME_HEARTBEAT:
                if channel != 0:
                    raise ConnectionError(UNEXPECTED_FRAME, octets_text(8, buf[start:end]))
            else:
                raise ConnectionError(FRAME_ERROR, octets_text(frame_type, buf[start:end], "unknown_frame"))
            if self.state == CLOSED:
                return end_all
        return pos

    def flush_confirms(self) -> None:
        """Write the coalesced publisher confirms of every channel (one ack per channel)."""
        pending = self.pending_confirms
        self.pending_confirms = {}
        for channel in pending:
            channel.flush_confirms()

    # -- frames -----------------------------------------------------------------------------------

    def _on_method(self, number: int, buf: Any, start: int, end: int, end_all: int = 0) -> int:
        """Handle one method frame; returns the position after any content frames it consumed
        too (the publish fast path), or 0."""
        if end - start < 4:
            raise ConnectionError(FRAME_ERROR, "method frame too short")
        index = _METHOD_INDEX.unpack_from(buf, start)[0]
        state = self.state
        if state == OPEN and number:
            channel = self.channels.get(number)
            if channel is not None and not channel.closing and channel.body_size < 0 and channel.publish is None:
                if index == BASIC_PUBLISH:
                    try:
                        publish = decode_basic_publish(buf, start + 4, end)
                    except ValueError as exc:
                        raise ConnectionError(SYNTAX_ERROR, f"basic.publish: {exc}") from None
                    return self._publish_inline(channel, publish, buf, start - 7, end_all)
                if index == BASIC_ACK:
                    return self._ack_run(channel, buf, start, end, end_all)
        if number and state == OPEN and self.output_full():
            # A client that asks faster than it reads (a pipeline of basic.get, say) waits with
            # the rest of its input until its replies drain: replies share the bound that holds
            # deliveries back, so unread replies cannot grow without limit.
            self.held_input = b""  # receive_data fills in the rest of its input
            return -1
        self._dispatch_owed()  # any other method sees the deliveries earlier acks made room for
        try:
            method = commands.INDEX_MAPPING[index]()
        except KeyError:
            # RabbitMQ drops the socket without a close frame for a method it cannot parse.
            log.warning("%s: unknown method class %d method %d", self.peer, index >> 16, index & 0xFFFF)
            self._finish(f"unknown method class {index >> 16} method {index & 0xFFFF}")
            return
        try:
            method.unmarshal(bytes(buf[start + 4 : end]))
        except (struct.error, ValueError, TypeError, IndexError, UnicodeDecodeError,
                pamqp_exceptions.PAMQPException):
            raise ConnectionError(
                FRAME_ERROR, f"cannot decode {erlang_binary_w(buf[start + 4 : end])}",
                index >> 16, index & 0xFFFF,
            ) from None
        if state == CLOSING:
            if isinstance(method, commands.Connection.CloseOk):
                self._finish("closed")
            elif isinstance(method, commands.Connection.Close):
                self.send_method(0, commands.Connection.CloseOk())
                self._finish("closed")
            return
        if state < AWAIT_OPEN and (number or not isinstance(method, (commands.Connection.StartOk, commands.Connection.TuneOk))):
            # Before authentication RabbitMQ answers nothing unexpected; it just closes.
            self._finish(f"unexpected {amqp_name(method)} during the handshake")
            return
        if number == 0:
            self._on_connection_method(method)
            return
        if state != OPEN:
            raise ConnectionError(
                UNEXPECTED_FRAME, octets_text(1, buf[start:end])
            )
        self._on_channel_method(number, method)

    def _dispatch_owed(self) -> None:
        session = self.session
        if session is not None and session.owed_dispatch:
            session.dispatch_owed()

    def _publish_inline(self, channel: ChannelState, publish: tuple, buf: bytes, method_start: int, end_all: int) -> int:
        """The hot path: when the content header and the (single) body frame of a publish are
        already in the buffer, handle all three frames here, without the per-frame dispatch and
        channel-state bookkeeping. Anything unusual (a split body, another channel, a malformed
        frame) falls back to the frame-by-frame path, which owns every error. Returns the
        position after the frames consumed.

        A publisher sends runs of identical method frames (one channel, exchange and routing
        key), so while the next frame repeats this one byte for byte it is handled here as well:
        it needs neither the frame loop's checks nor a method decode, which were about a quarter
        of a small message's cost."""
        number = channel.number
        frame_max = self.frame_max
        max_message_size = self.max_message_size
        unpack_header = _FRAME_HEADER.unpack_from
        method_end = pos = method_start + 8 + unpack_header(buf, method_start)[2]
        method_frame = None
        while end_all - pos >= 22:
            frame_type, frame_channel, size = unpack_header(buf, pos)
            header_end = pos + 7 + size
            if not (frame_type == FRAME_HEADER and frame_channel == number and size >= 14
                    and header_end < end_all and size <= frame_max and buf[header_end] == FRAME_END
                    and buf[pos + 7] == 0 and buf[pos + 8] == 60):
                break
            body_size = _BODY_SIZE.unpack_from(buf, pos + 11)[0]
            if body_size > max_message_size:
                break  # refused by the frame loop
            if size == 14 and not buf[pos + 19] and not buf[pos + 20]:
                properties = EMPTY_PROPERTIES  # no properties: share one object
            else:
                properties = buf[pos + 19 : header_end]
            if body_size:
                body_pos = header_end + 1
                if end_all - body_pos < 7:
                    break
                frame_type, frame_channel, size = unpack_header(buf, body_pos)
                body_end = body_pos + 7 + size
                if not (frame_type == FRAME_BODY and frame_channel == number and size == body_size
                        and body_end < end_all and size <= frame_max and buf[body_end] == FRAME_END):
                    break
                self._publish(channel, publish, properties, buf[body_pos + 7 : body_end])
                pos = body_end + 1
            else:
                self._publish(channel, publish, properties, b"")
                pos = header_end + 1
            # A channel or connection error in that publish ends the run: what follows is the
            # frame loop's to handle (or ignore).
            if channel.closing or self.state != OPEN:
                return pos
            if method_frame is None:
                method_frame = buf[method_start:method_end]
            if not buf.startswith(method_frame, pos):
                return pos
            pos += len(method_frame)
        # The content of the publish whose method frame ends at ``pos`` comes frame by frame.
        channel.publish = publish
        return pos

    def _ack_run(self, channel: ChannelState, buf: bytes, start: int, end: int, end_all: int) -> int:
        """basic.ack, and the acks right behind it on the same channel: a consumer acking each
        message sends them back to back, and they differ only in the delivery tag, so the frames
        that repeat this one's first 11 bytes (header and method id) skip the frame loop and the
        decode. Returns the position after the last ack handled."""
        core = channel.core
        try:
            tag, multiple = decode_basic_ack(buf, start + 4, end)
        except ValueError as exc:
            raise ConnectionError(SYNTAX_ERROR, f"basic.ack: {exc}") from None
        prefix = None
        unpack_tag = codec._TAG_BITS.unpack_from  # delivery-tag, then the bits
        while True:
            try:
                core.basic_ack(tag, multiple)
            except ChannelError as exc:
                self._dispatch_owed()
                self._fail(exc, channel.number, 60, 80)
                return end + 1
            pos = end + 1
            if end_all - pos < 21 or channel.closing or self.state != OPEN:
                return pos
            if prefix is None:
                if end - start != 13:
                    return pos  # an ack with trailing bytes: the next one takes the long way
                prefix = buf[start - 7 : start + 4]
            if not buf.startswith(prefix, pos) or buf[pos + 20] != FRAME_END:
                return pos
            start = pos + 7
            end = pos + 20
            tag, bits = unpack_tag(buf, start + 4)
            multiple = bits & 1

    def _on_header(self, number: int, buf: Any, start: int, end: int) -> None:
        channel = self._content_channel(2, number, buf, start, end)
        if channel is None:
            return
        try:
            class_id, body_size, properties = decode_content_header(buf, start, end)
        except ValueError:
            raise ConnectionError(
                FRAME_ERROR, f"cannot decode {erlang_binary_w(buf[start:end])}", 60, 40
            ) from None
        if class_id != 60:
            raise ConnectionError(
                UNEXPECTED_FRAME,
                f"expected content header for class 60, got one for class {class_id} instead",
                60, 40,
            )
        if body_size > self.max_message_size:
            # Refused before any of the body is read, so an announced size costs no memory
            # (RabbitMQ 3.10 checks the assembled message, with the same 406 and text); the
            # closing channel then ignores the body frames that follow.
            self._fail(
                ChannelError(
                    PRECONDITION_FAILED,
                    f"message size {body_size} is larger than configured max size {self.max_message_size}",
                ),
                number, 60, 40,
            )
            return
        channel.properties = properties
        if body_size == 0:
            self._complete_publish(channel, b"")
            return
        channel.body_size = body_size
        channel.body_received = 0

    def _on_body(self, number: int, buf: Any, start: int, end: int) -> None:
        channel = self._content_channel(3, number, buf, start, end)
        if channel is None:
            return
        piece = buf[start:end]
        received = channel.body_received + len(piece)
        if received > channel.body_size:
            # RabbitMQ keeps waiting for "the rest" of an overlong body (its remaining size goes
            # negative), so the error comes with the next non-body frame: 505 "expected content
            # body". Drop what we have; the channel stays in this state until then.
            channel.body_parts = []
            channel.body_received = received
            return
        if received == channel.body_size:
            parts = channel.body_parts
            if parts:
                parts.append(piece)
                piece = b"".join(parts)
                channel.body_parts = []
            self._complete_publish(channel, piece)
        else:
            channel.body_parts.append(piece)
            channel.body_received = received

    def _content_channel(self, frame_type: int, number: int, buf: Any, start: int, end: int) -> ChannelState | None:
        """The channel a header/body frame belongs to, or None when it is to be ignored."""
        if self.state == CLOSING:
            return None
        if self.state != OPEN or number == 0:
            raise ConnectionError(
                UNEXPECTED_FRAME, octets_text(frame_type, buf[start:end])
            )
        channel = self.channels.get(number)
        if channel is None:
            raise ConnectionError(CHANNEL_ERROR, "expected 'channel.open'")
        if channel.closing:
            return None
        if channel.publish is None or (frame_type == 2) != (channel.body_size < 0):
            if channel.publish is not None:
                raise ConnectionError(
                    UNEXPECTED_FRAME,
                    "expected content body, got non content body frame instead", 60, 40,
                )
            raise ConnectionError(UNEXPECTED_FRAME, "expected method frame, got non method frame instead")
        return channel

    def _complete_publish(self, channel: ChannelState, body: bytes) -> None:
        publish = channel.publish
        properties = channel.properties
        channel.publish = None
        channel.body_size = -1
        channel.properties = EMPTY_PROPERTIES
        self._publish(channel, publish, properties, body)  # type: ignore[arg-type]

    def _publish(self, channel: ChannelState, publish: tuple, properties: bytes, body: bytes) -> None:
        """A whole message has arrived: build it (peeking only what the broker acts on) and hand
        it to the core."""
        exchange, routing_key, mandatory, immediate = publish
        self.publishing = True
        if properties == EMPTY_PROPERTIES:
            message = Message(exchange, routing_key, properties, body, 0, None, None, None)
        else:
            try:
                delivery_mode, priority, expiration = peek_properties(properties)
            except ValueError as exc:
                raise ConnectionError(FRAME_ERROR, f"content header properties: {exc}") from None
            message = Message(exchange, routing_key, properties, body, delivery_mode, priority, expiration)
            message.direct_reply_hint = properties[0] & REPLY_TO_FLAG and DIRECT_REPLY_MARKER in properties
            if properties[1] & _USER_ID_FLAG:
                message.user_id = codec.decode_properties(properties).user_id
        try:
            channel.core.basic_publish(exchange, routing_key, mandatory, immediate, message)
        except AMQPError as exc:
            self._fail(exc, channel.number, 60, 40)

    # -- connection class (channel 0) -------------------------------------------------------------

    def _send_start(self) -> None:
        self.state = AWAIT_START_OK
        self.send_method(
            0,
            commands.Connection.Start(
                version_major=0,
                version_minor=9,
                server_properties=server_properties(self.cluster_name),
                mechanisms=MECHANISMS,
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
                self.state = OPEN
                self.send_method(0, commands.Connection.OpenOk())
                log.info(
                    "%s: connection opened (user '%s', vhost '%s')",
                    self.peer, self.user.name, method.virtual_host,
                )
            elif isinstance(method, commands.Connection.Close):
                if self.pending_confirms:
                    self.flush_confirms()
                self.send_method(0, commands.Connection.CloseOk())
                if method.reply_code not in (0, 200):
                    log.info("%s: client closed the connection: %s %s",
                             self.peer, method.reply_code, method.reply_text)
                self._finish("closed by client")
            elif isinstance(method, commands.Connection.CloseOk):
                self._finish("closed")
            elif isinstance(method, commands.Connection.UpdateSecret) and state == OPEN:
                # RabbitMQ hands the new secret to each auth backend whose state can expire; the
                # internal (PLAIN/AMQPLAIN user database) backend's cannot, so any secret is
                # accepted unchecked and the connection carries on (rabbit_access_control).
                log.info("%s: user '%s' updated its secret (reason: %s)",
                         self.peer, self.user.name, method.reason)
                self.send_method(0, commands.Connection.UpdateSecretOk())
            elif isinstance(method, (commands.Connection.Blocked, commands.Connection.Unblocked)):
                pass  # a client telling us it is blocked needs no answer
            else:
                # rabbit_reader names its state: "opening" until connection.open, then "running".
                phase = "opening" if state == AWAIT_OPEN else "running"
                raise ConnectionError(CHANNEL_ERROR, f"unexpected method in connection state {phase}")
        except AMQPError as exc:
            class_id, method_id = _method_ids(method)
            self._fail(exc, 0, class_id, method_id)

    def _on_start_ok(self, method: Any) -> None:
        self.client_properties = method.client_properties or {}
        capabilities = self.client_properties.get("capabilities") or {}
        self._auth_failure_close = bool(capabilities.get("authentication_failure_close"))
        self._blocked_capable = bool(capabilities.get("connection.blocked"))
        mechanism = method.mechanism
        credentials = parse_credentials(mechanism, method.response)
        if credentials is None:
            # An unknown mechanism or a malformed response is a protocol error to RabbitMQ, not a
            # refused login: the socket is dropped without connection.close, whatever the client's
            # capabilities.
            log.warning("%s: invalid %s authentication response; closing", self.peer, mechanism)
            self._finish(f"invalid {mechanism} authentication response")
            return
        username, password = credentials
        user = self.broker.authenticate(username, password)
        if user is None:
            log.warning("%s: login refused for user '%s' (mechanism %s)", self.peer, username, mechanism)
            reply_text = ConnectionError(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {mechanism}. "
                "For details see the broker logfile.",
            ).reply_text
            if self._auth_failure_close:
                self.close(ACCESS_REFUSED, reply_text)  # class/method 0, as RabbitMQ sends it
            else:
                self._finish(reply_text)
            return
        self.user = user
        self.state = AWAIT_TUNE_OK
        self.send_method(
            0,
            commands.Connection.Tune(
                channel_max=self.server_channel_max,
                frame_max=self.server_frame_max,
                heartbeat=self.server_heartbeat,
            ),
        )

    def _on_tune_ok(self, method: Any) -> None:
        self.frame_max = _negotiate("frame_max", codec.FRAME_MIN_SIZE, self.server_frame_max, method.frame_max)
        self.channel_max = _negotiate("channel_max", 1, self.server_channel_max, method.channel_max)
        if not self.frame_max:
            self.frame_max = 1 << 32
        if not self.channel_max:
            self.channel_max = 65535
        self.heartbeat = method.heartbeat
        self.state = AWAIT_OPEN

    # -- channels ---------------------------------------------------------------------------------

    def _on_channel_method(self, number: int, method: Any) -> None:
        channel = self.channels.get(number)
        if channel is None:
            if isinstance(method, commands.Channel.Open):
                # RabbitMQ limits how many channels are open, not their numbers (channel 2048 opens
                # fine with channel_max 2047), and names no method in the error.
                if len(self.channels) >= self.channel_max:
                    self._fail(
                        ConnectionError(
                            NOT_ALLOWED,
                            f"number of channels opened ({len(self.channels)}) has reached the "
                            f"negotiated channel_max ({self.channel_max})",
                        ),
                        0, 0, 0,
                    )
                    return
                channel = ChannelState(self, number)
                assert self.session is not None
                channel.core = self.session.open_channel(number, channel)
                self.channels[number] = channel
                # RabbitMQ's open-ok carries an empty channel-id; pamqp insists on "0".
                self.wake()
                self.out += _FRAME_HEADER.pack(FRAME_METHOD, number, 8) + _CHANNEL_OPEN_OK_TAIL
                return
            class_id, method_id = _method_ids(method)
            self._fail(ConnectionError(CHANNEL_ERROR, "expected 'channel.open'"), number, class_id, method_id)
            return
        if channel.closing:
            if isinstance(method, commands.Channel.CloseOk):
                del self.channels[number]
            elif isinstance(method, commands.Channel.Close):
                self.send_method(number, commands.Channel.CloseOk())
            return
        if channel.publish is not None:
            expected = "header for class 60" if channel.body_size < 0 else "body"
            article = "header" if channel.body_size < 0 else "body"
            self._fail(
                ConnectionError(
                    UNEXPECTED_FRAME,
                    f"expected content {expected}, got non content {article} frame instead",
                ),
                number, 60, 40,
            )
            return
        handler = CHANNEL_HANDLERS.get(type(method))
        try:
            if handler is None:
                raise ConnectionError(
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
                self.output_barrier = persistence.store.batch_id
        except AMQPError as exc:
            class_id, method_id = _method_ids(method)
            self._fail(exc, number, class_id, method_id)

    # -- errors and lifecycle ---------------------------------------------------------------------

    def _fail(self, exc: AMQPError, channel_number: int, class_id: int, method_id: int) -> None:
        """The one place an error becomes channel.close or connection.close."""
        if self.pending_confirms:
            # Publishes before the failing frame were routed: their confirms go out first, not
            # never (they are only held back to coalesce them per read).
            self.flush_confirms()
        class_id = exc.class_id or class_id
        method_id = exc.method_id or method_id
        channel = self.channels.get(channel_number) if channel_number else None
        if isinstance(exc, ChannelError) and exc.reply_code in CHANNEL_SCOPED and channel is not None:
            log.warning("%s: channel %d error: %s", self.peer, channel_number, exc.reply_text)
            channel.core.close()
            channel.closing = True
            channel.publish = None
            channel.body_size = -1
            channel.body_parts = []
            self.pending_confirms.pop(channel, None)
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
        log.log(level, "%s: closing connection: %s", self.peer, reply_text)
        self._release()
        # Before tune-ok RabbitMQ answers only a refused login (start-ok) or a failed negotiation
        # (tune-ok, 530) with connection.close; any other error just drops the socket.
        if (self.state == AWAIT_START_OK and reply_code != ACCESS_REFUSED) or (
            self.state == AWAIT_TUNE_OK and reply_code != NOT_ALLOWED
        ):
            self._finish(reply_text)
            return
        self.send_method(
            0,
            commands.Connection.Close(
                reply_code=reply_code, reply_text=reply_text, class_id=class_id, method_id=method_id
            ),
        )
        self.state = CLOSING
        self.close_reason = reply_text
        if reply_code == ACCESS_REFUSED and self.session is None:
            # Refused logins end right after the close frame (rabbit_reader does the same).
            self._finish(reply_text)

    def _finish(self, reason: str) -> None:
        self._release()
        if not self.close_reason:
            self.close_reason = reason
        self.state = CLOSED
        self.finished = True
        self.on_output()

    def _release(self) -> None:
        session, self.session = self.session, None
        self.pending_confirms.clear()
        for channel in self.channels.values():
            # A half-received body (up to max_message_size) goes now, not whenever the cyclic
            # collector gets to this connection's objects.
            channel.body_parts = []
        if session is not None:
            session.close()

    def connection_lost(self) -> None:
        """The socket is gone: free broker state (requeue unacked, drop exclusive queues)."""
        self._release()
        self.state = CLOSED
        self.finished = True

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
            self._release()
            self.state = CLOSED
            self.finished = True
            self.close_reason = "missed heartbeats"
            return False
        if idle_send >= self.heartbeat / 2:
            self.wake()
            self.out += codec.HEARTBEAT_FRAME
        return True

    def writer_drained(self) -> None:
        """The writer flushed ``out``; resume deliveries held back while it was full."""
        if self.delivery_blocked and len(self.out) + self.pieces_bytes < WRITE_LOW_WATER:
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
        raise ConnectionError(
            NOT_ALLOWED,
            f"negotiated {field} = {client_value} is lower than the minimum allowed value ({minimum})",
            10, 30,
        )
    if server_value != 0 and (client_value == 0 or client_value > server_value):
        detail = " (no limit)" if field == "channel_max" and client_value == 0 else ""
        raise ConnectionError(
            NOT_ALLOWED,
            f"negotiated {field} = {client_value}{detail} is higher than the maximum allowed value "
            f"({server_value})",
            10, 30,
        )
    return client_value
