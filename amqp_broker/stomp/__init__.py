"""STOMP 1.0-1.2 for clients of RabbitMQ's rabbitmq_stomp plugin: :mod:`.frame` (the codec),
:mod:`.destinations` (RabbitMQ's destination forms), :mod:`.connection` (the sans-IO session,
talking to the broker core as an AMQP channel does) and :mod:`.server` (the trio listener)."""
