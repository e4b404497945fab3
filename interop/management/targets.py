"""Where the management tests point: a broker with its management API (RabbitMQ's or ours)."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import warnings
from urllib.parse import urlsplit

from .api import Api

RABBIT_MGMT_URL = os.environ.get("RABBITMQ_MGMT_URL", "http://127.0.0.1:15672")
RABBIT_AMQP = os.environ.get("RABBITMQ_AMQP", "127.0.0.1:5672")

# Read by tests/management/conftest.py's terminal summary, so a missing RabbitMQ is visible at
# the end of the run too.
FALLBACK: dict[str, str] = {}


@dataclasses.dataclass(frozen=True)
class Target:
    """A broker with its management API: where the tools connect."""
    name: str
    mgmt_host: str
    mgmt_port: int
    amqp_host: str
    amqp_port: int
    user: str = "guest"
    password: str = "guest"

    @property
    def mgmt_url(self) -> str:
        return f"http://{self.mgmt_host}:{self.mgmt_port}"

    @property
    def api(self) -> Api:
        return Api(self.mgmt_url)


def parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    """"host:port", "port" or "http://host:port/..." -> (host, port)."""
    if "://" in value:
        u = urlsplit(value)
        return u.hostname or "127.0.0.1", u.port or default_port
    if value.isdigit():
        return "127.0.0.1", int(value)
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port) if port else default_port


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rabbitmq_target() -> Target:
    mh, mp = parse_hostport(RABBIT_MGMT_URL, 15672)
    ah, ap = parse_hostport(RABBIT_AMQP, 5672)
    return Target("RabbitMQ", mh, mp, ah, ap)


def rabbitmq_version() -> str | None:
    """RabbitMQ's version when its management API answers as RabbitMQ, else None."""
    try:
        ov = Api(RABBIT_MGMT_URL, timeout=5).request("GET", "/api/overview").json
    except OSError:
        return None
    if isinstance(ov, dict) and ov.get("product_name") == "RabbitMQ" and "rabbitmq_version" in ov:
        return ov["rabbitmq_version"]
    return None


def warn_loudly(msg: str) -> None:
    FALLBACK["message"] = msg
    banner = "\n" + "!" * 100 + f"\nWARNING: {msg}\n" + "!" * 100 + "\n"
    try:
        sys.__stderr__.write(banner)
        sys.__stderr__.flush()
    except Exception:  # noqa: BLE001 - stderr gone: the warning below still reaches pytest
        pass
    warnings.warn(msg, UserWarning, stacklevel=2)


def management_api_built() -> bool:
    """Our management API is in this tree: the package amqp_broker/management beside the
    amqp_broker imported. (find_spec would not do: an editable install's finder also finds the
    directory in the checkout it was installed from.)"""
    from pathlib import Path

    import amqp_broker
    return (Path(amqp_broker.__file__).parent / "management" / "__init__.py").is_file()
