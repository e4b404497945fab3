"""Runnable pika scenarios for the RabbitMQ tutorials 1-6.

Each module exposes ``run(host: str, port: int) -> None`` which raises
AssertionError (or a pika error) on failure and finishes in bounded time.
Run all of them with ``python -m interop.tutorials --host H --port P``.
"""
from . import (t1_hello_world, t2_work_queues, t3_publish_subscribe, t4_routing,
               t5_topics, t6_rpc)

TUTORIALS = [
    ("1-hello-world", t1_hello_world.run),
    ("2-work-queues", t2_work_queues.run),
    ("3-publish-subscribe", t3_publish_subscribe.run),
    ("4-routing", t4_routing.run),
    ("5-topics", t5_topics.run),
    ("6-rpc", t6_rpc.run),
]

__all__ = ["TUTORIALS"]
