"""Tutorial 1 - "Hello World!": one producer, one consumer, a named queue."""
from __future__ import annotations

from ._common import cleanup, connections, pump, settle, unique


def run(host: str, port: int) -> None:
    queue = unique("hello")
    try:
        with connections(host, port, 2) as (send_conn, recv_conn):
            # send.py
            sch = send_conn.channel()
            ok = sch.queue_declare(queue=queue)
            assert ok.method.queue == queue, ok.method
            assert ok.method.message_count == 0 and ok.method.consumer_count == 0, ok.method
            sch.basic_publish(exchange="", routing_key=queue, body=b"Hello World!")

            # receive.py (declares the queue again: idempotent)
            rch = recv_conn.channel()
            rch.queue_declare(queue=queue)
            received: list[tuple] = []

            def callback(ch, method, properties, body):
                received.append((body, method.routing_key, method.exchange, method.redelivered))

            rch.basic_consume(queue=queue, on_message_callback=callback, auto_ack=True)
            pump([recv_conn, send_conn], lambda: len(received) >= 1, what="Hello World! delivery")
            settle([recv_conn], 0.2)
            assert received == [(b"Hello World!", queue, "", False)], received

            # auto_ack: nothing left in the queue, one consumer attached
            st = sch.queue_declare(queue=queue, passive=True)
            assert st.method.message_count == 0, st.method
            assert st.method.consumer_count == 1, st.method
    finally:
        cleanup(host, port, queues=[queue])
