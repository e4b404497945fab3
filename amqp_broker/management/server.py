"""The broker's HTTP listeners: the management API with its web page, and Prometheus metrics.

:func:`open_http_services` binds the ports the settings ask for (before the broker reports that
it has started, so a busy port fails the start); :class:`HttpService` then serves one of them in
the broker's nursery. A second kind of listener is an app (a function from request to response)
and a protocol name; :func:`metrics_app` is the whole of the Prometheus one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .api import ManagementApi
from .http import App, HttpServer, Limits, Request, Response
from .metrics import CONTENT_TYPE, render_metrics
from .static import StaticFiles

if TYPE_CHECKING:  # pragma: no cover
    from ..broker.admin import Admin
    from ..server.faults import Faults

log = logging.getLogger("amqp_broker.management")

#: Listener protocol names, as RabbitMQ's /api/overview lists them.
MANAGEMENT = "http"
PROMETHEUS = "http/prometheus"
DESCRIPTIONS = {MANAGEMENT: "management HTTP API", PROMETHEUS: "Prometheus metrics"}


class ListenError(OSError):
    """A port of an HTTP listener could not be bound; ``where`` says which listener."""

    def __init__(self, where: str, exc: OSError):
        super().__init__(exc.errno, exc.strerror or str(exc))
        self.where = where

    def __str__(self) -> str:
        return f"{self.strerror}"


def management_app(admin: "Admin", faults: "Faults | None" = None) -> App:
    """The management port: ``/api/...`` (with ``/api/amqp-broker/faults`` when given ``faults``) and the web
    page."""
    api = ManagementApi(admin, faults)
    files = StaticFiles()

    def app(request: Request) -> Response:
        path = request.path
        if path == "/api" or path.startswith("/api/"):
            return api(request)
        response = files(request) if request.method in ("GET", "HEAD") else None
        if response is None:
            return Response.json({"error": "Object Not Found", "reason": "Not Found"}, 404)
        return response

    return app


def metrics_app(admin: "Admin") -> App:
    """The Prometheus port: ``GET /metrics`` in the text exposition format."""

    def app(request: Request) -> Response:
        if request.path not in ("/metrics", "/metrics/"):
            return Response.text("Not Found\n", 404)
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"", [("allow", "HEAD, GET")])
        return Response.text(render_metrics(admin), content_type=CONTENT_TYPE)

    return app


APPS = {MANAGEMENT: management_app, PROMETHEUS: metrics_app}


class HttpService:
    """One bound HTTP listener (all its sockets) and the server that will run on it."""

    def __init__(self, protocol: str, listeners: list[trio.SocketListener], app: App,
                 limits: Limits | None = None):
        self.protocol = protocol
        self.listeners = listeners
        self.server = HttpServer(app, limits, name=DESCRIPTIONS.get(protocol, protocol))

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [tuple(listener.socket.getsockname()[:2]) for listener in self.listeners]  # type: ignore[misc]

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await self.server.serve(self.listeners, task_status=task_status)

    def close(self) -> None:
        for listener in self.listeners:
            listener.socket.close()


async def open_http_services(ports: dict[str, int | None], host: str | None, admin: "Admin",
                             faults: "Faults | None" = None) -> list[HttpService]:
    """Bind each protocol's port (None: that listener is off; 0: any free port) on ``host``.
    A port that cannot be bound closes what was bound and raises :class:`ListenError`."""
    services: list[HttpService] = []
    try:
        for protocol, port in ports.items():
            if port is None:
                continue
            try:
                listeners = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                where = f"{DESCRIPTIONS.get(protocol, protocol)} on {host or '*'}:{port}"
                raise ListenError(where, exc) from exc
            app = management_app(admin, faults) if protocol == MANAGEMENT else APPS[protocol](admin)
            services.append(HttpService(protocol, listeners, app))
    except BaseException:
        for service in services:
            service.close()
        raise
    return services
