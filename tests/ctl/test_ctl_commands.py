"""Every ``amqp-broker ctl`` command against a real broker, set up by a real client (pika).

The broker runs in-process (BrokerThread) under a node name of its own; ctl runs in-process
too (cli.main: the command's code without an interpreter start-up per call) and reaches the
broker the way the command does: node record, control port, token. The process-level
behaviours (exit codes of the real command, stop, two brokers) are in test_ctl_process.py.
"""

from __future__ import annotations

import json
import uuid

import pika
import pika.exceptions
import pytest

from amqp_broker.testing import BrokerThread
from ctl_helpers import ctl, unique_node


@pytest.fixture(scope="module")
def node():
    name = unique_node()
    with BrokerThread(node_name=name, management_port=0, prometheus_port=0) as running:
        running.node = name
        yield running


@pytest.fixture
def vhost(node):
    """A vhost of the test's own with guest's full permissions; deleted afterwards."""
    name = f"ctl-{uuid.uuid4().hex[:8]}"
    assert ctl("-n", node.node, "add_vhost", name).code == 0
    assert ctl("-n", node.node, "set_permissions", "-p", name, "guest", ".*", ".*", ".*").code == 0
    yield name
    ctl("-n", node.node, "delete_vhost", name)


@pytest.fixture
def client(node, vhost):
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", node.port, vhost, client_properties={"connection_name": "ctl-test"}, heartbeat=0))
    yield conn
    if conn.is_open:
        conn.close()


def run(node, *args, **kwargs):
    return ctl("-n", node.node, *args, **kwargs)


def test_list_queues_default_columns_banner_and_rows(node, vhost, client):
    ch = client.channel()
    ch.queue_declare("b.q")
    ch.queue_declare("a.q", durable=True, arguments={"x-max-length": 10, "x-dead-letter-exchange": "dlx"})
    for _ in range(3):
        ch.basic_publish("", "b.q", b"m")
    ch.queue_declare("a.q", passive=True)  # a round trip: the publishes have arrived
    result = run(node, "list_queues", "-p", vhost)
    assert result.code == 0, result.err
    assert result.lines == ["Timeout: 60.0 seconds ...", f"Listing queues for vhost {vhost} ...",
                            "name\tmessages", "a.q\t0", "b.q\t3"]
    result = run(node, "list_queues", "-p", vhost, "-t", "5", "name", "durable", "auto_delete", "exclusive",
                 "arguments", "type", "policy", "state", "messages_ready", "messages_unacknowledged")
    assert result.lines[0] == "Timeout: 5.0 seconds ..."
    assert result.rows() == [
        ["name", "durable", "auto_delete", "exclusive", "arguments", "type", "policy", "state",
         "messages_ready", "messages_unacknowledged"],
        ["a.q", "true", "false", "false", '[{"x-max-length",10},{"x-dead-letter-exchange","dlx"}]',
         "classic", "", "running", "0", "0"],
        ["b.q", "false", "false", "false", "[]", "classic", "", "running", "3", "0"],
    ]


def test_list_queues_quiet_silent_headers_json_and_comma_columns(node, vhost, client):
    client.channel().queue_declare("only.q", arguments={"x-message-ttl": 1000})
    assert run(node, "list_queues", "-p", vhost, "-q").lines == ["name\tmessages", "only.q\t0"]
    assert run(node, "list_queues", "-p", vhost, "-s").lines == ["only.q\t0"]
    assert run(node, "list_queues", "-p", vhost, "--no-table-headers").lines[2:] == ["only.q\t0"]
    assert run(node, "list_queues", "-p", vhost, "-q", "name,durable").lines == ["name\tdurable", "only.q\tfalse"]
    result = run(node, "list_queues", "-p", vhost, "--formatter", "json", "name", "durable", "arguments")
    assert result.out == ('[\n{"name":"only.q","durable":false,"arguments":[["x-message-ttl","signedint",1000]]}\n]\n')
    assert json.loads(result.out) == [{"name": "only.q", "durable": False,
                                       "arguments": [["x-message-ttl", "signedint", 1000]]}]


def test_list_queues_of_a_missing_vhost_lists_nothing_and_an_unknown_column_is_a_usage_error(node):
    result = run(node, "list_queues", "-p", "no-such-vhost")
    assert (result.code, result.lines) == (0, ["Timeout: 60.0 seconds ...", "Listing queues for vhost no-such-vhost ..."])
    assert run(node, "list_queues", "-p", "no-such-vhost", "--formatter", "json").out == "[\n]\n"
    result = run(node, "list_queues", "name", "bogus")
    assert result.code == 64
    assert result.err.startswith("Error (argument validation): Info key(s) bogus are not supported\n")


def test_list_queues_exclusive_owner_and_consumer_columns(node, vhost, client):
    ch = client.channel()
    owned = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_declare("watched")
    ch.basic_consume("watched", lambda *a: None, consumer_tag="only-one", exclusive=True)
    connections = run(node, "list_connections", "-q", "pid", "vhost").rows()[1:]
    conn_pid = next(pid for pid, v in connections if v == vhost)
    channels = run(node, "list_channels", "-q", "pid", "vhost", "number").rows()[1:]
    channel_pid = next(pid for pid, v, n in channels if v == vhost and n == str(ch.channel_number))
    rows = {r[0]: r[1:] for r in run(node, "list_queues", "-p", vhost, "-q", "name", "owner_pid", "exclusive",
                                     "exclusive_consumer_pid", "exclusive_consumer_tag", "consumers",
                                     "consumer_utilisation").rows()[1:]}
    assert rows[owned] == [conn_pid, "true", "", "", "0", "0"]
    assert rows["watched"] == ["", "false", channel_pid, "only-one", "1", ""]


def test_list_exchanges_and_bindings(node, vhost, client):
    ch = client.channel()
    ch.exchange_declare("ex.t", "topic", durable=True)
    ch.exchange_declare("ex.h", "headers", auto_delete=True, arguments={"alternate-exchange": "ex.t"})
    ch.exchange_declare("ex.i", "fanout", internal=True)
    ch.queue_declare("q")
    ch.queue_bind("q", "ex.t", "a.#")
    ch.queue_bind("q", "ex.h", "", arguments={"x-match": "all", "k": "v", "n": 5, "tbl": {"b": 1, "a": "x"}})
    ch.exchange_bind("ex.i", "ex.t", "b.*")
    result = run(node, "list_exchanges", "-p", vhost, "name", "type", "durable", "auto_delete", "internal",
                 "arguments", "policy")
    assert result.lines[0] == f"Listing exchanges for vhost {vhost} ..."
    rows = result.rows()
    assert rows[0] == ["name", "type", "durable", "auto_delete", "internal", "arguments", "policy"]
    assert ["", "direct", "true", "false", "false", "[]", ""] in rows
    assert ["ex.h", "headers", "false", "true", "false", '[{"alternate-exchange","ex.t"}]', ""] in rows
    assert ["ex.i", "fanout", "false", "false", "true", "[]", ""] in rows
    assert ["ex.t", "topic", "true", "false", "false", "[]", ""] in rows
    assert run(node, "list_exchanges", "-p", vhost, "-q").rows()[0] == ["name", "type"]

    result = run(node, "list_bindings", "-p", vhost)
    assert result.lines[0] == f"Listing bindings for vhost {vhost}..."
    assert result.rows() == [
        ["source_name", "source_kind", "destination_name", "destination_kind", "routing_key", "arguments"],
        ["", "exchange", "q", "queue", "q", "[]"],
        # sorted by key at the top level (RabbitMQ sorts binding arguments), not inside tables
        ["ex.h", "exchange", "q", "queue", "", '[{"k","v"},{"n",5},{"tbl",[{"b",1},{"a","x"}]},{"x-match","all"}]'],
        ["ex.t", "exchange", "ex.i", "exchange", "b.*", "[]"],
        ["ex.t", "exchange", "q", "queue", "a.#", "[]"],
    ]
    result = run(node, "list_bindings", "-p", vhost, "--formatter", "json", "source_name", "arguments")
    assert json.loads(result.out)[1] == {"source_name": "ex.h", "arguments": [
        ["k", "longstr", "v"], ["n", "signedint", 5], ["tbl", "table", [["b", "signedint", 1], ["a", "longstr", "x"]]],
        ["x-match", "longstr", "all"]]}


def test_list_connections_channels_and_consumers(node, vhost, client):
    ch = client.channel()
    ch.queue_declare("work")
    ch.basic_qos(prefetch_count=5)
    ch.basic_consume("work", lambda *a: None, consumer_tag="c1", arguments={"x-priority": 3})
    confirm = client.channel()
    confirm.confirm_delivery()

    result = run(node, "list_connections")
    assert result.lines[0] == "Listing connections ..."
    assert result.rows()[0] == ["user", "peer_host", "peer_port", "state"]
    columns = ["pid", "name", "user", "vhost", "peer_host", "host", "port", "channels", "state", "protocol",
               "auth_mechanism", "ssl", "frame_max", "channel_max", "timeout", "client_properties"]
    rows = [r for r in run(node, "list_connections", "-q", *columns).rows()[1:] if r[3] == vhost]
    assert len(rows) == 1
    row = dict(zip(columns, rows[0]))
    assert row["pid"].startswith(f"<{node.node}.") and row["name"].endswith(f"-> 127.0.0.1:{node.port}")
    assert (row["user"], row["peer_host"], row["port"], row["channels"], row["state"], row["protocol"],
            row["auth_mechanism"], row["ssl"]) == ("guest", "127.0.0.1", str(node.port), "2", "running",
                                                  "{0,9,1}", "PLAIN", "false")
    assert row["client_properties"].startswith('[{"product","Pika Python Client Library"}')
    assert '{"connection_name","ctl-test"}' in row["client_properties"]
    assert '{"capabilities",[{"authentication_failure_close",true}' in row["client_properties"]

    result = run(node, "list_channels")
    assert result.lines[0] == "Listing channels ..."
    assert result.rows()[0] == ["pid", "user", "consumer_count", "messages_unacknowledged"]
    columns = ["connection", "number", "vhost", "transactional", "confirm", "consumer_count", "prefetch_count",
               "global_prefetch_count", "messages_unconfirmed", "messages_uncommitted", "acks_uncommitted", "pid"]
    channels = {r[1]: r for r in run(node, "list_channels", "-q", *columns).rows()[1:] if r[2] == vhost}
    assert channels[str(ch.channel_number)][:11] == [row["pid"], str(ch.channel_number), vhost, "false", "false",
                                                     "1", "5", "0", "0", "0", "0"]
    assert channels[str(confirm.channel_number)][4] == "true"

    result = run(node, "list_consumers", "-p", vhost)
    assert result.lines[0] == f"Listing consumers in vhost {vhost} ..."
    assert result.rows() == [
        ["queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active", "arguments"],
        ["work", channels[str(ch.channel_number)][-1], "c1", "true", "5", "true", '[{"x-priority",3}]'],
    ]
    assert run(node, "list_consumers", "-p", vhost, "-q", "consumer_tag", "activity_status").rows()[1] == ["c1", "up"]


def test_users_and_their_exit_codes(node):
    user = f"ctl-user-{uuid.uuid4().hex[:6]}"
    result = run(node, "add_user", user, "secret")
    assert result.code == 0
    assert result.lines == [f'Adding user "{user}" ...',
                            "Done. Don't forget to grant the user permissions to some virtual hosts! "
                            "See 'rabbitmqctl help set_permissions' to learn more."]
    again = run(node, "add_user", user, "other")
    assert (again.code, again.err) == (70, f'Error:\nUser "{user}" already exists\n')
    assert run(node, "authenticate_user", user, "secret").lines == [f'Authenticating user "{user}" ...', "Success"]
    assert run(node, "authenticate_user", "-q", user, "secret").lines == ["Success"]
    bad = run(node, "authenticate_user", user, "wrong")
    assert (bad.code, bad.err) == (65, f'Error:\nError: failed to authenticate user "{user}"\n'
                                       f"user '{user}' - invalid credentials\n")
    assert run(node, "change_password", user, "new").lines == [f'Changing password for user "{user}" ...']
    assert run(node, "authenticate_user", user, "new").code == 0
    assert run(node, "set_user_tags", user, "administrator", "monitoring").lines == [
        f'Setting tags for user "{user}" to [administrator, monitoring] ...']
    assert [user, "[administrator, monitoring]"] in run(node, "list_users").rows()
    assert run(node, "list_users").lines[:2] == ["Listing users ...", "user\ttags"]
    assert {"user": user, "tags": ["administrator", "monitoring"]} in json.loads(
        run(node, "list_users", "--formatter", "json").out)
    assert run(node, "clear_password", user).code == 0
    assert run(node, "authenticate_user", user, "new").code == 65
    assert run(node, "delete_user", user).lines == [f'Deleting user "{user}" ...']
    for args in (("delete_user", user), ("change_password", user, "x"), ("set_user_tags", user, "a"),
                 ("clear_password", user)):
        missing = run(node, *args)
        assert (missing.code, missing.err) == (67, f'Error:\nUser "{user}" does not exist\n'), args


def test_add_user_reads_the_password_from_stdin(node):
    user = f"ctl-stdin-{uuid.uuid4().hex[:6]}"
    assert run(node, "add_user", user, stdin="piped\n").code == 0
    assert run(node, "authenticate_user", user, stdin="piped\n").code == 0
    none = run(node, "add_user", f"{user}-2", stdin="")
    assert (none.code, none.err) == (65, "Error:\nPassword is not provided via argument or stdin\n")
    run(node, "delete_user", user)


def test_vhosts_and_permissions(node):
    v = f"ctl-perm-{uuid.uuid4().hex[:6]}"
    user = f"ctl-perm-user-{uuid.uuid4().hex[:6]}"
    assert run(node, "add_vhost", v).lines == [f'Adding vhost "{v}" ...']
    assert run(node, "add_vhost", v).code == 0  # idempotent, as RabbitMQ
    assert [v, "false", f"[{{{node.node}, running}}]"] in run(node, "list_vhosts", "name", "tracing",
                                                            "cluster_state").rows()
    run(node, "add_user", user, "pw")
    result = run(node, "set_permissions", "-p", v, user, "^a", "^b", "^c")
    assert result.lines == [f'Setting permissions for user "{user}" in vhost "{v}" ...']
    assert run(node, "list_permissions", "-p", v).lines == [
        f'Listing permissions for vhost "{v}" ...', "user\tconfigure\twrite\tread", f"{user}\t^a\t^b\t^c"]
    assert run(node, "list_user_permissions", user).lines == [
        f'Listing permissions for user "{user}" ...', "vhost\tconfigure\twrite\tread", f"{v}\t^a\t^b\t^c"]
    bad_regex = run(node, "set_permissions", "-p", v, user, "(", "b", "c")
    assert bad_regex.code == 69 and "(" in bad_regex.err
    assert run(node, "clear_permissions", "-p", v, user).code == 0
    assert run(node, "clear_permissions", "-p", v, user).code == 0  # nothing left to clear: still fine
    assert run(node, "list_user_permissions", "-q", user).out == "\n"  # rabbitmqctl prints an empty line

    def failure(*args):
        r = run(node, *args)
        return r.code, r.err

    assert failure("set_permissions", "-p", v, "nobody-ctl", "a", "b", "c") == (67, "Error:\nUser nobody-ctl does not exist\n")
    assert failure("set_permissions", "-p", "no-vhost", user, "a", "b", "c") == (69, "Error:\nVirtual host no-vhost does not exist\n")
    assert failure("clear_permissions", "-p", "no-vhost", user) == (69, "Error:\nVirtual host no-vhost does not exist\n")
    assert failure("list_permissions", "-p", "no-vhost") == (65, "Virtual host 'no-vhost' does not exist\n")
    assert failure("list_user_permissions", "nobody-ctl") == (69, 'Error:\n{:no_such_user, "nobody-ctl"}\n')
    assert run(node, "delete_vhost", v).lines == [f'Deleting vhost "{v}" ...']
    assert failure("delete_vhost", v) == (65, f"Virtual host '{v}' does not exist\n")
    run(node, "delete_user", user)


def test_purge_and_delete_queue(node, vhost, client):
    ch = client.channel()
    for name in ("full", "used", "plain"):
        ch.queue_declare(name)
    for _ in range(2):
        ch.basic_publish("", "full", b"x")
    ch.basic_consume("used", lambda *a: None)
    ch.queue_declare("full", passive=True)

    refused = run(node, "delete_queue", "-p", vhost, "full", "--if-empty")
    assert refused.lines == [f"Deleting queue 'full' on vhost '{vhost}' if queue is empty ..."]
    assert (refused.code, refused.err) == (64, "Error:\nQueue is not empty\n")
    refused = run(node, "delete_queue", "-p", vhost, "used", "-u", "-e")
    assert refused.lines == [f"Deleting queue 'used' on vhost '{vhost}' if queue is empty and if queue is unused ..."]
    assert (refused.code, refused.err) == (64, "Error:\nQueue is in use\n")

    assert run(node, "purge_queue", "-p", vhost, "full").lines == [f"Purging queue 'full' in vhost '{vhost}' ..."]
    assert ch.queue_declare("full", passive=True).method.message_count == 0
    ch.basic_publish("", "plain", b"x")
    ch.queue_declare("plain", passive=True)
    deleted = run(node, "delete_queue", "-p", vhost, "-q", "plain")
    assert (deleted.code, deleted.lines) == (0, ["Queue was successfully deleted with 1 ready messages"])
    assert json.loads(run(node, "delete_queue", "-p", vhost, "--formatter", "json", "full").out) == {
        "message": "Queue was successfully deleted with 0 ready messages"}

    missing = run(node, "delete_queue", "-p", vhost, "plain")
    assert (missing.code, missing.err) == (64, "Error:\nQueue not found\n")
    missing = run(node, "purge_queue", "-p", vhost, "plain")
    assert (missing.code, missing.err) == (69, "Error:\nnot_found\n")


def _closed_reason(conn: pika.BlockingConnection) -> tuple[int, str]:
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        conn.process_data_events(time_limit=5)
        conn.channel()
    return closed.value.reply_code, closed.value.reply_text


def test_close_connection_by_pid_and_by_name(node, vhost):
    params = pika.ConnectionParameters("127.0.0.1", node.port, vhost, heartbeat=0)
    first, second = pika.BlockingConnection(params), pika.BlockingConnection(params)
    rows = [r for r in run(node, "list_connections", "-q", "pid", "name", "vhost").rows()[1:] if r[2] == vhost]
    assert len(rows) == 2
    (pid_a, name_a, _), (pid_b, name_b, _) = rows
    result = run(node, "close_connection", pid_a, "go away")
    assert (result.code, result.lines) == (0, [f"Closing connection {pid_a}, reason: go away..."])
    assert run(node, "close_connection", name_b, "you too").code == 0
    reasons = sorted([_closed_reason(first), _closed_reason(second)])
    assert reasons == [(320, "CONNECTION_FORCED - go away"), (320, "CONNECTION_FORCED - you too")]
    assert run(node, "close_connection", pid_a, "again").code == 0  # a pid that is gone: as RabbitMQ
    nonsense = run(node, "close_connection", "nonsense", "x")
    assert (nonsense.code, nonsense.err) == (69, 'Error:\nError:\n{:invalid_pid_syntax, "nonsense"}\n')


def test_close_all_connections_with_vhost_limit_and_global(node, vhost):
    params = pika.ConnectionParameters("127.0.0.1", node.port, vhost, heartbeat=0)
    conns = [pika.BlockingConnection(params) for _ in range(3)]
    result = run(node, "close_all_connections", "-p", vhost, "--limit", "2", "enough")
    assert result.lines == [f"Closing 2 connections in vhost {vhost}, reason: enough...", "Closed 2 connections"]
    assert [_closed_reason(c) for c in conns[:2]] == [(320, "CONNECTION_FORCED - enough")] * 2
    assert conns[2].is_open
    result = run(node, "close_all_connections", "-p", vhost, "-q", "all of them")
    assert result.lines == ["Closed 1 connections"]
    assert _closed_reason(conns[2]) == (320, "CONNECTION_FORCED - all of them")
    elsewhere = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port, "/", heartbeat=0))
    result = run(node, "close_all_connections", "--global", "everyone")
    assert result.lines[0] == f"Closing all connections to node {node.node} (across all vhosts), reason: everyone..."
    assert _closed_reason(elsewhere) == (320, "CONNECTION_FORCED - everyone")


def test_export_and_import_definitions(node, vhost, client, tmp_path):
    client.channel().queue_declare("kept", durable=True)
    path = tmp_path / "defs.json"
    result = run(node, "export_definitions", str(path))
    assert result.lines == [f'Exporting definitions in JSON to a file at "{path}" ...']
    data = json.loads(path.read_text())
    assert {"name": "kept", "vhost": vhost} in [{"name": q["name"], "vhost": q["vhost"]} for q in data["queues"]]
    to_stdout = run(node, "export_definitions", "-")
    assert json.loads(to_stdout.out)["vhosts"] == data["vhosts"]

    other = f"ctl-import-{uuid.uuid4().hex[:6]}"
    incoming = {"vhosts": [{"name": other}], "queues": [{"name": "imported", "vhost": other, "durable": True,
                                                          "auto_delete": False, "arguments": {}}]}
    path.write_text(json.dumps(incoming))
    result = run(node, "import_definitions", str(path))
    assert result.lines == [f'Importing definitions in JSON from a file at "{path}" ...',
                            "Successfully started definition import. This process is asynchronous and can take some time.",
                            ""]
    assert run(node, "list_queues", "-p", other, "-s", "name").lines == ["imported"]
    incoming["queues"][0]["name"] = "from-stdin"
    assert run(node, "import_definitions", "-", stdin=json.dumps(incoming)).out == ""
    assert run(node, "list_queues", "-p", other, "-s", "name").lines == ["from-stdin", "imported"]
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert run(node, "import_definitions", str(broken)).code == 65
    assert run(node, "import_definitions", str(tmp_path / "absent.json")).code == 64
    run(node, "delete_vhost", other)


def test_status_ping_await_startup_version_and_app_commands(node):
    status = run(node, "status")
    assert status.code == 0
    assert status.lines[0] == f"Status of node {node.node} ..."
    assert f"Node name: {node.node}" in status.lines
    assert any(line.startswith("Interface: ") and f"port: {node.port}, protocol: amqp" in line for line in status.lines)
    data = json.loads(run(node, "status", "--formatter", "json").out)
    assert data["node_name"] == node.node and data["totals"]["virtual_host_count"] >= 1

    assert run(node, "ping").lines == [f"Will ping {node.node}. This only checks if the OS process is running and "
                                       "registered with epmd. Timeout: 60000 ms.", "Ping succeeded"]
    assert run(node, "ping", "-q").lines == ["Ping succeeded"]
    assert (run(node, "await_startup").code, run(node, "await_startup").out) == (0, "")
    from amqp_broker import __version__

    assert ctl("version").lines == [__version__]  # needs no broker
    assert run(node, "stop_app").lines == [f"Stopping rabbit application on node {node.node} ..."]
    assert run(node, "start_app").lines == [f"Starting node {node.node} ..."]
    # stop_app changed nothing: the broker still serves
    pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port, heartbeat=0)).close()


def test_help_lists_the_commands():
    result = ctl("--help")
    assert result.code == 0
    for name in ("list_queues", "add_user", "close_all_connections", "import_definitions", "await_startup", "reset"):
        assert f"    {name} " in result.out
    one = ctl("help", "delete_queue")
    assert one.code == 0 and "--if-empty" in one.out
    assert ctl().code == 64
    unknown = ctl("bogus_cmd")
    assert (unknown.code, unknown.err.splitlines()[1]) == (64, "Command 'bogus_cmd' not found. ")
    short = ctl("add_user")
    assert short.code == 64 and short.err.startswith("Error (argument validation): not enough arguments.\n")


def test_reset_returns_the_broker_to_a_fresh_state():
    name = unique_node("ctl-reset")
    with BrokerThread(node_name=name, management_port=0, prometheus_port=0) as running:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", running.port, heartbeat=0))
        conn.channel().queue_declare("leftover", durable=True)
        assert ctl("-n", name, "add_user", "extra", "pw").code == 0
        assert ctl("-n", name, "add_vhost", "extra-vhost").code == 0
        assert ctl("-n", name, "stop_app").code == 0  # what test suites run first, as for RabbitMQ
        result = ctl("-n", name, "reset")
        assert (result.code, result.lines) == (0, [f"Resetting node {name} ..."])
        assert _closed_reason(conn)[0] == 320
        assert ctl("-n", name, "start_app").code == 0
        assert ctl("-n", name, "list_queues", "-s").out == ""
        assert ctl("-n", name, "list_vhosts", "-s").lines == ["/"]
        assert ctl("-n", name, "list_users", "-s").lines == ["guest\t[administrator]"]
        assert ctl("-n", name, "authenticate_user", "-q", "guest", "guest").code == 0
        # and a reset broker serves as a fresh one does
        fresh = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", running.port, heartbeat=0))
        fresh.channel().queue_declare("leftover", passive=False)
        fresh.close()


def test_stop_stops_an_in_process_broker():
    name = unique_node("ctl-stop")
    running = BrokerThread(node_name=name, management_port=0, prometheus_port=0).start()
    try:
        result = ctl("-n", name, "stop")
        assert (result.code, result.lines) == (0, [f"Stopping and halting node {name} ..."])
        assert ctl("-n", name, "ping").code == 69
    finally:
        running.stop()  # here only waits for the broker's thread, which ctl stop has ended
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", running.port, heartbeat=0,
                                                          connection_attempts=1))


def test_every_flag_of_every_command_has_help_text():
    from amqp_broker.ctl.cli import build_parser

    parser = build_parser()
    for sub in [parser, *parser.command_parsers.values()]:
        for action in sub._actions:
            assert action.help, f"{sub.prog}: {action.option_strings or action.dest} has no help text"
