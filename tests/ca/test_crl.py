"""Full and delta CRLs (ca/crl.py), checked by independent clients: the OpenSSL CLI (parse,
verify -crl_check / -crl_check_all / -use_deltas), pkilint's CRL linter and
pyhanko-certvalidator; numbering across publications and across processes on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Flask, Response, jsonify
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from sqlalchemy import delete, func, insert, select, update

import ca.crl as crl_module
from ca.crl import (
    CrlNotPublished,
    CrlRecord,
    _entries,
    current_crl,
    latest_crl,
    publish_crls,
    publish_delta,
    republish_due,
)
from ca.crl_cli import crl_group
from ca.errors import UnknownCa
from ca.issuance import CertificateRequest, issue_certificate
from ca.models import Authority, Certificate, CrlCounter, PublishedCrl
from ca.revocation import release, revoke, suspend
from ca.store import chain_der
from ca.web import ca_blueprint
from core.audit import AuditEvent
from core.db import transaction, utcnow
from core.errors import GovpkiError
from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key, write_chain
from tests.conftest import TEST_PASSPHRASE

ROOT = Path(__file__).resolve().parents[2]
LINT_CRL = str(Path(sys.executable).parent / "lint_crl")


def _issue(pki, ca: str = "officials") -> x509.Certificate:
    return issue_certificate(pki.ctx, CertificateRequest(
        ca=ca, profile="official-signing", csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN)).certificate()


def _serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)


def _by_ca(records: list[CrlRecord], ca: str, delta: bool) -> CrlRecord:
    return next(r for r in records if r.ca == ca and r.is_delta == delta)


def _verify(tmp_path: Path, pki, cert: x509.Certificate, crls: list[bytes],
            *flags: str) -> subprocess.CompletedProcess[str]:
    root, untrusted = write_chain(pki.ctx, "officials", tmp_path)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    argv = ["openssl", "verify", "-x509_strict", "-CAfile", str(root), "-untrusted",
            str(untrusted), *flags]
    for index, der in enumerate(crls):
        path = tmp_path / f"crl{index}.pem"
        path.write_bytes(_pem(der))
        argv += ["-CRLfile", str(path)]
    return subprocess.run([*argv, str(leaf)], capture_output=True, text=True, check=False)


def _reasons(der: bytes) -> dict[str, str | None]:
    """serial hex → reason name (None when the entry carries no reason code)."""
    out: dict[str, str | None] = {}
    for entry in x509.load_der_x509_crl(der):
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            reason = None
        out[format(entry.serial_number, "x")] = reason
    return out


# --- what is published -------------------------------------------------------------------------

def test_full_and_delta_parse_and_carry_the_rfc5280_extensions(pki, tmp_path) -> None:
    good, revoked, held = _issue(pki), _issue(pki), _issue(pki)
    revoke(pki.ctx, _serial(revoked), "keyCompromise", actor="test")
    suspend(pki.ctx, _serial(held), actor="test")
    records = publish_crls(pki.ctx)
    assert {(r.ca, r.is_delta) for r in records} == {
        (ca, d) for ca in ("root", "officials", "devices") for d in (False, True)}
    full, delta = _by_ca(records, "officials", False), _by_ca(records, "officials", True)
    assert delta.number == full.number + 1 and delta.base_number == full.number

    for record in (full, delta):
        path = tmp_path / f"{record.number}.der"
        path.write_bytes(record.der)
        text = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(path), "-noout",
                               "-text"], capture_output=True, text=True, check=True).stdout
        assert "X509v3 CRL Number" in text and "Issuing Distribution Point: critical" in text
        assert format(revoked.serial_number, "X") in text.replace(":", "")

    with transaction(pki.ctx.sessions) as session:
        ca_cert = x509.load_der_x509_certificate(chain_der(session, "officials")[0])
    base_url = pki.ctx.config.public_base_url
    parsed = full.crl()
    assert parsed.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    assert parsed.issuer == ca_cert.subject
    assert parsed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number \
        == full.number
    aki = parsed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    idp = parsed.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.full_name == [
        x509.UniformResourceIdentifier(f"{base_url}/crl/officials.crl")]
    freshest = parsed.extensions.get_extension_for_class(x509.FreshestCRL)
    assert not freshest.critical
    assert freshest.value[0].full_name == [
        x509.UniformResourceIdentifier(f"{base_url}/crl/officials-delta.crl")]
    with pytest.raises(x509.ExtensionNotFound):
        parsed.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert parsed.next_update_utc - parsed.last_update_utc == dt.timedelta(hours=24)
    reasons = _reasons(full.der)
    assert reasons[_serial(revoked)] == "key_compromise"
    assert reasons[_serial(held)] == "certificate_hold"
    assert _serial(good) not in reasons

    parsed_delta = delta.crl()
    assert parsed_delta.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    indicator = parsed_delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert indicator.critical and indicator.value.crl_number == full.number
    assert parsed_delta.extensions.get_extension_for_class(x509.IssuingDistributionPoint) \
        .value == idp.value  # same scope as its base (RFC 5280 §5.2.4)
    assert parsed_delta.next_update_utc - parsed_delta.last_update_utc == dt.timedelta(hours=4)
    with pytest.raises(x509.ExtensionNotFound):
        parsed_delta.extensions.get_extension_for_class(x509.FreshestCRL)
    # The root's CRL follows the root profile's crl section.
    root_full = _by_ca(records, "root", False).crl()
    assert root_full.next_update_utc - root_full.last_update_utc == dt.timedelta(hours=168)


def test_unspecified_reason_is_omitted(file_pki) -> None:
    cert = _issue(file_pki)
    revoke(file_pki.ctx, _serial(cert), actor="test")
    full = _by_ca(publish_crls(file_pki.ctx, "officials"), "officials", False)
    assert _reasons(full.der)[_serial(cert)] is None


def test_crl_numbers_increase_and_full_and_delta_share_them(pki) -> None:
    seen: list[int] = []
    for publish in (publish_crls, publish_delta, publish_crls, publish_delta):
        seen += [r.number for r in publish(pki.ctx, "devices")]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert seen[-1] - seen[0] == len(seen) - 1
    with transaction(pki.ctx.sessions) as session:
        numbers = session.scalars(select(PublishedCrl.number).join(
            Authority, Authority.id == PublishedCrl.authority_id).where(
            Authority.name == "devices")).all()
    assert len(numbers) == len(set(numbers))
    delta = latest_crl(pki.ctx, "devices", delta=True)
    assert delta is not None and delta.base_number == seen[3]  # the second full CRL


def test_every_publication_is_audited(file_pki) -> None:
    records = publish_crls(file_pki.ctx, "devices", actor="op:crl")
    with transaction(file_pki.ctx.sessions) as session:
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "ca.crl.publish",
            AuditEvent.object_id.in_([f"devices/{r.number}" for r in records]))).all()
    assert {e.object_id for e in events} == {f"devices/{r.number}" for r in records}
    assert all(e.actor == "op:crl" and e.outcome == "success" for e in events)


def test_expired_certificates_leave_the_crl(file_pki) -> None:
    cert = _issue(file_pki)
    revoke(file_pki.ctx, _serial(cert), "superseded", actor="test")
    with transaction(file_pki.ctx.sessions) as session:
        session.execute(update(Certificate).where(Certificate.serial == _serial(cert))
                        .values(not_after=utcnow() - dt.timedelta(days=1)))
    records = publish_crls(file_pki.ctx, "officials")
    assert _serial(cert) not in _reasons(_by_ca(records, "officials", False).der)
    assert _serial(cert) not in _reasons(_by_ca(records, "officials", True).der)


def test_thousands_of_entries_and_awkward_serials(file_pki) -> None:
    """Long (multi-byte length) encodings, serials with the top bit set or odd hex length."""
    serials = ["1", "80", "ff", "100", "7" + "f" * 31, "8" + "0" * 31, "a" * 40]
    serials += [secrets.token_hex(16).lstrip("0") for _ in range(3000)]
    now = utcnow()
    with transaction(file_pki.ctx.sessions) as session:
        devices = session.scalar(select(Authority.id).where(Authority.name == "devices"))
        session.execute(insert(Certificate), [{
            "authority_id": devices, "serial": s, "profile": "server-tls", "subject": "CN=x",
            "key_type": "ec-p256", "state": "issued", "tbs_der": b"", "not_before": now,
            "not_after": now + dt.timedelta(days=30), "status": "revoked", "revoked_at": now,
            "revocation_reason": "cessationOfOperation", "status_changed_at": now,
            "requested_by": "bulk-test", "created_at": now} for s in serials])
    try:
        full = _by_ca(publish_crls(file_pki.ctx, "devices"), "devices", False)
        reasons = _reasons(full.der)
        assert set(serials) <= set(reasons)
        assert {reasons[s] for s in serials} == {"cessation_of_operation"}
        assert full.entries >= len(serials)
        parsed = asn1_crl.CertificateList.load(full.der)
        assert len(parsed["tbs_cert_list"]["revoked_certificates"]) == full.entries
    finally:
        with transaction(file_pki.ctx.sessions) as session:
            session.execute(delete(Certificate).where(Certificate.requested_by == "bulk-test"))


def test_entry_encoding_after_2049_uses_generalized_time() -> None:
    out = bytearray()
    count = _entries([("1", "20500101000000", "revoked", "keyCompromise"),
                      ("2", "20491231235959", "hold", "certificateHold"),
                      ("3", "20250101000000", "good", None)], True, out)
    assert count == 3
    assert b"\x18\x0f20500101000000Z" in out and b"\x17\x0d491231235959Z" in out
    assert _entries([("3", "20250101000000", "good", None)], False, bytearray()) == 0


# --- independent checkers -------------------------------------------------------------------

def test_openssl_crl_check_rejects_revoked_accepts_good(pki, tmp_path) -> None:
    good, bad = _issue(pki), _issue(pki)
    revoke(pki.ctx, _serial(bad), "keyCompromise", actor="test")
    records = publish_crls(pki.ctx)
    officials = _by_ca(records, "officials", False).der
    rejected = _verify(tmp_path, pki, bad, [officials], "-crl_check")
    assert rejected.returncode != 0
    assert "error 23" in rejected.stderr + rejected.stdout
    assert "certificate revoked" in rejected.stderr + rejected.stdout
    accepted = _verify(tmp_path, pki, good, [officials], "-crl_check")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr

    both = [officials, _by_ca(records, "root", False).der]
    accepted = _verify(tmp_path, pki, good, both, "-crl_check_all")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    rejected = _verify(tmp_path, pki, bad, both, "-crl_check_all")
    assert "certificate revoked" in rejected.stderr + rejected.stdout
    # Without the root's CRL the intermediate cannot be checked: the root CRL is what passed.
    missing = _verify(tmp_path, pki, good, [officials], "-crl_check_all")
    assert missing.returncode != 0 and "unable to get certificate CRL" in missing.stderr


def test_openssl_use_deltas_revoked_after_full_and_released_hold(pki, tmp_path) -> None:
    late, released, good = _issue(pki), _issue(pki), _issue(pki)
    suspend(pki.ctx, _serial(released), actor="test")
    full = _by_ca(publish_crls(pki.ctx, "officials"), "officials", False)
    assert _reasons(full.der)[_serial(released)] == "certificate_hold"
    revoke(pki.ctx, _serial(late), "affiliationChanged", actor="test")
    release(pki.ctx, _serial(released), actor="test")
    delta = publish_delta(pki.ctx, "officials")[0]
    assert delta.is_delta and delta.base_number == full.number
    reasons = _reasons(delta.der)
    assert reasons[_serial(late)] == "affiliation_changed"
    assert reasons[_serial(released)] == "remove_from_crl"
    assert _serial(good) not in reasons

    crls = [full.der, delta.der]
    out = _verify(tmp_path, pki, late, [full.der], "-crl_check")
    assert out.returncode == 0, "the full CRL alone does not know yet"
    out = _verify(tmp_path, pki, late, crls, "-crl_check", "-use_deltas")
    assert out.returncode != 0 and "certificate revoked" in out.stderr + out.stdout
    out = _verify(tmp_path, pki, released, [full.der], "-crl_check")
    assert out.returncode != 0, "held in the full CRL"
    out = _verify(tmp_path, pki, released, crls, "-crl_check", "-use_deltas")
    assert out.returncode == 0, out.stdout + out.stderr
    out = _verify(tmp_path, pki, good, crls, "-crl_check", "-use_deltas")
    assert out.returncode == 0, out.stdout + out.stderr


def test_pkilint_crl_linter_finds_no_errors(file_pki, tmp_path) -> None:
    cert = _issue(file_pki)
    suspend(file_pki.ctx, _serial(cert), actor="test")
    records = publish_crls(file_pki.ctx)
    release(file_pki.ctx, _serial(cert), actor="test")
    records += publish_delta(file_pki.ctx)
    assert any("remove_from_crl" in _reasons(r.der).values() for r in records)
    for record in records:
        path = tmp_path / f"{record.ca}-{record.number}.der"
        path.write_bytes(record.der)
        result = subprocess.run([LINT_CRL, "lint", "-t", "CRL", "-p", "PKIX", "-s", "ERROR",
                                 str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0 and not result.stdout.strip(), \
            f"{record.ca} #{record.number}: {result.stdout}{result.stderr}"


def test_certvalidator_hard_fail_with_crls(file_pki) -> None:
    good, bad = _issue(file_pki), _issue(file_pki)
    revoke(file_pki.ctx, _serial(bad), "keyCompromise", actor="test")
    records = publish_crls(file_pki.ctx)
    with transaction(file_pki.ctx.sessions) as session:
        chain = [asn1_x509.Certificate.load(d) for d in chain_der(session, "officials")]
    crls = [asn1_crl.CertificateList.load(r.der) for r in records
            if r.ca in ("officials", "root")]

    def validate(cert: x509.Certificate) -> object:
        vc = ValidationContext(trust_roots=[chain[-1]], other_certs=chain[:-1], crls=crls,
                               revocation_mode="hard-fail", allow_fetching=False)
        validator = CertificateValidator(
            asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
            validation_context=vc)
        return asyncio.run(validator.async_validate_path())

    assert validate(good) is not None
    with pytest.raises(RevokedError):
        validate(bad)


# --- scheduling -----------------------------------------------------------------------------

def test_republish_due_publishes_only_when_half_the_validity_passed(file_pki, monkeypatch
                                                                    ) -> None:
    publish_crls(file_pki.ctx, "officials")
    assert republish_due(file_pki.ctx, "officials") == []
    start = utcnow()
    monkeypatch.setattr(crl_module, "utcnow", lambda: start + dt.timedelta(hours=3))
    delta_only = republish_due(file_pki.ctx, "officials")
    assert [r.is_delta for r in delta_only] == [True]
    assert republish_due(file_pki.ctx, "officials") == []
    monkeypatch.setattr(crl_module, "utcnow", lambda: start + dt.timedelta(hours=13))
    assert [r.is_delta for r in republish_due(file_pki.ctx, "officials")] == [False, True]


# --- HTTP -----------------------------------------------------------------------------------

def _client(ctx):  # type: ignore[no-untyped-def]
    app = Flask("test")
    app.config["GOVPKI_CA"] = ctx
    app.register_blueprint(ca_blueprint)

    @app.errorhandler(GovpkiError)
    def _error(exc: GovpkiError) -> tuple[Response, int]:
        response = jsonify(exc.problem())
        response.content_type = "application/problem+json"
        return response, exc.http_status

    return app.test_client()


def test_http_serves_newest_with_caching_headers(file_pki) -> None:
    client = _client(file_pki.ctx)
    publish_crls(file_pki.ctx, "officials")
    newest = latest_crl(file_pki.ctx, "officials")
    assert newest is not None
    response = client.get("/crl/officials.crl")
    assert response.status_code == 200
    assert response.content_type == "application/pkix-crl"
    assert response.data == newest.der
    assert response.last_modified == newest.this_update
    max_age = response.cache_control.max_age
    assert max_age is not None and 0 < max_age <= 24 * 3600
    etag = response.headers["ETag"]
    again = client.get("/crl/officials.crl", headers={"If-None-Match": etag})
    assert again.status_code == 304
    delta = client.get("/crl/officials-delta.crl")
    assert delta.status_code == 200
    assert x509.load_der_x509_crl(delta.data).extensions.get_extension_for_class(
        x509.DeltaCRLIndicator).value.crl_number == newest.number


def test_http_generates_on_demand_and_refuses_unknown_ca(file_pki) -> None:
    client = _client(file_pki.ctx)
    with transaction(file_pki.ctx.sessions) as session:
        devices = session.scalar(select(Authority.id).where(Authority.name == "devices"))
        last = session.scalar(select(CrlCounter.last_number).where(
            CrlCounter.authority_id == devices)) or 0
        session.execute(delete(PublishedCrl).where(PublishedCrl.authority_id == devices))
    response = client.get("/crl/devices-delta.crl")
    assert response.status_code == 200
    number = x509.load_der_x509_crl(response.data).extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number
    assert number > last  # the counter, not the stored rows, gives numbers: never reused
    assert client.get("/crl/devices.crl").status_code == 200
    for path in ("/crl/nope.crl", "/crl/nope-delta.crl"):
        missing = client.get(path)
        assert missing.status_code == 404
        assert missing.content_type == "application/problem+json"
        assert missing.json is not None and missing.json["title"] == "unknown-ca"
    with pytest.raises(UnknownCa):
        current_crl(file_pki.ctx, "nope")
    assert issubclass(CrlNotPublished, GovpkiError) and CrlNotPublished.http_status == 404


def test_cli_publish(file_pki, monkeypatch) -> None:
    from contextlib import contextmanager

    from click.testing import CliRunner

    @contextmanager
    def context():  # type: ignore[no-untyped-def]
        yield file_pki.ctx

    monkeypatch.setattr("ca.crl_cli.ca_context", context)
    runner = CliRunner()
    result = runner.invoke(crl_group, ["publish", "--ca", "devices"])
    assert result.exit_code == 0, result.output
    assert "full CRL #" in result.output and "delta CRL #" in result.output
    result = runner.invoke(crl_group, ["publish", "--ca", "devices", "--delta-only"])
    assert result.exit_code == 0 and "full CRL" not in result.output
    result = runner.invoke(crl_group, ["publish", "--ca", "devices", "--if-due"])
    assert result.exit_code == 0 and "nothing was due" in result.output
    result = runner.invoke(crl_group, ["publish", "--ca", "nope"])
    assert isinstance(result.exception, UnknownCa)


# --- several processes on one PostgreSQL ------------------------------------------------------

WORKER = """
import sys
from ca.context import CaContext
from ca.crl import publish_crls, publish_delta
ctx = CaContext.open()
for i in range(int(sys.argv[1])):
    publish = publish_crls if i % 2 == 0 else publish_delta
    for record in publish(ctx, "officials", actor="worker"):
        print(record.number, flush=True)
ctx.close()
"""


@pytest.mark.postgres
@pytest.mark.slow
def test_three_processes_never_share_a_crl_number(pg_file_pki) -> None:
    env = dict(os.environ, GOVPKI_HOME=str(pg_file_pki.home),
               GOVPKI_DATABASE_URL=pg_file_pki.ctx.config.database_url,
               GOVPKI_KEY_PASSPHRASE=TEST_PASSPHRASE.decode(), PYTHONPATH=str(ROOT))
    before = latest_crl(pg_file_pki.ctx, "officials")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, "6"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for _ in range(3)]
    numbers: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        mine = [int(n) for n in out.split()]
        assert mine == sorted(mine) and len(mine) == 9  # 3 full + delta, 3 delta
        numbers += mine
    assert len(set(numbers)) == len(numbers) == 27
    if before is not None:
        assert min(numbers) > before.number
    with transaction(pg_file_pki.ctx.sessions) as session:
        officials = session.scalar(select(Authority.id).where(Authority.name == "officials"))
        rows = session.execute(select(PublishedCrl.number, PublishedCrl.this_update).where(
            PublishedCrl.authority_id == officials).order_by(PublishedCrl.number)).all()
        assert session.scalar(select(func.max(CrlCounter.last_number)).where(
            CrlCounter.authority_id == officials)) == rows[-1].number
    # Numbers were drawn under the counter lock for the whole build: higher number, later time.
    times = [r.this_update for r in rows]
    assert times == sorted(times)
    for record_number in numbers:
        assert record_number in {r.number for r in rows}
