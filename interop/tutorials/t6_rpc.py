"""Tutorial 6 - RPC: a server consuming 'rpc_queue' (prefetch 1), a client with
an exclusive server-named callback queue, reply_to + correlation_id."""
from __future__ import annotations

import uuid

import pika

from ._common import cleanup, connections, pump, settle, unique


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def run(host: str, port: int) -> None:
    rpc_queue = unique("rpc_queue")
    try:
        with connections(host, port, 2) as (server_conn, client_conn):
            # rpc_server.py
            sch = server_conn.channel()
            sch.queue_declare(queue=rpc_queue)
            sch.basic_qos(prefetch_count=1)
            served: list[int] = []

            def on_request(ch, method, props, body):
                n = int(body)
                served.append(n)
                ch.basic_publish(exchange="", routing_key=props.reply_to,
                                 properties=pika.BasicProperties(correlation_id=props.correlation_id),
                                 body=str(fib(n)).encode())
                ch.basic_ack(delivery_tag=method.delivery_tag)

            sch.basic_consume(queue=rpc_queue, on_message_callback=on_request)

            # rpc_client.py
            cch = client_conn.channel()
            callback_queue = cch.queue_declare(queue="", exclusive=True).method.queue
            assert callback_queue.startswith("amq.gen-"), callback_queue
            responses: dict[str, bytes] = {}
            stray: list = []

            def on_response(ch, method, props, body):
                if props.correlation_id in pending:
                    responses[props.correlation_id] = body
                else:
                    stray.append((props.correlation_id, body))

            cch.basic_consume(queue=callback_queue, on_message_callback=on_response, auto_ack=True)

            def call(n: int) -> str:
                corr_id = str(uuid.uuid4())
                pending[corr_id] = n
                cch.basic_publish(exchange="", routing_key=rpc_queue,
                                  properties=pika.BasicProperties(reply_to=callback_queue,
                                                                  correlation_id=corr_id),
                                  body=str(n).encode())
                return corr_id

            pending: dict[str, int] = {}
            # One call at a time, as in the tutorial.
            cid = call(30)
            pump([server_conn, client_conn], lambda: cid in responses, what="fib(30) response")
            assert responses[cid] == b"832040", responses[cid]

            # Several outstanding calls; answers matched by correlation_id.
            ids = {call(n): n for n in (0, 1, 2, 10, 20, 35)}
            # A reply with an unknown correlation id must be ignored by the client.
            sch.basic_publish(exchange="", routing_key=callback_queue,
                              properties=pika.BasicProperties(correlation_id="not-mine"), body=b"?")
            pump([server_conn, client_conn], lambda: all(i in responses for i in ids),
                 what="all fib responses")
            settle([server_conn, client_conn], 0.2)
            for i, n in ids.items():
                assert responses[i] == str(fib(n)).encode(), (n, responses[i])
            assert stray == [("not-mine", b"?")], stray
            # The server saw the requests in publish order (single queue, FIFO).
            assert served == [30, 0, 1, 2, 10, 20, 35], served
            st = sch.queue_declare(queue=rpc_queue, passive=True)
            assert st.method.message_count == 0 and st.method.consumer_count == 1, st.method
    finally:
        cleanup(host, port, queues=[rpc_queue])
