"""``tls = "auto"``: a throw-away CA, a server certificate and a client certificate, made once in
``<data_dir>/tls/`` and reused on every later start, so that AMQPS (and EXTERNAL) can be tried
and tested without an operator's PKI.

The server certificate names localhost, this host's name, 127.0.0.1 and ::1; the client
certificate's common name is the default user's, so EXTERNAL logs in as that user. Keys are
P-256 (instant to make, accepted by every client library here). Needs the ``cryptography``
package, the ``tls`` extra: without it the broker does not start and says so in one line.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass

from ..config import ConfigError

#: The files, by role; a set with any of them missing is made afresh.
FILES = {
    "ca": "ca_certificate.pem",
    "ca_key": "ca_key.pem",
    "certfile": "server_certificate.pem",
    "keyfile": "server_key.pem",
    "client_certfile": "client_certificate.pem",
    "client_keyfile": "client_key.pem",
}
# Long enough never to expire under a development set-up; nobody should trust this CA anyway.
VALIDITY_DAYS = 3650


@dataclass(frozen=True)
class AutoFiles:
    """Absolute paths of the generated files, and whether this start made them."""

    directory: str
    ca: str
    ca_key: str
    certfile: str
    keyfile: str
    client_certfile: str
    client_keyfile: str
    created: bool

    def public(self) -> dict:
        """What node_info and the node record show: every path but the CA's key."""
        return {
            "ca": self.ca, "certfile": self.certfile, "keyfile": self.keyfile,
            "client_certfile": self.client_certfile, "client_keyfile": self.client_keyfile,
        }  # fmt: skip


def ensure_auto_files(data_dir: str, client_user: str) -> AutoFiles:
    """The files in ``<data_dir>/tls``, made first if any is missing. Raises :class:`ConfigError`
    (one line) when ``cryptography`` is not installed or the directory cannot be written."""
    directory = os.path.join(os.path.abspath(data_dir), "tls")
    paths = {role: os.path.join(directory, name) for role, name in FILES.items()}
    if all(os.path.isfile(path) for path in paths.values()):
        return AutoFiles(directory, created=False, **paths)
    try:
        from cryptography import x509  # noqa: F401
    except ImportError:
        raise ConfigError(
            "tls = auto needs the cryptography package: pip install 'amqp-broker-trio[tls]'",
            "tls",
        ) from None
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for role, pem in _generate(client_user).items():
            _write(paths[role], pem, private="key" in role)
    except OSError as exc:
        raise ConfigError(
            f"tls = auto: cannot write the certificates in {directory}: {exc.strerror or exc}", "tls"
        ) from None
    return AutoFiles(directory, created=True, **paths)


def _write(path: str, data: bytes, private: bool) -> None:
    # Keys are never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _generate(client_user: str) -> dict[str, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)  # clock skew
    hostname = socket.gethostname()

    def name(common_name: str, organization: str) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ])  # fmt: skip

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"amqp_broker throw-away CA ({hostname})", "amqp_broker")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(subject: x509.Name, usage, san: list | None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    dns = ["localhost"] + ([hostname] if hostname and hostname != "localhost" else [])
    server, server_key = leaf(
        name("localhost", "amqp_broker server"), ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName(d) for d in dns]
        + [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")],
    )
    client, client_key = leaf(
        name(client_user, "amqp_broker client"), ExtendedKeyUsageOID.CLIENT_AUTH, None
    )
    pem = serialization.Encoding.PEM
    return {
        "ca": ca.public_bytes(pem),
        "ca_key": key_pem(ca_key),
        "certfile": server.public_bytes(pem),
        "keyfile": key_pem(server_key),
        "client_certfile": client.public_bytes(pem),
        "client_keyfile": key_pem(client_key),
    }
