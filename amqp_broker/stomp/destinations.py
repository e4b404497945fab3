"""RabbitMQ's STOMP destinations (rabbit_routing_util, rabbit_stomp_util): parsing a
``destination`` header, the exchange and routing key it publishes to, and the destination a
delivered message is reported with.

A destination is a ``(kind, name, pattern)`` triple; ``pattern`` is only used by ``exchange``:

==========================  =================  ============================================
header                      kind               publishes to (exchange, routing key)
==========================  =================  ============================================
``/queue/q`` (or ``q``)     ``queue``          ``""``, ``q`` (q declared durable first)
``/topic/k``                ``topic``          ``amq.topic``, ``k``
``/exchange/x[/p]``         ``exchange``       ``x``, ``p`` (or ``""``)
``/amq/queue/q``            ``amqqueue``       ``""``, ``q`` (q must exist)
``/reply-queue/q``          ``reply_queue``    ``""``, ``q``
``/temp-queue/t``           ``temp_queue``     only valid in a ``reply-to`` header
==========================  =================  ============================================
"""

from __future__ import annotations

QUEUE_PREFIX = "/queue"
TOPIC_PREFIX = "/topic"
EXCHANGE_PREFIX = "/exchange"
AMQQUEUE_PREFIX = "/amq/queue"
TEMP_QUEUE_PREFIX = "/temp-queue"
REPLY_QUEUE_PREFIX = "/reply-queue/"

# The order RabbitMQ lists them in its "Unknown destination" error.
DEST_PREFIXES = (EXCHANGE_PREFIX, TOPIC_PREFIX, QUEUE_PREFIX, AMQQUEUE_PREFIX, REPLY_QUEUE_PREFIX)
ALL_DEST_PREFIXES = (TEMP_QUEUE_PREFIX,) + DEST_PREFIXES

Destination = tuple[str, str, "str | None"]


class DestinationError(ValueError):
    """A destination header RabbitMQ refuses: ``message`` and ``detail`` of its ERROR frame."""

    def __init__(self, message: str, detail: str):
        super().__init__(detail)
        self.message = message
        self.detail = detail


def unescape(text: str) -> str:
    """Only ``%2F`` is decoded in a destination (rabbit_routing_util:unescape)."""
    return text.replace("%2F", "/")


def parse(header: str) -> Destination:
    """The destination a header names; raises :class:`DestinationError` with RabbitMQ's words."""
    parts = header.split("/")
    if len(parts) == 1:
        return ("queue", unescape(header), None)
    if parts[0] == "":
        kind = parts[1]
        if kind in ("exchange", "queue", "topic", "temp-queue"):
            return _parse_rest(kind.replace("-", "_"), parts[2:], header)
        if kind == "amq" and len(parts) >= 3 and parts[2] == "queue":
            return _parse_rest("amqqueue", parts[3:], header)
        if kind == "reply-queue" and len(parts) >= 3:
            return ("reply_queue", header[len(REPLY_QUEUE_PREFIX):], None)
    raise DestinationError(
        "Unknown destination",
        f"'{header}' is not a valid destination.\n"
        f"Valid destination types are: {', '.join(ALL_DEST_PREFIXES)}.\n",
    )


def _parse_rest(kind: str, rest: list[str], header: str) -> Destination:
    if kind == "exchange":
        if rest and rest[0] != "":
            if len(rest) == 1:
                return ("exchange", unescape(rest[0]), None)
            if len(rest) == 2:
                return ("exchange", unescape(rest[0]), unescape(rest[1]))
    elif len(rest) == 1 and rest[0]:
        return (kind, unescape(rest[0]), None)
    url = "/" + "/".join(rest) if rest else ""
    raise DestinationError("Invalid destination", f"'{url}' is not a valid {kind} destination\n")


def routing(destination: Destination) -> tuple[str, str]:
    """(exchange, routing key) a SEND to ``destination`` publishes with."""
    kind, name, pattern = destination
    if kind == "exchange":
        return name, pattern or ""
    if kind == "topic":
        return "amq.topic", name
    return "", name


def _escape(text: str) -> str:
    # RabbitMQ escapes octets: '/', '%' and anything outside printable ASCII.
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        if byte == 0x2F:
            out.append("%2F")
        elif byte == 0x25:
            out.append("%25")
        elif byte < 32 or byte > 127:
            out.append("%%%X%X" % (byte >> 4, byte & 15))
        else:
            out.append(chr(byte))
    return "".join(out)


def format_destination(exchange: str, routing_key: str) -> str:
    """The ``destination`` header of a MESSAGE routed by ``exchange`` with ``routing_key``."""
    if exchange == "":
        return f"{QUEUE_PREFIX}/{_escape(routing_key)}"
    if exchange == "amq.topic":
        return f"{TOPIC_PREFIX}/{_escape(routing_key)}"
    if routing_key == "":
        return f"{EXCHANGE_PREFIX}/{_escape(exchange)}"
    return f"{EXCHANGE_PREFIX}/{_escape(exchange)}/{_escape(routing_key)}"


def reply_to_header(value: str) -> str:
    """A delivered message's reply-to: prefixed with /reply-queue/ unless it is a destination
    already (rabbit_stomp_util:headers_post_process)."""
    if value.startswith(DEST_PREFIXES):
        return value
    return REPLY_QUEUE_PREFIX + value
