"""server/connection.py's ServerConnection without sockets: a real BrokerServer (never served, so
with no store) and a real ServerConnection, driven over trio's in-memory streams under a MockClock
whose autojump makes timeouts instant and deterministic.

The client's side is written by hand with pamqp, one frame at a time, so each test states exactly
what reaches the server and reads exactly what comes back.

What these streams cannot stand in for stays with the socket tests (tests/integration): bodies of
LARGE_BODY or more go out with ``socket.sendmsg``, and a connection held by flow control polls its
socket for a hang-up every HELD_CHECK_INTERVAL, so the tests here keep bodies small and let a held
connection go before that interval.
"""

from __future__ import annotations

import struct

import trio
import trio.testing
from pamqp import body as pbody
from pamqp import commands, frame, header, heartbeat

from amqp_broker.config import Settings
from amqp_broker.protocol.output import WRITE_HIGH_WATER
from amqp_broker.server import connection as server_connection
from amqp_broker.server.connection import HANDSHAKE_TIMEOUT, LINGER_TIMEOUT, ServerConnection
from amqp_broker.server.listener import BrokerServer

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


class Client:
    """The client's end of the stream: sends frames, reads the server's frames one at a time."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = b""

    async def send(self, *frames: bytes) -> None:
        await self.stream.send_all(b"".join(frames))

    async def method(self, method, channel: int = 0) -> None:
        await self.send(frame.marshal(method, channel))

    async def publish(self, body: bytes, routing_key: str = "q", channel: int = 1) -> None:
        await self.send(publish_frames(body, routing_key, channel))

    async def next_frame(self, *, skip_heartbeats: bool = True):
        """The server's next frame as (channel, pamqp frame); None at EOF."""
        while True:
            while len(self.buf) < 7 or len(self.buf) < 8 + struct.unpack_from(">I", self.buf, 3)[0]:
                data = await self.stream.receive_some(1 << 16)
                if not data:
                    assert not self.buf, "EOF inside a frame"
                    return None
                self.buf += data
            size = 8 + struct.unpack_from(">I", self.buf, 3)[0]
            raw, self.buf = self.buf[:size], self.buf[size:]
            _, channel, value = frame.unmarshal(raw)
            if skip_heartbeats and isinstance(value, heartbeat.Heartbeat):
                continue
            return channel, value

    async def expect(self, kind, channel: int | None = None):
        got_channel, value = await self.next_frame()
        assert isinstance(value, kind), f"expected {kind.__name__}, got {value!r}"
        if channel is not None:
            assert got_channel == channel
        return value

    async def eof(self) -> None:
        """Read until the server closes its sending side; only heartbeats may come first."""
        assert await self.next_frame() is None

    async def handshake(self, *, heartbeat_seconds: int = 0, capabilities: dict | None = None) -> None:
        await self.send(PROTOCOL_HEADER)
        await self.expect(commands.Connection.Start)
        await self.method(commands.Connection.StartOk(
            client_properties={"capabilities": capabilities or {}},
            mechanism="PLAIN", response="\0guest\0guest"))
        tune = await self.expect(commands.Connection.Tune)
        await self.method(commands.Connection.TuneOk(
            channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=heartbeat_seconds))
        await self.method(commands.Connection.Open(virtual_host="/"))
        await self.expect(commands.Connection.OpenOk)

    async def open_channel_and_queue(self, queue: str = "q") -> None:
        await self.method(commands.Channel.Open(), 1)
        await self.expect(commands.Channel.OpenOk, 1)
        await self.method(commands.Queue.Declare(queue=queue), 1)
        await self.expect(commands.Queue.DeclareOk, 1)


def publish_frames(body: bytes, routing_key: str = "q", channel: int = 1) -> bytes:
    return (frame.marshal(commands.Basic.Publish(exchange="", routing_key=routing_key), channel)
            + frame.marshal(header.ContentHeader(body_size=len(body)), channel)
            + frame.marshal(pbody.ContentBody(body), channel))


def make_server(**settings) -> BrokerServer:
    # Never serve()d, so its store is never opened (no data directory is touched, there is no
    # committer) and no alarm monitor runs: flow control moves only when a test moves it.
    return BrokerServer(Settings(port=0, data_dir="unused-data-dir", **settings))


def reads_in_lockstep_pair():
    """A stream pair whose server-to-client direction is in lockstep (a send waits until the
    client reads it, as with a client that stopped reading and a full socket buffer) while the
    client's writes are buffered without bound."""
    to_server = trio.testing.memory_stream_one_way_pair()
    to_client = trio.testing.lockstep_stream_one_way_pair()
    return (trio.StapledStream(to_server[0], to_client[1]),
            trio.StapledStream(to_client[0], to_server[1]))


def run(test, stream_pair=trio.testing.memory_stream_pair, **server_settings) -> None:
    """Run ``test(server, client, conn)`` against one ServerConnection on ``stream_pair()``, with
    autojumping virtual time; the connection must have ended (its ``run`` returned) by the time
    the test does, so nothing is left running."""

    async def main() -> None:
        server = make_server(**server_settings)
        client_stream, server_stream = stream_pair()
        conn = ServerConnection(server, server_stream, "memory:1")
        server.connections.add(conn)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.run)
            await test(server, Client(client_stream), conn)
            with trio.fail_after(LINGER_TIMEOUT * 2):
                await conn.done.wait()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def close_client(client: Client) -> None:
    """The client's end of the closing handshake: it sees the server's EOF, then closes its side."""
    await client.eof()
    await client.stream.aclose()


def test_handshake_and_publish_get_round_trip():
    async def test(server, client, conn):
        await client.handshake()
        await client.open_channel_and_queue()
        await client.publish(b"hello")
        await client.method(commands.Basic.Get(queue="q", no_ack=True), 1)
        get_ok = await client.expect(commands.Basic.GetOk, 1)
        assert get_ok.routing_key == "q" and get_ok.message_count == 0
        content = await client.expect(header.ContentHeader, 1)
        assert content.body_size == 5
        assert (await client.expect(pbody.ContentBody, 1)).value == b"hello"
        await client.method(commands.Basic.Get(queue="q", no_ack=True), 1)
        await client.expect(commands.Basic.GetEmpty, 1)
        assert conn.protocol.user.name == "guest"
        await client.method(commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        await client.expect(commands.Connection.CloseOk)
        await close_client(client)

    run(test)


def test_client_close_gets_close_ok_then_the_server_lingers_until_the_clients_eof():
    async def test(server, client, conn):
        await client.handshake()
        await client.method(commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        await client.expect(commands.Connection.CloseOk)
        # Our last frame is out and our side shut: the client reads EOF...
        await client.eof()
        assert conn.protocol.finished
        # ...but the socket stays open, its input read and dropped, until the client's side ends:
        # frames the client pipelined before seeing close-ok must not turn into a reset.
        await trio.sleep(LINGER_TIMEOUT / 2)
        assert not conn.done.is_set()
        await client.method(commands.Channel.Open(), 1)
        await trio.testing.wait_all_tasks_blocked()
        assert not conn.done.is_set()
        started = trio.current_time()
        await client.stream.aclose()
        await conn.done.wait()
        assert trio.current_time() == started
        assert conn.protocol.close_reason == "closed by client"

    run(test)


def test_lingering_is_bounded_when_the_client_never_closes_its_side():
    async def test(server, client, conn):
        await client.handshake()
        await client.method(commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        await client.expect(commands.Connection.CloseOk)
        await client.eof()
        started = trio.current_time()
        await conn.done.wait()
        assert LINGER_TIMEOUT <= trio.current_time() - started <= LINGER_TIMEOUT + 1

    run(test)


def test_missed_heartbeats_close_the_connection():
    async def test(server, client, conn):
        await client.handshake(heartbeat_seconds=2)
        opened = trio.current_time()
        # The client goes silent; the server keeps sending heartbeats, then gives up after two
        # intervals without a byte from the client (spec 4.2.7).
        _, value = await client.next_frame(skip_heartbeats=False)
        assert isinstance(value, heartbeat.Heartbeat)
        await conn.done.wait()
        assert 4 < trio.current_time() - opened <= 6
        assert conn.protocol.close_reason == "missed heartbeats"
        # Dropped outright, no connection.close: the peer is taken for dead.
        await client.eof()

    run(test)


def test_heartbeats_from_the_client_keep_the_connection():
    async def test(server, client, conn):
        await client.handshake(heartbeat_seconds=2)
        for _ in range(10):
            await trio.sleep(1)
            await client.send(frame.marshal(heartbeat.Heartbeat(), 0))
        assert not conn.done.is_set()
        await client.method(commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        await client.expect(commands.Connection.CloseOk)
        await close_client(client)

    run(test)


def test_handshake_timeout():
    async def test(server, client, conn):
        await client.send(PROTOCOL_HEADER)
        await client.expect(commands.Connection.Start)
        # No start-ok: the connection is dropped once the handshake took HANDSHAKE_TIMEOUT.
        await conn.done.wait()
        assert HANDSHAKE_TIMEOUT < trio.current_time() <= HANDSHAKE_TIMEOUT + 1
        assert conn.protocol.close_reason == "handshake timeout"
        await client.eof()

    run(test)


def test_flow_control_holds_a_publisher_tells_it_blocked_and_resumes_it():
    async def test(server, client, conn):
        await client.handshake(capabilities={"connection.blocked": True})
        await client.open_channel_and_queue()
        queue = server.broker.vhosts["/"].queues["q"]
        server.flow.block("memory")
        # A connection that does not publish is neither held nor told (RabbitMQ)...
        await client.method(commands.Basic.Get(queue="q", no_ack=True), 1)
        await client.expect(commands.Basic.GetEmpty, 1)
        # ...one that publishes is told, and its publish waits unread.
        await client.publish(b"held")
        blocked = await client.expect(commands.Connection.Blocked, 0)
        assert blocked.reason == "low on memory"
        # (Less than HELD_CHECK_INTERVAL, so that a memory stream's missing socket is not polled.)
        await trio.sleep(server_connection.HELD_CHECK_INTERVAL / 2)
        assert len(queue.buffer) == 0
        server.flow.unblock("memory")
        await client.expect(commands.Connection.Unblocked, 0)
        await client.method(commands.Basic.Get(queue="q", no_ack=True), 1)
        await client.expect(commands.Basic.GetOk, 1)
        await client.expect(header.ContentHeader, 1)
        assert (await client.expect(pbody.ContentBody, 1)).value == b"held"
        await client.method(commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        await client.expect(commands.Connection.CloseOk)
        await close_client(client)

    run(test)


def test_output_above_the_high_water_mark_stops_the_reads():
    async def test(server, client, conn):
        # Heartbeats on: a connection that does not read is not timed out for the client's
        # heartbeats waiting unread.
        await client.handshake(heartbeat_seconds=2)
        await client.open_channel_and_queue("q")
        await client.method(commands.Queue.Declare(queue="r"), 1)
        await client.expect(commands.Queue.DeclareOk, 1)
        queues = server.broker.vhosts["/"].queues
        body = b"x" * 8000  # below LARGE_BODY: everything goes through send_all
        count = 3 * WRITE_HIGH_WATER // len(body)
        for _ in range(count):
            await client.publish(body, "q")
        await trio.testing.wait_all_tasks_blocked()
        assert len(queues["q"].buffer) == count
        # A pipeline of basic.get the client does not read the answers of: the server answers
        # until its output passes the high-water mark (the writer is stuck sending the first
        # answers), then waits for the output to drain before it reads on.
        await client.send(frame.marshal(commands.Basic.Get(queue="q", no_ack=True), 1) * count)
        await trio.testing.wait_all_tasks_blocked()
        served = count - len(queues["q"].buffer)
        assert WRITE_HIGH_WATER // 2 < served * len(body) < 2 * WRITE_HIGH_WATER
        # What the client sends now is not read, however long it waits (many heartbeat
        # intervals: the connection is not taken for dead meanwhile).
        await client.publish(b"later", "r")
        await trio.sleep(10)
        assert count - len(queues["q"].buffer) == served
        assert len(queues["r"].buffer) == 0
        # Once the client reads, every get is answered and the rest of its input is read.
        for _ in range(count):
            await client.expect(commands.Basic.GetOk, 1)
            await client.expect(header.ContentHeader, 1)
            assert (await client.expect(pbody.ContentBody, 1)).value == body
        await client.method(commands.Basic.Get(queue="r", no_ack=True), 1)
        await client.expect(commands.Basic.GetOk, 1)
        await client.expect(header.ContentHeader, 1)
        assert (await client.expect(pbody.ContentBody, 1)).value == b"later"
        await client.method(commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        await client.expect(commands.Connection.CloseOk)
        await close_client(client)

    run(test, reads_in_lockstep_pair)
