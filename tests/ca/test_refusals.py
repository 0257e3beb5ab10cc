"""Bad input: each refused with a clear, specific error; nothing stored but the audit record."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from ca import issuance
from ca.ceremony import parse_ceremony, run_ceremony
from ca.errors import (
    CsrSignatureInvalid,
    InvalidCsr,
    IssuerUnavailable,
    PolicyViolation,
    UnknownCa,
)
from ca.issuance import CertificateRequest, issue_certificate, parse_csr
from ca.models import Certificate
from ca.revocation import revoke
from core.audit import AuditEvent
from core.db import transaction
from policies.errors import ProfileNotFound, SubjectRuleViolation
from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key

GOOD_CSR = make_csr(new_key("ec-p256"))


def _counts(pki) -> tuple[int, int]:
    with transaction(pki.ctx.sessions) as session:
        certs = session.scalar(select(func.count()).select_from(Certificate))
        refusals = session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.outcome == "refused"))
    return certs or 0, refusals or 0


def _tampered_signature(csr_pem: bytes) -> bytes:
    from cryptography import x509

    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature BIT STRING
    return bytes(der)


BAD_REQUESTS = {
    "garbage-csr": (dict(csr=b"this is not a CSR"), InvalidCsr, "does not parse"),
    "truncated-csr": (dict(csr=GOOD_CSR[: len(GOOD_CSR) // 2]), InvalidCsr, "does not parse"),
    "empty-csr": (dict(csr=b""), InvalidCsr, "bytes"),
    "bad-signature-csr": (dict(csr=_tampered_signature(GOOD_CSR)), CsrSignatureInvalid,
                          "proof of possession"),
    "rsa-1024": (dict(csr=make_csr(new_key("rsa-1024"))), PolicyViolation, "RSA-1024"),
    "unknown-profile": (dict(profile="no-such-profile"), ProfileNotFound, "no-such-profile"),
    "unknown-ca": (dict(ca="nowhere"), UnknownCa, "nowhere"),
    "national-id-in-subject": (dict(subject="CN=张三 630102199003071234,O=青海省人民政府办公厅,"
                                    "ST=青海省,C=CN"), SubjectRuleViolation, "CN"),
    "foreign-country": (dict(subject="CN=张三,O=青海省人民政府办公厅,ST=青海省,C=US"),
                        SubjectRuleViolation, "C"),
    "missing-organisation": (dict(subject="CN=张三,ST=青海省,C=CN"), SubjectRuleViolation, "O"),
    "validity-beyond-profile": (dict(validity_days=100000), PolicyViolation, "validity"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_refused_and_nothing_stored(pki, case) -> None:
    overrides, error, words = BAD_REQUESTS[case]
    fields = dict(ca="officials", profile="official-signing", csr=GOOD_CSR, subject=OFFICIAL_DN,
                  requested_by="tester")
    fields.update(overrides)
    certs, refusals = _counts(pki)
    with pytest.raises(error) as info:
        issue_certificate(pki.ctx, CertificateRequest(**fields))
    assert words.lower() in info.value.message.lower()
    assert "Traceback" not in info.value.message
    after_certs, after_refusals = _counts(pki)
    assert after_certs == certs
    assert after_refusals == refusals + 1
    with transaction(pki.ctx.sessions) as session:
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert last is not None and last.outcome == "refused"
    assert "630102199003071234" not in last.object_id + last.details  # never in the log either


def test_encryption_profile_refuses_ec_keys(file_pki) -> None:
    with pytest.raises(PolicyViolation, match="does not allow ec-p256"):
        issue_certificate(file_pki.ctx, CertificateRequest(
            ca="officials", profile="official-encryption", csr=make_csr(new_key("ec-p256")),
            subject=OFFICIAL_DN))


EXTRA_CA = """
authorities:
  - name: {name}
    parent: root
    profile: issuing-ca-officials
    key: {{label: {name}-key, type: ec-p256}}
    subject: CN=测试签发CA {name},O=青海省人民政府办公厅,ST=青海省,C=CN
    validity_days: {days}
"""


def _extra_ca(pki, name: str, days: int = 365) -> str:
    spec = parse_ceremony(EXTRA_CA.format(name=name, days=days), "extra")
    prefix = pki.ctx.config.audit.key_uri.rsplit("audit", 1)[0]
    result = run_ceremony(pki.ctx, spec, key_uri=lambda label: prefix + label, actor="tester")
    return result.authorities[name].serial


def test_revoked_issuer_refused(pki) -> None:
    name = f"rev-{pki.db}-{pki.keys}"
    serial = _extra_ca(pki, name)
    issue_certificate(pki.ctx, CertificateRequest(
        ca=name, profile="official-signing", csr=GOOD_CSR, subject=OFFICIAL_DN))
    revoke(pki.ctx, serial, "cACompromise", ca="root", actor="tester")
    certs, _ = _counts(pki)
    with pytest.raises(IssuerUnavailable, match="revoked"):
        issue_certificate(pki.ctx, CertificateRequest(
            ca=name, profile="official-signing", csr=GOOD_CSR, subject=OFFICIAL_DN))
    assert _counts(pki)[0] == certs


def test_expired_issuer_refused(file_pki, monkeypatch) -> None:
    name = "short-lived"
    _extra_ca(file_pki, name, days=2)
    later = issuance.utcnow() + dt.timedelta(days=3)
    monkeypatch.setattr(issuance, "utcnow", lambda: later)  # freeze time, not crypto
    with pytest.raises(IssuerUnavailable, match="not valid now"):
        issue_certificate(file_pki.ctx, CertificateRequest(
            ca=name, profile="official-signing", csr=GOOD_CSR, subject=OFFICIAL_DN))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_parse_csr_arbitrary_bytes_only_raise_csr_errors(data: bytes) -> None:
    try:
        parse_csr(data)
    except (InvalidCsr, CsrSignatureInvalid):
        pass


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_parse_csr_single_byte_mutations(position: int, flip: int) -> None:
    der = bytearray(_DER_CSR)
    der[position % len(der)] ^= flip
    try:
        csr = parse_csr(bytes(der))
    except (InvalidCsr, CsrSignatureInvalid):
        return
    assert csr.is_signature_valid


_DER_CSR = make_csr(new_key("ec-p256"), encoding=serialization.Encoding.DER)
