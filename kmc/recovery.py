"""Recovery of escrowed encryption keys, each under the two-person rule and audited.

Two kinds, the same three steps::

    submit (operator A, names the key, the target token's transport key and the reason)
      → approve (operator B ≠ A, holding the same action in scope; as many as the rule asks)
      → release (the WrappedKey for that transport key, once) — or reject

* ``user`` (kmc.recover.user): the official's key goes into their *new* USB key, so documents
  encrypted to it years ago still open. Held by RA operators (their organisation subtree) and
  the CA administrator.
* ``authorised`` (kmc.recover.authorised): the key is released to a key recovery officer's
  token for a documented legal reason (case, warrant, archive order), which is recorded and
  audited; only the submitting officer may take the release, since it is wrapped for their
  token.

What is approved is exact: this escrowed key, to the token holding *this* transport key
(its SHA-256 is in the request, the audit trail and the release), for this reason. A release
before enough approvals, a self-approval, a second approval by the same person, an operator
out of scope, or a signing key's certificate: each refused with a typed error and an audit
event (``refused``), and nothing released.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from hsm.key_transport import WrappedKey, load_transport_key, spki_der, spki_sha256
from kmc import models
from kmc.authz import RECOVERY_ACTION, Actor, approvals_required, authorize
from kmc.delivery import release_details, wrap_escrowed
from kmc.errors import (
    InvalidTransition,
    RecoveryNotFound,
    TwoPersonRuleViolation,
    ValidationError,
)
from kmc.escrow import EscrowRecord, find_escrow, get_escrow_unchecked

MAX_REASON: Final = 2000
RECOVERABLE_STATES: Final = ("escrowed", "delivered")


@dataclass(frozen=True)
class RecoveryRecord:
    id: int
    escrow_id: int
    kind: str
    state: str
    reason: str
    transport_key_sha256: str
    required_approvals: int
    approvals: tuple[str, ...]
    submitted_by: str
    submitted_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_comment: str | None
    released_by: str | None
    released_at: dt.datetime | None
    owner_ref: str
    organisation_path: str


def _record(session: Session, row: models.Recovery) -> RecoveryRecord:
    approvals = session.scalars(select(models.RecoveryApproval.operator).where(
        models.RecoveryApproval.recovery_id == row.id)
        .order_by(models.RecoveryApproval.id)).all()
    escrow = session.get(models.Escrow, row.escrow_id)
    assert escrow is not None
    return RecoveryRecord(
        id=row.id, escrow_id=row.escrow_id, kind=row.kind, state=row.state, reason=row.reason,
        transport_key_sha256=row.transport_key_sha256,
        required_approvals=row.required_approvals, approvals=tuple(approvals),
        submitted_by=row.submitted_by, submitted_at=row.submitted_at,
        decided_by=row.decided_by, decided_at=row.decided_at,
        decision_comment=row.decision_comment, released_by=row.released_by,
        released_at=row.released_at, owner_ref=escrow.owner_ref,
        organisation_path=escrow.organisation_path)


def get_recovery(ctx: CaContext, recovery_id: int) -> RecoveryRecord:
    with transaction(ctx.sessions) as session:
        row = session.get(models.Recovery, recovery_id)
        if row is None:
            raise RecoveryNotFound(f"no recovery request {recovery_id}", recovery=recovery_id)
        return _record(session, row)


def list_recoveries(ctx: CaContext, *, state: str | None = None) -> list[RecoveryRecord]:
    """Every recovery request, newest first (for the CLI; authorised by its caller)."""
    with transaction(ctx.sessions) as session:
        query = select(models.Recovery).order_by(models.Recovery.id.desc())
        if state is not None:
            query = query.where(models.Recovery.state == state)
        return [_record(session, r) for r in session.scalars(query).all()]


def _text(value: str, field: str, *, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise ValidationError(f"{field} is required: say why", field=field)
    if len(value) > MAX_REASON or not all(ch.isprintable() or ch in "\n\t" for ch in value):
        raise ValidationError(f"{field} must be at most {MAX_REASON} printable characters",
                              field=field)
    return value


def _refuse(ctx: CaContext, actor: str, action: str, object_id: str, exc: GovpkiError,
            **extra: object) -> None:
    audit.record_refusal(ctx.sessions, actor=actor, action=action,
                         object_type="kmc-recovery", object_id=object_id,
                         details={"error": exc.kind, "message": exc.message, **extra})


# ---------------------------------------------------------------------------------------------
# Submitting


def submit(ctx: CaContext, actor: Actor, kind: str, *, transport_public_key: object,
           reason: str, escrow_id: int | None = None, ca: str | None = None,
           serial: str | None = None) -> RecoveryRecord:
    """Ask for the escrowed key (by id, or by its encryption certificate's serial) to be
    released to the token holding ``transport_public_key``. ``reason`` is required: for an
    authorised recovery it is the legal basis, recorded verbatim."""
    action = RECOVERY_ACTION.get(kind)
    if action is None:
        raise ValidationError(f"kind must be one of {', '.join(RECOVERY_ACTION)}", field="kind")
    record = find_escrow(ctx, actor=actor.username, action=f"{action}.submit",
                         escrow_id=escrow_id, ca=ca, serial=serial)
    authorize(ctx.sessions, actor, action, record.organisation_path,
              object_type="kmc-escrow", object_id=str(record.id))
    try:
        reason = _text(reason, "reason", required=True)
        transport = load_transport_key(transport_public_key)  # type: ignore[arg-type]
        if record.state not in RECOVERABLE_STATES:
            raise InvalidTransition(f"escrowed key {record.id} is {record.state}: it has no "
                                    f"certificate and cannot be recovered", state=record.state)
    except GovpkiError as exc:
        _refuse(ctx, actor.username, f"{action}.submit", f"escrow:{record.id}", exc)
        raise
    required = approvals_required(action)
    with transaction(ctx.sessions) as session:
        row = models.Recovery(
            escrow_id=record.id, kind=kind, state="submitted", reason=reason,
            transport_key_der=spki_der(transport), transport_key_sha256=spki_sha256(transport),
            required_approvals=required, submitted_by=actor.username, submitted_at=utcnow())
        session.add(row)
        session.flush()
        audit.record_event(session, actor=actor.username, action=f"{action}.submit",
                           object_type="kmc-recovery", object_id=str(row.id),
                           outcome="success",
                           details={**release_details(record, row.transport_key_sha256),
                                    "escrow": record.id, "kind": kind, "reason": reason,
                                    "required_approvals": required})
        return _record(session, row)


# ---------------------------------------------------------------------------------------------
# Deciding


def _load_for(ctx: CaContext, actor: Actor, recovery_id: int
              ) -> tuple[RecoveryRecord, EscrowRecord, str]:
    record = get_recovery(ctx, recovery_id)
    action = RECOVERY_ACTION[record.kind]
    escrow = get_escrow_unchecked(ctx, record.escrow_id)
    authorize(ctx.sessions, actor, action, escrow.organisation_path,
              object_type="kmc-recovery", object_id=str(recovery_id))
    return record, escrow, action


def _locked(session: Session, recovery_id: int, states: Sequence[str], step: str
            ) -> models.Recovery:
    row = session.scalar(select(models.Recovery).where(models.Recovery.id == recovery_id)
                         .with_for_update())
    if row is None:
        raise RecoveryNotFound(f"no recovery request {recovery_id}")
    if row.state not in states:
        raise InvalidTransition(f"cannot {step} recovery {recovery_id}: it is {row.state}"
                                + (f" ({len(_approvers(session, row.id))} of "
                                   f"{row.required_approvals} approvals; the two-person rule "
                                   f"needs a second operator's approval)"
                                   if row.state == "submitted" and step == "release" else ""),
                                state=row.state)
    return row


def _approvers(session: Session, recovery_id: int) -> list[str]:
    return list(session.scalars(select(models.RecoveryApproval.operator).where(
        models.RecoveryApproval.recovery_id == recovery_id)).all())


def approve(ctx: CaContext, actor: Actor, recovery_id: int, comment: str = ""
            ) -> RecoveryRecord:
    """One approval by a second holder of the action; approved once enough have agreed."""
    record, _escrow, action = _load_for(ctx, actor, recovery_id)
    try:
        comment = _text(comment, "comment", required=False)
        if actor.username == record.submitted_by:
            raise TwoPersonRuleViolation(
                f"forbidden: two-person rule: {actor.username} submitted recovery "
                f"{recovery_id} and cannot approve it")
        if actor.username in record.approvals:
            raise TwoPersonRuleViolation(
                f"forbidden: two-person rule: {actor.username} has already approved recovery "
                f"{recovery_id}; another operator must")
        with transaction(ctx.sessions) as session:
            row = _locked(session, recovery_id, ("submitted",), "approve")
            session.add(models.RecoveryApproval(recovery_id=row.id, operator=actor.username,
                                                comment=comment, approved_at=utcnow()))
            session.flush()
            count = session.scalar(select(func.count()).select_from(models.RecoveryApproval)
                                   .where(models.RecoveryApproval.recovery_id == row.id)) or 0
            if count >= row.required_approvals:
                row.state = "approved"
                row.decided_by, row.decided_at = actor.username, utcnow()
                row.decision_comment = comment
            session.flush()
            audit.record_event(session, actor=actor.username, action=f"{action}.approve",
                               object_type="kmc-recovery", object_id=str(recovery_id),
                               outcome="success",
                               details={"approvals": count, "required": row.required_approvals,
                                        "state": row.state, "comment": comment})
            return _record(session, row)
    except GovpkiError as exc:
        _refuse(ctx, actor.username, f"{action}.approve", str(recovery_id), exc)
        raise


def reject(ctx: CaContext, actor: Actor, recovery_id: int, comment: str) -> RecoveryRecord:
    """Refuse the recovery for good, with a reason (any holder of the action but the
    submitter, who may simply let it lie)."""
    action = _load_for(ctx, actor, recovery_id)[2]
    try:
        comment = _text(comment, "comment", required=True)
        with transaction(ctx.sessions) as session:
            row = _locked(session, recovery_id, ("submitted", "approved"), "reject")
            row.state = "rejected"
            row.decided_by, row.decided_at, row.decision_comment = (
                actor.username, utcnow(), comment)
            session.flush()
            audit.record_event(session, actor=actor.username, action=f"{action}.reject",
                               object_type="kmc-recovery", object_id=str(recovery_id),
                               outcome="success", details={"comment": comment})
            return _record(session, row)
    except GovpkiError as exc:
        _refuse(ctx, actor.username, f"{action}.reject", str(recovery_id), exc)
        raise


# ---------------------------------------------------------------------------------------------
# Releasing


def release(ctx: CaContext, actor: Actor, recovery_id: int) -> WrappedKey:
    """The approved key, wrapped for the transport key the request named: once.

    Refused (audited) before approval — the two-person rule — and after a release or
    rejection. For an authorised recovery only the submitting officer may take the release.
    """
    record, escrow, action = _load_for(ctx, actor, recovery_id)
    try:
        if record.kind == "authorised" and actor.username != record.submitted_by:
            raise TwoPersonRuleViolation(
                f"forbidden: the release of authorised recovery {recovery_id} is wrapped for "
                f"{record.submitted_by}'s token; only they may take it")
        with transaction(ctx.sessions) as session:
            row = _locked(session, recovery_id, ("approved",), "release")
            transport_der = row.transport_key_der
        wrapped = wrap_escrowed(ctx, escrow, load_transport_key(transport_der))
        with transaction(ctx.sessions) as session:
            row = _locked(session, recovery_id, ("approved",), "release")
            row.state = "released"
            row.released_by, row.released_at = actor.username, utcnow()
            escrow_row = session.get(models.Escrow, escrow.id)
            assert escrow_row is not None
            escrow_row.deliveries += 1
            session.flush()
            audit.record_event(session, actor=actor.username, action=f"{action}.release",
                               object_type="kmc-recovery", object_id=str(recovery_id),
                               outcome="success",
                               details={**release_details(escrow, record.transport_key_sha256),
                                        "escrow": escrow.id, "kind": record.kind,
                                        "reason": record.reason,
                                        "approved_by": list(record.approvals)})
        return wrapped
    except GovpkiError as exc:
        _refuse(ctx, actor.username, f"{action}.release", str(recovery_id), exc)
        raise
