"""What AMQPS refuses, and how: certificates verify_peer does not accept, a missing certificate
under fail_if_no_peer_cert, EXTERNAL logins that cannot succeed (RabbitMQ's texts), and broken
handshakes, which cost one log line and never another connection."""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import time

import pika
import pytest
from pamqp import body, commands, frame, header

from amqp_broker.testing import BrokerThread

from tls_helpers import client_context, pika_params, round_trip

DEADLINE = 10.0
REFUSED_TEXT = ("ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. "
                "For details see the broker logfile.")


def wait_for_log(caplog, text: str) -> list[logging.LogRecord]:
    """The broker's log records containing ``text``, once there is one (it logs from its own
    thread, maybe after the client saw the refusal)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        found = [r for r in caplog.records if text in r.getMessage()]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def handshake_failures(caplog, port: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "amqp_broker.server"
            and r.getMessage().startswith(f"TLS handshake with 127.0.0.1:{port} failed")]


def test_client_certificate_from_another_ca_is_refused(tls_broker, foreign_files, caplog):
    caplog.set_level(logging.INFO, logger="amqp_broker")
    context = client_context(tls_broker, foreign_files.client_certfile, foreign_files.client_keyfile)
    sock = socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=DEADLINE)
    local_port = sock.getsockname()[1]
    # TLS 1.3 verifies the client's certificate after the client's Finished: the refusal (an
    # alert) arrives at the client's first read.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"AMQP\x00\x00\x09\x01")
            assert tls.recv(4096) == b"", "the broker answered a client it should have refused"
    records = wait_for_log(caplog, f"TLS handshake with 127.0.0.1:{local_port} failed")
    assert len(records) == 1, caplog.text
    assert "certificate" in records[0].getMessage() or "unknown ca" in records[0].getMessage()
    assert records[0].levelno == logging.WARNING and records[0].exc_info is None
    # Nothing of it reached the AMQP layer.
    assert f"accepting AMQP connection (127.0.0.1:{local_port})" not in caplog.text


def test_pika_with_a_foreign_certificate_cannot_connect(tls_broker, foreign_files):
    context = client_context(tls_broker, foreign_files.client_certfile, foreign_files.client_keyfile)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika_params(tls_broker, context))


@pytest.fixture(scope="module")
def strict_broker():
    """verify_peer with fail_if_no_peer_cert: a client certificate is required."""
    with BrokerThread(tls="auto", tls_fail_if_no_peer_cert=True) as running:
        yield running


def test_fail_if_no_peer_cert_refuses_a_client_without_one(strict_broker, caplog):
    caplog.set_level(logging.INFO, logger="amqp_broker")
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika_params(strict_broker, client_context(strict_broker)))
    records = wait_for_log(caplog, "TLS handshake with 127.0.0.1:")
    assert len(records) == 1, caplog.text
    assert "certificate" in records[0].getMessage(), records[0].getMessage()
    # With its certificate the same client is let in.
    context = client_context(strict_broker, strict_broker.tls_client_cert, strict_broker.tls_client_key)
    with pika.BlockingConnection(pika_params(strict_broker, context)) as conn:
        round_trip(conn, count=3)


def _read_method(tls: ssl.SSLSocket):
    """The next method frame from the broker (raw: what the broker offers and answers)."""
    data = b""
    while True:
        if len(data) >= 7:
            size = struct.unpack(">I", data[3:7])[0]
            if len(data) >= 8 + size:
                _, _, value = frame.unmarshal(data[:8 + size])
                return value
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the broker after {data!r}")
        data += chunk


def _start(broker: BrokerThread, context: ssl.SSLContext) -> tuple[ssl.SSLSocket, str]:
    tls = context.wrap_socket(socket.create_connection(("127.0.0.1", broker.tls_port), timeout=DEADLINE),
                              server_hostname="localhost")
    tls.sendall(b"AMQP\x00\x00\x09\x01")
    start = _read_method(tls)
    assert isinstance(start, commands.Connection.Start)
    return tls, start.mechanisms


def _start_ok_external(tls: ssl.SSLSocket) -> None:
    tls.sendall(frame.marshal(commands.Connection.StartOk(
        client_properties={"capabilities": {"authentication_failure_close": True}},
        mechanism="EXTERNAL", response=""), 0))


def test_external_is_offered_only_with_a_verified_certificate(tls_broker):
    with_cert = client_context(tls_broker, tls_broker.tls_client_cert, tls_broker.tls_client_key)
    tls, mechanisms = _start(tls_broker, with_cert)
    tls.close()
    assert mechanisms == "AMQPLAIN PLAIN EXTERNAL"  # RabbitMQ 3.10's order
    tls, mechanisms = _start(tls_broker, client_context(tls_broker))
    tls.close()
    assert mechanisms == "AMQPLAIN PLAIN"


def test_external_without_a_certificate_is_refused_with_rabbitmqs_reason(tls_broker, caplog):
    """A client that asks for EXTERNAL anyway gets RabbitMQ's 403 and the log RabbitMQ's reason."""
    caplog.set_level(logging.INFO, logger="amqp_broker")
    tls, _ = _start(tls_broker, client_context(tls_broker))
    with tls:
        port = tls.getsockname()[1]
        _start_ok_external(tls)
        close = _read_method(tls)
    assert isinstance(close, commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (403, REFUSED_TEXT)
    assert wait_for_log(caplog, f"127.0.0.1:{port}: EXTERNAL login refused: "
                                "connection peer presented no TLS (x.509) certificate")


@pytest.fixture(scope="module")
def dn_broker():
    """EXTERNAL takes the whole distinguished name (RabbitMQ's default)."""
    with BrokerThread(tls="auto", ssl_cert_login_from="distinguished_name") as running:
        yield running


def test_external_with_distinguished_name_needs_that_user(dn_broker, caplog):
    caplog.set_level(logging.INFO, logger="amqp_broker")
    context = client_context(dn_broker, dn_broker.tls_client_cert, dn_broker.tls_client_key)
    dn = "CN=guest,O=amqp_broker client"
    with pytest.raises(pika.exceptions.ProbableAuthenticationError, match="mechanism EXTERNAL"):
        pika.BlockingConnection(pika_params(dn_broker, context, external=True))
    assert wait_for_log(caplog, f"EXTERNAL login refused: user '{dn}' - invalid credentials")

    admin = dn_broker.server.admin
    # A user for the certificate, without a password: EXTERNAL checks none.
    dn_broker.call(lambda: admin.add_user(dn, password_hash=""))
    dn_broker.call(lambda: admin.set_permissions(dn, "/", ".*", ".*", ".*"))
    with pika.BlockingConnection(pika_params(dn_broker, context, external=True)) as conn:
        round_trip(conn, count=3)
        sessions = dn_broker.call(lambda: [s.user for s in dn_broker.server.broker.sessions])
        assert dn in sessions


def test_broken_handshakes_do_not_disturb_other_connections(tls_broker, caplog):
    """Plain AMQP on the TLS port, a half ClientHello, a client that drops mid-handshake: each is
    one log line, and a plain and a TLS connection open meanwhile carry on."""
    caplog.set_level(logging.INFO, logger="amqp_broker")
    plain = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", tls_broker.port))
    secure = pika.BlockingConnection(pika_params(tls_broker, client_context(tls_broker)))
    try:
        round_trip(plain, count=2)
        round_trip(secure, count=2)
        ports = []
        # Plain AMQP where TLS is expected: the broker drops it (no AMQP answer in clear).
        with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=DEADLINE) as sock:
            ports.append(sock.getsockname()[1])
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            assert not sock.recv(4096).startswith(b"AMQP"), "the broker spoke AMQP in clear on its TLS port"
        # A ClientHello cut short, then a hang-up.
        hello = _client_hello(tls_broker)
        with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=DEADLINE) as sock:
            ports.append(sock.getsockname()[1])
            sock.sendall(hello[: len(hello) // 2])
        for port in ports:
            assert wait_for_log(caplog, f"TLS handshake with 127.0.0.1:{port} failed"), caplog.text
            assert len(handshake_failures(caplog, port)) == 1, caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
        round_trip(plain, count=2)
        round_trip(secure, count=2)
    finally:
        plain.close()
        secure.close()


def _client_hello(broker: BrokerThread) -> bytes:
    """The first flight of a TLS client: a ClientHello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(broker).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_broker_closing_a_tls_connection(tls_broker, caplog):
    """The closing handshake over TLS: the client gets 320 with the operator's reason, and the
    broker's side ends at once (close_notify and FIN after close-ok, no linger)."""
    caplog.set_level(logging.INFO, logger="amqp_broker")
    conn = pika.BlockingConnection(pika_params(tls_broker, client_context(tls_broker)))
    names = tls_broker.call(lambda: [s.name for s in tls_broker.server.broker.sessions
                                     if s.name.endswith(f":{tls_broker.tls_port}")])
    assert len(names) == 1, names
    port = names[0].split(" -> ")[0].rpartition(":")[2]
    tls_broker.call(lambda: tls_broker.server.admin.close_connection(names[0], "tls test"))
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        conn.process_data_events(time_limit=DEADLINE)
    assert (closed.value.reply_code, closed.value.reply_text) == (
        320, "CONNECTION_FORCED - tls test")
    assert wait_for_log(caplog, f"closing AMQP connection (127.0.0.1:{port})")


def test_publisher_held_by_an_alarm_is_dropped_when_it_hangs_up(tmp_path):
    """A held TLS connection is not read; the client hanging up is noticed on the socket under
    the TLS stream all the same, and what it held goes with it."""
    with BrokerThread(tls="auto", data_dir=str(tmp_path / "data")) as broker:
        server = broker.server
        tls, _ = _start(broker, client_context(broker))
        tls.sendall(frame.marshal(commands.Connection.StartOk(
            client_properties={}, mechanism="PLAIN", response="\0guest\0guest"), 0))
        assert isinstance(_read_method(tls), commands.Connection.Tune)
        publish = (frame.marshal(commands.Basic.Publish(exchange="", routing_key="nowhere"), 1)
                   + frame.marshal(header.ContentHeader(body_size=1), 1)
                   + frame.marshal(body.ContentBody(b"x"), 1))
        tls.sendall(frame.marshal(commands.Connection.TuneOk(channel_max=10, frame_max=131072,
                                                             heartbeat=0), 0)
                    + frame.marshal(commands.Connection.Open(virtual_host="/"), 0)
                    + frame.marshal(commands.Channel.Open(), 1) + publish)
        assert isinstance(_read_method(tls), commands.Connection.OpenOk)
        broker.call(setattr, server, "memory_limit", 1)  # any RSS is above one byte
        assert poll(lambda: broker.call(lambda: server.flow.active))
        tls.sendall(publish)  # read, then held

        def held() -> bool:
            return any(conn._held is not None for conn in server.connections)

        assert poll(lambda: broker.call(held))
        tls.close()  # a FIN, no close_notify: a client that died
        assert poll(lambda: broker.call(lambda: len(server.connections)) == 0)


def poll(condition, deadline: float = DEADLINE) -> bool:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True
