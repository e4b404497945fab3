"""One client socket: a reader task, a writer task and a heartbeat timer around a sans-IO
:class:`~amqp_broker.protocol.connection.Connection`.

Reads are batched (one ``receive_some`` handles every complete frame in it) and writes are
batched (everything produced meanwhile — replies, deliveries written by other connections'
publishers, confirms — goes out in one ``send_all``), per README.md "Design", "Hot path without
task switches".

Closing is RabbitMQ's handshake at the socket (rabbit_reader's ``closed`` state): once the
protocol is finished and our last frame (close-ok, connection.close, a refused login's silence) is
flushed, we shut down our sending side and keep reading, discarding, until the client closes its
side. Closing outright with the client's pipelined frames unread would make the kernel answer them
with a reset, which a client sees as EPIPE/ECONNRESET and may lose our last frame to.
"""

from __future__ import annotations

import logging
import os
import select
from typing import TYPE_CHECKING

import trio

from ..errors import INTERNAL_ERROR
from ..protocol.output import WRITE_LOW_WATER
from ..protocol.connection import CLOSING, OPEN
from ..protocol.strict import connection_class

if TYPE_CHECKING:  # pragma: no cover
    from ..protocol.sasl import ExternalIdentity
    from .flow import FlowControl
    from .listener import BrokerServer

log = logging.getLogger("amqp_broker.server")

# One read takes up to this many bytes: large enough for a 128 KiB frame plus the next ones, so a
# busy publisher costs one syscall per many messages.
RECEIVE_SIZE = 1 << 18
# While the reads end inside frames at least LARGE_FRAME long (large messages), reads take up to
# LARGE_RECEIVE_SIZE: a 256 KiB read holds only four 64 KiB messages, so each one paid a quarter
# of a read's event-loop round trip and of a send, and one in four was cut and assembled. With
# 1 MiB reads a 64 KiB message costs ~46 us of broker CPU instead of ~55 (scenario c, alternating
# runs). Small messages keep 256 KiB reads: one holds ~3,000 16-byte messages already, and 1 MiB
# of them ran 40% slower per message in-process (the consumer's output passes its 1 MiB high-water
# mark within the read, so deliveries detour through the queue).
LARGE_FRAME = 1 << 15
LARGE_RECEIVE_SIZE = 1 << 20
# A client that has not finished the handshake by then is dropped (RabbitMQ's handshake_timeout).
HANDSHAKE_TIMEOUT = 10.0
# Buffers per sendmsg call: well under the kernel's IOV_MAX (1024).
SENDMSG_MAX_BUFFERS = 512
# How long we wait for close-ok after sending connection.close before dropping the socket.
CLOSE_OK_TIMEOUT = 3.0
# After our last frame, how long we read and discard until the client closes its side (RabbitMQ's
# CLOSING_TIMEOUT). Shutdown does not wait that long: it drops what is left after SHUTDOWN_GRACE.
LINGER_TIMEOUT = 30.0
# Discarded input is read in chunks this large.
DISCARD_SIZE = 1 << 16
# How often a connection held by flow control is checked for a client that hung up.
HELD_CHECK_INTERVAL = 0.5
_HANGUP_EVENTS = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR


class ServerConnection:
    """Runs one accepted socket until either side closes it."""

    def __init__(self, server: "BrokerServer", stream: trio.abc.Stream, peer: str, local: str = "",
                 external: "ExternalIdentity | None" = None):
        self.server = server
        self.stream = stream
        self.peer = peer
        self.local = local
        # RabbitMQ's connection name, as the management API and the control CLI show it.
        self.name = f"{peer} -> {local}" if local else peer
        # Set while this connection's frames are traced (server/trace.py); the reader and the
        # writer test it once per batch.
        self.tracer = None
        settings = server.settings
        strict = {"strict": settings.strict} if settings.strict != "off" else {}
        self.protocol = connection_class(settings.strict)(
            server.broker,
            peer,
            heartbeat=settings.heartbeat,
            frame_max=settings.frame_max,
            channel_max=settings.channel_max,
            max_message_size=settings.max_message_size,
            cluster_name=server.cluster_name,
            identity=server.identity,
            local=local,
            **strict,
            external=external,
        )
        self.protocol.output.on_output = self._on_output
        self.protocol.on_force_close = self.force_close
        self._wakeup = trio.Event()
        # True while the writer waits for output: then, and only then, a reader that has just
        # written into this output may send it itself (_send_or_wake).
        self._writer_idle = False
        # The socket's descriptor for those sends; -1 where the stream is not a plain socket (TLS).
        self._direct_fd = stream.socket.fileno() if type(stream) is trio.SocketStream else -1
        now = trio.current_time()
        self.last_receive = now
        self.last_send = now
        self.done = trio.Event()
        # Fault injection (server/faults.py): None unless a fault is armed, so that the reader,
        # writer and timer pay one attribute test per batch for it.
        self.fault_hook = server.faults.hook_for(self)
        # Set once the client's side is closed (EOF) or broken: nothing more will be read.
        self._input_closed = trio.Event()
        # True once a send failed: the peer is gone, there is nothing to linger for.
        self._send_failed = False
        # The reader's wait while flow control holds publishers (cancelled when we close). While
        # it, or the wait for output to drain (_drained), lasts, the client is not silent, we are
        # not listening: missed heartbeats are not counted (RabbitMQ pauses its heartbeat
        # monitor while a connection is blocked).
        self._held: trio.CancelScope | None = None
        # Set while the reader waits for the output to drain (see _reader).
        self._drained: trio.Event | None = None

    @property
    def raw_socket(self) -> trio.socket.SocketType:
        """The TCP socket under the stream."""
        return self.stream.socket

    def _wake(self) -> None:
        self._wakeup.set()

    def _on_output(self) -> None:
        """The output went from empty to not: while a reader is handling input (see
        :meth:`_handle_input`) this connection waits for it to finish; otherwise the writer is
        woken now."""
        woken = self.server.woken_outputs
        if woken is None:
            self._wakeup.set()
        else:
            woken.append(self)

    def _send_or_wake(self) -> None:
        """Send the output from the calling reader's task if the writer is idle and nothing stands
        in the way of a plain write; otherwise (or for what the socket did not take) wake the
        writer. A publish's delivery then leaves in the same scheduler step as the publish
        arrived, without a round through the scheduler to the consumer's writer; still one send
        per connection per read."""
        output = self.protocol.output
        buf = output.buf
        if not (self._writer_idle and buf and self._direct_fd >= 0 and not output.pieces
                and not output.barrier and self.fault_hook is None and self.tracer is None):
            self._wakeup.set()
            return
        try:
            sent = os.write(self._direct_fd, buf)
        except OSError:
            # Full (BlockingIOError): the writer sends it once the socket takes more. Broken:
            # the writer meets the error again and ends the connection.
            sent = 0
        if sent:
            if sent == len(buf):
                buf.clear()
            else:
                del buf[:sent]
            self._sent()
        if output.pending() or self.protocol.finished:
            self._wakeup.set()

    async def run(self) -> None:
        """Serve the connection; returns once the socket is closed."""
        log.info("accepting AMQP connection (%s)", self.peer)
        self.server.tracing.accepted(self)
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
            # A refused login's end is in its (rate-limited) refusal line already.
            log.log(logging.DEBUG if self.protocol.login_refused else logging.INFO,
                    "closing AMQP connection (%s): %s", self.peer, reason)
            if self.tracer is not None:
                self.server.tracing.closed(self, reason)
            self.done.set()

    async def _reader(self) -> None:
        protocol = self.protocol
        server = self.server
        flow = server.flow
        receive = self.stream.receive_some
        size = RECEIVE_SIZE
        hold = None  # what the protocol was told to do with publishes (flow.hold when told)
        try:
            while not protocol.finished:
                if protocol.output.full():
                    # Not read on while our replies are not read: the client's requests wait in
                    # its socket, not in our memory.
                    await self._output_drained()
                    continue
                data = await receive(size)
                if not data:
                    break
                if self.tracer is not None:
                    self.tracer.received(data)
                self.last_receive = trio.current_time()
                if protocol.publishing:
                    server.check_store_backlog()
                if flow.hold != hold:
                    hold = flow.hold
                    protocol.set_publish_hold(hold)
                hook = self.fault_hook
                if not self._handle_input(protocol.receive_data if hook is None else hook.receive, data):
                    continue
                while protocol.held_input is not None:
                    # Input waits at a method while the output is full, or at a publish while
                    # publishers must wait (RabbitMQ stops reading such a connection). A closing
                    # connection is never held: its close-ok must be read.
                    if protocol.output.full():
                        await self._output_drained()
                    elif protocol.state < CLOSING:
                        with trio.CancelScope() as self._held:
                            await self._wait_held(flow)
                        self._held = None
                    if flow.hold != hold:
                        hold = flow.hold
                        protocol.set_publish_hold(hold)
                    if not self._handle_input(protocol.resume_input):
                        break
                size = receive_size(protocol.partial_frame_size())
            else:
                # Finished: whatever the client still sends (frames it wrote before seeing our
                # close or close-ok) is read and dropped until it closes its side.
                while data := await receive(DISCARD_SIZE):
                    if self.tracer is not None:
                        self.tracer.received(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        self._input_closed.set()
        if not protocol.finished:
            protocol.connection_lost("client unexpectedly closed TCP connection")
        self._wake()

    async def _wait_held(self, flow: "FlowControl") -> None:
        """Wait for publishers to be let go; raises BrokenResourceError if the client hangs up
        meanwhile. A held connection is not read, so its end would otherwise go unnoticed, and
        what it held (a half-received body, say) would keep the alarm that holds it alive."""
        while flow.active:
            with trio.move_on_after(HELD_CHECK_INTERVAL):
                await flow.wait()
            if flow.active and peer_hung_up(self.raw_socket):
                raise trio.BrokenResourceError("client closed the connection while held")

    def _handle_input(self, handler, *args) -> bool:
        """:meth:`_handle`, with the outputs it writes to sent (or their writers woken) once it
        returns, not as each is first written to."""
        server = self.server
        if server.woken_outputs is not None:  # already inside another reader's handling
            return self._handle(handler, *args)
        server.woken_outputs = woken = []
        try:
            return self._handle(handler, *args)
        finally:
            server.woken_outputs = None
            for conn in woken:
                conn._send_or_wake()

    def _handle(self, handler, *args) -> bool:
        """Run a protocol input handler; False when a bug in it ended the connection."""
        protocol = self.protocol
        try:
            handler(*args)
            return True
        except Exception:  # a bug must cost one connection, never the broker
            log.exception("%s: internal error handling input", self.peer)
            protocol.close(INTERNAL_ERROR, "INTERNAL_ERROR - internal error")
            protocol.connection_lost()
            protocol.output.on_output()
            return False

    async def _output_drained(self) -> None:
        """Wait until the writer has brought the output below WRITE_LOW_WATER."""
        self._drained = trio.Event()
        await self._drained.wait()

    async def _writer(self) -> None:
        protocol = self.protocol
        output = protocol.output
        send_all = self.stream.send_all
        spare = bytearray()
        try:
            while True:
                if not output.pending():
                    if protocol.finished:
                        return
                    self._writer_idle = True
                    try:
                        await self._wakeup.wait()
                    finally:
                        self._writer_idle = False
                    self._wakeup = trio.Event()
                    continue
                hook = self.fault_hook
                if hook is not None and hook.silent:
                    await hook.quiet()
                    if hook.silent:
                        return  # silenced to the end: the client hung up
                    continue
                barrier = output.barrier
                if barrier:
                    committer = self.server.committer
                    if committer is not None:
                        await committer.wait_committed(barrier)
                    output.barrier_passed(barrier)
                if output.pieces:
                    pieces = output.take()
                    if self.tracer is not None:
                        self.tracer.sent(pieces)
                    await self._send_pieces(pieces)
                else:
                    buf = output.swap(spare)
                    if self.tracer is not None:
                        self.tracer.sent((buf,))
                    await send_all(buf)
                    buf.clear()
                    spare = buf
                self._sent()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._send_failed = True
            protocol.connection_lost()

    def _sent(self) -> None:
        """Output went out: resume what waited for it to drain."""
        self.last_send = trio.current_time()
        self.protocol.writer_drained()
        drained = self._drained
        if drained is not None and self.protocol.output.size() < WRITE_LOW_WATER:
            self._drained = None
            drained.set()

    async def _linger(self) -> None:
        """Our last frame is out: send FIN and wait (reading and discarding) for the client's,
        unless its side is closed or broken already. A dead peer never gets here: missed
        heartbeats, the handshake timeout and the close-ok timeout cancel the whole connection."""
        if self._send_failed or self._input_closed.is_set():
            return
        try:
            await self.stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        with trio.move_on_after(LINGER_TIMEOUT):
            await self._input_closed.wait()

    async def _send_pieces(self, pieces: list) -> None:
        """Send buffers in order with sendmsg (a gather write), resuming after partial sends."""
        sock = self.stream.socket
        views = [memoryview(piece) for piece in pieces if len(piece)]
        while views:
            sent = await sock.sendmsg(views[:SENDMSG_MAX_BUFFERS])
            while sent:
                first = views[0]
                if sent >= len(first):
                    sent -= len(first)
                    views.pop(0)
                else:
                    views[0] = first[sent:]
                    sent = 0

    async def _timer(self, cancel_scope: trio.CancelScope) -> None:
        protocol = self.protocol
        started = trio.current_time()
        closing_since = None
        finished_since = None
        while True:
            if protocol.heartbeat:
                interval = max(protocol.heartbeat / 2, 0.5)
            else:
                interval = 1.0 if protocol.state != OPEN else 5.0
            await trio.sleep(interval)
            now = trio.current_time()
            # Giving up cancels the whole connection: the writer may be stuck in send_all() to a
            # peer that stopped reading, and would otherwise hold the socket until TCP gives up.
            if protocol.state < OPEN and now - started > HANDSHAKE_TIMEOUT:
                protocol.connection_lost("handshake timeout")
                cancel_scope.cancel()
                return
            if protocol.close_reason and not protocol.finished:
                closing_since = closing_since or now
                if now - closing_since > CLOSE_OK_TIMEOUT:
                    protocol.connection_lost()
                    cancel_scope.cancel()
                    return
            if protocol.finished:
                # Flushing our last frames plus lingering is bounded too: a peer that reads
                # nothing would hold the writer (and the socket) forever.
                finished_since = finished_since or now
                if now - finished_since > LINGER_TIMEOUT:
                    cancel_scope.cancel()
                    return
            if self._held is not None or self._drained is not None:
                self.last_receive = now  # we are not reading: the client's heartbeats wait unread
            hook = self.fault_hook
            idle_send = 0.0 if hook is not None and hook.no_heartbeats else now - self.last_send
            if not protocol.heartbeat_tick(now - self.last_receive, idle_send):
                cancel_scope.cancel()
                return

    def force_close(self, reply_text: str) -> None:
        """Shutdown: send 320 CONNECTION_FORCED and let the writer flush it."""
        from ..errors import CONNECTION_FORCED

        protocol = self.protocol
        if protocol.state == OPEN:
            protocol.close(CONNECTION_FORCED, reply_text)
        else:
            protocol.connection_lost()
        if self._held is not None:
            self._held.cancel()  # a publisher held by flow control must read its close-ok
        self._wake()


def peer_hung_up(sock: trio.socket.SocketType) -> bool:
    """Whether the peer closed or reset the connection, whatever input is still unread (poll's
    POLLRDHUP, where the OS has it; elsewhere only a reset shows)."""
    poller = select.poll()
    poller.register(sock.fileno(), _HANGUP_EVENTS)
    return bool(poller.poll(0))


def receive_size(partial_frame_size: int) -> int:
    """How much the next read takes, given the size of the frame the last one ended inside."""
    return LARGE_RECEIVE_SIZE if partial_frame_size >= LARGE_FRAME else RECEIVE_SIZE
