"""OCSP fixtures: the session PKI with ocsp/'s table added, responders, and a loopback server.

The shared ``pki`` fixtures (tests/conftest.py) run only the core and ca migrations; ocsp's are
applied here, as the composition root will in production.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from werkzeug.serving import make_server

from ca.issuance import CertificateRequest, issue_certificate
from ca.store import chain_der
from core import migrate
from core.db import transaction
from govpki.migrations import all_version_locations
from ocsp.responder import OcspResponder
from ocsp.wsgi import create_ocsp_app
from tests.ca.helpers import OFFICIAL_DN, SERVER_DN, make_csr, new_key

_migrated: set[str] = set()


def with_ocsp_tables(pki):  # type: ignore[no-untyped-def]
    if pki.id not in _migrated:
        migrate.upgrade(pki.ctx.engine, all_version_locations())
        _migrated.add(pki.id)
    return pki


@pytest.fixture
def opki(pki):  # type: ignore[no-untyped-def]
    """The full storage × key-store matrix, with ocsp's table."""
    return with_ocsp_tables(pki)


@pytest.fixture
def ofile_pki(file_pki):  # type: ignore[no-untyped-def]
    return with_ocsp_tables(file_pki)


@pytest.fixture
def opg_pki(pg_file_pki):  # type: ignore[no-untyped-def]
    return with_ocsp_tables(pg_file_pki)


def issue(pki, ca: str = "officials") -> x509.Certificate:  # type: ignore[no-untyped-def]
    profile = "official-signing" if ca == "officials" else "server-tls"
    extra = {} if ca == "officials" else {"san_dns": ("ra.gov.qh",)}
    cert = issue_certificate(pki.ctx, CertificateRequest(
        ca=ca, profile=profile, csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN if ca == "officials" else SERVER_DN,
        **extra))
    return cert.certificate()


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_pems(pki, directory: Path, ca: str = "officials") -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """root.pem, issuer.pem (the issuing CA) for openssl ocsp."""
    with transaction(pki.ctx.sessions) as session:
        chain = [x509.load_der_x509_certificate(d) for d in chain_der(session, ca)]
    paths = {"root": directory / "root.pem", "issuer": directory / f"{ca}.pem"}
    paths["root"].write_bytes(pem(chain[-1]))
    paths["issuer"].write_bytes(pem(chain[0]))
    return paths


class LoopbackServer:
    """create_ocsp_app on a real socket (werkzeug's threaded server, which sets RAW_URI)."""

    def __init__(self, app, port: int = 0) -> None:  # type: ignore[no-untyped-def]
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ocsp"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def responder(ofile_pki) -> OcspResponder:  # type: ignore[no-untyped-def]
    return OcspResponder(ofile_pki.ctx)


@pytest.fixture
def server(ofile_pki) -> Iterator[LoopbackServer]:  # type: ignore[no-untyped-def]
    app = create_ocsp_app(ofile_pki.ctx, listen=False)
    srv = LoopbackServer(app)
    yield srv
    srv.close()
    app.close()
