"""RabbitMQ 3.10's management HTTP API (``/api/...``) over :class:`~amqp_broker.broker.admin.Admin`.

Everything here is about HTTP: which path and method do what, who may do it (RabbitMQ's user
tags), how a request body reads and how an answer is shaped (the fields RabbitMQ adds to the
core's snapshots, ``columns``, ``sort``, pagination). What there is to see and do comes from
:class:`Admin` alone.

Access follows rabbit_mgmt_util and rabbit_web_dispatch_access_control:

* any user with a management tag (``management``, ``policymaker``, ``monitoring``,
  ``administrator``) may use the API; others get 401 "Not management user";
* ``administrator`` sees everything; users, permissions, definitions and a vhost's own page
  need it;
* queues, exchanges, bindings and consumers are shown to other users only in the vhosts they have
  permissions on, and a path naming another vhost is refused;
* acting in a vhost (declaring, deleting, purging, getting, publishing, binding) is decided by
  the acting user's permissions there, administrators included, in the core (Admin's ``user``);
* ``loopback_users`` may log in only from a loopback address (the HTTP client's);
* connections and channels: ``monitoring`` (and ``administrator``) see everyone's, other users
  their own; closing another user's connection needs ``administrator``;
* the node (``/api/nodes``) needs ``monitoring``; the vhost list shows a monitoring user every
  vhost.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import math
import re
from typing import Any, Callable
from urllib.parse import quote

from ..broker.access import LOOPBACK_HINT
from ..broker.admin import DEFAULT_CLOSE_REASON, Admin, AdminError
from .http import Request, Response
from .router import Router

log = logging.getLogger("amqp_broker.management")

#: What RabbitMQ's management API reports as its version (tools pick features by it).
RABBITMQ_VERSION = "3.10.8"
REALM = 'Basic realm="RabbitMQ Management"'
MANAGEMENT_TAGS = frozenset({"administrator", "monitoring", "policymaker", "management"})
# The headers of every JSON answer of RabbitMQ's API.
JSON_HEADERS = [("cache-control", "no-cache"), ("vary", "accept, accept-encoding, origin")]
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500

# Access rules (see the module docstring).
ANY = "any"
MONITOR = "monitor"
ADMIN = "admin"
VHOST = "vhost"

EXCHANGE_TYPES = [
    {"name": name, "description": f"AMQP {name} exchange, as per the AMQP specification",
     "enabled": True}
    for name in ("direct", "fanout", "headers", "topic")
] + [
    {"name": "x-consistent-hash", "description": "Consistent Hashing Exchange", "enabled": True},
    {"name": "x-delayed-message", "description": "Delayed Message Exchange.", "enabled": True},
]
PROPERTY_NAMES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
                  "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
                  "user_id", "app_id", "cluster_id")
INT_PROPERTIES = ("delivery_mode", "priority", "timestamp")
ACKMODES = {
    "ack_requeue_true": (True, False),
    "reject_requeue_true": (True, True),
    "ack_requeue_false": (False, False),
    "reject_requeue_false": (False, True),
}
PROTOCOL_ALIASES = {
    "amqp": "amqp", "amqp091": "amqp", "amqp0.9.1": "amqp", "amqp0-9-1": "amqp",
    "amqps": "amqp/ssl", "amqp/ssl": "amqp/ssl",
    "http": "http", "management": "http",
    "prometheus": "http/prometheus", "http/prometheus": "http/prometheus",
    **dict.fromkeys(("mqtt", "mqtt3.1", "mqtt3.1.1", "mqtt31", "mqtt311", "mqtt3_1", "mqtt3_1_1"), "mqtt"),
}


class ApiError(Exception):
    """An error answer: ``{"error": error, "reason": reason}`` with ``status``."""

    def __init__(self, status: int, error: str, reason: Any, headers: list | None = None,
                 body: bool = True):
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers or []
        self.body = body

    def response(self) -> Response:
        if not self.body:
            return Response(self.status, b"", self.headers)
        return Response.json({"error": self.error, "reason": self.reason}, self.status, self.headers)


def not_found() -> ApiError:
    return ApiError(404, "Object Not Found", "Not Found")


def bad_request(reason: Any) -> ApiError:
    return ApiError(400, "bad_request", reason)


def not_authorised(reason: str) -> ApiError:
    return ApiError(401, "not_authorised", reason)


def from_admin(exc: AdminError) -> ApiError:
    """An Admin failure as RabbitMQ's API answers it."""
    if exc.kind == "not_found":
        return not_found()
    if exc.kind == "not_authorised":
        return not_authorised(exc.reason)
    return bad_request(_strip_code(exc.reason))


def _strip_code(text: str) -> str:
    """RabbitMQ's API gives an AMQP error's explanation without its "CODE - " prefix."""
    return re.sub(r"^[A-Z_]+ - ", "", text)


class Caller:
    """The authenticated user of a request."""

    def __init__(self, name: str, tags: list[str]):
        self.name = name
        self.tags = list(tags)
        self.is_admin = "administrator" in tags
        self.is_monitor = self.is_admin or "monitoring" in tags


class Call:
    """One request on its way through a handler."""

    def __init__(self, request: Request, caller: Caller, params: dict[str, str]):
        self.request = request
        self.caller = caller
        self.params = params
        self.query = request.query


Handler = Callable[..., Any]


class ManagementApi:
    """The ``/api`` part of the management server: ``api(request) -> Response``."""

    def __init__(self, admin: Admin, faults: Any = None):
        self.admin = admin
        self._node_name: str | None = None
        self.router = Router()
        self._add_routes()
        if faults is not None:  # the broker's fault injection (not RabbitMQ's API)
            from .faults_api import add_fault_routes

            add_fault_routes(self, faults)

    # -- dispatch -------------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        try:
            return self._dispatch(request)
        except ApiError as exc:
            return exc.response()
        except AdminError as exc:
            return from_admin(exc).response()

    def _dispatch(self, request: Request) -> Response:
        found = self.router.match(request.path)
        if found is None:
            raise not_found()
        route, params = found
        method = "GET" if request.method == "HEAD" else request.method
        if method == "OPTIONS":
            return Response(200, b"", [("allow", route.allow)])
        if method not in route.methods:
            raise ApiError(405, "", "", [("allow", route.allow)], body=False)
        rule, handler = route.methods[method]
        for key in ("exchange", "source", "destination"):
            if params.get(key) == "amq.default":
                params[key] = ""
        caller = self._authenticate(request)
        self._authorize(rule, caller, params)
        call = Call(request, caller, params)
        result = handler(call, **params)
        if isinstance(result, Response):
            return result
        return Response.json(result, 200, JSON_HEADERS)

    def _authenticate(self, request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise ApiError(401, "", "", [("www-authenticate", REALM)], body=False)
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise ApiError(401, "", "", [("www-authenticate", REALM)], body=False)
        found = self.admin.authenticate_user(user, password)
        if found is None:
            raise ApiError(401, "not_authorized", "Login failed", [("www-authenticate", REALM)])
        # RabbitMQ checks loopback_users against the HTTP client's address (on AMQP, against
        # the connection's own end), after the password and before the tags.
        refusal = self.admin.login_refusal(user, request.peer.rpartition(":")[0].strip("[]"))
        if refusal is not None:
            log.warning("%s: HTTP login refused: %s (%s)", request.peer, refusal, LOOPBACK_HINT)
            raise not_authorised("User can only log in via localhost")
        if not MANAGEMENT_TAGS.intersection(found["tags"]):
            raise not_authorised("Not management user")
        return Caller(found["name"], found["tags"])

    def _authorize(self, rule: str, caller: Caller, params: dict[str, str]) -> None:
        if rule == ANY or caller.is_admin:
            return
        if rule == MONITOR:
            if not caller.is_monitor:
                raise not_authorised("Not monitor user")
        elif rule == ADMIN:
            raise not_authorised("Not administrator user")
        elif rule == VHOST:
            vhost = params.get("vhost")
            if vhost is None or vhost not in self.admin.vhost_names():
                return  # a missing vhost is answered 404 by the handler
            if vhost not in self.admin.user_vhosts(caller.name):
                raise not_authorised("User not authorised to access virtual host")

    # -- helpers --------------------------------------------------------------------------------

    @property
    def cluster(self) -> str:
        return str(self.admin.node_info().get("cluster_name", "")) or self.node

    @property
    def node(self) -> str:
        if self._node_name is None:
            self._node_name = str(self.admin.node_info().get("name", ""))
        return self._node_name

    def _vhost_rows(self) -> list[dict]:
        return self.admin.vhosts()

    def _check_vhost(self, vhost: str) -> None:
        if vhost not in self.admin.vhost_names():
            raise not_found()

    def _login_vhosts(self, caller: Caller) -> set[str] | None:
        """The vhosts whose objects ``caller`` sees in lists; None for all (administrators)."""
        return None if caller.is_admin else set(self.admin.user_vhosts(caller.name))

    def _visible_vhosts(self, caller: Caller) -> set[str] | None:
        """The vhosts ``caller`` sees in the vhost list and totals; None for all."""
        return None if caller.is_monitor else set(self.admin.user_vhosts(caller.name))

    def _in_vhosts(self, call: Call, rows: list[dict]) -> list[dict]:
        allowed = self._login_vhosts(call.caller)
        return rows if allowed is None else [r for r in rows if r.get("vhost") in allowed]

    def _own(self, call: Call, rows: list[dict]) -> list[dict]:
        """Connections and channels: a monitoring user sees all, others their own."""
        if call.caller.is_monitor:
            return rows
        return [r for r in rows if r.get("user") == call.caller.name]

    def _body(self, call: Call, error: str = "not_json") -> dict:
        raw = call.request.body.strip()
        if raw in (b"", b"null", b"undefined"):
            return {}
        try:
            value = json.loads(raw)
            # JSON may spell lone surrogates ("\ud800"), which are no text: names and arguments
            # holding one could never be encoded again (on AMQP, on disk).
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except (ValueError, UnicodeError):
            raise bad_request(error) from None
        if not isinstance(value, dict):
            raise bad_request(error)
        return value

    def _reply(self, call: Call, value: Any) -> Any:
        return _columns(value, _parse_columns(call.query.get("columns")))

    def _reply_list(self, call: Call, rows: list[dict], default_sort: tuple[str, ...] = ("vhost", "name")
                    ) -> Any:
        """A list as RabbitMQ's reply_list: sorted (``sort``, ``sort_reverse``), paginated when
        ``page`` is given (filtered by ``name``, ``use_regex``), then cut to ``columns``."""
        query = call.query
        sort = query.get("sort")
        if sort != "":  # an empty sort asks for no sorting at all, reversed or not
            keys = [sort] if sort else []
            keys += [k for k in default_sort if k not in keys]
            rows = _sorted(rows, keys)
            if query.get("sort_reverse") == "true":
                rows.reverse()
        columns = _parse_columns(query.get("columns"))
        page = _pagination(query)
        if page is None:
            return _columns(rows, columns)
        number, size = page
        name = query.get("name") or ""
        filtered = rows
        if name:
            filtered = [row for row in rows if _name_matches(row.get("name"), name,
                                                             query.get("use_regex") == "true")]
        start = (number - 1) * size
        if start > len(filtered):
            raise ApiError(400, "page_out_of_range", f"Page out of range, page: {number} page size: "
                           f"{size}, len: {len(filtered)}")
        items = filtered[start:start + size]
        return {
            "filtered_count": len(filtered),
            "item_count": len(items),
            "items": _columns(items, columns),
            "page": number,
            "page_count": (len(filtered) + size - 1) // size,
            "page_size": size,
            "total_count": len(rows),
        }

    def _created(self, created: bool, headers: list | None = None) -> Response:
        return Response(201 if created else 204, b"", headers or [])

    @staticmethod
    def _no_content() -> Response:
        return Response(204)

    # -- routes ---------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        add = self.router.add
        add("/api/overview", GET=(ANY, self.overview))
        add("/api/cluster-name", GET=(ANY, self.cluster_name))
        add("/api/whoami", GET=(ANY, self.whoami))
        add("/api/nodes", GET=(MONITOR, self.nodes))
        add("/api/nodes/{node}", GET=(MONITOR, self.one_node))
        add("/api/extensions", GET=(ANY, lambda call: []))
        add("/api/vhosts", GET=(ANY, self.vhosts))
        # One vhost's page is for administrators only, even to users with permissions on it
        # (RabbitMQ 3.10); the list shows them theirs.
        add("/api/vhosts/{vhost}", GET=(ADMIN, self.vhost), PUT=(ADMIN, self.put_vhost),
            DELETE=(ADMIN, self.delete_vhost))
        add("/api/vhosts/{vhost}/permissions", GET=(ADMIN, self.vhost_permissions))
        add("/api/vhosts/{vhost}/connections", GET=(VHOST, self.vhost_connections))
        add("/api/vhosts/{vhost}/channels", GET=(VHOST, self.vhost_channels))
        add("/api/users", GET=(ADMIN, self.users))
        add("/api/users/{user}", GET=(ADMIN, self.user), PUT=(ADMIN, self.put_user),
            DELETE=(ADMIN, self.delete_user))
        add("/api/users/{user}/permissions", GET=(ADMIN, self.user_permissions))
        add("/api/permissions", GET=(ADMIN, self.permissions))
        add("/api/permissions/{vhost}/{user}", GET=(ADMIN, self.permission),
            PUT=(ADMIN, self.put_permission), DELETE=(ADMIN, self.delete_permission))
        add("/api/topic-permissions", GET=(ADMIN, self.all_topic_permissions))
        add("/api/topic-permissions/{vhost}/{user}", GET=(ADMIN, self.topic_permission),
            PUT=(ADMIN, self.put_topic_permission), DELETE=(ADMIN, self.delete_topic_permission))
        add("/api/vhosts/{vhost}/topic-permissions", GET=(ADMIN, self.vhost_topic_permissions))
        add("/api/users/{user}/topic-permissions", GET=(ADMIN, self.user_topic_permissions))
        add("/api/queues", GET=(ANY, self.queues))
        add("/api/queues/{vhost}", GET=(VHOST, self.queues))
        add("/api/queues/{vhost}/{queue}", GET=(VHOST, self.queue), PUT=(VHOST, self.put_queue),
            DELETE=(VHOST, self.delete_queue))
        add("/api/queues/{vhost}/{queue}/bindings", GET=(VHOST, self.queue_bindings))
        add("/api/queues/{vhost}/{queue}/contents", DELETE=(VHOST, self.purge_queue))
        add("/api/queues/{vhost}/{queue}/get", POST=(VHOST, self.get_messages))
        add("/api/exchanges", GET=(ANY, self.exchanges))
        add("/api/exchanges/{vhost}", GET=(VHOST, self.exchanges))
        add("/api/exchanges/{vhost}/{exchange}", GET=(VHOST, self.exchange),
            PUT=(VHOST, self.put_exchange), DELETE=(VHOST, self.delete_exchange))
        add("/api/exchanges/{vhost}/{exchange}/publish", POST=(VHOST, self.publish))
        add("/api/exchanges/{vhost}/{exchange}/bindings/source",
            GET=(VHOST, self.exchange_bindings_source))
        add("/api/exchanges/{vhost}/{exchange}/bindings/destination",
            GET=(VHOST, self.exchange_bindings_destination))
        add("/api/bindings", GET=(ANY, self.bindings))
        add("/api/bindings/{vhost}", GET=(VHOST, self.bindings))
        for kind, short in (("queue", "q"), ("exchange", "e")):
            add(f"/api/bindings/{{vhost}}/e/{{source}}/{short}/{{destination}}",
                GET=(VHOST, self._between(kind)), POST=(VHOST, self._bind(kind)))
            add(f"/api/bindings/{{vhost}}/e/{{source}}/{short}/{{destination}}/{{props}}",
                GET=(VHOST, self._binding(kind)), DELETE=(VHOST, self._unbind(kind)))
        add("/api/connections", GET=(ANY, self.connections))
        add("/api/connections/{connection}", GET=(ANY, self.connection),
            DELETE=(ANY, self.close_connection))
        add("/api/connections/{connection}/channels", GET=(ANY, self.connection_channels))
        # Not RabbitMQ's: a connection's frame trace (server/trace.py). Under a prefix of our own,
        # clear of RabbitMQ's paths (its tracing plugin has /api/traces and /api/trace-files).
        add("/api/amqp-broker/connections/{connection}/trace", GET=(ADMIN, self.connection_trace),
            PUT=(ADMIN, self.put_connection_trace), DELETE=(ADMIN, self.delete_connection_trace))
        add("/api/channels", GET=(ANY, self.channels))
        add("/api/channels/{channel}", GET=(ANY, self.channel))
        add("/api/consumers", GET=(ANY, self.consumers))
        # RabbitMQ lists a vhost's consumers to any management user: those it may see.
        add("/api/consumers/{vhost}", GET=(ANY, self.consumers))
        add("/api/definitions", GET=(ADMIN, self.definitions), POST=(ADMIN, self.import_definitions))
        add("/api/definitions/{vhost}", GET=(ADMIN, self.definitions),
            POST=(ADMIN, self.import_definitions))
        add("/api/healthchecks/node", GET=(ANY, self.health_node))
        add("/api/healthchecks/node/{node}", GET=(ANY, self.health_node))
        add("/api/health/checks/alarms", GET=(ANY, self.health_alarms))
        add("/api/health/checks/local-alarms", GET=(ANY, self.health_local_alarms))
        add("/api/health/checks/port-listener/{port}", GET=(ANY, self.health_port))
        add("/api/health/checks/protocol-listener/{protocol}", GET=(ANY, self.health_protocol))
        add("/api/health/checks/virtual-hosts", GET=(ANY, self.health_vhosts))
        add("/api/aliveness-test/{vhost}", GET=(VHOST, self.aliveness))
        # What rabbitmqadmin and the page list but this broker does not have: empty lists, no
        # single one (404), and writes refused as not allowed (405) rather than unknown paths.
        for path in ("/api/policies", "/api/policies/{vhost}", "/api/operator-policies",
                     "/api/operator-policies/{vhost}", "/api/global-parameters"):
            add(path, GET=(ANY, self._empty_list))
        for path in ("/api/policies/{vhost}/{name}", "/api/operator-policies/{vhost}/{name}",
                     "/api/global-parameters/{name}"):
            add(path, GET=(ANY, self._none))
        # The only runtime parameters here are vhost limits (component vhost-limits, name limits).
        for path in ("/api/parameters", "/api/parameters/{component}", "/api/parameters/{component}/{vhost}"):
            add(path, GET=(ANY, self.parameters))
        add("/api/parameters/{component}/{vhost}/{name}", GET=(ANY, self.parameter))
        # Limits: any management user reads those of the vhosts it sees (RabbitMQ's
        # is_authorized_vhost_visible, user limits included); only administrators change them.
        add("/api/vhost-limits", GET=(ANY, self.vhost_limits))
        add("/api/vhost-limits/{vhost}", GET=(VHOST, self.vhost_limits))
        add("/api/vhost-limits/{vhost}/{name}", PUT=(ADMIN, self.put_vhost_limit),
            DELETE=(ADMIN, self.delete_vhost_limit))
        add("/api/user-limits", GET=(ANY, self.user_limits))
        add("/api/user-limits/{user}", GET=(ANY, self.user_limits))
        add("/api/user-limits/{user}/{name}", PUT=(ADMIN, self.put_user_limit),
            DELETE=(ADMIN, self.delete_user_limit))

    # -- limits ---------------------------------------------------------------------------------

    def vhost_limits(self, call: Call, vhost: str | None = None) -> Any:
        rows = self.admin.vhost_limits(vhost)
        if vhost is None:
            visible = self._visible_vhosts(call.caller)
            rows = rows if visible is None else [r for r in rows if r["vhost"] in visible]
        return self._reply_list(call, rows, ("vhost",))

    def _limit_parameters(self, call: Call) -> list[dict]:
        visible = self._login_vhosts(call.caller)
        return [{"value": row["value"], "vhost": row["vhost"], "component": "vhost-limits", "name": "limits"}
                for row in self.admin.vhost_limits() if visible is None or row["vhost"] in visible]

    def parameters(self, call: Call, component: str | None = None, vhost: str | None = None) -> Any:
        if vhost is not None:
            self._check_vhost(vhost)
        rows = self._limit_parameters(call) if component in (None, "vhost-limits") else []
        return self._reply_list(call, [r for r in rows if vhost is None or r["vhost"] == vhost])

    def parameter(self, call: Call, component: str, vhost: str, name: str) -> Any:
        for row in self._limit_parameters(call):
            if (component, name, row["vhost"]) == ("vhost-limits", "limits", vhost):
                return self._reply(call, row)
        raise not_found()

    def _limit_value(self, call: Call) -> Any:
        body = self._body(call)
        if "value" not in body:
            raise bad_request("[{key_missing,value}]")
        return body["value"]

    def put_vhost_limit(self, call: Call, vhost: str, name: str) -> Response:
        if vhost not in self.admin.vhost_names():
            raise ApiError(404, "not_found", "vhost_not_found")
        self.admin.set_vhost_limit(vhost, name, self._limit_value(call))
        return self._no_content()

    def delete_vhost_limit(self, call: Call, vhost: str, name: str) -> Response:
        self.admin.clear_vhost_limit(vhost, name)
        return self._no_content()

    def user_limits(self, call: Call, user: str | None = None) -> Any:
        return self._reply_list(call, self.admin.user_limits(user), ("user",))

    def put_user_limit(self, call: Call, user: str, name: str) -> Response:
        value = self._limit_value(call)
        try:
            self.admin.set_user_limits(user, {name: value})
        except AdminError as exc:
            if exc.kind == "not_found":  # rabbit_auth_backend_internal's error term, as JSON
                raise bad_request(["no_such_user", user]) from None
            raise
        return self._no_content()

    def delete_user_limit(self, call: Call, user: str, name: str) -> Response:
        self.admin.clear_user_limits(user, name)
        return self._no_content()

    def _empty_list(self, call: Call, vhost: str | None = None, component: str | None = None) -> Any:
        if vhost is not None:
            self._check_vhost(vhost)
        return self._reply_list(call, [])

    def _none(self, call: Call, **params: str) -> Any:
        raise not_found()

    # -- node -----------------------------------------------------------------------------------

    def _listeners(self, info: dict) -> list[dict]:
        return [{"node": self.node, "protocol": entry["protocol"], "ip_address": entry["ip_address"],
                 "port": entry["port"], "socket_opts": {}}
                for entry in info.get("listeners", [])]

    def overview(self, call: Call) -> Any:
        info = self.admin.node_info()
        data = self.admin.overview(self._visible_vhosts(call.caller))
        overview = {
            "management_version": RABBITMQ_VERSION,
            "rates_mode": "basic",
            "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600],
                                          "detailed": [600]},
            "exchange_types": EXCHANGE_TYPES,
            "product_version": str(info.get("product_version", "")),
            "product_name": "amqp_broker",
            "rabbitmq_version": RABBITMQ_VERSION,
            "cluster_name": self.cluster,
            "disable_stats": False,
            "enable_queue_totals": False,
            "message_stats": data["message_stats"],
            "queue_totals": data["queue_totals"],
            "object_totals": data["object_totals"],
            "statistics_db_event_queue": 0,
            "node": self.node,
            "listeners": self._listeners(info),
            "contexts": [{"node": self.node, "description": "RabbitMQ Management", "path": "/",
                          "port": str(entry["port"])}
                         for entry in info.get("listeners", []) if entry["protocol"] == "http"],
        }
        # RabbitMQ cuts the overview to its top-level columns only.
        columns = call.query.get("columns")
        if columns:
            wanted = {c.split(".")[0] for c in columns.split(",")}
            overview = {k: v for k, v in overview.items() if k in wanted}
        return overview

    def cluster_name(self, call: Call) -> Any:
        return {"name": self.cluster}

    def whoami(self, call: Call) -> Any:
        return {"name": call.caller.name, "tags": call.caller.tags}

    def _node(self) -> dict:
        info = self.admin.node_info()
        alarms = info.get("alarms", [])
        node = {
            "name": self.node,
            "type": "disc",
            "running": True,
            "os_pid": str(info.get("pid", "")),
            "uptime": info.get("uptime_ms", 0),
            "mem_used": info.get("mem_used", 0),
            "mem_limit": info.get("mem_limit", 0),
            "mem_alarm": "memory" in alarms,
            "mem_calculation_strategy": "rss",
            "disk_free_limit": info.get("disk_free_limit", 0),
            "disk_free_alarm": "disk" in alarms,
            "rates_mode": "basic",
            "partitions": [],
            "exchange_types": EXCHANGE_TYPES,
            "auth_mechanisms": [
                {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": True},
                {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": True},
            ],
            "applications": [],
            "contexts": [],
            "db_dir": info.get("data_dir", ""),
            "processors": info.get("processors", 1),
        }
        for key in ("disk_free", "fd_used", "fd_total", "sockets_used", "sockets_total",
                    "proc_used", "proc_total", "run_queue"):
            if key in info:
                node[key] = info[key]
        return node

    def nodes(self, call: Call) -> Any:
        return self._reply_list(call, [self._node()], ("name",))

    def one_node(self, call: Call, node: str) -> Any:
        if node != self.node:
            raise not_found()
        return self._reply(call, self._node())

    # -- vhosts ---------------------------------------------------------------------------------

    def _vhost_info(self, row: dict) -> dict:
        info = dict(row)
        info.setdefault("metadata", {"description": row.get("description", ""),
                                     "tags": row.get("tags", [])})
        info["default_queue_type"] = "undefined"
        info["cluster_state"] = {self.node: "running"}
        return info

    def vhosts(self, call: Call) -> Any:
        visible = self._visible_vhosts(call.caller)
        rows = [self._vhost_info(v) for v in self._vhost_rows() if visible is None or v["name"] in visible]
        return self._reply_list(call, rows, ("name",))

    def vhost(self, call: Call, vhost: str) -> Any:
        try:
            return self._reply(call, self._vhost_info(self.admin.vhost(vhost)))
        except AdminError:
            raise not_found() from None

    def put_vhost(self, call: Call, vhost: str) -> Response:
        body = self._body(call)
        _bool(body.get("tracing"), False)
        created = self.admin.add_vhost(vhost)
        if created:  # RabbitMQ grants the user who creates a vhost full access to it
            self.admin.set_permissions(call.caller.name, vhost)
        return self._created(created)

    def delete_vhost(self, call: Call, vhost: str) -> Response:
        self._check_vhost(vhost)
        self.admin.delete_vhost(vhost)
        return self._no_content()

    def vhost_permissions(self, call: Call, vhost: str) -> Any:
        self._check_vhost(vhost)
        return self._reply_list(call, self.admin.permissions(vhost=vhost), ("vhost", "user"))

    def vhost_connections(self, call: Call, vhost: str) -> Any:
        self._check_vhost(vhost)
        return self._reply_list(call, self._own(call, [self._connection_info(c)
                                                       for c in self.admin.connections(vhost)]))

    def vhost_channels(self, call: Call, vhost: str) -> Any:
        self._check_vhost(vhost)
        return self._reply_list(call, self._own(call, [self._channel_info(c)
                                                       for c in self.admin.channels(vhost)]))

    # -- users and permissions ------------------------------------------------------------------

    def users(self, call: Call) -> Any:
        return self._reply_list(call, self.admin.users(), ("name",))

    def user(self, call: Call, user: str) -> Any:
        return self._reply(call, self.admin.user(user))

    def put_user(self, call: Call, user: str) -> Response:
        body = self._body(call)
        if "tags" not in body:
            raise bad_request("tags_not_present")
        tags = _tags(body["tags"])
        password, password_hash = body.get("password"), body.get("password_hash")
        if password is not None and not isinstance(password, str):
            raise bad_request("password must be a string")
        if password_hash is not None and not isinstance(password_hash, str):
            raise bad_request("password_hash must be a string")
        if password is None and password_hash is None:
            existing = user in {u["name"] for u in self.admin.users()}
            if existing:  # tags only: the password stays
                self.admin.set_user_tags(user, tags)
                return self._created(False)
            password_hash = ""  # a user that cannot log in by password, as RabbitMQ makes one
        if password is not None:
            return self._created(self.admin.add_user(user, password, tags=tags))
        return self._created(self.admin.add_user(user, password_hash=password_hash, tags=tags))

    def delete_user(self, call: Call, user: str) -> Response:
        self.admin.user(user)  # 404 first
        self.admin.delete_user(user)
        return self._no_content()

    def user_permissions(self, call: Call, user: str) -> Any:
        return self._reply_list(call, self.admin.permissions(user=user), ("vhost", "user"))

    def permissions(self, call: Call) -> Any:
        return self._reply_list(call, self.admin.permissions(), ("vhost", "user"))

    def permission(self, call: Call, vhost: str, user: str) -> Any:
        try:
            rows = self.admin.permissions(vhost=vhost, user=user)
        except AdminError:
            raise not_found() from None
        if not rows:
            raise not_found()
        return self._reply(call, rows[0])

    def put_permission(self, call: Call, vhost: str, user: str) -> Response:
        body = self._body(call)
        _require(body, ("configure", "write", "read"))
        try:
            self.admin.permissions(vhost=vhost, user=user)
        except AdminError:
            raise bad_request("vhost_or_user_not_found") from None
        existed = bool(self.admin.permissions(vhost=vhost, user=user))
        regexes = [body[k] for k in ("configure", "write", "read")]
        if not all(isinstance(r, str) for r in regexes):
            raise bad_request("configure, write and read must be strings")
        self.admin.set_permissions(user, vhost, *regexes)
        return self._created(not existed)

    def delete_permission(self, call: Call, vhost: str, user: str) -> Response:
        try:
            self.admin.clear_permissions(user, vhost)
        except AdminError:
            raise not_found() from None
        return self._no_content()

    def vhost_topic_permissions(self, call: Call, vhost: str) -> Any:
        return self._reply_list(call, self.admin.topic_permissions(vhost=vhost), ("vhost", "user"))

    def user_topic_permissions(self, call: Call, user: str) -> Any:
        return self._reply_list(call, self.admin.topic_permissions(user=user), ("vhost", "user"))

    def all_topic_permissions(self, call: Call) -> Any:
        return self._reply_list(call, self.admin.topic_permissions(), ("vhost", "user"))

    def topic_permission(self, call: Call, vhost: str, user: str) -> Any:
        """One user's topic permissions in one vhost: a list, one item per exchange (404 when
        there is none)."""
        try:
            rows = self.admin.topic_permissions(vhost=vhost, user=user)
        except AdminError:
            raise not_found() from None
        if not rows:
            raise not_found()
        return self._reply(call, rows)

    def put_topic_permission(self, call: Call, vhost: str, user: str) -> Response:
        body = self._body(call)
        _require(body, ("exchange", "write", "read"))
        try:
            existed = bool(self.admin.topic_permissions(vhost=vhost, user=user))
        except AdminError:
            raise bad_request("vhost_or_user_not_found") from None
        values = [body[k] for k in ("exchange", "write", "read")]
        if not all(isinstance(v, str) for v in values):
            raise bad_request("exchange, write and read must be strings")
        self.admin.set_topic_permissions(user, vhost, *values)
        return self._created(not existed)

    def delete_topic_permission(self, call: Call, vhost: str, user: str) -> Response:
        try:
            self.admin.clear_topic_permissions(user, vhost, call.query.get("exchange"))
        except AdminError:
            raise not_found() from None
        return self._no_content()

    # -- queues ---------------------------------------------------------------------------------

    def _queue_info(self, row: dict) -> dict:
        info = dict(row)
        if info.get("owner_pid_details") is None:
            info.pop("owner_pid_details", None)
        info["node"] = self.node
        info["policy"] = None
        info["operator_policy"] = None
        info["effective_policy_definition"] = {}
        info["exclusive_consumer_tag"] = None
        info["single_active_consumer_tag"] = None
        info["recoverable_slaves"] = None
        return info

    def queues(self, call: Call, vhost: str | None = None) -> Any:
        if vhost is not None:
            self._check_vhost(vhost)
        rows = [self._queue_info(q) for q in self.admin.queues(vhost)]
        return self._reply_list(call, self._in_vhosts(call, rows))

    def queue(self, call: Call, vhost: str, queue: str) -> Any:
        info = self._queue_info(self.admin.queue(vhost, queue))
        info["consumer_details"] = [self._consumer_info(c) for c in self.admin.consumers(vhost)
                                    if c["queue"]["name"] == queue]
        info["incoming"] = []
        info["deliveries"] = []
        return self._reply(call, info)

    def _declare_body(self, call: Call, vhost: str) -> tuple[dict, dict]:
        """A PUT of a queue or exchange: its body and arguments (404 for a missing vhost)."""
        body = self._body(call)
        if vhost not in self.admin.vhost_names():
            raise ApiError(404, "not_found", "vhost_not_found")
        arguments = body.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise bad_request("arguments must be an object")
        return body, arguments

    def put_queue(self, call: Call, vhost: str, queue: str) -> Response:
        body, arguments = self._declare_body(call, vhost)
        created = self.admin.declare_queue(
            vhost, queue, durable=_bool(body.get("durable"), False),
            auto_delete=_bool(body.get("auto_delete"), False), arguments=arguments,
            user=call.caller.name)
        return self._created(created)

    def delete_queue(self, call: Call, vhost: str, queue: str) -> Response:
        self.admin.queue(vhost, queue)  # 404 first
        self.admin.delete_queue(vhost, queue, if_unused=call.query.get("if-unused") == "true",
                                if_empty=call.query.get("if-empty") == "true", user=call.caller.name)
        return self._no_content()

    def purge_queue(self, call: Call, vhost: str, queue: str) -> Response:
        self.admin.purge_queue(vhost, queue, user=call.caller.name)
        return self._no_content()

    def queue_bindings(self, call: Call, vhost: str, queue: str) -> Any:
        self.admin.queue(vhost, queue)
        rows = self.admin.bindings(vhost, destination=queue, destination_type="queue")
        return self._reply_list(call, rows, ())

    def get_messages(self, call: Call, vhost: str, queue: str) -> Any:
        body = self._body(call)
        _require(body, ("count", "ackmode", "encoding"))
        count = _int(body["count"], "count")
        ackmode = body["ackmode"]
        if ackmode not in ACKMODES:
            raise bad_request(f"Unsupported ackmode {ackmode!r}. Please use one of "
                              f"{', '.join(ACKMODES)}.")
        encoding = body["encoding"]
        if encoding not in ("auto", "base64"):
            raise bad_request("Unsupported encoding. Please use auto or base64.")
        truncate = body.get("truncate")
        truncate = None if truncate in (None, "") else _int(truncate, "truncate")
        requeue, reject = ACKMODES[ackmode]
        self._check_vhost(vhost)
        try:
            messages = self.admin.get_messages(vhost, queue, count, requeue=requeue,
                                               truncate=truncate, reject=reject,
                                               user=call.caller.name)
        except AdminError as exc:
            if exc.kind == "not_found":
                raise ApiError(404, "not_found", f"NOT_FOUND - no queue '{queue}' in vhost '{vhost}'"
                               ) from None
            raise
        result = []
        for message in messages:
            body_bytes = message.pop("body")
            text = _printable(body_bytes) if encoding == "auto" else None
            message["properties"] = message["properties"] or []  # RabbitMQ's empty proplist
            message["payload"] = text if text is not None else base64.b64encode(body_bytes).decode()
            message["payload_encoding"] = "string" if text is not None else "base64"
            result.append(message)
        return result

    # -- exchanges ------------------------------------------------------------------------------

    def exchanges(self, call: Call, vhost: str | None = None) -> Any:
        if vhost is not None:
            self._check_vhost(vhost)
        return self._reply_list(call, self._in_vhosts(call, self.admin.exchanges(vhost)))

    def exchange(self, call: Call, vhost: str, exchange: str) -> Any:
        info = dict(self.admin.exchange(vhost, exchange))
        info["incoming"] = []
        info["outgoing"] = []
        return self._reply(call, info)

    def put_exchange(self, call: Call, vhost: str, exchange: str) -> Response:
        body, arguments = self._declare_body(call, vhost)
        type_name = body.get("type") or "direct"
        if not isinstance(type_name, str):
            raise bad_request("type must be a string")
        created = self.admin.declare_exchange(
            vhost, exchange, type_name, durable=_bool(body.get("durable"), False),
            auto_delete=_bool(body.get("auto_delete"), False),
            internal=_bool(body.get("internal"), False), arguments=arguments,
            user=call.caller.name)
        return self._created(created)

    def delete_exchange(self, call: Call, vhost: str, exchange: str) -> Response:
        self.admin.exchange(vhost, exchange)  # 404 first
        self.admin.delete_exchange(vhost, exchange, if_unused=call.query.get("if-unused") == "true",
                                   user=call.caller.name)
        return self._no_content()

    def publish(self, call: Call, vhost: str, exchange: str) -> Any:
        body = self._body(call)
        _require(body, ("routing_key", "properties", "payload", "payload_encoding"))
        encoding, payload = body["payload_encoding"], body["payload"]
        if not isinstance(payload, str):
            raise bad_request(["not_string", "payload"])
        if encoding == "string":
            data = payload.encode("utf-8")
        elif encoding == "base64":
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(["not_base64", payload]) from None
        else:
            raise bad_request(["unsupported_encoding", encoding])
        routing_key = body["routing_key"]
        if not isinstance(routing_key, str):
            raise bad_request(["not_string", "routing_key"])
        properties = _properties(body["properties"])
        self._check_vhost(vhost)
        try:
            routed = self.admin.publish(vhost, exchange, routing_key, data, properties,
                                        user=call.caller.name)
        except AdminError as exc:
            if exc.kind != "bad_request":
                raise
            raise bad_request(_strip_code(exc.reason)) from None
        return {"routed": routed}

    def exchange_bindings_source(self, call: Call, vhost: str, exchange: str) -> Any:
        self.admin.exchange(vhost, exchange)
        return self._reply_list(call, self.admin.bindings(vhost, source=exchange), ())

    def exchange_bindings_destination(self, call: Call, vhost: str, exchange: str) -> Any:
        self.admin.exchange(vhost, exchange)
        rows = self.admin.bindings(vhost, destination=exchange, destination_type="exchange")
        return self._reply_list(call, rows, ())

    # -- bindings -------------------------------------------------------------------------------

    def bindings(self, call: Call, vhost: str | None = None) -> Any:
        if vhost is not None:
            self._check_vhost(vhost)
        return self._reply_list(call, self._in_vhosts(call, self.admin.bindings(vhost)), ())

    def _between_rows(self, vhost: str, source: str, destination: str, kind: str) -> list[dict]:
        self._check_vhost(vhost)
        try:
            return self.admin.bindings(vhost, source=source, destination=destination,
                                       destination_type=kind)
        except AdminError as exc:
            if exc.kind == "not_found":
                return []
            raise

    def _between(self, kind: str) -> Handler:
        def between(call: Call, vhost: str, source: str, destination: str) -> Any:
            return self._reply_list(call, self._between_rows(vhost, source, destination, kind), ())
        return between

    def _bind(self, kind: str) -> Handler:
        def bind(call: Call, vhost: str, source: str, destination: str) -> Response:
            body = self._body(call)
            self._check_vhost(vhost)
            routing_key = body.get("routing_key") or ""
            arguments = body.get("arguments") or {}
            if not isinstance(routing_key, str) or not isinstance(arguments, dict):
                raise bad_request("routing_key must be a string and arguments an object")
            try:
                props = self.admin.bind(vhost, source, destination, kind, routing_key, arguments,
                                        user=call.caller.name)
            except AdminError as exc:
                if exc.kind != "not_found":
                    raise
                # RabbitMQ names the missing end: "no queue 'q' in vhost 'v'".
                raise ApiError(404, "not_found", exc.reason) from None
            location = f"{quote(destination, safe='')}/{quote(props, safe='')}"
            return Response(201, b"", [("location", location)])
        return bind

    def _binding(self, kind: str) -> Handler:
        def binding(call: Call, vhost: str, source: str, destination: str, props: str) -> Any:
            for row in self._between_rows(vhost, source, destination, kind):
                if row["properties_key"] == props:
                    return self._reply(call, row)
            raise not_found()
        return binding

    def _unbind(self, kind: str) -> Handler:
        def unbind(call: Call, vhost: str, source: str, destination: str, props: str) -> Response:
            if not any(row["properties_key"] == props
                       for row in self._between_rows(vhost, source, destination, kind)):
                raise not_found()
            self.admin.unbind(vhost, source, destination, kind, props, user=call.caller.name)
            return self._no_content()
        return unbind

    # -- connections, channels, consumers -------------------------------------------------------

    def _connection_info(self, row: dict) -> dict:
        info = dict(row)
        info["node"] = self.node
        # RabbitMQ shows these as null on a plain connection (and a TLS one without a certificate
        # has no peer_cert_*).
        for key in ("peer_cert_issuer", "peer_cert_subject", "peer_cert_validity", "ssl_protocol",
                    "ssl_cipher", "ssl_hash", "ssl_key_exchange"):
            info.setdefault(key, None)
        name = (row.get("client_properties") or {}).get("connection_name")
        if isinstance(name, str):
            info["user_provided_name"] = name
        return info

    def _channel_info(self, row: dict) -> dict:
        info = dict(row)
        info["node"] = self.node
        info["pending_raft_commands"] = 0  # no Raft log behind any queue here
        return info

    def _consumer_info(self, row: dict) -> dict:
        info = dict(row)
        info["channel_details"] = dict(row["channel_details"], node=self.node)
        return info

    def _user_item(self, call: Call, row: dict, *, write: bool = False) -> None:
        """Another user's connection or channel: readable by monitoring users, closable by
        administrators (rabbit_mgmt_util:is_authorized_user)."""
        allowed = call.caller.is_admin if write else call.caller.is_monitor
        if not allowed and row.get("user") != call.caller.name:
            raise not_authorised("User not authorised to access object")

    def connections(self, call: Call) -> Any:
        rows = [self._connection_info(c) for c in self.admin.connections()]
        return self._reply_list(call, self._own(call, rows))

    def connection(self, call: Call, connection: str) -> Any:
        info = self._connection_info(self.admin.connection(connection))
        self._user_item(call, info)
        return self._reply(call, info)

    def close_connection(self, call: Call, connection: str) -> Response:
        info = self.admin.connection(connection)
        self._user_item(call, info, write=True)
        reason = call.request.headers.get("x-reason") or DEFAULT_CLOSE_REASON
        self.admin.close_connection(connection, reason)
        return self._no_content()

    def _tracing(self) -> Any:
        if self.admin.tracing is None:
            raise not_found()
        return self.admin.tracing

    def connection_trace(self, call: Call, connection: str) -> Any:
        self.admin.connection(connection)
        for row in self._tracing().traces():
            if row["connection"] == connection:
                return row
        raise not_found()

    def put_connection_trace(self, call: Call, connection: str) -> Any:
        """Body ``{"file": "/absolute/path.jsonl"}``: the file the broker appends the trace to."""
        self.admin.connection(connection)
        path = self._body(call).get("file")
        if not isinstance(path, str) or not path.startswith("/"):
            raise bad_request("file must be the trace file's absolute path")
        return self._tracing().trace(connection, path)

    def delete_connection_trace(self, call: Call, connection: str) -> Response:
        self.admin.connection(connection)
        self._tracing().untrace(connection)
        return self._no_content()

    def connection_channels(self, call: Call, connection: str) -> Any:
        info = self.admin.connection(connection)
        self._user_item(call, info)
        rows = [self._channel_info(c) for c in self.admin.channels()
                if c["connection_details"]["name"] == connection]
        return self._reply_list(call, rows)

    def channels(self, call: Call) -> Any:
        rows = [self._channel_info(c) for c in self.admin.channels()]
        return self._reply_list(call, self._own(call, rows))

    def channel(self, call: Call, channel: str) -> Any:
        for row in self.admin.channels():
            if row["name"] == channel:
                self._user_item(call, row)
                return self._reply(call, self._channel_info(row))
        raise not_found()

    def consumers(self, call: Call, vhost: str | None = None) -> Any:
        if vhost is not None:
            self._check_vhost(vhost)
        allowed = self._login_vhosts(call.caller)
        rows = [self._consumer_info(c) for c in self.admin.consumers(vhost)
                if allowed is None or c["queue"]["vhost"] in allowed]
        return self._reply_list(call, rows, ())

    # -- definitions ----------------------------------------------------------------------------

    def definitions(self, call: Call, vhost: str | None = None) -> Any:
        if vhost is not None:
            self._check_vhost(vhost)
        data = self.admin.export_definitions(vhost)
        headers = list(JSON_HEADERS)
        download = call.query.get("download")
        if download:
            safe = re.sub(r'[^A-Za-z0-9._-]', "_", download)
            headers.append(("content-disposition", f'attachment; filename="{safe}"'))
        return Response.json(data, 200, headers)

    def import_definitions(self, call: Call, vhost: str | None = None) -> Response:
        if vhost is not None:
            self._check_vhost(vhost)
        data = self._body(call, error="failed_to_parse_json")
        try:
            self.admin.import_definitions(data, vhost)
        except AdminError as exc:
            raise bad_request(exc.reason) from None
        return self._no_content()

    # -- health ---------------------------------------------------------------------------------

    @staticmethod
    def _health(ok: bool, failure: dict) -> Response:
        if ok:
            return Response.json({"status": "ok"}, 200, JSON_HEADERS)
        return Response.json({"status": "failed", **failure}, 503, JSON_HEADERS)

    def health_node(self, call: Call, node: str | None = None) -> Any:
        if node is not None and node != self.node:
            raise not_found()
        return {"status": "ok"}

    def _alarms(self, reason: str) -> Response:
        alarms = self.admin.node_info().get("alarms", [])
        return self._health(not alarms, {
            "reason": reason,
            "alarms": [{"node": self.node, "resource": resource} for resource in alarms],
        })

    def health_alarms(self, call: Call) -> Response:
        return self._alarms("There are alarms in effect in the cluster")

    def health_local_alarms(self, call: Call) -> Response:
        return self._alarms("There are alarms in effect on the node")

    def health_port(self, call: Call, port: str) -> Response:
        if not port.isdigit():
            raise bad_request(f"invalid port '{port}'")
        ports = sorted({entry["port"] for entry in self.admin.node_info().get("listeners", [])})
        if int(port) in ports:
            return Response.json({"status": "ok", "port": int(port)}, 200, JSON_HEADERS)
        return self._health(False, {"reason": "No active listener", "missing": int(port),
                                    "ports": ports})

    def health_protocol(self, call: Call, protocol: str) -> Response:
        protocols = []
        for entry in self.admin.node_info().get("listeners", []):
            if entry["protocol"] not in protocols:
                protocols.append(entry["protocol"])
        wanted = PROTOCOL_ALIASES.get(protocol.lower(), protocol)
        if wanted in protocols:
            return Response.json({"status": "ok", "protocol": wanted}, 200, JSON_HEADERS)
        return self._health(False, {"reason": "No active listener", "missing": protocol,
                                    "protocols": protocols})

    def health_vhosts(self, call: Call) -> Response:
        return self._health(True, {})

    def aliveness(self, call: Call, vhost: str) -> Any:
        """RabbitMQ's aliveness test: declare the ``aliveness-test`` queue, publish one message
        to it through the default exchange and take it back."""
        self._check_vhost(vhost)
        if not self.admin.aliveness_test(vhost, user=call.caller.name):
            return self._health(False, {"reason": "aliveness test failed"})
        return {"status": "ok"}


# -- request values -------------------------------------------------------------------------------


def _require(body: dict, keys: tuple[str, ...]) -> None:
    """RabbitMQ's answer to missing keys: ``[{key_missing,name},...]``."""
    missing = [k for k in keys if k not in body]
    if missing:
        raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")


def _bool(value: Any, default: bool) -> bool:
    """rabbit_mgmt_util:parse_bool: JSON booleans or the strings "true"/"false" (rabbitmqadmin
    sends strings)."""
    if value is None:
        return default
    if value in (True, "true"):
        return True
    if value in (False, "false"):
        return False
    raise bad_request(["not_boolean", value])


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise bad_request(["not_int", name])
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise bad_request(["not_int", name])


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return [t for t in value if t]
    raise bad_request("tags must be a comma-separated string or a list of strings")


def _properties(value: Any) -> dict:
    """Message properties of a publish request; names RabbitMQ does not know are ignored, as it
    ignores them."""
    if value in ([], None):
        return {}
    if not isinstance(value, dict):
        raise bad_request(["not_object", "properties"])
    properties = {}
    for name in PROPERTY_NAMES:
        if name not in value or value[name] is None:
            continue
        item = value[name]
        if name in INT_PROPERTIES:
            item = _int(item, name)
            if name == "timestamp":
                item = datetime.datetime.fromtimestamp(item, tz=datetime.timezone.utc)
        elif name == "headers":
            if not isinstance(item, dict):
                raise bad_request(["not_table", name])
        elif not isinstance(item, str):
            raise bad_request(["not_string", name])
        properties[name] = item
    return properties


_PRINTABLE_CONTROLS = frozenset("\n\r\t\v\b\f\x1b")


def _printable(data: bytes) -> str | None:
    """``data`` as text when RabbitMQ's ``auto`` encoding shows it as a string (valid UTF-8 and
    printable, io_lib:printable_unicode_list), else None (it is shown as base64)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    for char in text:
        code = ord(char)
        if (code < 32 or 127 <= code < 160) and char not in _PRINTABLE_CONTROLS:
            return None
    return text


# -- columns, sorting, pagination -----------------------------------------------------------------


def _parse_columns(text: str | None) -> list[list[str]] | None:
    if not text:
        return None
    return [column.split(".") for column in text.split(",") if column]


def _columns(value: Any, columns: list[list[str]] | None) -> Any:
    """Keep the ``columns`` (dotted paths) of each object, as rabbit_mgmt_util:columns."""
    if columns is None:
        return value
    if isinstance(value, list):
        return [_columns(item, columns) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        below: list[list[str]] | None = []
        for column in columns:
            if column[0] == key:
                if len(column) == 1:
                    below = None
                    break
                below.append(column[1:])  # type: ignore[union-attr]
        else:
            if not below:
                continue
        out[key] = _columns(item, below)
    return out


def _sorted(rows: list[dict], keys: list[str]) -> list[dict]:
    """``rows`` in RabbitMQ's order by ``keys`` (dotted paths)."""
    if all("." not in k for k in keys):
        try:
            # Plain string keys (names, vhosts: the default order) compare in Python as in
            # Erlang (code points order as UTF-8 bytes do), many times faster than the general key.
            return sorted(rows, key=lambda row: [_plain(row.get(k, 0)) for k in keys])
        except TypeError:
            pass
    return sorted(rows, key=lambda row: [_erlang_key(_dotted(row, k)) for k in keys])


def _plain(value: Any) -> str:
    if type(value) is not str:
        raise TypeError("not a string")
    return value


def _dotted(row: dict, key: str) -> Any:
    """A sort key's value (``message_stats.publish``); a missing one sorts first, as 0."""
    value: Any = row
    parts = key.split(".")
    for part in parts[:-1]:
        value = value.get(part, []) if isinstance(value, dict) else []
    return value.get(parts[-1], 0) if isinstance(value, dict) else 0


def _erlang_key(value: Any) -> tuple:
    """A sort key in Erlang's term order, which RabbitMQ sorts by: numbers < atoms (booleans,
    null) < maps < lists < binaries (strings)."""
    if isinstance(value, bool):
        return (1, str(value).lower())
    if isinstance(value, (int, float)):
        return (0, value if not (isinstance(value, float) and math.isnan(value)) else 0)
    if value is None:
        return (1, "null")
    if isinstance(value, dict):
        return (2, len(value), json.dumps(value, sort_keys=True))
    if isinstance(value, list):
        return (3, json.dumps(value, sort_keys=True))
    return (4, str(value).encode("utf-8", "surrogatepass"))


def _pagination(query: dict[str, str]) -> tuple[int, int] | None:
    """(page, page size) when ``page`` is given; RabbitMQ's errors for bad values."""
    page, size = query.get("page"), query.get("page_size")
    if page is None:
        return None
    try:
        number = int(page)
        count = int(size) if size is not None else DEFAULT_PAGE_SIZE
    except ValueError:
        raise bad_request("Pagination parameters are invalid") from None
    if number < 1 or count < 1 or count > MAX_PAGE_SIZE:
        shown = size if size is not None else "undefined"
        raise ApiError(400, "invalid_pagination_parameters",
                       f"Invalid pagination parameters: page number {number}, page size {shown}")
    return number, count


def _name_matches(name: Any, pattern: str, regex: bool) -> bool:
    if not isinstance(name, str):
        return False
    if regex:
        try:
            return re.search(pattern, name, re.IGNORECASE) is not None
        except re.error:
            raise bad_request(f"invalid regular expression '{pattern}'") from None
    return pattern.lower() in name.lower()
