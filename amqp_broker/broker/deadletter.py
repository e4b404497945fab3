"""Dead-lettering: RabbitMQ 3.10's ``rabbit_dead_letter``, ported rule for rule.

A message that leaves a queue with a reason (``rejected``, ``expired``, ``maxlen``,
``delivery_limit``) is republished to the queue's ``x-dead-letter-exchange`` with the routing key
``x-dead-letter-routing-key`` (or its own routing key) and an ``x-death`` history:

- The history is an array of tables, newest first, one per (queue, reason); a repeat increments
  ``count`` and moves the entry to the front. The first entry ever written keeps RabbitMQ's
  construction order (count, reason, queue, time, exchange, routing-keys[, original-expiration]);
  entries written later are sorted by key, as ``rabbit_misc:sort_field_table`` does.
- ``x-first-death-reason/-queue/-exchange`` are set once, with the first entry. (3.10 has no
  ``x-last-death-*``: those came with 3.13.)
- The whole headers table comes back sorted by key (``rabbit_misc:set_table_value`` sorts).
- A per-message ``expiration`` moves into ``original-expiration`` and is removed, so the copy does
  not expire again for the same reason.
- With a dead-letter routing key, the ``CC`` header is removed.
- Cycles: unless the reason is ``rejected``, a queue that already appears in the history with no
  ``rejected`` death since is not published to (``is_cycle``): the message would loop forever.

The functions on tables are pure (they take ``now``) so that tests can pin them down exactly.
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any

from .fields import ARRAY, LONG, LONGSTR, TABLE, TIMESTAMP, TypedArray, TypedTable
from .message import Message

if TYPE_CHECKING:  # pragma: no cover
    from .queue import Queue

REJECTED = "rejected"
EXPIRED = "expired"
MAXLEN = "maxlen"
DELIVERY_LIMIT = "delivery_limit"


def _key(info: Any, key: str) -> Any:
    # x_death_event_key/2: the value whatever its type, None when absent (or not a table).
    return info.get(key) if isinstance(info, dict) else None


def _with_count(info: TypedTable, count: int) -> TypedTable:
    # ensure_xdeath_event_count/2: prepend a count when the table has none.
    if _key(info, "count") is not None:
        return info
    return TypedTable([("count", LONG, count)] + info.entries())


def _incremented(info: TypedTable) -> TypedTable:
    # increment_xdeath_event_count/1: count replaced in place (as a long), or prepended as 1.
    count = _key(info, "count")
    if count is None:
        return TypedTable([("count", LONG, 1)] + info.entries())
    result = info.copy()
    result.set("count", LONG, count + 1)
    return result


def group_by_queue_and_reason(tables: list) -> list:
    """Merge duplicate (queue, reason) entries (histories written before rabbitmq-server#78).

    As in RabbitMQ, the fold prepends, so with two or more entries the result comes out in
    *reverse* order; a message dead-lettered through three queues shows it."""
    if len(tables) <= 1:
        return list(tables)
    seen: set = set()
    grouped: list = []
    for info in tables:
        queue, reason = _key(info, "queue"), _key(info, "reason")
        matches = [t for t in tables if _key(t, "queue") == queue and _key(t, "reason") == reason]
        augmented = _with_count(matches[0], len(matches)) if isinstance(matches[0], dict) else matches[0]
        key = (_hashable(queue), _hashable(reason))
        if not grouped:
            grouped = [augmented]
        elif key not in seen:
            grouped.insert(0, augmented)
        seen.add(key)
    return grouped


def _hashable(value: Any) -> Any:
    return bytes(value) if isinstance(value, bytearray) else value


def update_x_death(info: TypedTable, headers: TypedTable) -> TypedTable:
    """update_x_death_header/2: record the death described by ``info`` in ``headers`` (a copy)."""
    headers = headers.copy()
    reason, queue, exchange = _key(info, "reason"), _key(info, "queue"), _key(info, "exchange")
    first = TypedTable([("count", LONG, 1)] + info.entries())
    existing = headers.get("x-death", _ABSENT)
    if existing is _ABSENT:
        headers.set("x-first-death-reason", LONGSTR, reason)
        headers.set("x-first-death-queue", LONGSTR, queue)
        headers.set("x-first-death-exchange", LONGSTR, exchange)
        headers.set("x-death", ARRAY, TypedArray([(TABLE, first)]))
    elif headers.kind("x-death") == ARRAY and isinstance(existing, list):
        grouped = group_by_queue_and_reason(list(existing))
        matches = [t for t in grouped if _key(t, "queue") == queue and _key(t, "reason") == reason]
        others = [t for t in grouped if not (_key(t, "queue") == queue and _key(t, "reason") == reason)]
        entry = first if not matches else _incremented(matches[0])
        kinds = [TABLE if isinstance(t, dict) else None for t in others]
        headers.set("x-death", ARRAY, TypedArray([(TABLE, entry.sorted())] + list(zip(kinds, others))))
    else:
        # Not an array (a client re-published it as a string, say): reset it (rabbitmq-server#767).
        headers.set("x-death", ARRAY, TypedArray([(TABLE, first)]))
    return headers.sorted()


_ABSENT = object()


def _header_routes(headers: TypedTable) -> list:
    # rabbit_basic:header_routes/1: the CC and BCC arrays' longstr entries.
    routes = []
    for name in ("CC", "BCC"):
        value = headers.get(name)
        if isinstance(value, list) and headers.kind(name) == ARRAY:
            types = getattr(value, "types", [])
            routes.extend(v for i, v in enumerate(value) if i < len(types) and types[i] == LONGSTR)
    return routes


def dead_letter_properties(
    properties: dict,
    reason: str,
    queue_name: str,
    exchange: str,
    routing_key: str,
    dead_letter_routing_key: str | None,
    now: int,
) -> dict:
    """make_msg/5: the properties of the dead-lettered copy (a new dict; input untouched)."""
    properties = dict(properties)
    headers = properties.get("headers")
    if not isinstance(headers, TypedTable):
        headers = TypedTable((key, None, value) for key, value in (headers or {}).items())
    routing_keys = TypedArray((LONGSTR, key) for key in [routing_key] + _header_routes(headers))
    info = TypedTable([
        ("reason", LONGSTR, reason),
        ("queue", LONGSTR, queue_name),
        ("time", TIMESTAMP, datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)),
        ("exchange", LONGSTR, exchange),
        ("routing-keys", ARRAY, routing_keys),
    ])
    expiration = properties.pop("expiration", None)
    if expiration is not None:
        info.set("original-expiration", LONGSTR, expiration)
    headers = update_x_death(info, headers)
    if dead_letter_routing_key is not None:
        headers.remove("CC")
    properties["headers"] = headers
    return properties


def is_cycle(queue_name: str, deaths: Any) -> bool:
    """is_cycle/2: ``queue_name`` is in the history with no ``rejected`` death since (inclusive)."""
    if not isinstance(deaths, list):
        return False
    for index, death in enumerate(deaths):
        if isinstance(death, dict) and death.get("queue") == queue_name:
            return all(
                isinstance(d, dict) and d.get("reason") != REJECTED for d in deaths[: index + 1]
            )
    return False


def make_dead_letter(message: Message, reason: str, queue_name: str, dlx: str, dlrk: str | None,
                     now: int | None = None, strip: tuple[str, ...] = ()) -> Message:
    """The copy of ``message`` to publish to ``dlx``. ``strip`` names headers the queue added
    itself (a quorum queue's x-delivery-count), which the stored message never had."""
    properties = message.properties()
    headers = properties.get("headers")
    if strip and isinstance(headers, TypedTable):
        headers = headers.copy()
        for name in strip:
            headers.remove(name)
        if headers:
            properties["headers"] = headers
        else:
            del properties["headers"]
    properties = dead_letter_properties(
        properties, reason, queue_name, message.exchange, message.routing_key, dlrk,
        int(time.time()) if now is None else now,
    )
    properties.pop("cluster_id", None)
    return message.with_properties(
        properties, exchange=dlx, routing_key=message.routing_key if dlrk is None else dlrk
    )


def dead_letter(queue: "Queue", message: Message, reason: str, dlx: str, dlrk: str | None,
                strip: tuple[str, ...] = ()) -> None:
    """Publish the dead-lettered copy of ``message`` (which left ``queue``) through ``dlx``.

    A missing DLX drops the message, as RabbitMQ's with_dlx does; routing goes through alternate
    exchanges and exchange bindings like any publish; queues that would make a cycle are skipped."""
    vhost = queue.vhost
    exchange = vhost.exchanges.get(dlx)
    if exchange is None:
        return
    copy = make_dead_letter(message, reason, queue.name, dlx, dlrk, strip=strip)
    targets = list(vhost.route(exchange, copy))
    if not targets:
        return
    if reason != REJECTED:
        deaths = copy.headers.get("x-death") if copy.headers else None
        targets = [target for target in targets if not is_cycle(target.name, deaths)]
    for target in targets:
        if not target.deleted:
            target.publish(copy)
