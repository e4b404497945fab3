"""Admin's error type, its helpers and the conversions its snapshots share."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any, Callable, Iterable

from ...errors import AMQPError
from ..message import Message

#: Seconds of samples the message rates are computed over.
RATE_WINDOW = 10.0

#: The reason RabbitMQ's management API gives a connection it closes without one.
DEFAULT_CLOSE_REASON = "Closed via management plugin"


#: What RabbitMQ's management API answers when the operation is refused with 403 ACCESS_REFUSED.
ACCESS_REFUSED = "Access refused."


class AdminError(Exception):
    """An admin call that cannot be done: ``kind`` is ``not_found``, ``bad_request`` or
    ``not_authorised`` (RabbitMQ's 404, 400 and 401)."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _not_found(what: str) -> AdminError:
    return AdminError("not_found", f"{what} not found")


def _core(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a core call; its protocol error becomes a bad request with the error's own text, a
    404 not found and a 403 RabbitMQ's generic refusal."""
    try:
        return call(*args, **kwargs)
    except AMQPError as exc:
        if exc.reply_code == 403:
            raise AdminError("not_authorised", ACCESS_REFUSED) from None
        raise AdminError("not_found" if exc.reply_code == 404 else "bad_request", exc.text) from None


def _core_channel(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a core call whose refusal (403) stays an AMQPError for the caller to word; other
    protocol errors as :func:`_core` turns them."""
    try:
        return call(*args, **kwargs)
    except AMQPError as exc:
        if exc.reply_code == 403:
            raise
        raise AdminError("not_found" if exc.reply_code == 404 else "bad_request", exc.text) from None


def _json(value: Any) -> Any:
    """A field-table value as JSON, as RabbitMQ's management API shows it."""
    from ...definitions_file import json_value  # a leaf module of plain conversions

    return json_value(value)


def _refused(exc: AMQPError, kind: str = "not_authorised", code: bool = False) -> AdminError:
    """A permission check's refusal with the whole AMQP text, as RabbitMQ's management API
    shows those it gets from a channel (``ACCESS_REFUSED - access to queue ...``), with the reply
    code in front when ``code`` (a publish's)."""
    text = f"{exc.reply_code} {exc.reply_text}" if code else exc.reply_text
    return AdminError(kind, text)


def properties_key(routing_key: str, arguments: dict | None) -> str:
    """The last part of a binding's management URL: the routing key (``~`` for none), with a
    hash of the arguments after ``~`` when there are any, as RabbitMQ's management API names
    bindings (rabbit_mgmt_format:pack_binding_props: the key form-encoded, ``~`` escaped too;
    the hash is ours, RabbitMQ's is Erlang's phash2 of the term)."""
    key = urllib.parse.quote_plus(routing_key, safe="").replace("~", "%7E") if routing_key else "~"
    if not arguments:
        return key
    digest = base64.urlsafe_b64encode(
        repr(sorted(_json(arguments).items())).encode("utf-8")
    ).decode("ascii").rstrip("=")[:22]
    return f"{key}~{digest}"


def _set_properties(message: Message) -> dict:
    """The properties a publisher set (pamqp fills an absent cluster_id with "")."""
    properties = message.properties()
    if not properties.get("cluster_id"):
        properties.pop("cluster_id", None)
    return properties


def _tag_list(tags: Iterable[str] | str) -> list[str]:
    """User tags from a list or, as RabbitMQ's API also takes them, a comma-separated string."""
    if isinstance(tags, str):
        return [tag.strip() for tag in tags.split(",") if tag.strip()]
    return list(tags)


def _port(peer: str) -> int | None:
    port = peer.rpartition(":")[2]
    return int(port) if port.isdigit() else None
