"""Real clients over AMQPS (``tls = "auto"``): pika, aio-pika, py-amqp, Node's amqplib and
Debian's amqp-tools, with and without a client certificate, PLAIN and EXTERNAL logins."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid

import aio_pika
import amqp
import pika
import pytest

from tests.clients.test_clients import NODE_DIR, require_amqplib, run_scenario

from tls_helpers import client_context, pika_params, round_trip

TIMEOUT = 20


def _connection_of(broker, user: str, mechanism: str) -> dict:
    """The broker's record of the one open connection of ``user`` logged in with ``mechanism``."""
    sessions = [s for s in broker.call(lambda: list(broker.server.broker.sessions))
                if s.user == user and s.details.get("auth_mechanism") == mechanism]
    assert sessions, f"no {mechanism} connection of {user!r}"
    return sessions[0].details


def test_pika_without_a_client_certificate(tls_broker):
    with pika.BlockingConnection(pika_params(tls_broker, client_context(tls_broker))) as conn:
        round_trip(conn)


def test_pika_plain_login_with_a_client_certificate(tls_broker):
    context = client_context(tls_broker, tls_broker.tls_client_cert, tls_broker.tls_client_key)
    with pika.BlockingConnection(pika_params(tls_broker, context)) as conn:
        round_trip(conn)


def test_pika_external_login_with_a_client_certificate(tls_broker):
    context = client_context(tls_broker, tls_broker.tls_client_cert, tls_broker.tls_client_key)
    with pika.BlockingConnection(pika_params(tls_broker, context, external=True)) as conn:
        round_trip(conn)
        details = _connection_of(tls_broker, "guest", "EXTERNAL")
        # What the management API shows of it, under RabbitMQ's keys.
        name = tls_broker.call(lambda: [s.name for s in tls_broker.server.broker.sessions
                                        if s.details.get("auth_mechanism") == "EXTERNAL"])[0]
        request = urllib.request.Request(
            f"http://127.0.0.1:{tls_broker.management_port}/api/connections/"
            + urllib.parse.quote(name, safe=""))
        request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            shown = json.load(response)
    assert details["ssl"] is True
    assert shown["ssl"] is True and shown["auth_mechanism"] == "EXTERNAL" and shown["user"] == "guest"
    assert shown["ssl_protocol"] in ("tlsv1.2", "tlsv1.3")
    assert shown["peer_cert_subject"] == "CN=guest,O=amqp_broker client"
    assert shown["peer_cert_issuer"].startswith("CN=amqp_broker throw-away CA")
    assert len(shown["peer_cert_validity"].split(" - ")) == 2


def test_aio_pika_amqps_url(tls_broker):
    async def scenario(query: dict) -> list[bytes]:
        url = f"amqps://guest:guest@localhost:{tls_broker.tls_port}/?{urllib.parse.urlencode(query)}"
        connection = await asyncio.wait_for(aio_pika.connect(url), TIMEOUT)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            for i in range(5):
                await channel.default_exchange.publish(aio_pika.Message(b"m%d" % i), queue.name)
            bodies = []
            async with queue.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        bodies.append(message.body)
                    if len(bodies) == 5:
                        break
            return bodies

    expected = [b"m%d" % i for i in range(5)]
    assert asyncio.run(scenario({"cafile": tls_broker.tls_ca})) == expected
    # EXTERNAL: the certificate is the credential (aiormq's auth=external).
    assert asyncio.run(scenario({
        "cafile": tls_broker.tls_ca, "certfile": tls_broker.tls_client_cert,
        "keyfile": tls_broker.tls_client_key, "auth": "external",
    })) == expected


@pytest.mark.parametrize("external", [False, True], ids=["plain", "external"])
def test_py_amqp(tls_broker, external):
    # py-amqp's own options (Celery's broker_use_ssl), as its SSLTransport takes them.
    sslopts = {"ca_certs": tls_broker.tls_ca, "cert_reqs": ssl.CERT_REQUIRED,
               "server_hostname": "localhost"}
    if external:
        sslopts.update(certfile=tls_broker.tls_client_cert, keyfile=tls_broker.tls_client_key)
    conn = amqp.Connection(
        f"localhost:{tls_broker.tls_port}", ssl=sslopts, connect_timeout=TIMEOUT,
        **({"login_method": "EXTERNAL"} if external else {"userid": "guest", "password": "guest"}),
    )
    conn.connect()
    try:
        channel = conn.channel()
        queue, _, _ = channel.queue_declare(exclusive=True)
        channel.basic_publish(amqp.Message(b"via py-amqp"), routing_key=queue)
        # The publish and the get go in order on one channel: the message is there.
        message = channel.basic_get(queue, no_ack=True)
        assert message is not None and message.body == b"via py-amqp"
        assert conn.server_properties["product"] == "amqp_broker"
    finally:
        conn.close()


@pytest.mark.parametrize("external", [False, True], ids=["plain", "external"])
def test_node_amqplib(tls_broker, external):
    cmd = [require_amqplib(), str(NODE_DIR / "tls_smoke.js"), "--port", str(tls_broker.tls_port),
           "--ca", tls_broker.tls_ca]
    if external:
        cmd += ["--cert", tls_broker.tls_client_cert, "--key", tls_broker.tls_client_key, "--external"]
    run_scenario(cmd, timeout=60)


def _amqp_tools() -> None:
    if shutil.which("amqp-publish") is None or shutil.which("amqp-consume") is None:
        pytest.fail("amqp-publish/amqp-consume not found: apt-get install amqp-tools")


@pytest.mark.parametrize("with_cert", [False, True], ids=["no-cert", "cert"])
def test_amqp_tools(tls_broker, with_cert):
    """librabbitmq's TLS client (--ssl --cacert [--cert --key]); the tools log in with PLAIN."""
    _amqp_tools()
    # The tools want the amqps URL with --ssl (--server/--port are refused with it).
    common = ["--url", f"amqps://guest:guest@localhost:{tls_broker.tls_port}", "--ssl",
              "--cacert", tls_broker.tls_ca]
    if with_cert:
        common += ["--cert", tls_broker.tls_client_cert, "--key", tls_broker.tls_client_key]
    queue = f"tls-tools-{uuid.uuid4().hex[:8]}"
    with pika.BlockingConnection(pika_params(tls_broker, client_context(tls_broker))) as conn:
        conn.channel().queue_declare(queue, auto_delete=False)
        try:
            for i in range(3):
                subprocess.run(["amqp-publish", *common, "-r", queue, "-b", f"tools {i}"],
                               check=True, capture_output=True, timeout=TIMEOUT)
            out = subprocess.run(["amqp-consume", *common, "-q", queue, "-c", "3", "cat"],
                                 check=True, capture_output=True, timeout=TIMEOUT).stdout
            assert out == b"tools 0tools 1tools 2"
        finally:
            conn.channel().queue_delete(queue)


def test_listener_in_node_info_and_the_management_api(tls_broker):
    info = tls_broker.call(tls_broker.server.node_info)
    assert {"protocol": "amqp/ssl", "ip_address": "127.0.0.1", "port": tls_broker.tls_port} in info["listeners"]
    assert info["tls"]["ca"] == tls_broker.tls_ca
    assert info["tls"]["verify"] == "verify_peer"
    request = urllib.request.Request(f"http://127.0.0.1:{tls_broker.management_port}/api/overview")
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        listeners = json.load(response)["listeners"]
    ssl_listeners = [entry for entry in listeners if entry["protocol"] == "amqp/ssl"]
    assert [entry["port"] for entry in ssl_listeners] == [tls_broker.tls_port]
    # RabbitMQ's health check knows the listener by its alias too.
    request = urllib.request.Request(
        f"http://127.0.0.1:{tls_broker.management_port}/api/health/checks/protocol-listener/amqps")
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        assert json.load(response) == {"status": "ok", "protocol": "amqp/ssl"}
