"""Who may act in a vhost through the management API: one table of requests, each made as users
of every kind (an administrator with no permissions on the vhost, one with narrow permissions, a
management user with the same narrow permissions, one with empty patterns, a monitoring user with
none), on any broker that serves the API. RabbitMQ 3.10's answers are the reference.

    python -m interop.management.permissions --mgmt http://127.0.0.1:15673     # print the rows
    python -m interop.management.permissions --record interop/management/rabbitmq_api_permissions.json

The narrow permissions are configure ``^cfg-``, write ``^w-``, read ``^r-``, with topic
permissions on two topic exchanges (``w-t``, ``r-t``: write and read ``^a\\.``), so each request
names an object a check lets through and one it refuses. Every request that changes something is
undone after it (as guest), so the rows do not depend on each other. Names carry a per-run tag
(RabbitMQ is shared); it is written back as ``TAG`` in what is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

from .api import GUEST, Api, seg

RECORDING = os.path.join(os.path.dirname(__file__), "rabbitmq_api_permissions.json")

NARROW = {"configure": "^cfg-", "write": "^w-", "read": "^r-"}
EMPTY = {"configure": "", "write": "", "read": ""}
#: user kind -> (tags, permissions on the vhost or None)
USERS = {
    "admin-noperm": ("administrator", None),
    "admin-narrow": ("administrator", NARROW),
    "mgmt-narrow": ("management", NARROW),
    "mgmt-empty": ("management", EMPTY),
    "monitoring-noperm": ("monitoring", None),
}

QUEUES = ("cfg-q", "r-q", "w-q", "plain-q", "cfg-del", "plain-del", "r-purge", "plain-purge")
EXCHANGES = (("w-x", "direct"), ("r-x", "direct"), ("plain-x", "direct"), ("cfg-xdel", "direct"),
             ("plain-xdel", "direct"), ("w-t", "topic"), ("r-t", "topic"))
PUB = {"properties": {}, "routing_key": "nowhere", "payload": "x", "payload_encoding": "string"}
GET = {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}

#: (label, method, path under /api with {v} for the vhost, body, undo requests as guest)
REQUESTS: list[tuple[str, str, str, Any, list[tuple[str, str, Any]]]] = [
    ("list queues in vhost", "GET", "/queues/{v}", None, []),
    ("GET queue", "GET", "/queues/{v}/plain-q", None, []),
    ("GET bindings in vhost", "GET", "/bindings/{v}", None, []),
    ("GET consumers in vhost", "GET", "/consumers/{v}", None, []),
    ("GET vhost", "GET", "/vhosts/{v}", None, []),
    ("PUT new queue, configure allowed", "PUT", "/queues/{v}/cfg-new", {"durable": False},
     [("DELETE", "/queues/{v}/cfg-new", None)]),
    ("PUT new queue, configure refused", "PUT", "/queues/{v}/plain-new", {"durable": False},
     [("DELETE", "/queues/{v}/plain-new", None)]),
    ("PUT existing queue, configure refused", "PUT", "/queues/{v}/plain-q", {"durable": False}, []),
    ("PUT existing queue, other durable", "PUT", "/queues/{v}/cfg-q", {"durable": True}, []),
    ("PUT queue, bad argument, configure refused", "PUT", "/queues/{v}/plain-q2",
     {"arguments": {"x-max-length": "many"}}, [("DELETE", "/queues/{v}/plain-q2", None)]),
    ("PUT queue, dead-letter exchange write refused", "PUT", "/queues/{v}/cfg-dlx",
     {"arguments": {"x-dead-letter-exchange": "plain-x"}}, [("DELETE", "/queues/{v}/cfg-dlx", None)]),
    ("DELETE queue, configure allowed", "DELETE", "/queues/{v}/cfg-del", None,
     [("PUT", "/queues/{v}/cfg-del", {"durable": False})]),
    ("DELETE queue, configure refused", "DELETE", "/queues/{v}/plain-del", None,
     [("PUT", "/queues/{v}/plain-del", {"durable": False})]),
    ("DELETE unknown queue", "DELETE", "/queues/{v}/plain-nope", None, []),
    ("purge, read allowed", "DELETE", "/queues/{v}/r-purge/contents", None, []),
    ("purge, read refused", "DELETE", "/queues/{v}/plain-purge/contents", None, []),
    ("purge unknown queue", "DELETE", "/queues/{v}/plain-nope/contents", None, []),
    ("get, read allowed", "POST", "/queues/{v}/r-q/get", GET, []),
    ("get, read refused", "POST", "/queues/{v}/plain-q/get", GET, []),
    ("get unknown queue, read refused", "POST", "/queues/{v}/plain-nope/get", GET, []),
    ("get unknown queue, read allowed", "POST", "/queues/{v}/r-nope/get", GET, []),
    ("PUT new exchange, configure allowed", "PUT", "/exchanges/{v}/cfg-xnew",
     {"type": "direct", "durable": False}, [("DELETE", "/exchanges/{v}/cfg-xnew", None)]),
    ("PUT new exchange, configure refused", "PUT", "/exchanges/{v}/plain-xnew",
     {"type": "direct", "durable": False}, [("DELETE", "/exchanges/{v}/plain-xnew", None)]),
    ("PUT exchange, alternate exchange write refused", "PUT", "/exchanges/{v}/cfg-ae",
     {"type": "direct", "arguments": {"alternate-exchange": "plain-x"}},
     [("DELETE", "/exchanges/{v}/cfg-ae", None)]),
    ("PUT exchange, amq. name", "PUT", "/exchanges/{v}/amq.mine", {"type": "direct"}, []),
    ("DELETE exchange, configure allowed", "DELETE", "/exchanges/{v}/cfg-xdel", None,
     [("PUT", "/exchanges/{v}/cfg-xdel", {"type": "direct", "durable": False})]),
    ("DELETE exchange, configure refused", "DELETE", "/exchanges/{v}/plain-xdel", None,
     [("PUT", "/exchanges/{v}/plain-xdel", {"type": "direct", "durable": False})]),
    ("DELETE unknown exchange", "DELETE", "/exchanges/{v}/plain-nope", None, []),
    ("DELETE amq.direct", "DELETE", "/exchanges/{v}/amq.direct", None, []),
    ("publish, write allowed", "POST", "/exchanges/{v}/w-x/publish", PUB, []),
    ("publish, write refused", "POST", "/exchanges/{v}/plain-x/publish", PUB, []),
    ("publish to the default exchange", "POST", "/exchanges/{v}/amq.default/publish", PUB, []),
    ("publish to unknown exchange, write refused", "POST", "/exchanges/{v}/plain-nope/publish",
     PUB, []),
    ("publish to unknown exchange, write allowed", "POST", "/exchanges/{v}/w-nope/publish",
     PUB, []),
    ("publish, topic permission refuses the key", "POST", "/exchanges/{v}/w-t/publish",
     dict(PUB, routing_key="b.c"), []),
    ("publish, topic permission lets the key through", "POST", "/exchanges/{v}/w-t/publish",
     dict(PUB, routing_key="a.c"), []),
    ("bind, read source and write destination allowed", "POST", "/bindings/{v}/e/r-x/q/w-q",
     {"routing_key": "k2"}, [("DELETE", "/bindings/{v}/e/r-x/q/w-q/k2", None)]),
    ("bind, read on source refused", "POST", "/bindings/{v}/e/plain-x/q/w-q",
     {"routing_key": "k2"}, [("DELETE", "/bindings/{v}/e/plain-x/q/w-q/k2", None)]),
    ("bind, write on destination refused", "POST", "/bindings/{v}/e/r-x/q/plain-q",
     {"routing_key": "k2"}, [("DELETE", "/bindings/{v}/e/r-x/q/plain-q/k2", None)]),
    ("bind exchange to exchange, allowed", "POST", "/bindings/{v}/e/r-x/e/w-x",
     {"routing_key": "k2"}, [("DELETE", "/bindings/{v}/e/r-x/e/w-x/k2", None)]),
    ("bind to unknown queue, write refused", "POST", "/bindings/{v}/e/r-x/q/plain-nope",
     {"routing_key": "k2"}, []),
    ("bind to unknown queue, write allowed", "POST", "/bindings/{v}/e/r-x/q/w-nope",
     {"routing_key": "k2"}, []),
    ("bind, topic permission refuses the key", "POST", "/bindings/{v}/e/r-t/q/w-q",
     {"routing_key": "b.c"}, [("DELETE", "/bindings/{v}/e/r-t/q/w-q/b.c", None)]),
    ("bind, topic permission lets the key through", "POST", "/bindings/{v}/e/r-t/q/w-q",
     {"routing_key": "a.c"}, [("DELETE", "/bindings/{v}/e/r-t/q/w-q/a.c", None)]),
    ("unbind, allowed", "DELETE", "/bindings/{v}/e/r-x/q/w-q/k", None,
     [("POST", "/bindings/{v}/e/r-x/q/w-q", {"routing_key": "k"})]),
    ("unbind, refused", "DELETE", "/bindings/{v}/e/plain-x/q/plain-q/k", None,
     [("POST", "/bindings/{v}/e/plain-x/q/plain-q", {"routing_key": "k"})]),
    ("unbind unknown binding", "DELETE", "/bindings/{v}/e/r-x/q/w-q/nope", None, []),
    ("aliveness test", "GET", "/aliveness-test/{v}", None,
     [("DELETE", "/queues/{v}/aliveness-test", None)]),
]


class Run:
    """The table on one broker: its vhost and users, made and removed as guest."""

    def __init__(self, base_url: str, tag: str | None = None):
        self.api = Api(base_url)
        self.tag = tag or uuid.uuid4().hex[:8]
        self.vhost = f"api-perms-{self.tag}"
        self.users = {kind: f"api-perms-{kind}-{self.tag}" for kind in USERS}

    def _guest(self, method: str, path: str, body: Any = None):
        return self.api.request(method, "/api" + path.format(v=seg(self.vhost)), body, auth=GUEST)

    def setup(self) -> None:
        v = seg(self.vhost)
        for method, path, body in [("PUT", f"/vhosts/{v}", {}),
                                   ("PUT", f"/permissions/{v}/guest",
                                    {"configure": ".*", "write": ".*", "read": ".*"})]:
            answer = self._guest(method, path, body)
            if answer.status not in (201, 204):
                raise RuntimeError(f"set-up {method} {path}: {answer.status} {answer.text}")
        for kind, (tags, permissions) in USERS.items():
            user = seg(self.users[kind])
            self._guest("PUT", f"/users/{user}", {"password": "pw", "tags": tags})
            if permissions is not None:
                self._guest("PUT", f"/permissions/{v}/{user}", permissions)
                for exchange in ("w-t", "r-t"):
                    self._guest("PUT", f"/topic-permissions/{v}/{user}",
                                {"exchange": exchange, "write": "^a\\.", "read": "^a\\."})
        for queue in QUEUES:
            self._guest("PUT", f"/queues/{v}/{queue}", {"durable": False})
            self._guest("POST", f"/exchanges/{v}/amq.default/publish",
                        dict(PUB, routing_key=queue))
        for exchange, kind in EXCHANGES:
            self._guest("PUT", f"/exchanges/{v}/{exchange}", {"type": kind, "durable": False})
        self._guest("POST", f"/bindings/{v}/e/r-x/q/w-q", {"routing_key": "k"})
        self._guest("POST", f"/bindings/{v}/e/plain-x/q/plain-q", {"routing_key": "k"})

    def teardown(self) -> None:
        try:
            self._guest("DELETE", "/vhosts/{v}")
        finally:
            for user in self.users.values():
                self._guest("DELETE", f"/users/{seg(user)}")

    def rows(self) -> list[dict]:
        out = []
        for label, method, path, body, undo in REQUESTS:
            for kind in USERS:
                answer = self.api.request(method, "/api" + path.format(v=seg(self.vhost)), body,
                                          auth=(self.users[kind], "pw"))
                out.append({"request": label, "user": kind, "status": answer.status,
                            "body": self._shape(answer.json if answer.text else None)})
                for undo_method, undo_path, undo_body in undo:
                    self._guest(undo_method, undo_path, undo_body)
        return out

    def _shape(self, value: Any) -> Any:
        """Errors and small answers whole (names tagged back), lists and objects by kind."""
        if isinstance(value, list):
            return f"list of {len(value)}"
        if isinstance(value, dict) and not ({"error", "status", "routed"} & set(value)):
            return "object"
        text = json.dumps(value)
        for kind in sorted(USERS, key=len, reverse=True):
            text = text.replace(self.users[kind], f"<{kind}>")
        return json.loads(text.replace(self.tag, "TAG"))


def run(base_url: str) -> list[dict]:
    """The whole table on one broker; leaves nothing behind."""
    table = Run(base_url)
    try:
        table.setup()
        return table.rows()
    finally:
        table.teardown()


def compare(rabbit: list[dict], ours: list[dict]) -> list[str]:
    """One line per row that differs."""
    mine = {(r["request"], r["user"]): r for r in ours}
    out = []
    for row in rabbit:
        other = mine.get((row["request"], row["user"]))
        if other is None or (other["status"], other["body"]) != (row["status"], row["body"]):
            got = None if other is None else (other["status"], other["body"])
            out.append(f"{row['request']} as {row['user']}: RabbitMQ {row['status']} "
                       f"{json.dumps(row['body'])}, ours {got}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}" if __spec__ else None,
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--mgmt", default="http://127.0.0.1:15672",
                    help="management API base URL (default: %(default)s)")
    ap.add_argument("--record", metavar="FILE", help="write the rows to FILE as JSON")
    args = ap.parse_args(argv)
    rows = run(args.mgmt)
    if args.record:
        with open(args.record, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")
        print(f"recorded {len(rows)} rows to {args.record}")
        return 0
    for row in rows:
        print(f"{row['request']:50s} {row['user']:18s} {row['status']} {json.dumps(row['body'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
