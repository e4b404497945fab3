"""Write the reference of RabbitMQ's management API shapes (rabbitmq_shapes.md) from a live run
of the scenario: for every request, the status and the nested keys of the JSON body, with the
value for the keys tools read and the JSON type for the rest.

    python -m interop.management.shapes --mgmt http://127.0.0.1:15672 --amqp 127.0.0.1:5672 \\
        -o interop/management/rabbitmq_shapes.md
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import scenario

SHAPES_FILE = __file__.rsplit("/", 1)[0] + "/rabbitmq_shapes.md"


def _type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if v is None:
        return "null"
    return type(v).__name__


def _scalar(key: str, v: Any) -> str:
    if key in scenario.VALUE_KEYS or key in ("error", "reason"):
        text = json.dumps(v)
        return text if len(text) <= 90 else text[:87] + "..."
    return _type(v)


def _merge(items: list[Any]) -> Any:
    """Union of the keys of a list's dict elements (first value seen), so one tree stands for
    the list."""
    dicts = [i for i in items if isinstance(i, dict)]
    if not dicts:
        return items[0] if items else None
    out: dict[str, Any] = {}
    for d in dicts:
        for k, v in d.items():
            if k not in out:
                out[k] = v
            elif isinstance(out[k], dict) and isinstance(v, dict):
                out[k] = _merge([out[k], v])
    return out


def tree(value: Any, key: str = "", indent: int = 0) -> list[str]:
    pad = "  " * indent
    label = f"{key}: " if key else ""
    if isinstance(value, dict):
        if not value:
            return [f"{pad}{label}{{}}"]
        if key in scenario.LEAF_KEYS:
            return [f"{pad}{label}{json.dumps(value)}"]
        lines = [f"{pad}{label}{{"]
        for k, v in value.items():
            lines += tree(v, k, indent + 1)
        return lines + [f"{pad}}}"]
    if isinstance(value, list):
        if not value:
            return [f"{pad}{label}[]"]
        if all(not isinstance(i, (dict, list)) for i in value):
            text = json.dumps(value) if (key in scenario.VALUE_KEYS or key in ("reason", "ports")) \
                else f"[{_type(value[0])}, ...]"
            return [f"{pad}{label}{text if len(text) <= 100 else text[:97] + '...'}"]
        merged = _merge(value)
        inner = tree(merged, "", indent + 1)
        return [f"{pad}{label}[  # {len(value)} item(s)"] + inner + [f"{pad}]"]
    return [f"{pad}{label}{_scalar(key, value)}"]


def render(ctx: scenario.Ctx, version: str) -> str:
    out = [
        "# RabbitMQ management HTTP API: the shapes RabbitMQ answers with",
        "",
        f"Recorded from RabbitMQ {version} by `python -m interop.management.shapes` (the scenario",
        "in `interop/management/scenario.py`, in order). Set-up: vhost `{vhost}`; user `{user}`",
        "(tags `management,policymaker`) and `{nomgmt}` (no tags), both with password `secret`;",
        "direct exchange `{exchange}` (durable) bound with `rk` to durable queue `{queue}`",
        "(`x-max-length` 100, 3 persistent messages published through AMQP) and with `to-x2` to",
        "topic exchange `{exchange2}`; queue `{queue2}` with 2 messages and one prefetch-1 consumer",
        "`mgmt-ctag` holding one unacked; one AMQP connection (pika, `connection_name`",
        "`{conn_name}`) with 2 channels. Requests run with guest/guest unless said.",
        "",
        "Names are written as placeholders, `{node}` is the node name, `{conn}` the connection",
        "name (`127.0.0.1:<port> -> 127.0.0.1:<port>`), `{amqp_port}` the AMQP port. Values are",
        "shown for the keys tools read (`VALUE_KEYS` in scenario.py); other leaves show their JSON",
        "type. A list shows the union of its items' keys. Statistics keys (`message_stats`,",
        "`*_details`, `idle_since`, ...) appear only once RabbitMQ has emitted statistics for",
        "the object (every 5 s by default): the values here are after the set-up settled.",
        "",
        "Headers of note: a request without credentials gets 401 with an EMPTY body and",
        "`www-authenticate: Basic realm=\"RabbitMQ Management\"`; a PUT/POST that creates answers",
        "201, one that changes or repeats 204, both with an empty body; POST .../bindings answers",
        "201 with a `location` header (the binding's properties key path).",
        "",
        "See the end for the surprises.",
        "",
    ]
    section = None
    for o in ctx.observations:
        head = o.label.split(":", 1)[0]
        if head != section:
            section = head
            out += [f"## {section}", ""]
        status = "-" if o.status is None else str(o.status)
        out.append(f"### `{o.method} {o.path}` → {status}  ({o.label.split(': ', 1)[1]})")
        out.append("")
        extra = {k: v for k, v in o.values.items() if k.startswith("<header>")}
        if o.method == "AMQP":
            out += ["```", json.dumps(o.values, indent=2), "```", ""]
            continue
        if o.raw is None and not extra:
            out += ["(empty body)", ""]
            continue
        body = tree(o.raw) if o.raw is not None else ["(empty body)"]
        if extra:
            body += [f"header {k[8:]}: {v}" for k, v in extra.items()]
        out += ["```"] + body + ["```", ""]
    out += SURPRISES
    return "\n".join(out) + "\n"


SURPRISES = [
    "## Surprises (what an implementation must not get wrong)",
    "",
    "- 401 spellings differ: bad credentials → `{\"error\":\"not_authorized\",\"reason\":\"Login "
    "failed\"}`; a user without the management tag → `{\"error\":\"not_authorised\",\"reason\":"
    "\"Not management user\"}` (British); a management user on an administrator endpoint "
    "(`/api/users`) → `not_authorised` / `Not administrator user`. No credentials at all → 401 "
    "with an empty body and `www-authenticate`.",
    "- 404 for an unknown object is `{\"error\":\"Object Not Found\",\"reason\":\"Not Found\"}`, "
    "but a 404 raised while acting is different: PUT queue in an unknown vhost → `{\"error\":"
    "\"not_found\",\"reason\":\"vhost_not_found\"}`; POST binding to an unknown queue → "
    "`not_found` / `no queue 'X' in vhost 'V'`; POST .../get on an unknown queue → `not_found` / "
    "`NOT_FOUND - no queue 'X' in vhost 'V'`.",
    "- Publishing to an unknown exchange is 400 (not 404): `bad_request` / `404 NOT_FOUND - no "
    "exchange 'X' in vhost 'V'`.",
    "- 400 reasons are not always strings: a bad payload_encoding gives "
    "`[\"unsupported_encoding\",\"rot13\"]`; a bad permission regex gives an Erlang term "
    "rendered as nested lists of code points. Inequivalent PUTs give the AMQP text without the "
    "`PRECONDITION_FAILED - ` prefix: `inequivalent arg 'x-max-length' for queue 'Q' in vhost "
    "'V': received '5' but current is '100'` (also for `durable`, and for an exchange `type`).",
    "- PUT with a body that is not JSON → 400 `not_json`; POST /api/definitions with bad JSON → "
    "400 `failed_to_parse_json`. POST .../bindings with an EMPTY body is accepted (201, routing "
    "key \"\"). PUT user without password is accepted (201, the user cannot log in with a "
    "password).",
    "- PUT/DELETE of an `amq.*` exchange (and DELETE amq.default) → 401 `not_authorised` / "
    "`Access refused.` (not 403).",
    "- DELETE queue `?if-empty=true` / `?if-unused=true` refused → 400 `queue 'Q' in vhost 'V' "
    "not empty` / `... in use`.",
    "- POST .../get with an ackmode RabbitMQ does not know → 500 with an empty body (a crash); "
    "not worth copying, not in the scenario.",
    "- `Accept: application/json` makes RabbitMQ answer 406 on DELETE .../contents and on "
    "unknown paths (with `*/*`, as requests and curl send: 204 / 404). The harness sends `*/*`.",
    "- POST .../get: `message_count` is the count left after taking THIS message; with "
    "ack_requeue_true every message is requeued and the next get sees `redelivered: true`. "
    "`truncate` cuts the payload but `payload_bytes` stays the full size; `encoding: auto` gives "
    "`payload_encoding: \"string\"` for UTF-8 text and base64 otherwise.",
    "- Health: port-listener on a port not listened → 503 `{\"status\":\"failed\",\"reason\":"
    "\"No active listener\",\"missing\":P,\"ports\":[...]}`; healthy checks → 200 "
    "`{\"status\":\"ok\"}` (port-listener adds `port`).",
    "- `message_stats`, `*_details`, the `channels` count of a connection and the message "
    "counts of a queue lag behind by up to one statistics interval on RabbitMQ; a new queue "
    "shows only a few keys until the first emission. Ours may be exact at once: tools poll.",
    "- DELETE /api/connections/NAME with `X-Reason: R`: the client gets connection.close 320 "
    "`CONNECTION_FORCED - R`.",
    "- A binding's `properties_key` is the routing key alone when it has no arguments, else "
    "`<routing key>~<hash of the arguments>` (RabbitMQ's own hash, shown here as `~<hash>`); the "
    "POST's `location` header is `<destination>/<properties_key>`. Tools treat it as opaque and "
    "hand it back in GET/DELETE /api/bindings/V/e/E/q/Q/PROPS.",
    "- GET /api/aliveness-test/V declares a queue `aliveness-test` in V (not durable, no "
    "arguments), publishes to it and gets the message back, and LEAVES the queue there: it "
    "shows up in later listings and definitions of V.",
    "- GET /api/whoami gives `tags` as a LIST (`[\"administrator\"]`), as do users. Old "
    "pyrabbit 1.1 (what kombu's `get_manager()` builds) compares it with the string "
    "\"administrator\", so its admin-only calls (is_alive, get_users, ...) raise "
    "PermissionError against RabbitMQ itself: keep the list.",
    "- A queue's `messages*` keys are absent until RabbitMQ's first statistics emission for it "
    "(pyrabbit's get_queue_depth raises KeyError on a queue declared a moment ago).",
    "- Queue `arguments` of a PUT are passed through typed as JSON gives them; `x-max-length: "
    "\"many\"` → 400 `invalid arg 'x-max-length' for queue 'Q' in vhost 'V': \"expected integer, "
    "got longstr\"`.",
    "- GET /api/definitions has `rabbit_version`, `rabbitmq_version`, `product_name`, "
    "`product_version`, users (with `password_hash`, `hashing_algorithm`, `tags` as a LIST, "
    "`limits`), vhosts, permissions, topic_permissions, parameters, global_parameters, "
    "policies, queues, exchanges, bindings; POST answers 204.",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}" if __spec__ else None,
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mgmt", default="http://127.0.0.1:15672",
                    help="management API base URL of RabbitMQ (default: %(default)s)")
    ap.add_argument("--amqp", default="127.0.0.1:5672",
                    help="AMQP host:port of the same broker (default: %(default)s)")
    ap.add_argument("-o", "--output", default=SHAPES_FILE,
                    help="markdown file to write (default: interop/management/rabbitmq_shapes.md)")
    args = ap.parse_args(argv)
    host, _, port = args.amqp.rpartition(":")
    try:
        ctx = scenario.run(args.mgmt, host or "127.0.0.1", int(port), keep_raw=True)
    except OSError as exc:
        print(f"error: cannot reach {args.mgmt} / {args.amqp}: {exc}", file=sys.stderr)
        return 1
    if ctx.errors:
        print("error: the scenario did not run through: " + "; ".join(ctx.errors), file=sys.stderr)
        return 1
    ov = ctx.api.request("GET", "/api/overview").json or {}
    with open(args.output, "w") as f:
        f.write(render(ctx, ov.get("rabbitmq_version", "?")))
    print(f"wrote {args.output} ({len(ctx.observations)} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
