"""Client-side TLS helpers for tests/tls."""

from __future__ import annotations

import ssl

import pika

from amqp_broker.testing import BrokerThread


def client_context(broker: BrokerThread, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the broker's certificate (localhost) against its CA."""
    context = ssl.create_default_context(cafile=broker.tls_ca)
    if cert:
        context.load_cert_chain(cert, key)
    return context


def pika_params(broker: BrokerThread, context: ssl.SSLContext, external: bool = False,
                **more) -> pika.ConnectionParameters:
    credentials = pika.credentials.ExternalCredentials() if external else pika.PlainCredentials("guest", "guest")
    return pika.ConnectionParameters(
        "localhost", broker.tls_port, ssl_options=pika.SSLOptions(context, "localhost"),
        credentials=credentials, connection_attempts=1, socket_timeout=10, stack_timeout=15,
        **more,
    )


def round_trip(connection: pika.BlockingConnection, count: int = 10) -> None:
    """Publish ``count`` messages (one of 200 KB: several TLS records and frames) to a fresh
    exclusive queue and consume them back in order."""
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    bodies = [b"x" * 200_000 if i == 3 else f"message {i}".encode() for i in range(count)]
    for body in bodies:
        channel.basic_publish("", queue, body)
    received = []
    for _method, _props, body in channel.consume(queue, auto_ack=True, inactivity_timeout=10):
        assert body is not None, f"only {len(received)} of {count} messages came back"
        received.append(body)
        if len(received) == count:
            break
    channel.cancel()
    assert received == bodies
