"""A PKI of its own per storage × key-store pair, served over HTTP at the URL its certificates
name, and the OpenSSL CLI checks that key-generation tests (rollover, compromise) share.

A rollover changes a CA for everyone who uses the PKI, so these tests never touch the session
PKI of tests/conftest.py."""

from __future__ import annotations

import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from ca.issuance import CertificateRequest, issue_certificate
from ca.rollover import sibling_key_uri
from ca.status import generations
from ca.store import get_authority
from ca.web import ca_blueprint
from core import migrate
from core.db import transaction
from core.errors import GovpkiError
from govpki.migrations import all_version_locations
from ocsp.wsgi import create_ocsp_app
from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key
from tests.conftest import MATRIX, Pki, build_pki

MATRIX_PARAMS = [pytest.param(m, id=f"{m[0]}-{m[1]}",
                              marks=[*([pytest.mark.postgres] if m[0] == "postgres" else []),
                                     *([pytest.mark.hsm] if m[1] == "softhsm" else [])])
                 for m in MATRIX]


class _Late:
    """A WSGI app set after the socket is bound: the PKI's URLs need the port first."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@dataclass
class Served:
    pki: Pki
    base: str


def _serve(pki: Pki, late: _Late) -> Any:
    flask_app = Flask("rollover-test")
    flask_app.config["GOVPKI_CA"] = pki.ctx
    flask_app.register_blueprint(ca_blueprint)

    @flask_app.errorhandler(GovpkiError)
    def _problem(exc: GovpkiError) -> tuple[Response, int]:  # as govpki/wsgi.py maps them
        response = jsonify(exc.problem())
        response.content_type = "application/problem+json"
        return response, exc.http_status

    @flask_app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        response = jsonify({"title": exc.name, "status": exc.code})
        response.content_type = "application/problem+json"
        return response, exc.code or 500
    ocsp_app = create_ocsp_app(pki.ctx, listen=False)

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith("/ocsp"):
            return ocsp_app(environ, start_response)
        return flask_app(environ, start_response)

    late.app = dispatch
    return ocsp_app


def serve_own_pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  db: str, keys: str) -> Iterator[Served]:
    """A demo hierarchy of its own, served over HTTP at the URL its certificates name."""
    token = request.getfixturevalue("softhsm_token") if keys == "softhsm" else None
    home = tmp_path_factory.mktemp(f"gen-{db}-{keys}")
    url = request.getfixturevalue("pg_databases").create() if db == "postgres" \
        else f"sqlite:///{home / 'govpki.sqlite3'}"
    late = _Late()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    pki = build_pki(home, url, keys, token, public_base_url=base)
    migrate.upgrade(pki.ctx.engine, all_version_locations())
    ocsp_app = _serve(pki, late)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Served(pki, base)
    server.shutdown()
    server.server_close()
    ocsp_app.close()
    pki.ctx.close()


def label_uri(pki: Pki, label: str) -> str:
    """A key beside the CA's first key; labels carry the PKI's name, since the SoftHSM2
    token is shared by the whole session."""
    with transaction(pki.ctx.sessions) as session:
        first = generations(session, "officials")[0].key_uri
    return sibling_key_uri(first, f"{pki.home.name}-{label}")


def issue(pki: Pki, days: int | None = None, *, profile: str = "official-signing",
          subscriber_ref: str | None = None) -> x509.Certificate:
    return issue_certificate(pki.ctx, CertificateRequest(
        ca="officials", profile=profile, csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN, validity_days=days, requested_by="test",
        subscriber_ref=subscriber_ref)).certificate()


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def crl_dp(cert: x509.Certificate) -> str:
    dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    name = dps[0].full_name
    assert name is not None
    return str(name[0].value)


def ski(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def aki(cert: x509.Certificate) -> bytes | None:
    return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value \
        .key_identifier


def fetch_crl(cert: x509.Certificate) -> x509.CertificateRevocationList:
    """The CRL at the URL in the certificate's CRL distribution point, over HTTP."""
    with urllib.request.urlopen(crl_dp(cert), timeout=10) as response:
        assert response.headers["Content-Type"] == "application/pkix-crl"
        return x509.load_der_x509_crl(response.read())


def openssl_verify(tmp: Path, cert: x509.Certificate, root: x509.Certificate,
                   cas: list[x509.Certificate], *, whole_chain: bool = False
                   ) -> subprocess.CompletedProcess[str]:
    """``openssl verify -crl_check`` with the CRL fetched from the certificate's own CRL DP;
    ``whole_chain``: ``-crl_check_all`` with the CRL of every CA certificate on the path too
    (each fetched from the CRL DP of the certificate it speaks for)."""
    name = serial(cert)
    crls = [fetch_crl(cert)]
    if whole_chain:
        issuer = next(c for c in cas if ski(c) == aki(cert))
        crls.append(fetch_crl(issuer))
    for index, crl in enumerate(crls):
        (tmp / f"{name}.{index}.crl.pem").write_bytes(
            crl.public_bytes(serialization.Encoding.PEM))
    (tmp / f"{name}.pem").write_bytes(pem(cert))
    (tmp / "root.pem").write_bytes(pem(root))
    (tmp / "cas.pem").write_bytes(b"".join(pem(c) for c in cas))
    argv = ["openssl", "verify", "-x509_strict",
            "-crl_check_all" if whole_chain else "-crl_check",
            "-CAfile", str(tmp / "root.pem"), "-untrusted", str(tmp / "cas.pem")]
    for index in range(len(crls)):
        argv += ["-CRLfile", str(tmp / f"{name}.{index}.crl.pem")]
    return subprocess.run([*argv, str(tmp / f"{name}.pem")], capture_output=True, text=True,
                          check=False, timeout=30)


def openssl_ocsp(tmp: Path, base: str, cert: x509.Certificate, issuer: x509.Certificate,
                 root: x509.Certificate) -> subprocess.CompletedProcess[str]:
    name = serial(cert)
    (tmp / f"{name}.pem").write_bytes(pem(cert))
    (tmp / f"issuer-{name}.pem").write_bytes(pem(issuer))
    (tmp / "root.pem").write_bytes(pem(root))
    return subprocess.run(
        ["openssl", "ocsp", "-issuer", str(tmp / f"issuer-{name}.pem"), "-cert",
         str(tmp / f"{name}.pem"), "-url", f"{base}/ocsp", "-CAfile", str(tmp / "root.pem"),
         "-verify_other", str(tmp / f"issuer-{name}.pem"), "-no_nonce", "-resp_text",
         "-timeout", "10"], capture_output=True, text=True, check=False, timeout=30)


def ca_certs(pki: Pki) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """(root, every generation of officials, oldest first)."""
    with transaction(pki.ctx.sessions) as session:
        root = get_authority(session, "root").certificate()
        gens = [g.certificate() for g in generations(session, "officials")]
    return root, gens


