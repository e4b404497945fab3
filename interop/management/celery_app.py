"""A tiny celery app for `celery -A interop.management.celery_app -b amqp://... list bindings`.

`celery list bindings` declares the app's task queue and lists bindings through kombu's manager
(a pyrabbit Client on the management API). The manager's host and port come from the broker
transport options, set here from the environment:
    MGMT_CELERY_QUEUE          the task queue (and exchange, and routing key) celery declares
    MGMT_CELERY_MANAGER_HOST   management API host (default 127.0.0.1)
    MGMT_CELERY_MANAGER_PORT   management API port (default 15672)
"""
from __future__ import annotations

import os

from celery import Celery

app = Celery("mgmt_celery_app")
app.conf.update(
    task_default_queue=os.environ.get("MGMT_CELERY_QUEUE", "mgmt.celery"),
    broker_transport_options={
        "manager_hostname": os.environ.get("MGMT_CELERY_MANAGER_HOST", "127.0.0.1"),
        "manager_port": int(os.environ.get("MGMT_CELERY_MANAGER_PORT", "15672")),
    },
    broker_connection_retry_on_startup=False,
    broker_connection_max_retries=1,
    broker_connection_timeout=10,
)


@app.task(name="mgmt_celery_app.noop")
def noop() -> None:
    """celery needs a task to be an app; list bindings never runs it."""
