"""Issuing-CA key rollover (ca/rollover.py), with the OpenSSL CLI as the arbiter.

After a rollover, a certificate of the old generation and one of the new must each verify with
``openssl verify -crl_check`` against the CRL fetched over HTTP from the URL in its own CRL
distribution point, a revoked one of each must fail with "certificate revoked", and
``openssl ocsp -issuer <its generation's certificate>`` must verify the answer for each. Then
the old generation is retired once (with a controlled clock) its last certificate has expired.
Each storage × key-store pair gets a PKI of its own: a rollover changes the CA for everyone.
"""

from __future__ import annotations

import datetime as dt
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
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from ca.crl import latest_crl, publish_crls
from ca.issuance import CertificateRequest, issue_certificate
from ca.issuer import cached_issuer
from ca.models import Generation
from ca.revocation import revoke
from ca.rollover import retire_finished, rollover, sibling_key_uri, summaries
from ca.status import generations
from ca.store import get_authority
from ca.web import ca_blueprint
from core import migrate
from core.audit import AuditEvent
from core.db import transaction
from govpki.migrations import all_version_locations
from ocsp.signer import ensure_fresh
from ocsp.wsgi import create_ocsp_app
from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key
from tests.conftest import MATRIX, Pki, build_pki


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
    ocsp_app = create_ocsp_app(pki.ctx, listen=False)

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith("/ocsp"):
            return ocsp_app(environ, start_response)
        return flask_app(environ, start_response)

    late.app = dispatch
    return ocsp_app


@pytest.fixture(scope="module",
                params=[pytest.param(m, id=f"{m[0]}-{m[1]}",
                                     marks=[*([pytest.mark.postgres] if m[0] == "postgres"
                                              else []),
                                            *([pytest.mark.hsm] if m[1] == "softhsm" else [])])
                        for m in MATRIX])
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A demo hierarchy of its own, served over HTTP at the URL its certificates name."""
    db, keys = request.param
    token = request.getfixturevalue("softhsm_token") if keys == "softhsm" else None
    home = tmp_path_factory.mktemp(f"rollover-{db}-{keys}")
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


def issue(pki: Pki, days: int | None = None) -> x509.Certificate:
    return issue_certificate(pki.ctx, CertificateRequest(
        ca="officials", profile="official-signing", csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN, validity_days=days, requested_by="test")).certificate()


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


def openssl_verify(tmp: Path, cert: x509.Certificate, root: x509.Certificate,
                   cas: list[x509.Certificate]) -> subprocess.CompletedProcess[str]:
    """``openssl verify -crl_check`` with the CRL fetched from the certificate's own CRL DP."""
    with urllib.request.urlopen(crl_dp(cert), timeout=10) as response:
        assert response.headers["Content-Type"] == "application/pkix-crl"
        crl = x509.load_der_x509_crl(response.read())
    name = serial(cert)
    (tmp / f"{name}.crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    (tmp / f"{name}.pem").write_bytes(pem(cert))
    (tmp / "root.pem").write_bytes(pem(root))
    (tmp / "cas.pem").write_bytes(b"".join(pem(c) for c in cas))
    return subprocess.run(
        ["openssl", "verify", "-x509_strict", "-crl_check", "-CAfile", str(tmp / "root.pem"),
         "-untrusted", str(tmp / "cas.pem"), "-CRLfile", str(tmp / f"{name}.crl.pem"),
         str(tmp / f"{name}.pem")], capture_output=True, text=True, check=False, timeout=30)


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


def _certs(pki: Pki) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """(root, every generation of officials, oldest first)."""
    with transaction(pki.ctx.sessions) as session:
        root = get_authority(session, "root").certificate()
        gens = [g.certificate() for g in generations(session, "officials")]
    return root, gens


def test_rollover_old_and_new_generation_verify_with_their_own_crl_and_ocsp(
        served: Served, tmp_path: Path) -> None:
    pki, ctx = served.pki, served.pki.ctx
    old_good, old_revoked, old_short = issue(pki), issue(pki), issue(pki, days=1)
    cached_issuer(ctx, "officials")  # the 30 s cache is warm with generation 1

    result = rollover(ctx, "officials", actor="test", key_uri=label_uri(pki, "officials-ca-2"),
                      ocsp_key_uri=label_uri(pki, "officials-ocsp-2"))
    assert (result.previous_generation, result.generation) == (1, 2)
    root, (gen1, gen2) = _certs(pki)
    assert gen2.subject == gen1.subject and ski(gen2) != ski(gen1)
    assert aki(gen2) == ski(root) and result.ocsp_signer is not None
    assert aki(result.ocsp_signer.certificate()) == ski(gen2)
    # The key lives where the first one does: file key or token object.
    assert result.key_uri.split(":")[0] == label_uri(pki, "x").split(":")[0]

    # New issuance uses the new key at once, in this process (no waiting out the cache).
    new_good, new_revoked = issue(pki), issue(pki)
    assert aki(new_good) == ski(gen2) and aki(old_good) == ski(gen1)
    base = served.base
    assert crl_dp(old_good) == f"{base}/crl/officials.crl"
    assert crl_dp(new_good) == f"{base}/crl/officials/g2.crl"
    revoke(ctx, serial(old_revoked), "keyCompromise", ca="officials", actor="test")
    revoke(ctx, serial(new_revoked), "keyCompromise", ca="officials", actor="test")
    publish_crls(ctx, "officials")

    # OpenSSL decides: each certificate against the CRL its own CRL DP serves.
    for cert in (old_good, new_good):
        out = openssl_verify(tmp_path, cert, root, [gen1, gen2])
        assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
    for cert in (old_revoked, new_revoked):
        out = openssl_verify(tmp_path, cert, root, [gen1, gen2])
        assert out.returncode != 0 and "certificate revoked" in out.stdout + out.stderr
    # Each generation's CRL lists only what that key signed.
    old_crl = latest_crl(ctx, "officials")
    new_crl = latest_crl(ctx, "officials", generation=2)
    assert old_crl is not None and new_crl is not None
    assert {serial(old_revoked)} <= {format(e.serial_number, "x") for e in old_crl.crl()}
    assert serial(new_revoked) not in {format(e.serial_number, "x") for e in old_crl.crl()}
    assert [format(e.serial_number, "x") for e in new_crl.crl()] == [serial(new_revoked)]
    assert old_crl.crl().is_signature_valid(gen1.public_key())  # type: ignore[arg-type]
    assert new_crl.crl().is_signature_valid(gen2.public_key())  # type: ignore[arg-type]

    # OCSP: the old generation's answers come from its own signer, found by issuerKeyHash.
    for cert, issuer, status in ((old_good, gen1, "good"), (old_revoked, gen1, "revoked"),
                                 (new_good, gen2, "good"), (new_revoked, gen2, "revoked")):
        out = openssl_ocsp(tmp_path, base, cert, issuer, root)
        assert "Response verify OK" in out.stderr, out.stdout + out.stderr
        assert f"{tmp_path / (serial(cert) + '.pem')}: {status}" in out.stdout, out.stdout
    # A CertID under the other generation's key does not name the certificate.
    out = openssl_ocsp(tmp_path, base, old_good, gen2, root)
    assert ": unknown" in out.stdout and "Response verify OK" in out.stderr

    # The old generation's signer is renewed under the old generation, and still verifies.
    renewed = {r.generation: r for r in ensure_fresh(ctx, force=True, ca="officials",
                                                      actor="test")}
    assert set(renewed) == {1, 2}
    with transaction(ctx.sessions) as session:
        events = {e.action for e in session.scalars(select(AuditEvent).where(
            AuditEvent.object_id.in_(["officials"])))}
    assert {"ca.rollover.start", "ca.generation.create", "ca.rollover"} <= events

    # Retirement, with a controlled clock: not while one certificate of generation 1 lives.
    last = max(c.not_valid_after_utc for c in (old_good, old_revoked, old_short))
    assert retire_finished(ctx, actor="test", now=last - dt.timedelta(seconds=1)) == []
    assert next(g.unexpired for g in summaries(ctx, "officials")) >= 3
    retired = retire_finished(ctx, actor="test", now=last + dt.timedelta(seconds=1))
    assert [(r.ca, r.generation) for r in retired] == [("officials", 1)]
    # A retired generation publishes no more CRLs and its CertIDs are refused by OCSP.
    published = publish_crls(ctx, "officials")
    assert {r.generation for r in published} == {2}
    out = openssl_ocsp(tmp_path, base, old_good, gen1, root)
    assert "unauthorized" in (out.stdout + out.stderr).lower()
    out = openssl_ocsp(tmp_path, base, new_good, gen2, root)
    assert ": good" in out.stdout and "Response verify OK" in out.stderr
    # Issuance goes on under generation 2.
    assert aki(issue(pki)) == ski(gen2)
    with transaction(ctx.sessions) as session:
        gen_rows = session.scalars(select(Generation).order_by(Generation.id)).all()
        assert any(g.retired_reason == "expired" for g in gen_rows)
