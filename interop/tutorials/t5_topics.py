"""Tutorial 5 - Topics: topic exchange with '*' and '#' bindings, using the
tutorial's own examples."""
from __future__ import annotations

from ._common import cleanup, connections, pump, settle, unique

BINDINGS = {
    "Q1": ["*.orange.*"],
    "Q2": ["*.*.rabbit", "lazy.#"],
    "all": ["#"],
    "kern": ["kern.*"],
    "critical": ["*.critical"],
}

# routing key -> set of subscribers that must get it (exactly once each)
EXPECT = {
    "quick.orange.rabbit": {"Q1", "Q2", "all"},
    "lazy.orange.elephant": {"Q1", "Q2", "all"},
    "quick.orange.fox": {"Q1", "all"},
    "lazy.brown.fox": {"Q2", "all"},
    "lazy.pink.rabbit": {"Q2", "all"},      # matches two Q2 bindings, delivered once
    "quick.brown.fox": {"all"},
    "orange": {"all"},
    "quick.orange.new.rabbit": {"all"},
    "lazy.orange.new.rabbit": {"Q2", "all"},
    "lazy": {"Q2", "all"},                  # '#' matches zero words
    "kern.critical": {"kern", "critical", "all"},
    "kern.info": {"kern", "all"},
    "cron.critical": {"critical", "all"},
    "kern.critical.extra": {"all"},
}


def run(host: str, port: int) -> None:
    exchange = unique("topic_logs")
    try:
        with connections(host, port, 2) as (emit_conn, recv_conn):
            emit = emit_conn.channel()
            emit.exchange_declare(exchange=exchange, exchange_type="topic")
            boxes: dict[str, list] = {}
            rch = recv_conn.channel()
            for name, keys in BINDINGS.items():
                q = rch.queue_declare(queue="", exclusive=True).method.queue
                for k in keys:
                    rch.queue_bind(exchange=exchange, queue=q, routing_key=k)
                box: list = []
                boxes[name] = box
                rch.basic_consume(queue=q, auto_ack=True,
                                  on_message_callback=lambda c, m, p, b, box=box: box.append(m.routing_key))

            for rk in EXPECT:
                emit.basic_publish(exchange=exchange, routing_key=rk, body=rk.encode())

            want = {name: [rk for rk, who in EXPECT.items() if name in who] for name in BINDINGS}
            pump([recv_conn], lambda: all(len(boxes[n]) >= len(want[n]) for n in want),
                 what="topic deliveries")
            settle([recv_conn], 0.3)
            for name in BINDINGS:
                assert boxes[name] == want[name], (name, boxes[name], want[name])
    finally:
        cleanup(host, port, exchanges=[exchange])
