"""RabbitMQ's access-control table as scenarios run against two brokers: every operation that
needs a permission, allowed and refused, plus the rules around it (the default exchange, passive
declares, server-named and exclusive queues, dead-letter and alternate exchanges, topic
permissions and their variables).

Each run makes one vhost and a set of users, one per *role* below, whose names carry a run tag;
observations name them ``<vhost>`` and ``<role>``, so runs compare. A scenario is a list of
attempts (interop/diff's ``ctx.attempt``: the reply, or the close with its code, text, scope and
method), each as some role on a fresh channel.

On RabbitMQ the vhost and users are made with ``rabbitmqctl`` (add_vhost, add_user,
set_permissions, set_topic_permissions) and deleted afterwards; on this broker with the Admin API
or a definitions file (:func:`definitions`). ``tests/security/test_permissions_differential.py``
runs them. To record RabbitMQ's answers for machines without it (run as root, beside RabbitMQ):

    python tests/security/permission_scenarios.py --record     # writes rabbitmq_permissions.json
    python tests/security/permission_scenarios.py --table      # README's table: the recording and ours
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import pika

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:          # interop/ is not an installed package
    sys.path.insert(0, str(ROOT))

from interop.diff import harness  # noqa: E402

RECORDING = Path(__file__).with_name("rabbitmq_permissions.json")

# role -> (configure, write, read) on the run's vhost; None: no permissions there at all.
ROLES: dict[str, tuple[str, str, str] | None] = {
    "admin": (".*", ".*", ".*"),
    "none": ("", "", ""),                       # "" is RabbitMQ's ^$: the vhost, and nothing in it
    "configure": (".*", "", ""),
    "write": ("", ".*", ""),
    "read": ("", "", ".*"),
    "app": (r"^app\.", r"^app\.", r"^app\."),
    "servernamed": (r"^amq\.gen-", "", ".*"),
    "dlx": (".*", "^dlx-ok$", ".*"),
    "defaultx": (".*", r"^amq\.default$", ".*"),
    "topic": (".*", ".*", ".*"),
    "clientid": (".*", ".*", ".*"),
    "outsider": None,
}

# (role, exchange, write, read): RabbitMQ's set_topic_permissions.
TOPIC_PERMISSIONS = [
    ("topic", "amq.topic", r"^{username}\.", r"^{vhost}\."),
    ("topic", "app.topic", r"^a\.", ""),
    ("topic", "app.direct", "^never$", "^never$"),   # not a topic exchange: not applied
    ("clientid", "amq.topic", r"^{client_id}\.", ".*"),
]


@dataclasses.dataclass
class World:
    """One run's names: the vhost and a user per role (password ``pw-<role>``)."""

    tag: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def vhost(self) -> str:
        return f"perm-{self.tag}"

    def user(self, role: str) -> str:
        return f"perm-{role}-{self.tag}"

    @staticmethod
    def password(role: str) -> str:
        return f"pw-{role}"

    def aliases(self, ctx: harness.Context) -> None:
        ctx.alias(self.vhost, "<vhost>")
        for role in ROLES:
            ctx.alias(self.user(role), f"<{role}>")


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: the operation, the permission RabbitMQ needs for it, and the
    scenario showing it."""

    name: str
    operation: str
    needs: str
    fn: Callable[["Probe"], None]


ROWS: dict[str, Row] = {}


def row(name: str, operation: str, needs: str) -> Callable:
    def deco(fn: Callable[["Probe"], None]) -> Callable[["Probe"], None]:
        assert name not in ROWS, name
        ROWS[name] = Row(name, operation, needs, fn)
        return fn
    return deco


class Probe:
    """A scenario's view: the harness context plus a connection per role."""

    def __init__(self, ctx: harness.Context, world: World):
        self.ctx = ctx
        self.world = world
        self._conns: dict[str, pika.BlockingConnection] = {}

    def conn(self, role: str, **kw: Any) -> pika.BlockingConnection:
        """A connection as ``role`` (one per role, reopened after a connection-level close)."""
        conn = self._conns.get(role)
        if conn is None or not conn.is_open or kw:
            conn = self.ctx.connection(
                credentials=pika.PlainCredentials(self.world.user(role), self.world.password(role)),
                **kw)
            if not kw:
                self._conns[role] = conn
        return conn

    def open(self, key: str, role: str) -> None:
        """Observe opening a connection as ``role``: "open", or the broker's connection.close."""
        before = len(self.ctx.closes)
        try:
            self.conn(role).channel()
        except pika.exceptions.AMQPError as exc:
            closes = self.ctx.closes[before:]
            self.ctx.observe(key, closes[-1].as_obs() if closes else {"error": type(exc).__name__})
            return
        self.ctx.observe(key, "open")

    def setup(self, fn: Callable[[Any], Any]) -> None:
        """Run ``fn(channel)`` as admin; it must succeed (not an observation)."""
        ch = self.conn("admin").channel()
        fn(ch)
        ch.close()

    def attempt(self, key: str, role: str, fn: Callable[[Any], Any]) -> Any:
        """As ``role``, on a fresh channel: observe ``fn(channel)``'s reply or the close."""
        ch = self.ctx.attempt(None, lambda: self.conn(role).channel())
        if not ch:
            self.ctx.observe(key, ch)
            return ch
        return self.ctx.attempt(key, fn, ch)

    def publish(self, key: str, role: str, exchange: str, routing_key: str) -> Any:
        """A confirmed publish, so a refusal is seen at once."""
        def go(ch: Any) -> str:
            ch.confirm_delivery()
            ch.basic_publish(exchange, routing_key, b"m")
            return "published"
        return self.attempt(key, role, go)


# -- the table ----------------------------------------------------------------------------------


@row("connection.open", "connection.open", "any permission on the vhost")
def _(p: Probe) -> None:
    p.open("no permissions on the vhost", "outsider")
    p.open("patterns that match nothing", "none")


@row("exchange.declare", "exchange.declare", "configure on the exchange")
def _(p: Probe) -> None:
    p.attempt("none", "none", lambda ch: ch.exchange_declare("app.x1", "direct"))
    p.attempt("read+write only", "write", lambda ch: ch.exchange_declare("app.x1", "direct"))
    p.attempt("configure", "configure", lambda ch: ch.exchange_declare("app.x1", "direct"))
    p.attempt("app: app.x2", "app", lambda ch: ch.exchange_declare("app.x2", "fanout"))
    p.attempt("app: other.x2", "app", lambda ch: ch.exchange_declare("other.x2", "fanout"))


@row("exchange.declare existing", "exchange.declare of an existing exchange",
     "configure on the exchange (checked before it is looked up)")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.exchange_declare("other.x3", "direct"))
    p.attempt("none", "none", lambda ch: ch.exchange_declare("other.x3", "direct"))
    p.attempt("app", "app", lambda ch: ch.exchange_declare("other.x3", "direct"))
    p.attempt("admin, inequivalent", "admin", lambda ch: ch.exchange_declare("other.x3", "fanout"))


@row("exchange.declare passive", "exchange.declare passive=true", "none")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.exchange_declare("other.x4", "topic"))
    p.attempt("none, existing", "none", lambda ch: ch.exchange_declare("other.x4", passive=True))
    p.attempt("none, missing", "none", lambda ch: ch.exchange_declare("other.x5", passive=True))


@row("exchange.declare amq.*", "exchange.declare of a reserved amq.* name",
     "configure on the exchange, checked before the reserved prefix")
def _(p: Probe) -> None:
    p.attempt("app", "app", lambda ch: ch.exchange_declare("amq.x6", "direct"))
    p.attempt("admin", "admin", lambda ch: ch.exchange_declare("amq.x6", "direct"))
    p.attempt("app, default exchange", "app", lambda ch: ch.exchange_declare("", "direct"))


@row("exchange.declare alternate-exchange", "exchange.declare of a new exchange with an "
     "alternate-exchange", "configure and read on the exchange, write on the alternate")
def _(p: Probe) -> None:
    ae = {"alternate-exchange": "other.ae"}
    p.attempt("app, AE other.ae", "app", lambda ch: ch.exchange_declare("app.x7", "direct", arguments=ae))
    p.attempt("app, AE app.ae", "app", lambda ch: ch.exchange_declare(
        "app.x8", "direct", arguments={"alternate-exchange": "app.ae"}))
    p.attempt("configure only", "configure", lambda ch: ch.exchange_declare("app.x9", "direct", arguments=ae))
    p.setup(lambda ch: ch.exchange_declare("app.x10", "direct"))
    p.attempt("app, existing exchange, AE other.ae", "app",
              lambda ch: ch.exchange_declare("app.x10", "direct", arguments=ae))


@row("exchange.delete", "exchange.delete", "configure on the exchange")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.exchange_declare("app.x11", "direct"))
    p.attempt("none", "none", lambda ch: ch.exchange_delete("app.x11"))
    p.attempt("none, missing", "none", lambda ch: ch.exchange_delete("app.missing"))
    p.attempt("app, other.x", "app", lambda ch: ch.exchange_delete("other.missing"))
    p.attempt("app, amq.direct", "app", lambda ch: ch.exchange_delete("amq.direct"))
    p.attempt("configure", "configure", lambda ch: ch.exchange_delete("app.x11"))


@row("queue.declare", "queue.declare", "configure on the queue")
def _(p: Probe) -> None:
    p.attempt("none", "none", lambda ch: ch.queue_declare("app.q1"))
    p.attempt("read+write only", "write", lambda ch: ch.queue_declare("app.q1"))
    p.attempt("configure", "configure", lambda ch: ch.queue_declare("app.q1"))
    p.attempt("app: app.q2", "app", lambda ch: ch.queue_declare("app.q2", durable=True))
    p.attempt("app: other.q2", "app", lambda ch: ch.queue_declare("other.q2"))
    p.attempt("none, existing", "none", lambda ch: ch.queue_declare("app.q1"))
    p.attempt("app, amq.* name", "app", lambda ch: ch.queue_declare("amq.q3"))


@row("queue.declare passive", "queue.declare passive=true", "none")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.queue_declare("other.q4"))
    p.attempt("none, existing", "none", lambda ch: ch.queue_declare("other.q4", passive=True))
    p.attempt("none, missing", "none", lambda ch: ch.queue_declare("other.q5", passive=True))


@row("queue.declare server-named", "queue.declare of a server-named queue",
     "configure on its amq.gen-… name")
def _(p: Probe) -> None:
    p.attempt("app", "app", lambda ch: ch.queue_declare("", exclusive=True))
    p.attempt("configure ^amq\\.gen-", "servernamed", lambda ch: ch.queue_declare("", exclusive=True))
    p.attempt("configure ^amq\\.gen-, named", "servernamed", lambda ch: ch.queue_declare("app.q6"))


@row("queue.declare exclusive", "queue.declare exclusive=true",
     "configure on the queue (checked before another connection's lock)")
def _(p: Probe) -> None:
    p.attempt("none", "none", lambda ch: ch.queue_declare("app.q7", exclusive=True))
    p.attempt("configure", "configure", lambda ch: ch.queue_declare("app.q7", exclusive=True))
    holder = p.conn("admin", client_properties={"connection_name": "holder"})
    holder.channel().queue_declare("app.q8", exclusive=True)
    p.attempt("none, locked by another connection", "none",
              lambda ch: ch.queue_declare("app.q8", exclusive=True))
    p.attempt("configure, locked by another connection", "configure",
              lambda ch: ch.queue_declare("app.q8", exclusive=True))
    p.attempt("none, passive on the locked queue", "none",
              lambda ch: ch.queue_declare("app.q8", passive=True))


@row("queue.declare dead-letter-exchange", "queue.declare of a new queue with "
     "x-dead-letter-exchange", "configure and read on the queue, write on the dead-letter exchange")
def _(p: Probe) -> None:
    p.attempt("write ^dlx-ok$, DLX dlx-bad", "dlx", lambda ch: ch.queue_declare(
        "app.q9", arguments={"x-dead-letter-exchange": "dlx-bad"}))
    p.attempt("write ^dlx-ok$, DLX dlx-ok", "dlx", lambda ch: ch.queue_declare(
        "app.q10", arguments={"x-dead-letter-exchange": "dlx-ok"}))
    p.attempt("write ^dlx-ok$, redeclare with DLX dlx-ok", "dlx", lambda ch: ch.queue_declare(
        "app.q10", arguments={"x-dead-letter-exchange": "dlx-ok"}))
    p.attempt("configure only", "configure", lambda ch: ch.queue_declare(
        "app.q11", arguments={"x-dead-letter-exchange": "dlx-ok"}))
    p.attempt("write ^dlx-ok$, DLX default exchange", "dlx", lambda ch: ch.queue_declare(
        "app.q12", arguments={"x-dead-letter-exchange": ""}))


@row("queue.delete", "queue.delete", "configure on the queue")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.queue_declare("app.q13"))
    p.attempt("none", "none", lambda ch: ch.queue_delete("app.q13"))
    p.attempt("none, missing", "none", lambda ch: ch.queue_delete("app.missing"))
    p.attempt("read", "read", lambda ch: ch.queue_delete("app.q13"))
    p.attempt("configure", "configure", lambda ch: ch.queue_delete("app.q13"))


@row("queue.purge", "queue.purge", "read on the queue")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.queue_declare("app.q14"))
    p.attempt("configure+write", "write", lambda ch: ch.queue_purge("app.q14"))
    p.attempt("read", "read", lambda ch: ch.queue_purge("app.q14"))
    p.attempt("read, missing", "read", lambda ch: ch.queue_purge("app.missing"))
    p.attempt("none, missing", "none", lambda ch: ch.queue_purge("app.missing"))


@row("queue.bind", "queue.bind", "write on the queue, read on the exchange")
def _(p: Probe) -> None:
    p.setup(lambda ch: (ch.queue_declare("app.q15"), ch.queue_declare("other.q15"),
                        ch.exchange_declare("app.x15", "direct"), ch.exchange_declare("other.x15", "direct")))
    p.attempt("app: app.q15 <- other.x15", "app", lambda ch: ch.queue_bind("app.q15", "other.x15", "k"))
    p.attempt("app: other.q15 <- app.x15", "app", lambda ch: ch.queue_bind("other.q15", "app.x15", "k"))
    p.attempt("app: app.q15 <- app.x15", "app", lambda ch: ch.queue_bind("app.q15", "app.x15", "k"))
    p.attempt("write only", "write", lambda ch: ch.queue_bind("app.q15", "app.x15", "k2"))
    p.attempt("read only", "read", lambda ch: ch.queue_bind("app.q15", "app.x15", "k2"))
    p.attempt("app: missing queue and exchange", "app", lambda ch: ch.queue_bind("app.nq", "app.nx", "k"))
    p.attempt("none: missing queue and exchange", "none", lambda ch: ch.queue_bind("app.nq", "app.nx", "k"))


@row("queue.bind default exchange", "queue.bind to the default exchange",
     "write on the queue, then refused for every user")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.queue_declare("app.q16"))
    p.attempt("app", "app", lambda ch: ch.queue_bind("app.q16", "", "k"))
    p.attempt("none", "none", lambda ch: ch.queue_bind("app.q16", "", "k"))


@row("queue.unbind", "queue.unbind", "write on the queue, read on the exchange")
def _(p: Probe) -> None:
    p.setup(lambda ch: (ch.queue_declare("app.q17"), ch.queue_declare("other.q17"),
                        ch.exchange_declare("app.x17", "direct"), ch.exchange_declare("other.x17", "direct"),
                        ch.queue_bind("app.q17", "other.x17", "k"), ch.queue_bind("other.q17", "app.x17", "k"),
                        ch.queue_bind("app.q17", "app.x17", "k")))
    p.attempt("app: app.q17 <- other.x17", "app", lambda ch: ch.queue_unbind("app.q17", "other.x17", "k"))
    p.attempt("app: other.q17 <- app.x17", "app", lambda ch: ch.queue_unbind("other.q17", "app.x17", "k"))
    p.attempt("app: app.q17 <- app.x17", "app", lambda ch: ch.queue_unbind("app.q17", "app.x17", "k"))
    p.attempt("app: binding missing", "app", lambda ch: ch.queue_unbind("app.q17", "app.x17", "k"))
    p.attempt("none: default exchange", "none", lambda ch: ch.queue_unbind("app.q17", "", "k"))


@row("exchange.bind", "exchange.bind", "write on the destination, read on the source")
def _(p: Probe) -> None:
    p.setup(lambda ch: (ch.exchange_declare("app.x18", "direct"), ch.exchange_declare("other.x18", "direct")))
    p.attempt("app: app.x18 <- other.x18", "app",
              lambda ch: ch.exchange_bind("app.x18", "other.x18", "k"))
    p.attempt("app: other.x18 <- app.x18", "app",
              lambda ch: ch.exchange_bind("other.x18", "app.x18", "k"))
    p.attempt("app: app.x18 <- app.x18b (missing)", "app",
              lambda ch: ch.exchange_bind("app.x18", "app.x18b", "k"))
    p.setup(lambda ch: ch.exchange_declare("app.x18b", "fanout"))
    p.attempt("app: app.x18 <- app.x18b", "app", lambda ch: ch.exchange_bind("app.x18", "app.x18b", "k"))
    p.attempt("app: default exchange as destination", "app",
              lambda ch: ch.exchange_bind("", "app.x18b", "k"))


@row("exchange.unbind", "exchange.unbind", "write on the destination, read on the source")
def _(p: Probe) -> None:
    p.setup(lambda ch: (ch.exchange_declare("app.x19", "direct"), ch.exchange_declare("other.x19", "direct"),
                        ch.exchange_declare("app.x19b", "direct"),
                        ch.exchange_bind("app.x19", "other.x19", "k"), ch.exchange_bind("other.x19", "app.x19", "k"),
                        ch.exchange_bind("app.x19", "app.x19b", "k")))
    p.attempt("app: app.x19 <- other.x19", "app",
              lambda ch: ch.exchange_unbind("app.x19", "other.x19", "k"))
    p.attempt("app: other.x19 <- app.x19", "app",
              lambda ch: ch.exchange_unbind("other.x19", "app.x19", "k"))
    p.attempt("app: app.x19 <- app.x19b", "app", lambda ch: ch.exchange_unbind("app.x19", "app.x19b", "k"))


@row("basic.publish", "basic.publish", "write on the exchange")
def _(p: Probe) -> None:
    p.setup(lambda ch: (ch.exchange_declare("app.x20", "direct"), ch.exchange_declare("other.x20", "direct")))
    p.publish("read only", "read", "app.x20", "k")
    p.publish("write only", "write", "app.x20", "k")
    p.publish("app: app.x20", "app", "app.x20", "k")
    p.publish("app: other.x20", "app", "other.x20", "k")
    p.publish("app: missing app.nx", "app", "app.nx", "k")
    p.publish("app: missing other.nx", "app", "other.nx", "k")
    p.publish("app: amq.direct", "app", "amq.direct", "k")


@row("basic.publish default exchange", "basic.publish to the default exchange",
     "write on amq.default")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.queue_declare("app.q21"))
    p.publish("app", "app", "", "app.q21")
    p.publish("write ^amq\\.default$", "defaultx", "", "app.q21")
    p.attempt("message arrived", "admin", lambda ch: ch.queue_declare("app.q21", passive=True))


@row("basic.publish internal", "basic.publish to an internal exchange",
     "write on the exchange, then refused for every user")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.exchange_declare("other.x22", "direct", internal=True))
    p.publish("app", "app", "other.x22", "k")
    p.publish("admin", "admin", "other.x22", "k")


@row("basic.get", "basic.get", "read on the queue")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.queue_declare("app.q23"))
    p.attempt("configure+write", "write", lambda ch: ch.basic_get("app.q23"))
    p.attempt("read", "read", lambda ch: ch.basic_get("app.q23"))
    p.attempt("app: other.missing", "app", lambda ch: ch.basic_get("other.missing"))


@row("basic.consume", "basic.consume", "read on the queue")
def _(p: Probe) -> None:
    p.setup(lambda ch: ch.queue_declare("app.q24"))
    p.attempt("configure+write", "write", lambda ch: ch.basic_consume("app.q24", lambda *a: None))
    p.attempt("read", "read", lambda ch: ch.basic_consume("app.q24", lambda *a: None))
    p.attempt("none: direct reply-to", "none", lambda ch: ch.basic_consume(
        "amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True))


@row("topic write", "basic.publish to a topic exchange with topic permissions",
     "write on the exchange, and the topic permission's write pattern on the routing key")
def _(p: Probe) -> None:
    me = p.world.user("topic")
    p.publish("amq.topic, key <topic>.x (write ^{username}\\.)", "topic", "amq.topic", f"{me}.x")
    p.publish("amq.topic, key x.y", "topic", "amq.topic", "x.y")
    p.setup(lambda ch: (ch.exchange_declare("app.topic", "topic"), ch.exchange_declare("app.direct", "direct")))
    p.publish("app.topic, key a.b (write ^a\\.)", "topic", "app.topic", "a.b")
    p.publish("app.topic, key b.a", "topic", "app.topic", "b.a")
    p.publish("app.direct (not a topic exchange), key b", "topic", "app.direct", "b")
    p.publish("amq.topic, user without topic permissions", "admin", "amq.topic", "x.y")


@row("topic read", "queue.bind / queue.unbind / exchange.bind from a topic exchange with topic "
     "permissions", "read on the exchange, and the topic permission's read pattern on the key")
def _(p: Probe) -> None:
    vhost = p.world.vhost
    p.setup(lambda ch: (ch.queue_declare("app.q25"), ch.exchange_declare("app.topic", "topic"),
                        ch.exchange_declare("app.x25", "topic")))
    p.attempt("bind amq.topic, key <vhost>.x (read ^{vhost}\\.)", "topic",
              lambda ch: ch.queue_bind("app.q25", "amq.topic", f"{vhost}.x"))
    p.attempt("bind amq.topic, key x", "topic", lambda ch: ch.queue_bind("app.q25", "amq.topic", "x"))
    p.attempt("unbind amq.topic, key x (no such binding)", "topic",
              lambda ch: ch.queue_unbind("app.q25", "amq.topic", "x"))
    p.attempt("bind app.topic, key '' (read '')", "topic", lambda ch: ch.queue_bind("app.q25", "app.topic", ""))
    p.attempt("bind app.topic, key a", "topic", lambda ch: ch.queue_bind("app.q25", "app.topic", "a"))
    p.attempt("exchange.bind app.x25 <- amq.topic, key x", "topic",
              lambda ch: ch.exchange_bind("app.x25", "amq.topic", "x"))


@row("topic variables", "topic permission patterns with {username}, {vhost}, {client_id}",
     "{username} and {vhost} are replaced; {client_id} only for MQTT, so it stays literal")
def _(p: Probe) -> None:
    p.publish("write ^{client_id}\\., key abc.x", "clientid", "amq.topic", "abc.x")
    p.publish("write ^{client_id}\\., key {client_id}.x", "clientid", "amq.topic", "{client_id}.x")


ALL_ROWS = list(ROWS)


# -- running ---------------------------------------------------------------------------------------


def scenario(row: Row, world: World) -> harness.Scenario:
    def fn(ctx: harness.Context) -> None:
        world.aliases(ctx)
        row.fn(Probe(ctx, world))
    return harness.Scenario(row.name, fn, ("security",), "", __name__)


def run_row(name: str, world: World, host: str, port: int, label: str) -> harness.Outcome:
    return harness.run_one(scenario(ROWS[name], world), host, port, label,
                           user=world.user("admin"), password=world.password("admin"),
                           vhost=world.vhost)


def definitions(world: World) -> dict:
    """The run's vhost, users, permissions and topic permissions as a definitions file."""
    return {
        "vhosts": [{"name": world.vhost}],
        "users": [{"name": world.user(role), "password": world.password(role), "tags": []}
                  for role in ROLES],
        "permissions": [
            {"user": world.user(role), "vhost": world.vhost,
             "configure": perms[0], "write": perms[1], "read": perms[2]}
            for role, perms in ROLES.items() if perms is not None
        ],
        "topic_permissions": [
            {"user": world.user(role), "vhost": world.vhost, "exchange": exchange,
             "write": write, "read": read}
            for role, exchange, write, read in TOPIC_PERMISSIONS
        ],
    }


def setup_with_admin(admin: Any, world: World) -> None:
    """Make the run's vhost and users with the Admin API (broker/admin/)."""
    admin.add_vhost(world.vhost)
    for role, perms in ROLES.items():
        admin.add_user(world.user(role), world.password(role))
        if perms is not None:
            admin.set_permissions(world.user(role), world.vhost, *perms)
    for role, exchange, write, read in TOPIC_PERMISSIONS:
        admin.set_topic_permissions(world.user(role), world.vhost, exchange, write, read)


# RabbitMQ's side: rabbitmqctl, several at a time (each call starts an Erlang VM, ~0.4 s).

def _rabbitmqctl_all(commands: list[list[str]], check: bool = True) -> list[str]:
    procs = [subprocess.Popen(["rabbitmqctl", "-q", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in commands]
    problems = []
    for args, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            problems.append(f"rabbitmqctl {' '.join(args)}: {(err or out).strip()}")
    if problems and check:
        raise RuntimeError("; ".join(problems))
    return problems


def rabbitmqctl_usable() -> str | None:
    """None when rabbitmqctl can manage the local node, else why not."""
    try:
        result = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"rabbitmqctl cannot run: {exc}"
    if result.returncode != 0:
        return f"rabbitmqctl cannot reach the node: {(result.stderr or result.stdout).strip()[:200]}"
    return None


def setup_rabbitmq(*worlds: World) -> None:
    """Make the runs' vhosts and users on RabbitMQ with rabbitmqctl."""
    _rabbitmqctl_all([cmd for world in worlds for cmd in [["add_vhost", world.vhost]] + [
        ["add_user", world.user(role), world.password(role)] for role in ROLES]])
    _rabbitmqctl_all([cmd for world in worlds for cmd in [
        ["set_permissions", "-p", world.vhost, world.user(role), *perms]
        for role, perms in ROLES.items() if perms is not None
    ] + [
        ["set_topic_permissions", "-p", world.vhost, world.user(role), exchange, write, read]
        for role, exchange, write, read in TOPIC_PERMISSIONS
    ]])


def teardown_rabbitmq(*worlds: World) -> list[str]:
    """Delete the runs' vhosts and users from RabbitMQ; returns what could not be deleted."""
    return _rabbitmqctl_all([cmd for world in worlds for cmd in [["delete_vhost", world.vhost]] + [
        ["delete_user", world.user(role)] for role in ROLES]], check=False)


def record(host: str, port: int) -> dict:
    """Run every row against RabbitMQ and write the recording."""
    from interop.diff import runner

    world = World()
    setup_rabbitmq(world)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outcomes = dict(zip(ALL_ROWS, pool.map(
                lambda name: run_row(name, world, host, port, "rabbit"), ALL_ROWS)))
    finally:
        problems = teardown_rabbitmq(world)
    failed = {name: o.traceback for name, o in outcomes.items() if o.traceback}
    if failed or problems:
        raise RuntimeError(f"recording failed: {failed} {problems}")
    data = {
        "comment": "RabbitMQ's answers to tests/security/permission_scenarios.py; regenerate with "
                   "python tests/security/permission_scenarios.py --record",
        "server": runner.server_product(host, port),
        "recorded": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": {name: runner.canonical(outcomes[name].observations) for name in ALL_ROWS},
    }
    RECORDING.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return data


def run_ours() -> dict:
    """Every row's observations on this broker (in-process, users made with the Admin API)."""
    from interop.diff import runner

    from amqp_broker.testing import BrokerThread

    world = World()
    with BrokerThread() as broker:
        broker.call(setup_with_admin, broker.server.admin, world)
        return {name: runner.canonical(run_row(name, world, "127.0.0.1", broker.port, "ours").observations)
                for name in ALL_ROWS}


def _answer(obs: Any) -> str:
    if isinstance(obs, dict) and "close" in obs:
        return f"{obs['reply_code']} {obs['reply_text']}" + (
            " (connection)" if obs["close"] == "connection" else "")
    if isinstance(obs, dict) and "ok" in obs or obs == "open":
        return "ok"
    return json.dumps(obs)


def table(recorded: dict, ours: dict | None = None) -> str:
    """README's table: per row, the first refusal (or answer) RabbitMQ gave, as who and what,
    and whether ours gave the same to every attempt of the row."""
    lines = ["| operation | permission needed | for example (who: what) | RabbitMQ 3.10.8 | ours |",
             "|---|---|---|---|---|"]
    for name in ALL_ROWS:
        r = ROWS[name]
        observations = recorded[name]
        key = next((k for k, obs in observations.items() if isinstance(obs, dict) and "close" in obs),
                   next(iter(observations)))
        same = ours is None or ours.get(name) == observations
        cells = [r.operation, r.needs, key, _answer(observations[key]),
                 f"same ({len(observations)} of {len(observations)})" if same else "differs"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rabbit", default="127.0.0.1:5672", help="RabbitMQ's AMQP address")
    parser.add_argument("--record", action="store_true", help=f"record RabbitMQ's answers in {RECORDING.name}")
    parser.add_argument("--table", action="store_true",
                        help="print README's table: the recording, and this broker's answers to the same")
    args = parser.parse_args(argv)
    if args.record:
        host, _, port = args.rabbit.rpartition(":")
        record(host or "127.0.0.1", int(port))
    if args.table:
        print(table(json.loads(RECORDING.read_text(encoding="utf-8"))["rows"], run_ours()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
