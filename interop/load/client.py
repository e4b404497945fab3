"""A small asyncio AMQP client for load runs (thousands at once: pika's per-connection cost and
threads would measure the client, not the broker), and /proc readings of the broker process."""

from __future__ import annotations

import asyncio
import os
import struct
import time

from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import heartbeat as pheartbeat
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
_HEARTBEAT = pframe.marshal(pheartbeat.Heartbeat(), 0)


def broker_rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def broker_fds(pid: int) -> int:
    """Open descriptors of process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


class AmqpClient:
    """One connection with channel 1: handshake, consume, publish, heartbeats, close."""

    def __init__(self, host: str, port: int, heartbeat: int = 0):
        self.host = host
        self.port = port
        self.heartbeat = heartbeat
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.closed = False
        self.last_receive = time.monotonic()
        self.longest_silence = 0.0

    async def _frame(self):
        assert self.reader is not None
        head = await self.reader.readexactly(7)
        size = struct.unpack_from(">I", head, 3)[0]
        rest = await self.reader.readexactly(size + 1)
        now = time.monotonic()
        self.longest_silence = max(self.longest_silence, now - self.last_receive)
        self.last_receive = now
        _, channel, value = pframe.unmarshal(head + rest)
        if isinstance(value, C.Connection.Close):
            self.closed = True
            raise ConnectionError(f"closed by the broker: {value.reply_code} {value.reply_text}")
        return channel, value

    async def _method(self, kind):
        while True:
            _, value = await self._frame()
            if isinstance(value, kind):
                return value

    def _send(self, channel: int, *values) -> None:
        assert self.writer is not None
        self.writer.write(b"".join(pframe.marshal(v, channel) for v in values))

    async def open(self, consume_queue: str | None) -> None:
        """Handshake, open channel 1, and consume (no-ack) from ``consume_queue`` if given."""
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(PROTOCOL_HEADER)
        await self._method(C.Connection.Start)
        self._send(0, C.Connection.StartOk(client_properties={"product": "interop.load"}, mechanism="PLAIN",
                                           response="\0guest\0guest", locale="en_US"))
        tune = await self._method(C.Connection.Tune)
        self._send(0, C.Connection.TuneOk(channel_max=tune.channel_max, frame_max=tune.frame_max,
                                          heartbeat=self.heartbeat),
                   C.Connection.Open(virtual_host="/"))
        await self._method(C.Connection.OpenOk)
        self._send(1, C.Channel.Open())
        await self._method(C.Channel.OpenOk)
        if consume_queue is not None:
            self._send(1, C.Queue.Declare(queue=consume_queue), C.Basic.Consume(queue=consume_queue, no_ack=True))
            await self._method(C.Basic.ConsumeOk)
        self.last_receive = time.monotonic()
        self.longest_silence = 0.0

    async def keep_alive(self) -> None:
        """Read every frame and send a heartbeat each interval, until cancelled or closed."""
        async def beat():
            while True:
                await asyncio.sleep(self.heartbeat)
                self.writer.write(_HEARTBEAT)  # type: ignore[union-attr]

        beating = asyncio.create_task(beat()) if self.heartbeat else None
        try:
            while True:
                await self._frame()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed = True
        finally:
            if beating is not None:
                beating.cancel()

    async def declare_and_publish(self, queue: str, body: bytes) -> None:
        """Declare ``queue`` and publish ``body`` to it, confirmed by the declare-ok round trip."""
        self._send(1, C.Queue.Declare(queue=queue, arguments={"x-max-length": 10}))
        await self._method(C.Queue.DeclareOk)
        self._send(1, C.Basic.Publish(exchange="", routing_key=queue),
                   ContentHeader(0, len(body), C.Basic.Properties()), ContentBody(body))

    async def pipelined(self, methods) -> None:
        """Send ``methods`` (nowait ones) in one write, then wait for a round trip (a passive
        declare of amq.direct) so the broker has handled them all."""
        self._send(1, *methods, C.Exchange.Declare(exchange="amq.direct", passive=True))
        await self._method(C.Exchange.DeclareOk)

    async def publish_and_receive(self, queue: str, body: bytes) -> None:
        """Publish ``body`` to ``queue`` (which this client consumes) and wait for its delivery."""
        self._send(1, C.Basic.Publish(exchange="", routing_key=queue),
                   ContentHeader(0, len(body), C.Basic.Properties()), ContentBody(body))
        await self._method(C.Basic.Deliver)
        await self._method(ContentBody)

    async def close(self) -> None:
        """connection.close, wait for close-ok (bounded), then close the socket."""
        if self.writer is None:
            return
        try:
            if not self.closed:
                self._send(0, C.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
                await asyncio.wait_for(self._method(C.Connection.CloseOk), 10)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        finally:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
