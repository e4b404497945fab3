"""How tools find a running broker: a small JSON record per node, written once the broker
listens and removed when it stops.

Two copies of the same record:

- ``<data_dir>/node.json``: the data directory's lock allows one broker per directory, so this
  one always names the broker using it;
- ``<runtime dir>/amqp-broker-<uid>/nodes/<node name>.json``, the runtime directory being
  ``$XDG_RUNTIME_DIR`` or ``/tmp``: a broker can be found by node name alone, as RabbitMQ's CLI
  finds a node by name. Brokers may share a node name (the default one, in tests and CI), unlike
  RabbitMQ nodes: the first live one keeps the record, and the others are found by their data
  directory.

Both are written with mode 0600: they hold the token of the broker's control endpoint
(server/control.py), so only the broker's user can drive it.

A broker killed outright leaves its records behind; :func:`find_node` ignores a record whose
process is gone, and the next broker overwrites it.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ..config import Settings, full_node_name

__all__ = ["RECORD_NAME", "NodeRecord", "Announcement", "announce", "find_node", "nodes_dir"]

log = logging.getLogger("amqp_broker.server")

#: The record's name in the data directory.
RECORD_NAME = "node.json"


@dataclass(frozen=True)
class NodeRecord:
    """What a running broker says about itself. Ports are the ones actually bound; ``None`` for
    an HTTP listener that is off."""

    node_name: str
    pid: int
    host: str
    amqp_port: int
    management_port: int | None
    prometheus_port: int | None
    #: Absolute path of the broker's data directory.
    data_dir: str
    version: str
    #: Tells this broker's record from another's in the same process (in-process test brokers).
    instance: str
    #: The control endpoint (server/control.py) on 127.0.0.1, and the secret its requests carry:
    #: why the record is readable by the broker's user only.
    control_port: int | None = None
    control_token: str | None = None
    #: The AMQPS port (None: no TLS listener), and with tls = "auto" the generated files' paths
    #: (ca, certfile, keyfile, client_certfile, client_keyfile).
    tls_port: int | None = None
    tls: dict | None = None

    @classmethod
    def from_json(cls, data: object) -> "NodeRecord | None":
        """The record in ``data`` (a decoded JSON object), or None if it is not one."""
        if not isinstance(data, dict):
            return None
        added_later = {"control_port", "control_token", "tls_port", "tls"}  # a record may lack them
        try:
            record = cls(**{name: data[name] for name in cls.__dataclass_fields__
                            if name not in added_later or name in data})
        except (KeyError, TypeError):
            return None
        ints = (record.pid, record.amqp_port)
        optional = (record.management_port, record.prometheus_port, record.control_port,
                    record.tls_port)
        if not all(isinstance(v, int) for v in ints) or not all(
            v is None or isinstance(v, int) for v in optional
        ):
            return None
        if record.pid <= 0:  # os.kill(0 or less) would signal process groups
            return None
        return record


def nodes_dir(environ: Mapping[str, str] | None = None) -> str:
    """The directory of the by-name records: ``$XDG_RUNTIME_DIR`` or ``/tmp``, then
    ``amqp-broker-<uid>/nodes``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return os.path.join(base, f"amqp-broker-{os.getuid()}", "nodes")


def find_node(node_name: str | None = None, data_dir: str | None = None) -> NodeRecord | None:
    """The running broker using ``data_dir`` or, without one, the one named ``node_name``
    (default: ``rabbit@<short host name>``, completed as node names are); None if none runs.

    With both, the data directory's broker is returned only if it has that name."""
    if data_dir is not None:
        path = os.path.join(data_dir, RECORD_NAME)
    else:
        name = full_node_name(node_name or _default_node_name())
        path = os.path.join(nodes_dir(), name + ".json")
    record = _read(path)
    if record is None or not _alive(record.pid):
        return None
    if node_name is not None and record.node_name != full_node_name(node_name):
        return None
    return record


class Announcement:
    """The records one broker wrote; :meth:`withdraw` removes those still its own."""

    def __init__(self, record: NodeRecord, paths: list[str]):
        self.record = record
        self.paths = paths

    def withdraw(self) -> None:
        for path in self.paths:
            current = _read(path)
            if current is not None and current.instance != self.record.instance:
                continue  # another broker's by now
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove the node record %s: %s", path, exc.strerror)
        self.paths = []


def announce(
    settings: Settings,
    amqp_port: int,
    management_port: int | None = None,
    prometheus_port: int | None = None,
    *,
    control_port: int | None = None,
    control_token: str | None = None,
    tls_port: int | None = None,
    tls: dict | None = None,
) -> Announcement:
    """Write this broker's records. A record that cannot be written costs a warning, not the
    start: clients reach the broker without it."""
    from .. import __version__

    data_dir = os.path.abspath(settings.data_dir) if settings.data_dir else ""
    record = NodeRecord(
        node_name=settings.node_name,
        pid=os.getpid(),
        host=settings.host,
        amqp_port=amqp_port,
        management_port=management_port,
        prometheus_port=prometheus_port,
        data_dir=data_dir,
        version=__version__,
        instance=uuid.uuid4().hex,
        control_port=control_port,
        control_token=control_token,
        tls_port=tls_port,
        tls=tls,
    )
    paths = []
    if data_dir:
        path = os.path.join(data_dir, RECORD_NAME)
        if _write(path, record):
            paths.append(path)
    directory = _private_dir(nodes_dir())
    if directory is not None:
        path = os.path.join(directory, record.node_name + ".json")
        holder = _read(path)
        if holder is not None and holder.instance != record.instance and _alive(holder.pid):
            log.info(
                "node name %s is taken by the broker with pid %d (AMQP port %d): this one is "
                "found by its data directory", record.node_name, holder.pid, holder.amqp_port,
            )
        elif _write(path, record):
            paths.append(path)
    return Announcement(record, paths)


def _default_node_name() -> str:
    return Settings.__dataclass_fields__["node_name"].default


def _read(path: str) -> NodeRecord | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return NodeRecord.from_json(json.load(fh))
    except (OSError, ValueError):
        return None


def _write(path: str, record: NodeRecord) -> bool:
    """Write ``record`` to ``path`` whole or not at all (a reader never sees half of it)."""
    temporary = f"{path}.{record.instance}.tmp"
    try:
        # 0600: the record holds the control token, which is as good as the broker's keys.
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w",
                  encoding="utf-8") as fh:
            json.dump(asdict(record), fh, indent=2)
            fh.write("\n")
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("cannot write the node record %s: %s", path, exc.strerror or exc)
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False
    return True


def _private_dir(path: str) -> str | None:
    """``path`` (``.../amqp-broker-<uid>/nodes``), created private to this user; None, with a
    warning, if it cannot be, or its parent is not this user's own (in a shared /tmp, someone
    else could have made it to plant records)."""
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, mode=0o700, exist_ok=True)
        info = os.lstat(parent)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            log.warning("not writing node records: %s is not a directory of this user's", parent)
            return None
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        log.warning("cannot write node records in %s: %s", path, exc.strerror or exc)
        return None
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True
