"""Paths to handlers: ``/api/queues/{vhost}/{name}`` patterns, one handler per method.

A path is split on "/" *before* its segments are percent-decoded, so a vhost named "/" (sent as
"%2F", as RabbitMQ's API wants) stays one segment. A trailing "/" is ignored, as RabbitMQ ignores
it (``/api/exchanges/%2F/`` lists the vhost's exchanges).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote


class Route:
    """One path pattern and what each method does there."""

    def __init__(self, pattern: str, methods: dict[str, Any]):
        self.pattern = pattern
        self.segments = tuple(pattern.strip("/").split("/"))
        self.methods = methods

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.segments):
            return None
        params = {}
        for want, got in zip(self.segments, segments):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params

    @property
    def allow(self) -> str:
        """The Allow header's value (RabbitMQ lists HEAD with GET, and OPTIONS)."""
        methods = []
        if "GET" in self.methods:
            methods += ["HEAD", "GET"]
        methods += [m for m in ("PUT", "POST", "DELETE") if m in self.methods]
        return ", ".join([*methods, "OPTIONS"])


class Router:
    """Routes, tried in the order they were added."""

    def __init__(self) -> None:
        # Keyed by segment count, so a request only tries patterns of its own length.
        self._routes: dict[int, list[Route]] = {}

    def add(self, pattern: str, **methods: Any) -> None:
        """``add("/api/queues/{vhost}", GET=handler)``; each value is whatever the caller
        dispatches on (a handler, or a handler with its access rule)."""
        route = Route(pattern, methods)
        self._routes.setdefault(len(route.segments), []).append(route)

    def match(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for a raw (still percent-encoded) path and its decoded parameters."""
        raw = path.strip("/").split("/") if path.strip("/") else [""]
        segments = [unquote(s, errors="replace") for s in raw]
        for route in self._routes.get(len(segments), ()):
            params = route.match(segments)
            if params is not None:
                return route, params
        return None
