"""The real tools that use the management HTTP API, each run unmodified against one broker.

    python -m interop.management.tools --mgmt 127.0.0.1:15672 --amqp 127.0.0.1:5672
    python -m interop.management.tools --mgmt 15673 --amqp 5673 --tool rabbitmqadmin

Tools: Debian's rabbitmqadmin (/usr/bin/rabbitmqadmin, from the rabbitmq-server package),
pyrabbit2, amqpstorm's ManagementApi, kombu's Connection.get_manager() (it builds an old pyrabbit
Client from the transport options manager_hostname / manager_port / manager_userid /
manager_password, falling back to the AMQP hostname, 15672 and the AMQP credentials), the
command `celery list bindings` (which uses that manager), and flower's broker queue lengths.

Each tool works in a vhost of its own (deleted at the end, with everything in it). Prints one
row per command: tool, command, ok or the failure. Exit status 1 when a command failed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Callable

from .api import Api, seg
from .targets import Target, parse_hostport

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RABBITMQADMIN = os.environ.get("RABBITMQADMIN", "/usr/bin/rabbitmqadmin")

#: How long to wait for a value RabbitMQ publishes with its statistics (every 5 s by default).
STATS_DEADLINE = 20.0


@dataclasses.dataclass
class Result:
    tool: str
    command: str
    ok: bool
    detail: str


class Missing(Exception):
    """The tool is not installed."""


def poll(fn: Callable[[], Any], pred: Callable[[Any], bool], deadline: float = STATS_DEADLINE):
    """fn() until pred holds on its result (or the deadline passes): the last result. Until
    then an exception from fn counts as not yet: RabbitMQ leaves statistics keys such as a
    queue's "messages" out until its first statistics emission, and tools index them."""
    end = time.monotonic() + deadline
    while True:
        try:
            value = fn()
        except Exception:  # noqa: BLE001 - see above; the last try raises
            if time.monotonic() > end:
                raise
        else:
            if pred(value) or time.monotonic() > end:
                return value
        time.sleep(0.25)


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


class ToolRun:
    """One tool's commands against one broker, in a vhost of its own."""

    def __init__(self, target: Target, tool: str, tag: str | None = None,
                 create_vhost: bool = True):
        self.target, self.tool = target, tool
        self.tag = tag or uuid.uuid4().hex[:8]
        self.vhost = f"mgmt-tools-{tool}-{self.tag}"
        self.results: list[Result] = []
        self.admin = Api(target.mgmt_url)
        self.auth = (target.user, target.password)
        self._create_vhost = create_vhost

    def name(self, what: str) -> str:
        return f"{self.tool}-{what}-{self.tag}"

    def __enter__(self) -> "ToolRun":
        if self._create_vhost:
            self.setup_vhost()
        return self

    def setup_vhost(self) -> None:
        r = self.admin.request("PUT", f"/api/vhosts/{seg(self.vhost)}", {}, auth=self.auth)
        expect(r.status in (201, 204), f"PUT vhost: {r.status} {r.text}")
        r = self.admin.request("PUT", f"/api/permissions/{seg(self.vhost)}/{seg(self.auth[0])}",
                               {"configure": ".*", "write": ".*", "read": ".*"}, auth=self.auth)
        expect(r.status in (201, 204), f"PUT permissions: {r.status} {r.text}")

    def __exit__(self, *exc) -> None:
        # Everything a tool declared lives in its vhost: deleting it leaves nothing behind.
        try:
            self.admin.request("DELETE", f"/api/vhosts/{seg(self.vhost)}", auth=self.auth)
        except OSError:
            pass

    def check(self, command: str, fn: Callable[[], Any]) -> Any:
        """Run one command; record ok (with what it returned) or the failure."""
        try:
            value = fn()
        except Missing:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing tool is a result, not a crash
            detail = f"{type(exc).__name__}: {exc}".strip()
            self.results.append(Result(self.tool, command, False, detail[:500]))
            return None
        self.results.append(Result(self.tool, command, True, _short(value)))
        return value

    def queue_messages(self, queue: str) -> int | None:
        q = self.admin.request("GET", f"/api/queues/{seg(self.vhost)}/{seg(queue)}",
                               auth=self.auth).json or {}
        return q.get("messages")


def _short(value: Any, limit: int = 120) -> str:
    if value is None:
        return "ok"
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# rabbitmqadmin
# ---------------------------------------------------------------------------------------------

def rabbitmqadmin_path() -> str | None:
    found = RABBITMQADMIN if os.path.isfile(RABBITMQADMIN) else shutil.which("rabbitmqadmin")
    return found


def run_rabbitmqadmin(target: Target, tag: str | None = None) -> list[Result]:
    exe = rabbitmqadmin_path()
    if exe is None:
        raise Missing(f"rabbitmqadmin not found ({RABBITMQADMIN}; Debian's rabbitmq-server "
                      "package installs it)")
    # rabbitmqadmin declares the vhost and the permission itself.
    run = ToolRun(target, "rabbitmqadmin", tag, create_vhost=False)
    vh, q, x = run.vhost, run.name("q"), run.name("x")
    base = [exe, "-H", target.mgmt_host, "-P", str(target.mgmt_port), "-u", target.user,
            "-p", target.password]

    def admin(*args: str, vhost: str | None = vh, fmt: str | None = None) -> str:
        cmd = list(base) + (["-V", vhost] if vhost else []) + (["-f", fmt] if fmt else [])
        cmd += list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode}: {(p.stderr or p.stdout).strip()}")
        return p.stdout

    def listed(what: str, key: str = "name", vhost: str | None = vh) -> list:
        return [i.get(key) for i in json.loads(admin("list", what, vhost=vhost, fmt="raw_json"))]

    with run, tempfile.TemporaryDirectory() as tmp:
        defs = os.path.join(tmp, "definitions.json")
        run.check(f"declare vhost name={vh}", lambda: admin("declare", "vhost", f"name={vh}",
                                                             vhost=None))
        run.check(f"declare permission vhost={vh} user={target.user}", lambda: admin(
            "declare", "permission", f"vhost={vh}", f"user={target.user}", "configure=.*",
            "write=.*", "read=.*", vhost=None))
        run.check(f"declare exchange name={x} type=direct",
                  lambda: admin("declare", "exchange", f"name={x}", "type=direct"))
        run.check(f"declare queue name={q} durable=true arguments={{x-max-length: 10}}",
                  lambda: admin("declare", "queue", f"name={q}", "durable=true",
                                'arguments={"x-max-length": 10}'))
        run.check(f"declare binding source={x} destination={q} routing_key=rk", lambda: admin(
            "declare", "binding", f"source={x}", f"destination={q}", "routing_key=rk"))

        def publish():
            out = admin("publish", f"exchange={x}", "routing_key=rk", "payload=hello admin")
            expect(out.strip() == "Message published", f"output {out.strip()!r}")
            out = admin("publish", f"exchange={x}", "routing_key=nowhere", "payload=lost")
            expect("NOT routed" in out, f"unroutable publish said {out.strip()!r}")
            return out.strip()
        run.check(f"publish exchange={x} routing_key=rk payload=...", publish)

        def list_queues():
            rows = poll(lambda: json.loads(admin("list", "queues", "name", "messages",
                                                 fmt="raw_json")),
                        lambda rs: any(r.get("name") == q and r.get("messages") == 1 for r in rs))
            mine = [r for r in rows if r.get("name") == q]
            expect(mine and mine[0].get("messages") == 1, f"queues listed: {rows}")
            return mine
        run.check("list queues name messages", list_queues)

        def list_exchanges():
            names = listed("exchanges")
            expect(x in names and "amq.direct" in names, f"exchanges listed: {names}")
            return f"{len(names)} exchanges"
        run.check("list exchanges", list_exchanges)

        def list_bindings():
            rows = json.loads(admin("list", "bindings", fmt="raw_json"))
            expect(any(b.get("source") == x and b.get("destination") == q
                       and b.get("routing_key") == "rk" for b in rows), f"bindings: {rows}")
            return f"{len(rows)} bindings"
        run.check("list bindings", list_bindings)

        def list_users():
            names = listed("users", vhost=None)
            expect(target.user in names, f"users listed: {names}")
            return names
        run.check("list users", list_users)

        def list_vhosts():
            names = listed("vhosts", vhost=None)
            expect(vh in names, f"vhosts listed: {names}")
            return f"{len(names)} vhosts"
        run.check("list vhosts", list_vhosts)

        def get():
            msgs = json.loads(admin("get", f"queue={q}", "ackmode=ack_requeue_false",
                                    fmt="raw_json"))
            expect(len(msgs) == 1 and msgs[0].get("payload") == "hello admin"
                   and msgs[0].get("routing_key") == "rk", f"got {msgs}")
            return msgs[0]["payload"]
        run.check(f"get queue={q} ackmode=ack_requeue_false", get)

        def export():
            out = admin("export", defs)
            with open(defs) as f:
                data = json.load(f)
            expect(any(i.get("name") == q for i in data.get("queues", [])),
                   f"exported queues: {data.get('queues')}")
            return out.strip()
        run.check(f"export {os.path.basename(defs)} (-V {vh})", export)
        run.check(f"delete binding source={x} destination={q} properties_key=rk", lambda: admin(
            "delete", "binding", f"source={x}", "destination_type=queue", f"destination={q}",
            "properties_key=rk"))
        run.check(f"delete queue name={q}", lambda: admin("delete", "queue", f"name={q}"))

        def import_():
            out = admin("import", defs)
            names = listed("queues")
            expect(q in names, f"queue not back after import: {names}")
            rows = json.loads(admin("list", "bindings", fmt="raw_json"))
            expect(any(b.get("source") == x and b.get("destination") == q for b in rows),
                   f"binding not back after import: {rows}")
            return out.strip()
        run.check(f"import {os.path.basename(defs)} (-V {vh})", import_)
        run.check(f"purge queue name={q}", lambda: admin("purge", "queue", f"name={q}"))
        run.check(f"delete queue name={q}", lambda: admin("delete", "queue", f"name={q}"))
        run.check(f"delete exchange name={x}", lambda: admin("delete", "exchange", f"name={x}"))
        run.check(f"delete vhost name={vh}", lambda: admin("delete", "vhost", f"name={vh}",
                                                          vhost=None))
    return run.results


# ---------------------------------------------------------------------------------------------
# pyrabbit2
# ---------------------------------------------------------------------------------------------

def run_pyrabbit2(target: Target, tag: str | None = None) -> list[Result]:
    try:
        from pyrabbit2.api import Client
    except ImportError as exc:
        raise Missing(f"pyrabbit2 not installed: {exc}") from exc
    with ToolRun(target, "pyrabbit2", tag) as run:
        vh, q = run.vhost, run.name("q")
        cl = Client(f"{target.mgmt_host}:{target.mgmt_port}", target.user, target.password)

        def overview():
            ov = cl.get_overview()
            expect(isinstance(ov, dict) and "rabbitmq_version" in ov, f"overview {ov}")
            return {k: ov.get(k) for k in ("rabbitmq_version", "management_version")}
        run.check("get_overview()", overview)
        run.check(f"create_queue({vh!r}, {q!r}, durable=False)",
                  lambda: cl.create_queue(vh, q, durable=False, auto_delete=False))

        def queues():
            qs = cl.get_queues(vh)
            expect([i["name"] for i in qs] == [q], f"queues {qs}")
            return [(i["name"], i.get("durable")) for i in qs]
        run.check(f"get_queues({vh!r})", queues)

        def publish():
            routed = cl.publish(vh, "amq.default", q, "hello pyrabbit2")
            expect(routed is True, f"publish returned {routed!r}")
            return routed
        run.check(f"publish({vh!r}, 'amq.default', {q!r}, ...)", publish)

        def get_messages():
            msgs = cl.get_messages(vh, q, count=1, requeue=False)
            expect(len(msgs) == 1 and msgs[0]["payload"] == "hello pyrabbit2", f"got {msgs}")
            return msgs[0]["payload"]
        run.check(f"get_messages({vh!r}, {q!r}, count=1, requeue=False)", get_messages)
        run.check(f"delete_queue({vh!r}, {q!r})", lambda: cl.delete_queue(vh, q))

        def gone():
            qs = cl.get_queues(vh)
            expect(qs == [], f"queues after delete {qs}")
            return qs
        run.check(f"get_queues({vh!r}) after delete", gone)
    return run.results


# ---------------------------------------------------------------------------------------------
# amqpstorm.management
# ---------------------------------------------------------------------------------------------

def run_amqpstorm(target: Target, tag: str | None = None) -> list[Result]:
    try:
        from amqpstorm.management import ManagementApi
    except ImportError as exc:
        raise Missing(f"amqpstorm not installed: {exc}") from exc
    with ToolRun(target, "amqpstorm", tag) as run:
        vh, q = run.vhost, run.name("q")
        api = ManagementApi(target.mgmt_url, target.user, target.password, timeout=10)

        def health():
            h = api.healthchecks.get()
            expect(h == {"status": "ok"}, f"healthchecks {h}")
            return h
        run.check("healthchecks.get()", health)

        def overview():
            ov = api.overview()
            expect("rabbitmq_version" in ov and "object_totals" in ov, f"overview keys {list(ov)}")
            return {k: ov.get(k) for k in ("rabbitmq_version", "management_version")}
        run.check("overview()", overview)

        run.check(f"queue.declare({q!r}, {vh!r}, durable=True)",
                  lambda: api.queue.declare(q, virtual_host=vh, durable=True,
                                            arguments={"x-max-length": 10}))

        def qlist():
            qs = api.queue.list(virtual_host=vh)
            expect([(i["name"], i["durable"], i["arguments"]) for i in qs]
                   == [(q, True, {"x-max-length": 10})], f"queue.list {qs}")
            return [i["name"] for i in qs]
        run.check(f"queue.list(virtual_host={vh!r})", qlist)

        def publish():
            r = api.basic.publish("hello amqpstorm", q, virtual_host=vh,
                                  properties={"content_type": "text/plain"})
            expect(r == {"routed": True}, f"basic.publish {r}")
            return r
        run.check(f"basic.publish(..., {q!r}, virtual_host={vh!r})", publish)

        def count():
            n = poll(lambda: api.queue.get(q, virtual_host=vh).get("messages"), lambda n: n == 1)
            expect(n == 1, f"messages {n}")
            return f"messages={n}"
        run.check(f"queue.get({q!r}, virtual_host={vh!r})['messages']", count)

        def get():
            msgs = api.basic.get(q, virtual_host=vh, requeue=False)
            expect(len(msgs) == 1 and msgs[0].body == "hello amqpstorm"
                   and msgs[0].properties.get("content_type") == "text/plain",
                   f"basic.get {[(m.body, m.properties) for m in msgs]}")
            return msgs[0].body
        run.check(f"basic.get({q!r}, virtual_host={vh!r}, requeue=False)", get)
        run.check(f"queue.delete({q!r}, virtual_host={vh!r})",
                  lambda: api.queue.delete(q, virtual_host=vh))

        def aliveness():
            # The broker declares (and keeps) a queue "aliveness-test" in the vhost.
            a = api.aliveness_test(vh)
            expect(a == {"status": "ok"}, f"aliveness_test {a}")
            return a
        run.check(f"aliveness_test({vh!r})", aliveness)
    return run.results


# ---------------------------------------------------------------------------------------------
# kombu's manager and `celery list bindings`
# ---------------------------------------------------------------------------------------------

def _amqp_url(target: Target, vhost: str) -> str:
    return (f"amqp://{target.user}:{target.password}@{target.amqp_host}:{target.amqp_port}/"
            f"{seg(vhost)}")


def _manager_options(target: Target) -> dict:
    return {"manager_hostname": target.mgmt_host, "manager_port": target.mgmt_port}


def run_kombu(target: Target, tag: str | None = None) -> list[Result]:
    try:
        import kombu
        import pyrabbit  # noqa: F401 - kombu's get_manager imports it
    except ImportError as exc:
        raise Missing(f"kombu's manager needs pyrabbit: {exc}") from exc
    with ToolRun(target, "kombu", tag) as run:
        vh, q, x = run.vhost, run.name("q"), run.name("x")
        conn = kombu.Connection(_amqp_url(target, vh),
                                transport_options=_manager_options(target))
        try:
            exchange = kombu.Exchange(x, "direct", durable=False)
            queue = kombu.Queue(q, exchange, routing_key="rk", durable=False)
            run.check(f"Queue({q!r}, Exchange({x!r}), routing_key='rk').declare() (AMQP)",
                      lambda: queue(conn.default_channel).declare())
            mgr = run.check("Connection(..., transport_options={manager_hostname, manager_port})"
                            ".get_manager()", conn.get_manager)
            if mgr is None:
                return run.results
            # Not is_alive() nor the other admin-only calls: pyrabbit 1.1 compares whoami's tags
            # with the string "administrator", and RabbitMQ 3.10 gives a list, so they raise
            # PermissionError against RabbitMQ itself.

            def overview():
                ov = mgr.get_overview()
                expect("rabbitmq_version" in ov, f"overview {list(ov)}")
                return ov["rabbitmq_version"]
            run.check("manager.get_overview()", overview)

            def queues():
                qs = mgr.get_queues(vh)
                expect([i["name"] for i in qs] == [q], f"queues {qs}")
                return [i["name"] for i in qs]
            run.check(f"manager.get_queues({vh!r})", queues)

            def bindings():
                bs = [b for b in mgr.get_bindings() if b.get("vhost") == vh]
                expect(any(b["source"] == x and b["destination"] == q and b["routing_key"] == "rk"
                           for b in bs), f"bindings {bs}")
                return [(b["source"], b["destination"], b["routing_key"]) for b in bs]
            run.check("manager.get_bindings()", bindings)

            def depth():
                with conn.Producer() as producer:
                    producer.publish(b"hello kombu", exchange=exchange, routing_key="rk")
                n = poll(lambda: mgr.get_queue_depth(vh, q), lambda n: n == 1)
                expect(n == 1, f"depth {n}")
                return n
            run.check(f"manager.get_queue_depth({vh!r}, {q!r}) after a publish", depth)
        finally:
            conn.release()
    return run.results


CELERY_APP = "interop.management.celery_app"


def run_celery(target: Target, tag: str | None = None) -> list[Result]:
    try:
        import celery  # noqa: F401
        import pyrabbit  # noqa: F401 - celery list bindings uses kombu's manager
    except ImportError as exc:
        raise Missing(f"celery list bindings needs celery and pyrabbit: {exc}") from exc
    with ToolRun(target, "celery", tag) as run:
        vh, q = run.vhost, run.name("q")
        url = _amqp_url(target, vh)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
            MGMT_CELERY_QUEUE=q, MGMT_CELERY_MANAGER_HOST=target.mgmt_host,
            MGMT_CELERY_MANAGER_PORT=str(target.mgmt_port))
        cmd = [sys.executable, "-m", "celery", "-A", CELERY_APP, "-b", url, "list", "bindings"]

        def list_bindings():
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env,
                               cwd=ROOT)
            if p.returncode != 0:
                raise RuntimeError(f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-400:]}")
            rows = [line.split() for line in p.stdout.splitlines()]
            # pyrabbit prints each URL it calls, before the table.
            header = ["Queue", "Exchange", "Routing", "Key"]
            expect(header in rows, f"no header in:\n{p.stdout}")
            table = rows[rows.index(header) + 2:]
            # The task queue celery declared, bound to its exchange with its name.
            expect([q, q, q] in table, f"no row '{q} {q} {q}' in:\n{p.stdout}")
            return f"{len(table)} binding rows, ours among them"
        run.check(f"celery -A {CELERY_APP} -b amqp://.../{vh} list bindings", list_bindings)
    return run.results


# ---------------------------------------------------------------------------------------------
# flower
# ---------------------------------------------------------------------------------------------

def run_flower(target: Target, tag: str | None = None) -> list[Result]:
    try:
        from flower.utils.broker import Broker
    except ImportError as exc:
        raise Missing(f"flower not installed: {exc}") from exc
    with ToolRun(target, "flower", tag) as run:
        vh, q, empty = run.vhost, run.name("q"), run.name("empty")
        for name, n in ((q, 2), (empty, 0)):
            r = run.admin.request("PUT", f"/api/queues/{seg(vh)}/{seg(name)}", {"durable": False},
                                  auth=run.auth)
            expect(r.status == 201, f"PUT queue {r.status} {r.text}")
            for i in range(n):
                r = run.admin.request("POST", f"/api/exchanges/{seg(vh)}/amq.default/publish",
                                      {"properties": {}, "routing_key": name, "payload": str(i),
                                       "payload_encoding": "string"}, auth=run.auth)
                expect(r.json == {"routed": True}, f"publish {r.status} {r.text}")
        api = (f"http://{target.user}:{target.password}@{target.mgmt_host}:{target.mgmt_port}"
               "/api/")
        broker = Broker(_amqp_url(target, vh), http_api=api)

        def lengths():
            got = poll(lambda: asyncio.run(broker.queues([q, empty, "not-there"])),
                       lambda got: {i["name"]: i.get("messages") for i in got}
                       == {q: 2, empty: 0})
            found = {i["name"]: i.get("messages") for i in got}
            expect(found == {q: 2, empty: 0}, f"queues() {found}")
            return found
        run.check(f"Broker('amqp://.../{vh}', http_api='http://...@host:port/api/')"
                  f".queues([...])", lengths)
    return run.results


TOOLS: dict[str, Callable[[Target, str | None], list[Result]]] = {
    "rabbitmqadmin": run_rabbitmqadmin, "pyrabbit2": run_pyrabbit2, "amqpstorm": run_amqpstorm,
    "kombu": run_kombu, "celery": run_celery, "flower": run_flower,
}


def run_tool(name: str, target: Target, tag: str | None = None) -> list[Result]:
    """One tool's results; a missing tool is one failed result saying so."""
    try:
        return TOOLS[name](target, tag)
    except Missing as exc:
        return [Result(name, "(installed?)", False, str(exc))]
    except Exception as exc:  # noqa: BLE001 - the vhost set-up failed: nothing else can run
        return [Result(name, "(set-up: PUT vhost and permissions)", False,
                       f"{type(exc).__name__}: {exc}")]


def format_results(results: list[Result]) -> str:
    rows = [("tool", "command", "result")] + [
        (r.tool, r.command, "ok" + (f": {r.detail}" if r.detail and r.detail != "ok" else "")
         if r.ok else f"FAILED: {r.detail}") for r in results]
    w0 = max(len(r[0]) for r in rows)
    w1 = min(max(len(r[1]) for r in rows), 72)
    lines = []
    for n, (a, b, c) in enumerate(rows):
        lines.append(f"{a:<{w0}}  {b[:w1]:<{w1}}  {c}")
        if n == 0:
            lines.append(f"{'-' * w0}  {'-' * w1}  {'-' * 6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}" if __spec__ else None,
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--mgmt", default="127.0.0.1:15672",
                    help="management API host:port (or port, or http URL) (default: %(default)s)")
    ap.add_argument("--amqp", default="127.0.0.1:5672",
                    help="AMQP host:port (or port) of the same broker (default: %(default)s)")
    ap.add_argument("--user", default="guest", help="user for both (default: %(default)s)")
    ap.add_argument("--password", default="guest", help="password (default: %(default)s)")
    ap.add_argument("--tool", action="append", choices=sorted(TOOLS),
                    help="run only this tool (repeatable; default: all)")
    args = ap.parse_args(argv)
    mh, mp = parse_hostport(args.mgmt, 15672)
    ah, ap_ = parse_hostport(args.amqp, 5672)
    target = Target("cli", mh, mp, ah, ap_, args.user, args.password)
    if not target.api.reachable():
        print(f"error: no management API answers at {target.mgmt_url}", file=sys.stderr)
        return 2
    results: list[Result] = []
    for name in args.tool or list(TOOLS):
        results += run_tool(name, target)
    print(format_results(results))
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} commands ok, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
