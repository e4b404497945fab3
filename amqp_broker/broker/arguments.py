"""Queue arguments as data: one row per ``x-`` argument RabbitMQ 3.10 knows.

A row says how queue.declare validates the argument (rabbit_amqqueue:declare_args/0; the problem
strings are RabbitMQ's Erlang terms as ``~p`` prints them, since reply texts carry them), whether a
redeclaration must repeat it (the equivalence check), which queue types accept it (measured
against RabbitMQ 3.10.8 for every argument), and what it switches on here. Every place that acts
on queue arguments reads this table: the declare-time checks and the redeclaration comparison
(vhost.py), the refusals of each queue type (queue_types.py), and the readers of a queue's
settings (extensions.py, queue.py). An argument not in it (``x-foo``) is stored, accepted by every
type and never compared, as RabbitMQ does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..errors import ChannelError, precondition_failed
from .fields import field_type_name

# The queue types x-queue-type names; an omitted x-queue-type means classic.
CLASSIC = "classic"
QUORUM = "quorum"
STREAM = "stream"
QUEUE_TYPE_NAMES = (CLASSIC, QUORUM, STREAM)


class Switch(enum.Enum):
    """What an argument turns on in this broker (QueueArgument.switches_on)."""

    # A QueueExtensions (extensions.py): TTL, x-expires, length limits, dead-lettering.
    EXTENSIONS = enum.auto()
    # Priority levels in the queue's buffer (queue.make_buffer).
    PRIORITY_BUFFER = enum.auto()
    # One consumer at a time (Queue.single_active).
    SINGLE_ACTIVE = enum.auto()
    # The queue's type and class (queue_types.py).
    QUEUE_TYPE = enum.auto()
    # A quorum queue's limit on returns (QueueExtensions.delivery_limit).
    DELIVERY_LIMIT = enum.auto()


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value


# -- validators: None when RabbitMQ accepts the value, else its problem term ---------------------


def not_an_integer(value: Any) -> str | None:
    """RabbitMQ's problem term for a value that should be an integer and is not."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f'"expected integer, got {field_type_name(value)}"'
    return None


def _non_negative(value: Any) -> str | None:
    return not_an_integer(value) or (f"{{value_negative,{value}}}" if value < 0 else None)


def _positive(value: Any) -> str | None:
    return _non_negative(value) or (f"{{value_zero,{value}}}" if value == 0 else None)


def _longstr(value: Any) -> str | None:
    if not isinstance(value, (str, bytes)):
        return f'"expected longstr, got {field_type_name(value)}"'
    return None


def _one_of(*allowed: str, error: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return None if value in allowed else error
    return check


def _queue_type(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value in QUEUE_TYPE_NAMES:
        return None
    return f"\"unsupported queue type '{value}'\""


def _max_priority(value: Any) -> str | None:
    return _non_negative(value) or (f"{{max_value_exceeded,{value}}}" if value > 255 else None)


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{{unacceptable_type,{field_type_name(value)}}}"


# -- readers: a validated value as the queue acts on it --------------------------------------------


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _flag(value: Any) -> bool:
    return value is True


def _type_name(value: Any) -> str:
    value = _text(value)
    return value if value in QUEUE_TYPE_NAMES else CLASSIC


def _as_is(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class QueueArgument:
    """What RabbitMQ and this broker do with one queue argument."""

    key: str
    # Declare-time check: the value -> RabbitMQ's problem term, or None when it is fine.
    validate: Callable[[Any], str | None] | None
    # Whether a redeclaration must repeat it (rabbit_amqqueue's declare_args and consume_args).
    compared: bool
    # The queue types that accept it; the others refuse it at declare ("... of queue type ...").
    types: frozenset[str]
    # What it turns on here; None when it is only stored (or only qualifies another argument).
    switches_on: Switch | None = None
    # The validated value -> what the queue acts on (see setting()).
    read: Callable[[Any], Any] = _as_is
    # For a compared argument: the value an omitted one stands for (RabbitMQ's default).
    omitted_means: str | None = None


_ALL = frozenset(QUEUE_TYPE_NAMES)
_CQ = frozenset((CLASSIC, QUORUM))
_C = frozenset((CLASSIC,))
_Q = frozenset((QUORUM,))
_S = frozenset((STREAM,))
_QS = frozenset((QUORUM, STREAM))

# In rabbit_amqqueue:declare_args/0 order, which is the order checks and comparisons report in.
ARGUMENTS: dict[str, QueueArgument] = {row.key: row for row in (
    QueueArgument("x-expires", _positive, True, _CQ, Switch.EXTENSIONS, _integer),
    QueueArgument("x-message-ttl", _non_negative, True, _CQ, Switch.EXTENSIONS, _integer),
    QueueArgument("x-dead-letter-exchange", _longstr, True, _CQ, Switch.EXTENSIONS, _text),
    QueueArgument("x-dead-letter-routing-key", _longstr, True, _CQ, None, _text),
    QueueArgument("x-max-length", _non_negative, True, _CQ, Switch.EXTENSIONS, _integer),
    QueueArgument("x-max-length-bytes", _non_negative, True, _ALL, Switch.EXTENSIONS, _integer),
    QueueArgument("x-max-in-memory-length", None, True, _Q),
    QueueArgument("x-max-in-memory-bytes", None, True, _Q),
    QueueArgument("x-max-priority", _max_priority, True, _C, Switch.PRIORITY_BUFFER, _integer),
    # x-overflow alone changes nothing: it says what a length limit does.
    QueueArgument("x-overflow", _one_of("drop-head", "reject-publish", "reject-publish-dlx",
                                        error="invalid_overflow"), True, _CQ, None, _text),
    QueueArgument("x-queue-mode", _one_of("default", "lazy", error="invalid_queue_mode"), True, _C),
    QueueArgument("x-queue-type", _queue_type, True, _ALL, Switch.QUEUE_TYPE, _type_name, omitted_means=CLASSIC),
    QueueArgument("x-single-active-consumer", _boolean, True, _CQ, Switch.SINGLE_ACTIVE, _flag),
    QueueArgument("x-queue-master-locator", None, True, _C),
    QueueArgument("x-queue-version", None, True, _C),
    # Not in declare_args: neither validated nor compared; only the types that lack them refuse them.
    QueueArgument("x-delivery-limit", None, False, _Q, Switch.DELIVERY_LIMIT, _integer),
    QueueArgument("x-dead-letter-strategy", None, False, _Q),
    QueueArgument("x-quorum-initial-group-size", None, False, _Q),
    QueueArgument("x-queue-leader-locator", None, False, _QS),
    QueueArgument("x-initial-cluster-size", None, False, _S),
    QueueArgument("x-max-age", None, False, _S),
    QueueArgument("x-stream-max-segment-size-bytes", None, False, _S),
)}

# The arguments whose presence gives a queue a QueueExtensions.
NEEDS_EXTENSIONS = tuple(key for key, row in ARGUMENTS.items() if row.switches_on is Switch.EXTENSIONS)

# Exchanges: RabbitMQ compares only this argument (rabbit_exchange:assert_args_equivalence/2).
EQUIVALENT_EXCHANGE_ARGS = ("alternate-exchange",)


def setting(arguments: dict, key: str) -> Any:
    """What the queue acts on for argument ``key`` (validated at declare): None when absent or of
    a type its reader ignores."""
    value = arguments.get(key)
    return None if value is None else ARGUMENTS[key].read(value)


def queue_type(arguments: dict) -> str:
    """``classic``, ``quorum`` or ``stream``."""
    return setting(arguments, "x-queue-type") or CLASSIC


# -- declare -----------------------------------------------------------------------------------------


def check_dead_letter_exchange(owner: str, arguments: dict) -> None:
    """rabbit_channel's queue.declare: x-dead-letter-exchange must be a longstr (406 ``invalid
    type``, before the argument checks); ``owner`` is ``queue 'q' in vhost '/'``."""
    if "x-dead-letter-exchange" in arguments:
        value = arguments["x-dead-letter-exchange"]
        if not isinstance(value, (str, bytes)):
            raise precondition_failed(
                f"invalid type '{field_type_name(value)}' for arg 'x-dead-letter-exchange' in {owner}"
            )


def validate_queue_arguments(queue: str, vhost: str, arguments: dict) -> None:
    """406 ``invalid arg 'x-…' for queue …`` for a queue argument RabbitMQ would refuse."""
    for key, row in ARGUMENTS.items():
        if row.validate is not None and key in arguments:
            problem = row.validate(arguments[key])
            if problem is None and key == "x-dead-letter-routing-key" and "x-dead-letter-exchange" not in arguments:
                problem = "routing_key_but_no_dlx_defined"  # rabbit_amqqueue:check_dlxrk_arg/2
            if problem is not None:
                raise precondition_failed(
                    f"invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {problem}"
                )


# -- redeclaration ----------------------------------------------------------------------------------

_MISSING = object()


def _show(value: Any) -> str:
    shown = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if isinstance(shown, bool):
        shown = "true" if shown else "false"
    return f"'{shown}'"


def _describe(value: Any) -> str:
    if value is _MISSING:
        return "none"
    return f"the value {_show(value)} of type '{field_type_name(value)}'"


def _type_class(value: Any) -> str:
    # rabbit_misc:type_class/1: every integer width is one class, as are float and double.
    name = field_type_name(value)
    return "int" if name in ("signedint", "long") else "float" if name == "double" else name


def inequivalent(key: str, owner: str, received: Any, current: Any) -> ChannelError:
    """406 ``inequivalent arg 'k' for queue 'q' in vhost '/': received … but current is …``, as
    rabbit_misc:assert_args_equivalence/4 words it: values of one type class are printed alone,
    others with their types, and an argument one side lacks as ``none``."""
    if received is not _MISSING and current is not _MISSING and _type_class(received) == _type_class(current):
        shown_received, shown_current = _show(received), _show(current)
    else:
        shown_received, shown_current = _describe(received), _describe(current)
    return precondition_failed(
        f"inequivalent arg '{key}' for {owner}: received {shown_received} but current is {shown_current}"
    )


def _check_equivalent(owner: str, keys: Iterable[tuple[str, str | None]], new: dict, old: dict) -> None:
    for key, omitted_means in keys:
        a = new.get(key, _MISSING)
        b = old.get(key, _MISSING)
        if a is _MISSING and b is _MISSING:
            continue
        if omitted_means is not None:
            default = (omitted_means, omitted_means.encode("utf-8"))
            if (a is _MISSING and b in default) or (b is _MISSING and a in default):
                continue
        if a is not _MISSING and b is not _MISSING and _type_class(a) == _type_class(b) and a == b:
            continue
        raise inequivalent(key, owner, a, b)


_COMPARED_QUEUE_ARGS = tuple((key, row.omitted_means) for key, row in ARGUMENTS.items() if row.compared)


def check_queue_arguments_equivalent(owner: str, new: dict, old: dict) -> None:
    """A redeclaration's arguments against the queue's: 406 at the first compared one that
    differs (an omitted x-queue-type equals 'classic')."""
    _check_equivalent(owner, _COMPARED_QUEUE_ARGS, new, old)


def check_exchange_arguments_equivalent(owner: str, new: dict, old: dict) -> None:
    """An exchange redeclaration's arguments against the exchange's (alternate-exchange only)."""
    _check_equivalent(owner, ((key, None) for key in EQUIVALENT_EXCHANGE_ARGS), new, old)
