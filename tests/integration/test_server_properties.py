"""connection.start's server_properties: ours by default, as configured for clients and test
suites that gate on RabbitMQ's product name or version (server_product, server_version,
server_platform, cluster_name)."""

from __future__ import annotations

import base64
import json
import socket
import urllib.request

import pika

from amqp_broker import __version__
from amqp_broker.config import load_settings
from amqp_broker.testing import BrokerThread


def _server_properties(port: int) -> dict:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))
    try:
        return conn._impl.server_properties
    finally:
        conn.close()


def test_default_server_properties_name_this_broker():
    with BrokerThread() as broker:
        props = _server_properties(broker.port)
    # RabbitMQ 3.10's keys, each with our own honest value.
    assert set(props) == {"capabilities", "cluster_name", "copyright", "information", "platform", "product",
                          "version"}
    assert props["product"] == "amqp_broker" and props["version"] == __version__
    assert props["platform"].startswith("Python ")
    assert props["cluster_name"] == f"amqp_broker@{socket.gethostname()}"


def test_configured_server_properties_are_announced_and_the_cluster_name_shown(tmp_path):
    with BrokerThread(management=True, server_product="RabbitMQ", server_version="3.10.8",
                      server_platform="Erlang/OTP 25.2", cluster_name="rabbit@ci-host") as broker:
        props = _server_properties(broker.port)
        request = urllib.request.Request(f"http://127.0.0.1:{broker.management_port}/api/cluster-name")
        request.add_header("authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        with urllib.request.urlopen(request, timeout=10) as response:
            cluster = json.loads(response.read())
    assert (props["product"], props["version"], props["platform"], props["cluster_name"]) == (
        "RabbitMQ", "3.10.8", "Erlang/OTP 25.2", "rabbit@ci-host")
    assert props["capabilities"]["publisher_confirms"] is True  # the rest is unchanged
    assert cluster == {"name": "rabbit@ci-host"}


def test_server_properties_settings_from_flags_environment_toml_and_rabbitmq_conf(tmp_path):
    toml = tmp_path / "broker.toml"
    toml.write_text('server_product = "RabbitMQ"\nserver_platform = "Erlang/OTP 26"\n')
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text("cluster_name = from-rabbitmq-conf\n")
    settings = load_settings(
        ["--config", str(toml), "--server-version", "3.10.8"],
        {"AMQP_BROKER_SERVER_PLATFORM": "from env", "RABBITMQ_CONFIG_FILE": str(conf)})
    assert (settings.server_product, settings.server_version, settings.server_platform, settings.cluster_name) == (
        "RabbitMQ", "3.10.8", "from env", "from-rabbitmq-conf")
    assert load_settings(["--cluster-name", "flag"], {"RABBITMQ_CONFIG_FILE": str(conf)}).cluster_name == "flag"
    assert load_settings(["--trace", "t.jsonl"], {}).trace_file == "t.jsonl"
    assert load_settings([], {"AMQP_BROKER_TRACE_FILE": "e.jsonl"}).trace_file == "e.jsonl"
