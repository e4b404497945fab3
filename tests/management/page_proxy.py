"""Serve the management page's static files and forward ``/api/`` to a management HTTP API.

The page only ever talks to its own origin (``api/...`` relative URLs), so putting this in front of
RabbitMQ's management API drives the very files our broker serves against the reference
implementation. Used by the browser test's fixture, and by hand while working on the page:

    python tests/management/page_proxy.py --upstream http://127.0.0.1:15672 --port 8080
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parents[2] / "amqp_broker" / "management" / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# Request headers the API needs; everything else (cookies, the browser's caching) stays here.
FORWARDED_REQUEST = ("authorization", "content-type", "accept")
FORWARDED_RESPONSE = ("content-type", "www-authenticate")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _dispatch(self):
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/api/"):
            self._forward()
        elif self.command == "GET":
            self._static(path)
        else:
            self._reply(405, b"", "text/plain")

    def _static(self, path):
        name = "index.html" if path == "/" else path.lstrip("/")
        file = (self.server.static_dir / name).resolve()
        if file.parent != self.server.static_dir or not file.is_file():
            self._reply(404, b"not found\n", "text/plain")
            return
        self._reply(200, file.read_bytes(), CONTENT_TYPES.get(file.suffix, "application/octet-stream"))

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED_REQUEST}
        upstream = self.server.upstream
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port or 80, timeout=30)
        try:
            conn.request(self.command, upstream.path.rstrip("/") + self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            extra = {k: v for k, v in response.getheaders() if k.lower() in FORWARDED_RESPONSE}
        except OSError as exc:
            self._reply(502, f'{{"error":"bad_gateway","reason":"{exc.__class__.__name__}"}}'.encode(),
                        "application/json")
            return
        finally:
            conn.close()
        self.send_response(response.status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reply(self, status, data, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        # Edits to the page show on reload while working on it.
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, upstream, static_dir):
        super().__init__(address, _Handler)
        self.upstream = urllib.parse.urlsplit(upstream)
        self.static_dir = Path(static_dir).resolve()


class PageProxy:
    """The page and a forwarding ``/api/`` on 127.0.0.1, in a background thread.

        with PageProxy("http://127.0.0.1:15672") as proxy:
            browser.get(proxy.url)
    """

    def __init__(self, upstream: str, port: int = 0, static_dir: Path = STATIC_DIR):
        self._server = _Server(("127.0.0.1", port), upstream, static_dir)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="page-proxy", daemon=True)

    def __enter__(self) -> "PageProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", default="http://127.0.0.1:15672",
                        help="base URL of the management HTTP API to forward /api/ to "
                             "(default: http://127.0.0.1:15672)")
    parser.add_argument("--port", type=int, default=8080, help="port to serve the page on, on 127.0.0.1 "
                                                               "(default: 8080)")
    args = parser.parse_args(argv)
    try:
        proxy = PageProxy(args.upstream, args.port)
    except OSError as exc:
        print(f"page_proxy: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"page on {proxy.url}/ , API from {args.upstream}")
    with proxy:
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
