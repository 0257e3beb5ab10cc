"""Records retention: delete only what policies/retention.yaml (and the law's five years) allow.

What counts as a record, and the instant each is measured from (its *anchor*, the latest expiry
of any certificate it concerns), docs/CPS.md §5.5:

- a certificate (``ca_certificate``): its notAfter. Never deleted: the certificates of CA key
  generations (``ca_generation``), of service keys (OCSP signers, TSA) and any whose key the
  KMC holds in escrow (the KMC's archive outlives the certificate);
- a CRL (``ca_crl``): the latest notAfter of every certificate its CA had issued when the CRL
  was signed (any of them may be listed), and at least the CRL's own nextUpdate. The newest
  full and delta CRL of each CA key generation are never deleted (they are what is served);
- an RA request (``ra_request`` with its approvals, certificate links and enrollment codes —
  the vetting evidence): the latest notAfter of the certificates it names or issued; without
  any, the latest of its submission, decision and execution. Open requests are never deleted;
- the audit log: never deleted. Every event is a link of the hash chain; deleting old links
  would make ``govpki audit verify`` report a cut log. The job itself is an audit event.

A record is deleted only when its anchor is before :func:`policies.retention.cutoff`, i.e. at
least the policy's years (never fewer than five) have passed since it. Related rows go first
(RA requests before the certificates they name, CRLs before the certificates they list), so an
anchor is never computed after what it depends on has gone. This module is the composition
root's: it reads the tables of ca/, ra/, ocsp/ and kmc/ in one transaction per run.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import click
from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from ca.cli import ca_context
from ca.context import CaContext, default_actor
from ca.models import Authority, Certificate, Generation, PublishedCrl, ServiceKey
from core import audit
from core.db import transaction, utcnow
from kmc.models import Escrow
from ocsp.models import PresignedResponse
from policies.retention import (
    RECORD_KINDS,
    RetentionPolicy,
    cutoff,
    load_retention_policy,
)
from ra.models import Approval, EnrollmentCode, Request, RequestCertificate

OPEN_REQUEST_STATES = ("submitted", "approved")


@dataclass(frozen=True)
class RetentionReport:
    """What one run deleted (or, dry, would delete): per kind, the cutoff and the count."""

    now: dt.datetime
    dry_run: bool
    cutoffs: dict[str, dt.datetime]
    deleted: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"now": self.now.isoformat(), "dry_run": self.dry_run,
                "records": {kind: {"deleted": self.deleted.get(kind, 0),
                                   "expired_before": self.cutoffs[kind].isoformat()}
                            for kind in RECORD_KINDS}}


# --- which rows -------------------------------------------------------------------------------

def _certificate_ids(session: Session, before: dt.datetime) -> list[int]:
    """Certificates expired before ``before`` that nothing else needs."""
    escrowed = exists().where(Escrow.certificate_ca == Authority.name,
                              Escrow.certificate_serial == Certificate.serial)
    query = (select(Certificate.id)
             .join(Authority, Authority.id == Certificate.authority_id)
             .where(Certificate.not_after < before,
                    Certificate.id.not_in(select(Generation.certificate_id)),
                    Certificate.id.not_in(select(ServiceKey.certificate_id)),
                    ~escrowed))
    return list(session.scalars(query))


def _crl_ids(session: Session, before: dt.datetime) -> list[int]:
    """CRLs whose every listable certificate expired before ``before``."""
    listable = (select(func.max(Certificate.not_after))
                .where(Certificate.authority_id == PublishedCrl.authority_id,
                       Certificate.created_at <= PublishedCrl.this_update)
                .correlate(PublishedCrl).scalar_subquery())
    heads = (select(PublishedCrl.authority_id, func.max(PublishedCrl.number).label("number"))
             .group_by(PublishedCrl.authority_id, PublishedCrl.generation,
                       PublishedCrl.is_delta).subquery())
    newest = select(PublishedCrl.id).join(heads, and_(
        PublishedCrl.authority_id == heads.c.authority_id,
        PublishedCrl.number == heads.c.number))
    query = select(PublishedCrl.id).where(
        PublishedCrl.next_update < before,
        func.coalesce(listable, PublishedCrl.next_update) < before,
        PublishedCrl.id.not_in(newest))
    return list(session.scalars(query))


def _request_ids(session: Session, before: dt.datetime) -> list[int]:
    """Closed RA requests whose certificates (or, without any, whose own dates) are older."""
    linked = (select(func.max(Certificate.not_after))
              .select_from(RequestCertificate)
              .join(Authority, Authority.name == RequestCertificate.ca)
              .join(Certificate, and_(Certificate.authority_id == Authority.id,
                                      Certificate.serial == RequestCertificate.serial))
              .where(RequestCertificate.request_id == Request.id)
              .correlate(Request).scalar_subquery())
    # Its own dates count too: the anchor is the latest of them and of its certificates'
    # expiry. A certificate no longer in the store was deleted by an earlier run, so it
    # expired before that run's cutoff, which is before this one's.
    query = select(Request.id).where(
        Request.state.not_in(OPEN_REQUEST_STATES),
        Request.submitted_at < before,
        or_(Request.decided_at.is_(None), Request.decided_at < before),
        or_(Request.executed_at.is_(None), Request.executed_at < before),
        or_(linked.is_(None), linked < before))
    return list(session.scalars(query))


# --- the run ----------------------------------------------------------------------------------

def _in_chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def _delete_requests(session: Session, ids: list[int]) -> None:
    for chunk in _in_chunks(ids):
        session.execute(delete(EnrollmentCode).where(EnrollmentCode.request_id.in_(chunk)))
        session.execute(delete(Approval).where(Approval.request_id.in_(chunk)))
        session.execute(delete(RequestCertificate).where(
            RequestCertificate.request_id.in_(chunk)))
        session.execute(delete(Request).where(Request.id.in_(chunk)))


def _delete_crls(session: Session, ids: list[int]) -> None:
    for chunk in _in_chunks(ids):
        session.execute(delete(PublishedCrl).where(PublishedCrl.id.in_(chunk)))


def _delete_certificates(session: Session, ids: list[int]) -> None:
    for chunk in _in_chunks(ids):
        rows = session.execute(select(Authority.name, Certificate.serial)
                               .join(Authority, Authority.id == Certificate.authority_id)
                               .where(Certificate.id.in_(chunk))).all()
        for name, serial in rows:  # pre-signed OCSP answers about them: a cache, not a record
            session.execute(delete(PresignedResponse).where(PresignedResponse.ca == name,
                                                            PresignedResponse.serial == serial))
        session.execute(delete(Certificate).where(Certificate.id.in_(chunk)))


def run_retention(ctx: CaContext, policy: RetentionPolicy | None = None, *, actor: str,
                  now: dt.datetime | None = None, dry_run: bool = False) -> RetentionReport:
    """Delete every record the policy no longer requires, in one transaction, audited with the
    counts (a dry run deletes nothing and records nothing). Returns what was (would be)
    deleted."""
    policy = policy or load_retention_policy()
    now = now or utcnow()
    cutoffs = {kind: cutoff(now, policy.years_for(kind)) for kind in RECORD_KINDS}
    deleted: dict[str, int] = {}
    with transaction(ctx.sessions) as session:
        requests = _request_ids(session, cutoffs["ra_requests"])
        crls = _crl_ids(session, cutoffs["crls"])
        certificates = _certificate_ids(session, cutoffs["certificates"])
        deleted = {"ra_requests": len(requests), "crls": len(crls),
                   "certificates": len(certificates)}
        if not dry_run:
            _delete_requests(session, requests)
            _delete_crls(session, crls)
            _delete_certificates(session, certificates)
            audit.record_event(session, actor=actor, action="retention.run",
                               object_type="retention", object_id=now.date().isoformat(),
                               outcome="success",
                               details={"deleted": deleted,
                                        "years": {k: policy.years_for(k) for k in RECORD_KINDS},
                                        "expired_before": {k: v.isoformat()
                                                           for k, v in cutoffs.items()}})
    return RetentionReport(now, dry_run, cutoffs, deleted)


# --- `govpki retention` -----------------------------------------------------------------------

@click.group("retention")
def retention_group() -> None:
    """Records retention under the Electronic Signature Law (记录保存期限)."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path),
              default=None, help="Another retention policy file (default: "
                                 "policies/retention.yaml).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def run_cmd(dry_run: bool, policy_file: Path | None, as_json: bool) -> None:
    """Delete records kept longer than the policy requires (at least five years after the
    certificates they concern expired); the audit log is never deleted."""
    policy = load_retention_policy(policy_file)  # refused before anything is opened
    with ca_context() as ctx:
        report = run_retention(ctx, policy, actor=default_actor(), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    for kind in RECORD_KINDS:
        click.echo(f"{kind:14} {verb} {report.deleted.get(kind, 0):>8}  (concerning "
                   f"certificates expired before {report.cutoffs[kind]:%Y-%m-%d %H:%M}Z)")


__all__ = ["RetentionReport", "retention_group", "run_retention"]
