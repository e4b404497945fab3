"""Broker settings: built-in defaults, a TOML file, ``AMQP_BROKER_*`` variables and flags, and
RabbitMQ's own ``RABBITMQ_*`` variables and ``rabbitmq.conf`` as aliases.

Every setting is a field of :class:`Settings`. Its value comes from, highest precedence first:

1. a command-line flag ``--<name-with-dashes>`` (``--port 5673``),
2. an environment variable ``AMQP_BROKER_<NAME>`` (``AMQP_BROKER_PORT=5673``),
3. the TOML file named by ``--config FILE`` or ``AMQP_BROKER_CONFIG`` (no file is read otherwise),
4. RabbitMQ's environment variables (``RABBITMQ_NODE_PORT``...; see
   :mod:`amqp_broker.rabbitmq_config`),
5. the ``rabbitmq.conf`` named by ``RABBITMQ_CONFIG_FILE`` (none is read otherwise),
6. the built-in default, which ``conf/broker.toml`` documents key by key.

Ours come first so that a setting made for this broker is never overridden by an environment
that was prepared for RabbitMQ. Between the two RabbitMQ sources the order is RabbitMQ's own:
``RABBITMQ_*`` variables win over ``rabbitmq.conf``, except ``RABBITMQ_NODE_PORT`` and
``RABBITMQ_NODE_IP_ADDRESS``, which RabbitMQ 3.10 ignores when the file sets ``listeners.tcp.*``.

Flag and environment values are strings, converted by the field's type: ``int``, ``float``,
``str``, or a comma-separated list for ``tuple[str, ...]``. TOML values must already have the
right type. Any bad value or unknown file key raises :class:`ConfigError`, naming where it came
from.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import math
import os
import socket
import sys
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONFIG_ENV_VAR",
    "ENV_PREFIX",
    "LOG_LEVELS",
    "ConfigError",
    "Settings",
    "build_arg_parser",
    "full_node_name",
    "load_settings",
    "settings_from_args",
]

#: Prefix of the environment variable for each setting: ``AMQP_BROKER_`` + the name upper-cased.
ENV_PREFIX = "AMQP_BROKER_"

#: Environment variable naming a config file, when ``--config`` is not given.
CONFIG_ENV_VAR = "AMQP_BROKER_CONFIG"

#: The largest max_message_size RabbitMQ accepts (512 MiB): a larger body could not be held.
MAX_MESSAGE_SIZE_LIMIT = 536870912

#: Accepted values of :attr:`Settings.log_level`, lowest first.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: Values of the ``strict`` setting (amqp_broker/protocol/strict.py).
STRICT_MODES = ("off", "report", "close")


def full_node_name(name: str) -> str:
    """``name`` with ``@<short host name>`` appended when it has no ``@`` (as RabbitMQ does with
    ``RABBITMQ_NODENAME``): ``rabbit`` -> ``rabbit@myhost``."""
    if "@" in name:
        return name
    return f"{name}@{socket.gethostname().split('.')[0]}"


class ConfigError(ValueError):
    """A setting could not be read or is invalid; the message says which one and from where.

    ``setting`` is the name of the offending :class:`Settings` field, when there is one.
    """

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True, slots=True)
class Settings:
    """The broker's configuration. Immutable; build variants with :func:`dataclasses.replace`.

    Constructing one validates every field (raising :class:`ConfigError`), normalises
    ``log_level`` to lower case, ``loopback_users`` to a tuple and ``memory_high_watermark`` to a
    float. ``conf/broker.toml`` explains each field and the RabbitMQ setting it mirrors.
    """

    #: Interface to listen on; ``""`` means all interfaces (see :attr:`bind_host`).
    host: str = ""
    #: TCP port for AMQP clients; 0 lets the OS choose a free one.
    port: int = 5672
    #: Directory for durable state, relative to the working directory unless absolute.
    data_dir: str = "./data"
    #: A definitions.json file (RabbitMQ's format) imported at every start; "" for none.
    definitions: str = ""
    #: One of :data:`LOG_LEVELS`.
    log_level: str = "info"
    #: User created on first start (with full permissions on ``default_vhost``).
    default_user: str = "guest"
    #: Password of ``default_user``. Left out of ``repr()`` so it does not end up in logs.
    default_pass: str = field(default="guest", repr=False)
    #: Virtual host created on first start.
    default_vhost: str = "/"
    #: Users who may log in only over a loopback address (RabbitMQ's default: guest); empty to
    #: let every user in from anywhere.
    loopback_users: tuple[str, ...] = ("guest",)
    #: Heartbeat seconds proposed in connection.tune; 0 disables heartbeats.
    heartbeat: int = 60
    #: Largest frame in bytes proposed in connection.tune; 0 = no limit, else at least 4096.
    frame_max: int = 131072
    #: Most channels per connection proposed in connection.tune; 0 = no limit (65535).
    channel_max: int = 2047
    #: Most client connections open at once (RabbitMQ's connection_max); beyond it new ones
    #: wait in the listen backlog. 0 = no limit (RabbitMQ's default, infinity).
    connection_max: int = 0
    #: Seconds over which failed logins from one peer address are logged as one summary line.
    failed_login_log_interval: int = 60
    #: Largest message body in bytes a publisher may send (RabbitMQ's max_message_size).
    max_message_size: int = 134217728
    #: Milliseconds a delivery may stay unacknowledged before the channel is closed; 0 disables.
    consumer_timeout_ms: int = 1800000
    #: Fraction of total memory above which publishers are blocked (a value above 1 is bytes).
    memory_high_watermark: float = 0.4
    #: Free bytes on data_dir's disk below which publishers are blocked; 0 disables.
    disk_free_limit_bytes: int = 50000000
    #: Bytes of ready messages (bodies + per-message overhead) a queue keeps in memory before the
    #: rest of its backlog is paged to the store in data_dir.
    queue_memory_limit_bytes: int = 134217728
    #: TCP port of the management HTTP API and web page (RabbitMQ's 15672), on ``host``; 0 = off.
    management_port: int = 15672
    #: TCP port of the Prometheus metrics endpoint ``/metrics`` (RabbitMQ's 15692), on ``host``;
    #: 0 = off.
    prometheus_port: int = 15692
    #: A file every connection's frames are traced into (JSON lines, see server/trace.py); "" =
    #: no trace.
    trace_file: str = ""
    #: connection.start's server_properties ``product``, ``version``, ``platform`` and
    #: ``cluster_name`` (RabbitMQ's ``server_properties`` and ``cluster_name``); "" = our own:
    #: amqp_broker, its version, the Python version, and the node's name (RabbitMQ's default).
    server_product: str = ""
    server_version: str = ""
    server_platform: str = ""
    cluster_name: str = ""
    #: The node's name, as RabbitMQ's ``RABBITMQ_NODENAME``: a name without ``@`` gets
    #: ``@<short host name>`` appended, so the default is ``rabbit@<short host name>``. Tools
    #: find a running broker by it (see :mod:`amqp_broker.server.discovery`).
    node_name: str = "rabbit"
    #: Strict mode, a lint for client authors: "off", "report" (log and count the AMQP 0-9-1
    #: rules a client breaks that RabbitMQ lets pass) or "close" (also close with the spec's code).
    strict: str = "off"
    #: TCP port of the STOMP listener (RabbitMQ's rabbitmq_stomp plugin, 61613 there), on
    #: ``host``; 0 = off.
    stomp_port: int = 0
    #: Login and passcode a STOMP CONNECT without a login header uses; "" = such a CONNECT is
    #: refused (the plugin's default_user).
    stomp_default_user: str = "guest"
    stomp_default_pass: str = field(default="guest", repr=False)
    #: Virtual host of a STOMP CONNECT without a host header.
    stomp_default_vhost: str = "/"
    #: Whether STOMP frames sent before CONNECT log in as the default user.
    stomp_implicit_connect: bool = False
    #: TCP port of the MQTT 3.1.1 listener (RabbitMQ's rabbitmq_mqtt, whose port is 1883), on
    #: ``host``; 0 = off.
    mqtt_port: int = 0
    #: Virtual host of MQTT connections whose user name does not name one (``vhost:user``).
    mqtt_vhost: str = "/"
    #: Exchange MQTT publishes go to and subscriptions are bound to.
    mqtt_exchange: str = "amq.topic"
    #: User an MQTT CONNECT without credentials logs in as; "" refuses such connections
    #: (rabbitmq_mqtt's allow_anonymous = false).
    mqtt_default_user: str = "guest"
    #: Password of ``mqtt_default_user``. Left out of ``repr()``.
    mqtt_default_pass: str = field(default="guest", repr=False)
    #: "auto": serve AMQPS with a throw-away CA and certificates generated (once) in
    #: ``<data_dir>/tls/``; "" (or "off"): AMQPS only when ``tls_certfile`` is set.
    tls: str = ""
    #: TCP port for AMQP over TLS (RabbitMQ's ``listeners.ssl.default``); 0 = any free port.
    tls_port: int = 5671
    #: PEM files of the server's certificate (chain), its private key (may be in the certificate
    #: file), and the CAs client certificates are verified against (RabbitMQ's ``ssl_options.*``).
    tls_certfile: str = ""
    tls_keyfile: str = ""
    tls_cacertfile: str = ""
    #: "verify_peer" (ask for a client certificate, verify one if given) or "verify_none";
    #: "" = verify_none, or verify_peer with tls = "auto" (so EXTERNAL works out of the box).
    tls_verify: str = ""
    #: With verify_peer: refuse the TLS handshake of a client without a certificate.
    tls_fail_if_no_peer_cert: bool = False
    #: Where EXTERNAL takes the user name from in a client certificate: "common_name" (its CN) or
    #: "distinguished_name" (its whole subject, RabbitMQ's format: "CN=guest,O=client").
    ssl_cert_login_from: str = "common_name"

    def __post_init__(self) -> None:
        """Check types and ranges of every field; normalise the few that have a canonical form."""
        for f in dataclasses.fields(self):
            value = _check_type(f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        object.__setattr__(self, "log_level", self.log_level.lower())
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}",
                "log_level",
            )
        _check_range("port", self.port, 0, 65535)
        _check_range("tls_port", self.tls_port, 0, 65535)
        _check_tls(self)
        _check_range("management_port", self.management_port, 0, 65535)
        _check_range("prometheus_port", self.prometheus_port, 0, 65535)
        _check_range("stomp_port", self.stomp_port, 0, 65535)
        _check_range("mqtt_port", self.mqtt_port, 0, 65535)
        _check_range("heartbeat", self.heartbeat, 0, 65535)
        _check_range("channel_max", self.channel_max, 0, 65535)
        _check_range("frame_max", self.frame_max, 0, 2**32 - 1)
        if 0 < self.frame_max < 4096:
            raise ConfigError(
                f"frame_max must be 0 (no limit) or at least 4096, got {self.frame_max}",
                "frame_max",
            )
        _check_range("max_message_size", self.max_message_size, 1, MAX_MESSAGE_SIZE_LIMIT)
        _check_range("consumer_timeout_ms", self.consumer_timeout_ms, 0, None)
        _check_range("connection_max", self.connection_max, 0, None)
        _check_range("failed_login_log_interval", self.failed_login_log_interval, 0, None)
        _check_range("disk_free_limit_bytes", self.disk_free_limit_bytes, 0, None)
        _check_range("queue_memory_limit_bytes", self.queue_memory_limit_bytes, 0, None)
        if not (math.isfinite(self.memory_high_watermark) and self.memory_high_watermark >= 0):
            raise ConfigError(
                "memory_high_watermark must be a fraction >= 0, "
                f"got {self.memory_high_watermark!r}",
                "memory_high_watermark",
            )
        object.__setattr__(self, "strict", self.strict.lower())
        if self.strict not in STRICT_MODES:
            raise ConfigError(
                f"strict must be one of {', '.join(STRICT_MODES)}, got {self.strict!r}", "strict"
            )
        for name in ("data_dir", "default_vhost", "node_name", "mqtt_vhost", "mqtt_exchange"):
            if not getattr(self, name):
                raise ConfigError(f"{name} must not be empty", name)
        object.__setattr__(self, "node_name", full_node_name(self.node_name))
        node, _, host = self.node_name.partition("@")
        # The name is also a file name (the discovery record) and an Erlang-style node name.
        if not node or not host or any(c in self.node_name for c in "/\\ \t\r\n\0"):
            raise ConfigError(
                f"node_name must look like NAME or NAME@HOST, without spaces or slashes, "
                f"got {self.node_name!r}",
                "node_name",
            )

    @property
    def bind_host(self) -> str | None:
        """``host`` as :func:`trio.open_tcp_listeners` wants it: ``None`` for all interfaces."""
        return self.host or None


_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Settings)
_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Settings))
_STR_LIST = tuple[str, ...]


def _check_type(name: str, value: Any) -> Any:
    """Return ``value`` if it fits field ``name``'s type (lists become tuples, ints floats)."""
    expected = _FIELD_TYPES[name]
    if expected is bool:
        if isinstance(value, bool):
            return value
        wanted = "true or false"
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        wanted = "an integer"
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        wanted = "a number"
    elif expected is str:
        if isinstance(value, str):
            return value
        wanted = "a string"
    elif expected == _STR_LIST:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        wanted = "a list of strings"
    else:  # pragma: no cover - a new field type needs handling here and in _parse_string
        raise TypeError(f"unsupported type {expected!r} for setting {name}")
    raise ConfigError(
        f"{name} must be {wanted}, got {type(value).__name__} {value!r}", name
    )


def _check_tls(settings: "Settings") -> None:
    """The TLS settings' values, and the combinations that cannot work."""
    for name, allowed in (
        ("tls", ("", "off", "auto")),
        ("tls_verify", ("", "verify_peer", "verify_none")),
        ("ssl_cert_login_from", ("common_name", "distinguished_name")),
    ):
        if getattr(settings, name) not in allowed:
            choices = ", ".join(repr(v) if not v else v for v in allowed)
            raise ConfigError(f"{name} must be one of {choices}, got {getattr(settings, name)!r}", name)
    files = [name for name in ("tls_certfile", "tls_keyfile", "tls_cacertfile") if getattr(settings, name)]
    if settings.tls == "auto" and files:
        raise ConfigError(
            f"{files[0]} cannot be combined with tls = auto, which generates its own certificates",
            files[0],
        )
    if settings.tls != "auto" and files and not settings.tls_certfile:
        raise ConfigError(f"{files[0]} is set but tls_certfile is not: AMQPS needs a certificate",
                          files[0])


def _check_range(name: str, value: int, low: int, high: int | None) -> None:
    """Raise :class:`ConfigError` unless ``low <= value <= high`` (no upper bound if None)."""
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bounds}, got {value}", name)


def _parse_string(name: str, raw: str) -> Any:
    """Convert a flag or environment string to field ``name``'s type."""
    expected = _FIELD_TYPES[name]
    text = raw.strip()
    try:
        if expected is int:
            return int(text, 10)
        if expected is float:
            return float(text)
    except ValueError:
        kind = "an integer" if expected is int else "a number"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}", name) from None
    if expected == _STR_LIST:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if expected is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}", name)
    return raw


def _flag(name: str) -> str:
    """The command-line flag of setting ``name``: ``data_dir`` -> ``--data-dir``."""
    return "--" + name.replace("_", "-")


def _env_var(name: str) -> str:
    """The environment variable of setting ``name``: ``data_dir`` -> ``AMQP_BROKER_DATA_DIR``."""
    return ENV_PREFIX + name.upper()


_FLAG_HELP = {
    "host": 'interface to listen on ("" = all interfaces; default: all)',
    "port": "TCP port for AMQP clients (default: 5672; 0 = any free port)",
    "data_dir": "directory for durable state (default: ./data)",
    "definitions": "definitions.json file to import at start-up (default: none)",
    "log_level": f"log level: {', '.join(LOG_LEVELS)} (default: info)",
    "default_user": "user created on first start (default: guest)",
    "default_pass": "password of the default user (default: guest)",
    "default_vhost": "virtual host created on first start (default: /)",
    "loopback_users": 'comma-separated users who may log in only from this machine (loopback); '
    '"" = none, to let guest in from other hosts, e.g. in containers (default: guest)',
    "heartbeat": "heartbeat seconds proposed to clients, 0 = off (default: 60)",
    "frame_max": "largest frame in bytes proposed to clients (default: 131072)",
    "channel_max": "most channels per connection proposed to clients (default: 2047)",
    "connection_max": "most client connections open at once; more wait to be accepted, "
    "0 = no limit (default: 0)",
    "failed_login_log_interval": "seconds over which failed logins from one address are logged as "
    "one line plus a count, 0 = a line each (default: 60)",
    "max_message_size": "largest message body in bytes, at most 536870912 (default: 134217728)",
    "consumer_timeout_ms": "ms a delivery may stay unacked, 0 = off (default: 1800000)",
    "memory_high_watermark": "memory fraction above which publishers block (default: 0.4)",
    "disk_free_limit_bytes": "free disk bytes below which publishers block (default: 50000000)",
    "queue_memory_limit_bytes": "bytes of a queue's backlog kept in memory before the rest is "
    "paged to disk (default: 134217728)",
    "management_port": "port of the management HTTP API and web page, 0 = off (default: 15672)",
    "prometheus_port": "port of the Prometheus /metrics endpoint, 0 = off (default: 15692)",
    "trace_file": "trace every connection's frames into this file, as JSON lines "
    "(read it with `amqp-broker trace show|pcap`; default: none)",
    "server_product": 'product announced to clients in connection.start, e.g. "RabbitMQ" for '
    "clients that gate features on it (default: amqp_broker)",
    "server_version": "version announced to clients in connection.start, e.g. 3.10.8 "
    "(default: this broker's version)",
    "server_platform": "platform announced to clients in connection.start "
    "(default: Python <version>)",
    "cluster_name": "cluster name announced to clients and shown by the management API "
    "(default: the node name)",
    "mqtt_port": "port of the MQTT 3.1.1 listener, 0 = off (default: 0; RabbitMQ's is 1883)",
    "mqtt_vhost": "virtual host of MQTT clients whose user name names none (default: /)",
    "mqtt_exchange": "exchange MQTT publishes and subscriptions use (default: amq.topic)",
    "mqtt_default_user": 'user of MQTT clients that send no credentials, "" = refuse them '
    "(default: guest)",
    "mqtt_default_pass": "password of the MQTT default user (default: guest)",
    "node_name": "node name; @<short host name> is appended when it has no @ "
    "(default: rabbit@<short host name>)",
    "strict": "report AMQP 0-9-1 violations RabbitMQ lets pass: --strict (= report: log and "
    "count), --strict=close (also close with the spec's code), off (default)",
    "stomp_port": "port of the STOMP listener (RabbitMQ's rabbitmq_stomp), 0 = off (default: 0)",
    "stomp_default_user": 'login of a STOMP CONNECT without one, "" = refuse it (default: guest)',
    "stomp_default_pass": "passcode of a STOMP CONNECT without login (default: guest)",
    "stomp_default_vhost": "virtual host of a STOMP CONNECT without a host header (default: /)",
    "stomp_implicit_connect": "true: STOMP frames before CONNECT log in as the default user "
    "(default: false)",
    "tls": 'auto = serve AMQPS with a throw-away CA and certificates made once in DATA_DIR/tls '
    '(needs the [tls] extra); "" = AMQPS only when --tls-certfile is set (default: "")',
    "tls_port": "TCP port for AMQP over TLS (AMQPS), 0 = any free port (default: 5671)",
    "tls_certfile": "PEM file of the server certificate (chain); turns AMQPS on (default: none)",
    "tls_keyfile": "PEM file of the server certificate's private key (default: in the certfile)",
    "tls_cacertfile": "PEM file of the CAs that client certificates must chain to (default: none)",
    "tls_verify": "verify_peer (ask clients for a certificate and verify it) or verify_none "
    "(default: verify_none; verify_peer with --tls auto)",
    "tls_fail_if_no_peer_cert": "true = refuse TLS clients without a certificate (with "
    "verify_peer) (default: false)",
    "ssl_cert_login_from": "EXTERNAL login's user name: the client certificate's common_name or "
    "its distinguished_name (default: common_name)",
}
# Flags taking an optional value: ``--strict`` alone means ``--strict=report``.
_FLAG_CONST = {"strict": "report"}

#: Further flags of a setting, beside --<name-with-dashes>.
_FLAG_ALIASES = {"trace_file": ("--trace",)}

#: The settings that ``definitions export|import`` uses: the others only matter to a running
#: broker, so their flags would only clutter that command's help.
_DEFINITIONS_SETTINGS = ("data_dir", "log_level")
#: ``definitions import`` into a fresh data directory seeds it with these first, as a running
#: broker has them.
_IMPORT_SETTINGS = ("default_user", "default_pass", "default_vhost")


def _settings_parent(names: Sequence[str]) -> argparse.ArgumentParser:
    """A parent parser with ``--config`` and the flags of settings ``names``; every flag's default
    is "not given" (absent from the namespace)."""
    parent = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = parent.add_argument_group("settings (each also AMQP_BROKER_<NAME> in the environment)")
    group.add_argument(
        "--config",
        metavar="FILE",
        help=f"read settings from this TOML file (also ${CONFIG_ENV_VAR}; default: none)",
    )
    for name in names:
        extra = {"nargs": "?", "const": _FLAG_CONST[name]} if name in _FLAG_CONST else {}
        group.add_argument(_flag(name), *_FLAG_ALIASES.get(name, ()), dest=name, metavar=name.upper(),
                           help=_FLAG_HELP[name], **extra)
    return parent


def build_arg_parser() -> argparse.ArgumentParser:
    """Build the ``amqp-broker`` command-line parser.

    Every setting has a flag whose default is "not given" (the attribute is absent from the
    parsed namespace), so :func:`settings_from_args` can tell flags from defaults. Flag values
    stay strings; conversion and validation happen in :func:`settings_from_args`.

    The parser has subcommands in ``namespace.command``: ``serve`` (run the broker), also what
    runs when none is given (``command`` is then ``None``), and ``definitions`` with
    ``namespace.definitions_action`` ``export`` or ``import`` and ``namespace.file``. The setting
    flags are accepted both before and after the subcommand; after ``definitions``, only those of
    the settings it uses.
    """
    from . import DISTRIBUTION, __version__

    common = _settings_parent(_FIELD_NAMES)
    parser = argparse.ArgumentParser(
        prog="amqp-broker",
        usage="%(prog)s [COMMAND] [options]",
        description="An AMQP 0-9-1 message broker for development and CI.",
        epilog="Precedence: flags > AMQP_BROKER_* environment > --config file > RABBITMQ_* "
        "environment > $RABBITMQ_CONFIG_FILE (rabbitmq.conf) > built-in defaults.",
        parents=[common],
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s ({DISTRIBUTION}) {__version__}",
        help="print the program's name and version and exit",
    )
    # prog: the subcommands' usage lines start "amqp-broker definitions ...", not with our usage.
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", prog="amqp-broker", help="what to do (default: serve)"
    )
    commands.add_parser(
        "serve", parents=[common], help="run the broker (the default when no command is given)"
    )
    definitions_common = _settings_parent(_DEFINITIONS_SETTINGS)
    import_common = _settings_parent(_DEFINITIONS_SETTINGS + _IMPORT_SETTINGS)
    # Listed here for --help only: __main__ hands these to their own parsers (amqp_broker/ctl).
    commands.add_parser("ctl", add_help=False,
                        help="control a running broker with rabbitmqctl's commands (ctl --help lists them)")
    commands.add_parser("trace", add_help=False,
                        help="print a frame trace (trace show FILE) or turn it into a pcap "
                        "(trace pcap FILE -o OUT.pcap)")
    commands.add_parser("shims", add_help=False,
                        help="write rabbitmq-server/rabbitmqctl/rabbitmq-diagnostics/rabbitmq-plugins "
                        "wrappers into a directory (shims --help)")
    definitions = commands.add_parser(
        "definitions",
        parents=[definitions_common],
        help="export or import definitions (RabbitMQ's definitions.json) in the data directory",
        description="Export or import users, vhosts, permissions, exchanges, queues and bindings "
        "in RabbitMQ's definitions.json format, in the data directory (--data-dir).",
    )
    actions = definitions.add_subparsers(
        dest="definitions_action",
        metavar="ACTION",
        required=True,
        prog="amqp-broker definitions",
        help="export or import",
    )
    export = actions.add_parser(
        "export",
        parents=[definitions_common],
        help="write the data directory's definitions to FILE (safe while the broker runs)",
    )
    export.add_argument("file", metavar="FILE", help='file to write ("-" for standard output)')
    load = actions.add_parser(
        "import",
        parents=[import_common],
        help="import FILE into the data directory (stop the broker first; it reads them on start)",
    )
    load.add_argument("file", metavar="FILE", help='file to read ("-" for standard input)')
    load.add_argument(
        "--force",
        action="store_true",
        default=False,
        help="import even though the data directory's broker did not shut down cleanly (it crashed)",
    )
    return parser


def settings_from_args(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Settings:
    """Resolve :class:`Settings` from parsed flags (from :func:`build_arg_parser`) and ``environ``.

    ``environ`` defaults to :data:`os.environ`. Environment variables with the ``AMQP_BROKER_``
    prefix that name no setting are ignored (tests and tools may use the prefix for their own
    variables). Raises :class:`ConfigError` naming the flag, variable or file key at fault.

    ``warn`` receives one line for each thing read but not honoured (a ``rabbitmq.conf`` key this
    broker does not have, say); by default each is logged as a warning. The command line passes
    a list's ``append`` and logs them once logging is set up.
    """
    from . import rabbitmq_config  # it builds on this module

    if environ is None:
        environ = os.environ
    if warn is None:
        warn = logging.getLogger("amqp_broker.config").warning
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    # Lowest precedence first: each layer overrides the ones before it.
    for source, name, value in rabbitmq_config.rabbitmq_layers(environ, warn):
        values[name] = value
        sources[name] = source

    config_file = getattr(args, "config", None)
    config_source = "--config"
    if config_file is None and environ.get(CONFIG_ENV_VAR):
        config_file, config_source = environ[CONFIG_ENV_VAR], CONFIG_ENV_VAR
    if config_file:
        for name, value in _read_config_file(config_file, config_source).items():
            values[name] = value
            sources[name] = f"config file {config_file}"

    layers = [
        ("environment variable " + _env_var(name), name, environ.get(_env_var(name)))
        for name in _FIELD_NAMES
    ] + [(_flag(name), name, getattr(args, name, None)) for name in _FIELD_NAMES]
    for source, name, raw in layers:
        if raw is None:
            continue
        try:
            values[name] = _parse_string(name, raw)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}", name) from None
        sources[name] = source

    try:
        rabbitmq_config.resolve_node_dir(values)
        return Settings(**values)
    except ConfigError as exc:
        if exc.setting in sources:
            raise ConfigError(f"{sources[exc.setting]}: {exc}", exc.setting) from None
        raise


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Parse ``argv`` (default ``sys.argv[1:]``) and ``environ`` (default ``os.environ``).

    Precedence: flags > ``AMQP_BROKER_*`` environment > the ``--config`` (or
    ``$AMQP_BROKER_CONFIG``) file > ``RABBITMQ_*`` environment > the ``$RABBITMQ_CONFIG_FILE``
    rabbitmq.conf > built-in defaults. No file is read unless one is named. Raises
    :class:`ConfigError` for a bad value, an unreadable or invalid file, or an unknown key in it;
    a malformed command line exits with status 2 through :mod:`argparse`, as command-line tools
    do. Warnings (things read but ignored) are logged.
    """
    args = build_arg_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    return settings_from_args(args, environ)


def _read_config_file(path: str, source: str) -> dict[str, Any]:
    """Read a TOML settings file: a flat table of setting names. Unknown keys are an error."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} (from {source}) does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    unknown = [key for key in data if key not in _FIELD_NAMES]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, _FIELD_NAMES, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"config file {path}: unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(hints)}; known settings: {', '.join(_FIELD_NAMES)}"
        )
    return data
