"""Organisations' keys on the storage × key-store matrix: on SoftHSM2 the encryption key is
escrowed by the KMC and installed on the HSM non-extractable and decrypt-only, and the seal is
generated on the token; on the file store both are file keys. Certificates carry the
organisation's name from ra's tree and the right profiles."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from apps.exchange import org_keys
from apps.exchange.errors import ValidationError
from apps.exchange.policy import get_policy
from ca.store import find_certificate
from core.audit import AuditEvent
from core.db import transaction
from kmc.escrow import get_escrow_unchecked

FINANCE = "630000-CZT"  # 青海省财政厅: provisioned here only


def test_provisioned_keys(exchange_pki) -> None:
    pki = exchange_pki
    made = {k.purpose: k for k in org_keys.provision(pki.ctx, FINANCE, policy=get_policy(),
                                                     actor="test")}
    seal, enc = made["seal"], made["encryption"]
    with transaction(pki.ctx.sessions) as session:
        seal_cert = find_certificate(session, seal.certificate_serial, seal.certificate_ca)
        enc_cert = find_certificate(session, enc.certificate_serial, enc.certificate_ca)
    assert (seal_cert.profile, enc_cert.profile) == ("department-seal", "org-encryption")
    for record in (seal_cert, enc_cert):
        subject = record.certificate().subject
        assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "青海省财政厅"
        assert record.subscriber_ref == f"ra-org:{FINANCE}"
    [(decryptor, certificate)] = org_keys.decryptors(pki.ctx, FINANCE)
    public = certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert decryptor.decrypt(public.encrypt(b"content key", padding.PKCS1v15()),
                             padding.PKCS1v15()) == b"content key"
    if pki.keys == "softhsm":
        assert seal.key_uri and seal.key_uri.startswith("pkcs11:")
        assert enc.protection == "hsm-escrowed" and enc.escrow_id is not None
        assert get_escrow_unchecked(pki.ctx, enc.escrow_id).state == "delivered"
        attributes = decryptor.key_attributes()  # type: ignore[attr-defined]
        assert attributes["CKA_EXTRACTABLE"] is False and attributes["CKA_SENSITIVE"] is True
        assert attributes["CKA_SIGN"] is False
    else:
        assert (seal.protection, enc.protection) == ("file", "file")
        assert enc.key_uri and enc.key_uri.startswith("file:") and enc.escrow_id is None
        with transaction(pki.ctx.sessions) as session:
            assert session.scalar(select(AuditEvent).where(
                AuditEvent.action == "kmc.org-key.create",
                AuditEvent.object_id == f"ra-org:{FINANCE}")) is not None
    assert isinstance(org_keys.seal_key(pki.ctx, FINANCE, get_policy()).certificate,
                      x509.Certificate)


def test_registration_and_lookups_refuse_what_does_not_fit(exchange_file_pki) -> None:
    pki = exchange_file_pki
    [seal] = [k for k in org_keys.list_keys(pki.ctx, "630100") if k.purpose == "seal"][:1]
    with pytest.raises(ValidationError, match="needs org-encryption"):
        org_keys.register_certificate(pki.ctx, "632600", "encryption", ca=seal.certificate_ca,
                                      serial=seal.certificate_serial, actor="test")
    with pytest.raises(ValidationError, match="no organisation"):
        org_keys.provision(pki.ctx, "999999", policy=get_policy(), actor="test")
    with pytest.raises(ValidationError, match="purposes"):
        org_keys.provision(pki.ctx, "630100", policy=get_policy(), actor="test",
                           purposes=("signing",))
