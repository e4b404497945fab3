"""Definitions export and import in RabbitMQ's ``definitions.json`` format.

The format is the one ``rabbitmqctl export_definitions`` and the management API's
``/api/definitions`` produce, and ``rabbitmqctl import_definitions`` and RabbitMQ's
``load_definitions`` read: one JSON object with the lists ``users``, ``vhosts``, ``permissions``,
``topic_permissions``, ``parameters``, ``global_parameters``, ``policies``, ``queues``,
``exchanges`` and ``bindings``. A file exported here imports into RabbitMQ 3.10 and back: password
hashes are RabbitMQ's own (``rabbit_password_hashing_sha256``, ``_sha512`` or the legacy ``_md5``,
each user keeping its algorithm), so a user's password works on both sides.

Export follows RabbitMQ 3.10's ``rabbit_definitions`` module: every queue except exclusive ones
(transient ones too: RabbitMQ exports them, and the data directory holds only durable ones
anyway), every exchange except the default one and ``amq.*``, and every binding except the
implicit ones of the default exchange. Two differences, both so that nothing is lost on a round
trip through this broker: internal exchanges are exported (RabbitMQ 3.10 leaves them out) and
every exchange carries its ``internal`` flag (which RabbitMQ reads on import but does not write).

Import is idempotent and applies the file in RabbitMQ's order (vhosts and users, permissions and
topic permissions, exchanges, queues, bindings). The whole file is checked before anything is applied; an error
names the entry at fault (``queues[3] (queue 'q' in vhost '/'): ...``). Unknown keys are ignored,
as RabbitMQ does. Skipped with a warning in the log, as RabbitMQ skips them: the default and
``amq.*`` exchanges, ``amq.*`` queues, and bindings whose source or destination does not exist.
Ignored with a warning, as this broker does not implement them: policies, runtime parameters
other than vhost limits, and global parameters. User limits (``users[].limits``) and vhost
limits (``parameters`` of component ``vhost-limits``) are exported and imported as RabbitMQ 3.10
writes them, and an import that would take a vhost beyond its max-queues is refused before
anything changes, with RabbitMQ's words. Permissions and topic permissions are enforced as RabbitMQ
enforces them (broker/access.py). Vhost descriptions and tags are not kept.

:func:`export_data_dir` and :func:`import_data_dir` work on a data directory, for the
``amqp-broker definitions export|import FILE`` commands; :func:`boot_with_definitions` imports a
file at start-up (the ``definitions`` setting), as RabbitMQ's ``load_definitions`` does.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import __version__
from .broker.auth import DEFAULT_HASHING, HASHING_ALGORITHMS, hash_length, hash_password
from .broker.broker import Broker
from .broker.exchange import EXCHANGE_TYPES, Exchange
from .broker.arguments import queue_type, validate_queue_arguments
from .broker.limits import USER_LIMITS, VHOST_LIMITS, LimitError, queue_import_error
from .broker.limits import validate as validate_limits
from .broker.vhost import PREDECLARED
from .config import ConfigError
from .definitions_file import (
    DefinitionsError,
    Entry,
    dumps,
    entries,
    json_table,
    json_type,
    read_definitions_file,
    write_definitions_file,
)
from .errors import AMQPError, precondition_failed
from .store import StoreError
from .store.lock import DataDirLock
from .store.readonly import ReadOnlyStore
from .store.sqlite import SQLiteStore, left_unclean, read_snapshot

if TYPE_CHECKING:  # pragma: no cover
    from .config import Settings

__all__ = [
    "DefinitionsError",
    "HASHING_ALGORITHM",
    "RABBITMQ_VERSION",
    "boot_with_definitions",
    "dumps",
    "export_data_dir",
    "export_definitions",
    "import_data_dir",
    "import_definitions",
    "read_definitions_file",
    "write_definitions_file",
]

log = logging.getLogger("amqp_broker.definitions")

#: The RabbitMQ version whose format is written (``rabbit_version``/``rabbitmq_version``).
#: RabbitMQ reads the version to pick the default hashing algorithm of users that name none.
RABBITMQ_VERSION = "3.10.8"

#: The hashing of passwords given in clear, and of users whose entry names none: RabbitMQ's
#: default since 3.6.
HASHING_ALGORITHM = DEFAULT_HASHING

# Lists this broker stores nothing for: imported with a warning, exported empty.
_IGNORED = {
    "global_parameters": "global parameters are not supported",
    "policies": "policies are not supported",
}


# -- export ---------------------------------------------------------------------------------------


def export_definitions(broker: Broker) -> dict:
    """The broker's definitions as a RabbitMQ ``definitions.json`` object (lists sorted)."""
    users = []
    permissions = []
    topic_permissions = []
    for name in sorted(broker.users.users):
        user = broker.users.users[name]
        users.append({
            "name": name,
            "password_hash": user.password_hash,
            "hashing_algorithm": user.hashing_algorithm,
            "tags": list(user.tags),
            "limits": dict(user.limits),
        })
        for vhost, (configure, write, read) in sorted(user.permissions.items()):
            if vhost in broker.vhosts:  # a grant outliving its vhost would not import
                permissions.append({
                    "user": name, "vhost": vhost, "configure": configure, "write": write, "read": read,
                })
        for vhost, by_exchange in sorted(user.topic_permissions.items()):
            if vhost in broker.vhosts:
                for exchange, (write, read) in sorted(by_exchange.items()):
                    topic_permissions.append({
                        "user": name, "vhost": vhost, "exchange": exchange, "write": write, "read": read,
                    })
    vhosts = []
    exchanges = []
    queues = []
    bindings = []
    for vhost_name in sorted(broker.vhosts):
        vhost = broker.vhosts[vhost_name]
        vhosts.append({
            "name": vhost_name,
            # rabbitmqctl export_definitions lists a vhost's limits as [name, value] pairs too.
            "limits": [[key, value] for key, value in (vhost.limits or {}).items()],
            "metadata": {"description": "", "tags": []},
        })
        exported_queues = set()
        for name in sorted(vhost.queues):
            queue = vhost.queues[name]
            if queue.exclusive_owner is not None:
                continue  # exclusive queues belong to a connection: RabbitMQ leaves them out
            exported_queues.add(queue)
            queues.append({
                "name": name,
                "vhost": vhost_name,
                "type": queue_type(queue.arguments),
                "durable": queue.durable,
                "auto_delete": queue.auto_delete,
                "arguments": json_table(queue.arguments),
            })
        for name in sorted(vhost.exchanges):
            exchange = vhost.exchanges[name]
            if name and not name.startswith("amq."):
                exchanges.append({
                    "name": name,
                    "vhost": vhost_name,
                    "type": exchange.type_name,
                    "durable": exchange.durable,
                    "auto_delete": exchange.auto_delete,
                    "internal": exchange.internal,
                    "arguments": json_table(exchange.arguments),
                })
            if not name:
                continue  # the default exchange's bindings are implicit
            for (destination, routing_key, _frozen), arguments in exchange.bindings.items():
                is_exchange = isinstance(destination, Exchange)
                if not is_exchange and destination not in exported_queues:
                    continue
                bindings.append({
                    "source": name,
                    "vhost": vhost_name,
                    "destination": destination.name,
                    "destination_type": "exchange" if is_exchange else "queue",
                    "routing_key": routing_key,
                    "arguments": json_table(arguments),
                })
    bindings.sort(key=lambda b: (
        b["vhost"], b["source"], b["destination_type"], b["destination"], b["routing_key"],
        json.dumps(b["arguments"], sort_keys=True),
    ))
    return {
        "rabbit_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "amqp_broker",
        "product_version": __version__,
        "users": users,
        "vhosts": vhosts,
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        # Vhost limits are RabbitMQ's only runtime parameter here (component vhost-limits).
        "parameters": [
            {"value": dict(v.limits) if v.limits else [], "vhost": name, "component": "vhost-limits",
             "name": "limits"}
            for name, v in sorted(broker.vhosts.items()) if v.limits is not None
        ],
        "global_parameters": [],
        "policies": [],
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    }


# -- import ---------------------------------------------------------------------------------------

_PREDECLARED = dict(PREDECLARED)


@dataclass
class _Plan:
    """A checked definitions file, ready to apply."""

    users: list[tuple[Entry, str, str, str, list[str]]] = dataclasses.field(default_factory=list)
    vhosts: list[str] = dataclasses.field(default_factory=list)
    permissions: list[tuple[str, str, tuple[str, str, str]]] = dataclasses.field(default_factory=list)
    topic_permissions: list[tuple[str, str, str, str, str]] = dataclasses.field(default_factory=list)
    exchanges: list[tuple[Entry, str, str, str, bool, bool, bool, dict]] = dataclasses.field(
        default_factory=list)
    queues: list[tuple[Entry, str, str, bool, bool, dict]] = dataclasses.field(default_factory=list)
    bindings: list[tuple[Entry, str, str, str, str, str, dict]] = dataclasses.field(
        default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    # (user, limits to merge) and (vhost, limits): user limits and vhost-limits parameters.
    user_limits: list[tuple[str, dict]] = dataclasses.field(default_factory=list)
    vhost_limits: list[tuple[str, dict]] = dataclasses.field(default_factory=list)


def _user_tags(entry: Entry) -> list[str]:
    tags = entry.raw.get("tags")
    if tags is None:
        return []
    if isinstance(tags, str):  # RabbitMQ before 3.9 wrote "administrator,management"
        return [tag.strip() for tag in tags.split(",") if tag.strip()]
    if isinstance(tags, list) and all(isinstance(tag, str) for tag in tags):
        return list(tags)
    raise entry.fail(f"'tags' must be a list of strings, got {json_type(tags)}")


def _default_hashing(data: dict) -> str:
    """The hashing of users whose entry names none: as RabbitMQ reads a file, MD5 when it was
    written by RabbitMQ 3.0 to 3.5, which hashed with MD5 and wrote no algorithm."""
    version = data.get("rabbit_version") or data.get("rabbitmq_version")
    if isinstance(version, str) and re.match(r"3\.[0-5]\.", version):
        return "rabbit_password_hashing_md5"
    return HASHING_ALGORITHM


def _check_hash(entry: Entry, password_hash: str, default: str = HASHING_ALGORITHM) -> str:
    """The entry's hashing algorithm, once its hash is checked to be one of that algorithm."""
    algorithm = entry.raw.get("hashing_algorithm") or default
    if algorithm not in HASHING_ALGORITHMS:
        raise entry.fail(
            f"hashing_algorithm {algorithm!r} is not supported: this broker checks passwords "
            f"hashed with {', '.join(HASHING_ALGORITHMS)} (RabbitMQ's own); re-set the password "
            "on RabbitMQ with one of them, or give the user a plain 'password' instead"
        )
    if password_hash == "":
        return algorithm  # a user without a password (RabbitMQ allows it; it cannot log in with one)
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except ValueError:
        raise entry.fail("'password_hash' is not base64") from None
    expected = hash_length(algorithm)  # a 4-byte salt and the digest
    if len(raw) != expected:
        raise entry.fail(f"'password_hash' is not a {algorithm} hash ({len(raw)} bytes, not {expected})")
    return algorithm


def _check_patterns(entry: Entry, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise entry.fail(f"{pattern!r} is not a valid regular expression: {exc}") from None


def _plan(broker: Broker, data: dict) -> _Plan:
    """Check every entry of ``data`` against itself and ``broker``; nothing is changed."""
    plan = _Plan()

    # Each section is checked in the same shape (its entries, a name, then its own rules and
    # warnings); the rules are what differs, entry by entry, as RabbitMQ's import checks them.
    file_users = set()
    default_hashing = _default_hashing(data)
    for index, raw in entries(data, "users"):
        entry = Entry(f"users[{index}]", raw)
        name = entry.text("name")
        if not name:
            raise entry.fail("'name' must not be empty")
        entry.where = f"users[{index}] ({name!r})"
        has_hash = raw.get("password_hash") is not None
        has_password = raw.get("password") is not None
        if has_hash and has_password:
            raise entry.fail("both 'password' and 'password_hash' are given; keep one")
        if has_password:
            password_hash = hash_password(entry.text("password"))
            algorithm = HASHING_ALGORITHM
        else:
            password_hash = entry.text("password_hash", "")
            algorithm = _check_hash(entry, password_hash, default_hashing)
        if raw.get("limits") is not None:
            try:
                plan.user_limits.append((name, validate_limits(USER_LIMITS, "user-limits", raw["limits"])))
            except LimitError as exc:
                raise entry.fail(str(exc)) from None
        plan.users.append((entry, name, password_hash, algorithm, _user_tags(entry)))
        file_users.add(name)

    file_vhosts = set()
    for index, raw in entries(data, "vhosts"):
        entry = Entry(f"vhosts[{index}]", raw)
        name = entry.text("name")
        if not name:
            raise entry.fail("'name' must not be empty")
        if raw.get("limits"):
            plan.warnings.append(f"vhosts[{index}] ({name!r}): vhost limits are not supported, ignored")
        plan.vhosts.append(name)
        file_vhosts.add(name)

    def check_vhost(entry: Entry) -> str:
        vhost = entry.text("vhost")
        if vhost not in broker.vhosts and vhost not in file_vhosts:
            raise entry.fail(
                f"vhost {vhost!r} does not exist: add it to the file's vhosts or create it first"
            )
        return vhost

    for index, raw in entries(data, "permissions"):
        entry = Entry(f"permissions[{index}]", raw)
        user = entry.text("user")
        vhost = entry.text("vhost", "")
        entry.where = f"permissions[{index}] (user {user!r} on vhost {vhost!r})"
        check_vhost(entry)
        if user not in broker.users.users and user not in file_users:
            raise entry.fail(f"user {user!r} does not exist: add it to the file's users")
        regexes = tuple(entry.text(key, "") for key in ("configure", "write", "read"))
        _check_patterns(entry, regexes)
        plan.permissions.append((user, vhost, regexes))  # type: ignore[arg-type]

    for index, raw in entries(data, "topic_permissions"):
        entry = Entry(f"topic_permissions[{index}]", raw)
        user = entry.text("user")
        vhost = entry.text("vhost", "")
        exchange = entry.text("exchange", "")
        entry.where = (
            f"topic_permissions[{index}] (user {user!r} on exchange {exchange!r} in vhost {vhost!r})"
        )
        check_vhost(entry)
        if user not in broker.users.users and user not in file_users:
            raise entry.fail(f"user {user!r} does not exist: add it to the file's users")
        write, read = entry.text("write", ""), entry.text("read", "")
        _check_patterns(entry, (write, read))
        plan.topic_permissions.append((user, vhost, exchange, write, read))

    file_exchanges: dict[tuple[str, str], str] = {}
    for index, raw in entries(data, "exchanges"):
        entry = Entry(f"exchanges[{index}]", raw)
        name = entry.text("name")
        vhost = entry.text("vhost", "")
        entry.where = f"exchanges[{index}] (exchange {name!r} in vhost {vhost!r})"
        check_vhost(entry)
        type_name = entry.text("type")
        durable = entry.flag("durable", True)
        auto_delete = entry.flag("auto_delete")
        internal = entry.flag("internal")
        arguments = entry.table("arguments")
        if name == "" or name.startswith("amq."):
            # RabbitMQ: "Skipping import of an exchange whose name begins with 'amq.'".
            plan.warnings.append(f"{entry.where}: the default and amq.* exchanges are not imported")
            continue
        if type_name not in EXCHANGE_TYPES:
            raise entry.fail(
                f"unknown exchange type {type_name!r} (this broker has "
                f"{', '.join(sorted(EXCHANGE_TYPES))})"
            )
        plan.exchanges.append((entry, vhost, name, type_name, durable, auto_delete, internal, arguments))
        file_exchanges[(vhost, name)] = type_name

    file_queues = set()
    for index, raw in entries(data, "queues"):
        entry = Entry(f"queues[{index}]", raw)
        name = entry.text("name")
        vhost = entry.text("vhost", "")
        entry.where = f"queues[{index}] (queue {name!r} in vhost {vhost!r})"
        check_vhost(entry)
        if not name:
            raise entry.fail("'name' must not be empty")
        durable = entry.flag("durable", True)
        auto_delete = entry.flag("auto_delete")
        arguments = entry.table("arguments")
        if name.startswith("amq."):
            plan.warnings.append(f"{entry.where}: queues named amq.* are not imported (as RabbitMQ)")
            continue
        try:
            validate_queue_arguments(name, vhost, arguments)
        except AMQPError as exc:
            raise entry.fail(exc.reply_text) from None
        plan.queues.append((entry, vhost, name, durable, auto_delete, arguments))
        file_queues.add((vhost, name))

    for index, raw in entries(data, "bindings"):
        entry = Entry(f"bindings[{index}]", raw)
        source = entry.text("source")
        vhost = entry.text("vhost", "")
        destination = entry.text("destination")
        dest_type = entry.text("destination_type")
        entry.where = (
            f"bindings[{index}] (from exchange {source!r} to {dest_type} {destination!r} "
            f"in vhost {vhost!r})"
        )
        if dest_type not in ("queue", "exchange"):
            raise entry.fail(f"'destination_type' must be \"queue\" or \"exchange\", got {dest_type!r}")
        check_vhost(entry)
        routing_key = entry.text("routing_key", "")
        arguments = entry.table("arguments")
        if source == "":
            plan.warnings.append(f"{entry.where}: bindings of the default exchange are implicit, skipped")
            continue

        def exists(kind: str, name: str) -> bool:
            live = broker.vhosts.get(vhost)
            if kind == "exchange":
                return (vhost, name) in file_exchanges or name in _PREDECLARED or (
                    live is not None and name in live.exchanges)
            return (vhost, name) in file_queues or (live is not None and name in live.queues)

        # RabbitMQ skips a binding whose source or destination is missing (rabbit_binding:add's
        # error is not checked): its own exports hold bindings of internal exchanges that they
        # leave out. So does this broker, with a warning.
        if not exists("exchange", source):
            plan.warnings.append(f"{entry.where}: skipped, no exchange {source!r} in vhost {vhost!r}")
            continue
        if not exists(dest_type, destination):
            plan.warnings.append(
                f"{entry.where}: skipped, no {dest_type} {destination!r} in vhost {vhost!r}"
            )
            continue
        live = broker.vhosts.get(vhost)
        source_type = file_exchanges.get((vhost, source)) or _PREDECLARED.get(source) or (
            live.exchanges[source].type_name if live is not None else "")
        try:  # headers' x-match, checked here rather than half way through applying
            EXCHANGE_TYPES[source_type](None, source).validate_binding(routing_key, arguments)
        except ValueError as exc:
            raise entry.fail(precondition_failed(str(exc)).reply_text) from None
        plan.bindings.append((entry, vhost, source, destination, dest_type, routing_key, arguments))

    ignored_parameters = 0
    for index, raw in entries(data, "parameters"):
        entry = Entry(f"parameters[{index}]", raw)
        if raw.get("component") != "vhost-limits":
            ignored_parameters += 1
            continue
        vhost = check_vhost(entry)
        entry.where = f"parameters[{index}] (vhost-limits of vhost {vhost!r})"
        value = raw.get("value")
        try:  # an emptied limits parameter is exported as []
            plan.vhost_limits.append((vhost, validate_limits(VHOST_LIMITS, "limits", value or {})))
        except LimitError as exc:
            raise entry.fail(f"Validation failed: {exc}") from None
    if ignored_parameters:
        plan.warnings.append(f"{ignored_parameters} parameters ignored: runtime parameters other than "
                             "vhost-limits (shovels, federation, ...) are not supported")

    # RabbitMQ refuses an import adding more queues than a vhost's max-queues (as in force
    # before the file's own limits) allows, before it changes anything.
    adding: dict[str, int] = {}
    for _entry, vhost, name, *_rest in plan.queues:
        live = broker.vhosts.get(vhost)
        if live is not None and name not in live.queues:
            adding[vhost] = adding.get(vhost, 0) + 1
    for vhost, count in adding.items():
        refusal = queue_import_error(broker.vhosts[vhost], count)
        if refusal is not None:
            raise DefinitionsError(refusal)

    for key, why in _IGNORED.items():
        count = len(entries(data, key))
        if count:
            plan.warnings.append(f"{count} {key.replace('_', ' ')} ignored: {why}")
    return plan


def import_definitions(broker: Broker, data: dict) -> dict[str, int]:
    """Apply a definitions object to ``broker``: vhosts, users, permissions, exchanges, queues,
    bindings. Idempotent: what exists already and matches is left as it is, users get the
    file's password hash and tags. Raises :class:`DefinitionsError` naming the entry at fault;
    the whole file is checked first, so only an entity that exists with other properties (an
    inequivalent exchange or queue, as RabbitMQ reports it) can stop an import half way.

    With a store attached (:meth:`Broker.attach_store`), durable entities are written through to
    it like any declared by a client; transient ones live until the broker stops, as in RabbitMQ.

    Returns how many users, vhosts, permissions, exchanges, queues and bindings were applied, and
    how many entries were ``skipped`` or ignored (each with a warning in the log).
    """
    if not isinstance(data, dict):
        raise DefinitionsError(f"expected a JSON object with users, vhosts, ..., got {json_type(data)}")
    plan = _plan(broker, data)
    for warning in plan.warnings:
        log.warning("%s", warning)

    for name in plan.vhosts:
        broker.add_vhost(name)
    for _entry, name, password_hash, algorithm, tags in plan.users:
        user = broker.users.users.get(name)
        if user is None:
            broker.users.restore_user(
                name, {"password_hash": password_hash, "hashing_algorithm": algorithm, "tags": tags})
        else:
            user.password_hash = password_hash
            user.hashing_algorithm = algorithm
            user.tags = list(tags)
        broker.save_user(name)
    for name, limits in plan.user_limits:
        user = broker.users.users[name]
        merged = {**user.limits, **limits}  # merged, as RabbitMQ's import does
        user.limits = {k: merged[k] for k in sorted(merged)}
        broker.save_user(name)
    for user_name, vhost, regexes in plan.permissions:
        user = broker.users.users[user_name]
        if user.permissions.get(vhost) != regexes:
            broker.set_permissions(user_name, vhost, regexes)
    for user_name, vhost, exchange, write, read in plan.topic_permissions:
        user = broker.users.users[user_name]
        if user.topic_permissions.get(vhost, {}).get(exchange) != (write, read):
            broker.set_topic_permissions(user_name, vhost, exchange, write, read)

    def apply(entry: Entry, action: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return action(*args, **kwargs)
        except AMQPError as exc:
            raise entry.fail(exc.reply_text) from None

    for entry, vhost, name, type_name, durable, auto_delete, internal, arguments in plan.exchanges:
        apply(entry, broker.vhosts[vhost].declare_exchange, name, type_name, durable=durable,
              auto_delete=auto_delete, internal=internal, arguments=arguments)
    for vhost, limits in plan.vhost_limits:
        broker.vhosts[vhost].limits = limits
        broker.save_vhost(vhost)
    for entry, vhost, name, durable, auto_delete, arguments in plan.queues:
        apply(entry, broker.vhosts[vhost].declare_queue, None, name, durable=durable,
              auto_delete=auto_delete, arguments=arguments, limit=False)
    for entry, vhost_name, source, destination, dest_type, routing_key, arguments in plan.bindings:
        vhost = broker.vhosts[vhost_name]
        source_exchange = apply(entry, vhost.get_exchange, source)
        if dest_type == "queue":
            queue = apply(entry, vhost.get_queue, destination)
            apply(entry, vhost.bind_queue, queue, source_exchange, routing_key, arguments)
        else:
            target = apply(entry, vhost.get_exchange, destination)
            apply(entry, vhost.bind_exchange, target, source_exchange, routing_key, arguments)
    counts = {
        "users": len(plan.users), "vhosts": len(plan.vhosts), "permissions": len(plan.permissions),
        "topic_permissions": len(plan.topic_permissions), "exchanges": len(plan.exchanges), "queues": len(plan.queues), "bindings": len(plan.bindings),
        "skipped": len(plan.warnings),
    }
    log.info(
        "imported %d user(s), %d vhost(s), %d permission(s), %d topic permission(s), "
        "%d exchange(s), %d queue(s), %d binding(s)", *list(counts.values())[:7],
    )
    return counts


# -- data directories -----------------------------------------------------------------------------


def export_data_dir(settings: "Settings") -> dict:
    """The definitions in ``settings.data_dir``, read without changing anything there.

    Safe while a broker runs on the directory (SQLite's WAL lets readers in): the export shows
    what that broker has committed."""
    try:
        snapshot = read_snapshot(settings.data_dir)
    except StoreError as exc:
        raise DefinitionsError(str(exc)) from None
    broker = Broker(settings.default_user, settings.default_pass, settings.default_vhost)
    if snapshot.definitions.get("vhost"):
        broker.vhosts.clear()  # the store's vhosts are the truth, not the settings' default
    broker.attach_store(ReadOnlyStore(snapshot))
    return export_definitions(broker)


def import_data_dir(settings: "Settings", data: dict, force: bool = False) -> dict[str, int]:
    """Import ``data`` into ``settings.data_dir`` (created if missing); returns what
    :func:`import_definitions` returns.

    Meant for a stopped broker: a running one would not see the import, and both would allocate
    the same queue ids. So a directory whose broker runs (it holds the directory's lock) is
    refused, naming that broker's pid; one whose broker crashed is refused unless ``force``, and
    ``force`` keeps the crash marker, so the broker still flags recovered messages as
    redelivered. A fresh directory gets the default user and vhost first, as a running RabbitMQ
    node has them before ``rabbitmqctl import_definitions``. Nothing is written when the file
    has an error."""
    lock = DataDirLock(settings.data_dir).acquire()
    try:
        if not force and left_unclean(settings.data_dir):
            raise DefinitionsError(
                f"the broker of the data directory {settings.data_dir} did not shut down cleanly: "
                "start and stop it once, or pass --force to import anyway"
            )
    except StoreError as exc:
        lock.release()
        raise DefinitionsError(str(exc)) from None
    except BaseException:
        lock.release()
        raise
    store = SQLiteStore(settings.data_dir, lock)
    was_clean = True
    try:
        was_clean = store.load().clean_shutdown
        broker = Broker(settings.default_user, settings.default_pass, settings.default_vhost)
        broker.attach_store(store)
        counts = import_definitions(broker, data)
    except BaseException:
        store.take_batch()  # nothing of a failed import reaches the disk
        store.close(clean=was_clean)
        raise
    store.close(clean=was_clean)
    return counts


def boot_with_definitions(broker: Broker, store: Any, path: str, *attach_args: Any) -> dict[str, int]:
    """Attach ``store`` to ``broker`` (``broker.attach_store(store, *attach_args)``) and import the
    definitions file ``path`` (the ``definitions`` setting); returns the recovery counts
    :meth:`Broker.attach_store` returns.

    As RabbitMQ with ``load_definitions``: the file is applied at every start, and a fresh data
    directory is not seeded with the default user and vhost (the file is expected to define
    them). A bad file raises :class:`ConfigError`, with the store closed and nothing written."""
    snapshot = store.load()
    try:
        data = read_definitions_file(path)
    except DefinitionsError as exc:
        store.close(clean=snapshot.clean_shutdown)
        raise ConfigError(f"definitions: {exc}", "definitions") from None
    try:
        stored_vhosts = {key[0] for key, _record in snapshot.definitions.get("vhost", [])}
        if not stored_vhosts and not snapshot.definitions.get("user"):
            log.info("Will not seed default virtual host and user: have definitions to load")
        # Not on later starts either: users and vhosts come from the store and the file only.
        if not snapshot.definitions.get("user"):
            broker.users.users.clear()
        for name in [name for name in broker.vhosts if name not in stored_vhosts]:
            del broker.vhosts[name]
        counts = broker.attach_store(store, *attach_args)
        import_definitions(broker, data)
    except DefinitionsError as exc:
        store.take_batch()
        store.close(clean=snapshot.clean_shutdown)
        raise ConfigError(f"definitions file {path}: {exc}", "definitions") from None
    if not broker.users.users:
        log.warning(
            "definitions file %s defines no users and the data directory has none: no client can "
            "log in (RabbitMQ does not create the default user when it loads definitions at "
            "start-up either)", path,
        )
    log.info("imported definitions from %s", os.path.abspath(path))
    return counts
