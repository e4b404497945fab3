"""The management HTTP API (RabbitMQ 3.10's, on the management port): RabbitMQ's recorded shapes,
a differential harness against RabbitMQ (diff.py) and the real tools that use the API (tools.py)."""
