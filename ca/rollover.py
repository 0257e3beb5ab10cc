"""Issuing-CA key rollover, and the retirement of key generations that have nothing left to sign.

A rollover is a small key ceremony (every step an audit event, like ca/ceremony.py): a new key in
the key store that holds the current one (file or PKCS#11), certified by the parent CA with the
same subject, recorded as the CA's next generation. From then on the CA issues under the new
generation, while the previous ones keep signing, each for the certificates it issued:

- its own CRL at its own URL (ca/plan.py: generation 1 keeps ``/crl/<ca>.crl``, generation N
  publishes ``/crl/<ca>/gN.crl``), because a CRL verifies only under the key that signed the
  certificate (RFC 5280 §6.3.3 (f), OpenSSL);
- OCSP answers through a delegated signer certified by that generation (RFC 6960 §4.2.2.2: the
  responder certificate is issued by the CA that issued the certificate asked about), found by
  the request's issuerKeyHash. A rollover therefore certifies a new OCSP signer under the new
  generation when the CA had one.

:func:`retire_finished` (a scheduler job) retires a generation once the last certificate it
signed has expired: it then signs no more CRLs or OCSP answers, and its OCSP signer is no longer
renewed. Certificates of service keys (its own OCSP signer) do not keep a generation alive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.ceremony import KeySpec, ServiceSpec, certify_service
from ca.context import CaContext
from ca.errors import CaError, UnknownCa
from ca.issuance import IssuedCertificate, check_key, sign_and_record
from ca.issuer import Issuer, invalidate_issuers, load_issuer
from ca.models import Authority, Certificate, Generation, ServiceKey
from ca.plan import plan_for
from ca.status import generation_filter, service_key
from ca.store import authority_row, current_generation
from core import audit, events
from core.db import transaction, utcnow
from core.errors import GovpkiError
from hsm.algorithms import KeyType, key_type_of
from hsm.pkcs11_uri import Pkcs11Uri, parse_pkcs11_uri
from hsm.signer import Signer
from policies.profiles import get_profile

OCSP_SIGNER_ROLE = "ocsp-signer"


class RolloverRefused(CaError):
    """A rollover that cannot start: a root CA, a key name already taken, a parent key that
    does not match its certificate. Nothing was changed."""

    kind = "rollover-refused"
    http_status = 409


@dataclass(frozen=True)
class RolloverResult:
    ca: str
    previous_generation: int
    generation: int
    key_uri: str
    certificate: IssuedCertificate
    ocsp_key_uri: str | None
    ocsp_signer: IssuedCertificate | None


@dataclass(frozen=True)
class Retirement:
    ca: str
    generation: int
    reason: str
    at: dt.datetime


@dataclass(frozen=True)
class GenerationSummary:
    """One generation as the CA administrator sees it (``govpki ca generations``)."""

    ca: str
    number: int
    key_uri: str
    serial: str
    status: str  # of its certificate, in the parent's store: good | revoked | hold
    not_before: dt.datetime
    not_after: dt.datetime
    current: bool
    retired_at: dt.datetime | None
    retired_reason: str | None
    unexpired: int  # certificates it signed that have not expired (service keys excluded)


def publish_keys_changed(session: Session, ca: str, generation: int, change: str) -> None:
    """Tell OCSP responders (this process at commit, others through NOTIFY on PostgreSQL) to
    re-read the CA's generations and signers now rather than at their next periodic reload."""
    events.publish(session, {"type": "ca-keys", "ca": ca, "generation": generation,
                             "change": change})


def sibling_key_uri(uri: str, label: str) -> str:
    """A key named ``label`` in the same store (and token) as ``uri``."""
    if uri.startswith("pkcs11:"):
        ref = parse_pkcs11_uri(uri)
        return Pkcs11Uri(token=ref.token, object=label).format()
    return f"{uri.split(':', 1)[0]}:{label}"


@dataclass(frozen=True)
class _Plan:
    """Everything a rollover needs, checked before anything is written."""

    ca: str
    parent: str
    profile: str
    number: int
    previous: int
    subject: x509.Name
    key_uri: str
    key_type: KeyType
    validity_days: int
    ocsp: tuple[str, KeyType, str, str] | None  # key URI, type, subject, profile


def _preflight(ctx: CaContext, ca: str, *, key_uri: str | None, key_type: KeyType | None,
               validity_days: int | None, ocsp_key_uri: str | None) -> _Plan:
    with transaction(ctx.sessions) as session:
        auth = authority_row(session, ca)
        if auth.parent_id is None:
            raise RolloverRefused(
                f"CA '{ca}' is a root: a new root key is a new trust anchor, made by a root "
                "ceremony and distributed to relying parties (docs/OPERATIONS.md, Key custody)",
                ca=ca)
        parent = session.get(Authority, auth.parent_id)
        assert parent is not None
        current = current_generation(session, auth)
        try:
            signer_record = service_key(session, ca, OCSP_SIGNER_ROLE,
                                        generation=current.number)
        except UnknownCa:
            signer_record = None
        signer_profile = None
        if signer_record is not None:
            signer_profile = session.scalar(select(Certificate.profile).where(
                Certificate.authority_id == auth.id,
                Certificate.serial == signer_record.serial))
        profile_name, parent_name = auth.profile, parent.name
        current_der, current_uri, previous = (current.certificate_der, current.key_uri,
                                              current.number)
    number = previous + 1
    cert = x509.load_der_x509_certificate(current_der)
    key_uri = key_uri or sibling_key_uri(current_uri, f"{ca}-ca-{number}")
    key_type = key_type or key_type_of(cert.public_key())
    profile = get_profile(profile_name)
    if not profile.allows_key_type(key_type.value):
        raise RolloverRefused(f"profile {profile_name} of CA '{ca}' does not allow "
                              f"{key_type.value} keys (allowed: {', '.join(profile.key_types)})",
                              ca=ca)
    validity_days = validity_days or profile.validity_days
    if not 0 < validity_days <= profile.validity_days:
        raise RolloverRefused(f"validity of {validity_days} days is outside 1.."
                              f"{profile.validity_days} allowed by profile {profile_name}", ca=ca)
    ocsp = None
    if signer_record is not None:
        ocsp_key_uri = ocsp_key_uri or sibling_key_uri(signer_record.key_uri,
                                                       f"{ca}-ocsp-{number}")
        signer_cert = signer_record.certificate()
        ocsp = (ocsp_key_uri, key_type_of(signer_cert.public_key()),
                signer_cert.subject.rfc4514_string(), signer_profile or OCSP_SIGNER_ROLE)
    elif ocsp_key_uri is not None:
        raise RolloverRefused(f"CA '{ca}' has no OCSP signer to renew under the new key", ca=ca)
    taken = [u for u in (key_uri, ocsp[0] if ocsp else None)
             if u is not None and ctx.keyring.exists(u)]
    if len({key_uri, ocsp[0] if ocsp else None}) < (2 if ocsp else 1):
        raise RolloverRefused("the CA key and the OCSP signer key must have different names",
                              ca=ca)
    if taken:
        raise RolloverRefused(f"key(s) {', '.join(taken)} already exist in the key store; "
                              "choose another label (nothing was changed)", ca=ca)
    return _Plan(ca, parent_name, profile_name, number, previous, cert.subject, key_uri,
                 key_type, validity_days, ocsp)


def _parent_issuer(ctx: CaContext, parent: str, parent_signer: Signer | None) -> Issuer:
    """The parent's newest generation, signing with ``parent_signer`` when its key lives on a
    token this process's key ring does not hold (an offline root brought out for the event)."""
    with transaction(ctx.sessions) as session:
        issuer = load_issuer(session, ctx, parent, utcnow(), signer=parent_signer)
    spki = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    if parent_signer is not None and parent_signer.public_key().public_bytes(*spki) \
            != issuer.public_key.public_bytes(*spki):
        raise RolloverRefused(f"the key {parent_signer.key_uri} is not the key of CA "
                              f"'{parent}' (its public key differs from the CA certificate's)",
                              ca=parent)
    return issuer


def rollover(ctx: CaContext, ca: str, *, actor: str, key_uri: str | None = None,
             key_type: KeyType | None = None, validity_days: int | None = None,
             ocsp_key_uri: str | None = None, parent_signer: Signer | None = None,
             reason: str = "scheduled",
             progress: Callable[[str], None] = lambda _m: None) -> RolloverResult:
    """Make generation N+1 of issuing CA ``ca``: key, certificate from the parent, OCSP signer.

    Defaults: the key beside the current one, labelled ``<ca>-ca-<N+1>``, of the current key's
    type; the profile's validity; an OCSP signer ``<ca>-ocsp-<N+1>`` when the CA has one.
    Refusals change nothing and are audited; from the new generation's row on, issuance in this
    process uses it at once (other processes within ca.issuer.ISSUER_CACHE_SECONDS).
    """
    try:
        plan = _preflight(ctx, ca, key_uri=key_uri, key_type=key_type,
                          validity_days=validity_days, ocsp_key_uri=ocsp_key_uri)
        parent = _parent_issuer(ctx, plan.parent, parent_signer)
    except GovpkiError as exc:
        audit.record_refusal(ctx.sessions, actor=actor, action="ca.rollover", object_type="ca",
                             object_id=ca, details={"error": exc.kind, "message": exc.message})
        raise
    with transaction(ctx.sessions) as session:
        audit.record_event(session, actor=actor, action="ca.rollover.start", object_type="ca",
                           object_id=ca, outcome="success",
                           details={"from_generation": plan.previous,
                                    "generation": plan.number, "key_uri": plan.key_uri,
                                    "key_type": plan.key_type.value, "parent": plan.parent,
                                    "parent_key_uri": parent.signer.key_uri, "reason": reason})
    progress(f"generating {plan.key_type.value} key {plan.key_uri}")
    signer = _generate(ctx, plan.key_uri, plan.key_type, actor, f"ca:{ca}:g{plan.number}")
    progress(f"certifying generation {plan.number} of CA '{ca}' by CA '{plan.parent}'")
    profile = get_profile(plan.profile)
    check_key(signer.public_key(), profile)
    cert = sign_and_record(
        ctx, issuer=parent, profile=profile,
        plan=plan_for(profile, signer.public_key(), ctx.config.public_base_url, parent.name,
                      generation=parent.generation),
        subject=plan.subject, public_key=signer.public_key(),  # type: ignore[arg-type]
        validity_days=plan.validity_days, requested_by=actor, subscriber_ref=f"ca:{ca}",
    )
    try:
        with transaction(ctx.sessions) as session:
            auth = authority_row(session, ca)
            row = session.scalars(select(Certificate).where(
                Certificate.authority_id == parent.authority_id,
                Certificate.serial == cert.serial)).one()
            session.add(Generation(
                authority_id=auth.id, number=plan.number, key_uri=signer.key_uri,
                certificate_id=row.id, certificate_der=cert.der, not_before=cert.not_before,
                not_after=cert.not_after, created_at=utcnow()))
            session.flush()
            audit.record_event(session, actor=actor, action="ca.generation.create",
                               object_type="ca", object_id=ca, outcome="success",
                               details={"generation": plan.number, "serial": cert.serial,
                                        "key_uri": signer.key_uri, "parent": plan.parent,
                                        "not_after": cert.not_after.isoformat()})
            publish_keys_changed(session, ca, plan.number, "created")
    except IntegrityError:
        lost = RolloverRefused(f"another rollover of CA '{ca}' made generation {plan.number} "
                               f"first; certificate {cert.serial} was signed but is not used",
                               ca=ca)
        audit.record_refusal(ctx.sessions, actor=actor, action="ca.rollover", object_type="ca",
                             object_id=ca, outcome="failure",
                             details={"error": lost.kind, "message": lost.message})
        raise lost from None
    invalidate_issuers(ctx)
    ocsp_cert = None
    if plan.ocsp is not None:
        ocsp_uri, ocsp_type, ocsp_subject, ocsp_profile = plan.ocsp
        progress(f"generating the OCSP signer key {ocsp_uri} for generation {plan.number}")
        ocsp_signer = _generate(ctx, ocsp_uri, ocsp_type, actor,
                                f"{OCSP_SIGNER_ROLE}:{ca}:g{plan.number}")
        ocsp_cert = certify_service(
            ctx, ServiceSpec(OCSP_SIGNER_ROLE, ca, ocsp_profile, KeySpec(ocsp_uri, ocsp_type),
                             ocsp_subject), ocsp_signer, actor, generation=plan.number)
    from ca.crl import publish_crls

    progress(f"publishing the CRLs of generation {plan.number}")
    publish_crls(ctx, ca, actor=actor, generation=plan.number)
    with transaction(ctx.sessions) as session:
        audit.record_event(session, actor=actor, action="ca.rollover", object_type="ca",
                           object_id=ca, outcome="success",
                           details={"from_generation": plan.previous,
                                    "generation": plan.number, "serial": cert.serial,
                                    "key_uri": signer.key_uri, "reason": reason,
                                    "ocsp_signer": ocsp_cert.serial if ocsp_cert else None})
    return RolloverResult(ca, plan.previous, plan.number, signer.key_uri, cert,
                          plan.ocsp[0] if plan.ocsp else None, ocsp_cert)


def _generate(ctx: CaContext, uri: str, key_type: KeyType, actor: str, purpose: str) -> Signer:
    signer = ctx.keyring.generate(uri, key_type)
    with transaction(ctx.sessions) as session:
        audit.record_event(session, actor=actor, action="ceremony.generate-key",
                           object_type="key", object_id=uri, outcome="success",
                           details={"key_type": key_type.value, "purpose": purpose})
    return signer


def _unexpired(session: Session, authority_id: int, number: int, now: dt.datetime) -> int:
    services = select(ServiceKey.certificate_id)
    return session.scalar(
        select(func.count()).select_from(Certificate).where(
            Certificate.authority_id == authority_id, Certificate.state == "issued",
            Certificate.not_after > now, generation_filter(session, authority_id, number),
            Certificate.id.not_in(services))) or 0


def retire_finished(ctx: CaContext, *, actor: str = "system:scheduler",
                    now: dt.datetime | None = None) -> list[Retirement]:
    """Retire every generation but the newest whose certificates have all expired (at
    ``now``): it signs no more CRLs and OCSP answers. Each retirement is an audit event."""
    now = now or utcnow()
    retired: list[Retirement] = []
    with transaction(ctx.sessions) as session:
        for auth in session.scalars(select(Authority).order_by(Authority.id)):
            newest = session.scalar(select(func.max(Generation.number)).where(
                Generation.authority_id == auth.id))
            gens = session.scalars(select(Generation).where(
                Generation.authority_id == auth.id, Generation.retired_at.is_(None),
                Generation.number != newest).order_by(Generation.number).with_for_update())
            for gen in gens:
                left = _unexpired(session, auth.id, gen.number, now)
                if left:
                    continue
                gen.retired_at, gen.retired_reason = now, "expired"
                retired.append(Retirement(auth.name, gen.number, "expired", now))
                audit.record_event(session, actor=actor, action="ca.generation.retire",
                                   object_type="ca", object_id=auth.name, outcome="success",
                                   details={"generation": gen.number, "reason": "expired",
                                            "at": now.isoformat()})
                publish_keys_changed(session, auth.name, gen.number, "retired")
    if retired:
        invalidate_issuers(ctx)
    return retired


def summaries(ctx: CaContext, ca: str, *, now: dt.datetime | None = None
              ) -> list[GenerationSummary]:
    now = now or utcnow()
    with transaction(ctx.sessions) as session:
        auth = authority_row(session, ca)
        gens = list(session.scalars(select(Generation).where(
            Generation.authority_id == auth.id).order_by(Generation.number)))
        out = []
        for gen in gens:
            cert = session.get(Certificate, gen.certificate_id)
            out.append(GenerationSummary(
                ca, gen.number, gen.key_uri, cert.serial if cert else "?",
                cert.status if cert else "good", gen.not_before, gen.not_after,
                gen.number == gens[-1].number, gen.retired_at, gen.retired_reason,
                _unexpired(session, auth.id, gen.number, now)))
        return out
