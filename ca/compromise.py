"""The key-compromise runbook for an issuing CA's key generation, as one audited procedure.

docs/OPERATIONS.md ("Key compromise") is the operator's side; this is what the command does:

1. the declaration is recorded (``ca.compromise.declare``);
2. the generation's CA certificate is revoked at the parent CA with reason cACompromise
   (RFC 5280 §5.3.1) and the parent's CRLs are published, so every relying party that checks
   the chain (``openssl verify -crl_check_all``) refuses everything the key ever signed;
3. if the compromised key is the CA's newest, a new generation is made (ca/rollover.py), so
   issuance goes on under a clean key;
4. every certificate the compromised generation signed that has neither expired nor been
   revoked is listed; each is re-issued under the newest generation — the same subject,
   public key, SANs and profile, ending no later than the original (the subscriber's key was
   not compromised, only the CA's, and proof of possession was given when it was first
   certified) — or, with ``reissue=False``, left for the RA's re-key workflow;
5. each listed certificate is revoked with reason cACompromise and the CA's CRLs are published,
   so clients that check only the leaf (OCSP, CRL of the old generation) see it too.

The old generation keeps publishing its CRL and answering OCSP (through its own delegated
signer, whose key is not the compromised one) until its certificates expire: those answers say
"revoked". Each step is idempotent, so a run interrupted half-way is simply run again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from sqlalchemy import select

from ca.context import CaContext
from ca.crl import publish_crls
from ca.errors import CaError, InvalidStatusChange
from ca.issuance import IssuedCertificate, sign_and_record
from ca.issuer import invalidate_issuers, load_issuer
from ca.models import Authority, Certificate, ServiceKey
from ca.plan import plan_for
from ca.revocation import revoke
from ca.rollover import RolloverResult, publish_keys_changed, rollover
from ca.status import generation_filter
from ca.store import CertificateRecord, authority_row, current_generation, generation_row
from ca.store import find_certificate as _find
from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from hsm.signer import Signer
from policies.profiles import get_profile

REASON = "cACompromise"


class CompromiseRefused(CaError):
    kind = "compromise-refused"
    http_status = 409


@dataclass(frozen=True)
class Affected:
    """One certificate the compromised key signed, and what the runbook did with it."""

    serial: str
    profile: str
    subject: str
    not_after: dt.datetime
    subscriber_ref: str | None
    action: str  # reissued | reissue-through-ra | ca-rollover-needed | kept | failed
    replacement: str | None = None  # serial of the re-issued certificate
    note: str = ""


@dataclass(frozen=True)
class CompromiseReport:
    ca: str
    generation: int
    parent: str
    ca_serial: str
    new_generation: int
    rollover: RolloverResult | None
    affected: list[Affected] = field(default_factory=list)

    def as_json(self, notify: Callable[[str | None], dict[str, str] | None] = lambda _r: None
                ) -> dict[str, object]:
        """The report as the CLI writes it; ``notify`` says whom to tell about each affected
        certificate, from its subscriber reference (the composition root asks the RA)."""
        return {
            "ca": self.ca, "compromised_generation": self.generation, "parent": self.parent,
            "revoked_ca_certificate": self.ca_serial, "new_generation": self.new_generation,
            "rolled_over": self.rollover is not None,
            "affected": [{"serial": a.serial, "profile": a.profile, "subject": a.subject,
                          "not_after": a.not_after.isoformat(),
                          "subscriber_ref": a.subscriber_ref, "action": a.action,
                          "replacement": a.replacement, "note": a.note,
                          "notify": notify(a.subscriber_ref)}
                         for a in self.affected],
        }


def declare_compromise(ctx: CaContext, ca: str, *, actor: str, generation: int | None = None,
                       reissue: bool = True, key_uri: str | None = None,
                       ocsp_key_uri: str | None = None, parent_signer: Signer | None = None,
                       now: dt.datetime | None = None) -> CompromiseReport:
    """Walk the runbook for generation ``generation`` (default: the newest) of CA ``ca``.

    ``parent_signer``: the parent's key from a token the key ring does not hold (the offline
    root, brought out): it signs the parent's CRL and the new generation's certificate."""
    try:
        with transaction(ctx.sessions) as session:
            auth = authority_row(session, ca)
            if auth.parent_id is None:
                raise CompromiseRefused(
                    f"CA '{ca}' is a root: a compromised root is replaced by a new root "
                    "ceremony and a new trust anchor on every relying party "
                    "(docs/OPERATIONS.md, Key compromise)", ca=ca)
            parent = session.get(Authority, auth.parent_id)
            assert parent is not None
            newest = current_generation(session, auth).number
            gen = generation_row(session, auth, generation or newest)
            number, parent_name = gen.number, parent.name
            ca_cert = session.get(Certificate, gen.certificate_id)
            assert ca_cert is not None
            ca_serial = ca_cert.serial
    except GovpkiError as exc:
        audit.record_refusal(ctx.sessions, actor=actor, action="ca.compromise",
                             object_type="ca", object_id=ca,
                             details={"error": exc.kind, "message": exc.message})
        raise
    with transaction(ctx.sessions) as session:                                    # 1
        audit.record_event(session, actor=actor, action="ca.compromise.declare",
                           object_type="ca", object_id=ca, outcome="success",
                           details={"generation": number, "ca_serial": ca_serial,
                                    "parent": parent_name, "reissue": reissue})
    try:                                                                          # 2
        revoke(ctx, ca_serial, REASON, ca=parent_name, actor=actor)
    except InvalidStatusChange:
        pass  # revoked by an earlier, interrupted run
    publish_crls(ctx, parent_name, actor=actor, signer=parent_signer)
    invalidate_issuers(ctx)
    result = None
    if number == newest:                                                          # 3
        result = rollover(ctx, ca, actor=actor, key_uri=key_uri, ocsp_key_uri=ocsp_key_uri,
                          parent_signer=parent_signer, reason="compromise")
    affected = [_handle(ctx, record, actor=actor, reissue=reissue)                # 4, 5
                for record in _affected(ctx, ca, number, now or utcnow())]
    publish_crls(ctx, ca, actor=actor)
    report = CompromiseReport(ca, number, parent_name, ca_serial,
                              result.generation if result else newest, result, affected)
    with transaction(ctx.sessions) as session:
        counts: dict[str, int] = {}
        for item in affected:
            counts[item.action] = counts.get(item.action, 0) + 1
        audit.record_event(session, actor=actor, action="ca.compromise.complete",
                           object_type="ca", object_id=ca, outcome="success",
                           details={"generation": number, "new_generation":
                                    report.new_generation, "affected": counts})
    return report


def _affected(ctx: CaContext, ca: str, number: int, now: dt.datetime
              ) -> list[tuple[CertificateRecord, str | None]]:
    """(certificate, service role or None) for every unexpired, unrevoked certificate the
    generation signed, oldest first."""
    with transaction(ctx.sessions) as session:
        auth = authority_row(session, ca)
        roles = dict(session.execute(select(ServiceKey.certificate_id, ServiceKey.role).where(
            ServiceKey.authority_id == auth.id)).all())
        rows = session.scalars(select(Certificate).where(
            Certificate.authority_id == auth.id, Certificate.state == "issued",
            Certificate.not_after > now, Certificate.status != "revoked",
            generation_filter(session, auth.id, number)).order_by(Certificate.id)).all()
        return [(_find(session, row.serial, ca), roles.get(row.id)) for row in rows]


def _handle(ctx: CaContext, item: tuple[CertificateRecord, str | None], *, actor: str,
            reissue: bool) -> Affected:
    record, role = item
    replacement, action, note = None, "reissue-through-ra", ""
    ref = record.subscriber_ref or ""
    if role == "ocsp-signer":
        # Its key is not the compromised one: it goes on answering "revoked" for the old
        # generation's certificates until they expire.
        action, note = "kept", "delegated OCSP signer of the compromised generation"
    elif ref.startswith("ca:"):
        action = "ca-rollover-needed"
        note = f"a CA certificate: run `govpki ca rollover {ref[3:]}`"
    elif reissue:
        try:
            replacement = reissue_certificate(ctx, record, actor=actor, role=role).serial
            action = "reissued"
        except GovpkiError as exc:
            action, note = "failed", f"{exc.kind}: {exc.message}"
    if action != "kept":
        try:
            revoke(ctx, record.serial, REASON, ca=record.ca, actor=actor)
        except InvalidStatusChange:
            pass  # revoked by an earlier, interrupted run
    return Affected(record.serial, record.profile, record.subject, record.not_after,
                    record.subscriber_ref, action, replacement, note)


def reissue_certificate(ctx: CaContext, record: CertificateRecord, *, actor: str,
                        role: str | None = None) -> IssuedCertificate:
    """Certify the same key, subject, SANs and profile again under the CA's newest generation,
    ending no later than the original. A service key (TSA) gets a new service-key row, so it
    presents the new certificate from now on."""
    old = record.certificate()
    profile = get_profile(record.profile)
    try:
        san = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    with transaction(ctx.sessions) as session:
        issuer = load_issuer(session, ctx, record.ca, utcnow())
    public_key = old.public_key()
    plan = plan_for(
        profile, public_key, ctx.config.public_base_url, issuer.name,
        generation=issuer.generation,
        san_dns=tuple(san.get_values_for_type(x509.DNSName)),
        san_ip=tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
        san_email=tuple(san.get_values_for_type(x509.RFC822Name)))
    issued = sign_and_record(
        ctx, issuer=issuer, profile=profile, plan=plan, subject=old.subject,
        public_key=public_key,
        validity_days=profile.validity_days, requested_by=actor,
        subscriber_ref=record.subscriber_ref, not_after_cap=record.not_after)
    with transaction(ctx.sessions) as session:
        if role is not None:
            old_key = session.scalar(select(ServiceKey).where(
                ServiceKey.certificate_id == record.id))
            new_row = session.scalar(select(Certificate.id).where(
                Certificate.authority_id == issuer.authority_id,
                Certificate.serial == issued.serial))
            if old_key is not None and new_row is not None:
                session.add(ServiceKey(role=old_key.role, authority_id=old_key.authority_id,
                                       key_uri=old_key.key_uri, certificate_id=new_row,
                                       created_at=utcnow()))
                publish_keys_changed(session, record.ca, issuer.generation, old_key.role)
        audit.record_event(session, actor=actor, action="ca.reissue",
                           object_type="certificate", object_id=f"{record.ca}/{record.serial}",
                           outcome="success",
                           details={"replacement": issued.serial, "reason": REASON,
                                    "generation": issuer.generation,
                                    "not_after": issued.not_after.isoformat(),
                                    "subscriber_ref": record.subscriber_ref})
    return issued


__all__ = ["Affected", "CompromiseRefused", "CompromiseReport", "declare_compromise",
           "reissue_certificate"]
