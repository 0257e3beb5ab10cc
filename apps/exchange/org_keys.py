"""Organisations' keys for the exchange: a seal (signs headers and receipts) and an encryption
key (opens bodies), registered by organisation code.

Who holds what (docs/exchange.md, "Organisation keys"):

* the **seal** (``department-seal`` certificate) is a signing key in the server key store — the
  server-held department seal of :mod:`signing.seals` — generated here on the store the
  configuration names (PKCS#11 token or file store). It is never escrowed: only its holder
  ever signs with it.
* the **encryption key** (``org-encryption`` certificate) belongs to the key management centre:
  :func:`kmc.org_keys.provision_org_encryption_key` escrows it and installs it on the HSM (or,
  with the embedded file store, makes it a file key); this module records which URI and
  certificate belong to which organisation.
* an organisation that keeps its keys on its own node registers only its certificates
  (``key_uri`` empty): the hub can then check its seal's signatures and others can encrypt to
  it, while the server can neither sign nor open anything for it.

Lookups check what the exchange depends on before use: a recipient's encryption certificate
must be unexpired and good in the CA's store (``ca.status``) at the moment of sending, and a
signature counts as an organisation's only when its certificate is that organisation's
registered seal.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from apps.exchange import models
from apps.exchange.errors import OrgKeyMissing, RecipientKeyInvalid, ValidationError
from apps.exchange.header import OrgName
from apps.exchange.package import SealKey
from apps.exchange.policy import ExchangePolicy
from ca.context import CaContext
from ca.issuance import CertificateRequest, issue_certificate
from ca.status import status as certificate_status
from ca.store import chain_der, find_certificate
from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from kmc.escrow import KeyOwner
from kmc.org_keys import csr_for, org_decryptor, provision_org_encryption_key, server_key_uri
from policies.names import check_subject, format_subject
from policies.profiles import get_profile
from ra.officials import subject_pairs
from ra.orgs import ancestors, get_organisation
from signing.cms_envelope import Decryptor

SEAL_PROFILE: Final = "department-seal"
ENCRYPTION_PROFILE: Final = "org-encryption"
PROFILE_OF: Final = {"seal": SEAL_PROFILE, "encryption": ENCRYPTION_PROFILE}
AUDIT_ACTION: Final = "exchange.org-key"


@dataclass(frozen=True)
class OrgKeyRecord:
    id: int
    org_code: str
    purpose: str
    key_uri: str | None
    certificate_ca: str
    certificate_serial: str
    escrow_id: int | None
    protection: str
    state: str
    created_by: str
    created_at: dt.datetime

    @property
    def server_held(self) -> bool:
        return self.key_uri is not None

    def as_dict(self) -> dict[str, object]:
        return {"org": self.org_code, "purpose": self.purpose, "key_uri": self.key_uri,
                "certificate": f"{self.certificate_ca}/{self.certificate_serial}",
                "escrow_id": self.escrow_id, "protection": self.protection,
                "state": self.state, "created_by": self.created_by,
                "created_at": self.created_at.isoformat()}


def _record(row: models.OrgKey) -> OrgKeyRecord:
    return OrgKeyRecord(row.id, row.org_code, row.purpose, row.key_uri, row.certificate_ca,
                        row.certificate_serial, row.escrow_id, row.protection, row.state,
                        row.created_by, row.created_at)


def org_name(session: Session, code: str) -> OrgName:
    """An organisation of ra's tree as the exchange names it; ValidationError if unknown."""
    try:
        org = get_organisation(session, code)
    except GovpkiError:
        raise ValidationError(f"no organisation with code {code!r}", field="organisation",
                              code=code) from None
    return OrgName(org.code, org.name)


def _subject(session: Session, code: str, profile: str) -> str:
    org = get_organisation(session, code)
    pairs = subject_pairs(ancestors(session, org), org.name, None)
    return format_subject(check_subject(pairs, get_profile(profile).subject_rules))


def _label(purpose: str, code: str) -> str:
    """A key label unique on a shared token or store (a second provisioning never collides)."""
    return f"exchange-{purpose}-{code}-{secrets.token_hex(4)}"


def _store(ctx: CaContext, org_code: str, purpose: str, key_uri: str | None, ca: str,
           serial: str, escrow_id: int | None, protection: str, actor: str) -> OrgKeyRecord:
    with transaction(ctx.sessions) as session:
        row = models.OrgKey(org_code=org_code, purpose=purpose, key_uri=key_uri,
                            certificate_ca=ca, certificate_serial=serial, escrow_id=escrow_id,
                            protection=protection, state="active", created_by=actor,
                            created_at=utcnow())
        session.add(row)
        session.flush()
        audit.record_event(session, actor=actor, action=AUDIT_ACTION,
                           object_type="organisation", object_id=org_code, outcome="success",
                           details={"purpose": purpose, "key_uri": key_uri,
                                    "certificate": f"{ca}/{serial}", "protection": protection})
        return _record(row)


def provision(ctx: CaContext, org_code: str, *, policy: ExchangePolicy, actor: str,
              purposes: Sequence[str] = ("seal", "encryption")) -> list[OrgKeyRecord]:
    """Make an organisation's server-held seal and/or encryption key and register them.

    The seal key is generated in the server key store and certified ``department-seal``; the
    encryption key comes from the KMC (:mod:`kmc.org_keys`). Earlier keys stay registered
    (documents encrypted to them still open); the newest active one is used for new work.
    """
    unknown = [p for p in purposes if p not in PROFILE_OF]
    if unknown or not purposes:
        raise ValidationError(f"key purposes are {', '.join(PROFILE_OF)}", field="purpose")
    with transaction(ctx.sessions) as session:
        org_name(session, org_code)
        org = get_organisation(session, org_code)
        subjects = {p: _subject(session, org_code, PROFILE_OF[p]) for p in purposes}
    out = []
    for purpose in purposes:
        if purpose == "seal":
            out.append(_provision_seal(ctx, org_code, subjects[purpose], policy, actor))
        else:
            owner = KeyOwner("organisation", f"ra-org:{org_code}", org.code, org.path)
            key = provision_org_encryption_key(ctx, owner, ca=policy.ca,
                                               subject=subjects[purpose],
                                               label=_label("enc", org_code), actor=actor)
            out.append(_store(ctx, org_code, "encryption", key.key_uri, key.certificate_ca,
                              key.certificate_serial, key.escrow_id, key.protection, actor))
    return out


def _provision_seal(ctx: CaContext, org_code: str, subject: str, policy: ExchangePolicy,
                    actor: str) -> OrgKeyRecord:
    profile = get_profile(SEAL_PROFILE)
    uri = server_key_uri(ctx.config, _label("seal", org_code))
    try:
        signer = ctx.keyring.generate(uri, profile.key_types[0])
        issued = issue_certificate(ctx, CertificateRequest(
            ca=policy.ca, profile=SEAL_PROFILE, csr=csr_for(signer), subject=subject,
            requested_by=actor, subscriber_ref=f"ra-org:{org_code}"))
    except GovpkiError as exc:
        audit.record_refusal(ctx.sessions, actor=actor, action=AUDIT_ACTION,
                             object_type="organisation", object_id=org_code, outcome="failure",
                             details={"purpose": "seal", "error": exc.kind,
                                      "message": exc.message})
        raise
    protection = "hsm" if uri.startswith("pkcs11:") else "file"
    return _store(ctx, org_code, "seal", uri, issued.ca, issued.serial, None, protection, actor)


def register_certificate(ctx: CaContext, org_code: str, purpose: str, *, ca: str, serial: str,
                         actor: str) -> OrgKeyRecord:
    """Register a certificate whose key the organisation keeps on its own node. The
    certificate must be issued by the exchange CA with the purpose's profile."""
    profile = PROFILE_OF.get(purpose)
    if profile is None:
        raise ValidationError(f"purpose must be one of {', '.join(PROFILE_OF)}",
                              field="purpose")
    with transaction(ctx.sessions) as session:
        org_name(session, org_code)
        record = find_certificate(session, serial, ca)
    if record.profile != profile or record.state != "issued":
        raise ValidationError(f"certificate {record.ca}/{record.serial} is a {record.profile} "
                              f"certificate; a {purpose} key needs {profile}", field="serial")
    return _store(ctx, org_code, purpose, None, record.ca, record.serial, None, "own", actor)


def list_keys(ctx: CaContext, org_code: str | None = None) -> list[OrgKeyRecord]:
    with transaction(ctx.sessions) as session:
        query = select(models.OrgKey).order_by(models.OrgKey.org_code, models.OrgKey.id)
        if org_code is not None:
            query = query.where(models.OrgKey.org_code == org_code)
        return [_record(r) for r in session.scalars(query)]


# -- lookups ---------------------------------------------------------------------------------------


def _rows(session: Session, org_code: str, purpose: str) -> list[models.OrgKey]:
    """Active keys of one purpose, newest first."""
    return list(session.scalars(select(models.OrgKey).where(
        models.OrgKey.org_code == org_code, models.OrgKey.purpose == purpose,
        models.OrgKey.state == "active").order_by(models.OrgKey.id.desc())))


def _usable(session: Session, row: models.OrgKey, now: dt.datetime
            ) -> tuple[x509.Certificate | None, str]:
    """The row's certificate if it is good and unexpired now, else (None, why not)."""
    record = find_certificate(session, row.certificate_serial, row.certificate_ca)
    state = certificate_status(session, row.certificate_ca, row.certificate_serial)
    if state is None or record.certificate_der is None:
        return None, "was never issued"
    if state.status != "good":
        return None, f"is {state.status}"
    cert = record.certificate()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return None, f"is not valid now (valid until {cert.not_valid_after_utc:%Y-%m-%d})"
    return cert, ""


def trust_chain(session: Session, ca: str) -> tuple[tuple[x509.Certificate, ...],
                                                    x509.Certificate]:
    """(issuing chain without the root, root) of the exchange CA."""
    chain = [x509.load_der_x509_certificate(d) for d in chain_der(session, ca)]
    return tuple(chain[:-1]), chain[-1]


def seal_key(ctx: CaContext, org_code: str, policy: ExchangePolicy) -> SealKey:
    """The organisation's newest usable server-held seal."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        why = "has no seal registered (`govpki exchange org-keys init`)"
        for row in _rows(session, org_code, "seal"):
            if row.key_uri is None:
                why = "keeps its seal on its own node: the server cannot sign for it"
                continue
            cert, problem = _usable(session, row, now)
            if cert is None:
                why = f"has no usable seal: certificate {row.certificate_ca}/" \
                      f"{row.certificate_serial} {problem}"
                continue
            chain, _root = trust_chain(session, row.certificate_ca)
            uri = row.key_uri
            break
        else:
            raise OrgKeyMissing(f"organisation {org_code} {why}", organisation=org_code)
    return SealKey(ctx.keyring.get(uri), cert, chain)


def encryption_certificates(ctx: CaContext, org_codes: Sequence[str]
                            ) -> dict[str, x509.Certificate]:
    """Every recipient's newest encryption certificate that is good and unexpired right now
    (checked in the CA's store before anything is encrypted to it); RecipientKeyInvalid names
    each recipient without one."""
    now = utcnow()
    out: dict[str, x509.Certificate] = {}
    problems: list[str] = []
    with transaction(ctx.sessions) as session:
        for code in org_codes:
            why = "has no encryption certificate"
            for row in _rows(session, code, "encryption"):
                cert, problem = _usable(session, row, now)
                if cert is not None:
                    out[code] = cert
                    break
                why = f"has no valid encryption certificate ({row.certificate_ca}/" \
                      f"{row.certificate_serial} {problem})"
            if code not in out:
                problems.append(f"{code} {why}")
    if problems:
        raise RecipientKeyInvalid("cannot encrypt to every recipient: " + "; ".join(problems),
                                  recipients=", ".join(p.split(" ", 1)[0] for p in problems))
    return out


def is_registered_seal(session: Session, org_code: str, certificate: x509.Certificate) -> bool:
    """Whether ``certificate`` is a seal registered for ``org_code`` (any state: a retired
    seal's earlier signatures still speak for the organisation; revocation is checked by the
    signature verification itself)."""
    serial = format(certificate.serial_number, "x")
    der = certificate.public_bytes(Encoding.DER)
    for row in session.scalars(select(models.OrgKey).where(
            models.OrgKey.org_code == org_code, models.OrgKey.purpose == "seal",
            models.OrgKey.certificate_serial == serial)):
        record = find_certificate(session, row.certificate_serial, row.certificate_ca)
        if record.certificate_der == der:
            return True
    return False


def decryptors(ctx: CaContext, org_code: str
               ) -> list[tuple[Decryptor, x509.Certificate]]:
    """Every server-held decryption key of the organisation with its certificate, newest
    first (old keys too: documents sent to them must still open)."""
    with transaction(ctx.sessions) as session:
        rows = session.scalars(select(models.OrgKey).where(
            models.OrgKey.org_code == org_code, models.OrgKey.purpose == "encryption",
            models.OrgKey.key_uri.is_not(None)).order_by(models.OrgKey.id.desc())).all()
        found = [(r.key_uri, find_certificate(session, r.certificate_serial,
                                              r.certificate_ca).certificate()) for r in rows]
    if not found:
        raise OrgKeyMissing(f"the server holds no decryption key of organisation {org_code}: "
                            f"open its documents on its own node", organisation=org_code)
    return [(org_decryptor(ctx, uri), cert) for uri, cert in found if uri is not None]
