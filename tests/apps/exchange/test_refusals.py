"""Bad input, each a clear typed error, an audit event, and nothing stored half-way: a
classified document, tampered ciphertext (in storage, and sealed by a dishonest sender), a
package signed by a revoked seal, recipients without a valid encryption certificate, a
duplicate document number, oversized attachments, receipts for packages never received,
forged receipts, steps out of order, and actors outside their organisation."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from sqlalchemy import select, update

from apps.exchange import models, org_keys, service
from apps.exchange.errors import (
    ClassifiedRefused,
    DuplicateDocumentNumber,
    Forbidden,
    InvalidTransition,
    MessageIdConflict,
    NotReceived,
    OrgKeyMissing,
    PackageTooLarge,
    ReceiptInvalid,
    RecipientKeyInvalid,
    SignatureInvalid,
    TamperedPackage,
    ValidationError,
)
from apps.exchange.header import OrgName
from apps.exchange.package import (
    DocumentFile,
    SealKey,
    build_package,
    package_der,
    parse_package,
)
from apps.exchange.policy import get_policy, policy_from_mapping
from apps.exchange.receipts import make_receipt
from ca.revocation import revoke
from core.audit import AuditEvent
from core.db import transaction
from tests.apps.exchange.conftest import (
    HAIBEI,
    PROVINCE,
    XINING,
    clerks,
    new_message_id,
    request,
    row_counts,
)
from tests.ra.conftest import make_operator

HUANGNAN, HAINAN, GUOLUO, YUSHU = "632300", "632500", "632600", "632700"


def refusals(pki, action: str, object_id: str | None = None) -> list[dict]:
    with transaction(pki.ctx.sessions) as session:
        query = select(AuditEvent).where(AuditEvent.action == action,
                                         AuditEvent.outcome == "refused")
        if object_id is not None:
            query = query.where(AuditEvent.object_id == object_id)
        return [e.details_dict() for e in session.scalars(query.order_by(AuditEvent.seq))]


def test_a_classified_document_is_refused_and_the_refusal_audited(exchange_file_pki) -> None:
    pki = exchange_file_pki
    team = clerks(pki)
    before = row_counts(pki)
    for level in ("秘密", "机密", "绝密"):
        req = request(classification=level)
        with pytest.raises(ClassifiedRefused, match=f"classified {level}.*only 非密"):
            service.send(pki.ctx, team.province, req)
        [event] = refusals(pki, "exchange.send", req.number)
        assert event["error"] == "exchange-classified" and event["classification"] == level
    with pytest.raises(ValidationError, match="classification must be one of"):
        service.send(pki.ctx, team.province, request(classification="内部"))
    assert row_counts(pki) == before


def test_tampered_ciphertext_in_storage_is_refused(exchange_pki) -> None:
    pki = exchange_pki
    team = clerks(pki)
    sent = service.send(pki.ctx, team.province, request())
    with transaction(pki.ctx.sessions) as session:
        row = session.scalar(select(models.Package).where(
            models.Package.message_id == sent.message_id))
        assert row is not None
        damaged = bytearray(row.envelope)
        damaged[-20] ^= 0x01
        session.execute(update(models.Package).where(models.Package.id == row.id)
                        .values(envelope=bytes(damaged)))
    receipts_before = row_counts(pki)[2]
    with pytest.raises(TamperedPackage, match="not the one its signed header names"):
        service.open_document(pki.ctx, team.xining, sent.message_id)
    assert refusals(pki, "exchange.open", sent.message_id)[-1]["error"] == "exchange-tampered"
    assert row_counts(pki)[2] == receipts_before
    [delivery] = service.status(pki.ctx, team.xining, sent.message_id).deliveries
    assert delivery.transport_state == "fetched"  # fetched, never acknowledged
    with pytest.raises(NotReceived):
        service.receipt(pki.ctx, team.xining, sent.message_id, "signed-for")


def _sealed_by(pki, sender: str, body_change=None, policy=None, seal: SealKey | None = None,
               message_id: str | None = None) -> bytes:
    """A package built directly with ``sender``'s seal (as a department's own system would),
    optionally with its ciphertext changed and the header re-sealed over the changed bytes
    (a dishonest or broken sender: the hub cannot tell, the recipient must)."""
    policy = policy or get_policy()
    req = request(issuer=sender, main=(XINING,), copy=())
    draft = service._draft(pki.ctx, dataclasses.replace(req, message_id=message_id))
    certificates = org_keys.encryption_certificates(pki.ctx, [XINING])
    seal = seal or org_keys.seal_key(pki.ctx, sender, policy)
    built = build_package(draft, policy, seal, certificates, receipts_to="https://hub/x")
    if body_change is None:
        return built.package
    envelope = body_change(built.envelope)
    header = dataclasses.replace(built.header,
                                 envelope_digest=hashlib.sha256(envelope).digest())
    from signing.cms import sign_cms
    from signing.cms_receipt import make_receipt_request

    signed = sign_cms(header.to_der(), seal.signer, seal.certificate, seal.chain,
                      detached=False, signed_attributes=[make_receipt_request(
                          ["https://hub/x"], content_identifier=header.message_id.encode())])
    return package_der(signed, envelope)


def test_ciphertext_sealed_after_tampering_fails_decryption(exchange_file_pki) -> None:
    pki = exchange_file_pki
    team = clerks(pki)

    def flip(envelope: bytes) -> bytes:
        damaged = bytearray(envelope)
        damaged[-40] ^= 0x80  # inside the CBC ciphertext
        return bytes(damaged)

    stored = service.submit(pki.ctx, team.province, _sealed_by(pki, PROVINCE, flip))
    assert stored.created  # the hub cannot see inside; the recipient refuses
    with pytest.raises(TamperedPackage, match=r"(does not decrypt|not the content)"):
        service.open_document(pki.ctx, team.xining, stored.message_id)
    assert refusals(pki, "exchange.open", stored.message_id)[-1]["error"] == "exchange-tampered"
    assert not service.receipts(pki.ctx, team.province, stored.message_id)


def test_a_package_sealed_by_a_revoked_certificate(exchange_pki) -> None:
    pki = exchange_pki
    sender = make_operator(pki, HUANGNAN, "exchange-clerk")
    xining = make_operator(pki, XINING, "exchange-clerk")
    policy = get_policy()
    before_revocation = service.send(pki.ctx, sender, request(issuer=HUANGNAN, copy=()))
    seal = org_keys.seal_key(pki.ctx, HUANGNAN, policy)
    revoke(pki.ctx, format(seal.certificate.serial_number, "x"), "keyCompromise",
           ca=policy.ca, actor="test")

    with pytest.raises(SignatureInvalid, match="revoked"):
        service.open_document(pki.ctx, xining, before_revocation.message_id)
    assert refusals(pki, "exchange.open", before_revocation.message_id)[-1]["error"] == \
        "exchange-signature-invalid"
    assert not service.receipts(pki.ctx, xining, before_revocation.message_id)

    counts = row_counts(pki)
    package = _sealed_by(pki, HUANGNAN, seal=seal)
    with pytest.raises(SignatureInvalid, match="revoked"):
        service.submit(pki.ctx, sender, package)
    message_id = parse_package(package, policy).header.message_id
    assert refusals(pki, "exchange.send", message_id)[-1]["error"] == \
        "exchange-signature-invalid"
    with pytest.raises(OrgKeyMissing, match=r"no usable seal.*revoked"):
        service.send(pki.ctx, sender, request(issuer=HUANGNAN, copy=()))
    assert row_counts(pki) == counts


def test_a_seal_of_another_organisation_is_refused(exchange_file_pki) -> None:
    pki = exchange_file_pki
    team = clerks(pki)
    haibei_seal = org_keys.seal_key(pki.ctx, HAIBEI, get_policy())
    package = _sealed_by(pki, PROVINCE, seal=haibei_seal)
    with pytest.raises(SignatureInvalid, match=f"not signed with a seal of {PROVINCE}"):
        service.submit(pki.ctx, team.province, package)


def test_recipients_without_a_valid_encryption_certificate(exchange_file_pki) -> None:
    pki = exchange_file_pki
    team = clerks(pki)
    [enc] = [k for k in org_keys.list_keys(pki.ctx, HAINAN) if k.purpose == "encryption"][-1:]
    revoke(pki.ctx, enc.certificate_serial, "superseded", ca=enc.certificate_ca, actor="test")
    counts = row_counts(pki)
    req = request(main=(XINING, GUOLUO), copy=(HAINAN,))
    with pytest.raises(RecipientKeyInvalid) as caught:
        service.send(pki.ctx, team.province, req)
    assert f"{GUOLUO} has no encryption certificate" in caught.value.message
    assert f"{HAINAN} has no valid encryption certificate" in caught.value.message
    assert "is revoked" in caught.value.message
    assert refusals(pki, "exchange.send", req.number)[-1]["error"] == "exchange-recipient-key"
    assert row_counts(pki) == counts


def test_a_duplicate_document_number_from_the_same_organisation(exchange_pki) -> None:
    pki = exchange_pki
    team = clerks(pki)
    first = request()
    service.send(pki.ctx, team.province, first)
    counts = row_counts(pki)
    with pytest.raises(DuplicateDocumentNumber, match="already sent a document numbered"):
        service.send(pki.ctx, team.province, request(number=first.number))
    assert refusals(pki, "exchange.send")[-1]["error"] == "exchange-duplicate-number"
    assert row_counts(pki) == counts
    elsewhere = service.send(pki.ctx, team.xining, request(issuer=XINING, main=(PROVINCE,),
                                                            copy=(), number=first.number))
    assert elsewhere.created  # numbers are unique per issuing organisation


def test_a_resend_with_other_content_is_refused(exchange_file_pki) -> None:
    pki = exchange_file_pki
    team = clerks(pki)
    first = service.send(pki.ctx, team.province, request())
    counts = row_counts(pki)
    with pytest.raises(MessageIdConflict):
        service.send(pki.ctx, team.province, request(message_id=first.message_id))
    assert row_counts(pki) == counts


def test_oversized_attachments(exchange_file_pki) -> None:
    pki = exchange_file_pki
    team = clerks(pki)
    data = {"ca": "officials", "urgencies": {"加急": {"en": "urgent", "hours": 24}},
            "classifications": {"非密": {"en": "non-classified", "allowed": True}},
            "limits": {"max_body_bytes": 100_000, "max_attachment_bytes": 1000,
                       "max_attachments": 2, "max_package_bytes": 200_000,
                       "max_recipients": 10, "max_title_chars": 100,
                       "max_number_chars": 64, "max_reason_chars": 100}}
    strict = policy_from_mapping(data)
    counts = row_counts(pki)
    big = request(attachments=(DocumentFile("大附件.bin", b"x" * 1001),))
    with pytest.raises(PackageTooLarge, match=r"大附件\.bin.*over the limit of 1000"):
        service.send(pki.ctx, team.province, big, policy=strict)
    assert refusals(pki, "exchange.send", big.number)[-1]["error"] == "exchange-too-large"
    many = request(attachments=tuple(DocumentFile(f"{i}.txt", b"x") for i in range(3)))
    with pytest.raises(PackageTooLarge, match="3 attachments"):
        service.send(pki.ctx, team.province, many, policy=strict)
    lenient = _sealed_by(pki, PROVINCE)  # built under the packaged policy: 2 attachments
    loose = dict(data, limits=dict(data["limits"], max_attachment_bytes=100))
    with pytest.raises(PackageTooLarge):  # the hub applies its own limits again
        service.submit(pki.ctx, team.province, lenient, policy=policy_from_mapping(loose))
    assert row_counts(pki) == counts


def test_receipts_for_packages_never_received(exchange_file_pki) -> None:
    pki = exchange_file_pki
    team = clerks(pki)
    yushu = make_operator(pki, YUSHU, "exchange-clerk")
    unknown = new_message_id()
    with pytest.raises(NotReceived, match="no such package"):
        service.receipt(pki.ctx, team.xining, unknown, "signed-for")
    assert refusals(pki, "exchange.receipt", unknown)[-1]["error"] == "exchange-not-received"
    sent = service.send(pki.ctx, team.province, request())
    with pytest.raises(NotReceived, match="no such package"):
        service.receipt(pki.ctx, yushu, sent.message_id, "signed-for")
    with pytest.raises(NotReceived, match="not been delivered"):
        service.receipt(pki.ctx, team.xining, sent.message_id, "signed-for")
    # A receipt made elsewhere (a node's own system) for a package it never fetched.
    signed_header = service.signed_header(pki.ctx, team.province, sent.message_id)
    statement = make_receipt(signed_header, message_id=sent.message_id, kind="delivered",
                             recipient=OrgName(HAIBEI, "海北藏族自治州人民政府"),
                             seal=org_keys.seal_key(pki.ctx, HAIBEI, get_policy()))
    with pytest.raises(NotReceived, match="never fetched"):
        service.submit_receipt(pki.ctx, team.haibei, sent.message_id, statement)
    assert not service.receipts(pki.ctx, team.province, sent.message_id)


def test_forged_receipts_and_steps_out_of_order(exchange_file_pki) -> None:
    pki = exchange_file_pki
    team = clerks(pki)
    sent = service.send(pki.ctx, team.province, request())
    service.fetch(pki.ctx, team.haibei, sent.message_id)
    signed_header = service.signed_header(pki.ctx, team.province, sent.message_id)
    forged = make_receipt(signed_header, message_id=sent.message_id, kind="delivered",
                          recipient=OrgName(HAIBEI, "海北藏族自治州人民政府"),
                          seal=org_keys.seal_key(pki.ctx, XINING, get_policy()))
    with pytest.raises(ReceiptInvalid, match=f"not signed with a seal of {HAIBEI}"):
        service.submit_receipt(pki.ctx, team.haibei, sent.message_id, forged)
    other = service.send(pki.ctx, team.province, request())
    other_header = service.signed_header(pki.ctx, team.province, other.message_id)
    wrong = make_receipt(other_header, message_id=sent.message_id, kind="delivered",
                         recipient=OrgName(HAIBEI, "海北藏族自治州人民政府"),
                         seal=org_keys.seal_key(pki.ctx, HAIBEI, get_policy()))
    with pytest.raises(ReceiptInvalid, match="does not answer this package"):
        service.submit_receipt(pki.ctx, team.haibei, sent.message_id, wrong)
    assert refusals(pki, "exchange.receipt", sent.message_id)[-1]["error"] == \
        "exchange-receipt-invalid"

    service.open_document(pki.ctx, team.xining, sent.message_id)
    with pytest.raises(InvalidTransition, match="completed needs signed-for"):
        service.receipt(pki.ctx, team.xining, sent.message_id, "completed")
    with pytest.raises(ValidationError, match="needs a reason"):
        service.receipt(pki.ctx, team.xining, sent.message_id, "returned")
    with pytest.raises(ValidationError, match="kind must be one of"):
        service.receipt(pki.ctx, team.xining, sent.message_id, "delivered")
    service.receipt(pki.ctx, team.xining, sent.message_id, "returned", reason="发错单位")
    with pytest.raises(InvalidTransition, match="returned"):
        service.receipt(pki.ctx, team.xining, sent.message_id, "signed-for")
    again = service.receipt(pki.ctx, team.xining, sent.message_id, "returned", reason="x")
    assert again.reason == "发错单位"  # the stored receipt, not a second one


def test_actors_outside_their_organisation_are_refused(exchange_file_pki) -> None:
    pki = exchange_file_pki
    team = clerks(pki)
    with pytest.raises(Forbidden, match="outside the scope"):
        service.send(pki.ctx, team.xining, request(issuer=PROVINCE))
    sent = service.send(pki.ctx, team.province, request())
    with pytest.raises(Forbidden):
        service.open_document(pki.ctx, team.haibei, sent.message_id, org=XINING)
    assert refusals(pki, "exchange.receive", sent.message_id)[-1]["error"] == "forbidden"
    outsider = make_operator(pki, YUSHU, "exchange-clerk")
    with pytest.raises(Forbidden):
        service.status(pki.ctx, outsider, sent.message_id)
    auditor = make_operator(pki, PROVINCE, "ra-operator")
    with pytest.raises(Forbidden, match="not granted"):
        service.inbox(pki.ctx, auditor)
    # A recipient sees its own delivery only; the sender sees all.
    assert [d.recipient.code for d in service.status(pki.ctx, team.haibei,
                                                     sent.message_id).deliveries] == [HAIBEI]
    assert len(service.status(pki.ctx, team.province, sent.message_id).deliveries) == 2
