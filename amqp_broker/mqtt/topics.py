"""Topic names between MQTT and AMQP, as rabbit_mqtt_util translates them.

MQTT's level separator ``/`` is AMQP's ``.``, and the single-level wildcard ``+`` is ``*``;
``#`` is the same in both. The translation is plain character replacement both ways, so an MQTT
topic containing ``.`` or ``*`` comes back changed (``a.b`` -> ``a/b``), as with RabbitMQ.
"""

from __future__ import annotations

from functools import lru_cache

_TO_AMQP = str.maketrans({"/": ".", "+": "*"})
_TO_MQTT = str.maketrans({".": "/", "*": "+"})


@lru_cache(maxsize=4096)
def to_amqp(topic: str) -> str:
    """An MQTT topic name or filter as an AMQP routing key or binding key."""
    return topic.translate(_TO_AMQP)


@lru_cache(maxsize=4096)
def to_mqtt(routing_key: str) -> str:
    """An AMQP routing key as an MQTT topic name."""
    return routing_key.translate(_TO_MQTT)


@lru_cache(maxsize=4096)
def to_mqtt_bytes(routing_key: str) -> bytes:
    """:func:`to_mqtt`, UTF-8 encoded for a PUBLISH packet."""
    return to_mqtt(routing_key).encode("utf-8")
