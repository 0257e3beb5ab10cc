"""Fixtures for PDF signing tests: a demo PKI served on loopback, keys, documents, pdfsig.

The PKI is made by the demo ceremony (SQLite + file keys), once per session, with its public
base URL on an ephemeral loopback port: certificates name that port in AIA and CRL DP, and the
same port serves govpki's OCSP responder, CRLs, CA certificates and TSA. pdfsig (poppler 22)
only calls a certificate trusted when the OCSP URL in it answers (DESIGN.md, Pitfalls), and a
fixed port (8600) could be taken by another test run on the machine.

In-process services use the very same WSGI application through
:class:`signing.pdf_revinfo.WsgiTransport`, so HTTP and in-process signing see one responder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from werkzeug.serving import make_server

from ca.ceremony import load_ceremony, run_ceremony
from ca.cli import DEMO_CEREMONY
from ca.context import CaContext, version_locations
from ca.issuance import CertificateRequest, issue_certificate
from ca.store import chain_der
from ca.web import ca_blueprint
from core import migrate
from core.config import AuditConfig, Config, KeyStoreConfig
from core.db import make_engine, transaction
from hsm.file_store import FileKeyStore
from hsm.keystore import KeyRing
from hsm.signer import SoftwareSigner
from ocsp import version_locations as ocsp_version_locations
from ocsp.wsgi import create_ocsp_app
from signing.config import TsaConfig
from signing.pades import SigningServices
from signing.pdf_revinfo import GovpkiFetcherBackend, StoreStatusSource, WsgiTransport
from signing.pdf_signer import CallableTimeStamper, SigningKey
from signing.tsa import TimeStampAuthority
from signing.tsa_wsgi import create_tsa_app
from tests import softhsm
from tests.ca.helpers import OFFICIAL_DN, make_csr
from tests.conftest import TEST_PASSPHRASE
from tests.signing.pdf.helpers import make_pdf

SEAL_DN = "CN=青海省人民政府办公厅,O=青海省人民政府办公厅,ST=青海省,C=CN"
REVIEWER_DN = "CN=李四,OU=秘书处,O=青海省人民政府办公厅,L=西宁市,ST=青海省,C=CN"
LEADER_DN = "CN=王五,OU=厅领导,O=青海省人民政府办公厅,L=西宁市,ST=青海省,C=CN"
USB_LABEL = "张三的USB Key"
USB_PIN = "pdf-usb-pin-2718"
USB_SO_PIN = "pdf-usb-so-pin-3141"


class _Router:
    """/ocsp and /tsa to their lean apps, everything else to Flask (as govpki/wsgi.py does)."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.default: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.routes.items():
            if path == prefix or path.startswith(prefix + "/"):
                return app(environ, start_response)
        return self.default(environ, start_response)


@dataclass
class PdfPki:
    ctx: CaContext
    home: Path
    base_url: str
    app: _Router
    tsa: TimeStampAuthority
    root: x509.Certificate
    officials: x509.Certificate
    devices: x509.Certificate
    nssdir: Path
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Issuing chain of officials' certificates (issuer first)."""
        return (self.officials, self.root)

    def issue(self, profile: str = "official-signing", subject: str = OFFICIAL_DN,
              key: Any = None, **extra: Any) -> tuple[Any, x509.Certificate]:
        key = key or ec.generate_private_key(ec.SECP256R1())
        ca = "devices" if profile in ("server-tls", "sso-signing", "tsa") else "officials"
        cert = issue_certificate(self.ctx, CertificateRequest(
            ca=ca, profile=profile, csr=make_csr(key), subject=subject, **extra)).certificate()
        return key, cert

    def file_key(self, profile: str = "official-signing", subject: str = OFFICIAL_DN,
                 key: Any = None, **extra: Any) -> SigningKey:
        key, cert = self.issue(profile, subject, key=key, **extra)
        return SigningKey(SoftwareSigner(f"test:{cert.serial_number:x}", key), cert,
                          self.chain, description=subject)

    def services(self, **overrides: Any) -> SigningServices:
        """In-process: the TSA called directly, revocation data from the served app via WSGI,
        the signer's status from the store."""
        transport = WsgiTransport(self.base_url, self.app, fallback=None)
        values: dict[str, Any] = {
            "timestamper": self._cache.setdefault(
                "timestamper", CallableTimeStamper(self.tsa.respond)),
            "fetcher": GovpkiFetcherBackend(transport),
            "status": StoreStatusSource(self.ctx),
        }
        values.update(overrides)
        return SigningServices(**values)

    def over_http(self) -> SigningServices:
        """A remote signer: TSA, OCSP and CRLs through the loopback socket."""
        return SigningServices.over_http(tsa_url=f"{self.base_url}/tsa")

    @property
    def root_pem(self) -> Path:
        return self.home / "root.pem"


def _build(home: Path) -> Iterator[PdfPki]:
    router = _Router()
    server = make_server("127.0.0.1", 0, router, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{home / 'govpki.sqlite3'}"
    # govpki.toml lets the CLI tests use this home as a CA host (GOVPKI_HOME=home).
    (home / "govpki.toml").write_text(
        f'database_url = "{url}"\npublic_base_url = "{base}"\n\n[tsa]\nclock_source = "none"\n',
        encoding="utf-8")
    config = Config(home=home, database_url=url, public_base_url=base,
                    keystore=KeyStoreConfig(), audit=AuditConfig(key_uri="file:audit"))
    engine = make_engine(url)
    migrate.upgrade(engine, [*version_locations(), *ocsp_version_locations()])
    engine.dispose()
    ctx = CaContext.open(config, keyring=KeyRing([FileKeyStore(home / "keys",
                                                               passphrase=TEST_PASSPHRASE)]))
    run_ceremony(ctx, load_ceremony(DEMO_CEREMONY), key_uri=lambda label: f"file:{label}",
                 actor="test")
    flask_app = Flask("pdf-tests")
    flask_app.config["GOVPKI_CA"] = ctx
    flask_app.register_blueprint(ca_blueprint)
    router.default = flask_app
    ocsp_app = create_ocsp_app(ctx, listen=False)
    router.routes["/ocsp"] = ocsp_app
    tsa = TimeStampAuthority(ctx, TsaConfig(clock_source="none"))
    router.routes["/tsa"] = create_tsa_app(None, tsa=tsa)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with transaction(ctx.sessions) as session:
        officials = [x509.load_der_x509_certificate(d) for d in chain_der(session, "officials")]
        devices = [x509.load_der_x509_certificate(d) for d in chain_der(session, "devices")]
    root = officials[-1]
    (home / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    nssdir = home / "nss"
    _nss_db(nssdir, home / "root.pem")
    try:
        yield PdfPki(ctx, home, base, router, tsa, root, officials[0], devices[0], nssdir)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        ocsp_app.close()
        ctx.close()


def _nss_db(directory: Path, root_pem: Path) -> None:
    """An NSS database trusting only our root, for pdfsig (certutil from libnss3-tools)."""
    if shutil.which("certutil") is None:
        return
    directory.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"],
                   check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{directory}", "-n", "govpki-root",
                    "-t", "CT,C,C", "-i", str(root_pem)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def pdf_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdfPki]:
    yield from _build(tmp_path_factory.mktemp("pdf-pki"))


@pytest.fixture(scope="session")
def official(pdf_pki: PdfPki) -> SigningKey:
    """An official's signing key (file key, EC P-256) and certificate."""
    return pdf_pki.file_key()


@pytest.fixture(scope="session")
def seal_key(pdf_pki: PdfPki) -> SigningKey:
    """The department seal: a key generated in the server's key store (``file:`` URI through
    the context's keyring) with a department-seal certificate."""
    uri = "file:seal-qh-office"
    signer = pdf_pki.ctx.keyring.generate(uri, "ec-p256")
    _key, cert = pdf_pki.issue("department-seal", SEAL_DN, key=signer.as_private_key())
    (pdf_pki.home / "seal.pem").write_bytes(b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (cert, *pdf_pki.chain)))
    return SigningKey(pdf_pki.ctx.keyring.get(uri), cert, pdf_pki.chain, description=uri)


@pytest.fixture(scope="session")
def services(pdf_pki: PdfPki) -> SigningServices:
    return pdf_pki.services()


@dataclass
class UsbKey:
    module: str
    label: str
    pin: str
    key: SigningKey
    token_key: Any
    cert_pem: Path


@pytest.fixture(scope="session")
def usb_key(pdf_pki: PdfPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UsbKey]:
    """An official's USB key (SoftHSM2): key generated on the token, CSR signed by it, the
    certificate issued with the official-signing profile and stored beside the key."""
    from hsm.token import open_token

    softhsm.require_softhsm()
    softhsm.init_softhsm(tmp_path_factory.mktemp("softhsm-pdf"))
    softhsm.init_token(USB_LABEL, USB_PIN, USB_SO_PIN)
    with open_token(softhsm.SOFTHSM_MODULE, USB_LABEL, USB_PIN) as usb:
        token_key = usb.generate_signing_key("ec-p256")
        csr = usb.build_csr(token_key)
        cert = issue_certificate(pdf_pki.ctx, CertificateRequest(
            ca="officials", profile="official-signing", csr=csr,
            subject=LEADER_DN)).certificate()
        usb.store_certificate(token_key, cert, chain=list(pdf_pki.chain))
        cert_pem = pdf_pki.home / "usb-cert.pem"
        cert_pem.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                      for c in (cert, *pdf_pki.chain)))
        key = SigningKey(usb.signer(token_key), cert, pdf_pki.chain, description=USB_LABEL)
        yield UsbKey(softhsm.SOFTHSM_MODULE, USB_LABEL, USB_PIN, key, token_key, cert_pem)


@pytest.fixture(scope="session")
def one_page() -> bytes:
    return make_pdf(1)


@pytest.fixture(scope="session")
def three_pages() -> bytes:
    return make_pdf(3)


@pytest.fixture(scope="session")
def fifty_pages() -> bytes:
    return make_pdf(50)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("GOVPKI_TOKEN_PIN", "GOVPKI_KEY_FILE_PASSPHRASE", "GOVPKI_PDF_PASSWORD",
                 "GOVPKI_TSA_URL", "GOVPKI_TRUST_ROOTS", "GOVPKI_PKCS11_MODULE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVPKI_KEY_PASSPHRASE", TEST_PASSPHRASE.decode())
    os.environ.pop("GOVPKI_DATABASE_URL", None)
    return monkeypatch
