"""Framing: the bytes of a connection's reads turned into frames, and the fast runs.

:class:`FrameReader` is the byte-level half of :class:`amqp_broker.protocol.connection.Connection`
(a base class rather than an object of its own because the hot path runs inside it, and each
extra call is paid per message). It owns:

* the frame checks: a 7-byte header, a payload of at most frame_max (8192 before tune-ok), the
  frame-end octet; any violation is a connection error that leaves the stream unparseable;
* the partial tail: a frame cut by the end of a read is completed from the next one, and only
  that frame is copied (every other frame is handled where it lies in the read);
* holds: input stops at a publish (or content frame) while publishes must wait, and at any other
  method while the output is full; what was not handled waits in ``held_input``;
* the fast runs: a publish whose header and body follow in the same read, and the identical
  publishes or acks that repeat it, are handled in one loop without per-frame dispatch;
* content frames of a publish that did not fit one read, assembled per channel by
  :class:`~amqp_broker.protocol.content.ContentAssembly`.

Methods, state and errors are the Connection's (``_on_method``, ``_fail``, ``state``).
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING, Any, Final

from ..compiled import mypyc_attr
from ..broker.message import Message
from ..broker.properties import peek_properties, peek_user_id
from ..errors import (
    CHANNEL_ERROR,
    INTERNAL_ERROR,
    FRAME_ERROR,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    ConnectionLevelError,
)
from . import codec
from .channel import DIRECT_REPLY_MARKER, EMPTY_PROPERTIES, REPLY_TO_FLAG, ChannelState
from .codec import (
    BASIC_PUBLISH,
    FRAME_BODY,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    decode_basic_ack,
)
from .content import ContentAssembly
from .errortext import octets_text
from .confirms import ConfirmBatcher
from .output import Output
from .violations import ViolationReporter
from .state import AWAIT_HEADER, CLOSED, CLOSING, OPEN

if TYPE_CHECKING:  # pragma: no cover
    from ..broker.channel import Channel
    from ..broker.session import Session

log = logging.getLogger("amqp_broker.connection")

PROTOCOL_HEADER: Final = b"AMQP\x00\x00\x09\x01"
# Before tune-ok the peer does not know our frame_max yet; RabbitMQ bounds such frames too.
PRE_TUNE_FRAME_MAX: Final = 8192
# A frame's type, channel and payload size; then a method frame's class and method id as one int.
FRAME_HEADER_FIELDS: Final = struct.Struct(">BHI")
METHOD_INDEX: Final = struct.Struct(">I")
# body-size in a content header payload: after class-id (2) and weight (2).
_BODY_SIZE: Final = struct.Struct(">Q")
# basic.properties flag bit of user-id (spec 4.2.6.1 order: bit 4 of the low octet).
_USER_ID_FLAG: Final = 0x10


# Bases of Connection, which strict.py subclasses interpreted.
@mypyc_attr(allow_interpreted_subclasses=True)
class FrameReader(ViolationReporter):
    """Frames out of reads, for a Connection; see the module docstring.

    ViolationReporter is a base here rather than a second base of Connection: one line of single
    inheritance is what the optional compiled build (mypyc) can turn into native classes, and the
    method resolution order is the same."""

    # Set by Connection.__init__; named here for readers and type checkers.
    state: Any
    frame_max: int
    max_message_size: int
    channels: dict[int, ChannelState]
    session: "Session | None"
    hold_publishes: str | None
    held_input: bytes | None
    publishing: bool
    _tail: bytearray
    output: Output
    confirms: ConfirmBatcher

    # Connection's, declared here so that the class type-checks (and compiles) on its own.
    def _on_method(self, number: int, buf: Any, start: int, end: int, end_all: int = 0) -> int:
        raise NotImplementedError

    def _fail(self, exc: AMQPError, channel_number: int, class_id: int, method_id: int) -> None:
        raise NotImplementedError

    def _terminate(self, reason: str = "", *, wake: bool = True) -> None:
        raise NotImplementedError

    def _send_start(self) -> None:
        raise NotImplementedError

    def notify_blocked(self, reason: str) -> None:
        raise NotImplementedError

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
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
                output = self.output
                output.wake()
                output.buf += PROTOCOL_HEADER
                self._terminate("bad protocol header")
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
            self._terminate(exc.reply_text)
            return
        finally:
            if session is not None:
                # Deliveries freed by this read's acks go out before its confirms, as they would
                # have had each ack dispatched at once.
                if session.owed_dispatch:
                    session.dispatch_owed()
                session.owed_dispatch = None
            confirms = self.confirms
            if confirms.pending:
                confirms.flush()
        if pos < len(data) and self.state != CLOSED:
            tail += memoryview(data)[pos:]

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
                and METHOD_INDEX.unpack_from(buf, start)[0] == BASIC_PUBLISH)
        ):
            return False
        if self.hold_publishes:
            self.notify_blocked(self.hold_publishes)
        self.held_input = b""  # receive_data fills in the rest of its input
        return True

    def unhandled_input(self) -> bytes:
        """What was received but not handled yet: input held back, or the start of a frame split
        across reads (a trace switched on now starts after it)."""
        return (self.held_input or b"") + bytes(self._tail)

    def partial_frame_size(self) -> int:
        """Payload size of the frame the last read ended inside; 0 when it ended between frames
        or inside a frame header (the I/O layer sizes its next read by it)."""
        tail = self._tail
        if len(tail) < 7 or self.state == AWAIT_HEADER:
            return 0
        return FRAME_HEADER_FIELDS.unpack_from(tail)[2]

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
        size = FRAME_HEADER_FIELDS.unpack_from(tail)[2]
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
        unpack_header = FRAME_HEADER_FIELDS.unpack_from
        holding = self.hold_publishes is not None
        while end_all - pos >= 7:
            frame_start = pos
            frame_type, channel, size = unpack_header(buf, pos)
            start = pos + 7
            end = start + size
            # RabbitMQ accepts payloads up to frame_max (not frame_max - 8) but names the
            # spec's limit in the error.
            if size > self.frame_max:
                raise ConnectionLevelError(
                    FRAME_ERROR,
                    octets_text(frame_type, b"", ("frame_too_large", size, self.frame_max - 8)),
                )
            if end >= end_all:
                break
            if buf[end] != FRAME_END:
                raise ConnectionLevelError(
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
                        return frame_start  # held while the output is full
                    pos = after
            elif frame_type == FRAME_BODY:
                self._on_body(channel, buf, start, end)
            elif frame_type == FRAME_HEADER:
                self._on_header(channel, buf, start, end)
            elif frame_type == FRAME_HEARTBEAT:
                if size:  # RabbitMQ's parser knows heartbeats only without a payload
                    raise ConnectionLevelError(FRAME_ERROR, octets_text(8, buf[start:end], "unknown_frame"))
                if channel != 0:
                    raise ConnectionLevelError(UNEXPECTED_FRAME, octets_text(8, buf[start:end]))
            else:
                raise ConnectionLevelError(FRAME_ERROR, octets_text(frame_type, buf[start:end], "unknown_frame"))
            if self.state == CLOSED:
                return end_all
        return pos

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
        number: int = channel.number
        frame_max: int = self.frame_max
        max_message_size: int = self.max_message_size
        unpack_header = FRAME_HEADER_FIELDS.unpack_from
        # Declared ints: the compiled build then does this arithmetic natively, not on objects.
        frame_type: int
        frame_channel: int
        size: int
        body_size: int
        method_size: int = unpack_header(buf, method_start)[2]
        method_end: int = method_start + 8 + method_size
        pos = method_end
        method_frame = None
        while end_all - pos >= 22:
            frame_type, frame_channel, size = unpack_header(buf, pos)
            header_end = pos + 7 + size
            if not (frame_type == FRAME_HEADER and frame_channel == number and size >= 14
                    and header_end < end_all and size <= frame_max and buf[header_end] == FRAME_END
                    and buf[pos + 7] == 0 and buf[pos + 8] == 60  # class 60
                    and not buf[pos + 9] and not buf[pos + 10]):  # weight 0
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
        channel.content = ContentAssembly(publish)
        return pos

    def _ack_run(self, channel: ChannelState, buf: bytes, start: int, end: int, end_all: int) -> int:
        """basic.ack, and the acks right behind it on the same channel: a consumer acking each
        message sends them back to back, and they differ only in the delivery tag, so the frames
        that repeat this one's first 11 bytes (header and method id) skip the frame loop and the
        decode. Returns the position after the last ack handled."""
        core: Channel = channel.core  # typed, as in _publish
        try:
            tag, multiple = decode_basic_ack(buf, start + 4, end)
        except ValueError as exc:
            raise ConnectionLevelError(SYNTAX_ERROR, f"basic.ack: {exc}") from None
        prefix = None
        unpack_tag = codec._TAG_BITS.unpack_from  # delivery-tag, then the bits
        bits: int
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
            multiple = (bits & 1) != 0  # a bool, as decode_basic_ack returns

    def _on_header(self, number: int, buf: Any, start: int, end: int) -> None:
        channel = self._content_channel(FRAME_HEADER, number, buf, start, end)
        if channel is None:
            return
        content = channel.content
        assert content is not None  # _content_channel checked
        try:
            complete = content.header(buf, start, end, self.max_message_size)
        except ChannelError as exc:  # the 406 for a body over max_message_size
            self._fail(exc, number, 60, 40)
            return
        if complete:
            self._complete_publish(channel, b"")

    def _on_body(self, number: int, buf: Any, start: int, end: int) -> None:
        channel = self._content_channel(FRAME_BODY, number, buf, start, end)
        if channel is None:
            return
        content = channel.content
        assert content is not None  # _content_channel checked
        body = content.body(buf[start:end])
        if body is not None:
            self._complete_publish(channel, body)

    def _content_channel(self, frame_type: int, number: int, buf: Any, start: int, end: int) -> ChannelState | None:
        """The channel a header/body frame belongs to, or None when it is to be ignored."""
        if self.state == CLOSING:
            return None
        if self.state != OPEN or number == 0:
            raise ConnectionLevelError(
                UNEXPECTED_FRAME, octets_text(frame_type, buf[start:end])
            )
        channel = self.channels.get(number)
        if channel is None:
            raise ConnectionLevelError(CHANNEL_ERROR, "expected 'channel.open'")
        if channel.closing:
            return None
        content = channel.content
        if content is None:
            raise ConnectionLevelError(UNEXPECTED_FRAME, "expected method frame, got non method frame instead")
        if (frame_type == FRAME_HEADER) != content.awaiting_header:
            raise ConnectionLevelError(
                UNEXPECTED_FRAME,
                "expected content body, got non content body frame instead", 60, 40,
            )
        return channel

    def _complete_publish(self, channel: ChannelState, body: bytes) -> None:
        content = channel.content
        assert content is not None
        channel.content = None
        self._publish(channel, content.publish, content.properties, body)

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
                # RabbitMQ decodes every publish's properties, and a malformed list crashes its
                # channel: 541 with the bare text "INTERNAL_ERROR", which is what a client sees.
                log.warning("%s: channel %d: %s", self.peer, channel.number, exc)
                raise ConnectionLevelError(INTERNAL_ERROR, "") from None
            message = Message(exchange, routing_key, properties, body, delivery_mode, priority, expiration)
            message.direct_reply_hint = properties[0] & REPLY_TO_FLAG and DIRECT_REPLY_MARKER in properties
            if properties[1] & _USER_ID_FLAG:
                message.user_id = peek_user_id(properties)
        # Typed: the compiled build then calls the core directly, not through a Python-level lookup.
        core: Channel = channel.core
        try:
            core.basic_publish(exchange, routing_key, mandatory, immediate, message)
        except AMQPError as exc:
            self._fail(exc, channel.number, 60, 40)

