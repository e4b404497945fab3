"""A small HTTP/1.1 server: h11 for the protocol, trio for the sockets, one synchronous app.

The app is a plain function ``app(request) -> Response`` called on the broker's event loop with
the whole request (head and body) already read, so it sees broker state at one instant and never
waits on a client. Everything that could let one HTTP client hurt the broker is decided here:

* every wait on the client has a deadline: the next request on a kept-alive connection
  (:attr:`Limits.idle_timeout`), a request head (:attr:`Limits.head_timeout`, so a client dripping
  header bytes cannot hold a connection), each read of a body and each write of a response
  (:attr:`Limits.io_timeout`);
* a body larger than :attr:`Limits.max_body` is refused (400, RabbitMQ's text) before it is read
  when the client announces its length, and as soon as it passes the limit otherwise;
* malformed HTTP gets a 400 and the connection is closed; an exception in the app gets a 500 and
  a log line, never more;
* at most :attr:`Limits.max_connections` connections at once; the next ones are closed on accept,
  so HTTP clients cannot take the descriptors AMQP clients need.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Callable
from urllib.parse import parse_qsl

import h11
import trio

from ..server.descriptors import serve_listeners

log = logging.getLogger("amqp_broker.management")

#: Bytes asked of the socket per read.
RECEIVE_SIZE = 1 << 16
#: RabbitMQ's text for a body over the limit (rabbit_mgmt_util:with_decode).
BODY_TOO_LARGE = "Exceeded HTTP request body size limit"
#: After our last response on a connection: how long, and how many bytes, we read and discard
#: until the client closes its side. Closing with its data unread would make the kernel answer
#: with a reset, which can destroy our last response before the client reads it.
LINGER_TIMEOUT = 2.0
LINGER_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one HTTP client may cost."""

    #: Largest request body in bytes (definitions files are the large ones).
    max_body: int = 64 * 1024 * 1024
    #: Largest request head (request line and headers) in bytes.
    max_head: int = 64 * 1024
    #: Seconds a kept-alive connection may wait for its next request.
    idle_timeout: float = 60.0
    #: Seconds from a request's first byte to the end of its head.
    head_timeout: float = 30.0
    #: Seconds any one read of a body or write of a response may take.
    io_timeout: float = 30.0
    #: Connections served at once; more are closed as soon as they are accepted.
    max_connections: int = 512


@dataclasses.dataclass
class Request:
    """One HTTP request, read in full."""

    method: str
    #: The path as sent, still percent-encoded (a vhost "/" arrives as "%2F" and must stay one
    #: segment).
    path: str
    #: Query parameters, decoded; the last of repeated names wins.
    query: dict[str, str]
    #: Header names in lower case; repeated headers joined with ", ".
    headers: dict[str, str]
    body: bytes
    peer: str = ""


@dataclasses.dataclass
class Response:
    """An HTTP response; ``headers`` are (name, value) pairs added to the framing ones."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
             ) -> "Response":
        """``value`` as compact JSON (``application/json``)."""
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate some client sent: escape it, stay valid JSON
            body = json.dumps(value, separators=(",", ":")).encode("ascii")
        return cls(status, body, [("content-type", "application/json"), *(headers or [])])

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8"
             ) -> "Response":
        return cls(status, text.encode("utf-8"), [("content-type", content_type)])


App = Callable[[Request], Response]


class _Closed(Exception):
    """The connection is over (closed by the client, timed out, or unusable)."""


class HttpServer:
    """Serves ``app`` on listeners, within :class:`Limits`."""

    def __init__(self, app: App, limits: Limits | None = None, *, name: str = "http"):
        self.app = app
        self.limits = limits or Limits()
        self.name = name
        self.connections = 0

    async def serve(self, listeners: list[trio.SocketListener], *,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept and serve connections until cancelled."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            await serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self.connections >= self.limits.max_connections:
            await trio.aclose_forcefully(stream)
            return
        self.connections += 1
        try:
            peer = _peer(stream)
            await _Connection(self, stream, peer).run()
        except Exception:  # never let one client's connection take the server down
            log.exception("%s: connection failed", self.name)
        finally:
            self.connections -= 1
            await trio.aclose_forcefully(stream)


class _Connection:
    def __init__(self, server: HttpServer, stream: trio.SocketStream, peer: str):
        self.server = server
        self.limits = server.limits
        self.stream = stream
        self.peer = peer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head)

    async def run(self) -> None:
        await self._serve()
        await self._linger()

    async def _linger(self) -> None:
        with trio.move_on_after(LINGER_TIMEOUT):
            try:
                await self.stream.send_eof()
                discarded = 0
                while discarded < LINGER_BYTES:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                    if not data:
                        return
                    discarded += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return

    async def _serve(self) -> None:
        try:
            while True:
                request = await self._read_request()
                if request is None:
                    return
                await self._respond(request.method, self._call(request))
                if self.h11.our_state is h11.MUST_CLOSE:
                    return
                self.h11.start_next_cycle()
        except _Closed:
            return
        except h11.RemoteProtocolError as exc:
            if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                response = Response.json({"error": "bad_request", "reason": str(exc) or "bad request"},
                                         exc.error_status_hint)
                try:
                    await self._send(response, head_only=False, close=True)
                except (_Closed, h11.LocalProtocolError):
                    pass

    def _call(self, request: Request) -> Response:
        try:
            return self.server.app(request)
        except Exception:
            log.exception("%s: %s %s failed", self.server.name, request.method, request.path)
            return Response.json({"error": "internal_server_error", "reason": "internal error"}, 500)

    async def _receive(self, deadline: float) -> bytes:
        """The next bytes from the client (b"" at its end); _Closed when ``deadline`` passes."""
        with trio.move_on_at(deadline):
            try:
                return await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise _Closed from None
        raise _Closed

    async def _next_event(self, deadline: float) -> Any:
        while (event := self.h11.next_event()) is h11.NEED_DATA:
            self.h11.receive_data(await self._receive(deadline))
        return event

    async def _read_request(self) -> Request | None:
        limits = self.limits
        # The first byte of the next request may take idle_timeout; the rest of its head must
        # follow within head_timeout of that byte.
        deadline = trio.current_time() + limits.idle_timeout
        started = False
        while (event := self.h11.next_event()) is h11.NEED_DATA:
            data = await self._receive(deadline)
            if data and not started:
                started = True
                deadline = trio.current_time() + limits.head_timeout
            self.h11.receive_data(data)
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):  # pragma: no cover - h11 gives a Request first
            raise _Closed
        method = event.method.decode("ascii", "replace")
        target = event.target.decode("utf-8", "replace")
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("ascii", "replace")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_body:
            await self._refuse_body()
            return None
        body = await self._read_body()
        if body is None:
            return None
        path, _, query = target.partition("?")
        return Request(method, path, dict(parse_qsl(query, keep_blank_values=True)), headers, body,
                       self.peer)

    async def _read_body(self) -> bytes | None:
        chunks = []
        size = 0
        while True:
            if self.h11.they_are_waiting_for_100_continue:
                await self._send_raw(self.h11.send(h11.InformationalResponse(status_code=100,
                                                                             headers=[])))
            event = await self._next_event(trio.current_time() + self.limits.io_timeout)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.limits.max_body:
                    await self._refuse_body()
                    return None
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:  # ConnectionClosed mid-body
                return None

    async def _refuse_body(self) -> None:
        response = Response.json({"error": "bad_request", "reason": BODY_TOO_LARGE}, 400)
        await self._send(response, head_only=False, close=True)

    async def _respond(self, method: str, response: Response) -> None:
        await self._send(response, head_only=method == "HEAD", close=False)

    async def _send(self, response: Response, *, head_only: bool, close: bool) -> None:
        headers = list(response.headers)
        if response.status >= 200 and response.status not in (204, 304):
            headers.insert(0, ("content-length", str(len(response.body))))
        if close:
            headers.append(("connection", "close"))
        data = self.h11.send(h11.Response(status_code=response.status, headers=headers))
        if not head_only and response.body and response.status not in (204, 304):
            data += self.h11.send(h11.Data(data=response.body))
        data += self.h11.send(h11.EndOfMessage())
        await self._send_raw(data)

    async def _send_raw(self, data: bytes) -> None:
        with trio.move_on_after(self.limits.io_timeout):
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise _Closed from None
            return
        raise _Closed


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"{host}:{port}"


async def open_http_listeners(port: int, host: str | None) -> list[trio.SocketListener]:
    """Bind ``port`` on ``host`` (None: every interface), as the AMQP listener is bound."""
    return await trio.open_tcp_listeners(port, host=host)
