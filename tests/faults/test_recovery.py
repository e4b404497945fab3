"""Clients' own recovery against faults: aio-pika's robust connection (reconnect, redeclare,
re-consume) and kombu's publish retry."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import amqp.exceptions
import kombu

# Seconds to watch for something that must NOT happen (absence cannot be awaited).
SETTLE = 0.3


def url(broker, vhost="", **query):
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"amqp://guest:guest@127.0.0.1:{broker.port}/{vhost}" + (f"?{params}" if params else "")


async def robust_consumer(broker, name, queue_name, **declare):
    """A robust connection consuming ``queue_name``: (connection, channel, received, reconnected)."""
    connection = await aio_pika.connect_robust(
        url(broker, reconnect_interval="0.1"), client_properties={"connection_name": name})
    reconnected = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *args: reconnected.set())
    channel = await connection.channel()
    queue = await channel.declare_queue(queue_name, **declare)
    received: asyncio.Queue = asyncio.Queue()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            received.put_nowait(message.body)

    await queue.consume(on_message)
    return connection, channel, received, reconnected


def test_aio_pika_robust_connection_recovers_from_a_restart(broker, faults):
    """The restart drops the (non-durable) queue, as RabbitMQ's would: the robust connection
    reconnects, declares it again and consumes again."""
    queue_name = f"robust-{uuid.uuid4().hex[:8]}"

    async def scenario():
        connection, channel, received, reconnected = await robust_consumer(
            broker, "robust-restart", queue_name)
        await channel.default_exchange.publish(aio_pika.Message(b"before"), routing_key=queue_name)
        assert await asyncio.wait_for(received.get(), 10) == b"before"
        faults.restart()
        await asyncio.wait_for(reconnected.wait(), 10)
        await channel.default_exchange.publish(aio_pika.Message(b"after"), routing_key=queue_name)
        assert await asyncio.wait_for(received.get(), 10) == b"after"
        await connection.close()

    asyncio.run(scenario())
    queue = broker.call(lambda: broker.server.admin.queue("/", queue_name))
    assert queue["durable"] is False and queue["messages"] == 0  # declared again after the restart
    broker.call(lambda: broker.server.admin.delete_queue("/", queue_name))


def test_aio_pika_robust_connection_recovers_from_a_reset(broker, faults):
    queue_name = f"robust-{uuid.uuid4().hex[:8]}"

    async def scenario():
        connection, channel, received, reconnected = await robust_consumer(
            broker, "robust-reset", queue_name, auto_delete=True)
        faults.reset(connection="robust-reset")
        await asyncio.wait_for(reconnected.wait(), 10)
        await channel.default_exchange.publish(aio_pika.Message(b"after reset"), routing_key=queue_name)
        assert await asyncio.wait_for(received.get(), 10) == b"after reset"
        await connection.close()

    asyncio.run(scenario())


def test_aio_pika_publish_waits_for_withheld_confirms(broker, faults):
    async def scenario():
        connection = await aio_pika.connect(url(broker), client_properties={"connection_name": "withheld"})
        channel = await connection.channel()  # publisher confirms on, aio-pika's default
        queue = await channel.declare_queue(f"withheld-{uuid.uuid4().hex[:8]}", exclusive=True)
        fault = faults.withhold_confirms(connection="withheld")
        publish = asyncio.ensure_future(
            channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=queue.name))
        done, _ = await asyncio.wait({publish}, timeout=SETTLE)
        assert not done  # routed (see below) but not confirmed: the publish call waits
        assert (await channel.declare_queue(queue.name, passive=True)).declaration_result.message_count == 1
        faults.release(fault)
        await asyncio.wait_for(publish, 5)
        await connection.close()

    asyncio.run(scenario())


def test_kombu_retries_a_publish_after_the_connection_is_closed(broker, faults):
    vhost = f"kombu-{uuid.uuid4().hex[:8]}"
    admin = broker.server.admin
    broker.call(lambda: (admin.add_vhost(vhost), admin.set_permissions("guest", vhost)))
    queue = kombu.Queue("retried", routing_key="retried")
    errors = []
    try:
        with kombu.Connection(url(broker, vhost), transport_options={"confirm_publish": True}) as conn:
            producer = conn.Producer()
            producer.publish(b"first", routing_key="retried", declare=[queue])
            faults.close_connection(code=320, text="CONNECTION_FORCED - injected", vhost=vhost)
            producer.publish(b"second", routing_key="retried", retry=True,
                             retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.1,
                                           "errback": lambda exc, interval: errors.append(exc)})
        assert len(errors) == 1 and isinstance(errors[0], amqp.exceptions.ConnectionForced)
        assert (errors[0].reply_code, errors[0].reply_text) == (320, "CONNECTION_FORCED - injected")
        assert broker.call(lambda: admin.queue(vhost, "retried")["messages"]) == 2
    finally:
        broker.call(lambda: admin.delete_vhost(vhost))
