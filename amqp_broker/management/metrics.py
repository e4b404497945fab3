"""The broker's Prometheus metrics: the text exposition format (0.0.4) with rabbitmq_prometheus's
names, TYPE and HELP lines and labels.

What RabbitMQ 3.10's aggregated ``GET /metrics`` (port 15692) reports, for what this broker has,
so dashboards and alert rules written for RabbitMQ read this broker unchanged. Everything comes
through :class:`~amqp_broker.broker.admin.Admin`, plus the few facts of the process itself
(descriptors, free disk) that only the serving layer may ask the OS for.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import shutil
from typing import TYPE_CHECKING, Any, Iterable

from .. import __version__
from ..broker.queue_types import QUEUE_TYPES

if TYPE_CHECKING:  # pragma: no cover
    from ..broker.admin import Admin

#: The Content-Type of :func:`render_metrics`'s text, as rabbitmq_prometheus sends it.
CONTENT_TYPE = "text/plain; version=0.0.4"

# RabbitMQ labels its global counters with the protocol that counted (amqp091 for AMQP 0-9-1).
AMQP091 = (("protocol", "amqp091"),)

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float]


def render_metrics(admin: "Admin") -> str:
    """The body of ``GET /metrics``: one TYPE and one HELP line, then the samples, per metric,
    in the order rabbitmq_prometheus writes them (core, then overview, then global counters)."""
    node = admin.node_info()
    totals = admin.totals()
    churn = admin.churn()
    counters = admin.message_counters()
    by_type = admin.queue_type_counters()
    alarms = set(node.get("alarms", ()))
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: Iterable[Sample] | float | None) -> None:
        if samples is None:
            return  # a fact this node does not know: no sample rather than a false one
        if isinstance(samples, (int, float)):
            samples = [((), samples)]
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"# HELP {name} {help_text}")
        for labels, value in samples:
            lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def per_queue_type(key: str) -> list[Sample]:
        return [
            (AMQP091 + (("queue_type", kind.module),), by_type[name][key])
            for name, kind in QUEUE_TYPES.items()
        ]

    # rabbitmq_core_metrics_collector: alarms, churn, the process.
    metric("rabbitmq_alarms_file_descriptor_limit", "untyped",
           "is 1 if file descriptor limit alarm is in effect", 0)
    metric("rabbitmq_alarms_free_disk_space_watermark", "untyped",
           "is 1 if free disk space watermark alarm is in effect", int("disk" in alarms))
    metric("rabbitmq_alarms_memory_used_watermark", "untyped",
           "is 1 if VM memory watermark alarm is in effect", int("memory" in alarms))
    metric("rabbitmq_connections_opened_total", "counter", "Total number of connections opened",
           churn["connections_opened"])
    metric("rabbitmq_connections_closed_total", "counter",
           "Total number of connections closed or terminated", churn["connections_closed"])
    metric("rabbitmq_channels_opened_total", "counter", "Total number of channels opened",
           churn["channels_opened"])
    metric("rabbitmq_channels_closed_total", "counter", "Total number of channels closed",
           churn["channels_closed"])
    metric("rabbitmq_process_open_fds", "gauge", "Open file descriptors", _open_fds())
    metric("rabbitmq_process_resident_memory_bytes", "gauge", "Memory used in bytes",
           node.get("mem_used"))
    metric("rabbitmq_disk_space_available_bytes", "gauge", "Disk space available in bytes",
           _disk_free(node.get("data_dir")))
    metric("rabbitmq_process_max_fds", "gauge", "Open file descriptors limit", _max_fds())
    metric("rabbitmq_resident_memory_limit_bytes", "gauge", "Memory high watermark in bytes",
           node.get("mem_limit"))
    metric("rabbitmq_disk_space_available_limit_bytes", "gauge",
           "Free disk space low watermark in bytes", node.get("disk_free_limit"))
    uptime_ms = node.get("uptime_ms")
    metric("rabbitmq_erlang_uptime_seconds", "gauge", "Node uptime",
           None if uptime_ms is None else uptime_ms / 1000)
    ready, unacked = totals["messages_ready"], totals["messages_unacknowledged"]
    metric("rabbitmq_queue_messages_ready", "gauge", "Messages ready to be delivered to consumers", ready)
    metric("rabbitmq_queue_messages_unacked", "gauge",
           "Messages delivered to consumers but not yet acknowledged", unacked)
    metric("rabbitmq_queue_messages", "gauge",
           "Sum of ready and unacknowledged messages - total queue depth", ready + unacked)
    metric("rabbitmq_queue_consumers", "gauge", "Consumers on a queue", totals["consumers"])
    metric("rabbitmq_channel_consumers", "gauge", "Consumers on a channel", totals["consumers"])
    metric("rabbitmq_channel_messages_unacked", "gauge",
           "Delivered but not yet acknowledged messages", unacked)
    metric("rabbitmq_channel_messages_unconfirmed", "gauge",
           "Published but not yet confirmed messages", totals["messages_unconfirmed"])

    # rabbitmq_prometheus's overview: object counts and who this node is.
    metric("rabbitmq_connections", "gauge", "Connections currently open", totals["connections"])
    metric("rabbitmq_channels", "gauge", "Channels currently open", totals["channels"])
    metric("rabbitmq_consumers", "gauge", "Consumers currently connected", totals["consumers"])
    metric("rabbitmq_queues", "gauge", "Queues available", totals["queues"])
    # The label names are RabbitMQ's; the values say what really runs (this broker, on Python).
    metric("rabbitmq_build_info", "untyped", "RabbitMQ & Erlang/OTP version info", [(
        (("rabbitmq_version", __version__), ("prometheus_plugin_version", __version__),
         ("prometheus_client_version", __version__), ("erlang_version", f"Python {platform.python_version()}")),
        1,
    )])
    name = node.get("name")
    if name:
        metric("rabbitmq_identity_info", "untyped", "RabbitMQ node & cluster identity info", [(
            (("rabbitmq_node", name), ("rabbitmq_cluster", name),
             ("rabbitmq_cluster_permanent_id", _permanent_id(name, node.get("data_dir", "")))),
            1,
        )])

    # rabbit_global_counters: message counts since start, whatever has closed or been deleted.
    metric("rabbitmq_global_consumers", "gauge", "Current number of consumers",
           [(AMQP091, totals["consumers"])])
    metric("rabbitmq_global_messages_acknowledged_total", "counter",
           "Total number of messages acknowledged by consumers", per_queue_type("ack"))
    metric("rabbitmq_global_messages_confirmed_total", "counter",
           "Total number of messages confirmed to publishers", [(AMQP091, counters["confirm"])])
    metric("rabbitmq_global_messages_delivered_total", "counter",
           "Total number of messages delivered to consumers", per_queue_type("deliver_get"))
    metric("rabbitmq_global_messages_received_confirm_total", "counter",
           "Total number of messages received from publishers expecting confirmations",
           [(AMQP091, counters["publish_confirm"])])
    metric("rabbitmq_global_messages_received_total", "counter",
           "Total number of messages received from publishers", [(AMQP091, counters["publish"])])
    metric("rabbitmq_global_messages_redelivered_total", "counter",
           "Total number of messages redelivered to consumers", per_queue_type("redeliver"))
    metric("rabbitmq_global_messages_routed_total", "counter",
           "Total number of messages routed to queues or streams", [(AMQP091, counters["routed"])])
    metric("rabbitmq_global_messages_unroutable_dropped_total", "counter",
           "Total number of messages published as non-mandatory into an exchange and dropped as "
           "unroutable", [(AMQP091, counters["drop_unroutable"])])
    metric("rabbitmq_global_messages_unroutable_returned_total", "counter",
           "Total number of messages published as mandatory into an exchange and returned to the "
           "publisher as unroutable", [(AMQP091, counters["return_unroutable"])])
    violations = admin.strict_violations()
    if violations:  # only with --strict: not a RabbitMQ metric
        metric("amqp_broker_strict_violations_total", "counter",
               "AMQP 0-9-1 rules broken by clients and noted by strict mode",
               [((("rule", rule),), count) for rule, count in sorted(violations.items())])
    lines.append("")
    return "\n".join(lines)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels) + "}"


def _escape(value: Any) -> str:
    """A label value as the exposition format quotes it."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return str(int(value))


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None  # no /proc (not Linux)


def _max_fds() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _disk_free(data_dir: str | None) -> int | None:
    if not data_dir:
        return None
    try:
        return shutil.disk_usage(data_dir).free
    except OSError:
        return None


def _permanent_id(name: str, data_dir: str) -> str:
    """A cluster id that stays the same across restarts on one data directory, in the shape of
    RabbitMQ's (which it generates once and keeps in its database)."""
    digest = hashlib.sha256(f"{name}\0{data_dir}".encode("utf-8")).digest()[:16]
    return "amqp_broker-cluster-id-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
