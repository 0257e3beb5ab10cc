"""Server-held department seals: the access list and the second approver decide before the
key is touched; every attempt is an audit event naming the document's SHA-256."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import transaction
from signing.pades import Level, PadesOptions
from signing.pdf_errors import (
    InvalidSealDefinition,
    SealApprovalRequired,
    SealForbidden,
    UnknownSeal,
)
from signing.pdf_verify import VerifyOptions, verify_pdf
from signing.seals import AUDIT_ACTION, Seal, SealRegistry, stamp_with_seal
from tests.signing.pdf.conftest import PdfPki


@pytest.fixture(scope="module")
def registry(pdf_pki: PdfPki, seal_key) -> SealRegistry:
    pem = (pdf_pki.home / "seal.pem").read_bytes()
    return SealRegistry([
        Seal(name="qh-office", key_uri="file:seal-qh-office", department="青海省人民政府办公厅",
             certificate_pem=pem, allowed=frozenset({"clerk", "secretary"})),
        Seal(name="qh-office-contracts", key_uri="file:seal-qh-office",
             department="青海省人民政府办公厅", text="合同专用章", certificate_pem=pem,
             allowed=frozenset({"clerk"}), approvers=frozenset({"director", "clerk"})),
    ])


def _events(pdf_pki: PdfPki, digest: str) -> list[tuple[str, str, dict]]:
    with transaction(pdf_pki.ctx.sessions) as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION)
                               .order_by(AuditEvent.seq)).all()
        out = []
        for row in rows:
            details = json.loads(row.details) if isinstance(row.details, str) else row.details
            if details.get("document_sha256") == digest:
                out.append((row.actor, row.outcome, details))
        return out


def test_allowed_user_stamps_and_is_audited(pdf_pki: PdfPki, registry, services,
                                            one_page) -> None:
    result = stamp_with_seal(pdf_pki.ctx, "clerk", "qh-office", one_page, registry=registry,
                             services=services)
    digest = hashlib.sha256(one_page).hexdigest()
    assert result.document_sha256 == digest
    assert result.stamped_sha256 == hashlib.sha256(result.pdf).hexdigest()
    report = verify_pdf(result.pdf, VerifyOptions(trust_roots=[pdf_pki.root]))
    assert report.valid, report.as_dict()
    assert report.signatures[0].signer_name == "青海省人民政府办公厅"
    events = _events(pdf_pki, digest)
    assert events[-1][0] == "clerk" and events[-1][1] == "success"
    assert events[-1][2]["stamped_sha256"] == result.stamped_sha256
    assert events[-1][2]["level"] == "B-LT"


def test_others_are_refused_with_403_and_audited(pdf_pki: PdfPki, registry, services) -> None:
    from tests.signing.pdf.helpers import make_pdf

    paper = make_pdf(1, title="refused")
    with pytest.raises(SealForbidden) as refused:
        stamp_with_seal(pdf_pki.ctx, "intruder", "qh-office", paper, registry=registry,
                        services=services)
    assert refused.value.http_status == 403
    assert "'intruder' may not use seal 'qh-office'" in refused.value.message
    events = _events(pdf_pki, hashlib.sha256(paper).hexdigest())
    assert events == [("intruder", "refused", {
        "document_sha256": hashlib.sha256(paper).hexdigest(),
        "department": "青海省人民政府办公厅", "error": "seal-forbidden",
        "message": refused.value.message})]
    with pytest.raises(UnknownSeal):
        stamp_with_seal(pdf_pki.ctx, "clerk", "nope", paper, registry=registry,
                        services=services)


def test_second_approver(pdf_pki: PdfPki, registry, services) -> None:
    from tests.signing.pdf.helpers import make_pdf

    paper = make_pdf(1, title="contract")
    with pytest.raises(SealApprovalRequired, match="needs a second approver"):
        stamp_with_seal(pdf_pki.ctx, "clerk", "qh-office-contracts", paper,
                        registry=registry, services=services)
    with pytest.raises(SealForbidden, match="cannot approve their own"):
        stamp_with_seal(pdf_pki.ctx, "clerk", "qh-office-contracts", paper,
                        registry=registry, approved_by="clerk", services=services)
    with pytest.raises(SealApprovalRequired, match="not an approver"):
        stamp_with_seal(pdf_pki.ctx, "clerk", "qh-office-contracts", paper,
                        registry=registry, approved_by="secretary", services=services)
    result = stamp_with_seal(pdf_pki.ctx, "clerk", "qh-office-contracts", paper,
                             registry=registry, approved_by="director", services=services,
                             options=PadesOptions(level=Level.B_T))
    assert result.approved_by == "director"
    outcomes = [(a, o) for a, o, _d in _events(pdf_pki, hashlib.sha256(paper).hexdigest())]
    assert outcomes == [("clerk", "refused")] * 3 + [("clerk", "success")]


def test_registry_from_toml(pdf_pki: PdfPki, seal_key, tmp_path) -> None:
    (tmp_path / "seal.pem").write_bytes((pdf_pki.home / "seal.pem").read_bytes())
    (tmp_path / "seals.toml").write_text(
        '[[seal]]\nname = "qh"\nkey_uri = "file:seal-qh-office"\n'
        'department = "青海省人民政府办公厅"\ncertificate = "seal.pem"\n'
        'allowed = ["clerk"]\napprovers = ["director"]\n', encoding="utf-8")
    registry = SealRegistry.from_toml(tmp_path / "seals.toml")
    assert registry.names() == ["qh"]
    assert registry.get("qh").approvers == frozenset({"director"})
    (tmp_path / "bad.toml").write_text('[[seal]]\nname = "x"\ncolour = "red"\n',
                                       encoding="utf-8")
    with pytest.raises(InvalidSealDefinition, match="unknown key"):
        SealRegistry.from_toml(tmp_path / "bad.toml")
    with pytest.raises(InvalidSealDefinition, match="access list is empty"):
        Seal(name="x", key_uri="file:x", department="办公厅",
             certificate_pem=(pdf_pki.home / "seal.pem").read_bytes(), allowed=frozenset())
