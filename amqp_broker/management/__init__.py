"""RabbitMQ's management HTTP API, its web page and Prometheus metrics, served by the broker.

* :mod:`.http` — a small HTTP/1.1 server (h11 on trio) with the limits that keep an HTTP client
  from hurting the broker;
* :mod:`.router` — paths to handlers;
* :mod:`.api` — the ``/api/...`` endpoints over :class:`~amqp_broker.broker.admin.Admin`;
* :mod:`.static` — the web page's files;
* :mod:`.server` — the listeners the broker starts (management, Prometheus).
"""
