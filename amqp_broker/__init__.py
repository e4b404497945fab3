"""AMQP 0-9-1 message broker on trio."""

__version__ = "0.1.0"

#: The name this project is published and installed under (``pip install amqp-broker-trio``);
#: the import name is ``amqp_broker``, the command ``amqp-broker``.
DISTRIBUTION = "amqp-broker-trio"
