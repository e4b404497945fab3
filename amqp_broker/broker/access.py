"""Access control as RabbitMQ 3.10 does it: who may log in from where, and what a user may do in a
vhost. The broker's only door for both.

- **Login** (rabbit_access_control:check_user_loopback): a user named in ``loopback_users``
  (guest, by default) may log in only over a connection whose *local* end is a loopback address,
  since RabbitMQ checks the socket's own address, not the peer's. The refusal is the same 403 as a
  wrong password; only the log says why.
- **Operations** (rabbit_channel's check_*_permitted and check_topic_authorisation):
  :class:`Grants` holds one user's compiled permissions on one vhost and answers every check of
  RabbitMQ's access-control table. The channel (broker/channel.py) asks it before an operation
  changes anything, in RabbitMQ's order; declares pass it to the vhost, which asks at the point
  RabbitMQ does (after the name is settled, before the entity is created).

The patterns follow RabbitMQ's internal user database (rabbit_auth_backend_internal): a pattern
is searched anywhere in the name (``re:run``, not anchored), the empty pattern means ``^$`` (only
the empty name, so nothing), and the default exchange is checked under the name ``amq.default``.
Topic permissions apply to topic exchanges only, to the routing key of a publish (write) or of a
binding whose source is that exchange (read); an exchange with no topic permission is open. In a
topic pattern ``{username}`` and ``{vhost}`` are replaced, as they are, by the user's and the
vhost's names before matching; RabbitMQ fills ``{client_id}`` for MQTT connections only, so over
AMQP 0-9-1 it stays as written (and matches itself literally).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import TYPE_CHECKING, Callable

from ..errors import access_refused
from .auth import FULL_ACCESS

if TYPE_CHECKING:  # pragma: no cover
    from .auth import User
    from .exchange import Exchange

log = logging.getLogger("amqp_broker.access")

#: The name the default exchange ("") is checked under (rabbit_access_control).
DEFAULT_EXCHANGE_ALIAS = "amq.default"

#: What the log adds to a loopback refusal: the one setting that lifts it.
LOOPBACK_HINT = (
    'the loopback_users setting; --loopback-users "" or AMQP_BROKER_LOOPBACK_USERS= lets it in '
    "from other hosts"
)

# Checked names kept per (user, vhost) before the cache starts over: bounds what a client trying
# random names can make it hold.
CACHE_LIMIT = 4096

_Matcher = Callable[[str], object]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, no port) is a loopback address: 127.0.0.0/8, ::1, or an
    IPv4-mapped 127.x (rabbit_net:is_loopback). Anything that is not an address is not."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def loopback_refusal(user: str, local_host: str | None, loopback_users: frozenset[str]) -> str | None:
    """Why ``user`` may not log in over a connection whose local address is ``local_host``, or
    None when it may. ``local_host`` None is a connection that has no socket (in-process)."""
    if user not in loopback_users or local_host is None or is_loopback(local_host):
        return None
    return f"user '{user}' can only connect via localhost"


def _never(_name: str) -> None:
    return None


def compile_pattern(pattern: str, what: str) -> _Matcher:
    """A permission pattern as a search function; "" matches only the empty name (RabbitMQ's
    ``^$``). A pattern Python cannot compile (RabbitMQ's PCRE took it) matches nothing: refusing
    is the safe side, and the log says which pattern."""
    try:
        return re.compile(pattern or "^$").search
    except re.error as exc:
        log.warning("%s: pattern %r is not a valid regular expression here (%s): it matches nothing",
                    what, pattern, exc)
        return _never


def expand_topic_pattern(pattern: str, user: str, vhost: str) -> str:
    """RabbitMQ's variable expansion in topic permissions (plain text replacement)."""
    return pattern.replace("{vhost}", vhost).replace("{username}", user)


class Grants:
    """One user's permissions on one vhost, compiled once, with the answers already given.

    ``full`` is true when configure, write and read are all ``.*`` (the default user's grant),
    so every resource check is answered without a match."""

    __slots__ = ("user", "vhost", "full", "_patterns", "_answers", "_topics", "_topic_answers")

    def __init__(self, user: "User | None", user_name: str, vhost: str):
        self.user = user_name
        self.vhost = vhost
        permissions = user.permissions.get(vhost) if user is not None else None
        self.full = permissions is not None and tuple(permissions) == FULL_ACCESS
        self._patterns: dict[str, _Matcher] = {}
        if permissions is not None:
            for kind, pattern in zip(("configure", "write", "read"), permissions):
                self._patterns[kind] = compile_pattern(
                    pattern, f"{kind} permission of user '{user_name}' on vhost '{vhost}'")
        self._answers: dict[tuple[str, str], bool] = {}
        self._topics: dict[str, tuple[_Matcher, _Matcher]] = {}
        topics = user.topic_permissions.get(vhost, {}) if user is not None else {}
        for exchange, (write, read) in topics.items():
            what = f"topic permission of user '{user_name}' on exchange '{exchange}' in vhost '{vhost}'"
            self._topics[exchange] = (
                compile_pattern(expand_topic_pattern(write, user_name, vhost), what),
                compile_pattern(expand_topic_pattern(read, user_name, vhost), what),
            )
        self._topic_answers: dict[tuple[str, str, int], bool] = {}

    # -- resources (queues and exchanges) ----------------------------------------------------------

    def allows(self, permission: str, name: str) -> bool:
        """Whether ``permission`` (configure, write, read) covers a resource named ``name``."""
        if self.full:
            return True
        key = (permission, name)
        answer = self._answers.get(key)
        if answer is None:
            match = self._patterns.get(permission)
            answer = match is not None and match(name) is not None
            if len(self._answers) >= CACHE_LIMIT:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def check(self, permission: str, kind: str, name: str) -> None:
        """403 ``access to queue 'q' in vhost '/' refused for user 'u'`` unless allowed; ``kind``
        is "queue" or "exchange"."""
        if self.full:
            return
        if kind == "exchange" and not name:
            name = DEFAULT_EXCHANGE_ALIAS
        if not self.allows(permission, name):
            raise access_refused(
                f"access to {kind} '{name}' in vhost '{self.vhost}' refused for user '{self.user}'"
            )

    def configure(self, kind: str, name: str) -> None:
        """Declaring or deleting the queue or exchange ``name``."""
        self.check("configure", kind, name)

    def write(self, kind: str, name: str) -> None:
        """Publishing to an exchange, or binding to a queue or exchange (the destination)."""
        self.check("write", kind, name)

    def read(self, kind: str, name: str) -> None:
        """Consuming, getting or purging a queue, or binding from an exchange (the source)."""
        self.check("read", kind, name)

    def new_with_link(self, kind: str, name: str, target: str) -> None:
        """A new queue naming a dead-letter exchange, or a new exchange naming an alternate
        exchange: RabbitMQ checks read on the new entity and write on the exchange it names."""
        self.check("read", kind, name)
        self.check("write", "exchange", target)

    # -- topics -------------------------------------------------------------------------------------

    def topic_free(self, exchange_name: str) -> bool:
        """Whether publishes to and bindings from ``exchange_name`` need no topic check (no topic
        permission names it), whatever the exchange's type."""
        return exchange_name not in self._topics

    def check_topic(self, write: bool, exchange: "Exchange", routing_key: str) -> None:
        """403 ``access to topic 'k' in exchange 'x' in vhost '/' refused for user 'u'``
        unless the user's topic permission on a topic exchange lets ``routing_key`` through
        (write: a publish; read: a binding)."""
        rules = self._topics.get(exchange.name)
        if rules is None or exchange.type_name != "topic":
            return
        key = (exchange.name, routing_key, write)
        answer = self._topic_answers.get(key)
        if answer is None:
            answer = rules[0 if write else 1](routing_key) is not None
            if len(self._topic_answers) >= CACHE_LIMIT:
                self._topic_answers.clear()
            self._topic_answers[key] = answer
        if not answer:
            raise access_refused(
                f"access to topic '{routing_key}' in exchange '{exchange.name}' in vhost "
                f"'{self.vhost}' refused for user '{self.user}'"
            )
