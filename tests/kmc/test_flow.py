"""Issue 7 end to end, on every storage × key-store pair: enroll an official (signing key born on
the USB key, encryption key generated and escrowed by the KMC and delivered into the USB key);
encrypt a document to the encryption certificate with `openssl cms -encrypt`; lose the USB
key; recover the key onto a new one under the two-person rule; the old document opens there.
Every refusal on the way (no second approver, self-approval, out of scope, a signing key) is
checked to be refused *and* audited.
"""

from __future__ import annotations

import os

import pkcs11
import pytest
from cryptography import x509
from sqlalchemy import func, select

from ca.revocation import status_of
from ca.store import chain_der
from core.audit import AuditEvent
from core.db import transaction
from hsm.kmc_unwrap import create_transport_key, unwrap_into_token
from hsm.pkcs11_lock import PKCS11_LOCK
from kmc import recovery
from kmc.delivery import wrapped_for_token
from kmc.errors import (
    Forbidden,
    InvalidTransition,
    SigningKeyNotEscrowable,
    TwoPersonRuleViolation,
)
from kmc.provider import KmcEncryptionProvider
from ra import requests
from ra.records import CertificateRef, Official, Operator
from ra.requests import EncryptionOutcome
from tests.conftest import Pki
from tests.kmc.conftest import (
    USB_PIN,
    UsbKey,
    decrypt_on_token,
    make_official,
    openssl_encrypt,
    operators,
)
from tests.ra.conftest import make_operator

pytestmark = pytest.mark.hsm

MESSAGE = "关于2025年度预算执行情况的通知（内部）\n".encode() * 20


def ra_provider() -> KmcEncryptionProvider[EncryptionOutcome]:
    """How the composition root wires the KMC into the RA (the RA gets its own types)."""
    return KmcEncryptionProvider(lambda status, cert, note: EncryptionOutcome(
        status, CertificateRef(cert.ca, cert.serial) if cert else None, note))


def refusals(pki: Pki, actor: str, action: str) -> int:
    with transaction(pki.ctx.sessions) as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.actor == actor, AuditEvent.action == action,
            AuditEvent.outcome == "refused")) or 0


def enroll(pki: Pki, clerk: Operator, approver: Operator, official: Official, usb: UsbKey
           ) -> tuple[requests.RequestRecord, str]:
    """`govpki token enroll` in-process: signing key on the token, RA approval and issuance
    (the KMC escrows the encryption pair), both certificates and the encryption key onto the
    token. Returns the request and the delivered key's reference on the token."""
    with usb.open() as token:
        signing_key = token.generate_signing_key("ec-p256")
        request = requests.submit(pki.ctx, clerk, official.identifier, "new-pair",
                                  csr=token.build_csr(signing_key), comment="新入职")
        requests.approve(pki.ctx, approver, request.id, "材料齐全")
        done = requests.execute(pki.ctx, approver, request.id, encryption=ra_provider())
        assert done.state == "issued" and done.encryption_status == "escrowed"
        signing_ref, encryption_ref = done.issued
        with transaction(pki.ctx.sessions) as session:
            chain = chain_der(session, signing_ref.ca)
        token.store_certificate(signing_key,
                                status_of(pki.ctx, signing_ref.serial, signing_ref.ca)
                                .certificate(), chain)
        transport = create_transport_key(token)
        wrapped = wrapped_for_token(pki.ctx, f"{official.subscriber_ref}/request:{done.id}",
                                    transport.spki_der)
        assert wrapped.certificate() is not None
        assert wrapped.certificate().serial_number == int(encryption_ref.serial, 16)
        key = unwrap_into_token(token, wrapped)
        attributes = token.signer(key).key_attributes()
        objects = {o.label for o in token.list_objects()}
    # The delivered key: on the token, sensitive, never extractable, decrypts, never signs;
    # it came from the KMC's HSM, so the token does not claim it was born there.
    assert attributes["CKA_TOKEN"] and attributes["CKA_SENSITIVE"]
    assert attributes["CKA_EXTRACTABLE"] is False
    assert attributes["CKA_DECRYPT"] and attributes["CKA_SIGN"] is False
    assert attributes["CKA_LOCAL"] is False
    assert not any(label.startswith("govpki-kmc-transport-") for label in objects)
    return done, f"id:{key.id_hex}"


def lose(usb: UsbKey) -> None:
    """The USB key is lost: everything on it is gone (wiped through PKCS#11 directly)."""
    with PKCS11_LOCK:
        lib = pkcs11.lib(os.path.realpath(usb.module))
        session = lib.get_token(token_label=usb.label).open(rw=True, user_pin=USB_PIN)
        try:
            for obj in list(session.get_objects()):
                obj.destroy()
            assert not list(session.get_objects())
        finally:
            session.close()


def test_enroll_encrypt_lose_recover_decrypt(kmc_pki, new_usb, tmp_path) -> None:
    pki = kmc_pki
    clerk, approver = operators(pki)
    official = make_official(pki, clerk)
    first_usb = new_usb("lost")
    done, key_ref = enroll(pki, clerk, approver, official, first_usb)
    encryption_ref = done.issued[1]
    encryption_cert = status_of(pki.ctx, encryption_ref.serial, encryption_ref.ca).certificate()
    usage = encryption_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment and not usage.digital_signature

    # A document encrypted to the official by someone else, with the OpenSSL CLI.
    envelope = openssl_encrypt(encryption_cert, MESSAGE, tmp_path)
    envelope_oaep = openssl_encrypt(encryption_cert, MESSAGE, tmp_path, oaep="sha1")
    envelope_oaep256 = openssl_encrypt(encryption_cert, MESSAGE, tmp_path, oaep="sha256")
    with first_usb.open() as token:
        assert decrypt_on_token(token, key_ref, envelope) == MESSAGE
        assert decrypt_on_token(token, key_ref, envelope_oaep) == MESSAGE
        assert decrypt_on_token(token, key_ref, envelope_oaep256) == MESSAGE
        # A second "first delivery" is refused: further copies are recoveries.
        again = create_transport_key(token)
        with pytest.raises(InvalidTransition, match="delivered already"):
            wrapped_for_token(pki.ctx, f"{official.subscriber_ref}/request:{done.id}",
                              again.spki_der)

    lose(first_usb)

    second_usb = new_usb("new")
    with second_usb.open() as token:
        transport = create_transport_key(token)
    rec = recovery.submit(pki.ctx, clerk, "user", transport_public_key=transport.spki_der,
                          reason="USB key lost on a business trip; reported and suspended",
                          ca=encryption_ref.ca, serial=encryption_ref.serial)
    assert rec.state == "submitted" and rec.required_approvals == 1

    # Without a second approver: the release is refused and audited.
    with pytest.raises(InvalidTransition, match="two-person rule"):
        recovery.release(pki.ctx, clerk, rec.id)
    assert refusals(pki, clerk.username, "kmc.recover.user.release") == 1
    # The submitter cannot be the second person.
    with pytest.raises(TwoPersonRuleViolation):
        recovery.approve(pki.ctx, clerk, rec.id)
    assert refusals(pki, clerk.username, "kmc.recover.user.approve") == 1
    # An operator of another prefecture can neither approve nor ask.
    stranger = make_operator(pki, "632200", "ra-operator")
    with pytest.raises(Forbidden):
        recovery.approve(pki.ctx, stranger, rec.id)
    with pytest.raises(Forbidden):
        recovery.submit(pki.ctx, stranger, "user", transport_public_key=transport.spki_der,
                        reason="curious", escrow_id=rec.escrow_id)
    assert refusals(pki, stranger.username, "kmc.recover.user") == 2
    # An auditor holds no recovery action at all.
    auditor = make_operator(pki, "630000", "auditor")
    with pytest.raises(Forbidden):
        recovery.approve(pki.ctx, auditor, rec.id)
    assert refusals(pki, auditor.username, "kmc.recover.user") == 1

    approved = recovery.approve(pki.ctx, approver, rec.id, "核实属实")
    assert approved.state == "approved" and approved.approvals == (approver.username,)
    wrapped = recovery.release(pki.ctx, clerk, rec.id)
    with pytest.raises(InvalidTransition):
        recovery.release(pki.ctx, clerk, rec.id)  # once

    with second_usb.open() as token:
        key = unwrap_into_token(token, wrapped)
        assert decrypt_on_token(token, f"id:{key.id_hex}", envelope) == MESSAGE
        assert decrypt_on_token(token, f"id:{key.id_hex}", envelope_oaep) == MESSAGE

    with transaction(pki.ctx.sessions) as session:
        trail = [(e.action, e.outcome) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.object_type == "kmc-recovery",
                                     AuditEvent.object_id == str(rec.id))
            .order_by(AuditEvent.seq))]
    assert ("kmc.recover.user.submit", "success") in trail
    assert ("kmc.recover.user.approve", "success") in trail
    assert ("kmc.recover.user.release", "success") in trail
    assert trail.count(("kmc.recover.user.release", "refused")) == 2


def test_recovering_a_signing_key_is_refused_and_audited(kmc_pki, new_usb) -> None:
    pki = kmc_pki
    clerk, approver = operators(pki)
    official = make_official(pki, clerk)
    done, _ref = enroll(pki, clerk, approver, official, new_usb())
    signing_ref = done.issued[0]
    with new_usb().open() as token:
        transport = create_transport_key(token)
    before = refusals(pki, clerk.username, "kmc.recover.user.submit")
    with pytest.raises(SigningKeyNotEscrowable, match="signing key"):
        recovery.submit(pki.ctx, clerk, "user", transport_public_key=transport.spki_der,
                        reason="lost", ca=signing_ref.ca, serial=signing_ref.serial)
    assert refusals(pki, clerk.username, "kmc.recover.user.submit") == before + 1


def test_authorised_recovery_to_a_recovery_officers_token(kmc_pki, new_usb, tmp_path) -> None:
    pki = kmc_pki
    clerk, approver = operators(pki)
    official = make_official(pki, clerk)
    done, _ref = enroll(pki, clerk, approver, official, new_usb())
    encryption_ref = done.issued[1]
    cert = status_of(pki.ctx, encryption_ref.serial, encryption_ref.ca).certificate()
    envelope = openssl_encrypt(cert, MESSAGE, tmp_path)

    officer = make_operator(pki, "630000", "key-recovery-officer")
    second_officer = make_operator(pki, "630000", "key-recovery-officer")
    officer_usb = new_usb("officer")
    with officer_usb.open() as token:
        transport = create_transport_key(token)
    reason = "省公安厅（2025）第17号协助调查函：调取涉案公文"
    # An RA operator cannot ask for an authorised recovery.
    with pytest.raises(Forbidden):
        recovery.submit(pki.ctx, clerk, "authorised", transport_public_key=transport.spki_der,
                        reason=reason, ca=encryption_ref.ca, serial=encryption_ref.serial)
    rec = recovery.submit(pki.ctx, officer, "authorised",
                          transport_public_key=transport.spki_der, reason=reason,
                          ca=encryption_ref.ca, serial=encryption_ref.serial)
    with pytest.raises(InvalidTransition):
        recovery.release(pki.ctx, officer, rec.id)
    with pytest.raises(TwoPersonRuleViolation):
        recovery.approve(pki.ctx, officer, rec.id, reason)
    recovery.approve(pki.ctx, second_officer, rec.id, "函件核实无误")
    # The release is wrapped for the submitting officer's token: only they take it.
    with pytest.raises(TwoPersonRuleViolation):
        recovery.release(pki.ctx, second_officer, rec.id)
    wrapped = recovery.release(pki.ctx, officer, rec.id)
    with officer_usb.open() as token:
        key = unwrap_into_token(token, wrapped)
        assert decrypt_on_token(token, f"id:{key.id_hex}", envelope) == MESSAGE

    with transaction(pki.ctx.sessions) as session:
        released = session.scalar(select(AuditEvent).where(
            AuditEvent.action == "kmc.recover.authorised.release",
            AuditEvent.object_id == str(rec.id), AuditEvent.outcome == "success"))
    assert released is not None
    details = released.details_dict()
    assert details["reason"] == reason
    assert details["approved_by"] == [second_officer.username]
    assert details["transport_key_sha256"] == transport.sha256


def test_a_wrapped_key_opens_only_on_the_token_it_was_wrapped_for(kmc_pki, new_usb) -> None:
    from hsm.errors import KeyNotFound

    pki = kmc_pki
    clerk, approver = operators(pki)
    official = make_official(pki, clerk)
    done, _ref = enroll(pki, clerk, approver, official, new_usb())
    with new_usb().open() as token:
        transport = create_transport_key(token)
    rec = recovery.submit(pki.ctx, clerk, "user", transport_public_key=transport.spki_der,
                          reason="broken", ca=done.issued[1].ca, serial=done.issued[1].serial)
    recovery.approve(pki.ctx, approver, rec.id)
    wrapped = recovery.release(pki.ctx, clerk, rec.id)
    with new_usb("thief").open() as other:
        create_transport_key(other)
        with pytest.raises(KeyNotFound, match="wrapped for another token"):
            unwrap_into_token(other, wrapped)
        assert not [o for o in other.list_objects() if o.label.startswith("govpki-enc-")]
