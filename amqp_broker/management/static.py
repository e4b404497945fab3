"""The management web page's files (``static/``), served without authentication: the page's own
code authenticates its API calls, as RabbitMQ's does.

``/`` is ``index.html``; every other file of the directory is served by its name, at the root
(the page refers to them by relative names) and under ``/static/``.
"""

from __future__ import annotations

from pathlib import Path

from .http import Request, Response

STATIC_DIR = Path(__file__).resolve().parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

NOT_INSTALLED = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>amqp_broker management</title></head>
<body><p>The management web page is not installed with this broker.
The HTTP API is served under <a href="api/overview">/api/</a>.</p></body></html>
"""


class StaticFiles:
    """``files(request)``: the response for a page path, or None when it names no file."""

    def __init__(self, directory: Path = STATIC_DIR):
        self.directory = directory

    def __call__(self, request: Request) -> Response | None:
        path = request.path
        if path.startswith("/static/"):
            path = path[len("/static"):]
        name = path.lstrip("/") or "index.html"
        if "/" in name or "\\" in name or name.startswith(".") or "%" in name:
            return None
        if not self.directory.is_dir():
            if name == "index.html":
                return Response.text(NOT_INSTALLED, content_type="text/html; charset=utf-8")
            return None
        file = self.directory / name
        if not file.is_file():
            return None
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"", [("allow", "HEAD, GET, OPTIONS")])
        content_type = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        # no-cache: a browser revalidates, so a new broker's page is never mixed with an old one.
        return Response(200, file.read_bytes(), [("content-type", content_type),
                                                 ("cache-control", "no-cache")])
