"""RabbitMQ's environment variables and rabbitmq.conf as aliases of our settings, and where they
stand among our own sources (flags > AMQP_BROKER_* > --config > RABBITMQ_* > rabbitmq.conf)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from amqp_broker.config import ConfigError, Settings, build_arg_parser, settings_from_args
from amqp_broker.rabbitmq_config import parse_enabled_plugins
from amqp_broker.server.flow import total_memory

SHORT_HOST = socket.gethostname().split(".")[0]


def resolve(env: dict[str, str], argv: list[str] | None = None) -> tuple[Settings, list[str]]:
    """Settings from ``argv`` and exactly ``env``, and the warnings given."""
    warnings: list[str] = []
    args = build_arg_parser().parse_args(argv or [])
    return settings_from_args(args, env, warnings.append), warnings


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_each_environment_variable_sets_its_setting() -> None:
    s, warnings = resolve({
        "RABBITMQ_NODE_PORT": "5999",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_DEFAULT_USER": "admin",
        "RABBITMQ_DEFAULT_PASS": "s3cret",
        "RABBITMQ_DEFAULT_VHOST": "dev",
        "RABBITMQ_NODENAME": "hare@box",
        "RABBITMQ_MNESIA_DIR": "/var/lib/hare",
        "RABBITMQ_LOG": "debug,+color",
    })  # fmt: skip
    assert (s.port, s.host) == (5999, "127.0.0.1")
    assert (s.default_user, s.default_pass, s.default_vhost) == ("admin", "s3cret", "dev")
    assert s.node_name == "hare@box"
    assert s.data_dir == "/var/lib/hare"
    assert s.log_level == "debug"
    assert (s.management_port, s.prometheus_port) == (15672, 15692)  # no plugin setting: ours hold
    assert warnings == []


def test_node_name_gets_the_short_host_name_as_rabbitmq() -> None:
    assert Settings().node_name == f"rabbit@{SHORT_HOST}"
    assert resolve({"RABBITMQ_NODENAME": "hare"})[0].node_name == f"hare@{SHORT_HOST}"
    assert resolve({}, ["--node-name", "n1"])[0].node_name == f"n1@{SHORT_HOST}"
    for bad in ("@host", "a@", "a b", "a/b"):
        with pytest.raises(ConfigError, match="node_name must look like") as info:
            resolve({}, ["--node-name", bad])
        assert info.value.setting == "node_name"


def test_mnesia_base_holds_a_directory_named_after_the_node() -> None:
    # RabbitMQ's layout: RABBITMQ_MNESIA_DIR defaults to $RABBITMQ_MNESIA_BASE/<node name>.
    s, _ = resolve({"RABBITMQ_MNESIA_BASE": "/srv/mnesia"})
    assert s.data_dir == f"/srv/mnesia/rabbit@{SHORT_HOST}"
    s, _ = resolve({"RABBITMQ_MNESIA_BASE": "/srv/mnesia", "RABBITMQ_NODENAME": "hare@box"})
    assert s.data_dir == "/srv/mnesia/hare@box"
    # The node's name is the final one, wherever it came from.
    s, _ = resolve({"RABBITMQ_MNESIA_BASE": "/srv/mnesia"}, ["--node-name", "n2@h"])
    assert s.data_dir == "/srv/mnesia/n2@h"
    s, _ = resolve({"RABBITMQ_MNESIA_BASE": "/srv/mnesia", "RABBITMQ_MNESIA_DIR": "/srv/own"})
    assert s.data_dir == "/srv/own"  # the node's own directory wins over its parent
    s, _ = resolve({"RABBITMQ_MNESIA_BASE": "/srv/mnesia", "AMQP_BROKER_DATA_DIR": "/ours"})
    assert s.data_dir == "/ours"


def test_empty_variables_count_as_unset_as_in_rabbitmq() -> None:
    s, _ = resolve({"RABBITMQ_NODE_PORT": "", "RABBITMQ_DEFAULT_USER": "", "RABBITMQ_MNESIA_BASE": ""})
    assert s == Settings()


def test_ours_win_over_rabbitmq_variables(tmp_path: Path) -> None:
    env = {"RABBITMQ_NODE_PORT": "1111", "RABBITMQ_DEFAULT_USER": "rabbit-user"}
    assert resolve({**env, "AMQP_BROKER_PORT": "2222"})[0].port == 2222
    assert resolve(env, ["--port", "3333"])[0].port == 3333
    toml = write(tmp_path / "broker.toml", 'default_user = "toml-user"\n')
    s, _ = resolve(env, ["--config", toml])
    assert (s.default_user, s.port) == ("toml-user", 1111)


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^environment variable RABBITMQ_NODE_PORT: port must be an integer"):
        resolve({"RABBITMQ_NODE_PORT": "amqp"})
    with pytest.raises(ConfigError, match=r"^environment variable RABBITMQ_NODE_PORT: port must be between"):
        resolve({"RABBITMQ_NODE_PORT": "70000"})
    with pytest.raises(ConfigError, match="RABBITMQ_LOG: unknown log level 'loud'"):
        resolve({"RABBITMQ_LOG": "loud"})


# -- enabled plugins ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "management", "prometheus"),
    [
        ("[rabbitmq_management,rabbitmq_prometheus].", 15672, 15692),
        ("[rabbitmq_management].\n", 15672, 0),
        ("[rabbitmq_prometheus,rabbitmq_shovel].", 0, 15692),
        ("[].", 0, 0),
        ("", 0, 0),  # an empty file lists nothing, for RabbitMQ too
        # Comments, quoted atoms, layout; a plugin that needs management brings it along.
        ("%% written by rabbitmq-plugins\n[ 'rabbitmq_shovel_management' ,\n  rabbitmq_prometheus ].", 15672, 15692),
    ],
)
def test_enabled_plugins_file_gates_the_http_listeners(tmp_path: Path, text, management, prometheus) -> None:
    path = write(tmp_path / "enabled_plugins", text)
    s, warnings = resolve({"RABBITMQ_ENABLED_PLUGINS_FILE": path})
    assert (s.management_port, s.prometheus_port) == (management, prometheus)
    assert warnings == []


def test_an_enabled_plugin_keeps_the_port_set_elsewhere(tmp_path: Path) -> None:
    plugins = write(tmp_path / "enabled_plugins", "[rabbitmq_management].")
    conf = write(tmp_path / "rabbitmq.conf", "management.tcp.port = 15000\nprometheus.tcp.port = 15001\n")
    s, _ = resolve({"RABBITMQ_ENABLED_PLUGINS_FILE": plugins, "RABBITMQ_CONFIG_FILE": conf})
    assert (s.management_port, s.prometheus_port) == (15000, 0)
    # And a port set for this broker explicitly wins over the plugin list.
    s, _ = resolve({"RABBITMQ_ENABLED_PLUGINS_FILE": plugins}, ["--prometheus-port", "9419"])
    assert s.prometheus_port == 9419


def test_missing_plugins_file_enables_nothing_with_a_warning(tmp_path: Path) -> None:
    s, warnings = resolve({"RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp_path / "absent")})
    assert (s.management_port, s.prometheus_port) == (0, 0)
    assert len(warnings) == 1 and "does not exist: no plugins enabled" in warnings[0]


def test_malformed_plugins_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "enabled_plugins", "rabbitmq_management\n")
    with pytest.raises(ConfigError, match=r"RABBITMQ_ENABLED_PLUGINS_FILE .*: not a list of plugin names"):
        resolve({"RABBITMQ_ENABLED_PLUGINS_FILE": path})


def test_enabled_plugins_variable_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "enabled_plugins", "[].")
    s, _ = resolve({"RABBITMQ_ENABLED_PLUGINS_FILE": path, "RABBITMQ_ENABLED_PLUGINS": "rabbitmq_prometheus"})
    assert (s.management_port, s.prometheus_port) == (0, 15692)
    assert resolve({"RABBITMQ_ENABLED_PLUGINS": "ALL"})[0].management_port == 15672
    assert resolve({"RABBITMQ_ENABLED_PLUGINS": ""})[0].management_port == 0  # "" = none


def test_parse_enabled_plugins() -> None:
    assert parse_enabled_plugins("[a,b].") == {"a", "b"}
    assert parse_enabled_plugins("[a,b]") is None  # the full stop ends an Erlang term
    assert parse_enabled_plugins("[a,,b].") is None
    assert parse_enabled_plugins("[A].") is None  # capitalised: an Erlang variable, not a name


# -- rabbitmq.conf -------------------------------------------------------------------------------

FULL_CONF = """\
# A rabbitmq.conf using every key that is read.
listeners.tcp.default = 127.0.0.1:5673
default_user = admin   # a trailing comment
default_pass = s3cret
default_vhost = dev
loopback_users.guest = false
loopback_users.admin = true
heartbeat = 30
frame_max = 64KB
channel_max = 100
max_message_size = 1048576
consumer_timeout = 60000
vm_memory_high_watermark.absolute = 2GB
disk_free_limit.absolute = 1GB
load_definitions = /etc/rabbitmq/definitions.json
log.console.level = notice
management.tcp.port = 15000
prometheus.tcp.port = 15001
"""


def test_every_key_read_from_rabbitmq_conf(tmp_path: Path) -> None:
    conf = write(tmp_path / "rabbitmq.conf", FULL_CONF)
    s, warnings = resolve({"RABBITMQ_CONFIG_FILE": conf})
    assert warnings == []
    assert (s.host, s.port) == ("127.0.0.1", 5673)
    assert (s.default_user, s.default_pass, s.default_vhost) == ("admin", "s3cret", "dev")
    assert s.loopback_users == ("admin",)
    assert (s.heartbeat, s.frame_max, s.channel_max) == (30, 65536, 100)
    assert (s.max_message_size, s.consumer_timeout_ms) == (1048576, 60000)
    assert s.memory_high_watermark == 2_000_000_000.0  # above 1: bytes
    assert s.disk_free_limit_bytes == 1_000_000_000
    assert s.definitions == "/etc/rabbitmq/definitions.json"
    assert s.log_level == "info"  # RabbitMQ's notice is the nearest to our info
    assert (s.management_port, s.prometheus_port) == (15000, 15001)


def test_conf_suffix_may_be_left_out_as_rabbitmq_allows(tmp_path: Path) -> None:
    write(tmp_path / "rabbitmq.conf", "heartbeat = 5\n")
    s, warnings = resolve({"RABBITMQ_CONFIG_FILE": str(tmp_path / "rabbitmq")})
    assert s.heartbeat == 5 and warnings == []
    # Any other name is read as it is (RabbitMQ tells the format by the content).
    s, _ = resolve({"RABBITMQ_CONFIG_FILE": write(tmp_path / "custom", "heartbeat = 6\n")})
    assert s.heartbeat == 6


def test_unknown_keys_get_one_warning_each(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "rabbitmq.conf",
        "heartbeat = 7\ncluster_formation.peer_discovery_backend = classic_config\n"
        "\n# comment\nmanagement_agent.disable_metrics_collector = true\nmanagement.tcp.ip = 0.0.0.0\n",
    )
    s, warnings = resolve({"RABBITMQ_CONFIG_FILE": conf})
    assert s.heartbeat == 7
    assert len(warnings) == 3, warnings
    assert warnings[0] == f"rabbitmq.conf {conf} line 2: cluster_formation.peer_discovery_backend is not supported here; ignored"
    assert "line 5: management_agent.disable_metrics_collector is not supported" in warnings[1]
    assert "line 6 (management.tcp.ip): ignored; the management API listens on the AMQP interface" in warnings[2]


def test_classic_config_and_missing_files_are_not_read_with_a_warning(tmp_path: Path) -> None:
    classic = write(tmp_path / "rabbitmq.config", "[{rabbit, [{heartbeat, 5}]}].\n")
    s, warnings = resolve({"RABBITMQ_CONFIG_FILE": classic})
    assert s == Settings() and len(warnings) == 1 and "classic Erlang-term format" in warnings[0]
    # Without a suffix, RabbitMQ looks for .config before .conf.
    s, warnings = resolve({"RABBITMQ_CONFIG_FILE": str(tmp_path / "rabbitmq")})
    assert s == Settings() and "classic Erlang-term format" in warnings[0]
    s, warnings = resolve({"RABBITMQ_CONFIG_FILE": str(tmp_path / "nothing")})
    assert s == Settings() and len(warnings) == 1 and "no rabbitmq.conf read" in warnings[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("heartbeat = often\n", r"line 1 \(heartbeat\): expected an integer, got 'often'"),
        ("heartbeat = 70000\n", r"line 1 \(heartbeat\): heartbeat must be between 0 and 65535"),
        ("\nlisteners.tcp.default = localhost\n", r"line 2 \(listeners.tcp.default\): expected PORT or ADDRESS:PORT"),
        ("vm_memory_high_watermark.absolute = 2TB\n", r"line 1 \(vm_memory_high_watermark.absolute\): expected a number of bytes"),
        ("loopback_users.guest = yes\n", r"line 1 \(loopback_users.guest\): expected true or false"),
        ("log.console.level = loud\n", r"line 1 \(log.console.level\): expected one of debug, info, notice"),
        ("default_pass s3cret\n", r"line 1: expected KEY = VALUE$"),
    ],
)
def test_bad_conf_values_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    conf = write(tmp_path / "rabbitmq.conf", text)
    with pytest.raises(ConfigError, match=rf"^rabbitmq.conf {conf} {message}"):
        resolve({"RABBITMQ_CONFIG_FILE": conf})


def test_listeners(tmp_path: Path) -> None:
    def listener(text: str) -> tuple[str, int, list[str]]:
        s, warnings = resolve({"RABBITMQ_CONFIG_FILE": write(tmp_path / "rabbitmq.conf", text)})
        return s.host, s.port, warnings

    assert listener("listeners.tcp.default = 5673\n") == ("", 5673, [])
    assert listener("listeners.tcp.1 = ::1:5674\n") == ("::1", 5674, [])
    assert listener("listeners.tcp.1 = [::1]:5674\n") == ("::1", 5674, [])
    host, port, warnings = listener("listeners.tcp.1 = 127.0.0.1:5675\nlisteners.tcp.2 = ::1:5675\n")
    assert (host, port) == ("127.0.0.1", 5675)
    assert len(warnings) == 1 and "line 2 (listeners.tcp.2): ignored; one AMQP listener only" in warnings[0]


def test_conf_listener_wins_over_node_port_as_in_rabbitmq(tmp_path: Path) -> None:
    # RabbitMQ 3.10 applies RABBITMQ_NODE_PORT/IP_ADDRESS first and rabbitmq.conf's listeners
    # over them; elsewhere its variables win over the file.
    conf = write(tmp_path / "rabbitmq.conf", "listeners.tcp.default = 5680\ndefault_user = from-file\n")
    env = {"RABBITMQ_CONFIG_FILE": conf, "RABBITMQ_NODE_PORT": "5681", "RABBITMQ_DEFAULT_USER": "from-env"}
    s, warnings = resolve(env)
    assert (s.port, s.default_user) == (5680, "from-env")
    assert len(warnings) == 1 and warnings[0].startswith("RABBITMQ_NODE_PORT is ignored: rabbitmq.conf")
    # Without a listener in the file, the variable holds.
    conf = write(tmp_path / "rabbitmq.conf", "heartbeat = 5\n")
    assert resolve({**env, "RABBITMQ_CONFIG_FILE": conf})[0].port == 5681


def test_loopback_users(tmp_path: Path) -> None:
    def users(text: str) -> tuple[str, ...]:
        return resolve({"RABBITMQ_CONFIG_FILE": write(tmp_path / "rabbitmq.conf", text)})[0].loopback_users

    assert users("loopback_users.guest = true\n") == ("guest",)
    assert users("loopback_users.guest = false\n") == ()
    assert users("loopback_users.guest = true\nloopback_users = none\n") == ()
    assert users("loopback_users.my\\.user = true\n") == ("my.user",)  # cuttlefish's escaped dot


def test_relative_limits(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "rabbitmq.conf",
        "vm_memory_high_watermark.absolute = 1GiB\nvm_memory_high_watermark.relative = 0.6\n"
        "disk_free_limit.relative = 1.5\n",
    )
    s, _ = resolve({"RABBITMQ_CONFIG_FILE": conf})
    assert s.memory_high_watermark == 0.6  # relative wins over absolute, as in rabbit.schema
    assert s.disk_free_limit_bytes == int(1.5 * total_memory())


def test_definitions_keys(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "rabbitmq.conf",
        "management.load_definitions = /a.json\ndefinitions.import_backend = local_filesystem\n"
        "definitions.local.path = /b.json\n",
    )
    s, warnings = resolve({"RABBITMQ_CONFIG_FILE": conf})
    assert s.definitions == "/b.json"
    assert len(warnings) == 1 and "(management.load_definitions): ignored; one definitions file only" in warnings[0]


def test_warnings_are_logged_when_no_collector_is_given(tmp_path: Path, caplog) -> None:
    conf = write(tmp_path / "rabbitmq.conf", "collect_statistics_interval = 5000\n")
    with caplog.at_level("WARNING", logger="amqp_broker.config"):
        settings_from_args(build_arg_parser().parse_args([]), {"RABBITMQ_CONFIG_FILE": conf})
    assert [r.getMessage() for r in caplog.records] == [
        f"rabbitmq.conf {conf} line 1: collect_statistics_interval is not supported here; ignored"
    ]


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(os.environ, "RABBITMQ_DEFAULT_VHOST", "from-os-environ")
    assert settings_from_args(build_arg_parser().parse_args([])).default_vhost == "from-os-environ"


@pytest.mark.parametrize(("value", "expected"), [("infinity", 0), ("500", 500)])
def test_connection_max(tmp_path: Path, value: str, expected: int) -> None:
    """RabbitMQ's connection_max: infinity (its default) is this broker's 0, no limit."""
    conf = write(tmp_path / "rabbitmq.conf", f"connection_max = {value}\n")
    s, warnings = resolve({"RABBITMQ_CONFIG_FILE": conf})
    assert (s.connection_max, warnings) == (expected, [])
    # Ours win over rabbitmq.conf, as for every setting.
    s, _ = resolve({"RABBITMQ_CONFIG_FILE": conf, "AMQP_BROKER_CONNECTION_MAX": "7"})
    assert s.connection_max == 7


@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_connection_max_must_be_infinity_or_positive(tmp_path: Path, value: str) -> None:
    conf = write(tmp_path / "rabbitmq.conf", f"connection_max = {value}\n")
    with pytest.raises(ConfigError, match=r"line 1 \(connection_max\): expected"):
        resolve({"RABBITMQ_CONFIG_FILE": conf})
