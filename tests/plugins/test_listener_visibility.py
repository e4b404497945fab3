"""The STOMP and MQTT listeners, and their connections, show where an operator looks: the
management API's listeners and connections, and the Prometheus connection gauge."""

from __future__ import annotations

import base64
import json
import time
import urllib.request

import paho.mqtt.client as mqtt
import stomp

from amqp_broker.testing import BrokerThread

AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def _get(port: int, path: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": AUTH})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def _poll(check, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_stomp_and_mqtt_listeners_and_connections_are_visible():
    with BrokerThread(stomp=True, mqtt=True, management=True, prometheus=True) as broker:
        listeners = json.loads(_get(broker.management_port, "/api/overview"))["listeners"]
        ports = {entry["protocol"]: entry["port"] for entry in listeners}
        assert ports["stomp"] == broker.stomp_port and ports["mqtt"] == broker.mqtt_port

        stomp_client = stomp.Connection([("127.0.0.1", broker.stomp_port)])
        stomp_client.connect("guest", "guest", wait=True)
        mqtt_client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="visibility")
        mqtt_client.connect("127.0.0.1", broker.mqtt_port)
        mqtt_client.loop_start()
        try:
            def protocols() -> list[str] | None:
                found = json.loads(_get(broker.management_port, "/api/connections"))
                return sorted(c["protocol"] for c in found) if len(found) == 2 else None

            assert _poll(protocols, "both connections in /api/connections") == ["MQTT 3.1.1", "STOMP 1.1"]
            metrics = _get(broker.prometheus_port, "/metrics").splitlines()
            assert "rabbitmq_connections 2" in metrics
        finally:
            stomp_client.disconnect()
            mqtt_client.loop_stop()
            mqtt_client.disconnect()
