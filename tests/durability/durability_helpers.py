"""Helpers for durability tests: a broker subprocess with pika conveniences, publish/get."""

from __future__ import annotations

import pika

from interop.crash.broker_proc import BrokerProcess


class Broker(BrokerProcess):
    """A :class:`BrokerProcess` with pika helpers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._conns: list[pika.BlockingConnection] = []

    def connect(self, **kwargs) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.port, heartbeat=0, blocked_connection_timeout=30, **kwargs))

    def channel(self, confirm: bool = False):
        """A channel on a new connection (closed with the test's broker)."""
        conn = self.connect()
        self._conns.append(conn)
        ch = conn.channel()
        if confirm:
            ch.confirm_delivery()
        return ch

    def bounce(self, how: str, close_clients: bool = False) -> "Broker":
        """Restart: ``clean`` (SIGTERM, waits for a clean exit) or ``kill9`` (SIGKILL).

        Client connections are left open unless ``close_clients``: the broker closes them itself
        (on SIGTERM, with 320 CONNECTION_FORCED) or they die with it, so unacked deliveries are
        still outstanding when it stops, as in a real shutdown or crash. With ``close_clients``
        they are closed first, so the stop follows the clients' last operations at once."""
        if close_clients:
            self._close_conns()
        self.restart(clean=(how == "clean"))
        self._conns.clear()
        return self

    def _close_conns(self) -> None:
        for conn in self._conns:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:
                pass
        self._conns.clear()


def publish(ch, queue: str, bodies, persistent: bool = True, exchange: str = "", **props) -> None:
    """Publish each body (str or bytes) to ``queue`` through ``exchange``."""
    for body in bodies:
        ch.basic_publish(exchange, queue, body if isinstance(body, bytes) else body.encode(),
                         pika.BasicProperties(delivery_mode=2 if persistent else 1, **props))


def get_all(ch, queue: str, ack: bool = True) -> list[tuple[str, bool]]:
    """Every ready message of ``queue`` as (body, redelivered), acked (or left unacked)."""
    out = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=False)
        if method is None:
            return out
        out.append((body.decode(), method.redelivered))
        if ack:
            ch.basic_ack(method.delivery_tag)


def exists(broker: Broker, kind: str, name: str) -> bool:
    """Whether a queue/exchange exists (passive declare on a throw-away channel)."""
    ch = broker.channel()
    try:
        if kind == "queue":
            ch.queue_declare(name, passive=True)
        else:
            ch.exchange_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404, exc
        return False
