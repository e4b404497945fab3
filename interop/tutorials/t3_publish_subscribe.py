"""Tutorial 3 - Publish/Subscribe: fanout exchange, each subscriber with an
exclusive server-named queue; every subscriber gets every message."""
from __future__ import annotations

import re

import pika
import pika.exceptions

from ._common import cleanup, connections, pump, settle, unique

SERVER_NAMED = re.compile(r"^amq\.gen-[A-Za-z0-9_\-]{22}$")


def run(host: str, port: int) -> None:
    exchange = unique("logs")
    try:
        with connections(host, port, 3) as (emit_conn, s1, s2):
            emit = emit_conn.channel()
            emit.exchange_declare(exchange=exchange, exchange_type="fanout")
            # Published before anyone is bound: silently dropped.
            emit.basic_publish(exchange=exchange, routing_key="", body=b"nobody hears this")

            subs = []
            for conn in (s1, s2):
                ch = conn.channel()
                ch.exchange_declare(exchange=exchange, exchange_type="fanout")
                res = ch.queue_declare(queue="", exclusive=True)
                qname = res.method.queue
                assert SERVER_NAMED.match(qname), qname
                ch.queue_bind(exchange=exchange, queue=qname)
                box: list = []
                ch.basic_consume(queue=qname, auto_ack=True,
                                 on_message_callback=lambda c, m, p, b, box=box: box.append(
                                     (b, m.exchange, m.routing_key)))
                subs.append((conn, qname, box))
            assert subs[0][1] != subs[1][1]

            logs = [b"info: Hello World!", b"warning: disk 90%", b"error: it broke"]
            for line in logs:
                # The routing key is ignored by fanout exchanges.
                emit.basic_publish(exchange=exchange, routing_key="ignored", body=line)

            pump([s1, s2], lambda: all(len(b) >= len(logs) for _, _, b in subs),
                 what="log lines on both subscribers")
            settle([s1, s2], 0.2)
            for _, qname, box in subs:
                assert box == [(line, exchange, "ignored") for line in logs], (qname, box)

            # Exclusive queues disappear with their connection.
            s1.close()
            check = emit_conn.channel()
            try:
                check.queue_declare(queue=subs[0][1], passive=True)
                raise AssertionError("exclusive queue survived its connection")
            except pika.exceptions.ChannelClosedByBroker as e:
                assert e.reply_code == 404, e
            # Publishing still reaches the remaining subscriber.
            emit.basic_publish(exchange=exchange, routing_key="", body=b"after s1 left")
            pump([s2], lambda: len(subs[1][2]) >= len(logs) + 1, what="post-close delivery")
            assert subs[1][2][-1][0] == b"after s1 left"
    finally:
        cleanup(host, port, exchanges=[exchange])
