"""A tiny celery app for celery_smoke.py: one task, broker and result backend over AMQP.

The broker URL and the task queue come from the environment so the worker subprocess and the
client that sends tasks agree on them (celery_smoke.py sets both):
    SMOKE_CELERY_BROKER_URL   default amqp://guest:guest@127.0.0.1:5672//
    SMOKE_CELERY_QUEUE        default smoke.celery
Results travel back over AMQP with the rpc:// backend (a reply queue per client, correlation ids).
"""
from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "celery_app",
    broker=os.environ.get("SMOKE_CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="rpc://",
)
app.conf.update(
    task_default_queue=os.environ.get("SMOKE_CELERY_QUEUE", "smoke.celery"),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=3,
    broker_connection_timeout=10,
    worker_hijack_root_logger=False,
)


@app.task(name="celery_app.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="celery_app.echo_headers", bind=True)
def echo_headers(self, value: str) -> dict:
    """Returns what the worker saw of the request, to check properties made the round trip."""
    return {"value": value, "id": self.request.id, "correlation_id": self.request.correlation_id,
            "reply_to": self.request.reply_to, "delivery_info": dict(self.request.delivery_info or {})}
