"""Starting with TLS: tls = auto makes its files once and reuses them; rabbitmq.conf's
listeners.ssl and ssl_options set up AMQPS; every file that cannot be used stops the start with
one line."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pika
import pytest

from amqp_broker.config import ConfigError, Settings, build_arg_parser, settings_from_args
from amqp_broker.server.tls import distinguished_name
from amqp_broker.testing import BrokerThread

from tls_helpers import client_context, pika_params, round_trip

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], tmp_path: Path, env: dict[str, str] | None = None,
        python: list[str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_BROKER_", "RABBITMQ_"))}
    full_env.update({"AMQP_BROKER_MANAGEMENT_PORT": "0", "AMQP_BROKER_PROMETHEUS_PORT": "0"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *(python or ["-m", "amqp_broker"]), "--host", "127.0.0.1", "--port", "0",
         "--tls-port", "0", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=full_env,
    )


def assert_one_line_failure(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("amqp-broker: "), lines[0]
    assert expected in lines[0], lines[0]


def test_missing_certificate_file(tmp_path):
    missing = tmp_path / "nope.pem"
    result = run(["--tls-certfile", str(missing)], tmp_path)
    assert_one_line_failure(
        result, f"configuration error: tls_certfile {missing}: cannot read it: No such file or directory")


def test_unreadable_key_file(tmp_path, foreign_files):
    # A directory: unreadable even to root, where a chmod would not be.
    result = run(["--tls-certfile", foreign_files.certfile, "--tls-keyfile", str(tmp_path)], tmp_path)
    assert_one_line_failure(result, f"tls_keyfile {tmp_path}: cannot read it: Is a directory")


def test_certificate_file_that_is_not_pem(tmp_path):
    bogus = tmp_path / "cert.pem"
    bogus.write_text("not a certificate\n")
    result = run(["--tls-certfile", str(bogus)], tmp_path)
    assert_one_line_failure(result, f"tls_certfile {bogus}: not a PEM certificate and its private key")


def test_ca_file_that_is_not_pem(tmp_path, foreign_files):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    result = run(["--tls-certfile", foreign_files.certfile, "--tls-keyfile", foreign_files.keyfile,
                  "--tls-cacertfile", str(bogus)], tmp_path)
    assert_one_line_failure(result, f"tls_cacertfile {bogus}: no PEM CA certificate in it")


def test_tls_auto_without_cryptography_names_the_extra(tmp_path):
    # The broker's own command line, in a process where cryptography cannot be imported.
    launcher = ["-c", "import sys; sys.modules['cryptography'] = None; "
                      "from amqp_broker.__main__ import main; sys.exit(main(sys.argv[1:]))"]
    result = run(["--tls", "auto"], tmp_path, python=launcher)
    assert_one_line_failure(
        result, "configuration error: tls = auto needs the cryptography package: "
                "pip install 'amqp-broker-trio[tls]'")
    assert not (tmp_path / "data" / "tls").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--tls", "yes"], "tls must be one of '', off, auto, got 'yes'"),
    (["--tls-verify", "verify_some"], "tls_verify must be one of '', verify_peer, verify_none"),
    (["--tls-fail-if-no-peer-cert", "maybe"], "tls_fail_if_no_peer_cert must be true or false"),
    (["--ssl-cert-login-from", "email"], "ssl_cert_login_from must be one of common_name, distinguished_name"),
    (["--tls", "auto", "--tls-certfile", "/x.pem"], "tls_certfile cannot be combined with tls = auto"),
    (["--tls-keyfile", "/x.pem"], "tls_keyfile is set but tls_certfile is not"),
])
def test_bad_tls_settings(tmp_path, args, expected):
    assert_one_line_failure(run(args, tmp_path), expected)


def test_tls_auto_generates_once_and_reuses(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="amqp_broker.server")
    data_dir = str(tmp_path / "data")
    with BrokerThread(tls="auto", data_dir=data_dir) as first:
        ca = Path(first.tls_ca).read_bytes()
        assert Path(first.tls_ca).parent == tmp_path / "data" / "tls"
        assert os.stat(first.tls_client_key).st_mode & 0o077 == 0, "a private key readable by others"
        with pika.BlockingConnection(pika_params(first, client_context(first))) as conn:
            round_trip(conn, count=2)
    assert "TLS: created the throw-away CA" in caplog.text
    caplog.clear()
    with BrokerThread(tls="auto", data_dir=data_dir) as second:
        assert Path(second.tls_ca).read_bytes() == ca
        context = client_context(second, second.tls_client_cert, second.tls_client_key)
        with pika.BlockingConnection(pika_params(second, context, external=True)) as conn:
            round_trip(conn, count=2)
    assert "TLS: using the throw-away CA" in caplog.text
    assert "created the" not in caplog.text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_rabbitmq_conf_ssl_options_serve_amqps(tmp_path, foreign_files):
    """A RabbitMQ set-up's rabbitmq.conf (listeners.ssl.default, ssl_options.*) starts AMQPS."""
    tls_port = _free_port()
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(
        f"listeners.ssl.default = {tls_port}\n"
        f"ssl_options.cacertfile = {foreign_files.ca}\n"
        f"ssl_options.certfile = {foreign_files.certfile}\n"
        f"ssl_options.keyfile = {foreign_files.keyfile}\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
        "ssl_cert_login_from = common_name\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_BROKER_", "RABBITMQ_"))}
    env.update({"RABBITMQ_CONFIG_FILE": str(conf), "AMQP_BROKER_MANAGEMENT_PORT": "0",
                "AMQP_BROKER_PROMETHEUS_PORT": "0"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(tmp_path / "data")],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path, env=env)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "Server startup complete" in line:
                break
        assert any(f"started TLS (SSL) listener on 127.0.0.1:{tls_port}" in line for line in lines), lines

        class Served:  # what pika_params needs of a broker
            tls_ca = foreign_files.ca

        Served.tls_port = tls_port
        context = client_context(Served, foreign_files.client_certfile, foreign_files.client_keyfile)
        with pika.BlockingConnection(pika_params(Served, context, external=True)) as conn:
            round_trip(conn, count=2)
        # fail_if_no_peer_cert: no certificate, no connection.
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(pika_params(Served, client_context(Served)))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_rabbitmq_conf_keys_map_to_settings(tmp_path):
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(
        "listeners.ssl.default = 127.0.0.1:5999\n"
        "ssl_options.certfile = /etc/c.pem\n"
        "ssl_options.keyfile = /etc/k.pem\n"
        "ssl_options.cacertfile = /etc/ca.pem\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
        "ssl_options.versions.1 = tlsv1.2\n"
        "ssl_cert_login_from = distinguished_name\n"
    )
    warnings: list[str] = []
    settings = settings_from_args(build_arg_parser().parse_args([]),
                                  {"RABBITMQ_CONFIG_FILE": str(conf)}, warnings.append)
    assert (settings.tls_port, settings.tls_certfile, settings.tls_keyfile, settings.tls_cacertfile,
            settings.tls_verify, settings.tls_fail_if_no_peer_cert, settings.ssl_cert_login_from) == (
        5999, "/etc/c.pem", "/etc/k.pem", "/etc/ca.pem", "verify_peer", True, "distinguished_name")
    assert [w for w in warnings if "ssl_options.versions.1 is not supported" in w], warnings
    assert [w for w in warnings if "TLS listener listens on the AMQP interface" in w], warnings
    bad = tmp_path / "bad.conf"
    bad.write_text("ssl_options.verify = verify_maybe\n")
    with pytest.raises(ConfigError, match="expected verify_peer or verify_none"):
        settings_from_args(build_arg_parser().parse_args([]), {"RABBITMQ_CONFIG_FILE": str(bad)},
                           warnings.append)


def test_settings_defaults_keep_tls_off():
    settings = Settings()
    assert (settings.tls, settings.tls_certfile, settings.tls_port) == ("", "", 5671)
    with BrokerThread() as broker:
        assert broker.tls_port == 0
        assert [p for p, _, _ in broker.server.listeners] == ["amqp"]


def test_distinguished_name_is_rabbitmqs_format():
    subject = ((("countryName", "GB"),), (("organizationName", "Acme, Inc."),),
               (("organizationalUnitName", "ops"), ("userId", "u1")), (("commonName", "#büro "),))
    assert distinguished_name(subject) == r"CN=\#b\C3\BCro\ ,OU=ops+UID=u1,O=Acme\, Inc.,C=GB"


def test_tls_port_in_use(tmp_path, foreign_files):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(["--tls-certfile", foreign_files.certfile, "--tls-keyfile", foreign_files.keyfile,
                      "--tls-port", str(port)], tmp_path)
    assert_one_line_failure(result, f"cannot listen for AMQPS (TLS) clients on 127.0.0.1:{port}: ")


def test_boolean_setting_from_toml_environment_and_flag(tmp_path):
    """tls_fail_if_no_peer_cert is the first boolean setting: TOML true/false, and "true"/"false"
    in the environment and on the command line."""
    toml = tmp_path / "broker.toml"
    toml.write_text('tls_fail_if_no_peer_cert = true\n')
    parser = build_arg_parser()
    assert settings_from_args(parser.parse_args(["--config", str(toml)]), {}).tls_fail_if_no_peer_cert
    assert settings_from_args(parser.parse_args([]), {"AMQP_BROKER_TLS_FAIL_IF_NO_PEER_CERT": "TRUE"}
                              ).tls_fail_if_no_peer_cert
    assert not settings_from_args(parser.parse_args(["--tls-fail-if-no-peer-cert", "false"]),
                                  {"AMQP_BROKER_TLS_FAIL_IF_NO_PEER_CERT": "true"}).tls_fail_if_no_peer_cert
    toml.write_text('tls_fail_if_no_peer_cert = 1\n')
    with pytest.raises(ConfigError, match="tls_fail_if_no_peer_cert must be true or false, got int 1"):
        settings_from_args(parser.parse_args(["--config", str(toml)]), {})
