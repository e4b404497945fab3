"""Protocol errors, carrying the reply code the peer is answered with.

The broker core raises these without knowing anything about frames; the protocol layer turns them
into ``channel.close`` or ``connection.close`` in exactly one place
(:meth:`amqp_broker.protocol.connection.Connection._fail`), filling in the class and method id of
the method that failed. Reply texts follow RabbitMQ's format ``"NOT_FOUND - no queue 'x' in vhost
'/'"``, because client libraries and application logs match on them.
"""

from __future__ import annotations

# AMQP 0-9-1 reply codes (spec section 1.9, "Constants"); names are the spec's, as RabbitMQ prints
# them at the start of every reply text.
REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REPLY_NAMES = {
    REPLY_SUCCESS: "REPLY_SUCCESS",
    CONTENT_TOO_LARGE: "CONTENT_TOO_LARGE",
    NO_ROUTE: "NO_ROUTE",
    NO_CONSUMERS: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}

# Codes that close only the channel (spec 1.9: "soft errors"); every other error code closes the
# whole connection. RabbitMQ's rabbit_misc:amqp_error/4 plus rabbit_channel's soft/hard split.
CHANNEL_SCOPED = frozenset({ACCESS_REFUSED, NOT_FOUND, RESOURCE_LOCKED, PRECONDITION_FAILED})


class AMQPError(Exception):
    """An error the peer must be told about with a reply code and text.

    ``text`` is the explanation without the code name; :attr:`reply_text` adds the name the way
    RabbitMQ does. ``class_id``/``method_id`` are filled in by the protocol layer when zero.
    """

    def __init__(self, reply_code: int, text: str, class_id: int = 0, method_id: int = 0):
        super().__init__(text)
        self.reply_code = reply_code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id

    @property
    def reply_text(self) -> str:
        """The reply text as RabbitMQ formats it, e.g. ``NOT_FOUND - no queue 'q' in vhost '/'``."""
        name = REPLY_NAMES.get(self.reply_code, "ERROR")
        if not self.text:
            return name  # RabbitMQ's bare text for an error it has nothing to say about
        text = f"{name} - {self.text}"
        # reply-text is a shortstr: at most 255 bytes on the wire (spec 4.2.5.3). RabbitMQ cuts a
        # longer text to 252 bytes and appends "...".
        encoded = text.encode("utf-8")
        if len(encoded) > 255:
            text = encoded[:252].decode("utf-8", "ignore") + "..."
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reply_code}, {self.text!r})"


class ChannelError(AMQPError):
    """An error that closes one channel (a "soft" error)."""


class ConnectionLevelError(AMQPError):
    """An error that closes the whole connection (a "hard" error)."""


def channel_error(reply_code: int, text: str) -> ChannelError:
    """Build a :class:`ChannelError`; kept for call sites that read better as a function."""
    return ChannelError(reply_code, text)


def not_found(text: str) -> ChannelError:
    """404 NOT_FOUND: a named entity does not exist."""
    return ChannelError(NOT_FOUND, text)


def precondition_failed(text: str) -> ChannelError:
    """406 PRECONDITION_FAILED: the request conflicts with existing state."""
    return ChannelError(PRECONDITION_FAILED, text)


def access_refused(text: str) -> ChannelError:
    """403 ACCESS_REFUSED: the request is not permitted (reserved names, permissions)."""
    return ChannelError(ACCESS_REFUSED, text)


def resource_locked(text: str) -> ChannelError:
    """405 RESOURCE_LOCKED: an exclusive resource belongs to another connection."""
    return ChannelError(RESOURCE_LOCKED, text)


def connection_error(reply_code: int, text: str) -> ConnectionLevelError:
    """Build a connection-scoped error (codes 320, 501–506, 530, 540, 541)."""
    return ConnectionLevelError(reply_code, text)
