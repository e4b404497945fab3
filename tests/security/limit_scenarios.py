"""RabbitMQ's vhost and user limits as scenarios run against two brokers: what each limit refuses,
with which code, text and method, and what it lets through.

Each run makes two vhosts and three users (``guest`` joins too) whose names carry a run tag;
observations name them ``<vhost>``, ``<vhost-b>``, ``<user>``, ``<user-b>`` and ``<outsider>``,
so runs compare. Before each scenario both brokers get that scenario's limits: RabbitMQ through
its management API (``PUT``/``DELETE /api/vhost-limits/...`` and ``/api/user-limits/...``: quicker
than a rabbitmqctl per change), this broker through the Admin API.

RabbitMQ counts connections and channels for its limits from events, a moment after they open
or close, so a step that depends on a count waits for it: :meth:`Probe.refused` and
:meth:`Probe.admitted` retry for a few seconds (this broker counts at once and answers the first
time).

``tests/security/test_limits_differential.py`` runs them. To record RabbitMQ's answers for
machines without it (beside RabbitMQ with its management API on 15672):

    python tests/security/limit_scenarios.py --record    # writes rabbitmq_limits.json
    python tests/security/limit_scenarios.py --table     # the README's table from the recording
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

import pika

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:          # interop/ is not an installed package
    sys.path.insert(0, str(ROOT))

from interop.diff import harness  # noqa: E402

RECORDING = Path(__file__).with_name("rabbitmq_limits.json")
PASSWORD = "pw-limits"
#: How long a step waits for RabbitMQ's connection and channel counts to catch up.
SETTLE = 5.0


@dataclasses.dataclass
class World:
    """One run's names: two vhosts, a user with permissions on both (and a second one), and an
    outsider with permissions on neither."""

    tag: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def vhost(self) -> str:
        return f"lim-{self.tag}"

    @property
    def vhost_b(self) -> str:
        return f"lim-b-{self.tag}"

    @property
    def user(self) -> str:
        return f"lim-user-{self.tag}"

    @property
    def user_b(self) -> str:
        return f"lim-user-b-{self.tag}"

    @property
    def outsider(self) -> str:
        return f"lim-outsider-{self.tag}"

    def aliases(self, ctx: harness.Context) -> None:
        # Longest first: the b-names contain no other name, but keep the rule anyway.
        for real, alias in ((self.outsider, "<outsider>"), (self.user_b, "<user-b>"), (self.vhost_b, "<vhost-b>"),
                            (self.user, "<user>"), (self.vhost, "<vhost>")):
            ctx.alias(real, alias)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One limit's behaviour: the limits in force, what a client sees (the README's table)."""

    name: str
    limit: str
    vhost_limits: dict
    user_limits: dict
    fn: Callable[["Probe"], None]


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, limit: str, vhost_limits: dict | None = None, user_limits: dict | None = None):
    def deco(fn: Callable[["Probe"], None]) -> Callable[["Probe"], None]:
        assert name not in SCENARIOS, name
        SCENARIOS[name] = Scenario(name, limit, vhost_limits or {}, user_limits or {}, fn)
        return fn
    return deco


class Probe:
    """A scenario's view: the harness context and connections as the run's users."""

    def __init__(self, ctx: harness.Context, world: World):
        self.ctx = ctx
        self.world = world

    def _params(self, user: str, vhost: str, **kw: Any) -> pika.ConnectionParameters:
        password = "guest" if user == "guest" else PASSWORD
        return self.ctx.params(virtual_host=vhost, credentials=pika.PlainCredentials(user, password), **kw)

    def raw(self, user: str, vhost: str, channel_max: int) -> Any:
        """A raw-frame connection (interop.probe_rabbitmq.Raw) that asked for ``channel_max``."""
        from interop.probe_rabbitmq import Raw

        raw = Raw(self.ctx.host, self.ctx.port)
        self.ctx._raws.append(raw)   # closed when the scenario ends
        done = raw.handshake(user=user, password="guest" if user == "guest" else PASSWORD, vhost=vhost,
                             tune={"channel_max": channel_max})
        assert done.get("ok"), done
        return raw

    def _try_open(self, user: str, vhost: str, **kw: Any) -> tuple[pika.BlockingConnection | None, Any]:
        before = len(self.ctx.closes)
        try:
            conn = pika.BlockingConnection(self._params(user, vhost, **kw))
        except pika.exceptions.AMQPError as exc:
            closes = self.ctx.closes[before:]
            return None, closes[-1].as_obs() if closes else {"error": type(exc).__name__}
        self.ctx._conns.append(conn)   # closed when the scenario ends
        return conn, "open"

    def open(self, key: str, user: str, vhost: str, **kw: Any) -> pika.BlockingConnection | None:
        """Observe opening a connection (``kw``: pika's connection parameters): "open" or the
        broker's connection.close."""
        conn, seen = self._try_open(user, vhost, **kw)
        self.ctx.observe(key, seen)
        return conn

    def refused(self, key: str, user: str, vhost: str) -> None:
        """Observe the refusal of a connection that a limit should refuse; one that opens while
        the broker's count catches up is closed and tried again, for a few seconds."""
        deadline = time.monotonic() + SETTLE
        while True:
            conn, seen = self._try_open(user, vhost)
            if conn is None or time.monotonic() > deadline:
                self.ctx.observe(key, seen)
                return
            conn.close()
            time.sleep(0.05)

    def admitted(self, key: str, user: str, vhost: str) -> pika.BlockingConnection | None:
        """Observe that a connection opens once the broker's count went down (retried)."""
        deadline = time.monotonic() + SETTLE
        while True:
            conn, seen = self._try_open(user, vhost)
            if conn is not None or time.monotonic() > deadline:
                self.ctx.observe(key, seen)
                return conn
            time.sleep(0.05)

    def channel(self, key: str, conn: pika.BlockingConnection) -> Any:
        """Observe opening a channel on ``conn``: "open" or the broker's close."""
        ch = self.ctx.attempt(None, conn.channel)
        self.ctx.observe(key, _seen(ch))
        return ch if ch else None

    def channel_refused(self, key: str, user: str, vhost: str) -> None:
        """Observe channel.open refused on a fresh connection (retried while counts settle)."""
        deadline = time.monotonic() + SETTLE
        while True:
            conn, _ = self._try_open(user, vhost)
            assert conn is not None, "the connection itself was refused"
            ch = self.ctx.attempt(None, conn.channel)
            if not ch or time.monotonic() > deadline:
                self.ctx.observe(key, _seen(ch))
                return
            conn.close()
            time.sleep(0.05)

    def channel_admitted(self, key: str, conn: pika.BlockingConnection) -> Any:
        """Observe that a channel opens once the user's channel count went down (retried on
        fresh connections of the same user, as a refusal closes the connection)."""
        deadline = time.monotonic() + SETTLE
        user = self.world.user
        while True:
            ch = self.ctx.attempt(None, conn.channel)
            if ch or time.monotonic() > deadline:
                self.ctx.observe(key, _seen(ch))
                return ch if ch else None
            time.sleep(0.05)
            conn, _ = self._try_open(user, self.world.vhost)


def _seen(ch: Any) -> Any:
    """A channel attempt as an observation: "open", or the close as a dict (so that the names
    in its text are normalised like any other)."""
    if ch:
        return "open"
    return ch.close.as_obs() if isinstance(ch, harness.Closed) and ch.close else {"error": "no channel"}


# -- the scenarios --------------------------------------------------------------------------------


@scenario("vhost max-connections 1", "vhost max-connections", {"max-connections": 1})
def _(p: Probe) -> None:
    w = p.world
    first = p.open("first connection", "guest", w.vhost)
    p.refused("second connection", "guest", w.vhost)
    p.refused("another user's connection", w.user, w.vhost)
    p.open("a connection to another vhost", w.user, w.vhost_b)
    first.close()
    p.admitted("after the first closed", w.user, w.vhost)


@scenario("vhost max-connections 0", "vhost max-connections", {"max-connections": 0})
def _(p: Probe) -> None:
    p.open("any connection", "guest", p.world.vhost)


@scenario("vhost max-connections -1", "vhost max-connections", {"max-connections": -1, "max-queues": -1})
def _(p: Probe) -> None:
    for n in range(3):
        p.open(f"connection {n + 1}", "guest", p.world.vhost)


@scenario("vhost limit before the access check", "vhost max-connections", {"max-connections": 0})
def _(p: Probe) -> None:
    p.open("a user without permissions", p.world.outsider, p.world.vhost)
    p.open("a vhost that does not exist", "guest", f"{p.world.vhost}-missing")


@scenario("vhost max-queues 1", "vhost max-queues", {"max-queues": 1})
def _(p: Probe) -> None:
    conn = p.open("connection", "guest", p.world.vhost)
    ctx = p.ctx
    ch = conn.channel()
    ctx.attempt("declare q1", lambda: ch.queue_declare("q1").method)
    ctx.attempt("redeclare q1", lambda: ch.queue_declare("q1").method)
    ctx.attempt("passive q1", lambda: ch.queue_declare("q1", passive=True).method)
    ctx.attempt("declare q2", lambda: ch.queue_declare("q2").method)
    ch = conn.channel()
    ctx.attempt("declare server-named exclusive", lambda: ch.queue_declare("", exclusive=True).method)
    ch = conn.channel()
    ctx.attempt("declare q2 with a bad argument", lambda: ch.queue_declare(
        "q2", arguments={"x-message-ttl": "soon"}).method)
    ch = conn.channel()
    ctx.attempt("inequivalent redeclare of q1", lambda: ch.queue_declare("q1", durable=True).method)
    ch = conn.channel()
    ctx.attempt("delete q1", lambda: ch.queue_delete("q1").method)
    ctx.attempt("declare q2 after the delete", lambda: ch.queue_declare("q2").method)
    ctx.attempt("delete q2", lambda: ch.queue_delete("q2").method)


@scenario("vhost max-queues 0", "vhost max-queues", {"max-queues": 0})
def _(p: Probe) -> None:
    conn = p.open("connection", "guest", p.world.vhost)
    ch = conn.channel()
    p.ctx.attempt("declare", lambda: ch.queue_declare("q0").method)


@scenario("user max-connections 2", "user max-connections", user_limits={"max-connections": 2})
def _(p: Probe) -> None:
    w = p.world
    p.open("first connection", w.user, w.vhost)
    second = p.open("second connection, another vhost", w.user, w.vhost_b)
    p.refused("third connection", w.user, w.vhost)
    p.open("another user", w.user_b, w.vhost)
    second.close()
    p.admitted("after one closed", w.user, w.vhost_b)


@scenario("user max-connections 0", "user max-connections", user_limits={"max-connections": 0})
def _(p: Probe) -> None:
    p.open("any connection", p.world.user, p.world.vhost)


@scenario("vhost and user limits both reached", "vhost max-connections",
          {"max-connections": 0}, {"max-connections": 0})
def _(p: Probe) -> None:
    p.open("connection", p.world.user, p.world.vhost)


@scenario("user max-channels 2", "user max-channels", user_limits={"max-channels": 2})
def _(p: Probe) -> None:
    w = p.world
    first = p.open("first connection", w.user, w.vhost)
    one = p.channel("channel 1", first)
    p.channel("channel 2", first)
    p.channel_refused("a channel on a second connection", w.user, w.vhost)
    p.ctx.observe("first connection still open", first.is_open)
    other = p.open("another user's connection", w.user_b, w.vhost)
    p.channel("another user's channel", other)
    one.close()
    p.channel_admitted("after a channel closed", first)


@scenario("user max-channels 0", "user max-channels", user_limits={"max-channels": 0})
def _(p: Probe) -> None:
    conn = p.open("connection", p.world.user, p.world.vhost)
    p.channel("channel", conn)


@scenario("negotiated channel_max 2", "channel_max (connection.tune)")
def _(p: Probe) -> None:
    raw = p.raw("guest", p.world.vhost, channel_max=2)   # pika would not ask for a third channel
    for number in (1, 2, 3):
        p.ctx.observe(f"channel.open {number}", raw.open_channel(number))


@scenario("channel_max before the user's max-channels", "channel_max (connection.tune)",
          user_limits={"max-channels": 2})
def _(p: Probe) -> None:
    raw = p.raw(p.world.user, p.world.vhost, channel_max=2)
    for number in (1, 5, 9):
        p.ctx.observe(f"channel.open {number}", raw.open_channel(number))


ALL = list(SCENARIOS)


def run(name: str, world: World, host: str, port: int, label: str) -> harness.Outcome:
    sc = SCENARIOS[name]

    def fn(ctx: harness.Context) -> None:
        world.aliases(ctx)
        sc.fn(Probe(ctx, world))

    return harness.run_one(harness.Scenario(name, fn, ("security",), sc.limit, __name__), host, port, label)


# -- RabbitMQ's side: its management API -----------------------------------------------------------


class RabbitHttp:
    """RabbitMQ's management API as guest: ``request(method, path, body)`` -> (status, JSON or
    text)."""

    def __init__(self, base: str = "http://127.0.0.1:15672", user: str = "guest", password: str = "guest"):
        self.base = base
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("authorization", self.auth)
        req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, value = self.request(method, path, body)
        assert status < 300, (method, path, status, value)
        return value


def q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def rabbitmq_problem(http: RabbitHttp) -> str | None:
    """None when RabbitMQ's management API answers as guest, else why not."""
    try:
        status, value = http.request("GET", "/api/overview")
    except OSError as exc:
        return f"its management API does not answer: {exc}"
    if status != 200 or not isinstance(value, dict) or "rabbitmq_version" not in value:
        return f"its management API answers {status}"
    return None


def setup_rabbitmq(http: RabbitHttp, world: World) -> None:
    for vhost in (world.vhost, world.vhost_b):
        http.ok("PUT", f"/api/vhosts/{q(vhost)}")
    for user in (world.user, world.user_b, world.outsider):
        http.ok("PUT", f"/api/users/{q(user)}", {"password": PASSWORD, "tags": ""})
    for user in ("guest", world.user, world.user_b):
        for vhost in (world.vhost, world.vhost_b):
            http.ok("PUT", f"/api/permissions/{q(vhost)}/{q(user)}", {"configure": ".*", "write": ".*", "read": ".*"})


def teardown_rabbitmq(http: RabbitHttp, world: World) -> list[str]:
    problems = []
    for path in [f"/api/vhosts/{q(v)}" for v in (world.vhost, world.vhost_b)] + [
            f"/api/users/{q(u)}" for u in (world.user, world.user_b, world.outsider)]:
        status, value = http.request("DELETE", path)
        if status >= 300:
            problems.append(f"DELETE {path}: {status} {value}")
    return problems


def limit_rabbitmq(http: RabbitHttp, world: World, sc: Scenario) -> None:
    """Give RabbitMQ exactly ``sc``'s limits on the run's vhost and user."""
    for name in ("max-connections", "max-queues"):
        if name in sc.vhost_limits:
            http.ok("PUT", f"/api/vhost-limits/{q(world.vhost)}/{name}", {"value": sc.vhost_limits[name]})
        else:
            http.ok("DELETE", f"/api/vhost-limits/{q(world.vhost)}/{name}")
    for name in ("max-connections", "max-channels"):
        if name in sc.user_limits:
            http.ok("PUT", f"/api/user-limits/{q(world.user)}/{name}", {"value": sc.user_limits[name]})
        else:
            http.ok("DELETE", f"/api/user-limits/{q(world.user)}/{name}")


# -- this broker's side: the Admin API -------------------------------------------------------------


def setup_with_admin(admin: Any, world: World) -> None:
    for vhost in (world.vhost, world.vhost_b):
        admin.add_vhost(vhost)
    for user in (world.user, world.user_b, world.outsider):
        admin.add_user(user, PASSWORD)
    for user in ("guest", world.user, world.user_b):
        for vhost in (world.vhost, world.vhost_b):
            admin.set_permissions(user, vhost)


def limit_with_admin(admin: Any, world: World, sc: Scenario) -> None:
    admin.set_vhost_limits(world.vhost, sc.vhost_limits)
    admin.clear_user_limits(world.user, "all")
    admin.set_user_limits(world.user, sc.user_limits)


# -- recording and the README's table --------------------------------------------------------------


def _record() -> None:
    http = RabbitHttp()
    problem = rabbitmq_problem(http)
    if problem:
        sys.exit(f"RabbitMQ is not usable: {problem}")
    world = World()
    setup_rabbitmq(http, world)
    rows = {}
    try:
        for name in ALL:
            limit_rabbitmq(http, world, SCENARIOS[name])
            outcome = run(name, world, "127.0.0.1", 5672, "rabbit")
            assert outcome.traceback is None, outcome.traceback
            rows[name] = outcome.observations
    finally:
        problems = teardown_rabbitmq(http, world)
        assert not problems, problems
    overview = http.ok("GET", "/api/overview")
    RECORDING.write_text(json.dumps({
        "server": {"product": "RabbitMQ", "version": overview["rabbitmq_version"]},
        "recorded": datetime.date.today().isoformat(),
        "rows": rows,
    }, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {RECORDING}")


def _describe(value: Any) -> str:
    if isinstance(value, dict) and value.get("frame") == "method":   # a raw frame
        if "reply_code" not in value:
            return "ok" if value["method"].endswith("ok") else value["method"]
        value = {"close": value["method"].split(".")[0], "reply_text": value["reply_text"],
                 "method": harness.method_name(value["class_id"], value["method_id"])}
    if isinstance(value, dict) and "reply_text" in value:
        method = value.get("method") or "no method"
        return f"{value['close']}.close {value['reply_text']} ({method})"
    if isinstance(value, dict) and "ok" in value:
        return "ok"
    return str(value)


def _table() -> None:
    data = json.loads(RECORDING.read_text(encoding="utf-8"))
    print("| scenario | step | RabbitMQ 3.10.8 (and this broker) |")
    print("|---|---|---|")
    for name in ALL:
        for key, value in data["rows"][name].items():
            print(f"| {name} | {key} | {_describe(value)} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="run against RabbitMQ and write the recording")
    parser.add_argument("--table", action="store_true", help="print the recording as a Markdown table")
    options = parser.parse_args()
    if options.record:
        _record()
    if options.table:
        _table()
