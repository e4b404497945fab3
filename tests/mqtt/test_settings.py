"""The MQTT settings: flags, rabbitmq.conf keys and RabbitMQ's plugin list, and the broker
refusing a start on a taken MQTT port with one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from amqp_broker.config import Settings, build_arg_parser, settings_from_args


def resolve(env: dict[str, str], argv: list[str] | None = None) -> tuple[Settings, list[str]]:
    warnings: list[str] = []
    args = build_arg_parser().parse_args(argv or [])
    return settings_from_args(args, env, warnings.append), warnings


def test_defaults_and_flags():
    s = Settings()
    assert (s.mqtt_port, s.mqtt_vhost, s.mqtt_exchange, s.mqtt_default_user) == (0, "/", "amq.topic", "guest")
    s, _ = resolve({"AMQP_BROKER_MQTT_VHOST": "iot"}, ["--mqtt-port", "1883", "--mqtt-default-user", ""])
    assert (s.mqtt_port, s.mqtt_vhost, s.mqtt_default_user) == (1883, "iot", "")


def test_rabbitmq_conf_keys(tmp_path: Path):
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(
        "mqtt.listeners.tcp.default = 1884\n"
        "mqtt.vhost = iot\n"
        "mqtt.exchange = mqtt.topic\n"
        "mqtt.default_user = device\n"
        "mqtt.default_pass = secret\n"
        "mqtt.allow_anonymous = false\n"
    )
    s, warnings = resolve({"RABBITMQ_CONFIG_FILE": str(conf)})
    assert (s.mqtt_port, s.mqtt_vhost, s.mqtt_exchange) == (1884, "iot", "mqtt.topic")
    assert (s.mqtt_default_user, s.mqtt_default_pass) == ("", "secret")  # anonymous refused
    assert warnings == []


def test_enabled_plugins_turn_mqtt_on_and_off(tmp_path: Path):
    assert resolve({"RABBITMQ_ENABLED_PLUGINS": "rabbitmq_mqtt"})[0].mqtt_port == 1883
    assert resolve({"RABBITMQ_ENABLED_PLUGINS": "rabbitmq_management"})[0].mqtt_port == 0
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text("mqtt.listeners.tcp.default = 127.0.0.1:1999\n")
    s, warnings = resolve({"RABBITMQ_ENABLED_PLUGINS": "rabbitmq_mqtt", "RABBITMQ_CONFIG_FILE": str(conf)})
    assert s.mqtt_port == 1999
    assert len(warnings) == 1 and "address is ignored" in warnings[0]
    # Not enabled: a configured listener stays off, as on a node without the plugin.
    assert resolve({"RABBITMQ_ENABLED_PLUGINS": "", "RABBITMQ_CONFIG_FILE": str(conf)})[0].mqtt_port == 0
    # Our own flag wins over RabbitMQ's sources.
    assert resolve({"RABBITMQ_ENABLED_PLUGINS": ""}, ["--mqtt-port", "1885"])[0].mqtt_port == 1885


def test_taken_port_is_one_line_on_stderr(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", "0",
             "--management-port", "0", "--prometheus-port", "0", "--mqtt-port", str(port),
             "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen for MQTT clients on 127.0.0.1:{port}" in lines[0], result.stderr
