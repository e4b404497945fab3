"""Tutorial 4 - Routing: direct exchange, queues bound by severity
(one queue bound with several keys, one key bound to several queues)."""
from __future__ import annotations

from ._common import cleanup, connections, pump, settle, unique


def run(host: str, port: int) -> None:
    exchange = unique("direct_logs")
    try:
        with connections(host, port, 3) as (emit_conn, disk_conn, console_conn):
            emit = emit_conn.channel()
            emit.exchange_declare(exchange=exchange, exchange_type="direct")

            def subscriber(conn, severities):
                ch = conn.channel()
                ch.exchange_declare(exchange=exchange, exchange_type="direct")
                q = ch.queue_declare(queue="", exclusive=True).method.queue
                for sev in severities:
                    ch.queue_bind(exchange=exchange, queue=q, routing_key=sev)
                box: list = []
                ch.basic_consume(queue=q, auto_ack=True,
                                 on_message_callback=lambda c, m, p, b: box.append((m.routing_key, b)))
                return box

            disk = subscriber(disk_conn, ["error"])  # receive_logs_direct.py error
            console = subscriber(console_conn, ["info", "warning", "error"])

            sent = [("info", b"Run. Run. Or it will explode."),
                    ("error", b"Run. Run. Or it will explode."),
                    ("warning", b"disk almost full"),
                    ("debug", b"nobody listens to debug"),
                    ("error", b"second error"),
                    ("info", b"done")]
            for sev, body in sent:
                emit.basic_publish(exchange=exchange, routing_key=sev, body=body)

            want_disk = [(s, b) for s, b in sent if s == "error"]
            want_console = [(s, b) for s, b in sent if s in ("info", "warning", "error")]
            pump([disk_conn, console_conn],
                 lambda: len(disk) >= len(want_disk) and len(console) >= len(want_console),
                 what="routed log lines")
            settle([disk_conn, console_conn], 0.3)
            assert disk == want_disk, disk
            assert console == want_console, console
    finally:
        cleanup(host, port, exchanges=[exchange])
