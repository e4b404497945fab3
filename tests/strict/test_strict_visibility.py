"""Where an operator sees strict-mode counts: the management API's connection object and the
node's Prometheus metrics."""

from __future__ import annotations

import base64
import json
import time
import urllib.request

from amqp_broker.testing import BrokerThread
from strict_client import Client, publish


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={
        "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def test_counts_show_in_the_connection_object_and_the_metrics():
    with BrokerThread(strict="report", management=True, prometheus=True) as running:
        client = Client("127.0.0.1", running.port).open()
        try:
            client.sock.sendall(publish(1, b"nowhere", b"\x08\x00" + bytes((42,))) * 2
                                + publish(1, b"nowhere", b"\x00\x04\x01c"))
            client.observe()
            api = f"http://127.0.0.1:{running.management_port}/api/connections"
            deadline = time.monotonic() + 10  # the HTTP side reads the core's state
            while True:
                [connection] = json.loads(_get(api))
                if connection.get("strict_violations") == {"priority-range": 2, "reserved-property": 1}:
                    break
                assert time.monotonic() < deadline, connection.get("strict_violations")
                time.sleep(0.05)
            metrics = _get(f"http://127.0.0.1:{running.prometheus_port}/metrics").decode()
            assert 'amqp_broker_strict_violations_total{rule="priority-range"} 2' in metrics
            assert 'amqp_broker_strict_violations_total{rule="reserved-property"} 1' in metrics
        finally:
            client.close()


def test_without_strict_mode_nothing_extra_is_shown():
    with BrokerThread(management=True, prometheus=True) as running:
        client = Client("127.0.0.1", running.port).open()
        try:
            client.sock.sendall(publish(1, b"nowhere", b"\x08\x00" + bytes((42,))))
            client.observe()
            [connection] = json.loads(_get(f"http://127.0.0.1:{running.management_port}/api/connections"))
            assert "strict_violations" not in connection
            metrics = _get(f"http://127.0.0.1:{running.prometheus_port}/metrics").decode()
            assert "strict" not in metrics
        finally:
            client.close()
