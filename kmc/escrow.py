"""Escrow: generate an encryption key pair in the HSM, wrap it under the master key, have the CA
certify it, keep the wrapped blob with the certificate reference.

Order (Boulder's "record before you sign", STYLE.md 2):

1. the profile must be an encryption profile, or the request is refused and audited: signing
   keys are never escrowed (their value is non-repudiation: only the holder ever had them);
2. the HSM generates the pair, the key signs its CSR (proof of possession), the HSM wraps it
   under the master key and destroys its copy (:mod:`hsm.escrow`);
3. the wrapped blob and public key commit with a ``kmc.escrow.generate`` audit event
   (state ``generated``) — before the CA is asked, so no certificate can exist for a key whose
   blob was lost;
4. the CA issues the certificate through :func:`ca.issuance.issue_certificate` with the
   encryption profile (its own steps 1-8);
5. the row records the certificate and becomes ``escrowed`` with a ``kmc.escrow`` event.

A failure in 4 leaves the ``generated`` row (a wrapped key nobody can use without the HSM and
with no certificate) and a ``failure`` event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from ca.context import CaContext
from ca.issuance import CertificateRequest, issue_certificate
from ca.store import find_certificate
from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from hsm.algorithms import KeyType
from hsm.key_transport import spki_der, spki_sha256
from kmc import keys, models
from kmc.authz import ESCROW_VIEW, Actor, authorize, visible_path
from kmc.errors import EscrowNotFound, SigningKeyNotEscrowable, ValidationError
from policies.profiles import Profile, get_profile, key_family

#: keyUsage bits that mark a key as (also) a signing key: such a key is never escrowed.
SIGNING_USAGES: Final = frozenset({"digitalSignature", "nonRepudiation", "keyCertSign",
                                   "cRLSign"})
#: At least one of these makes a key an encryption key.
ENCRYPTION_USAGES: Final = frozenset({"keyEncipherment", "dataEncipherment", "keyAgreement"})
OWNER_PREFIX: Final = {"official": "ra-official:", "organisation": "ra-org:"}


@dataclass(frozen=True)
class KeyOwner:
    """Whose key it is, as the caller above kmc knows them (kmc does not read ra's tables)."""

    kind: str  # "official" | "organisation"
    ref: str  # "ra-official:<id>" | "ra-org:<code>"
    organisation_code: str
    organisation_path: str  # "/630000/630100/": what operators' scopes are checked against

    def __post_init__(self) -> None:
        prefix = OWNER_PREFIX.get(self.kind)
        if prefix is None:
            raise ValidationError(f"owner kind must be one of {', '.join(OWNER_PREFIX)}",
                                  field="owner")
        if not self.ref.startswith(prefix) or len(self.ref) > 128:
            raise ValidationError(f"an {self.kind}'s reference starts with {prefix!r}",
                                  field="owner")
        if not (self.organisation_path.startswith("/") and self.organisation_path.endswith("/")):
            raise ValidationError("organisation_path is the organisation's /code/.../ path",
                                  field="organisation_path")


@dataclass(frozen=True)
class EscrowRecord:
    """An escrowed key as callers see it: public values and references only."""

    id: int
    owner_kind: str
    owner_ref: str
    subscriber_ref: str
    organisation_code: str
    organisation_path: str
    profile: str
    key_type: str
    public_key_der: bytes
    public_key_sha256: str
    state: str
    certificate_ca: str | None
    certificate_serial: str | None
    master_key_id: int
    created_by: str
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    deliveries: int


def record_of(row: models.Escrow) -> EscrowRecord:
    return EscrowRecord(
        id=row.id, owner_kind=row.owner_kind, owner_ref=row.owner_ref,
        subscriber_ref=row.subscriber_ref, organisation_code=row.organisation_code,
        organisation_path=row.organisation_path, profile=row.profile, key_type=row.key_type,
        public_key_der=row.public_key_der, public_key_sha256=row.public_key_sha256,
        state=row.state, certificate_ca=row.certificate_ca,
        certificate_serial=row.certificate_serial, master_key_id=row.master_key_id,
        created_by=row.created_by, created_at=row.created_at, delivered_at=row.delivered_at,
        deliveries=row.deliveries)


# ---------------------------------------------------------------------------------------------
# Signing keys are never escrowed


def signing_usages_of_profile(profile: Profile, family: str) -> set[str]:
    """The signing bits a profile gives keys of ``family``; a CA profile counts as signing."""
    usages = set(profile.key_usage_for(family).usages)
    found = usages & SIGNING_USAGES
    if profile.is_ca:
        found.add("keyCertSign")
    if not usages & ENCRYPTION_USAGES:
        found.add("(no encipherment usage)")
    return found


def check_encryption_profile(profile: Profile, key_type: str) -> None:
    """Refuse (SigningKeyNotEscrowable) a profile whose keys sign: the profile decides."""
    found = signing_usages_of_profile(profile, key_family(key_type))
    if found:
        raise SigningKeyNotEscrowable(
            f"refused: profile {profile.name} certifies signing keys (keyUsage "
            f"{', '.join(sorted(found))}); signing keys are never escrowed or exported, "
            f"only encryption keys are", profile=profile.name)


def signing_usages_of_certificate(cert: x509.Certificate) -> set[str]:
    """The signing bits of a certificate's keyUsage (a certificate without keyUsage may do
    anything, so it counts as signing)."""
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return {"(no keyUsage: unrestricted)"}
    bits = {"digitalSignature": ku.digital_signature, "nonRepudiation": ku.content_commitment,
            "keyCertSign": ku.key_cert_sign, "cRLSign": ku.crl_sign}
    return {name for name, on in bits.items() if on}


def refuse_signing_key(ctx: CaContext, *, actor: str, action: str, object_type: str,
                       object_id: str, exc: SigningKeyNotEscrowable) -> None:
    audit.record_refusal(ctx.sessions, actor=actor, action=action, object_type=object_type,
                         object_id=object_id,
                         details={"error": exc.kind, "message": exc.message})


def _rsa_key_type(profile: Profile, key_type: str | None) -> str:
    if key_type is None:
        rsa_types = [k for k in profile.key_types if k.startswith("rsa-")]
        if not rsa_types:
            raise ValidationError(f"profile {profile.name} allows no RSA key type; escrowed "
                                  f"keys are RSA (CMS key transport)", field="key_type")
        return rsa_types[0]
    if not profile.allows_key_type(key_type):
        raise ValidationError(f"profile {profile.name} does not allow {key_type} keys "
                              f"(allowed: {', '.join(profile.key_types)})", field="key_type")
    return key_type


# ---------------------------------------------------------------------------------------------
# Escrowing


def escrow_key(ctx: CaContext, owner: KeyOwner, *, ca: str, profile: str, subject: str,
               subscriber_ref: str, actor: str, key_type: str | None = None,
               validity_days: int | None = None) -> EscrowRecord:
    """Generate, escrow and certify one encryption key pair for ``owner`` (steps in the
    module docstring). ``subject`` is the RFC 4514 subject the CA puts in the certificate
    (the caller's records, never the CSR); ``subscriber_ref`` is stored with the certificate."""
    prof = get_profile(profile)
    chosen = _rsa_key_type(prof, key_type)
    try:
        check_encryption_profile(prof, chosen)                                   # step 1
    except SigningKeyNotEscrowable as exc:
        refuse_signing_key(ctx, actor=actor, action="kmc.escrow", object_type="kmc-owner",
                           object_id=owner.ref, exc=exc)
        raise
    if len(subscriber_ref) > 128:
        raise ValidationError("subscriber_ref is at most 128 characters", field="subscriber_ref")
    master = keys.active_master_key(ctx)
    escrowed = keys.backend(ctx, master).generate(KeyType(chosen))             # step 2
    fingerprint = spki_sha256(escrowed.public_key)
    with transaction(ctx.sessions) as session:                                  # step 3
        row = models.Escrow(
            owner_kind=owner.kind, owner_ref=owner.ref, subscriber_ref=subscriber_ref,
            organisation_code=owner.organisation_code,
            organisation_path=owner.organisation_path, profile=prof.name,
            key_type=escrowed.key_type.value, public_key_der=spki_der(escrowed.public_key),
            public_key_sha256=fingerprint, master_key_id=master.id,
            wrap_mechanism=escrowed.mechanism, wrapped_key=escrowed.wrapped,
            state="generated", created_by=actor, created_at=utcnow(), deliveries=0)
        session.add(row)
        session.flush()
        escrow_id = row.id
        audit.record_event(session, actor=actor, action="kmc.escrow.generate",
                           object_type="kmc-escrow", object_id=str(escrow_id),
                           outcome="success",
                           details={"owner": owner.ref, "profile": prof.name,
                                    "key_type": escrowed.key_type.value,
                                    "public_key_sha256": fingerprint,
                                    "master_key": master.key_uri,
                                    "wrap_mechanism": escrowed.mechanism})
    try:
        issued = issue_certificate(ctx, CertificateRequest(                       # step 4
            ca=ca, profile=prof.name, csr=escrowed.csr_der, subject=subject,
            validity_days=validity_days, requested_by=actor, subscriber_ref=subscriber_ref))
    except GovpkiError as exc:
        audit.record_refusal(ctx.sessions, actor=actor, action="kmc.escrow",
                             object_type="kmc-escrow", object_id=str(escrow_id),
                             outcome="failure",
                             details={"error": exc.kind, "message": exc.message,
                                      "state": "generated"})
        raise
    with transaction(ctx.sessions) as session:                                  # step 5
        stored = session.get(models.Escrow, escrow_id)
        assert stored is not None
        stored.state = "escrowed"
        stored.certificate_ca, stored.certificate_serial = issued.ca, issued.serial
        session.flush()
        audit.record_event(session, actor=actor, action="kmc.escrow",
                           object_type="kmc-escrow", object_id=str(escrow_id),
                           outcome="success",
                           details={"owner": owner.ref, "certificate": f"{issued.ca}/"
                                    f"{issued.serial}", "profile": prof.name,
                                    "public_key_sha256": fingerprint})
        return record_of(stored)


# ---------------------------------------------------------------------------------------------
# Reading


def get_escrow_unchecked(ctx: CaContext, escrow_id: int) -> EscrowRecord:
    """For callers that authorised access another way (delivery by enrollment code)."""
    with transaction(ctx.sessions) as session:
        row = session.get(models.Escrow, escrow_id)
        if row is None:
            raise EscrowNotFound(f"no escrowed key {escrow_id}", escrow=escrow_id)
        return record_of(row)


def find_escrow(ctx: CaContext, *, actor: str, action: str, escrow_id: int | None = None,
                ca: str | None = None, serial: str | None = None) -> EscrowRecord:
    """An escrowed key by id or by its certificate. A certificate whose key signs is refused
    (SigningKeyNotEscrowable, audited under ``action``): signing keys are never exported."""
    if (escrow_id is None) == (serial is None):
        raise ValidationError("name the escrowed key by id or by certificate serial",
                              field="escrow")
    if escrow_id is not None:
        return get_escrow_unchecked(ctx, escrow_id)
    assert serial is not None
    with transaction(ctx.sessions) as session:
        cert = find_certificate(session, serial, ca)
        row = session.scalar(select(models.Escrow).where(
            models.Escrow.certificate_ca == cert.ca,
            models.Escrow.certificate_serial == cert.serial))
        found = record_of(row) if row is not None else None
    if found is not None:
        return found
    usages = signing_usages_of_certificate(cert.certificate()) if cert.certificate_der \
        else {"(unsigned reservation)"}
    if usages:
        exc = SigningKeyNotEscrowable(
            f"refused: certificate {cert.ca}/{cert.serial} ({cert.profile}) is for a signing "
            f"key (keyUsage {', '.join(sorted(usages))}); signing keys are never escrowed, "
            f"exported or recovered", certificate=f"{cert.ca}/{cert.serial}")
        refuse_signing_key(ctx, actor=actor, action=action, object_type="certificate",
                           object_id=f"{cert.ca}/{cert.serial}", exc=exc)
        raise exc
    raise EscrowNotFound(f"certificate {cert.ca}/{cert.serial} has no escrowed key")


def list_escrows(ctx: CaContext, actor: Actor, *, owner_ref: str | None = None,
                 page: int = 1, per_page: int = 50) -> tuple[list[EscrowRecord], int]:
    """Escrowed keys ``actor`` may see (kmc.escrow.view), newest first; (page, total)."""
    if page < 1 or not 1 <= per_page <= 500:
        raise ValidationError("page must be ≥ 1 and per_page 1..500", field="page")
    prefix = visible_path(actor, ESCROW_VIEW)
    if prefix is None:
        authorize(ctx.sessions, actor, ESCROW_VIEW, actor.organisation.path,
                  object_type="kmc-escrow", object_id="")
        prefix = actor.organisation.path  # not reached: authorize raised
    with transaction(ctx.sessions) as session:
        where = [models.Escrow.organisation_path.startswith(prefix, autoescape=True)]
        if owner_ref is not None:
            where.append(models.Escrow.owner_ref == owner_ref)
        return _page(session, where, page, per_page)


def _page(session: Session, where: Sequence[ColumnElement[bool]], page: int, per_page: int
          ) -> tuple[list[EscrowRecord], int]:
    base = select(models.Escrow).where(*where)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.scalars(base.order_by(models.Escrow.id.desc())
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return [record_of(r) for r in rows], total
