"""Organisations' exchange encryption keys (单位加密密钥) held by the server for the exchange.

Documents sent to an organisation are encrypted to its organisation-encryption certificate;
organisations that use the exchange's web pages have the server open them, so the server holds
their decryption key. Where that key comes from follows the server key store:

* **PKCS#11** (production; SoftHSM2 in tests): the KMC's own path — :func:`kmc.escrow.escrow_key`
  generates the pair in the HSM, escrows it under the master key and has the CA certify it with
  ``org-encryption``; :func:`kmc.delivery.install_for_server` then unwraps it onto the HSM for
  good as a non-extractable, decrypt-only token object at the key URI given. The escrowed copy
  stays, so a replaced HSM or a lost key can be recovered under the two-person rule. Needs
  ``govpki kmc init`` first (KmcNotInitialised otherwise).
* **File store** (the embedded default): a file store cannot hold a key non-extractably, and the
  KMC's software escrow keeps no usable copy of the keys it generates, so the key is generated
  directly in the file store (``file:<label>``, PBES2-encrypted PKCS#8 under the store's
  passphrase, 0600, never overwritten — the protection the CA's own file keys get) and certified
  the same way. It is not escrowed: the key file is the copy, carried by ``govpki backup``.

Either way the caller gets an :class:`OrgEncryptionKey` (URI and certificate reference) and
opens documents through :func:`org_decryptor`, whose ``decrypt`` runs in the key store
(``signing.cms_envelope.decrypt_cms`` takes it as its Decryptor). kmc does not read ra's
tables: the caller above both (apps/exchange) passes the organisation as a
:class:`kmc.escrow.KeyOwner`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ca.context import CaContext
from ca.issuance import CertificateRequest, issue_certificate
from core import audit
from core.config import Config
from core.db import transaction
from core.errors import GovpkiError
from hsm.algorithms import KeyType
from hsm.pkcs11_uri import Pkcs11Uri
from hsm.signer import Signer
from kmc.delivery import install_for_server
from kmc.errors import ValidationError
from kmc.escrow import KeyOwner, check_encryption_profile, escrow_key
from policies.profiles import get_profile

ORG_ENCRYPTION_PROFILE: Final = "org-encryption"
AUDIT_ACTION: Final = "kmc.org-key.create"


@dataclass(frozen=True)
class OrgEncryptionKey:
    """An organisation's server-held decryption key and its certificate."""

    key_uri: str
    certificate_ca: str
    certificate_serial: str
    escrow_id: int | None
    protection: str  # "hsm-escrowed" | "file"


def uses_pkcs11(config: Config) -> bool:
    ks = config.keystore
    return ks.type == "pkcs11" or bool(ks.pkcs11_module)


def server_key_uri(config: Config, label: str) -> str:
    """The URI of a new key labelled ``label`` on the server key store: the configured token
    when PKCS#11 is configured, else the file store."""
    if uses_pkcs11(config):
        return Pkcs11Uri(token=config.keystore.token_label or None, object=label).format()
    return f"file:{label}"


def csr_for(signer: Signer) -> bytes:
    """A CSR signed by ``signer`` (proof of possession for the CA; the CA takes the subject
    from the caller's records, not from here)."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "govpki key")]))
           .sign(signer.as_private_key(), hashes.SHA256()))  # type: ignore[arg-type]
    return csr.public_bytes(Encoding.DER)


def provision_org_encryption_key(ctx: CaContext, owner: KeyOwner, *, ca: str, subject: str,
                                 label: str, actor: str) -> OrgEncryptionKey:
    """Generate and certify ``owner``'s exchange encryption key, held by the server at the
    key URI made from ``label`` (module docstring: escrowed on an HSM, a file key otherwise).
    ``subject`` is the certificate's RFC 4514 subject from the caller's records."""
    if owner.kind != "organisation":
        raise ValidationError("only organisations' exchange keys are held by the server",
                              field="owner")
    uri = server_key_uri(ctx.config, label)
    if uses_pkcs11(ctx.config):
        record = escrow_key(ctx, owner, ca=ca, profile=ORG_ENCRYPTION_PROFILE, subject=subject,
                            subscriber_ref=owner.ref, actor=actor)
        install_for_server(ctx, record.id, uri, actor=actor)
        assert record.certificate_ca is not None and record.certificate_serial is not None
        return OrgEncryptionKey(uri, record.certificate_ca, record.certificate_serial,
                                record.id, "hsm-escrowed")
    profile = get_profile(ORG_ENCRYPTION_PROFILE)
    key_type = next(k for k in profile.key_types if k.startswith("rsa-"))
    check_encryption_profile(profile, key_type)
    try:
        signer = ctx.keyring.generate(uri, KeyType(key_type))
        issued = issue_certificate(ctx, CertificateRequest(
            ca=ca, profile=profile.name, csr=csr_for(signer), subject=subject,
            requested_by=actor, subscriber_ref=owner.ref))
    except GovpkiError as exc:
        audit.record_refusal(ctx.sessions, actor=actor, action=AUDIT_ACTION,
                             object_type="kmc-owner", object_id=owner.ref, outcome="failure",
                             details={"error": exc.kind, "message": exc.message,
                                      "key_uri": uri})
        raise
    with transaction(ctx.sessions) as session:
        audit.record_event(session, actor=actor, action=AUDIT_ACTION, object_type="kmc-owner",
                           object_id=owner.ref, outcome="success",
                           details={"key_uri": uri, "protection": "file",
                                    "certificate": f"{issued.ca}/{issued.serial}"})
    return OrgEncryptionKey(uri, issued.ca, issued.serial, None, "file")


def org_decryptor(ctx: CaContext, key_uri: str) -> Signer:
    """The server-held key at ``key_uri`` as a Decryptor (its private half never leaves the
    key store). Refuses a key that cannot decrypt CMS key transport (not RSA)."""
    signer = ctx.keyring.get(key_uri)
    if not isinstance(signer.public_key(), rsa.RSAPublicKey):
        raise ValidationError(f"{key_uri} is not an RSA key: it cannot open CMS envelopes "
                              f"(key transport)", field="key_uri")
    return signer
