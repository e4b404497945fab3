"""Tutorial 2 - Work queues: durable queue, persistent messages, manual acks,
prefetch_count=1 fair dispatch between two workers, redelivery when a worker
dies without acking."""
from __future__ import annotations

import time

import pika

from ._common import cleanup, connections, pump, settle, unique

WORK_UNIT = 0.05  # seconds of simulated work per '.' in a task


class Worker:
    """A tutorial worker driven from a single thread: 'work' is a deadline,
    the ack is sent when the deadline passes."""

    def __init__(self, name: str, conn: pika.BlockingConnection, queue: str):
        self.name = name
        self.conn = conn
        self.ch = conn.channel()
        self.ch.queue_declare(queue=queue, durable=True)
        self.ch.basic_qos(prefetch_count=1)
        self.done: list[bytes] = []
        self.current: tuple | None = None  # (delivery_tag, body, finish_at)
        self.violations: list[str] = []
        self.redelivered: list[bytes] = []
        self.ch.basic_consume(queue=queue, on_message_callback=self.on_message)

    def on_message(self, ch, method, properties, body):
        if self.current is not None:
            self.violations.append(
                f"{self.name} got {body!r} while still working on {self.current[1]!r} (prefetch=1 broken)")
        if properties.delivery_mode != 2:
            self.violations.append(f"{body!r} lost delivery_mode=2: {properties.delivery_mode}")
        if method.redelivered:
            self.redelivered.append(body)
        self.current = (method.delivery_tag, body, time.monotonic() + body.count(b".") * WORK_UNIT)

    def tick(self) -> None:
        if self.current and time.monotonic() >= self.current[2]:
            tag, body, _ = self.current
            self.current = None
            self.done.append(body)
            self.ch.basic_ack(delivery_tag=tag)


def run(host: str, port: int) -> None:
    queue = unique("task_queue")
    try:
        with connections(host, port, 4) as (pub_conn, c1, c2, c3):
            pub = pub_conn.channel()
            pub.queue_declare(queue=queue, durable=True)
            pub.confirm_delivery()
            persistent = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)

            # -- fair dispatch ------------------------------------------------
            w1 = Worker("w1", c1, queue)
            w2 = Worker("w2", c2, queue)
            tasks = [b"A long task.........................", b"b.", b"c.", b"d.", b"e."]
            for t in tasks:
                pub.basic_publish(exchange="", routing_key=queue, body=t, properties=persistent)

            def all_done() -> bool:
                w1.tick()
                w2.tick()
                return len(w1.done) + len(w2.done) == len(tasks)

            pump([c1, c2], all_done, timeout=15, what="all tasks to be processed")
            settle([c1, c2], 0.2)
            assert not (w1.violations + w2.violations), w1.violations + w2.violations
            assert sorted(w1.done + w2.done) == sorted(tasks), (w1.done, w2.done)
            # Round robin gives the long task to one worker; with prefetch=1 that
            # worker gets nothing else while the other works through the rest.
            long_w, short_w = (w1, w2) if tasks[0] in w1.done else (w2, w1)
            assert long_w.done == [tasks[0]], (long_w.name, long_w.done)
            assert short_w.done == tasks[1:], (short_w.name, short_w.done)
            assert not (w1.redelivered + w2.redelivered)
            st = pub.queue_declare(queue=queue, durable=True, passive=True)
            assert st.method.message_count == 0 and st.method.consumer_count == 2, st.method

            # -- a worker dies with an unacked task: it is redelivered ---------
            w1.ch.basic_cancel(w1.ch.consumer_tags[0])
            w2.ch.basic_cancel(w2.ch.consumer_tags[0])
            pub.basic_publish(exchange="", routing_key=queue, body=b"dying.", properties=persistent)
            w3 = Worker("w3", c3, queue)
            pump([c3], lambda: w3.current is not None, what="task delivery to w3")
            assert w3.current[1] == b"dying." and not w3.redelivered
            c3.close()  # dies without ack

            w4_box: list = []
            ch = c1.channel()
            ch.basic_qos(prefetch_count=1)
            ch.basic_consume(queue=queue, on_message_callback=lambda c, m, p, b: (
                w4_box.append((b, m.redelivered)), c.basic_ack(m.delivery_tag)))
            pump([c1], lambda: len(w4_box) >= 1, what="redelivery of the dead worker's task")
            settle([c1], 0.2)
            assert w4_box == [(b"dying.", True)], w4_box
    finally:
        cleanup(host, port, queues=[queue])
