"""A small management HTTP API client on the standard library, so the harness sees exactly what
the server sends (status, headers, raw body) and depends on nothing the tools under test bring."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
from typing import Any
from urllib.parse import quote, urlsplit

GUEST = ("guest", "guest")


def seg(name: str) -> str:
    """One path segment: RabbitMQ wants every reserved character escaped, "/" as %2F."""
    return quote(name, safe="")


@dataclasses.dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.text) if self.text else None
        except ValueError:
            return None


class Api:
    """Requests against one management API base URL, e.g. http://127.0.0.1:15672."""

    def __init__(self, base_url: str, timeout: float = 15.0):
        u = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 15672
        self.prefix = u.path.rstrip("/")
        if self.prefix.endswith("/api"):
            self.prefix = self.prefix[:-4]
        self.timeout = timeout

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"

    def request(self, method: str, path: str, body: Any = None, *,
                auth: tuple[str, str] | None = GUEST, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> Response:
        """``path`` starts with /api. ``body`` is sent as JSON, ``raw`` as it is."""
        # What requests and curl send: RabbitMQ answers some resources (DELETE .../contents,
        # unknown paths) with 406 when asked for application/json.
        hdrs = {"Accept": "*/*"}
        if auth is not None:
            hdrs["Authorization"] = "Basic " + base64.b64encode(
                f"{auth[0]}:{auth[1]}".encode()).decode()
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, self.prefix + path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, text)
        finally:
            conn.close()

    def reachable(self) -> bool:
        """Something answers HTTP on the management port."""
        try:
            self.request("GET", "/api/overview", auth=None)
            return True
        except OSError:
            return False
