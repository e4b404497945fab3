"""The MQTT listener: sockets and clocks around :class:`~amqp_broker.mqtt.connection.MqttConnection`.

One task reads, one writes, one watches the keep-alive. The state machine decides everything
else; this module only moves bytes and time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..server.connection import HELD_CHECK_INTERVAL, peer_hung_up
from ..server.descriptors import serve_listeners
from ..server.peers import socket_names
from .connection import LOGIN_TIMEOUT, MqttConnection, MqttNode

if TYPE_CHECKING:  # pragma: no cover
    from ..server.listener import BrokerServer

log = logging.getLogger("amqp_broker.mqtt")

RECEIVE_SIZE = 1 << 16
#: How long a connection that ended may take to flush its last packets (a CONNACK refusal).
FLUSH_TIMEOUT = 5.0


class MqttServer:
    """The MQTT side of a broker: its node state, listening sockets and live connections.

    To the listener it looks like one of the HTTP services (``protocol``, ``addresses``,
    ``serve``, ``close``), so that it is started, listed and stopped the same way."""

    protocol = "mqtt"
    name = "MQTT listener"

    def __init__(self, server: "BrokerServer"):
        # The broker process: its core, settings, store committer and flow control.
        self.host = server
        settings = server.settings
        self.node = MqttNode(
            server.broker, settings.mqtt_vhost, settings.mqtt_exchange,
            settings.mqtt_default_user, settings.mqtt_default_pass,
        )
        self.connections: set[_Socket] = set()
        self.listeners: list[trio.SocketListener] = []
        self.server = self  # the HTTP services' server.name, for the start-up log line

    async def open(self, host: str | None, port: int) -> "MqttServer":
        """Bind the listening sockets (OSError when the port is taken)."""
        self.listeners = await trio.open_tcp_listeners(port, host=host)
        return self

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [tuple(listener.socket.getsockname()[:2]) for listener in self.listeners]  # type: ignore[misc]

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept MQTT clients until cancelled."""
        if self.host.store is not None:
            self.node.attach_store(self.host.store)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await serve_listeners(self._handle, self.listeners, handler_nursery=nursery)
        finally:
            self.close()

    def close(self) -> None:
        for listener in self.listeners:
            listener.socket.close()

    def close_all(self) -> None:
        """Shutdown: end every connection (MQTT 3.1.1 has no way to tell a client why)."""
        for sock in list(self.connections):
            sock.protocol.close("broker shutdown")

    async def _handle(self, stream: trio.SocketStream) -> None:
        peer, local = socket_names(stream)
        sock = _Socket(MqttConnection(self.node, peer, local), stream, self.host)
        self.connections.add(sock)
        try:
            await sock.run()
        finally:
            self.connections.discard(sock)


class _Socket:
    def __init__(self, protocol: MqttConnection, stream: trio.SocketStream, host: "BrokerServer"):
        self.protocol = protocol
        self.host = host
        # True while the reader waits for flow control: the client is not silent, we are not
        # listening (RabbitMQ pauses the keep-alive monitor of a blocked MQTT connection).
        self.held = False
        self.stream = stream
        self.wakeup = trio.Event()
        self.last_receive = trio.current_time()
        self.logged_in = trio.Event()
        protocol.on_output = self._wake
        protocol.on_close = self._wake

    def _wake(self) -> None:
        self.wakeup.set()

    async def run(self) -> None:
        protocol = self.protocol
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader)
                nursery.start_soon(self._keepalive)
                await self._writer()
                nursery.cancel_scope.cancel()
        finally:
            protocol.connection_lost()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()
            if protocol.session is not None:
                log.info("closing MQTT connection (%s): %s", protocol.peer,
                         protocol.close_reason or "connection closed by client")

    async def _reader(self) -> None:
        protocol = self.protocol
        flow = self.host.flow
        try:
            while not protocol.finished:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    break
                self.last_receive = trio.current_time()
                if flow.active and protocol.session is not None:
                    # An alarm (memory, disk, the store's backlog): as RabbitMQ blocks an MQTT
                    # connection, what was read waits, and nothing more is read, until it clears.
                    self.held = True
                    while flow.active:
                        with trio.move_on_after(HELD_CHECK_INTERVAL):
                            await flow.wait()
                        if flow.active and peer_hung_up(self.stream.socket):
                            # Gone while held: its will goes out now, not when the alarm clears.
                            raise trio.BrokenResourceError("client hung up while held")
                    self.held = False
                    self.last_receive = trio.current_time()
                try:
                    protocol.receive(data)
                except Exception:  # a bug must cost one connection, never the broker
                    log.exception("%s: internal error handling MQTT input", protocol.peer)
                    protocol.close("internal error")
                if protocol.session is not None:
                    self.logged_in.set()
                    self.host.check_store_backlog()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        if not protocol.finished:
            protocol.connection_lost()  # the will goes out
        self._wake()

    async def _writer(self) -> None:
        protocol = self.protocol
        try:
            while True:
                protocol.service()
                barrier = protocol.barrier
                if barrier and protocol.out:
                    committer = self.host.committer
                    if committer is not None:
                        await committer.wait_committed(barrier)
                    if protocol.barrier == barrier:
                        protocol.barrier = 0
                if protocol.out:
                    data = protocol.take_output()
                    if protocol.finished:
                        # The last packets (a refusing CONNACK): bounded, the client may not read.
                        with trio.move_on_after(FLUSH_TIMEOUT):
                            await self.stream.send_all(data)
                        return
                    await self.stream.send_all(data)
                    protocol.drained()
                    continue
                if protocol.finished:
                    return
                await self.wakeup.wait()
                self.wakeup = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            protocol.connection_lost()

    async def _keepalive(self) -> None:
        """The login timeout, then the keep-alive: a client silent for 1.5 times its keep-alive
        (MQTT 3.1.1, 3.1.2.10) is gone."""
        protocol = self.protocol
        with trio.move_on_after(LOGIN_TIMEOUT):
            await self.logged_in.wait()
        if protocol.session is None:
            if not protocol.finished:
                log.error("closing MQTT connection %s (login timeout)", protocol.peer)
                protocol.close("login timeout")
            return
        keep_alive = protocol.keep_alive
        if not keep_alive:
            return
        limit = keep_alive * 1.5
        while not protocol.finished:
            if self.held:
                self.last_receive = trio.current_time()
            silent = trio.current_time() - self.last_receive
            if silent >= limit:
                protocol.keepalive_expired()
                self._wake()
                return
            await trio.sleep(limit - silent)
