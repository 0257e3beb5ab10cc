"""The request workflow end to end on every storage × key-store pair, and its refusals."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ca.revocation import status_of
from ra import operators, requests
from ra.errors import (
    Forbidden,
    InvalidTransition,
    SeparationOfDuties,
    TwoPersonRuleViolation,
    ValidationError,
)
from ra.officials import OfficialInput, create_official, subject_for
from tests.ca.helpers import make_csr, new_key, openssl_verify, write_chain
from tests.ra.conftest import ensure_admin, make_operator, unique


def _official(pki, operator, org="630100-BGT", unit="秘书科"):
    return create_official(pki.ctx.sessions, operator, OfficialInput(
        unique("QH"), "张三", org, "科员", "0971-1234567", unit))


def _issue(pki, clerk, approver, official) -> requests.RequestRecord:
    req = requests.submit(pki.ctx, clerk, official.identifier, "new-pair",
                          csr=make_csr(new_key("ec-p256")), comment="新入职")
    req = requests.approve(pki.ctx, approver, req.id, "材料齐全")
    assert req.state == "approved"
    return requests.execute(pki.ctx, approver, req.id)


def test_register_request_approve_issue_revoke(ra_pki, tmp_path) -> None:
    pki = ra_pki
    clerk = make_operator(pki, "630100", "ra-operator")
    approver = make_operator(pki, "630100", "ra-operator")
    official = _official(pki, clerk)

    done = _issue(pki, clerk, approver, official)
    assert done.state == "issued" and done.encryption_status == "pending-kmc"
    [ref] = done.issued
    record = status_of(pki.ctx, ref.serial, ref.ca)
    cert = record.certificate()
    assert cert.subject.rfc4514_string() == (
        "CN=张三,OU=秘书科,O=西宁市人民政府办公厅,L=西宁市,ST=青海省,C=CN")
    root, untrusted = write_chain(pki.ctx, ref.ca, tmp_path)
    result = openssl_verify(cert.public_bytes(Encoding.PEM), root, untrusted, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    revoke = requests.submit(pki.ctx, clerk, official.identifier, "revocation",
                             serials=[ref.serial], reason="keyCompromise", comment="丢失")
    assert revoke.required_approvals == 1
    revoke = requests.approve(pki.ctx, approver, revoke.id, "核实")
    revoke = requests.execute(pki.ctx, approver, revoke.id)
    assert revoke.state == "done"
    after = status_of(pki.ctx, ref.serial, ref.ca)
    assert after.status == "revoked" and after.revocation_reason == "keyCompromise"


def test_two_person_rule_and_transitions(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk = make_operator(pki, "632200", "ra-operator")
    first = make_operator(pki, "632200", "ra-operator")
    second = make_operator(pki, "632200", "ra-operator")
    official = _official(pki, clerk, "632200-BGS", None)

    req = requests.submit(pki.ctx, clerk, official.identifier, "new-pair",
                          csr=make_csr(new_key("ec-p256")))
    with pytest.raises(TwoPersonRuleViolation):
        requests.approve(pki.ctx, clerk, req.id)
    with pytest.raises(InvalidTransition):
        requests.execute(pki.ctx, first, req.id)
    with pytest.raises(ValidationError):
        requests.reject(pki.ctx, first, req.id, "  ")
    rejected = requests.reject(pki.ctx, first, req.id, "照片不清晰")
    assert rejected.state == "rejected" and rejected.decided_by == first.username
    with pytest.raises(InvalidTransition):
        requests.approve(pki.ctx, second, req.id)

    # Bulk revocation (more than one certificate) needs two approvers besides the submitter.
    serials = [_issue(pki, clerk, first, official).issued[0].serial for _ in range(2)]
    bulk = requests.submit(pki.ctx, clerk, official.identifier, "revocation", serials=serials)
    assert bulk.required_approvals == 2
    bulk = requests.approve(pki.ctx, first, bulk.id)
    assert bulk.state == "submitted" and bulk.approvals == (first.username,)
    with pytest.raises(TwoPersonRuleViolation):
        requests.approve(pki.ctx, first, bulk.id)
    bulk = requests.approve(pki.ctx, second, bulk.id)
    assert bulk.state == "approved"
    bulk = requests.execute(pki.ctx, second, bulk.id)
    assert bulk.state == "done"
    assert {status_of(pki.ctx, s, "officials").status for s in serials} == {"revoked"}
    with pytest.raises(InvalidTransition):
        requests.execute(pki.ctx, second, bulk.id)


def test_submission_is_checked_before_anyone_approves(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk = make_operator(pki, "632300", "ra-operator")
    official = _official(pki, clerk, "632300-BGS", None)
    stranger = _official(pki, make_operator(pki, "632500", "ra-operator"), "632500-BGS", None)
    with pytest.raises(ValidationError, match="CSR"):
        requests.submit(pki.ctx, clerk, official.identifier, "new-pair", csr=b"garbage")
    with pytest.raises(ValidationError, match="needs a CSR"):
        requests.submit(pki.ctx, clerk, official.identifier, "re-key")
    approver = make_operator(pki, "632500", "ra-operator")
    other_serial = _issue(pki, make_operator(pki, "632500", "ra-operator"), approver,
                          stranger).issued[0].serial
    # Another official's certificate cannot be named, even by an all-scoped admin.
    with pytest.raises(ValidationError, match="not issued to"):
        requests.submit(pki.ctx, ensure_admin(pki), official.identifier, "suspension",
                        serials=[other_serial])


def test_official_self_service_suspension(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk = make_operator(pki, "632600", "ra-operator")
    approver = make_operator(pki, "632600", "ra-operator")
    official = _official(pki, clerk, "632600-BGS", None)
    serial = _issue(pki, clerk, approver, official).issued[0].serial
    me = operators.add_operator(pki.ctx.sessions, ensure_admin(pki), unique("self"),
                                org_code="632600-BGS", role="official",
                                official_identifier=official.identifier)
    with pytest.raises(Forbidden):
        requests.submit(pki.ctx, me, official.identifier, "revocation", serials=[serial])
    # A lost USB key is suspended the moment the official reports it (immediate_request_kinds).
    req = requests.submit(pki.ctx, me, official.identifier, "suspension", serials=[serial],
                          comment="USB Key 丢失")
    assert req.state == "done" and req.required_approvals == 0
    assert req.decided_by == me.username and "immediate" in (req.decision_comment or "")
    assert status_of(pki.ctx, serial, "officials").status == "hold"
    with pytest.raises(InvalidTransition):
        requests.approve(pki.ctx, approver, req.id)
    # ...and revoked once an operator confirms, under the two-person rule.
    revoke = requests.submit(pki.ctx, clerk, official.identifier, "revocation",
                             serials=[serial], reason="keyCompromise", comment="确认丢失")
    assert revoke.state == "submitted"
    requests.approve(pki.ctx, approver, revoke.id)
    assert requests.execute(pki.ctx, approver, revoke.id).state == "done"
    assert status_of(pki.ctx, serial, "officials").status == "revoked"
    mine = requests.list_requests(pki.ctx, me)
    assert {r.official.identifier for r in mine.items} == {official.identifier}


def test_renewal_supersedes_the_earlier_certificate(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk = make_operator(pki, "632600", "ra-operator")
    approver = make_operator(pki, "632600", "ra-operator")
    official = _official(pki, clerk, "632600-BGS", None)
    first = _issue(pki, clerk, approver, official).issued[0]
    renewal = requests.submit(pki.ctx, clerk, official.identifier, "renewal",
                              csr=make_csr(new_key("ec-p256")), comment="到期换证")
    requests.approve(pki.ctx, approver, renewal.id)
    renewed = requests.execute(pki.ctx, approver, renewal.id)
    assert renewed.state == "issued" and renewed.last_error is None
    old = status_of(pki.ctx, first.serial, first.ca)
    assert old.status == "revoked" and old.revocation_reason == "superseded"
    new = status_of(pki.ctx, renewed.issued[0].serial, renewed.issued[0].ca)
    assert new.status == "good"


def test_executing_again_adopts_what_the_ca_signed_before_a_crash(ra_pki) -> None:
    """The CA commits a certificate before the RA records it; if the process dies between
    the two, executing the request again adopts that certificate instead of issuing a second
    one for the same request (tests/deploy kills nodes for real; here the crash is the CA
    call made without the RA's bookkeeping after it)."""
    from sqlalchemy import func, select

    from ca.issuance import CertificateRequest, issue_certificate
    from ca.models import Certificate
    from core.db import transaction

    pki = ra_pki
    clerk = make_operator(pki, "630100", "ra-operator")
    approver = make_operator(pki, "630100", "ra-operator")
    official = _official(pki, clerk)
    csr = make_csr(new_key("ec-p256"))
    req = requests.submit(pki.ctx, clerk, official.identifier, "new-pair", csr=csr)
    req = requests.approve(pki.ctx, approver, req.id)
    ref = f"{official.subscriber_ref}/request:{req.id}"
    with transaction(pki.ctx.sessions) as session:
        subject = subject_for(session, official)
    signed_before_crash = issue_certificate(pki.ctx, CertificateRequest(
        ca=req.ca, profile=req.profile, csr=csr, subject=subject, requested_by=approver.username,
        subscriber_ref=ref))
    done = requests.execute(pki.ctx, approver, req.id)
    assert done.state == "issued"
    assert [(c.ca, c.serial) for c in done.issued] == [
        (signed_before_crash.ca, signed_before_crash.serial)]
    with transaction(pki.ctx.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Certificate).where(
            Certificate.subscriber_ref == ref)) == 1


def test_subject_is_built_from_records(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk = ensure_admin(pki)
    county = create_official(pki.ctx.sessions, clerk, OfficialInput(
        unique("DT"), "马五", "630121"))
    province = create_official(pki.ctx.sessions, clerk, OfficialInput(
        unique("CZ"), "李四", "630000-CZT"))
    with pki.ctx.sessions() as session:
        assert subject_for(session, county) == (
            "CN=马五,O=大通回族土族自治县人民政府,L=西宁市,ST=青海省,C=CN")
        assert subject_for(session, province) == "CN=李四,O=青海省财政厅,ST=青海省,C=CN"


def test_three_duties_and_role_change_two_person(ra_file_pki) -> None:
    pki = ra_file_pki
    sessions = pki.ctx.sessions
    admin = ensure_admin(pki)
    security = operators.add_operator(sessions, admin, unique("sec"), org_code="630000",
                                      role="security-admin")
    security2 = operators.add_operator(sessions, admin, unique("sec"), org_code="630000",
                                       role="security-admin")
    clerk = make_operator(pki, "630000-BGT", "ra-operator")
    with pytest.raises(Forbidden):  # the CA administrator does not grant roles
        operators.grant_role(sessions, admin, clerk.username, "ca-admin")
    with pytest.raises(SeparationOfDuties):
        operators.grant_role(sessions, security, admin.username, "auditor")
    with pytest.raises(SeparationOfDuties):
        operators.grant_role(sessions, security, clerk.username, "auditor")
    granted = operators.grant_role(sessions, security, clerk.username, "ca-admin")
    assert "ca-admin" in granted.pending_roles and "ca-admin" not in granted.roles
    with pytest.raises(TwoPersonRuleViolation):
        operators.approve_role(sessions, security, clerk.username, "ca-admin")
    approved = operators.approve_role(sessions, security2, clerk.username, "ca-admin")
    assert approved.roles == {"ra-operator", "ca-admin"}
    with pytest.raises(InvalidTransition):
        operators.approve_role(sessions, security2, clerk.username, "ca-admin")
    with pytest.raises(Forbidden):  # bootstrap only while no operator exists
        operators.add_operator(sessions, None, unique("boot"), org_code="630000",
                               role="ca-admin")
