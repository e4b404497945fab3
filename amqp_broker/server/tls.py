"""AMQPS: the TLS listener (RabbitMQ's ``listeners.ssl`` with ``ssl_options``), and the client
certificate's name for EXTERNAL logins (RabbitMQ's rabbitmq_auth_mechanism_ssl).

A TLS connection is an ordinary :class:`~.connection.ServerConnection` over a
:class:`~.tls_stream.TLSStream` (stdlib ssl; why not trio.SSLStream is said there), with two
differences kept out of the plain class, so that the plain listener's hot path is untouched:
writes go through the TLS stream (gather writes with sendmsg would bypass the encryption), and the
closing handshake sends TLS's close_notify before the TCP FIN. The TLS handshake runs before the connection exists: one that fails (a certificate from
another CA, none when one is required, plain AMQP on this port) costs one log line and that
socket only.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..config import ConfigError, Settings
from ..protocol.sasl import ExternalIdentity
from .connection import HANDSHAKE_TIMEOUT, LINGER_TIMEOUT, ServerConnection
from .peers import socket_names
from .tls_stream import TLSStream

if TYPE_CHECKING:  # pragma: no cover
    from .listener import BrokerServer

log = logging.getLogger("amqp_broker.server")

PROTOCOL = "amqp/ssl"  # the listener's name in the management API, as RabbitMQ's


@dataclass
class TLSSetup:
    """What the TLS listener serves with, built once at start-up from the settings."""

    context: ssl.SSLContext
    verify: str
    login_from: str
    #: The generated files' paths with ``tls = "auto"`` (see :mod:`.tls_auto`), else empty.
    auto: dict = field(default_factory=dict)


def tls_enabled(settings: Settings) -> bool:
    """Whether the settings ask for an AMQPS listener."""
    return settings.tls == "auto" or bool(settings.tls_certfile)


def load_tls(settings: Settings) -> TLSSetup | None:
    """The TLS set-up of ``settings`` (making the ``auto`` files first), or None when TLS is off.
    Raises :class:`ConfigError` with one line naming the file at fault."""
    if not tls_enabled(settings):
        return None
    auto: dict = {}
    certfile, keyfile, cacertfile = settings.tls_certfile, settings.tls_keyfile, settings.tls_cacertfile
    verify = settings.tls_verify or ("verify_peer" if settings.tls == "auto" else "verify_none")
    if settings.tls == "auto":
        from .tls_auto import ensure_auto_files

        files = ensure_auto_files(settings.data_dir, settings.default_user)
        auto = files.public()
        certfile, keyfile, cacertfile = files.certfile, files.keyfile, files.ca
        log.info(
            "TLS: %s throw-away CA %s (client certificate for '%s': %s, key %s)",
            "created the" if files.created else "using the", files.ca, settings.default_user,
            files.client_certfile, files.client_keyfile,
        )
    for name, path in (("tls_certfile", certfile), ("tls_keyfile", keyfile),
                       ("tls_cacertfile", cacertfile)):
        if path:
            _check_readable(name, path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # RabbitMQ 3.10 accepts TLS 1.2 and 1.3 by default.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A renegotiation would make a write wait for a read (see tls_stream.py); TLS 1.3 has none.
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(certfile, keyfile or None)
    except ssl.SSLError as exc:
        what = f"tls_certfile {certfile}" + (f" / tls_keyfile {keyfile}" if keyfile else "")
        raise ConfigError(
            f"{what}: not a PEM certificate and its private key ({exc.reason or exc})",
            "tls_certfile",
        ) from None
    if cacertfile:
        try:
            context.load_verify_locations(cafile=cacertfile)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"tls_cacertfile {cacertfile}: no PEM CA certificate in it ({exc.reason or exc})",
                "tls_cacertfile",
            ) from None
    if verify == "verify_peer":
        context.verify_mode = ssl.CERT_REQUIRED if settings.tls_fail_if_no_peer_cert else ssl.CERT_OPTIONAL
        if not cacertfile:
            log.warning("TLS: verify_peer without tls_cacertfile: every client certificate is refused")
    else:
        context.verify_mode = ssl.CERT_NONE
        if settings.tls_fail_if_no_peer_cert:
            log.warning("TLS: tls_fail_if_no_peer_cert has no effect with verify_none")
    return TLSSetup(context, verify, settings.ssl_cert_login_from, auto)


def _check_readable(name: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{name} {path}: cannot read it: {exc.strerror or exc}", name) from None


async def open_tls_listeners(settings: Settings) -> list[trio.SocketListener]:
    from .listener import ListenError

    try:
        return await trio.open_tcp_listeners(settings.tls_port, host=settings.bind_host)
    except OSError as exc:
        raise ListenError("AMQPS (TLS) clients", settings.host, settings.tls_port, exc) from exc


async def handle_tls(server: "BrokerServer", setup: TLSSetup, tcp: trio.SocketStream) -> None:
    """Run the TLS handshake on an accepted socket, then the AMQP connection over it."""
    peer, local = socket_names(tcp)
    stream = TLSStream(tcp, setup.context)
    failure = None
    identity = None
    try:
        with trio.move_on_after(HANDSHAKE_TIMEOUT) as timeout:
            try:
                failure = await _not_tls(tcp)
                if failure is None:
                    await stream.do_handshake()
                    identity = peer_identity(stream, setup)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                failure = _handshake_error(exc)
            except Exception:  # a bug must cost one connection, never the listener
                log.exception("%s: internal error in the TLS handshake", peer)
                failure = "internal error"
    except BaseException:  # shutdown cancelled a handshake
        with trio.CancelScope(shield=True):
            await tcp.aclose()
        raise
    if timeout.cancelled_caught:
        failure = "handshake timeout"
    if failure is not None or identity is None:
        log.warning("TLS handshake with %s failed: %s", peer, failure)
        with trio.CancelScope(shield=True):
            await tcp.aclose()
        return
    conn = TLSServerConnection(server, stream, peer, local, external=identity)
    conn.protocol.tls_details = session_details(stream)
    server.connections.add(conn)
    try:
        await conn.run()
    finally:
        server.connections.discard(conn)


async def _not_tls(tcp: trio.SocketStream) -> str | None:
    """Why the client's first bytes cannot start a TLS handshake, or None when they can. OpenSSL
    would wait for the rest of a "record" as long as the first bytes make it out to be: plain
    AMQP on this port would hang until the handshake timeout, where RabbitMQ refuses it at once."""
    first = await tcp.socket.recv(8, socket.MSG_PEEK)
    if not first:
        return "the client closed the connection"
    if first[0] == 0x16:  # a TLS handshake record
        return None
    # Read what was sent, so that closing answers with a FIN, not a reset.
    await tcp.receive_some(65536)
    if first.startswith(b"AMQP"[: len(first)]):
        return "the client speaks plain AMQP (amqp://, not amqps://) on the TLS port"
    return f"not a TLS client (it sent {bytes(first)!r})"


def _handshake_error(exc: BaseException) -> str:
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__) or exc
    if isinstance(cause, ssl.SSLError):
        verify = getattr(cause, "verify_message", None)
        if verify:
            return f"client certificate refused: {verify}"
        # "[SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE] peer did not return a certificate (_ssl.c:1006)"
        text = re.sub(r"^\[[^]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", cause.strerror or "")
        return text or cause.reason or str(cause)
    if isinstance(cause, OSError):
        return cause.strerror or str(cause)
    return str(exc) or "the client closed the connection"


class TLSServerConnection(ServerConnection):
    """A :class:`ServerConnection` whose stream is a :class:`~.tls_stream.TLSStream`."""

    async def _send_pieces(self, pieces: list) -> None:
        # The TLS layer copies into records anyway: one join costs less than a write per piece.
        await self.stream.send_all(b"".join(pieces))

    async def _linger(self) -> None:
        """As the plain closing handshake, with close_notify before the FIN."""
        if self._send_failed or self._input_closed.is_set():
            return
        try:
            await self.stream.send_close_notify()
            self.raw_socket.shutdown(socket.SHUT_WR)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        with trio.move_on_after(LINGER_TIMEOUT):
            await self._input_closed.wait()


# -- the client certificate's name -----------------------------------------------------------------

# RabbitMQ's attribute names in a distinguished name (rabbit_cert_info:format_rdn); Python's ssl
# module names attributes by OpenSSL's long names.
_DN_NAMES = {
    "surname": "SN", "givenName": "GIVENNAME", "initials": "INITIALS",
    "generationQualifier": "GENERATIONQUALIFIER", "commonName": "CN", "localityName": "L",
    "stateOrProvinceName": "ST", "organizationName": "O", "organizationalUnitName": "OU",
    "title": "TITLE", "countryName": "C", "serialNumber": "SERIALNUMBER", "pseudonym": "PSEUDONYM",
    "domainComponent": "DC", "emailAddress": "EMAILADDRESS", "streetAddress": "STREET",
    "userId": "UID",
}  # fmt: skip


def peer_identity(stream: TLSStream, setup: TLSSetup) -> ExternalIdentity:
    """Who EXTERNAL logs in as on this connection, or why nobody (RabbitMQ's texts)."""
    try:
        cert = stream.getpeercert()
    except ValueError:
        cert = None
    if not cert:
        # An unverified certificate is not even read (verify_none does not ask for one).
        return ExternalIdentity(refusal="connection peer presented no TLS (x.509) certificate")
    if setup.verify != "verify_peer":  # pragma: no cover - verify_none asks for no certificate
        return ExternalIdentity(refusal="TLS configuration is unsafe")
    subject = cert.get("subject", ())
    if setup.login_from == "distinguished_name":
        name = distinguished_name(subject)
    else:
        names = [value for rdn in subject for key, value in rdn if key == "commonName"]
        name = ",".join(names)
    if not name:
        return ExternalIdentity(refusal="no name found", certificate=True)
    return ExternalIdentity(username=name, certificate=True)


def session_details(stream: TLSStream) -> dict:
    """What the management API shows of a TLS connection, under RabbitMQ's keys (the cipher by
    OpenSSL's name, not Erlang's)."""
    cipher = stream.cipher() or ("", "", 0)
    details = {
        "ssl": True,
        "ssl_protocol": (stream.version() or "").lower(),  # "tlsv1.3", as RabbitMQ writes it
        "ssl_cipher": cipher[0],
    }
    try:
        cert = stream.getpeercert()
    except ValueError:
        cert = None
    if cert:
        details["peer_cert_subject"] = distinguished_name(cert.get("subject", ()))
        details["peer_cert_issuer"] = distinguished_name(cert.get("issuer", ()))
        details["peer_cert_validity"] = " - ".join(
            _iso_time(cert.get(key, "")) for key in ("notBefore", "notAfter"))
    return details


def _iso_time(text: str) -> str:
    """"Dec  5 01:24:44 2026 GMT" -> "2026-12-05T01:24:44Z" (RabbitMQ's form)."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ssl.cert_time_to_seconds(text)))
    except ValueError:
        return text


def distinguished_name(subject: tuple) -> str:
    """A certificate subject (as :meth:`ssl.SSLSocket.getpeercert` gives it) in RabbitMQ's format:
    RFC 4514, most specific attribute first, "CN=guest,O=client"."""
    rdns = []
    for rdn in reversed(subject):
        rdns.append("+".join(f"{_DN_NAMES.get(key, key)}={_escape(value)}" for key, value in rdn))
    return ",".join(rdns)


def _escape(value: str) -> str:
    """RabbitMQ's RFC 4514 escaping (rabbit_cert_info:escape_rdn_value): special characters get a
    backslash, bytes of non-printable and non-ASCII characters become \\XX."""
    out = []
    data = value.encode("utf-8")
    for i, byte in enumerate(data):
        char = chr(byte)
        if i == 0 and char in " #":
            out.append("\\" + char)
        elif i == len(data) - 1 and char == " ":
            out.append("\\ ")
        elif char in '"+,;<>\\':
            out.append("\\" + char)
        elif byte < 32 or byte >= 126:
            out.append("\\%02X" % byte)
        else:
            out.append(char)
    return "".join(out)
