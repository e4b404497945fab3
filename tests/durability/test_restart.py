"""What survives a restart, clean (SIGTERM) or not (SIGKILL), with real pika against a broker
subprocess on a private data directory.

RabbitMQ's rules, which the broker follows: durable exchanges and queues survive; a binding
survives when both its ends are durable; persistent messages (delivery_mode 2) in durable queues
survive; everything else is gone. A confirmed (or tx-committed) persistent message survives even
an immediate kill -9. After a clean stop, exactly the messages that were delivered and not acked
come back redelivered=true; after a crash every recovered message does (the broker cannot know
which ones were delivered: a documented choice).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pika
import pytest
from pika.exceptions import AMQPConnectionError, ChannelClosedByBroker

from durability_helpers import Broker, exists, get_all, publish
from interop.crash.broker_proc import ROOT

HOW = ["clean", "kill9"]


def sync(node, ch=None) -> None:
    """Make everything done so far durable before a kill -9: one confirmed persistent message
    through a durable queue (commits are in order, so its confirm covers every earlier change),
    then removed again."""
    ch = ch or node.channel(confirm=True)
    ch.queue_declare("sync.barrier", durable=True)
    ch.basic_publish("", "sync.barrier", b"barrier", pika.BasicProperties(delivery_mode=2))
    ch.queue_delete("sync.barrier")


# -- definitions --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
def test_durable_definitions_survive_and_transient_ones_do_not(node, how):
    ch = node.channel()
    ch.exchange_declare("d.topic", "topic", durable=True)
    ch.exchange_declare("d.fanout", "fanout", durable=True)
    ch.exchange_declare("d.headers", "headers", durable=True)
    ch.exchange_declare("d.internal", "direct", durable=True, internal=True)
    ch.exchange_declare("t.direct", "direct", durable=False)
    ch.queue_declare("d.q", durable=True)
    ch.queue_declare("d.h", durable=True)
    ch.queue_declare("t.q", durable=False)
    ch.queue_bind("d.q", "d.topic", "a.*")
    ch.queue_bind("d.h", "d.headers", "", arguments={"x-match": "all", "k": "v"})
    ch.queue_bind("d.q", "t.direct", "via-transient")  # binding from a transient exchange
    ch.queue_bind("t.q", "d.topic", "#")  # binding to a transient queue
    ch.exchange_bind("d.topic", "d.fanout")  # exchange-to-exchange, both durable
    ch.exchange_bind("d.topic", "t.direct", "e2e-transient")  # e2e from a transient source
    sync(node)

    node.bounce(how)

    for name in ("d.topic", "d.fanout", "d.headers", "d.internal"):
        assert exists(node, "exchange", name), name
    assert exists(node, "queue", "d.q")
    assert exists(node, "queue", "d.h")
    assert not exists(node, "exchange", "t.direct")
    assert not exists(node, "queue", "t.q")

    ch = node.channel(confirm=True)
    # Same type and flags: equivalent. A different durable flag: 406, so the flag was recovered.
    ch.exchange_declare("d.topic", "topic", durable=True)
    ch.queue_declare("d.q", durable=True)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_declare("d.topic", "direct", durable=True)
    assert info.value.reply_code == 406
    ch = node.channel(confirm=True)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_declare("d.internal", "direct", durable=True, internal=False)
    assert info.value.reply_code == 406
    ch = node.channel(confirm=True)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.basic_publish("d.internal", "x", b"x")
    assert info.value.reply_code == 403  # still internal

    ch = node.channel(confirm=True)
    ch.queue_declare("t.q", durable=False)  # fresh: no bindings came back with it
    publish(ch, "a.b", ["direct"], exchange="d.topic")  # durable queue binding
    publish(ch, "a.c", ["via-e2e"], exchange="d.fanout")  # e2e durable binding
    publish(ch, "", ["headers"], exchange="d.headers", headers={"k": "v"})
    publish(ch, "", ["headers-no-match"], exchange="d.headers", headers={"k": "w"})
    ch.exchange_declare("t.direct", "direct", durable=False)  # recreated: its bindings are gone
    publish(ch, "via-transient", ["lost-binding"], exchange="t.direct")
    publish(ch, "e2e-transient", ["lost-e2e"], exchange="t.direct")
    assert [b for b, _ in get_all(ch, "d.q")] == ["direct", "via-e2e"]
    assert [b for b, _ in get_all(ch, "d.h")] == ["headers"]
    assert get_all(ch, "t.q") == []


@pytest.mark.parametrize("how", HOW)
def test_deleted_durable_queue_and_exchange_stay_deleted(node, how):
    ch = node.channel(confirm=True)
    ch.exchange_declare("gone.x", "direct", durable=True)
    ch.exchange_declare("kept.x", "direct", durable=True)
    ch.queue_declare("gone.q", durable=True)
    ch.queue_declare("kept.q", durable=True)
    ch.queue_bind("kept.q", "gone.x", "k")
    ch.queue_bind("gone.q", "kept.x", "k")
    publish(ch, "gone.q", ["old-1", "old-2"])
    sync(node, ch)
    node.bounce(how)  # all of it is on disk now

    ch = node.channel(confirm=True)
    ch.queue_delete("gone.q")
    ch.exchange_delete("gone.x")
    sync(node, ch)
    node.bounce(how)

    assert not exists(node, "queue", "gone.q")
    assert not exists(node, "exchange", "gone.x")
    assert exists(node, "queue", "kept.q")
    ch = node.channel(confirm=True)
    # Re-created under the same names: empty, and the old bindings do not come back.
    ch.queue_declare("gone.q", durable=True)
    ch.exchange_declare("gone.x", "direct", durable=True)
    assert get_all(ch, "gone.q") == []
    publish(ch, "k", ["to-kept-x"], exchange="kept.x")  # gone.q's old binding to kept.x is gone
    publish(ch, "k", ["to-gone-x"], exchange="gone.x")  # kept.q's binding to gone.x is gone
    assert get_all(ch, "gone.q") == []
    assert get_all(ch, "kept.q") == []
    sync(node, ch)
    node.bounce(how)
    assert get_all(node.channel(), "gone.q") == []


@pytest.mark.parametrize("how", HOW)
def test_purged_and_acked_messages_do_not_come_back(node, how):
    ch = node.channel(confirm=True)
    ch.queue_declare("purged", durable=True)
    ch.queue_declare("acked", durable=True)
    publish(ch, "purged", [f"p{i}" for i in range(10)])
    publish(ch, "acked", [f"a{i}" for i in range(10)])
    ch.queue_purge("purged")
    got = [b for b, _ in get_all(ch, "acked")]
    assert got == [f"a{i}" for i in range(10)]
    sync(node, ch)
    node.bounce(how)
    ch = node.channel()
    assert get_all(ch, "purged") == []
    assert get_all(ch, "acked") == []


def test_auto_delete_exchange_removed_by_unbind_stays_removed(node):
    ch = node.channel(confirm=True)
    ch.exchange_declare("ad.x", "direct", durable=True, auto_delete=True)
    ch.queue_declare("ad.q", durable=True)
    ch.queue_bind("ad.q", "ad.x", "k")
    sync(node, ch)
    node.bounce("kill9")
    assert exists(node, "exchange", "ad.x")  # a durable auto-delete exchange survives
    ch = node.channel(confirm=True)
    ch.queue_unbind("ad.q", "ad.x", "k")  # its last binding: RabbitMQ deletes it
    sync(node, ch)
    node.bounce("kill9")
    assert not exists(node, "exchange", "ad.x")


@pytest.mark.parametrize("how", HOW)
def test_durable_queue_arguments_survive(node, how):
    ch = node.channel(confirm=True)
    ch.exchange_declare("dlx", "fanout", durable=True)
    ch.queue_declare("dead", durable=True)
    ch.queue_bind("dead", "dlx")
    args = {"x-max-length": 3, "x-dead-letter-exchange": "dlx", "x-message-ttl": 600000}
    ch.queue_declare("limited", durable=True, arguments=args)
    ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 5})
    publish(ch, "prio", ["low"], priority=1)
    publish(ch, "prio", ["high"], priority=5)
    publish(ch, "prio", ["none"])
    publish(ch, "prio", ["mid"], priority=3)
    sync(node, ch)
    node.bounce(how)

    ch = node.channel(confirm=True)
    ch.queue_declare("limited", durable=True, arguments=args)  # equivalent
    for changed in ({"x-max-length": 4}, {"x-dead-letter-exchange": "other"}, {"x-message-ttl": 1}):
        with pytest.raises(ChannelClosedByBroker) as info:
            ch.queue_declare("limited", durable=True, arguments=dict(args, **changed))
        assert info.value.reply_code == 406
        assert next(iter(changed)) in info.value.reply_text
        ch = node.channel(confirm=True)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare("limited", durable=True)  # arguments left out: inequivalent too
    assert info.value.reply_code == 406
    # The recovered queue behaves like one freshly declared with the same arguments.
    ch = node.channel(confirm=True)
    ch.queue_declare("fresh", durable=True, arguments=args)
    outcome = {}
    for queue in ("fresh", "limited"):
        publish(ch, queue, [f"m{i}" for i in range(5)])
        outcome[queue] = ([b for b, _ in get_all(ch, queue)], [b for b, _ in get_all(ch, "dead")])
    assert outcome["limited"] == outcome["fresh"]
    # Priorities survive with the messages: highest first, FIFO within a level.
    assert [b for b, _ in get_all(ch, "prio")] == ["high", "mid", "low", "none"]


@pytest.mark.parametrize("how", HOW)
def test_users_and_vhosts_survive(tmp_path, how):
    first = Broker(str(tmp_path / "data"), log_path=str(tmp_path / "node.log"),
                   extra_args=["--default-user", "alice", "--default-pass", "s3cret",
                               "--default-vhost", "v1"])
    first.start()
    try:
        ch = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", first.port, "v1", pika.PlainCredentials("alice", "s3cret"), heartbeat=0)).channel()
        ch.confirm_delivery()
        ch.queue_declare("in.v1", durable=True)
        publish(ch, "in.v1", ["hello"])
        ch.connection.close()
        if how == "clean":
            assert first.stop() == 0
        else:
            first.kill9()
        # Started again with the default settings: the store's users and vhosts are the truth,
        # as RabbitMQ's default_user/default_vhost only apply to a fresh node.
        first.extra_args = []
        first.start()
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", first.port, "v1", pika.PlainCredentials("alice", "s3cret"), heartbeat=0))
        ch = conn.channel()
        assert get_all(ch, "in.v1") == [("hello", how == "kill9")]
        conn.close()
        with pytest.raises(AMQPConnectionError):  # guest was never created in this store
            pika.BlockingConnection(pika.ConnectionParameters(
                "127.0.0.1", first.port, "/", pika.PlainCredentials("guest", "guest"), heartbeat=0))
    finally:
        if first.running:
            first.kill9()


# -- messages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
def test_only_persistent_messages_in_durable_queues_survive(node, how):
    ch = node.channel(confirm=True)
    ch.queue_declare("dq", durable=True)
    ch.queue_declare("tq", durable=False)
    publish(ch, "dq", ["p1"])
    publish(ch, "dq", ["t1"], persistent=False)
    publish(ch, "dq", ["p2"])
    ch.basic_publish("", "dq", b"t2")  # no delivery_mode at all: transient
    publish(ch, "tq", ["p3"])
    sync(node, ch)
    node.bounce(how)
    assert not exists(node, "queue", "tq")
    flag = how == "kill9"
    assert get_all(node.channel(), "dq") == [("p1", flag), ("p2", flag)]


@pytest.mark.parametrize("how", HOW)
def test_queue_order_and_properties_kept(node, how):
    ch = node.channel()
    ch.queue_declare("order", durable=True)
    bodies = [f"m{i:04d}" + "x" * (i * 37 % 3000) for i in range(1000)]
    publish(ch, "order", bodies, headers={"h": 1}, correlation_id="c", priority=2,
            content_type="text/plain", expiration="600000")
    sync(node)
    node.bounce(how)
    ch = node.channel()
    got = []
    props_seen = None
    while True:
        method, props, body = ch.basic_get("order", auto_ack=True)
        if method is None:
            break
        got.append(body.decode())
        props_seen = props
    assert got == bodies
    assert props_seen.headers == {"h": 1}
    assert (props_seen.correlation_id, props_seen.priority, props_seen.content_type,
            props_seen.delivery_mode) == ("c", 2, "text/plain", 2)


def test_requeued_order_kept_and_delivered_flagged_after_clean_stop(node):
    """After a clean stop, exactly the delivered-but-unacked messages come back redelivered, each
    at its original place in the queue (as RabbitMQ)."""
    ch = node.channel(confirm=True)
    ch.queue_declare("uq", durable=True)
    publish(ch, "uq", [f"m{i}" for i in range(20)])
    consumer = node.channel()
    consumer.basic_qos(prefetch_count=5)
    seen = []
    consumer.basic_consume("uq", lambda c, m, p, b: seen.append(b.decode()))
    while len(seen) < 5:
        consumer.connection.process_data_events(time_limit=0.1)
    getter = node.channel()
    method, _props, body = getter.basic_get("uq", auto_ack=False)  # a 6th, unacked, by get
    assert seen == [f"m{i}" for i in range(5)] and body == b"m5"
    node.bounce("clean")

    got = get_all(node.channel(), "uq")
    assert got == [(f"m{i}", i < 6) for i in range(20)]


def test_requeued_message_flag_persisted_before_clean_stop(node):
    ch = node.channel(confirm=True)
    ch.queue_declare("rq", durable=True)
    publish(ch, "rq", ["a", "b", "c", "d"])
    method, _p, body = ch.basic_get("rq", auto_ack=False)
    ch.basic_ack(method.delivery_tag)  # a: acked, gone
    method, _p, body = ch.basic_get("rq", auto_ack=False)
    ch.basic_nack(method.delivery_tag, requeue=True)  # b: back, flagged
    method, _p, body = ch.basic_get("rq", auto_ack=False)
    assert (body, method.redelivered) == (b"b", True)
    ch.basic_nack(method.delivery_tag, requeue=True)
    node.bounce("clean")
    assert get_all(node.channel(), "rq") == [("b", True), ("c", False), ("d", False)]


def test_last_changes_before_a_clean_stop_are_kept(node):
    """A clean stop writes everything: acks, requeues (their redelivered flags), declarations and
    persistent messages (confirmed or not) made just before SIGTERM are all there after the
    restart, every one of 20 times. A stream of persistent publishes keeps the store's committer
    busy meanwhile, so the stop always finds a commit in flight and more waiting."""
    problems = []
    for round_ in range(ROUNDS):
        ch = node.channel(confirm=True)
        q = f"last{round_}"
        ch.queue_declare(q, durable=True)
        ch.queue_declare(f"bulk{round_}", durable=True)
        publish(ch, q, ["a", "b", "c", "d"])
        bulk = node.channel()
        publish(bulk, f"bulk{round_}", [b"x" * 100] * 1000)  # no confirms: as fast as it goes
        method, _p, _b = ch.basic_get(q, auto_ack=False)
        ch.basic_ack(method.delivery_tag)  # a: gone
        method, _p, _b = ch.basic_get(q, auto_ack=False)
        ch.basic_nack(method.delivery_tag, requeue=True)  # b: back, flagged
        publish(bulk, f"bulk{round_}", [b"x" * 100] * 1000)
        bulk.queue_declare(f"late{round_}", durable=True)  # declared right before the stop
        node.bounce("clean", close_clients=True)  # SIGTERM right after the clients leave
        ch = node.channel()
        got = get_all(ch, q, ack=False)
        if got != [("b", True), ("c", False), ("d", False)]:
            problems.append(f"round {round_}: {got}")
        if not exists(node, "queue", f"late{round_}"):
            problems.append(f"round {round_}: queue late{round_} lost by a clean stop")
        count = ch.queue_declare(f"bulk{round_}", durable=True).method.message_count
        if count != 2000:
            problems.append(f"round {round_}: {2000 - count} of 2000 persistent messages lost by a clean stop")
        ch.queue_delete(f"bulk{round_}")
    assert not problems, problems


def test_after_kill9_every_recovered_message_is_flagged(node):
    ch = node.channel(confirm=True)
    ch.queue_declare("kq", durable=True)
    publish(ch, "kq", [f"m{i}" for i in range(10)])
    method, _p, _b = node.channel().basic_get("kq", auto_ack=False)  # m0 delivered, unacked
    node.bounce("kill9")
    assert get_all(node.channel(), "kq") == [(f"m{i}", True) for i in range(10)]


def test_crash_recovered_flags_survive_a_later_clean_restart(node):
    """Messages recovered after a crash may have been delivered before it: they come back flagged,
    and must stay flagged after a later clean stop (else a message delivered before the crash is
    delivered again with redelivered=false: an unflagged duplicate)."""
    ch = node.channel(confirm=True)
    ch.queue_declare("cq", durable=True)
    publish(ch, "cq", [f"m{i}" for i in range(6)])
    consumer = node.channel()
    for _ in range(3):  # m0..m2 delivered before the crash, never acked
        method, _p, _b = consumer.basic_get("cq", auto_ack=False)
        assert not method.redelivered
    node.bounce("kill9")
    node.bounce("clean")  # no consumer in between
    got = get_all(node.channel(), "cq")
    assert [b for b, _ in got] == [f"m{i}" for i in range(6)]
    assert all(flag for body, flag in got if body in ("m0", "m1", "m2")), got


# -- confirms and transactions: on disk before the client hears of it ---------------------------

ROUNDS = 20


def test_confirmed_messages_survive_an_immediate_kill9(node):
    """A confirm is sent only once the message is fsynced: kill -9 the broker the moment the
    confirm arrives, 20 times over, and every confirmed message is there after each restart."""
    expected: list[str] = []
    for round_ in range(ROUNDS):
        ch = node.channel(confirm=True)
        ch.queue_declare("cf", durable=True)
        batch = [f"r{round_}.m{i}" for i in range(round_ % 4 * 10 + 1)]
        publish(ch, "cf", batch)  # each basic_publish returns once its confirm arrived
        node.kill9()
        expected += batch
        node.bounce("kill9")
        ch = node.channel()
        got = []
        while len(got) < len(expected):
            method, _p, body = ch.basic_get("cf", auto_ack=False)
            if method is None:
                break
            got.append(body.decode())
        assert got == expected, f"round {round_}: {len(expected) - len(got)} confirmed message(s) lost"


def test_pipelined_confirms_survive_an_immediate_kill9(node, tmp_path):
    """The same with up to 64 publishes in flight and confirms coalesced (multiple=true): a
    publisher process (interop/crash/clients.py) logs each confirm as it arrives, and the broker is
    killed mid-stream, once half of the round's messages are confirmed."""
    confirmed_total = 0
    for round_ in range(ROUNDS):
        ch = node.channel()
        ch.queue_declare("pl", durable=True)
        log = tmp_path / f"pub{round_}.log"
        client = spawn_publisher(node.port, "pl", f"r{round_}", str(log))
        try:
            deadline = time.monotonic() + 30
            while log_count(log, "C ") < 100:
                assert client.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, "no confirms"
                time.sleep(0.002)
            node.kill9()
        finally:
            client.wait(10)
        confirmed = {line.split()[1] for line in log.read_text().splitlines() if line.startswith("C ")}
        confirmed_total += len(confirmed)
        node.bounce("kill9")
        ch = node.channel()
        present = set()
        while True:
            method, props, _body = ch.basic_get("pl", auto_ack=True)
            if method is None:
                break
            present.add(props.message_id)
        missing = sorted(confirmed - present)
        assert not missing, f"round {round_}: {len(missing)} confirmed message(s) lost: {missing[:10]}"
    print(f"pipelined confirms: {ROUNDS} kills, {confirmed_total} confirmed messages, none lost")


def spawn_publisher(port: int, queue: str, prefix: str, log: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-m", "interop.crash.clients", "publish", "--port", str(port), "--queues", queue,
         "--id-prefix", prefix, "--log", log, "--window", "64", "--transient-ratio", "0"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def log_count(path, prefix: str) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.startswith(prefix))
    except OSError:
        return 0


def test_tx_committed_messages_survive_an_immediate_kill9(node):
    """tx.commit-ok, like a confirm, means the persistent messages are on disk (RabbitMQ replies
    commit-ok only once they are): kill -9 right after it, 20 times over."""
    expected: list[str] = []
    ch = node.channel()
    ch.queue_declare("tx", durable=True)
    sync(node)  # the queue is on disk: only the committed messages are at stake below
    for round_ in range(ROUNDS):
        ch = node.channel()
        ch.tx_select()
        batch = [f"r{round_}.m{i}" for i in range(round_ % 4 * 10 + 1)]
        publish(ch, "tx", batch)
        ch.tx_commit()
        node.kill9()
        expected += batch
        node.bounce("kill9")
        ch = node.channel()
        got = [b for b, _ in get_all(ch, "tx", ack=False)]
        assert got == expected, f"round {round_}: {len(expected) - len(got)} committed message(s) lost"


def test_declarations_survive_an_immediate_kill9(node):
    """declare-ok / bind-ok / delete-ok: with RabbitMQ the change is in its (Mnesia) log when the
    client hears of it, so it survives a kill -9 of the node that follows at once."""
    lost = []
    for round_ in range(ROUNDS):
        ch = node.channel()
        ch.exchange_declare(f"x{round_}", "direct", durable=True)
        ch.queue_declare(f"q{round_}", durable=True)
        ch.queue_bind(f"q{round_}", f"x{round_}", "k")
        if round_:
            ch.queue_delete(f"q{round_ - 1}")
        node.kill9()
        node.bounce("kill9")
        if not exists(node, "queue", f"q{round_}"):
            lost.append(f"queue q{round_} declared")
        if not exists(node, "exchange", f"x{round_}"):
            lost.append(f"exchange x{round_} declared")
        if round_ and exists(node, "queue", f"q{round_ - 1}"):
            lost.append(f"queue q{round_ - 1} deleted")
    assert not lost, f"{len(lost)} acknowledged change(s) undone by kill -9: {lost[:10]}"
