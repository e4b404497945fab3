"""Settings: defaults, precedence (flags > environment > file > defaults), conversion, errors."""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from pathlib import Path

import pytest

from amqp_broker.config import (
    CONFIG_ENV_VAR,
    ConfigError,
    Settings,
    build_arg_parser,
    load_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONF = REPO_ROOT / "conf" / "broker.toml"


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "broker.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_match_rabbitmq() -> None:
    s = load_settings([], environ={})
    assert s == Settings()
    assert (s.host, s.port, s.data_dir, s.log_level) == ("", 5672, "./data", "info")
    assert s.definitions == ""
    assert (s.default_user, s.default_pass, s.default_vhost) == ("guest", "guest", "/")
    assert s.loopback_users == ("guest",)  # RabbitMQ's: guest only from this machine
    assert (s.heartbeat, s.frame_max, s.channel_max) == (60, 131072, 2047)
    assert s.consumer_timeout_ms == 1_800_000
    assert s.memory_high_watermark == 0.4
    assert s.disk_free_limit_bytes == 50_000_000
    assert s.bind_host is None


def test_settings_are_frozen_and_hide_password() -> None:
    s = Settings(default_pass="s3cret")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]
    assert "s3cret" not in repr(s)
    assert dataclasses.replace(s, port=1).port == 1


def test_default_file_equals_builtin_defaults() -> None:
    with DEFAULT_CONF.open("rb") as fh:
        data = tomllib.load(fh)
    names = [f.name for f in dataclasses.fields(Settings)]
    assert sorted(data) == sorted(names), "conf/broker.toml must list every setting"
    assert load_settings(["--config", str(DEFAULT_CONF)], environ={}) == Settings()


def test_no_file_is_read_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "broker.toml").write_text("port = 1\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings([], environ={}).port == 5672


def test_env_conversion_by_type() -> None:
    env = {
        "AMQP_BROKER_PORT": " 5673 ",
        "AMQP_BROKER_HOST": "127.0.0.1",
        "AMQP_BROKER_MEMORY_HIGH_WATERMARK": "0.6",
        "AMQP_BROKER_LOOPBACK_USERS": "guest, admin,,",
        "AMQP_BROKER_LOG_LEVEL": "DEBUG",
        "AMQP_BROKER_DISK_FREE_LIMIT_BYTES": "1_000",
        "AMQP_BROKER_SOMETHING_ELSE": "ignored",
    }
    s = load_settings([], environ=env)
    assert s.port == 5673
    assert s.host == "127.0.0.1" and s.bind_host == "127.0.0.1"
    assert s.memory_high_watermark == 0.6
    assert s.loopback_users == ("guest", "admin")
    assert s.log_level == "debug"
    assert s.disk_free_limit_bytes == 1000
    assert load_settings([], environ={"AMQP_BROKER_LOOPBACK_USERS": ""}).loopback_users == ()
    # The one flag for containers and CI that need guest from other hosts: an empty value.
    assert load_settings(["--loopback-users", ""], environ={}).loopback_users == ()
    assert load_settings(["--loopback-users="], environ={}).loopback_users == ()


def test_flags_cover_every_setting() -> None:
    argv = [
        "--host", "::1", "--port", "0", "--data-dir", "/tmp/d", "--log-level", "warning",
        "--default-user", "u", "--default-pass", "p", "--default-vhost", "v",
        "--loopback-users", "", "--heartbeat", "0", "--frame-max", "4096",
        "--channel-max", "0", "--consumer-timeout-ms", "0", "--memory-high-watermark", "1",
        "--disk-free-limit-bytes", "0",
    ]  # fmt: skip
    s = load_settings(argv, environ={})
    assert s == Settings(
        host="::1", port=0, data_dir="/tmp/d", log_level="warning", default_user="u",
        default_pass="p", default_vhost="v", loopback_users=(), heartbeat=0,
        frame_max=4096, channel_max=0, consumer_timeout_ms=0, memory_high_watermark=1.0,
        disk_free_limit_bytes=0,
    )  # fmt: skip
    assert isinstance(s.memory_high_watermark, float)


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    conf = write_toml(tmp_path, 'port = 1111\nheartbeat = 11\nframe_max = 8192\nhost = "h"\n')
    env = {"AMQP_BROKER_PORT": "2222", "AMQP_BROKER_HEARTBEAT": "22"}
    s = load_settings(["--config", conf, "--port", "3333"], environ=env)
    assert s.port == 3333  # flag beats environment and file
    assert s.heartbeat == 22  # environment beats file
    assert s.frame_max == 8192 and s.host == "h"  # file beats default
    assert s.channel_max == 2047  # default


def test_config_file_from_environment(tmp_path: Path) -> None:
    conf = write_toml(tmp_path, "port = 1234\n")
    assert load_settings([], environ={CONFIG_ENV_VAR: conf}).port == 1234
    other = tmp_path / "other.toml"
    other.write_text("port = 4321\n")
    s = load_settings(["--config", str(other)], environ={CONFIG_ENV_VAR: conf})
    assert s.port == 4321  # --config wins over $AMQP_BROKER_CONFIG


def test_toml_list_and_float_values(tmp_path: Path) -> None:
    conf = write_toml(tmp_path, 'loopback_users = ["guest"]\nmemory_high_watermark = 1\n')
    s = load_settings(["--config", conf], environ={})
    assert s.loopback_users == ("guest",)
    assert s.memory_high_watermark == 1.0


def test_unknown_toml_key_is_named(tmp_path: Path) -> None:
    conf = write_toml(tmp_path, "prot = 5672\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'prot' \(did you mean 'port'\?\)"):
        load_settings(["--config", conf], environ={})


def test_toml_wrong_type_names_file_and_key(tmp_path: Path) -> None:
    conf = write_toml(tmp_path, 'port = "5672"\n')
    with pytest.raises(ConfigError, match=r"config file .*broker\.toml: port must be an integer"):
        load_settings(["--config", conf], environ={})


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    conf = write_toml(tmp_path, "port = = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(["--config", conf], environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(["--config", str(tmp_path / "nope.toml")], environ={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AMQP_BROKER_PORT": "abc"}, r"AMQP_BROKER_PORT: port must be an integer"),
        ({"AMQP_BROKER_PORT": "70000"}, r"AMQP_BROKER_PORT: port must be between 0 and 65535"),
        ({"AMQP_BROKER_FRAME_MAX": "100"}, r"frame_max must be 0 \(no limit\) or at least 4096"),
        ({"AMQP_BROKER_MEMORY_HIGH_WATERMARK": "x"}, r"memory_high_watermark must be a number"),
        ({"AMQP_BROKER_MEMORY_HIGH_WATERMARK": "nan"}, r"memory_high_watermark must be"),
        ({"AMQP_BROKER_LOG_LEVEL": "loud"}, r"log_level must be one of"),
        ({"AMQP_BROKER_HEARTBEAT": "-1"}, r"heartbeat must be between 0 and 65535"),
        ({"AMQP_BROKER_DEFAULT_VHOST": ""}, r"default_vhost must not be empty"),
    ],
)
def test_invalid_env_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings([], environ=env)
    assert info.value.setting is not None


def test_invalid_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--channel-max: channel_max must be an integer"):
        load_settings(["--channel-max", "many"], environ={})


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match="port must be an integer"):
        Settings(port=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="loopback_users must be a list of strings"):
        Settings(loopback_users=[1])  # type: ignore[list-item]
    assert Settings(loopback_users=["a"]).loopback_users == ("a",)  # type: ignore[arg-type]


def test_parser_subcommand_room() -> None:
    parser = build_arg_parser()
    assert parser.parse_args([]).command is None
    args = parser.parse_args(["--port", "1", "serve", "--heartbeat", "5"])
    assert args.command == "serve"
    assert (args.port, args.heartbeat) == ("1", "5")
    assert load_settings(["serve", "--port", "7"], environ={}).port == 7
    with pytest.raises(SystemExit):
        parser.parse_args(["--no-such-flag"])


def test_definitions_subcommand_and_setting() -> None:
    parser = build_arg_parser()
    args = parser.parse_args(["definitions", "import", "defs.json", "--force", "--data-dir", "d"])
    assert (args.command, args.definitions_action, args.file, args.force, args.data_dir) == (
        "definitions", "import", "defs.json", True, "d")
    args = parser.parse_args(["--data-dir", "d", "definitions", "export", "-"])
    assert (args.definitions_action, args.file, args.data_dir) == ("export", "-", "d")
    with pytest.raises(SystemExit):
        parser.parse_args(["definitions"])  # export or import is required
    assert load_settings(["--definitions", "boot.json"], environ={}).definitions == "boot.json"
    env = {"AMQP_BROKER_DEFINITIONS": "env.json"}
    assert load_settings([], environ=env).definitions == "env.json"


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _all_parsers(sub)
    return found


def test_every_flag_has_help_text() -> None:
    for parser in _all_parsers(build_arg_parser()):
        for action in parser._actions:
            assert action.help, f"{parser.prog}: {action.option_strings or action.dest} has no help text"


def test_definitions_commands_show_only_the_flags_they_use() -> None:
    parsers = {parser.prog: parser for parser in _all_parsers(build_arg_parser())}
    assert set(parsers) == {
        "amqp-broker", "amqp-broker serve", "amqp-broker definitions",
        "amqp-broker definitions export", "amqp-broker definitions import",
        # Listed for --help only; their own parsers are amqp_broker/ctl's and tracetools'.
        "amqp-broker ctl", "amqp-broker shims", "amqp-broker trace",
    }  # fmt: skip

    def flags(prog: str) -> set[str]:
        return {o for a in parsers[prog]._actions for o in a.option_strings if o.startswith("--")}

    assert flags("amqp-broker definitions") == {"--help", "--config", "--data-dir", "--log-level"}
    assert flags("amqp-broker definitions export") == flags("amqp-broker definitions")
    assert flags("amqp-broker definitions import") == flags("amqp-broker definitions") | {
        "--default-user", "--default-pass", "--default-vhost", "--force",
    }  # fmt: skip
    assert "--heartbeat" in flags("amqp-broker serve") and "--node-name" in flags("amqp-broker")
    # Settings flags still go before the subcommand, where all of them are accepted.
    args = build_arg_parser().parse_args(["--heartbeat", "5", "definitions", "export", "-"])
    assert args.heartbeat == "5"


def test_version_names_program_distribution_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    from amqp_broker import DISTRIBUTION, __version__

    with pytest.raises(SystemExit) as info:
        build_arg_parser().parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"amqp-broker ({DISTRIBUTION}) {__version__}\n"


def test_distribution_name_and_version_match_pyproject() -> None:
    from amqp_broker import DISTRIBUTION

    with (REPO_ROOT / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    assert project["name"] == DISTRIBUTION
    # The version has one source, amqp_broker.__version__, which the build reads.
    assert "version" in project["dynamic"] and "version" not in project
