"""A connection over TLS is traced in plaintext, with its TLS session as an event: the trace is
taken where frames are parsed and written, above the transport.

The broker here serves TLS through a listener of the test's own (a trio.SSLStream handed to the
server's ServerConnection, as a TLS listener does), with a throw-away self-signed certificate."""

from __future__ import annotations

import queue
import shutil
import ssl
import subprocess

import pika
import pytest
import trio

from amqp_broker.server.connection import ServerConnection
from amqp_broker.testing import BrokerThread
from trace_helpers import closed, conversation, wait_for


def _certificate(tmp_path) -> tuple[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl (the command) is needed to make a test certificate")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=60)
    return cert, key


def _serve_tls(broker: BrokerThread, context: ssl.SSLContext) -> int:
    """Start a TLS listener on the broker's loop; returns its port."""
    ports: queue.Queue = queue.Queue()

    async def handle(tcp: trio.SocketStream) -> None:
        peer = "%s:%d" % tcp.socket.getpeername()[:2]
        local = "%s:%d" % tcp.socket.getsockname()[:2]
        stream = trio.SSLStream(tcp, context, server_side=True)
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError:
            return
        conn = ServerConnection(broker.server, stream, peer, local)
        broker.server.connections.add(conn)
        try:
            await conn.run()
        finally:
            broker.server.connections.discard(conn)

    async def serve() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        ports.put(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(handle, listeners)

    broker.call(trio.lowlevel.spawn_system_task, serve)
    return ports.get(timeout=10)


def test_tls_connection_is_traced_in_plaintext(tmp_path):
    cert, key = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    path = tmp_path / "tls.jsonl"
    with BrokerThread(trace_file=str(path)) as broker:
        port = _serve_tls(broker, server_context)
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "localhost", port, ssl_options=pika.SSLOptions(client_context, "localhost"), heartbeat=0))
        name = broker.call(lambda: next(c.name for c in broker.server.connections))
        ch = conn.channel()
        ch.queue_declare("tls.q")
        ch.basic_publish("", "tls.q", b"secret over the wire, plain in the trace")
        assert ch.basic_get("tls.q", auto_ack=True)[2] == b"secret over the wire, plain in the trace"
        ch.queue_delete("tls.q")
        conn.close()
        recs = wait_for(path, closed(name))
    lines = conversation(recs, name)
    assert lines[:4] == ["event:accept", "event:tls", "in:protocol-header", "out:connection.start"]
    assert lines[-2:] == ["event:close", "event:socket_closed"]
    tls = next(r for r in recs if r.get("event") == "tls")
    assert tls["version"].startswith("TLSv1.") and tls["cipher"][0]
    body = next(r for r in recs if r.get("type") == "body" and r["dir"] == "in")
    assert body["head"] == "secret over the wire, plain in the trace"[:32]
