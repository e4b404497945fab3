"""Node-wide limits and failed-login logging, over real sockets.

* ``connection_max``: as RabbitMQ's (ranch's max_connections), a connection beyond it is not
  refused: it waits in the listen backlog, sent nothing, until an open connection closes. Checked
  against a RabbitMQ node with ``connection_max = 2`` by hand (the installed node cannot be
  reconfigured): its third client got no connection.start until the count went down.
* Failed logins: one full line per peer address and interval, the rest counted and summarised;
  RabbitMQ's authentication_failure_close behaviour is unchanged (403 for clients announcing it).
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pika
import pytest
from pamqp import commands, frame

from amqp_broker.broker.login_log import FailedLogins
from amqp_broker.broker.timers import Timers
from amqp_broker.testing import BrokerThread

HEADER = b"AMQP\x00\x00\x09\x01"


def _read_frame(sock: socket.socket) -> object:
    head = b""
    while len(head) < 7:
        chunk = sock.recv(7 - len(head))
        if not chunk:
            raise EOFError("connection closed")
        head += chunk
    size = struct.unpack(">I", head[3:7])[0]
    rest = b""
    while len(rest) < size + 1:
        chunk = sock.recv(size + 1 - len(rest))
        if not chunk:
            raise EOFError("connection closed")
        rest += chunk
    return frame.unmarshal(head + rest)[2]


def _failed_login(port: int, capabilities: dict | None = None) -> object:
    """A PLAIN login with a wrong password; what the broker sent after start-ok ("eof": nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(HEADER)
        assert isinstance(_read_frame(sock), commands.Connection.Start)
        props = {"capabilities": capabilities} if capabilities is not None else {}
        sock.sendall(frame.marshal(commands.Connection.StartOk(
            client_properties=props, mechanism="PLAIN", response="\0guest\0wrong"), 0))
        try:
            return _read_frame(sock)
        except EOFError:
            return "eof"


def _refused_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "login refused" in r.getMessage()]


def _summaries(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "more failed login" in r.getMessage()]


# -- connection_max ---------------------------------------------------------------------------------


def test_connections_beyond_connection_max_wait_to_be_accepted(caplog):
    caplog.set_level(logging.INFO, logger="amqp_broker.server")
    with BrokerThread(connection_max=2) as broker:
        params = pika.ConnectionParameters("127.0.0.1", broker.port)
        first, second = pika.BlockingConnection(params), pika.BlockingConnection(params)
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as third:
            third.sendall(HEADER)   # the kernel took the connection; the broker has not
            third.settimeout(0.5)
            with pytest.raises(socket.timeout):
                third.recv(1)
            assert first.is_open and second.is_open
            assert any("connection_max (2) reached" in r.getMessage() for r in caplog.records)
            first.close()
            third.settimeout(10)
            assert isinstance(_read_frame(third), commands.Connection.Start)
        second.close()
        # The third's close made room again: a fourth connection opens at once.
        pika.BlockingConnection(params).close()


def test_connection_max_counts_every_socket_not_just_logged_in_ones():
    """ranch counts connection processes, whatever their AMQP state: so does the broker."""
    with BrokerThread(connection_max=1) as broker:
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as idle:
            idle.sendall(HEADER)
            assert isinstance(_read_frame(idle), commands.Connection.Start)  # accepted, not logged in
            with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as waiting:
                waiting.sendall(HEADER)
                waiting.settimeout(0.5)
                with pytest.raises(socket.timeout):
                    waiting.recv(1)


# -- failed logins --------------------------------------------------------------------------------


@pytest.mark.parametrize("capabilities", [None, {"authentication_failure_close": True}],
                         ids=["socket-closed", "403-close"])
def test_a_thousand_failed_logins_log_a_bounded_number_of_lines(caplog, capabilities):
    caplog.set_level(logging.INFO)
    with BrokerThread() as broker:   # the default interval: 60 s
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _failed_login(broker.port, capabilities), range(1000)))
        if capabilities is None:
            assert answers == ["eof"] * 1000   # no capability announced: the socket just closes
        else:
            assert {(a.reply_code, a.class_id, a.method_id) for a in answers} == {(403, 0, 0)}
        lines = _refused_lines(caplog)
        assert len(lines) == 1, lines
        # Besides RabbitMQ's info line per accepted connection, nothing is logged per attempt.
        others = [r.getMessage() for r in caplog.records
                  if "accepting AMQP connection" not in r.getMessage() and "startup complete" not in r.getMessage()]
        assert len(others) <= 3, others[:10]
        assert "PLAIN login refused: user 'guest' - invalid credentials" in lines[0]
        assert lines[0].startswith("127.0.0.1:")
        # A good login from the same address still works, and is not held back.
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
        assert conn.channel().is_open
        conn.close()
        assert broker.call(lambda: broker.server.broker.failed_logins.tracked()) == 1


def test_the_count_is_logged_when_the_interval_ends(caplog):
    caplog.set_level(logging.WARNING)
    with BrokerThread(failed_login_log_interval=1) as broker:
        for _ in range(20):
            _failed_login(broker.port)
        deadline = time.monotonic() + 10
        while not _summaries(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _summaries(caplog) == ["19 more failed logins from 127.0.0.1 in the last 1 s"]
        assert len(_refused_lines(caplog)) == 1
        # The next interval starts with a full line again.
        _failed_login(broker.port)
        assert len(_refused_lines(caplog)) == 2


def test_authentication_failure_close_is_kept():
    """RabbitMQ's behaviour: 403 connection.close for a client announcing the capability, even
    when the line is not logged; a plain close of the socket otherwise."""
    with BrokerThread() as broker:
        for _ in range(3):
            close = _failed_login(broker.port, {"authentication_failure_close": True})
            assert isinstance(close, commands.Connection.Close)
            assert (close.reply_code, close.class_id, close.method_id) == (403, 0, 0)
            assert close.reply_text == ("ACCESS_REFUSED - Login was refused using authentication mechanism "
                                        "PLAIN. For details see the broker logfile.")
            assert _failed_login(broker.port, {}) == "eof"


def test_interval_zero_logs_every_failure(caplog):
    caplog.set_level(logging.WARNING)
    with BrokerThread(failed_login_log_interval=0) as broker:
        for _ in range(3):
            _failed_login(broker.port)
    assert len(_refused_lines(caplog)) == 3 and not _summaries(caplog)


def test_tracked_peers_are_capped_and_share_one_timer(caplog):
    """Many addresses: at most max_peers are counted at once (the oldest goes first, with its
    count logged), and one timer on the heap serves them all."""
    caplog.set_level(logging.WARNING, logger="amqp_broker.connection")
    now = [0.0]
    timers = Timers(clock=lambda: now[0])
    logins = FailedLogins(timers, interval=60, max_peers=10)
    for n in range(100):
        for _ in range(3):
            logins.refused(f"10.0.0.{n}:4000", "%s: refused", f"10.0.0.{n}:4000")
    assert logins.tracked() == 10
    assert len(timers) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.endswith(": refused") for line in lines) == 100
    assert len(_summaries(caplog)) == 90    # the evicted ones: "2 more failed logins from ..."
    now[0] = 61.0
    timers.run_due()
    assert logins.tracked() == 0 and len(timers) == 0
    assert len(_summaries(caplog)) == 100
    assert "2 more failed logins from 10.0.0.99 in the last 60 s" in _summaries(caplog)


# -- kept in the data directory ---------------------------------------------------------------------


def test_limits_survive_a_restart(tmp_path):
    """Limits live with their vhost and user in the data directory, as RabbitMQ keeps them."""
    with BrokerThread(data_dir=str(tmp_path)) as broker:
        admin = broker.server.admin
        broker.call(admin.add_vhost, "kept")
        broker.call(admin.set_permissions, "guest", "kept")
        broker.call(admin.set_vhost_limits, "kept", {"max-queues": 0, "max-connections": 5})
        broker.call(admin.set_user_limits, "guest", {"max-channels": 1})
    with BrokerThread(data_dir=str(tmp_path)) as broker:
        admin = broker.server.admin
        assert broker.call(admin.vhost_limits, "kept") == [
            {"vhost": "kept", "value": {"max-connections": 5, "max-queues": 0}}]
        assert broker.call(admin.user_limits) == [{"user": "guest", "value": {"max-channels": 1}}]
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, "kept"))
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="queue limit in vhost 'kept' \\(0\\)"):
            conn.channel().queue_declare("q")
        assert conn.channel().is_open   # the refused declare closed the first: this is the one allowed
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker, match="maximum allowed user limit of \\(1\\)"):
            conn.channel()
        broker.call(admin.clear_vhost_limits, "kept")
        broker.call(admin.clear_user_limits, "guest", "all")
    with BrokerThread(data_dir=str(tmp_path)) as broker:
        assert broker.call(broker.server.admin.vhost_limits) == []
        assert broker.call(broker.server.admin.user_limits) == []


def test_the_admin_api_is_the_python_door_to_limits():
    """What the management API, the CLI and definitions call, on an embedded broker."""
    from amqp_broker.broker.admin import AdminError

    with BrokerThread() as broker:
        admin = broker.server.admin

        def fails(kind: str, reason: str, call, *args) -> None:
            with pytest.raises(AdminError) as error:
                broker.call(call, *args)
            assert (error.value.kind, error.value.reason) == (kind, reason)

        broker.call(admin.set_vhost_limits, "/", {"max-queues": 2, "max-connections": -1})
        broker.call(admin.set_vhost_limit, "/", "max-connections", 3)
        assert broker.call(admin.vhost_limits) == [{"vhost": "/", "value": {"max-connections": 3, "max-queues": 2}}]
        fails("bad_request", 'Validation failed\n\nmax-queues should be a number, actually was <<"2">>\n',
              admin.set_vhost_limits, "/", {"max-queues": "2"})
        fails("bad_request", "Validation failed\n\nUnrecognised terms [{<<\"max-users\">>,1}] in limits\n",
              admin.set_vhost_limit, "/", "max-users", 1)
        fails("not_found", "vhost 'nowhere' not found", admin.set_vhost_limits, "nowhere", {})
        broker.call(admin.clear_vhost_limits, "/")
        fails("not_found", "Parameter does not exist", admin.clear_vhost_limits, "/")

        broker.call(admin.set_user_limits, "guest", {"max-channels": 4})
        broker.call(admin.set_user_limits, "guest", {"max-connections": 1})
        assert broker.call(admin.user_limits, "guest") == [
            {"user": "guest", "value": {"max-channels": 4, "max-connections": 1}}]
        assert broker.call(admin.user, "guest")["limits"] == {"max-channels": 4, "max-connections": 1}
        fails("bad_request", "max-channels should be a number, actually was true",
              admin.set_user_limits, "guest", {"max-channels": True})
        fails("not_found", "user 'nobody' not found", admin.set_user_limits, "nobody", {})
        broker.call(admin.clear_user_limits, "guest", "max-channels")
        assert broker.call(admin.user_limits) == [{"user": "guest", "value": {"max-connections": 1}}]
        broker.call(admin.clear_user_limits, "guest")
        assert broker.call(admin.user_limits) == []
