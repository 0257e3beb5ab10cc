"""One-time enrollment codes and API tokens: what authenticates a USB-key tool and a client."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from core.db import transaction
from ra import api_tokens, enrollment, models, requests
from ra.errors import (
    AuthenticationFailed,
    EnrollmentRefused,
    Forbidden,
    TwoPersonRuleViolation,
    ValidationError,
)
from ra.officials import OfficialInput, create_official
from tests.ca.helpers import make_csr, new_key
from tests.ra.conftest import make_operator, unique


def _setup(pki, org="632800"):
    clerk = make_operator(pki, org, "ra-operator")
    approver = make_operator(pki, org, "ra-operator")
    official = create_official(pki.ctx.sessions, clerk, OfficialInput(
        unique("HX"), "王五", f"{org}-BGS", "科员"))
    return clerk, approver, official


def _requests(pki) -> int:
    with transaction(pki.ctx.sessions) as session:
        return session.scalar(select(func.count()).select_from(models.Request)) or 0


def test_enroll_with_a_code_then_fetch_the_certificate(ra_pki) -> None:
    pki = ra_pki
    clerk, approver, official = _setup(pki)
    code, record = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
    assert len(code) == 29 and code.count("-") == 4 and record.used_at is None
    key = new_key("ec-p256")
    req = enrollment.redeem_enrollment_code(pki.ctx, code.lower().replace("-", " "),
                                            make_csr(key), client="test")
    assert req.state == "submitted" and req.submitted_by == clerk.username
    status = enrollment.enrollment_status(pki.ctx, code, req.id)
    assert status.state == "submitted" and status.certificate_pem is None
    with pytest.raises(EnrollmentRefused, match="already used"):
        enrollment.redeem_enrollment_code(pki.ctx, code, make_csr(key))
    # The operator who handed out the code initiated the request: a second one approves.

    with pytest.raises(TwoPersonRuleViolation):
        requests.approve(pki.ctx, clerk, req.id)
    requests.approve(pki.ctx, approver, req.id)
    requests.execute(pki.ctx, approver, req.id)
    status = enrollment.enrollment_status(pki.ctx, code, req.id)
    assert status.state == "issued" and status.certificate_pem is not None
    cert = x509.load_pem_x509_certificate(status.certificate_pem.encode())
    raw = PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(Encoding.DER, raw) == \
        key.public_key().public_bytes(Encoding.DER, raw)
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in status.chain_pem]
    assert chain[0].subject == cert.issuer and chain[-1].subject == chain[-1].issuer
    with pytest.raises(EnrollmentRefused, match="does not give access"):
        enrollment.enrollment_status(pki.ctx, code, req.id + 1)


def test_refused_codes_change_nothing(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk, approver, official = _setup(pki)
    before = _requests(pki)
    with pytest.raises(AuthenticationFailed, match="unknown enrollment code"):
        enrollment.redeem_enrollment_code(pki.ctx, "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE",
                                          make_csr(new_key("ec-p256")))
    code, _ = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
    with pytest.raises(ValidationError, match="CSR"):
        enrollment.redeem_enrollment_code(pki.ctx, code, b"not a csr")
    assert _requests(pki) == before
    # The refused CSR released the claim: the official can retry with the same code.
    req = enrollment.redeem_enrollment_code(pki.ctx, code, make_csr(new_key("ec-p256")))
    assert _requests(pki) == before + 1
    requests.reject(pki.ctx, approver, req.id, "身份信息不符")
    status = enrollment.enrollment_status(pki.ctx, code, req.id)
    assert status.state == "rejected" and "身份信息不符" in status.message

    expired, record = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
    with transaction(pki.ctx.sessions) as session:
        session.execute(update(models.EnrollmentCode).where(
            models.EnrollmentCode.id == record.id).values(
            expires_at=record.created_at - dt.timedelta(seconds=1)))
    with pytest.raises(EnrollmentRefused, match="expired"):
        enrollment.redeem_enrollment_code(pki.ctx, expired, make_csr(new_key("ec-p256")))
    # A newer code retires older unused ones.
    older, _ = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
    enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
    with pytest.raises(EnrollmentRefused, match="expired"):
        enrollment.redeem_enrollment_code(pki.ctx, older, make_csr(new_key("ec-p256")))
    assert _requests(pki) == before + 1


def test_codes_only_for_officials_in_scope(ra_file_pki) -> None:
    pki = ra_file_pki
    _clerk, _approver, official = _setup(pki)
    outsider = make_operator(pki, "630100", "ra-operator")
    with pytest.raises(Forbidden):
        enrollment.create_enrollment_code(pki.ctx, outsider, official.identifier)
    with pytest.raises(ValidationError):
        enrollment.create_enrollment_code(pki.ctx, _clerk, official.identifier,
                                          kind="revocation")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(code=st.text(max_size=80))
def test_any_typed_code_is_refused_cleanly(ra_file_pki, code: str) -> None:
    with pytest.raises((AuthenticationFailed, EnrollmentRefused)):
        enrollment.redeem_enrollment_code(ra_file_pki.ctx, code, b"x")


def test_api_tokens_authenticate_until_revoked_or_expired(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk, approver, _ = _setup(pki)
    token, record = api_tokens.create_api_token(pki.ctx, clerk, clerk.username, "批量脚本")
    assert token.startswith("gp_") and record.prefix == token[:10]
    assert api_tokens.authenticate_api_token(pki.ctx, token).id == clerk.id
    with pytest.raises(Forbidden):
        api_tokens.create_api_token(pki.ctx, approver, clerk.username, "not mine")
    with transaction(pki.ctx.sessions) as session:
        stored = session.scalars(select(models.ApiToken.token_hash)).all()
    assert token not in stored
    api_tokens.revoke_api_token(pki.ctx, clerk, record.id)
    with pytest.raises(AuthenticationFailed):
        api_tokens.authenticate_api_token(pki.ctx, token)
    short, rec2 = api_tokens.create_api_token(pki.ctx, clerk, clerk.username, "短期", days=1)
    with transaction(pki.ctx.sessions) as session:
        session.execute(update(models.ApiToken).where(models.ApiToken.id == rec2.id)
                        .values(expires_at=rec2.created_at))
    with pytest.raises(AuthenticationFailed):
        api_tokens.authenticate_api_token(pki.ctx, short)
    with pytest.raises(AuthenticationFailed):
        api_tokens.authenticate_api_token(pki.ctx, "gp_" + "x" * 43)
