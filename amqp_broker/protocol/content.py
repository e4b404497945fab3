"""Content assembly: a basic.publish, then its content header, then body frames, on one channel.

The model is RabbitMQ's rabbit_command_assembler: after a content-bearing method a channel expects
the content header (``content_header``), then body frames until the announced size arrived
(``content_body``); anything else in between is a 505. A channel holds a :class:`ContentAssembly`
while that lasts and none while it expects a method. Only a publish whose content is not all in
the read that brought its method comes here: the rest takes the fast path
(:meth:`amqp_broker.protocol.framing.FrameReader._publish_inline`), which builds no assembly.
"""

from __future__ import annotations

from typing import Any

from ..errors import FRAME_ERROR, PRECONDITION_FAILED, UNEXPECTED_FRAME, ChannelError, ConnectionLevelError
from .codec import decode_content_header
from .errortext import erlang_binary_w


class ContentAssembly:
    """The content of one basic.publish while it arrives frame by frame."""

    __slots__ = ("publish", "awaiting_header", "properties", "body_size", "received", "parts")

    def __init__(self, publish: tuple):
        # (exchange, routing_key, mandatory, immediate) of the basic.publish.
        self.publish = publish
        self.awaiting_header = True
        self.properties = b""
        self.body_size = 0
        self.received = 0
        self.parts: list = []

    def header(self, buf: Any, start: int, end: int, max_message_size: int) -> bool:
        """Take the content header in ``buf[start:end]``; True when it completes the message (an
        empty body). Raises ConnectionLevelError for a malformed header, ChannelError (406) for a body
        over ``max_message_size``: refused before any of the body is read, so an announced size
        costs no memory (RabbitMQ 3.10 checks the assembled message, with the same code and
        text); the closing channel then ignores the body frames that follow."""
        try:
            class_id, body_size, properties = decode_content_header(buf, start, end)
        except ValueError:
            raise ConnectionLevelError(
                FRAME_ERROR, f"cannot decode {erlang_binary_w(buf[start:end])}", 60, 40
            ) from None
        if buf[start + 2] or buf[start + 3]:
            # A weight other than 0 (spec 4.2.6.1: "must be zero") does not match RabbitMQ's
            # content header pattern at all, whatever the class.
            raise ConnectionLevelError(UNEXPECTED_FRAME, self.method_error().text, 60, 40)
        if class_id != 60:
            raise ConnectionLevelError(
                UNEXPECTED_FRAME,
                f"expected content header for class 60, got one for class {class_id} instead",
                60, 40,
            )
        if body_size > max_message_size:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"message size {body_size} is larger than configured max size {max_message_size}",
            )
        self.awaiting_header = False
        self.properties = properties
        self.body_size = body_size
        return body_size == 0

    def body(self, piece: Any) -> bytes | None:
        """Take one body frame's payload; the whole body once the last one arrived, else None."""
        received = self.received + len(piece)
        self.received = received
        if received > self.body_size:
            # RabbitMQ keeps waiting for "the rest" of an overlong body (its remaining size goes
            # negative), so the error comes with the next non-body frame: 505 "expected content
            # body". Drop what we have; the assembly stays in this state until then.
            self.parts = []
            return None
        if received < self.body_size:
            self.parts.append(piece)
            return None
        parts = self.parts
        if parts:
            parts.append(piece)
            piece = b"".join(parts)
            self.parts = []
        return piece

    def method_error(self) -> ConnectionLevelError:
        """The 505 for a method frame that arrived where content was expected (RabbitMQ's text)."""
        if self.awaiting_header:
            text = "expected content header for class 60, got non content header frame instead"
        else:
            text = "expected content body, got non content body frame instead"
        return ConnectionLevelError(UNEXPECTED_FRAME, text)
