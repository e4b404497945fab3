"""The management API scenario: one known set-up (through AMQP with pika and through the API),
then every endpoint in scope, errors included, then clean-up. Run on one broker it yields a list
of observations (status, key paths, the values tools read); diff.py compares two such lists.

Names carry a per-run tag (RabbitMQ is shared with other users) and are written back as
placeholders ({vhost}, {queue}, ...) in everything recorded, so runs compare across brokers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
import uuid
from typing import Any, Callable

import pika
import pika.exceptions

from .api import Api, Response, seg

logging.getLogger("pika").setLevel(logging.CRITICAL)

#: Values compared wherever these keys appear: what the tools read. Everything else is compared
#: by the presence of its key only.
VALUE_KEYS = frozenset({
    "name", "vhost", "type", "durable", "auto_delete", "internal", "exclusive", "arguments",
    "messages", "messages_ready", "messages_unacknowledged", "consumers", "source", "destination",
    "destination_type", "routing_key", "properties_key", "tags", "configure", "write", "read",
    "user", "routed", "payload", "payload_bytes", "payload_encoding", "redelivered", "exchange",
    "message_count", "status", "reason", "error", "channels", "number", "consumer_tag",
    "ack_required", "prefetch_count", "global_prefetch_count", "protocol", "auth_mechanism",
    "state", "description", "tracing", "hashing_algorithm", "confirm", "transactional",
    "client_properties", "properties", "management_version", "rabbitmq_version", "product_name",
    "message_bytes", "message_bytes_ready", "message_bytes_unacknowledged", "messages_persistent",
    "message_bytes_persistent", "consumer_count", "active", "activity_status", "ssl", "peer_host",
    "host", "user_who_performed_action", "default_queue_type", "exchanges", "queues", "bindings",
    "users", "vhosts", "permissions", "missing", "x-reason", "location", "content-type",
    "reply_code", "reply_text", "policy", "limits", "topic_permissions", "parameters",
    "global_parameters", "policies", "user_provided_name",
})

#: Keys not descended into for key paths: their content is data (compared as a value when listed
#: in VALUE_KEYS), not the API's shape.
LEAF_KEYS = frozenset({
    "arguments", "client_properties", "properties", "cluster_state", "capabilities",
    "effective_policy_definition", "backing_queue_status", "garbage_collection", "headers",
    "exchange_types", "listeners", "contexts", "applications", "auth_mechanisms",
    "sample_retention_policies", "metadata", "limits", "config_files", "log_files",
    "enabled_plugins", "cluster_links", "metrics_gc_queue_length",
})

#: Key paths whose presence on RabbitMQ itself depends on timing (statistics emission, idleness)
#: or on the host: never compared.
VOLATILE_PRESENCE = (
    "*idle_since", "*message_stats*", "*_details*", "*head_message_timestamp",
    "*recoverable_slaves", "*.node", "node", "*single_active_consumer_tag", "*slave_nodes",
    "*synchronised_slave_nodes", "*effective_policy_definition", "*operator_policy", "*policy",
    "*exclusive_consumer_tag", "*backing_queue_status", "*garbage_collection", "*reductions",
    "*consumer_utilisation", "*churn_rates*", "*queue_totals*", "*object_totals*",
    "statistics_db_event_queue", "*listeners", "*contexts",
)

#: Values never compared (besides everything outside VALUE_KEYS): host-, time- or run-specific.
VOLATILE_VALUES = ("*.node", "node", "*peer_port", "*port", "*.host", "*connected_at",
                   "*timestamp", "*message_stats*", "queue_totals*", "object_totals*",
                   "churn_rates*")

@dataclasses.dataclass
class Observation:
    label: str            # "section: what" - unique in a run, the row of the table
    method: str
    path: str             # with placeholders
    status: int | None
    keys: list[str]       # key paths, "[]" for list elements ("[<id>]" for identified items)
    values: dict[str, Any]
    raw: Any = None       # the normalised body, for the shapes reference (not compared)

    def as_json(self) -> dict:
        return {"label": self.label, "method": self.method, "path": self.path,
                "status": self.status, "keys": self.keys, "values": self.values}


def _match(path: str, patterns) -> bool:
    import fnmatch
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _ident(item: Any) -> str | None:
    """The identity of a list element, so lists compare by item, not by order."""
    if not isinstance(item, dict):
        return None
    if "source" in item and "destination" in item:
        return (f"{item.get('source')}->{item.get('destination_type', '?')}:"
                f"{item.get('destination')}:{item.get('routing_key')}")
    if "consumer_tag" in item and "queue" in item:
        return f"consumer:{item['consumer_tag']}"
    if "user" in item and "configure" in item:
        return f"{item.get('vhost')}/{item['user']}"
    if "payload" in item and "message_count" in item:
        return None
    if "name" in item:
        return str(item["name"])
    return None


def key_paths(value: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            p = f"{prefix}.{k}" if prefix else k
            out.add(p)
            if k not in LEAF_KEYS:
                out |= key_paths(v, p)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            ident = _ident(item)
            out |= key_paths(item, f"{prefix}[{ident if ident is not None else ''}]")
    return out


def values_read(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            p = f"{prefix}.{k}" if prefix else k
            scalars = isinstance(v, list) and all(
                not isinstance(i, (dict, list)) for i in v)
            if k in VALUE_KEYS and (not isinstance(v, (dict, list)) or k in LEAF_KEYS
                                    or scalars):
                out[p] = v
            elif k not in LEAF_KEYS:
                out.update(values_read(v, p))
    elif isinstance(value, list):
        idents = [_ident(i) for i in value]
        for n, (item, ident) in enumerate(zip(value, idents)):
            out.update(values_read(item, f"{prefix}[{ident if ident is not None else n}]"))
        if value and all(i is not None for i in idents):
            out[f"{prefix}[]ids"] = sorted(idents)
    return out


class Ctx:
    """One run of the scenario against one broker."""

    def __init__(self, base_url: str, amqp_host: str, amqp_port: int,
                 auth: tuple[str, str] = ("guest", "guest"), tag: str | None = None,
                 poll_deadline: float = 20.0, keep_raw: bool = False):
        self.api = Api(base_url)
        self.amqp_host, self.amqp_port, self.auth = amqp_host, amqp_port, auth
        self.tag = tag or f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        t = self.tag
        self.names: dict[str, str] = {
            "vhost": f"mgmt-vh-{t}", "user": f"mgmt-user-{t}", "nomgmt": f"mgmt-nomgmt-{t}",
            "queue": f"mgmt-q-{t}", "queue2": f"mgmt-q2-{t}", "queue3": f"mgmt-q3-{t}",
            "exchange": f"mgmt-x-{t}", "exchange2": f"mgmt-x2-{t}",
            "conn_name": f"mgmt-conn-{t}",
        }
        self.poll_deadline = poll_deadline
        self.keep_raw = keep_raw
        self.observations: list[Observation] = []
        self.amqp: pika.BlockingConnection | None = None
        self.errors: list[str] = []

    # -- naming -------------------------------------------------------------------------------
    def path(self, template: str) -> str:
        """Fill placeholders, escaped as path segments."""
        return template.format(**{k: seg(v) for k, v in self.names.items()},
                               amqp_port=self.amqp_port)

    _PROPS_HASH = re.compile(r"~[A-Za-z0-9_-]{4,}$")
    _ADDR = re.compile(r"\b(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[?::1\]?|localhost):\d+")

    def normalise(self, value: Any) -> Any:
        if isinstance(value, str):
            s = value
            # longest names first: "mgmt-q2-..." must not become "{queue}2-..."
            for key, name in sorted(self.names.items(), key=lambda kv: -len(kv[1])):
                s = s.replace(name, "{" + key + "}")
            s = s.replace(f"/{self.amqp_port}", "/{amqp_port}")
            # A binding's properties key is "<routing key>~<hash of its arguments>"; the hash is
            # RabbitMQ's own (tools only hand it back), so only its presence is compared.
            s = self._PROPS_HASH.sub("~<hash>", s)
            return self._ADDR.sub(r"\1:<port>", s)
        if isinstance(value, dict):
            return {self.normalise(k): self.normalise(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.normalise(v) for v in value]
        return value

    # -- requests -----------------------------------------------------------------------------
    def call(self, label: str, method: str, template: str, body: Any = None, *,
             auth: Any = "default", raw: bytes | None = None,
             headers: dict[str, str] | None = None,
             keep: Callable[[Any], Any] | None = None,
             until: Callable[[Any], bool] | None = None,
             record_headers: tuple[str, ...] = ()) -> Response:
        """One request, recorded as an observation. ``keep`` filters a list body down to this
        run's objects (RabbitMQ is shared); ``until`` polls (GET only) until the body satisfies
        it, for values RabbitMQ publishes with its statistics interval."""
        a = self.auth if auth == "default" else auth
        path = self.path(template)
        deadline = time.monotonic() + self.poll_deadline
        while True:
            resp = self.api.request(method, path, body, auth=a, raw=raw, headers=headers)
            data = resp.json
            if keep is not None and isinstance(data, list):
                data = [i for i in data if keep(i)]
            if until is None or method != "GET" or time.monotonic() > deadline:
                break
            try:
                if until(data):
                    break
            except (KeyError, TypeError, IndexError):
                pass
            self.pump()
            time.sleep(0.25)
        data = self.normalise(data)
        if data is None and resp.text:
            data = {"<text>": self.normalise(resp.text)}
        values = values_read(data)
        values = {k: v for k, v in values.items() if not _match(k, VOLATILE_VALUES)}
        for h in record_headers:
            values[f"<header>{h}"] = self.normalise(resp.headers.get(h))
        keys = sorted(k for k in key_paths(data) if not _match(k, VOLATILE_PRESENCE))
        self.observations.append(Observation(label, method, template, resp.status, keys, values,
                                             data if self.keep_raw else None))
        return resp

    def note(self, label: str, values: dict[str, Any]) -> None:
        """An observation made through AMQP (what a client saw)."""
        self.observations.append(Observation(label, "AMQP", "-", None, [],
                                             self.normalise(values)))

    # -- AMQP ---------------------------------------------------------------------------------
    def connect(self, vhost: str, name: str) -> pika.BlockingConnection:
        params = pika.ConnectionParameters(
            self.amqp_host, self.amqp_port, vhost,
            pika.PlainCredentials(*self.auth), heartbeat=0, blocked_connection_timeout=None,
            client_properties={"connection_name": name})
        return pika.BlockingConnection(params)

    def pump(self) -> None:
        if self.amqp is not None and self.amqp.is_open:
            try:
                self.amqp.process_data_events(0)
            except pika.exceptions.AMQPError:
                pass


# ---------------------------------------------------------------------------------------------
# The scenario, in sections. Each section takes the Ctx; they run in order and build on each
# other's state. Section names head the labels of their observations.
# ---------------------------------------------------------------------------------------------

def in_vhost(ctx: Ctx) -> Callable[[Any], bool]:
    vh = ctx.names["vhost"]
    return lambda item: isinstance(item, dict) and item.get("vhost") == vh


def conn_in_vhost(ctx: Ctx) -> Callable[[Any], bool]:
    vh = ctx.names["vhost"]
    return lambda item: isinstance(item, dict) and (
        item.get("vhost") == vh or (item.get("connection_details") or {}).get("vhost") == vh
        or (item.get("channel_details") or {}).get("vhost") == vh)


def ours_by_name(ctx: Ctx, *extra: str) -> Callable[[Any], bool]:
    mine = set(ctx.names.values()) | set(extra)
    return lambda item: isinstance(item, dict) and item.get("name") in mine


def s_setup(ctx: Ctx) -> None:
    n = ctx.names
    ctx.call("setup: PUT vhost", "PUT", "/api/vhosts/{vhost}", {"description": "mgmt test", "tags": ""})
    ctx.call("setup: PUT vhost again", "PUT", "/api/vhosts/{vhost}", {})
    ctx.call("setup: PUT user (tags management,policymaker)", "PUT", "/api/users/{user}",
             {"password": "secret", "tags": "management,policymaker"})
    ctx.call("setup: PUT user again", "PUT", "/api/users/{user}",
             {"password": "secret", "tags": "management,policymaker"})
    ctx.call("setup: PUT user without tags", "PUT", "/api/users/{nomgmt}",
             {"password": "secret", "tags": ""})
    ctx.call("setup: PUT permissions user", "PUT", "/api/permissions/{vhost}/{user}",
             {"configure": ".*", "write": ".*", "read": ".*"})
    ctx.call("setup: PUT permissions guest", "PUT", f"/api/permissions/{{vhost}}/{seg(ctx.auth[0])}",
             {"configure": ".*", "write": ".*", "read": ".*"})
    ctx.call("setup: PUT exchange", "PUT", "/api/exchanges/{vhost}/{exchange}",
             {"type": "direct", "durable": True, "auto_delete": False, "internal": False,
              "arguments": {}})
    ctx.call("setup: PUT exchange2 (topic)", "PUT", "/api/exchanges/{vhost}/{exchange2}",
             {"type": "topic", "durable": False})
    ctx.call("setup: PUT queue", "PUT", "/api/queues/{vhost}/{queue}",
             {"durable": True, "auto_delete": False, "arguments": {"x-max-length": 100}})
    ctx.call("setup: PUT queue again, same arguments", "PUT", "/api/queues/{vhost}/{queue}",
             {"durable": True, "auto_delete": False, "arguments": {"x-max-length": 100}})
    ctx.call("setup: POST binding exchange->queue", "POST", "/api/bindings/{vhost}/e/{exchange}/q/{queue}",
             {"routing_key": "rk", "arguments": {}}, record_headers=("location",))
    ctx.call("setup: POST binding exchange->exchange2", "POST",
             "/api/bindings/{vhost}/e/{exchange}/e/{exchange2}",
             {"routing_key": "to-x2", "arguments": {"x-any": "a"}}, record_headers=("location",))

    # AMQP: one connection with two channels; three messages to {queue} through {exchange};
    # {queue2} with two messages and one prefetch-1 consumer holding one of them unacked.
    ctx.amqp = conn = ctx.connect(n["vhost"], n["conn_name"])
    ch1 = conn.channel()
    ch2 = conn.channel()
    ch1.confirm_delivery()
    for i in range(3):
        ch1.basic_publish(n["exchange"], "rk", f"message {i}".encode(),
                          pika.BasicProperties(content_type="text/plain", delivery_mode=2,
                                               headers={"i": i}))
    ch1.queue_declare(n["queue2"], durable=False, auto_delete=False)
    for i in range(2):
        ch1.basic_publish("", n["queue2"], f"q2 message {i}".encode())
    ch2.basic_qos(prefetch_count=1)
    ch2.basic_consume(n["queue2"], lambda *a: None, auto_ack=False, consumer_tag="mgmt-ctag")
    conn.process_data_events(0.2)


def s_reads(ctx: Ctx) -> None:
    """Every read endpoint on the settled set-up."""
    vh = in_vhost(ctx)
    cv = conn_in_vhost(ctx)

    def q_settled(q):
        return q["messages"] == 3 and "message_stats" in q

    def q2_settled(q):
        return (q["messages"] == 2 and q["messages_unacknowledged"] == 1 and q["consumers"] == 1
                and q.get("consumer_details"))

    ctx.call("read: GET queue", "GET", "/api/queues/{vhost}/{queue}", until=q_settled)
    ctx.call("read: GET queue2 (consumer, unacked)", "GET", "/api/queues/{vhost}/{queue2}",
             until=q2_settled)
    ctx.call("read: GET connections", "GET", "/api/connections", keep=cv,
             until=lambda cs: len(cs) == 1 and cs[0]["channels"] == 2)
    ctx.call("read: GET channels", "GET", "/api/channels", keep=cv,
             until=lambda cs: len(cs) == 2 and all("message_stats" in c for c in cs))
    ctx.call("read: GET overview", "GET", "/api/overview")
    ctx.call("read: GET whoami", "GET", "/api/whoami")
    ctx.call("read: GET nodes", "GET", "/api/nodes")
    ctx.call("read: GET vhosts", "GET", "/api/vhosts", keep=ours_by_name(ctx, "/"))
    ctx.call("read: GET vhost", "GET", "/api/vhosts/{vhost}")
    ctx.call("read: GET users", "GET", "/api/users", keep=ours_by_name(ctx, ctx.auth[0]))
    ctx.call("read: GET user", "GET", "/api/users/{user}")
    ctx.call("read: GET permissions", "GET", "/api/permissions", keep=vh)
    ctx.call("read: GET permission", "GET", "/api/permissions/{vhost}/{user}")
    ctx.call("read: GET queues", "GET", "/api/queues", keep=vh)
    ctx.call("read: GET queues in vhost", "GET", "/api/queues/{vhost}")
    ctx.call("read: GET queue bindings", "GET", "/api/queues/{vhost}/{queue}/bindings")
    ctx.call("read: GET exchanges", "GET", "/api/exchanges", keep=vh)
    ctx.call("read: GET exchanges in vhost", "GET", "/api/exchanges/{vhost}")
    ctx.call("read: GET exchange", "GET", "/api/exchanges/{vhost}/{exchange}")
    ctx.call("read: GET default exchange", "GET", "/api/exchanges/{vhost}/amq.default")
    ctx.call("read: GET exchange bindings source", "GET",
             "/api/exchanges/{vhost}/{exchange}/bindings/source")
    ctx.call("read: GET exchange2 bindings destination", "GET",
             "/api/exchanges/{vhost}/{exchange2}/bindings/destination")
    ctx.call("read: GET bindings", "GET", "/api/bindings", keep=vh)
    ctx.call("read: GET bindings in vhost", "GET", "/api/bindings/{vhost}")
    ctx.call("read: GET bindings exchange->queue", "GET",
             "/api/bindings/{vhost}/e/{exchange}/q/{queue}")
    ctx.call("read: GET binding by properties key", "GET",
             "/api/bindings/{vhost}/e/{exchange}/q/{queue}/rk")
    ctx.call("read: GET bindings exchange->exchange", "GET",
             "/api/bindings/{vhost}/e/{exchange}/e/{exchange2}")
    ctx.call("read: GET consumers", "GET", "/api/consumers", keep=lambda c: isinstance(c, dict)
             and (c.get("queue") or {}).get("vhost") == ctx.names["vhost"])
    ctx.call("read: GET consumers in vhost", "GET", "/api/consumers/{vhost}")
    conns = ctx.api.request("GET", "/api/connections", auth=ctx.auth).json or []
    mine = [c for c in conns if c.get("vhost") == ctx.names["vhost"]]
    if mine:
        ctx.names["conn"] = mine[0]["name"]
        ctx.call("read: GET connection", "GET", "/api/connections/{conn}")
        ctx.call("read: GET connection channels", "GET", "/api/connections/{conn}/channels")
    else:
        ctx.errors.append("no connection of this run listed by GET /api/connections")
    ctx.call("read: GET vhost connections", "GET", "/api/vhosts/{vhost}/connections")
    ctx.call("read: GET vhost channels", "GET", "/api/vhosts/{vhost}/channels")
    ctx.call("read: GET vhost permissions", "GET", "/api/vhosts/{vhost}/permissions")
    ctx.call("read: GET user permissions", "GET", "/api/users/{user}/permissions")


def s_messages(ctx: Ctx) -> None:
    pub = {"properties": {"delivery_mode": 2, "headers": {"h": "v"}, "content_type": "text/plain"},
           "routing_key": "rk", "payload": "via api", "payload_encoding": "string"}
    ctx.call("messages: POST publish routed", "POST", "/api/exchanges/{vhost}/{exchange}/publish", pub)
    ctx.call("messages: POST publish unroutable", "POST",
             "/api/exchanges/{vhost}/{exchange}/publish", dict(pub, routing_key="nowhere"))
    ctx.call("messages: POST publish default exchange", "POST",
             "/api/exchanges/{vhost}/amq.default/publish",
             {"properties": {}, "routing_key": ctx.names["queue"], "payload": "aGVsbG8=",
              "payload_encoding": "base64"})
    ctx.call("messages: POST publish bad encoding", "POST",
             "/api/exchanges/{vhost}/{exchange}/publish", dict(pub, payload_encoding="rot13"))
    ctx.call("messages: POST publish unknown exchange", "POST",
             "/api/exchanges/{vhost}/no-such-exchange/publish", pub)
    ctx.call("messages: GET queue after publish", "GET", "/api/queues/{vhost}/{queue}",
             until=lambda q: q["messages"] == 5)
    ctx.call("messages: POST get requeue", "POST", "/api/queues/{vhost}/{queue}/get",
             {"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000})
    ctx.call("messages: POST get requeue again (redelivered)", "POST",
             "/api/queues/{vhost}/{queue}/get",
             {"count": 1, "ackmode": "ack_requeue_true", "encoding": "base64"})
    ctx.call("messages: POST get truncate", "POST", "/api/queues/{vhost}/{queue}/get",
             {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 3})
    ctx.call("messages: POST get ack (removes)", "POST", "/api/queues/{vhost}/{queue}/get",
             {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"})
    ctx.call("messages: GET queue after get", "GET", "/api/queues/{vhost}/{queue}",
             until=lambda q: q["messages"] == 4)
    ctx.call("messages: DELETE contents (purge)", "DELETE", "/api/queues/{vhost}/{queue}/contents")
    ctx.call("messages: GET queue after purge", "GET", "/api/queues/{vhost}/{queue}",
             until=lambda q: q["messages"] == 0)
    ctx.call("messages: POST get empty queue", "POST", "/api/queues/{vhost}/{queue}/get",
             {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"})


def s_bindings(ctx: Ctx) -> None:
    ctx.call("bindings: POST second binding", "POST", "/api/bindings/{vhost}/e/{exchange}/q/{queue}",
             {"routing_key": "rk2", "arguments": {"x-match": "all", "k": 1}},
             record_headers=("location",))
    ctx.call("bindings: GET bindings exchange->queue", "GET",
             "/api/bindings/{vhost}/e/{exchange}/q/{queue}")
    props = [b.get("properties_key") for b in
             ctx.api.request("GET", ctx.path("/api/bindings/{vhost}/e/{exchange}/q/{queue}"),
                             auth=ctx.auth).json or [] if b.get("routing_key") == "rk2"]
    if props:
        ctx.call("bindings: GET binding with arguments", "GET",
                 "/api/bindings/{vhost}/e/{exchange}/q/{queue}/" + seg(props[0]))
        ctx.call("bindings: DELETE binding with arguments", "DELETE",
                 "/api/bindings/{vhost}/e/{exchange}/q/{queue}/" + seg(props[0]))
    else:
        ctx.errors.append("binding with routing key rk2 not listed")
    ctx.call("bindings: DELETE binding rk", "DELETE", "/api/bindings/{vhost}/e/{exchange}/q/{queue}/rk")
    ctx.call("bindings: GET deleted binding", "GET", "/api/bindings/{vhost}/e/{exchange}/q/{queue}/rk")
    ctx.call("bindings: DELETE deleted binding", "DELETE",
             "/api/bindings/{vhost}/e/{exchange}/q/{queue}/rk")
    ctx.call("bindings: POST binding to unknown queue", "POST",
             "/api/bindings/{vhost}/e/{exchange}/q/no-such-queue", {"routing_key": "x"})
    ctx.call("bindings: POST binding, no body", "POST",
             "/api/bindings/{vhost}/e/{exchange}/q/{queue}", raw=b"")
    ctx.call("bindings: GET queue bindings after", "GET", "/api/queues/{vhost}/{queue}/bindings")


def s_errors(ctx: Ctx) -> None:
    n = ctx.names
    ctx.call("errors: GET overview without auth", "GET", "/api/overview", auth=None,
             record_headers=("www-authenticate",))
    ctx.call("errors: GET overview bad password", "GET", "/api/overview",
             auth=(ctx.auth[0], "wrong-password"))
    ctx.call("errors: GET overview user without tags", "GET", "/api/overview",
             auth=(n["nomgmt"], "secret"))
    ctx.call("errors: GET queues as management user", "GET", "/api/queues",
             auth=(n["user"], "secret"), keep=in_vhost(ctx))
    ctx.call("errors: GET users as management user", "GET", "/api/users", auth=(n["user"], "secret"))
    ctx.call("errors: GET whoami management user", "GET", "/api/whoami", auth=(n["user"], "secret"))
    ctx.call("errors: GET unknown queue", "GET", "/api/queues/{vhost}/no-such-queue")
    ctx.call("errors: GET queue in unknown vhost", "GET", "/api/queues/no-such-vhost/q")
    ctx.call("errors: GET unknown exchange", "GET", "/api/exchanges/{vhost}/no-such-exchange")
    ctx.call("errors: GET unknown user", "GET", "/api/users/no-such-user")
    ctx.call("errors: GET unknown vhost", "GET", "/api/vhosts/no-such-vhost")
    ctx.call("errors: GET unknown permission", "GET", "/api/permissions/{vhost}/no-such-user")
    ctx.call("errors: GET unknown connection", "GET", "/api/connections/no-such-connection")
    ctx.call("errors: GET unknown endpoint", "GET", "/api/no-such-endpoint")
    ctx.call("errors: PUT queue bad JSON", "PUT", "/api/queues/{vhost}/{queue3}", raw=b"{not json")
    ctx.call("errors: PUT queue other arguments", "PUT", "/api/queues/{vhost}/{queue}",
             {"durable": True, "auto_delete": False, "arguments": {"x-max-length": 5}})
    ctx.call("errors: PUT queue other durable", "PUT", "/api/queues/{vhost}/{queue}",
             {"durable": False, "arguments": {"x-max-length": 100}})
    ctx.call("errors: PUT queue bad argument", "PUT", "/api/queues/{vhost}/{queue3}",
             {"durable": False, "arguments": {"x-max-length": "many"}})
    ctx.call("errors: PUT exchange other type", "PUT", "/api/exchanges/{vhost}/{exchange}",
             {"type": "fanout", "durable": True})
    ctx.call("errors: PUT exchange unknown type", "PUT", "/api/exchanges/{vhost}/{queue3}",
             {"type": "no-such-type"})
    ctx.call("errors: PUT exchange amq. prefix", "PUT", "/api/exchanges/{vhost}/amq.mine",
             {"type": "direct"})
    ctx.call("errors: PUT queue in unknown vhost", "PUT", "/api/queues/no-such-vhost/{queue3}",
             {"durable": False})
    ctx.call("errors: PUT user without password", "PUT", "/api/users/{queue3}", {"tags": ""})
    ctx.call("errors: PUT permissions unknown user", "PUT", "/api/permissions/{vhost}/no-such-user",
             {"configure": ".*", "write": ".*", "read": ".*"})
    ctx.call("errors: PUT permissions bad regex", "PUT", "/api/permissions/{vhost}/{user}",
             {"configure": "(", "write": ".*", "read": ".*"})
    ctx.call("errors: DELETE unknown vhost", "DELETE", "/api/vhosts/no-such-vhost")
    ctx.call("errors: DELETE unknown queue", "DELETE", "/api/queues/{vhost}/no-such-queue")
    ctx.call("errors: DELETE unknown exchange", "DELETE", "/api/exchanges/{vhost}/no-such-exchange")
    ctx.call("errors: DELETE unknown user", "DELETE", "/api/users/no-such-user")
    ctx.call("errors: DELETE queue if-empty (not empty)", "DELETE",
             "/api/queues/{vhost}/{queue2}?if-empty=true")
    ctx.call("errors: DELETE queue if-unused (in use)", "DELETE",
             "/api/queues/{vhost}/{queue2}?if-unused=true")
    ctx.call("errors: POST get unknown queue", "POST", "/api/queues/{vhost}/no-such-queue/get",
             {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})
    ctx.call("errors: DELETE default exchange", "DELETE", "/api/exchanges/{vhost}/amq.default")


def s_health(ctx: Ctx) -> None:
    ctx.call("health: GET healthchecks/node", "GET", "/api/healthchecks/node")
    ctx.call("health: GET alarms", "GET", "/api/health/checks/alarms")
    ctx.call("health: GET port-listener (AMQP port)", "GET",
             "/api/health/checks/port-listener/{amqp_port}")
    ctx.call("health: GET port-listener (not listened)", "GET", "/api/health/checks/port-listener/1")
    ctx.call("health: GET virtual-hosts", "GET", "/api/health/checks/virtual-hosts")
    ctx.call("health: GET aliveness-test", "GET", "/api/aliveness-test/{vhost}")
    ctx.call("health: GET aliveness-test unknown vhost", "GET", "/api/aliveness-test/no-such-vhost")


def s_definitions(ctx: Ctx) -> None:
    n = ctx.names
    ctx.call("definitions: GET", "GET", "/api/definitions")
    ctx.observations[-1] = _filter_definitions(ctx, ctx.observations[-1])
    ctx.call("definitions: GET vhost", "GET", "/api/definitions/{vhost}")
    defs = {"queues": [{"name": n["queue3"], "vhost": n["vhost"], "durable": True,
                        "auto_delete": False, "arguments": {"x-message-ttl": 60000}}],
            "exchanges": [], "bindings": [{"source": n["exchange"], "vhost": n["vhost"],
                                          "destination": n["queue3"], "destination_type": "queue",
                                          "routing_key": "imported", "arguments": {}}]}
    ctx.call("definitions: POST import", "POST", "/api/definitions", defs)
    ctx.call("definitions: GET imported queue", "GET", "/api/queues/{vhost}/{queue3}")
    ctx.call("definitions: GET imported binding", "GET",
             "/api/bindings/{vhost}/e/{exchange}/q/{queue3}")
    ctx.call("definitions: POST import bad JSON", "POST", "/api/definitions", raw=b"{nope")
    ctx.call("definitions: DELETE imported queue", "DELETE", "/api/queues/{vhost}/{queue3}")
    # rabbitmqadmin -V VHOST import: the vhost's definitions, without "vhost" keys.
    vdefs = {"queues": [{"name": n["queue3"], "durable": False, "auto_delete": False,
                         "arguments": {"x-max-priority": 5}}],
             "exchanges": [{"name": n["exchange2"], "type": "topic", "durable": False,
                            "auto_delete": False, "internal": False, "arguments": {}}],
             "bindings": []}
    ctx.call("definitions: POST vhost import", "POST", "/api/definitions/{vhost}", vdefs)
    ctx.call("definitions: GET queue imported into vhost", "GET", "/api/queues/{vhost}/{queue3}")
    ctx.call("definitions: DELETE queue imported into vhost", "DELETE",
             "/api/queues/{vhost}/{queue3}")


def _filter_definitions(ctx: Ctx, obs: Observation) -> Observation:
    """GET /api/definitions covers the whole (shared) broker: keep this run's objects only."""
    keys = [k for k in obs.keys if "[" not in k or "{" in k.split("[", 1)[1].split("]")[0]]
    values = {k: v for k, v in obs.values.items()
              if ("[" not in k or "{" in k.split("[", 1)[1].split("]")[0]) and not k.endswith("ids")}
    raw = obs.raw
    if isinstance(raw, dict):
        raw = {k: ([i for i in v if "{" in str(_ident(i) or i)] if isinstance(v, list) else v)
               for k, v in raw.items()}
    return dataclasses.replace(obs, keys=keys, values=values, raw=raw)


def s_connection_close(ctx: Ctx) -> None:
    """DELETE /api/connections/{name} with X-Reason: the client sees 320 and the reason."""
    conn = ctx.amqp
    name = ctx.names.get("conn")
    if conn is None or name is None:
        ctx.errors.append("no connection to close")
        return
    seen: dict[str, Any] = {}
    ctx.call("connections: DELETE with X-Reason", "DELETE", "/api/connections/{conn}",
             headers={"X-Reason": "closed by the management test"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            conn.process_data_events(0.2)
        except pika.exceptions.ConnectionClosedByBroker as exc:
            seen = {"reply_code": exc.reply_code, "reply_text": exc.reply_text}
            break
        except (pika.exceptions.AMQPError, ValueError) as exc:
            # pika sometimes reports the close it already processed as a ValueError from its
            # closed timer heap; the close itself is kept on the connection.
            closed = getattr(getattr(conn, "_closed_result", None), "value", None)
            err = getattr(closed, "error", None)
            if isinstance(err, pika.exceptions.ConnectionClosedByBroker):
                seen = {"reply_code": err.reply_code, "reply_text": err.reply_text}
            else:
                seen = {"error": type(exc).__name__, "reply_text": str(exc)}
            break
    else:
        seen = {"error": "connection still open after 10 s"}
    ctx.note("connections: client sees close", seen)
    ctx.amqp = None
    ctx.call("connections: GET closed connection", "GET", "/api/connections/{conn}",
             until=lambda c: isinstance(c, dict) and c.get("error") == "Object Not Found")
    ctx.call("connections: GET consumers after close", "GET", "/api/consumers/{vhost}",
             until=lambda cs: cs == [])


def s_cleanup(ctx: Ctx) -> None:
    ctx.call("cleanup: DELETE queue2", "DELETE", "/api/queues/{vhost}/{queue2}")
    ctx.call("cleanup: DELETE queue", "DELETE", "/api/queues/{vhost}/{queue}")
    ctx.call("cleanup: DELETE queue again", "DELETE", "/api/queues/{vhost}/{queue}")
    ctx.call("cleanup: DELETE exchange2", "DELETE", "/api/exchanges/{vhost}/{exchange2}")
    ctx.call("cleanup: DELETE exchange", "DELETE", "/api/exchanges/{vhost}/{exchange}")
    ctx.call("cleanup: DELETE permissions", "DELETE", "/api/permissions/{vhost}/{user}")
    ctx.call("cleanup: DELETE user", "DELETE", "/api/users/{user}")
    ctx.call("cleanup: DELETE user without tags", "DELETE", "/api/users/{nomgmt}")
    ctx.call("cleanup: DELETE vhost", "DELETE", "/api/vhosts/{vhost}")
    ctx.call("cleanup: GET deleted vhost", "GET", "/api/vhosts/{vhost}")


SECTIONS: list[tuple[str, Callable[[Ctx], None]]] = [
    ("setup", s_setup), ("read", s_reads), ("messages", s_messages), ("bindings", s_bindings),
    ("errors", s_errors), ("health", s_health), ("definitions", s_definitions),
    ("connections", s_connection_close), ("cleanup", s_cleanup),
]


def force_cleanup(ctx: Ctx) -> None:
    """Whatever a failed run left: users and the vhost (deleting it deletes all inside)."""
    if ctx.amqp is not None:
        try:
            ctx.amqp.close()
        except Exception:  # noqa: BLE001 - already closed or broken: nothing left to free
            pass
    for template in ("/api/users/{user}", "/api/users/{nomgmt}", "/api/users/{queue3}",
                     "/api/vhosts/{vhost}"):
        try:
            ctx.api.request("DELETE", ctx.path(template), auth=ctx.auth)
        except OSError:
            pass


def run(base_url: str, amqp_host: str, amqp_port: int, *, auth=("guest", "guest"),
        keep_raw: bool = False, poll_deadline: float = 20.0) -> Ctx:
    """The whole scenario on one broker; always cleans up."""
    ctx = Ctx(base_url, amqp_host, amqp_port, auth=auth, keep_raw=keep_raw,
              poll_deadline=poll_deadline)
    try:
        # Node names show up in keys (/api/nodes items, cluster_state): written as {node}.
        ov = ctx.api.request("GET", "/api/overview", auth=auth).json
        if isinstance(ov, dict) and ov.get("node"):
            ctx.names["node"] = ov["node"]
        for name, section in SECTIONS:
            try:
                section(ctx)
            except Exception as exc:  # noqa: BLE001 - reported as a difference, run goes on
                ctx.errors.append(f"section {name}: {type(exc).__name__}: {exc}")
    finally:
        force_cleanup(ctx)
    return ctx
