"""Issuance on the full matrix: every profile passes three independent checkers."""

from __future__ import annotations

import asyncio

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from sqlalchemy import select

from ca.issuance import CertificateRequest, issue_certificate
from ca.models import Certificate
from ca.store import chain_der, find_certificate
from core.audit import AuditEvent
from core.db import transaction
from policies.profiles import get_profile, load_profiles
from tests.ca.helpers import (
    OFFICIAL_DN,
    PROFILE_CASES,
    make_csr,
    new_key,
    openssl_verify,
    pkilint_cli,
    write_chain,
)


def test_package_exports_the_python_api() -> None:
    import ca

    assert ca.issue_certificate is issue_certificate
    assert callable(ca.revoke) and callable(ca.issue_certificates)


def test_every_shipped_profile_has_a_case() -> None:
    assert set(load_profiles()) - {"root-ca", "issuing-ca-officials", "issuing-ca-devices"} \
        == set(PROFILE_CASES)


@pytest.mark.parametrize("profile_name", sorted(PROFILE_CASES))
def test_profile_passes_openssl_pkilint_certvalidator(pki, profile_name, tmp_path) -> None:
    ca, subject, extra = PROFILE_CASES[profile_name]
    profile = get_profile(profile_name)
    key_type = profile.key_types[0]
    issued = issue_certificate(pki.ctx, CertificateRequest(
        ca=ca, profile=profile_name, csr=make_csr(new_key(key_type)), subject=subject,
        requested_by="tester", **extra))
    cert = issued.certificate()
    pem = cert.public_bytes(serialization.Encoding.PEM)

    root, untrusted = write_chain(pki.ctx, ca, tmp_path)
    result = openssl_verify(pem, root, untrusted, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    lint = pkilint_cli(pem, tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    with transaction(pki.ctx.sessions) as session:
        chain = chain_der(session, ca)
    chain_objs = [asn1_x509.Certificate.load(d) for d in chain]
    vc = ValidationContext(trust_roots=[chain_objs[-1]], other_certs=chain_objs[:-1],
                           allow_fetching=False, revocation_mode="soft-fail")
    path = asyncio.run(CertificateValidator(asn1_x509.Certificate.load(issued.der),
                                            validation_context=vc).async_validate_path())
    assert path.pkix_len == len(chain)  # leaf + intermediates; the root is the anchor

    assert cert.serial_number.bit_length() > 64
    assert cert.serial_number > 0


def test_subject_comes_from_subscriber_record_not_csr(pki) -> None:
    issued = issue_certificate(pki.ctx, CertificateRequest(
        ca="officials", profile="official-signing",
        csr=make_csr(new_key("ec-p256"), cn="Administrator"), subject=OFFICIAL_DN))
    cert = issued.certificate()
    assert cert.subject.rfc4514_string() == OFFICIAL_DN
    parsed = asn1_x509.Certificate.load(issued.der)
    rdns = parsed["tbs_certificate"]["subject"].chosen
    kinds = {rdn[0]["type"].native: rdn[0]["value"].name for rdn in rdns}
    assert kinds["country_name"] == "printable_string"
    assert kinds["common_name"] == "utf8_string"
    assert parsed["tbs_certificate"]["subject"].native["common_name"] == "张三"
    # order C, ST, L, O, OU, CN
    assert [rdn[0]["type"].native for rdn in rdns] == [
        "country_name", "state_or_province_name", "locality_name", "organization_name",
        "organizational_unit_name", "common_name"]


def test_validity_clipped_to_issuer_and_row_recorded(pki) -> None:
    issued = issue_certificate(pki.ctx, CertificateRequest(
        ca="officials", profile="official-signing", csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN, requested_by="tester", subscriber_ref="official-42"))
    with transaction(pki.ctx.sessions) as session:
        record = find_certificate(session, issued.serial, "officials")
        row = session.scalar(select(Certificate).where(Certificate.id == record.id))
        assert row is not None
        assert row.state == "issued"
        assert row.certificate_der == issued.der
        assert row.tbs_der == issued.certificate().tbs_certificate_bytes
        actions = session.scalars(select(AuditEvent.action).where(
            AuditEvent.object_id == f"officials/{issued.serial}")).all()
    assert actions == ["ca.issue"]  # the pending row is the reservation record
    issuer = x509.load_der_x509_certificate(chain_der_for(pki, "officials")[0])
    assert issued.certificate().not_valid_after_utc <= issuer.not_valid_after_utc


def chain_der_for(pki, ca: str) -> list[bytes]:
    with transaction(pki.ctx.sessions) as session:
        return chain_der(session, ca)


def test_rsa_and_ec_subject_keys_get_key_usage_by_type(pki) -> None:
    """pkilint refuses keyEncipherment on EC keys: key usage must follow the key type."""
    profile = get_profile("server-tls")
    for key_type in ("rsa-2048", "ec-p256"):
        if not profile.allows_key_type(key_type):
            continue
        issued = issue_certificate(pki.ctx, CertificateRequest(
            ca="devices", profile="server-tls", csr=make_csr(new_key(key_type)),
            subject="CN=ra.gov.qh,O=青海省人民政府办公厅,ST=青海省,C=CN", san_dns=("ra.gov.qh",)))
        ku = issued.certificate().extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_encipherment is key_type.startswith("rsa")


def test_duplicate_serial_under_one_issuer_is_refused_by_the_database(pki) -> None:
    from sqlalchemy.exc import IntegrityError

    issued = issue_certificate(pki.ctx, CertificateRequest(
        ca="officials", profile="official-signing", csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN))
    with transaction(pki.ctx.sessions) as session:
        row = session.scalar(select(Certificate).where(Certificate.serial == issued.serial))
        assert row is not None
        clone = {c.name: getattr(row, c.name) for c in Certificate.__table__.columns
                 if c.name != "id"}
    with pytest.raises(IntegrityError), transaction(pki.ctx.sessions) as session:
        session.add(Certificate(**clone))


def test_batch_issuance_reports_each_request_and_links_each_event(pki) -> None:
    from ca.errors import InvalidCsr
    from ca.issuance import issue_certificates
    from core.audit import verify_chain

    good = [CertificateRequest(ca="officials", profile="official-signing",
                               csr=make_csr(new_key("ec-p256")), subject=OFFICIAL_DN,
                               subscriber_ref=f"roster-{i}") for i in range(5)]
    bad = CertificateRequest(ca="officials", profile="official-signing", csr=b"junk",
                             subject=OFFICIAL_DN, subscriber_ref="roster-bad")
    results = issue_certificates(pki.ctx, [*good[:2], bad, *good[2:]])
    assert isinstance(results[2], InvalidCsr)
    issued = [r for i, r in enumerate(results) if i != 2]
    assert len({r.serial for r in issued}) == 5
    with transaction(pki.ctx.sessions) as session:
        for r in issued:
            record = find_certificate(session, r.serial, "officials")
            assert record.state == "issued" and record.certificate_der == r.der
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.object_id.in_([f"officials/{r.serial}" for r in issued]))).all()
        assert len(events) == 5
        refused = session.scalars(select(AuditEvent).where(
            AuditEvent.object_id == "roster-bad")).all()
        assert [e.outcome for e in refused] == ["refused"]
        key = pki.ctx.keyring.get(pki.ctx.config.audit.key_uri).public_key()
        report = verify_chain(session, pki.home / "no-checkpoints.jsonl", key)
    chain_problems = [p for p in report.problems if "checkpoint" not in p]
    assert chain_problems == []
