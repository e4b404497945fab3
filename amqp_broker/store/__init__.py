"""Durable storage of definitions and messages (knows nothing of AMQP)."""


class StoreError(Exception):
    """The store cannot be opened, read or written; the message says why and where."""
