"""The STOMP listener: trio sockets around the sans-IO :class:`~.connection.StompConnection`.

One reader task feeds received bytes to the connection, one writer sends what it produced (after
any store commit its output waits for), and a timer drives heart-beats and the login timeout.
Nothing here knows STOMP beyond which calls to make.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..server.connection import HELD_CHECK_INTERVAL, peer_hung_up
from ..server.descriptors import serve_listeners
from ..server.peers import socket_names
from .connection import StompConfig, StompConnection

if TYPE_CHECKING:  # pragma: no cover
    from ..server.listener import BrokerServer

log = logging.getLogger("amqp_broker.stomp")

RECEIVE_SIZE = 1 << 18
# After our last frame (an ERROR that ends the session, a DISCONNECT's RECEIPT), how long we read
# and discard until the client closes its side: closing with its pipelined frames unread would
# make the kernel answer with a reset, which can lose that last frame.
LINGER_TIMEOUT = 5.0
SHUTDOWN_TEXT = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"


def stomp_config(settings) -> StompConfig:
    """The plugin's settings from the broker's (an empty default user means none)."""
    return StompConfig(
        default_login=settings.stomp_default_user or None,
        default_passcode=settings.stomp_default_pass if settings.stomp_default_user else None,
        default_vhost=settings.stomp_default_vhost,
        implicit_connect=bool(settings.stomp_implicit_connect),
        # The AMQP listener's limit on a body, plus room for the headers.
        max_frame=settings.max_message_size + (1 << 16),
    )


class StompService:
    """The STOMP listening sockets and their connections."""

    protocol = "stomp"

    def __init__(self, server: "BrokerServer", listeners: list[trio.SocketListener]):
        self.server = server
        self.listeners = listeners
        self.config = stomp_config(server.settings)
        self.connections: set[StompServerConnection] = set()
        self.addresses = [tuple(listener.socket.getsockname()[:2]) for listener in listeners]

    @classmethod
    async def open(cls, server: "BrokerServer", port: int) -> "StompService":
        """Bind ``port`` (0: any free one) on the broker's interface; OSError when it cannot."""
        listeners = await trio.open_tcp_listeners(port, host=server.settings.bind_host)
        return cls(server, listeners)

    def close(self) -> None:
        for listener in self.listeners:
            listener.socket.close()

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept until cancelled; on cancellation every connection gets the shutdown ERROR."""
        log.info("STOMP listening on %s", ", ".join("%s:%d" % address for address in self.addresses))
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await serve_listeners(self._handle, self.listeners, handler_nursery=nursery)
        finally:
            for listener in self.listeners:
                listener.socket.close()

    def shutdown(self) -> None:
        """Every session gets the ERROR a shutdown sends (see :meth:`wait_closed`)."""
        for conn in list(self.connections):
            conn.protocol.force_close(SHUTDOWN_TEXT)

    async def wait_closed(self) -> None:
        """Return once every connection has flushed its last frames and closed."""
        for conn in list(self.connections):
            await conn.done.wait()

    async def _handle(self, stream: trio.SocketStream) -> None:
        peer, local = socket_names(stream)
        conn = StompServerConnection(self.server, stream, peer, local, self.config)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)


class StompServerConnection:
    """Runs one accepted STOMP socket until either side closes it."""

    def __init__(self, server: "BrokerServer", stream: trio.SocketStream, peer: str, local: str,
                 config: StompConfig):
        self.server = server
        self.stream = stream
        self.peer = peer
        self.protocol = StompConnection(server.broker, peer, local, config)
        self.protocol.output.on_output = self._wake
        self._wakeup = trio.Event()
        now = trio.current_time()
        self.started = now
        self.last_receive = now
        self.last_send = now
        self._input_closed = trio.Event()
        # Set once the socket is closed.
        self.done = trio.Event()
        self._drained: trio.Event | None = None
        # True while the reader holds a publisher for flow control: the client is not silent,
        # we are not reading (heart-beats are not counted meanwhile, as RabbitMQ pauses them).
        self._held = False
        self._send_failed = False

    def _wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        log.info("accepting STOMP connection (%s)", self.peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._timer, nursery.cancel_scope)
                nursery.start_soon(self._reader)
                await self._writer()
                await self._linger()
                nursery.cancel_scope.cancel()
        finally:
            self.protocol.connection_lost()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()
            reason = self.protocol.close_reason or "connection closed by client"
            log.info("closing STOMP connection (%s): %s", self.peer, reason)
            self.done.set()

    async def _reader(self) -> None:
        protocol = self.protocol
        flow = self.server.flow
        receive = self.stream.receive_some
        try:
            while not protocol.finished:
                if protocol.output.full():
                    # Not read on while our output is not read: the client's frames wait in its
                    # socket, not in our memory.
                    self._drained = trio.Event()
                    await self._drained.wait()
                    continue
                data = await receive(RECEIVE_SIZE)
                if not data:
                    break
                self.last_receive = trio.current_time()
                protocol.published = False
                try:
                    protocol.receive_data(data)
                except Exception:  # a bug must cost one connection, never the broker
                    log.exception("%s: internal error handling STOMP input", self.peer)
                    protocol.connection_lost("internal error")
                    self._wake()
                    break
                if protocol.published:
                    self.server.check_store_backlog()
                    if flow.active and not protocol.finished:
                        # A publisher is not read while publishers must wait (RabbitMQ blocks a
                        # STOMP connection after its SEND in the same way).
                        self._held = True
                        try:
                            await self._wait_held(flow)
                        finally:
                            self._held = False
            else:
                while await receive(RECEIVE_SIZE):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        self._input_closed.set()
        if not protocol.finished:
            protocol.connection_lost("client unexpectedly closed TCP connection")
        self._wake()

    async def _wait_held(self, flow) -> None:
        """Wait for publishers to be let go; raises BrokenResourceError if the client hangs up
        meanwhile (a held connection is not read, so its end would otherwise go unnoticed)."""
        while flow.active:
            with trio.move_on_after(HELD_CHECK_INTERVAL):
                await flow.wait()
            if flow.active and peer_hung_up(self.stream.socket):
                raise trio.BrokenResourceError("client closed the connection while held")

    async def _writer(self) -> None:
        protocol = self.protocol
        output = protocol.output
        send_all = self.stream.send_all
        try:
            while True:
                if not output.pending():
                    if protocol.finished:
                        return
                    await self._wakeup.wait()
                    self._wakeup = trio.Event()
                    continue
                barrier = output.barrier
                if barrier:
                    committer = self.server.committer
                    if committer is not None:
                        await committer.wait_committed(barrier)
                    output.barrier_passed(barrier)
                pieces = output.take()
                for piece in pieces:
                    if piece:
                        await send_all(piece)
                self.last_send = trio.current_time()
                protocol.writer_drained()
                drained = self._drained
                if drained is not None and not output.full():
                    self._drained = None
                    drained.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._send_failed = True
            protocol.connection_lost()

    async def _linger(self) -> None:
        if self._send_failed or self._input_closed.is_set():
            return
        try:
            await self.stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        with trio.move_on_after(LINGER_TIMEOUT):
            await self._input_closed.wait()

    async def _timer(self, cancel_scope: trio.CancelScope) -> None:
        protocol = self.protocol
        finished_since = None
        while True:
            intervals = [i for i in (protocol.send_heartbeat, protocol.receive_heartbeat) if i]
            await trio.sleep(min(intervals) / 2 if intervals else 1.0)
            now = trio.current_time()
            if protocol.finished:
                # Flushing the last frames and lingering are bounded: a peer that reads nothing
                # would hold the writer (and the socket) forever.
                finished_since = finished_since or now
                if now - finished_since > LINGER_TIMEOUT:
                    cancel_scope.cancel()
                    return
            if self._drained is not None or self._held:
                self.last_receive = now  # we are not reading: the client's heart-beats wait unread
            if not protocol.heartbeat_tick(now - self.last_receive, now - self.last_send, now - self.started):
                cancel_scope.cancel()
                return
