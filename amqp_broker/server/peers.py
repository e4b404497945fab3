"""How an accepted socket's two ends are named in logs, the management API and traces."""

from __future__ import annotations

import trio


def socket_names(stream: trio.SocketStream) -> tuple[str, str]:
    """``("host:port", "host:port")`` of the peer and of our end. A socket already gone is
    ``"unknown"``, not "": "" names a connection without a socket, which loopback_users lets in."""
    try:
        host, port = stream.socket.getpeername()[:2]
        peer = f"{host}:{port}"
        host, port = stream.socket.getsockname()[:2]
        return peer, f"{host}:{port}"
    except OSError:
        return "unknown", "unknown"
