"""guest may log in only from this machine, as with RabbitMQ: a broker listening on every
interface is reached here through this machine's own non-loopback address, which is what a client
on another machine looks like to it (on AMQP the check is on the connection's local address, as
RabbitMQ's rabbit_net:is_loopback makes it; on the management HTTP API on the client's address,
as rabbit_mgmt_util makes it).

RabbitMQ's answer is compared live when it listens on that address too, else with what it
answered when this was written (RABBITMQ_REFUSAL, RABBITMQ_HTTP_REFUSAL)."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time

import pika
import pika.exceptions
import pytest

from amqp_broker.testing import BrokerThread
from interop.management.api import Api
from interop.probe_rabbitmq import Raw

RABBITMQ_REFUSAL = ("ACCESS_REFUSED - Login was refused using authentication mechanism {}. For "
                    "details see the broker logfile.")
#: RabbitMQ 3.10's management API to guest from afar: status, body, WWW-Authenticate (none: a
#: browser is not to ask for other credentials).
RABBITMQ_HTTP_REFUSAL = (401, {"error": "not_authorised", "reason": "User can only log in via localhost"},
                         None)
RABBITMQ_MANAGEMENT_PORT = 15672


def _route_source(family: int, destination: str) -> str | None:
    """The local address the kernel would send from to ``destination`` (no packet is sent)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((destination, 9))
            return sock.getsockname()[0]
    except OSError:
        return None


def non_loopback_address() -> str | None:
    """An address of this machine that is not a loopback one: the source of the default route
    (IPv4, then IPv6), else any address the host name resolves to."""
    candidates = [_route_source(socket.AF_INET, "198.51.100.1"),
                  _route_source(socket.AF_INET6, "2001:db8::1")]
    try:
        candidates += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)]
    except OSError:
        pass
    for address in candidates:
        if address and not address.startswith("127.") and address not in ("::1", "0.0.0.0", "::") \
                and not address.startswith("fe80"):
            return address
    return None


ADDRESS = non_loopback_address()
needs_address = pytest.mark.skipif(
    ADDRESS is None, reason="this machine has no non-loopback address to connect through")
# Every interface of ADDRESS's family (one listening socket, so port 0 gives one port), and that
# family's loopback address.
ANY, LOOPBACK = ("::", "::1") if ADDRESS and ":" in ADDRESS else ("0.0.0.0", "127.0.0.1")


def _params(host: str, port: int, user: str = "guest", password: str = "guest") -> pika.ConnectionParameters:
    return pika.ConnectionParameters(host, port, credentials=pika.PlainCredentials(user, password),
                                     connection_attempts=1, heartbeat=0)


def _refusal(host: str, port: int, **kw) -> str:
    """The text of the 403 a pika login gets."""
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        pika.BlockingConnection(_params(host, port, **kw))
    return str(info.value)


def _logs_in(host: str, port: int, **kw) -> bool:
    conn = pika.BlockingConnection(_params(host, port, **kw))
    ok = conn.channel().is_open
    conn.close()
    return ok


def _raw_close(host: str, port: int, mechanism: str = "PLAIN", capabilities: dict | None = None):
    """connection.close (code, text, class, method) after a raw start-ok, or "eof"."""
    raw = Raw(host, port)
    try:
        response = None
        if mechanism == "AMQPLAIN":
            from pamqp import encode
            response = encode.field_table({"LOGIN": "guest", "PASSWORD": "guest"})[4:].decode("latin-1")
        got = raw.handshake(mechanism=mechanism, response=response, capabilities=capabilities)
    finally:
        raw.close()
    if got.get("method") == "connection.close":
        return got["reply_code"], got["reply_text"], got["class_id"], got["method_id"]
    return "eof" if got.get("eof") else got


@pytest.fixture(scope="module")
def everywhere():
    """A broker on every interface, its management API too, with the default settings: guest
    is loopback-only. Every refused login is logged (interval 0): several tests read the line
    for refusals from the same address."""
    with BrokerThread(host=ANY, management=True, failed_login_log_interval=0) as broker:
        broker.call(lambda: broker.server.admin.add_user("alice", "alice-pw", tags=["management"]))
        broker.call(broker.server.admin.set_permissions, "alice", "/")
        yield broker


def _http(host: str, port: int, user: str = "guest", password: str = "guest"):
    """GET /api/whoami: (status, JSON body, WWW-Authenticate)."""
    where = f"[{host}]" if ":" in host else host
    answer = Api(f"http://{where}:{port}", timeout=5).request("GET", "/api/whoami", auth=(user, password))
    return answer.status, answer.json, answer.headers.get("www-authenticate")


def _rabbitmq_listens_on(address: str) -> bool:
    try:
        socket.create_connection((address, 5672), timeout=2).close()
    except OSError:
        return False
    raw = Raw(address, 5672)
    try:
        return (raw.handshake(open_connection=False).get("method") == "connection.close"
                and (raw.start.server_properties or {}).get("product") in (b"RabbitMQ", "RabbitMQ"))
    except Exception:  # noqa: BLE001
        return False
    finally:
        raw.close()


@needs_address
def test_guest_is_refused_from_another_address_as_rabbitmq_refuses_it(everywhere):
    ours = {mechanism: _raw_close(ADDRESS, everywhere.port, mechanism) for mechanism in ("PLAIN", "AMQPLAIN")}
    if _rabbitmq_listens_on(ADDRESS):
        theirs = {mechanism: _raw_close(ADDRESS, 5672, mechanism) for mechanism in ("PLAIN", "AMQPLAIN")}
    else:
        theirs = {m: (403, RABBITMQ_REFUSAL.format(m), 0, 0) for m in ("PLAIN", "AMQPLAIN")}
    assert ours == theirs
    assert ours["PLAIN"] == (403, RABBITMQ_REFUSAL.format("PLAIN"), 0, 0)
    # A client that did not announce authentication_failure_close just loses the socket.
    assert _raw_close(ADDRESS, everywhere.port, capabilities={}) == "eof"
    assert "(403) 'ACCESS_REFUSED - Login was refused" in _refusal(ADDRESS, everywhere.port)


@needs_address
def test_the_refusal_is_logged_with_the_setting_that_lifts_it(everywhere, caplog):
    _refusal(ADDRESS, everywhere.port)
    lines = [r.getMessage() for r in caplog.records if "can only connect via localhost" in r.getMessage()]
    assert lines, caplog.text
    assert "PLAIN login refused: user 'guest' can only connect via localhost" in lines[0]
    assert '--loopback-users ""' in lines[0] and "AMQP_BROKER_LOOPBACK_USERS=" in lines[0]


def test_guest_logs_in_over_loopback(everywhere):
    assert _logs_in(LOOPBACK, everywhere.port)


@needs_address
def test_other_users_log_in_from_anywhere(everywhere):
    assert _logs_in(ADDRESS, everywhere.port, user="alice", password="alice-pw")
    # A wrong password from afar is the same 403 as a loopback refusal.
    assert "ACCESS_REFUSED - Login was refused" in _refusal(ADDRESS, everywhere.port, user="alice", password="x")


@needs_address
def test_an_empty_loopback_users_lets_guest_in_from_anywhere():
    with BrokerThread(host=ANY, loopback_users=(), management=True) as broker:
        assert _logs_in(ADDRESS, broker.port)
        assert _http(ADDRESS, broker.management_port)[:2] == (200, {"name": "guest", "tags": ["administrator"]})


# -- the management HTTP API ------------------------------------------------------------------------


@needs_address
def test_guest_is_refused_over_http_from_another_address_as_rabbitmq_refuses_it(everywhere):
    ours = _http(ADDRESS, everywhere.management_port)
    try:
        theirs = _http(ADDRESS, RABBITMQ_MANAGEMENT_PORT)
    except OSError:
        theirs = RABBITMQ_HTTP_REFUSAL
    assert ours == theirs == RABBITMQ_HTTP_REFUSAL
    # The password is checked first: a wrong one is the usual login failure, from anywhere.
    assert _http(ADDRESS, everywhere.management_port, password="wrong")[:2] == (
        401, {"error": "not_authorized", "reason": "Login failed"})


@needs_address
def test_the_http_refusal_is_logged_with_the_setting_that_lifts_it(everywhere, caplog):
    _http(ADDRESS, everywhere.management_port)
    lines = [r.getMessage() for r in caplog.records if "HTTP login refused" in r.getMessage()]
    assert lines, caplog.text
    assert "user 'guest' can only connect via localhost" in lines[0]
    assert '--loopback-users ""' in lines[0]


def test_guest_uses_the_http_api_over_loopback(everywhere):
    assert _http(LOOPBACK, everywhere.management_port)[:2] == (200, {"name": "guest", "tags": ["administrator"]})


@needs_address
def test_other_users_use_the_http_api_from_anywhere(everywhere):
    assert _http(ADDRESS, everywhere.management_port, "alice", "alice-pw")[0] == 200


# -- the command line: the one setting for containers and CI ---------------------------------------


class _Broker:
    """``python -m amqp_broker`` on every interface and a free port, until the test ends."""

    def __init__(self, tmp_path, args: list[str], env: dict[str, str]):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AMQP_BROKER_")}
        # No HTTP listeners: 15672/15692 belong to the RabbitMQ next to us.
        full_env.update(AMQP_BROKER_MANAGEMENT_PORT="0", AMQP_BROKER_PROMETHEUS_PORT="0")
        full_env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amqp_broker", "--host", ANY, "--port", "0",
             "--data-dir", str(tmp_path / "data"), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 20
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            match = re.search(r"Server startup complete; listening on .*:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                return

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.log.append(line)
            self.lines.put(line)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


@pytest.fixture
def cli_broker(tmp_path):
    started: list[_Broker] = []

    def start(*args: str, env: dict[str, str] | None = None) -> _Broker:
        broker = _Broker(tmp_path, list(args), env or {})
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@needs_address
@pytest.mark.parametrize("how", ["default", "flag", "environment"])
def test_the_command_line_setting(cli_broker, how):
    if how == "default":
        broker = cli_broker()
        assert "ACCESS_REFUSED" in _refusal(ADDRESS, broker.port)
        deadline = time.monotonic() + 10
        while not any("can only connect via localhost" in line for line in broker.log):
            assert time.monotonic() < deadline, "".join(broker.log)
            time.sleep(0.05)
    elif how == "flag":
        broker = cli_broker("--loopback-users", "")
        assert _logs_in(ADDRESS, broker.port)
    else:
        broker = cli_broker(env={"AMQP_BROKER_LOOPBACK_USERS": ""})
        assert _logs_in(ADDRESS, broker.port)
    assert _logs_in(LOOPBACK, broker.port)
