"""RabbitMQ's own configuration sources, read as aliases of :class:`~amqp_broker.config.Settings`,
so that an environment prepared for a RabbitMQ node starts this broker the same way.

Two sources, in RabbitMQ's order (the later wins):

- the new-style ``rabbitmq.conf`` named by ``RABBITMQ_CONFIG_FILE`` (with or without its
  ``.conf`` suffix, as RabbitMQ accepts it): the keys in :data:`CONF_KEYS`; every other key is
  ignored with one warning each (RabbitMQ would refuse to start on a key it does not know; a key
  it knows that has no counterpart here would only stop a working set-up from starting);
- the ``RABBITMQ_*`` environment variables: :data:`ENV_ALIASES`, ``RABBITMQ_MNESIA_BASE``,
  ``RABBITMQ_ENABLED_PLUGINS`` / ``RABBITMQ_ENABLED_PLUGINS_FILE`` and ``RABBITMQ_LOG``.
  As in RabbitMQ, an empty variable counts as unset; and as in RabbitMQ 3.10, whose
  ``listeners.tcp.*`` in rabbitmq.conf replace what ``RABBITMQ_NODE_PORT`` and
  ``RABBITMQ_NODE_IP_ADDRESS`` set, those two are ignored (with a warning) when the file sets a
  listener.

:func:`rabbitmq_layers` gives their values; :func:`amqp_broker.config.settings_from_args` lays
the ``--config`` file, ``AMQP_BROKER_*`` variables and flags over them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from .config import ConfigError, Settings, _parse_string, full_node_name

__all__ = [
    "CONF_KEYS",
    "ENV_ALIASES",
    "NodeDirUnder",
    "parse_enabled_plugins",
    "rabbitmq_layers",
    "resolve_node_dir",
]

#: (source, setting name, value) triples, lowest precedence first.
Layer = list[tuple[str, str, Any]]
Warn = Callable[[str], None]

CONFIG_FILE_VAR = "RABBITMQ_CONFIG_FILE"
MNESIA_BASE_VAR = "RABBITMQ_MNESIA_BASE"
ENABLED_PLUGINS_VAR = "RABBITMQ_ENABLED_PLUGINS"
ENABLED_PLUGINS_FILE_VAR = "RABBITMQ_ENABLED_PLUGINS_FILE"
LOG_VAR = "RABBITMQ_LOG"

#: RabbitMQ environment variable -> the setting it sets, for those that map one to one.
ENV_ALIASES = {
    "RABBITMQ_NODENAME": "node_name",
    "RABBITMQ_NODE_IP_ADDRESS": "host",
    "RABBITMQ_NODE_PORT": "port",
    "RABBITMQ_DEFAULT_USER": "default_user",
    "RABBITMQ_DEFAULT_PASS": "default_pass",
    "RABBITMQ_DEFAULT_VHOST": "default_vhost",
    # The node's own directory; RABBITMQ_MNESIA_BASE is its parent (see NodeDirUnder).
    "RABBITMQ_MNESIA_DIR": "data_dir",
}
_LISTENER_VARS = ("RABBITMQ_NODE_IP_ADDRESS", "RABBITMQ_NODE_PORT")

#: rabbitmq.conf keys read, and the setting each sets (``$name``/``$user``: any name there).
CONF_KEYS = {
    "listeners.tcp.$name": "host and port (one listener: the first one listed)",
    "default_user": "default_user",
    "default_pass": "default_pass",
    "default_vhost": "default_vhost",
    "cluster_name": "cluster_name",
    "loopback_users": "loopback_users (none)",
    "loopback_users.$user": "loopback_users (the users set to true)",
    "heartbeat": "heartbeat",
    "frame_max": "frame_max",
    "channel_max": "channel_max",
    "connection_max": "connection_max (infinity: 0, no limit)",
    "max_message_size": "max_message_size",
    "consumer_timeout": "consumer_timeout_ms",
    "vm_memory_high_watermark.relative": "memory_high_watermark",
    "vm_memory_high_watermark.absolute": "memory_high_watermark (bytes)",
    "disk_free_limit.absolute": "disk_free_limit_bytes",
    "disk_free_limit.relative": "disk_free_limit_bytes (times total memory)",
    "load_definitions": "definitions",
    "definitions.local.path": "definitions",
    "management.load_definitions": "definitions",
    "log.console.level": "log_level",
    "management.tcp.port": "management_port",
    "prometheus.tcp.port": "prometheus_port",
    "stomp.listeners.tcp.$name": "stomp_port (one listener: the first one listed)",
    "stomp.default_user": "stomp_default_user",
    "stomp.default_pass": "stomp_default_pass",
    "stomp.default_vhost": "stomp_default_vhost",
    "stomp.implicit_connect": "stomp_implicit_connect",
    "mqtt.listeners.tcp.$name": "mqtt_port (one listener: the first one listed)",
    "mqtt.vhost": "mqtt_vhost",
    "mqtt.exchange": "mqtt_exchange",
    "mqtt.default_user": "mqtt_default_user",
    "mqtt.default_pass": "mqtt_default_pass",
    "mqtt.allow_anonymous": "mqtt_default_user ('' when false)",
    "listeners.ssl.$name": "tls_port (one listener: the first one listed)",
    "ssl_options.certfile": "tls_certfile",
    "ssl_options.keyfile": "tls_keyfile",
    "ssl_options.cacertfile": "tls_cacertfile",
    "ssl_options.verify": "tls_verify",
    "ssl_options.fail_if_no_peer_cert": "tls_fail_if_no_peer_cert",
    "ssl_cert_login_from": "ssl_cert_login_from",
}
_SSL_OPTIONS = {
    "certfile": "tls_certfile", "keyfile": "tls_keyfile", "cacertfile": "tls_cacertfile",
    "verify": "tls_verify",
}  # fmt: skip

#: Plugins whose being enabled turns the management API on: the plugin itself and those that
#: depend on it (RabbitMQ starts a plugin's dependencies with it).
MANAGEMENT_PLUGINS = frozenset({
    "rabbitmq_management", "rabbitmq_federation_management", "rabbitmq_shovel_management",
    "rabbitmq_stream_management", "rabbitmq_top", "rabbitmq_tracing",
})  # fmt: skip
PROMETHEUS_PLUGIN = "rabbitmq_prometheus"
#: Plugins that each bring a listener of ours, with the setting for its port and the port it
#: takes when enabled and rabbitmq.conf names none (stomp/mqtt.listeners.tcp.default).
PLUGIN_LISTENERS = {"rabbitmq_stomp": ("stomp_port", 61613), "rabbitmq_mqtt": ("mqtt_port", 1883)}

#: RabbitMQ's log levels and the nearest of ours (Python's logging has no notice, alert, ...).
_LOG_LEVELS = {
    "debug": "debug", "info": "info", "notice": "info", "warning": "warning", "error": "error",
    "critical": "critical", "alert": "critical", "emergency": "critical", "none": "critical",
}  # fmt: skip

# RabbitMQ's information units (rabbit_resource_monitor_misc:parse_information_unit), and
# cuttlefish's bytesize units for frame_max.
_INFO_UNITS = {
    "": 1,
    **dict.fromkeys(("k", "K", "kiB", "KiB", "KIB", "kib"), 1024),
    **dict.fromkeys(("m", "M", "MiB", "MIB", "mib"), 1024**2),
    **dict.fromkeys(("g", "G", "GiB", "GIB", "gib"), 1024**3),
    **dict.fromkeys(("kB", "KB", "kb", "Kb"), 1000),
    **dict.fromkeys(("MB", "mB", "mb", "Mb"), 1000**2),
    **dict.fromkeys(("GB", "gB", "gb", "Gb"), 1000**3),
}
_BYTESIZE_UNITS = {"": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


class NodeDirUnder(str):
    """``data_dir`` from ``RABBITMQ_MNESIA_BASE``: the node's directory under that one, named after
    the node as RabbitMQ names it (``<base>/rabbit@host``), known once the node name is."""


def resolve_node_dir(values: dict[str, Any]) -> None:
    """Turn a :class:`NodeDirUnder` ``data_dir`` in ``values`` into ``<base>/<node name>``."""
    base = values.get("data_dir")
    if isinstance(base, NodeDirUnder):
        node_name = values.get("node_name", Settings.__dataclass_fields__["node_name"].default)
        values["data_dir"] = os.path.join(str(base), full_node_name(node_name))


def rabbitmq_layers(environ: Mapping[str, str], warn: Warn) -> Layer:
    """The settings that RabbitMQ's sources in ``environ`` give, lowest precedence first: the
    rabbitmq.conf file's, then the environment variables'. ``warn`` gets one line per thing
    ignored; a value that cannot be used raises :class:`ConfigError`."""
    conf_layer, listener_source = _conf_layer(environ, warn)
    env_layer = _env_layer(environ, listener_source, warn)
    for setting, _port in PLUGIN_LISTENERS.values():
        if any(name == setting for _, name, _ in conf_layer):
            # An enabled plugin's listener takes the port rabbitmq.conf names, not its default;
            # a plugin left out of the list keeps it off (its 0 stays).
            env_layer = [e for e in env_layer if not (e[1] == setting and e[2] != 0)]
    return conf_layer + env_layer


# -- environment variables -------------------------------------------------------------------------


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value; None when unset or empty (RabbitMQ ignores empty ones)."""
    return environ.get(name) or None


def _env_layer(environ: Mapping[str, str], listener_source: str | None, warn: Warn) -> Layer:
    layer: Layer = []
    for var, name in ENV_ALIASES.items():
        raw = _env(environ, var)
        if raw is None:
            continue
        if var in _LISTENER_VARS and listener_source is not None:
            warn(f"{var} is ignored: {listener_source} sets the AMQP listener (so does RabbitMQ)")
            continue
        if var == "RABBITMQ_NODE_IP_ADDRESS" and raw == "auto":
            raw = ""  # RabbitMQ's own default: every interface
        source = f"environment variable {var}"
        try:
            layer.append((source, name, _parse_string(name, raw)))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}", name) from None
    base = _env(environ, MNESIA_BASE_VAR)
    if base is not None and _env(environ, "RABBITMQ_MNESIA_DIR") is None:
        layer.append((f"environment variable {MNESIA_BASE_VAR}", "data_dir", NodeDirUnder(base)))
    level = _env(environ, LOG_VAR)
    if level is not None:
        layer += _log_level_from_env(level)
    return layer + _plugins_layer(environ, warn)


def _log_level_from_env(value: str) -> Layer:
    """``RABBITMQ_LOG=debug`` (or ``debug,+color``, ``connection=debug,info``): the global level
    only; per-category levels have no counterpart here."""
    for item in value.split(","):
        item = item.strip()
        if "=" in item or item in ("+color", "-color", ""):
            continue
        if item not in _LOG_LEVELS:
            raise ConfigError(
                f"environment variable {LOG_VAR}: unknown log level {item!r} "
                f"(expected one of {', '.join(_LOG_LEVELS)})",
                "log_level",
            )
        return [(f"environment variable {LOG_VAR}", "log_level", _LOG_LEVELS[item])]
    return []


def _plugins_layer(environ: Mapping[str, str], warn: Warn) -> Layer:
    """Turn the management API and the metrics endpoint off unless RabbitMQ's plugin settings
    enable their plugins, and the STOMP and MQTT listeners on (61613, 1883) when they enable
    rabbitmq_stomp and rabbitmq_mqtt, off when they do not. Without any plugin setting our
    defaults hold (HTTP on, STOMP and MQTT off)."""
    if ENABLED_PLUGINS_VAR in environ:  # an empty value means "no plugins" here, as in RabbitMQ
        raw = environ[ENABLED_PLUGINS_VAR].strip()
        source = f"environment variable {ENABLED_PLUGINS_VAR}"
        if raw == "ALL":
            return [(f"{source} (with {plugin})", setting, port)
                    for plugin, (setting, port) in PLUGIN_LISTENERS.items()]
        enabled = frozenset(p.strip() for p in raw.split(",") if p.strip())
    else:
        path = _env(environ, ENABLED_PLUGINS_FILE_VAR)
        if path is None:
            return []
        source = f"{ENABLED_PLUGINS_FILE_VAR} {path}"
        enabled = _read_enabled_plugins_file(path, source, warn)
    layer: Layer = []
    if not enabled & MANAGEMENT_PLUGINS:
        layer.append((f"{source} (without rabbitmq_management)", "management_port", 0))
    if PROMETHEUS_PLUGIN not in enabled:
        layer.append((f"{source} (without {PROMETHEUS_PLUGIN})", "prometheus_port", 0))
    for plugin, (setting, port) in PLUGIN_LISTENERS.items():
        if plugin in enabled:
            layer.append((f"{source} (with {plugin})", setting, port))
        else:
            layer.append((f"{source} (without {plugin})", setting, 0))
    return layer


def _read_enabled_plugins_file(path: str, source: str, warn: Warn) -> frozenset[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        # RabbitMQ reads a missing file as "no plugins" (rabbitmq-plugins creates it).
        warn(f"{source} does not exist: no plugins enabled, so no management API and no metrics")
        return frozenset()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{source}: cannot read it: {reason}") from None
    plugins = parse_enabled_plugins(text)
    if plugins is None:
        raise ConfigError(
            f"{source}: not a list of plugin names, such as "
            "[rabbitmq_management,rabbitmq_prometheus]."
        )
    return plugins


_ATOM = re.compile(r"[a-z][A-Za-z0-9_@]*|'[^'\\]*'")


def parse_enabled_plugins(text: str) -> frozenset[str] | None:
    """The plugin names in an ``enabled_plugins`` file (the Erlang term
    ``[rabbitmq_management,rabbitmq_prometheus].``), or None when it is not such a list. An empty
    file is an empty list, as for RabbitMQ."""
    body = re.sub(r"%[^\n]*", "", text).strip()  # Erlang comments run from % to the line's end
    if not body:
        return frozenset()
    match = re.fullmatch(r"\[(.*)\]\s*\.", body, re.DOTALL)
    if match is None:
        return None
    names = [item.strip() for item in match.group(1).split(",")]
    if names == [""]:
        return frozenset()
    if not all(_ATOM.fullmatch(name) for name in names):
        return None
    return frozenset(name.strip("'") for name in names)


# -- rabbitmq.conf ---------------------------------------------------------------------------------


def _conf_layer(environ: Mapping[str, str], warn: Warn) -> tuple[Layer, str | None]:
    """The rabbitmq.conf settings, and the source of its AMQP listener if it sets one."""
    raw = _env(environ, CONFIG_FILE_VAR)
    if raw is None:
        return [], None
    path = _find_conf_file(raw, warn)
    if path is None:
        return [], None
    return _conf_settings(path, _parse_conf(path), warn)


def _find_conf_file(raw: str, warn: Warn) -> str | None:
    """Which file RabbitMQ would read for ``RABBITMQ_CONFIG_FILE=raw``, if it is a rabbitmq.conf.

    As rabbit_prelaunch_conf: the file itself if it exists (``.config``, or content that is
    Erlang terms, means the classic format), else ``raw.config``, else ``raw.conf``."""
    classic = None
    if os.path.isfile(raw):
        extension = os.path.splitext(raw)[1]
        if extension == ".config" or (extension != ".conf" and _is_erlang_terms(raw)):
            classic = raw
        else:
            return raw
    elif os.path.isfile(raw + ".config"):
        classic = raw + ".config"
    elif os.path.isfile(raw + ".conf"):
        return raw + ".conf"
    if classic is not None:
        warn(
            f"{CONFIG_FILE_VAR}: {classic} is in the classic Erlang-term format, which is not "
            "read; only rabbitmq.conf (sysctl format) is"
        )
    else:
        warn(f"{CONFIG_FILE_VAR}: neither {raw} nor {raw}.conf exists; no rabbitmq.conf read")
    return None


def _is_erlang_terms(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return False  # _parse_conf reports it
    body = re.sub(r"%[^\n]*", "", text).strip()
    return body.startswith("[") and body.endswith(".")


def _parse_conf(path: str) -> list[tuple[int, str, str]]:
    """(line number, key, value) for each setting line of a rabbitmq.conf, in order.

    The sysctl format of cuttlefish: ``key = value``, ``#`` starts a comment (so a value cannot
    hold one), blank lines are ignored."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"rabbitmq.conf {path}: cannot read it: {reason}") from None
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        key, sep, value = (part.strip() for part in content.partition("="))
        if content.startswith("include ") and not sep:
            entries.append((lineno, "include", content[len("include "):].strip()))
            continue
        if not sep or not key or not value or any(c.isspace() for c in key):
            # The line itself is not quoted: it may hold a password.
            raise ConfigError(f"rabbitmq.conf {path} line {lineno}: expected KEY = VALUE")
        entries.append((lineno, key, value))
    return entries


def _split_key(key: str) -> tuple[str, ...]:
    """``loopback_users.a\\.b`` -> ``("loopback_users", "a.b")``: cuttlefish escapes dots."""
    return tuple(part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", key))


def _conf_int(value: str, where: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return int(value)


def _conf_float(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None


def _conf_bytes(value: str, where: str, units: Mapping[str, int]) -> int:
    match = re.fullmatch(r"([0-9]+)([A-Za-z]*)", value)
    if match is None or match.group(2) not in units:
        raise ConfigError(
            f"{where}: expected a number of bytes with an optional unit "
            f"({', '.join(u for u in units if u)}), got {value!r}"
        )
    return int(match.group(1)) * units[match.group(2)]


def _total_memory() -> int:
    from .server.flow import total_memory  # imported late: only relative limits need it

    return total_memory()


def _conf_settings(
    path: str, entries: list[tuple[int, str, str]], warn: Warn
) -> tuple[Layer, str | None]:
    """Map rabbitmq.conf ``entries`` to settings; warn about the keys that have no counterpart."""
    layer: Layer = []
    # Keys combined into one setting, in cuttlefish's way (a later line overrides an earlier one).
    listeners: dict[str, tuple[str, str]] = {}
    tls_listeners: dict[str, tuple[str, str]] = {}
    loopback: dict[str, tuple[str, bool]] = {}
    loopback_none: str | None = None
    watermark: dict[str, tuple[str, str]] = {}
    disk: dict[str, tuple[str, str]] = {}
    definitions: dict[str, tuple[str, str]] = {}
    stomp_listeners: dict[str, tuple[str, str]] = {}
    mqtt_listeners: dict[str, tuple[str, str]] = {}
    anonymous: tuple[str, str] | None = None

    for lineno, key, value in entries:
        where = f"rabbitmq.conf {path} line {lineno} ({key})"
        parts = _split_key(key)
        if key in ("default_user", "default_pass", "default_vhost", "cluster_name"):
            layer.append((where, key, value))
        elif key in ("heartbeat", "channel_max", "max_message_size"):
            layer.append((where, key, _conf_int(value, where)))
        elif key == "connection_max":
            if value == "infinity":
                layer.append((where, "connection_max", 0))
            else:
                limit = _conf_int(value, where)
                if limit <= 0:  # RabbitMQ's ranch would serve next to no one: surely a mistake
                    raise ConfigError(f"{where}: expected infinity or a positive integer, got {value!r}")
                layer.append((where, "connection_max", limit))
        elif key == "consumer_timeout":
            layer.append((where, "consumer_timeout_ms", _conf_int(value, where)))
        elif key == "frame_max":
            layer.append((where, "frame_max", _conf_bytes(value, where, _BYTESIZE_UNITS)))
        elif key == "management.tcp.port":
            layer.append((where, "management_port", _conf_int(value, where)))
        elif key == "prometheus.tcp.port":
            layer.append((where, "prometheus_port", _conf_int(value, where)))
        elif len(parts) == 4 and parts[:3] == ("mqtt", "listeners", "tcp"):
            mqtt_listeners[parts[3]] = (where, value)
        elif key in ("mqtt.vhost", "mqtt.exchange", "mqtt.default_user", "mqtt.default_pass"):
            layer.append((where, key.replace(".", "_"), value))
        elif key == "mqtt.allow_anonymous":
            if value not in ("true", "false"):
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
            anonymous = (where, value)
        elif key == "log.console.level":
            if value not in _LOG_LEVELS:
                levels = ", ".join(_LOG_LEVELS)
                raise ConfigError(f"{where}: expected one of {levels}, got {value!r}")
            layer.append((where, "log_level", _LOG_LEVELS[value]))
        elif len(parts) == 3 and parts[:2] == ("listeners", "tcp"):
            listeners[parts[2]] = (where, value)
        elif len(parts) == 3 and parts[:2] == ("listeners", "ssl"):
            tls_listeners[parts[2]] = (where, value)
        elif len(parts) == 2 and parts[0] == "ssl_options" and parts[1] in _SSL_OPTIONS:
            if parts[1] == "verify" and value not in ("verify_peer", "verify_none"):
                raise ConfigError(f"{where}: expected verify_peer or verify_none, got {value!r}")
            layer.append((where, _SSL_OPTIONS[parts[1]], value))
        elif key == "ssl_options.fail_if_no_peer_cert":
            if value not in ("true", "false"):
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
            layer.append((where, "tls_fail_if_no_peer_cert", value == "true"))
        elif key == "ssl_cert_login_from":
            if value not in ("common_name", "distinguished_name"):
                raise ConfigError(f"{where}: expected common_name or distinguished_name, got {value!r}")
            layer.append((where, "ssl_cert_login_from", value))
        elif key == "listeners.tcp":
            warn(f"{where}: ignored; this broker always listens for AMQP 0-9-1 over TCP")
        elif key == "loopback_users":
            if value != "none":
                raise ConfigError(f"{where}: expected none, got {value!r}")
            loopback_none = where
        elif len(parts) == 2 and parts[0] == "loopback_users":
            if value not in ("true", "false"):
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
            loopback[parts[1]] = (where, value == "true")
        elif len(parts) == 2 and parts[0] == "vm_memory_high_watermark" and parts[1] in (
            "relative", "absolute",
        ):  # fmt: skip
            watermark[parts[1]] = (where, value)
        elif len(parts) == 2 and parts[0] == "disk_free_limit" and parts[1] in (
            "relative", "absolute",
        ):  # fmt: skip
            disk[parts[1]] = (where, value)
        elif key in ("load_definitions", "definitions.local.path", "management.load_definitions"):
            definitions[key] = (where, value)
        elif key == "definitions.import_backend" and value == "local_filesystem":
            pass  # the only backend there is here; definitions.local.path names the file
        elif len(parts) == 4 and parts[:3] == ("stomp", "listeners", "tcp"):
            stomp_listeners[parts[3]] = (where, value)
        elif key in ("stomp.default_user", "stomp.default_pass", "stomp.default_vhost"):
            layer.append((where, key.replace(".", "_"), value))
        elif key == "stomp.implicit_connect":
            if value not in ("true", "false"):
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
            layer.append((where, "stomp_implicit_connect", value == "true"))
        elif key == "management.tcp.ip":
            warn(f"{where}: ignored; the management API listens on the AMQP interface (host)")
        else:
            warn(f"rabbitmq.conf {path} line {lineno}: {key} is not supported here; ignored")

    listener_source = None
    if listeners:
        (listener_source, value), *others = listeners.values()
        host, port = _parse_listener(value, listener_source)
        layer += [(listener_source, "host", host), (listener_source, "port", port)]
        for where, other in others:
            warn(f"{where}: ignored; one AMQP listener only, the first one ({value})")
    layer += _side_listener(stomp_listeners, "STOMP", "stomp_port", warn)
    layer += _side_listener(mqtt_listeners, "MQTT", "mqtt_port", warn)
    if anonymous is not None and anonymous[1] == "false":
        layer.append((anonymous[0], "mqtt_default_user", ""))
    layer += _side_listener(tls_listeners, "TLS", "tls_port", warn)
    if loopback_none is not None:
        layer.append((loopback_none, "loopback_users", ()))
    elif loopback:
        where = list(loopback.values())[-1][0]
        users = tuple(user for user, (_, on) in loopback.items() if on)
        layer.append((where, "loopback_users", users))
    if "relative" in watermark:  # relative wins over absolute, as in rabbit.schema
        where, value = watermark["relative"]
        fraction = _conf_float(value, where)
        if fraction > 1:  # above 1 our setting means bytes, so such a fraction becomes bytes here
            fraction = float(int(fraction * _total_memory()))
        layer.append((where, "memory_high_watermark", fraction))
    elif "absolute" in watermark:
        where, value = watermark["absolute"]
        limit = _conf_bytes(value, where, _INFO_UNITS)
        layer.append((where, "memory_high_watermark", float(limit)))
    if "relative" in disk:
        where, value = disk["relative"]
        limit = int(_conf_float(value, where) * _total_memory())
        layer.append((where, "disk_free_limit_bytes", limit))
    elif "absolute" in disk:
        where, value = disk["absolute"]
        layer.append((where, "disk_free_limit_bytes", _conf_bytes(value, where, _INFO_UNITS)))
    if definitions:
        chosen = next(
            definitions[key]
            for key in ("load_definitions", "definitions.local.path", "management.load_definitions")
            if key in definitions
        )
        layer.append((chosen[0], "definitions", chosen[1]))
        for where, other in definitions.values():
            if other != chosen[1]:
                warn(f"{where}: ignored; one definitions file only, {chosen[1]}")
    return layer, listener_source


def _side_listener(listeners: dict[str, tuple[str, str]], what: str, setting: str, warn: Warn) -> Layer:
    """The port of the first ``listeners`` entry (TLS, STOMP, MQTT): such a listener always
    uses the AMQP interface, and there is one of it; warn about what is ignored."""
    if not listeners:
        return []
    (where, value), *others = listeners.values()
    host, port = _parse_listener(value, where)
    if host:
        warn(f"{where}: the address is ignored; the {what} listener listens on the AMQP interface "
             f"(host), not on {host}")
    for other_where, _ in others:
        warn(f"{other_where}: ignored; one {what} listener only, the first one ({value})")
    return [(where, setting, port)]


def _parse_listener(value: str, where: str) -> tuple[str, int]:
    """``5672`` (every interface) or ``127.0.0.1:5672`` / ``::1:5672`` / ``[::1]:5672``."""
    if re.fullmatch(r"[0-9]+", value):
        return "", int(value)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not re.fullmatch(r"[0-9]+", port):
        raise ConfigError(f"{where}: expected PORT or ADDRESS:PORT, got {value!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)
