"""Durable storage of definitions and messages (knows nothing of AMQP)."""
