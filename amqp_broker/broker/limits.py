"""Per-vhost and per-user limits, as RabbitMQ 3.10 keeps and enforces them.

Vhost limits (``max-connections``, ``max-queues``) are RabbitMQ's ``vhost-limits`` runtime
parameter: one JSON object per vhost, replaced whole by ``set_vhost_limits`` and edited one key
at a time by the management API (rabbit_vhost_limit). User limits (``max-connections``,
``max-channels``) live on the user and are merged by ``set_user_limits``
(rabbit_auth_backend_internal). In both, a negative value means no limit, 0 allows none, and
values are stored as given (-1 is listed as -1).

What they refuse, and with RabbitMQ's words (rabbit_reader, rabbit_channel):

* connection.open beyond a vhost's or a user's max-connections: 530 NOT_ALLOWED, vhost first;
* channel.open beyond a user's max-channels (over all its connections): 530 NOT_ALLOWED;
* queue.declare of a new queue beyond a vhost's max-queues: 406 PRECONDITION_FAILED (a
  redeclare of an existing queue is not counted).

Counting walks the open sessions only when a limit is set, so a broker without limits pays
nothing for them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import NOT_ALLOWED, ConnectionLevelError, precondition_failed

if TYPE_CHECKING:  # pragma: no cover
    from .broker import Broker
    from .vhost import VHost

#: The limits of a vhost, and of a user, in the order RabbitMQ validates them.
VHOST_LIMITS = ("max-connections", "max-queues")
USER_LIMITS = ("max-connections", "max-channels")


class LimitError(ValueError):
    """A limits object RabbitMQ would refuse; the text is RabbitMQ's reason."""


def erlang_term(value: Any) -> str:
    """A JSON value as Erlang's ``~p`` prints the term RabbitMQ decoded it to."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "<<" + json.dumps(value, ensure_ascii=False) + ">>"
    if isinstance(value, list):
        return "[" + ",".join(erlang_term(v) for v in value) + "]"
    if isinstance(value, dict):
        return "#{" + ",".join(f"{erlang_term(k)} => {erlang_term(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def validate(names: Iterable[str], what: str, limits: Any) -> dict[str, int]:
    """Check a limits object as rabbit_parameter_validation:proplist does; return it with
    RabbitMQ's key order (a JSON object's keys sorted, as an Erlang map lists them).

    ``what`` is the name RabbitMQ gives the object in its error ("limits", "user-limits")."""
    if not isinstance(limits, dict):
        raise LimitError(f"{what} not a list {erlang_term(limits)}")
    known = tuple(names)
    for name in known:
        if name in limits:
            value = limits[name]
            if not isinstance(value, int) or isinstance(value, bool):
                raise LimitError(f"{name} should be a number, actually was {erlang_term(value)}")
    unknown = [(k, v) for k, v in sorted(limits.items()) if k not in known]
    if unknown:
        terms = ",".join("{" + erlang_term(k) + "," + erlang_term(v) + "}" for k, v in unknown)
        raise LimitError(f"Unrecognised terms [{terms}] in {what}")
    return {name: limits[name] for name in sorted(limits)}


def effective(limits: dict[str, int] | None, name: str) -> int | None:
    """The limit in force: None for none (absent or negative), else how many are allowed."""
    if not limits:
        return None
    value = limits.get(name)
    if value is None or value < 0:
        return None
    return value


def check_connection(broker: "Broker", user: str, vhost: "VHost") -> None:
    """connection.open: refuse a connection beyond the vhost's, then the user's, max-connections
    (rabbit_reader checks both before the vhost access check)."""
    limit = effective(vhost.limits, "max-connections")
    if limit is not None and sum(1 for s in broker.sessions if s.vhost is vhost) >= limit:
        raise ConnectionLevelError(
            NOT_ALLOWED,
            f"access to vhost '{vhost.name}' refused for user '{user}': connection limit ({limit}) is reached",
        )
    record = broker.users.users.get(user)
    limit = effective(record.limits if record is not None else None, "max-connections")
    if limit is not None and sum(1 for s in broker.sessions if s.user == user) >= limit:
        raise ConnectionLevelError(
            NOT_ALLOWED, f"connection refused for user '{user}': user connection limit ({limit}) is reached")


def check_channel(broker: "Broker", user: str) -> None:
    """channel.open: refuse a channel beyond the user's max-channels, counted over all of the
    user's connections; RabbitMQ names no method in the close (class and method 0)."""
    record = broker.users.users.get(user)
    limit = effective(record.limits if record is not None else None, "max-channels")
    if limit is None:
        return
    if sum(len(s.channels) for s in broker.sessions if s.user == user) >= limit:
        raise ConnectionLevelError(
            NOT_ALLOWED,
            f"number of channels opened for user '{user}' has reached the maximum allowed user "
            f"limit of ({limit})",
            0, 0,
        )


def check_new_queue(vhost: "VHost", name: str) -> None:
    """queue.declare of a queue that does not exist yet: refuse it beyond max-queues."""
    limit = effective(vhost.limits, "max-queues")
    if limit is not None and len(vhost.queues) + 1 > limit:
        raise precondition_failed(
            f"cannot declare queue '{name}': queue limit in vhost '{vhost.name}' ({limit}) is reached")


def queue_import_error(vhost: "VHost", adding: int) -> str | None:
    """Why a definitions import adding ``adding`` queues to ``vhost`` is refused, or None
    (rabbit_definitions:validate_limits, checked before anything is imported)."""
    limit = effective(vhost.limits, "max-queues")
    if not adding or limit is None or adding + len(vhost.queues) <= limit:
        return None
    return (f'Adding {adding} queue(s) to virtual host "{vhost.name}" would exceed the limit of {limit} '
            f"queue(s).\n\nThis virtual host currently has {len(vhost.queues)} queue(s) defined.\n\n"
            "Import aborted!")
