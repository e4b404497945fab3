"""The same commands through the real ``rabbitmqctl`` against the live RabbitMQ and through
``amqp-broker ctl`` against ours, after the same set-up by pika: the outputs must match.

What is compared: exit codes, banner lines, column headers, and the rows (as sorted lists: the
order of RabbitMQ's rows is its tables' hash order), and the error texts on stderr. Values that
differ by nature are normalised before comparing (pids, ports, generated queue names, memory);
the few deliberate differences are named where they are removed (see DIFFERENCES).

Everything created on RabbitMQ lives in a vhost and under user names of this run's own, deleted
at the end. Without a running RabbitMQ (or a rabbitmqctl that may talk to it: root or the
rabbitmq user) the tests skip, and the terminal summary says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid

import pika
import pytest

from amqp_broker.testing import BrokerThread
from ctl_helpers import SHORT_HOST, ctl, unique_node

RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"

#: Deliberate differences, removed before comparing (and listed in the README).
DIFFERENCES = {
    "trace exchange": "RabbitMQ declares amq.rabbitmq.trace in every vhost (for its tracing plugin); "
                      "this broker has no tracing, so no such exchange",
    "unmeasured": "columns this broker does not measure print as nothing: consumer_utilisation with "
                  "consumers, message_bytes, memory (an estimate), recv_oct and the like",
}

UNAVAILABLE: dict[str, str] = {}


def _rabbitmq_problem() -> str | None:
    if not shutil.which(RABBITMQCTL):
        return f"{RABBITMQCTL} is not installed"
    try:
        ping = subprocess.run([RABBITMQCTL, "-q", "ping"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"rabbitmqctl ping failed: {exc}"
    if ping.returncode != 0:
        return f"rabbitmqctl cannot reach RabbitMQ (exit {ping.returncode}): {ping.stderr.strip()[:200]}"
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672, connection_attempts=1))
    except pika.exceptions.AMQPError as exc:
        return f"RabbitMQ's AMQP port does not answer: {exc!r}"
    product = conn._impl.server_properties.get("product")
    conn.close()
    if product not in (b"RabbitMQ", "RabbitMQ"):
        return f"the broker on 5672 is {product!r}, not RabbitMQ"
    return None


class Side:
    """One broker and its control tool: ``run(*args)`` gives (exit code, stdout, stderr)."""

    def __init__(self, name: str, port: int, runner):
        self.name = name
        self.port = port
        self.runner = runner
        self.connections: list[pika.BlockingConnection] = []

    def run(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        return self.runner(*args, stdin=stdin)


def _theirs(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    done = subprocess.run([RABBITMQCTL, *args], capture_output=True, text=True, timeout=60, input=stdin or "")
    return done.returncode, done.stdout, done.stderr


def _set_up(side: Side, vhost: str) -> None:
    """The same objects on both brokers."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", side.port, vhost, client_properties={"connection_name": "ctl-differential"}, heartbeat=0))
    side.connections.append(conn)
    ch = conn.channel()
    ch.confirm_delivery()  # publishes return once the broker has them
    ch.queue_declare("q.plain")
    ch.queue_declare("q.durable", durable=True, arguments={
        "x-max-length": 10, "x-message-ttl": 60000, "x-dead-letter-exchange": "dlx", "x-queue-mode": "lazy"})
    ch.queue_declare("q.ad", auto_delete=True)
    ch.queue_declare("q.quorum", durable=True, arguments={"x-queue-type": "quorum"})
    ch.queue_declare("q.excl", exclusive=True)
    ch.queue_declare("", exclusive=True)
    ch.queue_declare("q.empty")
    ch.exchange_declare("ex.topic", "topic", durable=True)
    ch.exchange_declare("ex.headers", "headers", auto_delete=True, arguments={"alternate-exchange": "ex.topic"})
    ch.exchange_declare("ex.int", "fanout", internal=True)
    ch.queue_bind("q.plain", "ex.topic", "a.#")
    ch.queue_bind("q.plain", "ex.headers", "", arguments={
        "x-match": "all", "zeta": "z", "k": "v", "n": 5, "big": 2**40, "yes": True, "tbl": {"b": 1, "a": "x"},
        "arr": [1, "two", False]})
    ch.exchange_bind("ex.int", "ex.topic", "b.*")
    for i in range(3):
        ch.basic_publish("", "q.plain", b"hello %d" % i)
    ch.basic_publish("", "q.durable", b"kept", pika.BasicProperties(delivery_mode=2))
    getter = conn.channel()
    for _ in range(2):  # two deliveries left unacknowledged, synchronously
        getter.basic_get("q.plain", auto_ack=False)
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=5)
    consumer.basic_consume("q.empty", lambda *a: None, consumer_tag="ctag-plain")
    exclusive = conn.channel()
    exclusive.basic_consume("q.ad", lambda *a: None, auto_ack=True, exclusive=True, consumer_tag="ctag-excl",
                            arguments={"x-priority": 3})
    tx = conn.channel()
    tx.tx_select()


@pytest.fixture(scope="module")
def pair():
    problem = _rabbitmq_problem()
    if problem:
        UNAVAILABLE["message"] = f"ctl differential tests skipped: {problem}"
        pytest.skip(UNAVAILABLE["message"])
    vhost = f"ctl-diff-{uuid.uuid4().hex[:8]}"
    node = unique_node("ctl-diff")
    users = [f"ctl-diff-user-{uuid.uuid4().hex[:6]}", f"ctl-diff-user-{uuid.uuid4().hex[:6]}"]
    with BrokerThread(node_name=node, management_port=0, prometheus_port=0) as broker:

        def ours(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
            result = ctl("-n", node, *args, stdin=stdin)
            return result.code, result.out, result.err

        sides = (Side("ours", broker.port, ours), Side("rabbitmq", 5672, _theirs))
        try:
            for side in sides:
                assert side.run("add_vhost", vhost)[0] == 0
                assert side.run("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")[0] == 0
                _set_up(side, vhost)
            pair = {"ours": sides[0], "theirs": sides[1], "vhost": vhost, "users": users, "node": node}
            _prefetch(pair)
            yield pair
        finally:
            for side in sides:
                for conn in side.connections:
                    if conn.is_open:
                        conn.close()
                side.run("delete_vhost", vhost)
                for user in users:
                    side.run("delete_user", user)
            leftovers = _theirs("-q", "list_vhosts")[1] + _theirs("-q", "list_users")[1]
            assert vhost not in leftovers and not any(u in leftovers for u in users)


# -- normalising ---------------------------------------------------------------------------------

_PID = re.compile(r"(#PID)?<[^<>\t]*?\d+\.\d+(\.\d+)?>")
_GENERATED = re.compile(r"amq\.gen-[A-Za-z0-9_-]+")
_ADDRESS = re.compile(r"(127\.0\.0\.1|\[?::1\]?):\d+")


def _normal(text: str) -> str:
    text = _PID.sub("<pid>", text)
    text = _GENERATED.sub("amq.gen-*", text)
    return _ADDRESS.sub(r"\1:*", text)


def _split(output: str, headers: bool = True) -> tuple[list[str], list[str], list[str]]:
    """(banner lines, header row, data rows sorted) of a table output."""
    lines = output.splitlines()
    banner = [l for l in lines if "\t" not in l and (l.startswith(("Timeout:", "Listing ")) or l == "")]
    rest = [l for l in lines if l not in banner]
    header = rest[:1] if headers else []
    return banner, header, sorted(_normal(l) for l in rest[len(header):])


def _rows(output: str, keep=None, blank=(), headers: bool = True) -> tuple[list[str], list[str], list[str]]:
    """Banner, header and sorted rows; rows ``keep`` refuses are left out, ``blank`` columns
    are ``*``."""
    banner, header, rows = _split(output, headers)
    columns = header[0].split("\t") if header else []
    kept = []
    for row in rows:
        cells = row.split("\t")
        if keep is not None and not keep(dict(zip(columns, cells))):
            continue
        kept.append("\t".join("*" if c in blank else v for c, v in zip(columns, cells)) if columns else row)
    return banner, header, sorted(kept)


def _json_rows(output: str, keep=None, blank=()) -> list[str]:
    lines = [l.lstrip(",") for l in output.splitlines() if l not in ("[", "]")]
    rows = [json.loads(_normal(l)) for l in lines if l]
    return sorted(json.dumps({k: ("*" if k in blank else v) for k, v in r.items()}) for r in rows
                  if keep is None or keep(r))


def _substitute(pair, args) -> tuple[str, ...]:
    return tuple(a.replace("$V", pair["vhost"]).replace("$U0", pair["users"][0]).replace("$U1", pair["users"][1])
                 for a in args)


def _prefetch(pair) -> None:
    """Run rabbitmqctl for every read-only comparison at once: each call starts an Erlang VM
    (about 0.35 s of CPU), and these change nothing, so they need not wait for one another."""
    from concurrent.futures import ThreadPoolExecutor

    reads = [a for a, _ in LISTINGS] + [(*a, "--formatter", "json") for a in JSON_LISTINGS] + ERRORS + USAGE
    commands = [_substitute(pair, args) for args in reads]
    with ThreadPoolExecutor(max_workers=4) as pool:
        pair["prefetched"] = dict(zip(commands, pool.map(lambda args: _theirs(*args), commands)))


def both(pair, *args: str, stdin: str | None = None, prefetched: bool = False):
    """Run on both; node names become ``<node>`` in what they print (ours has a test name,
    RabbitMQ's is rabbit@<host>)."""
    args = _substitute(pair, args)
    results = []
    for side, node in ((pair["ours"], pair["node"]), (pair["theirs"], f"rabbit@{SHORT_HOST}")):
        if side is pair["theirs"] and prefetched:
            code, out, err = pair["prefetched"][args]
        else:
            code, out, err = side.run(*args, stdin=stdin)
        # pids first: they hold the node name
        results.append((code, _PID.sub("<pid>", out).replace(node, "<node>"), err.replace(node, "<node>")))
    return tuple(results)


def _not_trace(row: dict, vhost: str) -> bool:
    return row.get("name") != "amq.rabbitmq.trace"  # DIFFERENCES["trace exchange"]


def _in_vhost(row: dict, vhost: str) -> bool:
    return row.get("vhost") == vhost


# -- listings ------------------------------------------------------------------------------------

LISTINGS = [
    (("list_queues", "-p", "$V"), {}),
    (("list_queues", "-p", "$V", "name", "messages", "messages_ready", "messages_unacknowledged", "consumers",
      "durable", "auto_delete", "exclusive", "arguments", "type", "policy", "state", "slave_pids",
      "synchronised_slave_pids", "leader", "members", "online", "owner_pid", "exclusive_consumer_pid",
      "exclusive_consumer_tag", "message_bytes_ready"), {}),
    (("list_queues", "-p", "$V", "-t", "7", "-q", "name,consumer_utilisation"),
     {"keep": lambda r, v: r["name"] not in ("q.empty", "q.ad")}),  # DIFFERENCES["unmeasured"]
    (("list_queues", "-p", "$V", "-s", "name", "durable"), {}),
    (("list_queues", "-p", "$V", "--no-table-headers", "name"), {}),
    (("list_queues", "-p", "no-such-vhost-ctl"), {}),
    (("list_exchanges", "-p", "$V"), {"keep": _not_trace}),
    (("list_exchanges", "-p", "$V", "name", "type", "durable", "auto_delete", "internal", "arguments", "policy"),
     {"keep": _not_trace}),
    (("list_bindings", "-p", "$V"), {}),
    (("list_bindings", "-p", "$V", "-q", "destination_name", "routing_key", "source_kind", "destination_kind"), {}),
    (("list_consumers", "-p", "$V"), {}),
    (("list_consumers", "-p", "$V", "queue_name", "consumer_tag", "ack_required", "prefetch_count", "active",
      "activity_status", "arguments"), {}),
    (("list_connections", "vhost", "user", "peer_host", "port", "state", "channels", "protocol", "auth_mechanism",
      "ssl", "frame_max", "channel_max", "timeout", "client_properties", "pid", "name", "ssl_protocol",
      "peer_cert_subject"), {"keep": _in_vhost, "blank": ("port",)}),
    (("list_channels", "vhost", "user", "number", "transactional", "confirm", "consumer_count",
      "messages_unacknowledged", "messages_unconfirmed", "prefetch_count", "global_prefetch_count", "name",
      "connection", "pid"), {"keep": _in_vhost}),
    (("list_channels", "vhost", "number", "messages_uncommitted", "acks_uncommitted"),
     {"keep": lambda r, v: r.get("vhost") == v and r.get("number") != "5"}),  # in a transaction: unmeasured
    (("list_vhosts", "name", "tracing", "default_queue_type", "cluster_state"),
     {"keep": lambda r, v: r.get("name") == v}),
    (("list_permissions", "-p", "$V"), {}),
    (("list_user_permissions", "guest"), {"keep": _in_vhost}),
]


@pytest.mark.parametrize("args,how", LISTINGS, ids=[" ".join(a) for a, _ in LISTINGS])
def test_listing_matches_rabbitmqctl(pair, args, how):
    (code, out, err), (their_code, their_out, their_err) = both(pair, *args, prefetched=True)
    assert (code, err) == (their_code, their_err)
    keep = how.get("keep")
    vhost = pair["vhost"]
    row_filter = None if keep is None else (lambda row: keep(row, vhost))
    blank = how.get("blank", ())
    headers = not ({"-s", "--silent", "--no-table-headers"} & set(args))
    assert _rows(out, row_filter, blank, headers) == _rows(their_out, row_filter, blank, headers)


JSON_LISTINGS = [
    ("list_queues", "-p", "$V", "name", "durable", "auto_delete", "exclusive", "arguments", "policy", "leader",
     "members", "owner_pid"),
    ("list_bindings", "-p", "$V"),
    ("list_consumers", "-p", "$V"),
    ("list_permissions", "-p", "$V"),
    # not peer_host: RabbitMQ's JSON shows it as an Erlang address tuple ([0,0,0,0,0,65535,32512,1])
    ("list_connections", "vhost", "protocol", "client_properties", "ssl", "name", "user", "channels"),
]


@pytest.mark.parametrize("args", JSON_LISTINGS, ids=[" ".join(a) for a in JSON_LISTINGS])
def test_json_listing_matches_rabbitmqctl(pair, args):
    (code, out, err), (their_code, their_out, their_err) = both(pair, *args, "--formatter", "json", prefetched=True)
    assert (code, err) == (their_code, their_err)
    assert out.startswith("[\n") and out.endswith("]\n")
    keep = (lambda r: r.get("vhost") == pair["vhost"]) if args[0] == "list_connections" else None
    assert _json_rows(out, keep) == _json_rows(their_out, keep)


# -- errors --------------------------------------------------------------------------------------

#: Read-only commands whose whole output (and exit code, and stderr) must be the same: errors
#: mostly, and the health checks.
ERRORS = [
    ("ping",),
    ("ping", "-q"),
    ("ping", "--formatter", "json"),
    ("await_startup",),
    ("purge_queue", "-p", "$V", "nosuch"),
    ("delete_queue", "-p", "$V", "nosuch"),
    ("delete_queue", "-p", "$V", "q.durable", "--if-empty"),
    ("delete_queue", "-p", "$V", "q.ad", "--if-unused"),
    ("delete_queue", "-p", "$V", "q.ad", "--if-unused", "--if-empty"),
    ("delete_queue", "-p", "no-such-vhost-ctl", "q"),
    ("change_password", "nobody-ctl-diff", "x"),
    ("set_user_tags", "nobody-ctl-diff", "a", "b"),
    ("delete_user", "nobody-ctl-diff"),
    ("set_permissions", "-p", "$V", "nobody-ctl-diff", "a", "b", "c"),
    ("set_permissions", "-p", "no-such-vhost-ctl", "guest", "a", "b", "c"),
    ("clear_permissions", "-p", "$V", "nobody-ctl-diff"),
    ("clear_permissions", "-p", "no-such-vhost-ctl", "guest"),
    ("list_user_permissions", "nobody-ctl-diff"),
    ("list_permissions", "-p", "no-such-vhost-ctl"),
    ("delete_vhost", "no-such-vhost-ctl"),
    ("authenticate_user", "nobody-ctl-diff", "x"),
    ("authenticate_user", "guest", "wrong"),
    ("add_user", "guest", "guest"),
    ("close_connection", "nonsense", "bye"),
]


@pytest.mark.parametrize("args", ERRORS, ids=[" ".join(a) for a in ERRORS])
def test_error_matches_rabbitmqctl(pair, args):
    ours, theirs = both(pair, *args, prefetched=True)
    assert ours == theirs


USAGE = [("list_queues", "-p", "$V", "bogus"), ("add_user",), ("delete_queue", "a", "b"), ("no_such_command",)]


@pytest.mark.parametrize("args", USAGE, ids=[" ".join(a) for a in USAGE])
def test_usage_error_matches_rabbitmqctl(pair, args):
    (code, out, err), (their_code, their_out, their_err) = both(pair, *args, prefetched=True)
    assert (code, out) == (their_code, their_out) == (64, "")
    # The first lines say the same; the usage that follows names each tool's own options.
    first = [l for l in err.splitlines() if l][:1]
    assert first == [l for l in their_err.splitlines() if l][:1]


# -- commands that change things: run in the same order on both ------------------------------------

def _same(pair, *args, stdin=None):
    """The same exit code, stderr and output (a listing's rows compared sorted)."""
    ours, theirs = both(pair, *args, stdin=stdin)
    if args[0].startswith("list_") and "--formatter" not in args:
        assert (ours[0], ours[2], _rows(ours[1])) == (theirs[0], theirs[2], _rows(theirs[1])), args
    else:
        assert ours == theirs, args
    return ours


def test_user_vhost_and_permission_commands_match_rabbitmqctl(pair):
    for args in [
        ("add_user", "$U0", "pw1"),
        ("add_user", "-q", "$U1", "pw1"),
        ("authenticate_user", "$U0", "pw1"),
        ("authenticate_user", "-q", "$U0", "pw1"),
        ("change_password", "$U0", "pw2"),
        ("authenticate_user", "$U0", "pw1"),
        ("change_password", "-q", "$U0", "pw3"),
        ("clear_password", "$U0"),
        ("authenticate_user", "$U0", "pw3"),
        ("set_user_tags", "$U0", "administrator", "monitoring"),
        ("set_user_tags", "-q", "$U1", "management"),
        ("set_user_tags", "$U1"),
        ("set_permissions", "-p", "$V", "$U0", "^a", "^b", "^c"),
        ("set_permissions", "-p", "$V", "-q", "$U1", "^x", ".*", ""),
        ("list_permissions", "-p", "$V"),
        ("list_user_permissions", "$U0"),
        ("list_user_permissions", "-q", "$U1"),
        ("list_user_permissions", "--formatter", "json", "$U0"),
        ("clear_permissions", "-p", "$V", "$U0"),
        ("clear_permissions", "-p", "$V", "$U0"),
        ("list_user_permissions", "$U0"),
        ("add_vhost", "$V-extra"),
        ("add_vhost", "-q", "$V-extra"),
        ("delete_vhost", "$V-extra"),
        ("delete_vhost", "-q", "$V-extra"),
        ("delete_user", "$U0"),
        ("delete_user", "--formatter", "json", "$U1"),
        ("delete_user", "$U1"),
    ]:
        _same(pair, *args)
    (_, out, _), (_, their_out, _) = both(pair, "list_users")
    assert out.splitlines()[:2] == their_out.splitlines()[:2] == ["Listing users ...", "user\ttags"]
    assert ("guest\t[administrator]" in out.splitlines()) and ("guest\t[administrator]" in their_out.splitlines())


def test_queue_and_connection_commands_match_rabbitmqctl(pair):
    for args in [
        ("purge_queue", "-p", "$V", "q.durable"),
        ("purge_queue", "-p", "$V", "-q", "q.durable"),
        ("purge_queue", "-p", "$V", "--formatter", "json", "q.durable"),
        ("delete_queue", "-p", "$V", "q.durable"),
        ("delete_queue", "-p", "$V", "-q", "q.quorum"),
        ("delete_queue", "-p", "$V", "--formatter", "json", "q.empty", "--if-empty"),
        ("close_all_connections", "-p", "$V", "--limit", "1", "ctl differential"),
    ]:
        assert _same(pair, *args)[0] == 0, args
    for side in (pair["ours"], pair["theirs"]):
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            side.connections[0].process_data_events(time_limit=5)
            side.connections[0].channel()
        assert (closed.value.reply_code, closed.value.reply_text) == (320, "CONNECTION_FORCED - ctl differential")
    # RabbitMQ forgets a closed connection a moment after closing it: wait for that (polling
    # external state), so that both have none left to close.
    deadline = time.monotonic() + 10
    while pair["vhost"] in _theirs("list_connections", "-q", "vhost")[1]:
        assert time.monotonic() < deadline, "RabbitMQ still lists the closed connection"
        time.sleep(0.1)
    _same(pair, "close_all_connections", "-p", "$V", "-q", "nobody left")
    _same(pair, "close_all_connections", "-p", "$V", "--formatter", "json", "nobody left")
    (code, out, _), (their_code, their_out, _) = both(pair, "list_queues", "-p", "$V", "-q", "name", "messages")
    # the exclusive queues went with their connection, on both
    assert (code, sorted(out.splitlines())) == (their_code, sorted(their_out.splitlines()))
    assert sorted(out.splitlines()) == ["name\tmessages", "q.ad\t0", "q.plain\t3"] or \
        sorted(out.splitlines()) == ["name\tmessages", "q.plain\t3"]
