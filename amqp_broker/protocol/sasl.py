"""SASL responses of connection.start-ok: PLAIN and AMQPLAIN, as RabbitMQ accepts them, and
EXTERNAL (RabbitMQ's rabbitmq_auth_mechanism_ssl) on TLS connections."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pamqp import decode as pamqp_decode
from pamqp import exceptions as pamqp_exceptions

# The mechanisms offered in connection.start, in RabbitMQ's order.
MECHANISMS = "AMQPLAIN PLAIN"
# On TLS connections whose client presented a verified certificate, EXTERNAL is offered too.
# RabbitMQ offers it on every TLS connection once it is in auth_mechanisms (not by default); here
# it needs no setting, so it is offered only where it can succeed: py-amqp (so kombu and Celery)
# prefers EXTERNAL whenever it is offered, and a client logging in with a password and no
# certificate would otherwise be refused.
TLS_MECHANISMS = "AMQPLAIN PLAIN EXTERNAL"  # RabbitMQ 3.10's order, seen on a live node


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """What EXTERNAL logs in with on a TLS connection: the user name the transport took from the
    client's verified certificate, or RabbitMQ's reason there is none."""

    username: str | None = None
    refusal: str = ""
    #: Whether the client presented a verified certificate (EXTERNAL is offered only then).
    certificate: bool = False


def _decode_table_body(raw: bytes) -> dict:
    """AMQPLAIN's response: a field table without its 4-byte length prefix."""
    _, table = pamqp_decode.field_table(struct.pack(">I", len(raw)) + raw)
    return table


def _as_str(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value if isinstance(value, str) else None


def parse_credentials(mechanism: str, response: Any) -> tuple[str, str] | None:
    """(username, password) from a start-ok response; None when the mechanism is unknown or the
    response malformed (RabbitMQ treats both as protocol errors, not as refused logins)."""
    if isinstance(response, str):
        response = response.encode("utf-8", "surrogateescape")
    try:
        if mechanism == "PLAIN":
            # RabbitMQ wants exactly "\0user\0pass" (an empty authzid, no NUL in the password).
            parts = bytes(response).split(b"\x00")
            if len(parts) == 3 and not parts[0]:
                return parts[1].decode("utf-8"), parts[2].decode("utf-8")
        elif mechanism == "AMQPLAIN":
            table = _decode_table_body(bytes(response))
            username = _as_str(table.get("LOGIN"))
            password = _as_str(table.get("PASSWORD"))
            if username is not None and password is not None:
                return username, password
    except (ValueError, UnicodeDecodeError, TypeError, IndexError, struct.error,
            pamqp_exceptions.PAMQPException):
        pass
    return None
