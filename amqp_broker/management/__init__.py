"""The HTTP endpoints of the broker: RabbitMQ's management API and its Prometheus metrics."""
