"""Differences of our management API from RabbitMQ 3.10's that are deliberate and documented.

Keyed by (request label pattern, difference pattern), both fnmatch patterns; the difference is
"status", "key-missing:PATH", "key-extra:PATH", "value:PATH", "step" or "run" (see
diff.Difference). A listed difference is reported as KNOWN and does not fail the run.

Only intended, documented differences belong here (each group matches a point of the README's
"Deliberate differences from RabbitMQ's API"); a missing or wrong feature is a bug to fix. Key
names are listed one by one, not as "key-missing:*", so a key that goes missing by mistake still
fails. In fnmatch, "[" opens a character class: "[[]" matches a literal "[".
"""

from __future__ import annotations

#: Facts of the Erlang VM, Mnesia, the file and socket layers and the node's churn counters in
#: GET /api/nodes: the node is a Python process.
NODE_ERLANG_KEYS = (
    "channel_closed", "channel_created", "cluster_links", "config_files", "connection_closed",
    "connection_created", "context_switches", "enabled_plugins", "gc_bytes_reclaimed", "gc_num",
    "io_read_avg_time", "io_read_bytes", "io_read_count", "io_reopen_count", "io_seek_avg_time",
    "io_seek_count", "io_sync_avg_time", "io_sync_count", "io_write_avg_time", "io_write_bytes",
    "io_write_count", "log_files", "metrics_gc_queue_length", "mnesia_disk_tx_count",
    "mnesia_ram_tx_count", "msg_store_read_count", "msg_store_write_count", "net_ticktime",
    "proc_total", "proc_used", "queue_created", "queue_declared", "queue_deleted",
    "queue_index_read_count", "queue_index_write_count", "ra_open_file_metrics",
    "ra_open_file_metrics.ra_log_segment_writer", "ra_open_file_metrics.ra_log_wal",
    "run_queue", "sockets_total",
)

#: A queue's statistics that RabbitMQ's backing queue reports and ours does not count.
QUEUE_STATS_KEYS = (
    "consumer_capacity", "message_bytes_paged_out", "message_bytes_persistent",
    "message_bytes_ram", "messages_paged_out", "messages_persistent", "messages_ram",
    "messages_ready_ram", "messages_unacknowledged_ram",
)

#: Byte and packet counters of connections (and their sums per vhost).
BYTE_COUNTER_KEYS = ("recv_cnt", "recv_oct", "send_cnt", "send_oct", "send_pend")

#: What a queue answers before RabbitMQ's first statistics emission for it: nothing but its
#: declaration. Ours counts at once.
COUNT_KEYS = (
    "consumers", "memory", "message_bytes", "message_bytes_ready",
    "message_bytes_unacknowledged", "messages", "messages_ready", "messages_unacknowledged",
    "state",
)

#: The firehose tracer's exchange, declared by RabbitMQ in every vhost.
TRACE_EXCHANGE_KEYS = ("arguments", "auto_delete", "durable", "internal", "name", "type",
                       "user_who_performed_action", "vhost")

KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    # Names (README: "Names").
    ("read: GET overview", "value:product_name"): "product_name is amqp_broker (README: Names)",
    ("definitions: GET", "value:product_name"): "product_name is amqp_broker (README: Names)",

    # No Erlang (README: "Names": no erlang_version, /api/nodes without Erlang's counters).
    ("read: GET overview", "key-missing:erlang_version"): "no Erlang VM (README: Names)",
    ("read: GET overview", "key-missing:erlang_full_version"): "no Erlang VM (README: Names)",
    ("read: GET overview", "key-missing:release_series_support_status"):
        "RabbitMQ's own release support status; ours has no release series (README: Names)",
    **{("read: GET nodes", f"key-missing:[[]{{node}}].{key}"):
       "/api/nodes has what a Python process can say, not Erlang's counters (README: Names)"
       for key in NODE_ERLANG_KEYS},

    # Statistics computed when asked, not collected (README: "Statistics").
    **{(label, f"key-missing:{prefix}{key}"):
       "no persistent/ram/paged-out counts and no consumer_capacity (README: Statistics)"
       for key in QUEUE_STATS_KEYS
       for label, prefix in (("*GET queue*", ""), ("*GET queues*", "[[]*]."))},
    **{(label, f"key-missing:{prefix}{key}"):
       "no byte counters on connections and vhosts (README: Statistics)"
       for key in BYTE_COUNTER_KEYS
       for label, prefix in (("read: GET connection", ""), ("read: GET *connections", "[[]*]."))},
    **{(label, f"key-missing:{prefix}{key}"):
       "no byte counters on connections and vhosts (README: Statistics)"
       for key in ("recv_oct", "send_oct")
       for label, prefix in (("read: GET vhost", ""), ("read: GET vhosts", "[[]*]."))},
    **{("definitions: GET *queue*", f"key-extra:{key}"):
       "counts are exact at once; RabbitMQ shows them after its first statistics emission "
       "(README: Statistics)"
       for key in COUNT_KEYS},
    ("definitions: GET *queue*", "value:policy"):
        "policy (null: no policies) shown at once; RabbitMQ adds it with its first statistics "
        "emission (README: Statistics)",

    # README: "No user_who_performed_action".
    ("read: GET *", "key-missing:user_who_performed_action"):
        "no user_who_performed_action (README)",
    ("read: GET *", "key-missing:[[]*].user_who_performed_action"):
        "no user_who_performed_action (README)",

    # README: vhost descriptions are not kept (RabbitMQ's "/" says "Default virtual host").
    ("read: GET vhosts", "value:[[]/].description"): "vhost descriptions are not kept (README)",

    # README: no firehose tracer, so no amq.rabbitmq.trace exchange.
    **{("read: GET exchanges*", f"key-missing:[[]amq.rabbitmq.trace].{key}"):
       "no firehose tracer, so no amq.rabbitmq.trace exchange (README)"
       for key in TRACE_EXCHANGE_KEYS},
    ("read: GET exchanges*", "value:[[]]ids"):
        "no firehose tracer, so no amq.rabbitmq.trace exchange (README)",

    # README: errors RabbitMQ reports as Erlang terms get readable texts.
    ("errors: PUT permissions bad regex", "value:reason"):
        "a readable reason where RabbitMQ gives an Erlang term (README)",

    # README: definitions export extras RabbitMQ 3.10 imports as they are.
    ("definitions: GET*", "key-extra:queues[[]*].type"):
        "definitions name each queue's type (RabbitMQ 3.10 imports it; README)",
    ("definitions: GET", "key-extra:vhosts[[]*].limits"):
        "definitions give each vhost's limits and metadata (RabbitMQ 3.10 imports them; README)",
    ("definitions: GET", "key-extra:vhosts[[]*].metadata"):
        "definitions give each vhost's limits and metadata (RabbitMQ 3.10 imports them; README)",
    ("definitions: GET", "value:global_parameters"):
        "no global parameters (RabbitMQ exports its cluster_name there; README: Policies...)",
}
