"""Revocation state: revoke, suspend (certificateHold) and release, with RFC 5280 reasons.

Every change is an audit event and a status-change event (core.events) in the same transaction,
so the OCSP responder (which ca/ does not import) hears of exactly the changes that committed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from ca.context import CaContext
from ca.errors import InvalidStatusChange
from ca.models import Authority, Certificate
from ca.store import CertificateRecord, find_certificate
from core import audit, events
from core.db import transaction, utcnow
from core.errors import GovpkiError

# RFC 5280 §5.3.1 CRLReason, by the names the RFC gives them. certificateHold is reached only
# through suspend(), removeFromCRL only through release() (it is a CRL entry, not a state).
REASONS: dict[str, int] = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}
REVOCATION_REASONS = tuple(r for r in REASONS if r not in ("certificateHold", "removeFromCRL"))


@dataclass(frozen=True)
class StatusChange:
    ca: str
    serial: str
    status: str
    reason: str | None
    at: dt.datetime


def _change(ctx: CaContext, serial: str, ca: str | None, *, actor: str, action: str,
            new_status: str, reason: str | None, allowed_from: tuple[str, ...],
            at: dt.datetime | None = None) -> StatusChange:
    try:
        with transaction(ctx.sessions) as session:
            record = find_certificate(session, serial, ca)
            row = session.scalar(
                select(Certificate).where(Certificate.id == record.id).with_for_update()
            )
            assert row is not None
            if row.state != "issued":
                raise InvalidStatusChange(f"serial {row.serial} was never issued")
            if row.status not in allowed_from:
                raise InvalidStatusChange(
                    f"cannot {action.split('.')[-1]} serial {row.serial}: it is {row.status}"
                )
            when = at or utcnow()
            row.status = new_status
            row.status_changed_at = utcnow()
            if new_status == "good":
                row.revoked_at = None
                row.revocation_reason = None
            else:
                row.revoked_at = when
                row.revocation_reason = reason
            authority = session.get(Authority, row.authority_id)
            assert authority is not None
            change = StatusChange(authority.name, row.serial, new_status, reason, when)
            audit.record_event(
                session, actor=actor, action=action, object_type="certificate",
                object_id=f"{authority.name}/{row.serial}", outcome="success",
                details={"status": new_status, "reason": reason, "at": when.isoformat(),
                         "previous": record.status},
            )
            events.publish(session, {
                "type": "certificate-status", "ca": authority.name, "serial": row.serial,
                "status": new_status, "reason": reason, "at": when.isoformat(),
            })
        return change
    except GovpkiError as exc:
        audit.record_refusal(
            ctx.sessions, actor=actor, action=action, object_type="certificate",
            object_id=f"{ca or '?'}/{serial}",
            details={"error": exc.kind, "message": exc.message},
        )
        raise


def revoke(ctx: CaContext, serial: str, reason: str = "unspecified", *, ca: str | None = None,
           actor: str, at: dt.datetime | None = None) -> StatusChange:
    """Revoke for good. A held certificate may be revoked; a revoked one may not be again."""
    if reason not in REVOCATION_REASONS:
        exc = InvalidStatusChange(
            f"unknown revocation reason '{reason}' (RFC 5280: {', '.join(REVOCATION_REASONS)})"
        )
        audit.record_refusal(ctx.sessions, actor=actor, action="ca.revoke",
                             object_type="certificate", object_id=f"{ca or '?'}/{serial}",
                             details={"error": exc.kind, "message": exc.message})
        raise exc
    return _change(ctx, serial, ca, actor=actor, action="ca.revoke", new_status="revoked",
                   reason=reason, allowed_from=("good", "hold"), at=at)


def suspend(ctx: CaContext, serial: str, *, ca: str | None = None, actor: str) -> StatusChange:
    """certificateHold: reversible, for a USB key reported lost that may still turn up."""
    return _change(ctx, serial, ca, actor=actor, action="ca.suspend", new_status="hold",
                   reason="certificateHold", allowed_from=("good",))


def release(ctx: CaContext, serial: str, *, ca: str | None = None, actor: str) -> StatusChange:
    """Back to good from hold; the next delta CRL lists it with removeFromCRL."""
    return _change(ctx, serial, ca, actor=actor, action="ca.release", new_status="good",
                   reason=None, allowed_from=("hold",))


def status_of(ctx: CaContext, serial: str, ca: str | None = None) -> CertificateRecord:
    with transaction(ctx.sessions) as session:
        return find_certificate(session, serial, ca)
