"""The two interfaces the lead wires: the RA's encryption provider, and the enrollment step that
receives the key into the USB key (run with `run_steps` exactly as `govpki token enroll` does)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from ca.revocation import status_of
from core.db import transaction
from hsm.enroll import Enrollment, GenerateSigningKey, run_steps
from hsm.kmc_unwrap import ReceiveEncryptionKey
from hsm.ra_client import EnrollmentReply, RaEnrollmentClient
from kmc import models
from kmc.delivery import wrapped_for_token
from kmc.provider import CertificateRef, KmcEncryptionProvider, KmcOutcome
from ra import requests
from tests.ca.helpers import make_csr, new_key
from tests.kmc.conftest import decrypt_on_token, make_official, openssl_encrypt, operators

pytestmark = pytest.mark.hsm


def _approved(pki, clerk, approver, official):
    request = requests.submit(pki.ctx, clerk, official.identifier, "new-pair",
                              csr=make_csr(new_key("ec-p256")))
    return requests.approve(pki.ctx, approver, request.id)


def test_provider_outcomes(kmc_file_pki) -> None:
    pki = kmc_file_pki
    clerk, approver = operators(pki)
    official = make_official(pki, clerk)
    provider = KmcEncryptionProvider.duck_typed()
    done = requests.execute(pki.ctx, approver, _approved(pki, clerk, approver, official).id,
                            encryption=provider)  # type: ignore[arg-type]
    assert done.encryption_status == "escrowed" and len(done.issued) == 2
    encryption = status_of(pki.ctx, done.issued[1].serial, done.issued[1].ca)
    assert encryption.profile == "official-encryption"
    assert encryption.subscriber_ref == f"{official.subscriber_ref}/request:{done.id}"
    signing = status_of(pki.ctx, done.issued[0].serial, done.issued[0].ca)
    assert encryption.subject == signing.subject

    record = _approved(pki, clerk, approver, official)
    issued = status_of(pki.ctx, done.issued[0].serial, done.issued[0].ca)

    class Signing:  # the IssuedCertificate fields the provider reads
        ca, serial, subject = issued.ca, issued.serial, issued.subject

    outcome = KmcEncryptionProvider.duck_typed(key_type="rsa-4096").provide(
        pki.ctx, record, Signing())
    assert outcome.status == "failed" and "rsa-4096" in outcome.note
    seal = type("R", (), {"id": 1, "kind": "new-pair", "profile": "department-seal",
                          "official": record.official})()
    assert provider.provide(pki.ctx, seal, Signing()).status == "not-applicable"
    # No master key yet (retired for the test): the RA is told to wait for the KMC.
    with transaction(pki.ctx.sessions) as session:
        session.execute(update(models.MasterKey).values(state="retired"))
    try:
        pending = provider.provide(pki.ctx, record, Signing())
    finally:
        with transaction(pki.ctx.sessions) as session:
            session.execute(update(models.MasterKey).values(state="active"))
    assert pending == KmcOutcome("pending-kmc", None, pending.note)
    assert "govpki kmc init" in pending.note
    assert isinstance(CertificateRef("a", "1"), CertificateRef)


def test_enrollment_step_delivers_into_the_token(kmc_file_pki, new_usb, tmp_path) -> None:
    """GenerateSigningKey → (the RA issues, the KMC escrows) → ReceiveEncryptionKey, with the
    fetch going straight to kmc.delivery as the RA endpoint will; undo removes the key."""
    pki = kmc_file_pki
    clerk, approver = operators(pki)
    official = make_official(pki, clerk)
    usb = new_usb()
    provider = KmcEncryptionProvider.duck_typed()
    with usb.open() as token:
        state = Enrollment(token, RaEnrollmentClient("http://127.0.0.1:9", "unused"))
        run_steps([GenerateSigningKey()], state)
        assert state.key is not None
        request = requests.submit(pki.ctx, clerk, official.identifier, "new-pair",
                                  csr=token.build_csr(state.key))
        requests.approve(pki.ctx, approver, request.id)
        done = requests.execute(pki.ctx, approver, request.id,
                                encryption=provider)  # type: ignore[arg-type]
        state.reply = EnrollmentReply(done.id, "issued", "issued", None, (),
                                      done.encryption_status)
        ref = f"{official.subscriber_ref}/request:{done.id}"
        step = ReceiveEncryptionKey(lambda spki: wrapped_for_token(pki.ctx, ref, spki))
        run_steps([step], state)
        assert step.key is not None and "delivered" in state.notes[-1]
        cert = status_of(pki.ctx, done.issued[1].serial, done.issued[1].ca).certificate()
        envelope = openssl_encrypt(cert, b"secret minutes", tmp_path)
        assert decrypt_on_token(token, f"id:{step.key.id_hex}", envelope) == b"secret minutes"
        kinds = sorted(o.kind for o in token.list_objects() if o.id_hex == step.key.id_hex)
        assert kinds == ["certificate", "private-key", "public-key"]
        step.undo(state)
        assert not [o for o in token.list_objects() if o.id_hex == step.key.id_hex]

        pending = ReceiveEncryptionKey(lambda spki: pytest.fail("must not be called"))
        state.reply = EnrollmentReply(done.id, "issued", "issued", None, (), "pending-kmc")
        pending.run(state)
        assert state.notes[-1] == "encryption key pair: pending-kmc"

    with transaction(pki.ctx.sessions) as session:
        row = session.scalar(select(models.Escrow).where(models.Escrow.subscriber_ref == ref))
        assert row is not None and row.state == "delivered" and row.deliveries == 1
