"""A connection over TLS is traced in plaintext, with its TLS session as an event: the trace is
taken where frames are parsed and written, above the transport (the broker's own AMQPS listener,
with --tls auto's throw-away certificates)."""

from __future__ import annotations

import ssl

import pika

from amqp_broker.testing import BrokerThread
from trace_helpers import closed, conversation, wait_for


def test_tls_connection_is_traced_in_plaintext(tmp_path):
    path = tmp_path / "tls.jsonl"
    with BrokerThread(tls="auto", trace_file=str(path)) as broker:
        client_context = ssl.create_default_context(cafile=broker.tls_ca)
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "localhost", broker.tls_port, ssl_options=pika.SSLOptions(client_context, "localhost"),
            heartbeat=0))
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
