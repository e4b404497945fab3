"""Brokers serving AMQPS with ``tls = "auto"`` certificates, and client-side TLS helpers."""

from __future__ import annotations

import pytest

from amqp_broker.server.tls_auto import ensure_auto_files
from amqp_broker.testing import BrokerThread


@pytest.fixture(scope="module")
def tls_broker():
    """verify_peer without fail_if_no_peer_cert (tls = auto's default): clients with and without
    certificates are let in; the management API is on to read the listeners."""
    with BrokerThread(tls="auto", management=True) as running:
        yield running


@pytest.fixture(scope="session")
def foreign_files(tmp_path_factory):
    """A CA of its own and a client certificate for guest signed by it: what verify_peer must
    refuse."""
    return ensure_auto_files(str(tmp_path_factory.mktemp("foreign-ca")), "guest")

