"""RA accounts (operators) and their roles, with 三员分立 and the two-person rule on role changes.

Bootstrap: while no operator exists at all, :func:`add_operator` with ``actor=None`` creates the
first account, which must be a ca-admin; every later account is created by an operator holding
``operator.create``. That first account is marked ``bootstrap`` (a partial unique index keeps
it the only one): it may keep logging in with a password and TOTP when every other operator
logs in with a certificate (``[ra] password_login``, ra.credentials). An account's first role
comes with its creation; *changing* roles later (:func:`grant_role`) is
``operator.role.change`` and, when policies/authz.yaml says so, stays pending until a different
operator approves it (:func:`approve_role`).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from policies.authz import get_authz_policy
from policies.names import contains_national_id
from ra import models
from ra.authz import authorize, visible_path
from ra.errors import (
    Duplicate,
    Forbidden,
    InvalidTransition,
    NotFound,
    SeparationOfDuties,
    TwoPersonRuleViolation,
    ValidationError,
)
from ra.orgs import get_organisation, organisation_by_id
from ra.records import Operator

BOOTSTRAP_ROLE = "ca-admin"


def _record(session: Session, row: models.Operator) -> Operator:
    assignments = session.scalars(select(models.RoleAssignment).where(
        models.RoleAssignment.operator_id == row.id)).all()
    return Operator(
        id=row.id, username=row.username, display_name=row.display_name,
        organisation=organisation_by_id(session, row.organisation_id),
        roles=frozenset(a.role for a in assignments if a.status == "active"),
        active=row.active, official_id=row.official_id,
        pending_roles=frozenset(a.role for a in assignments if a.status == "pending"),
        bootstrap=row.bootstrap,
    )


def _row(session: Session, username: str) -> models.Operator:
    row = session.scalar(select(models.Operator).where(models.Operator.username == username))
    if row is None:
        raise NotFound(f"no operator named {username!r}", username=username)
    return row


def load_operator(session: Session, operator_id: int) -> Operator | None:
    """The operator by id inside the caller's transaction (token and session checks read it
    with the credential in one transaction)."""
    row = session.get(models.Operator, operator_id)
    return None if row is None else _record(session, row)


def active_usernames_for_official(session: Session, official_id: int) -> list[str]:
    """The active accounts linked to an official's record (certificate login maps a
    certificate to its official, then to the one account it may open)."""
    return list(session.scalars(select(models.Operator.username).where(
        models.Operator.official_id == official_id, models.Operator.active.is_(True))))


def get_operator(sessions: sessionmaker[Session], username: str) -> Operator:
    """The operator as authorisation sees it (active roles; pending ones listed apart)."""
    with transaction(sessions) as session:
        return _record(session, _row(session, username))


def resolve_actor(sessions: sessionmaker[Session], username: str) -> Operator:
    """The acting operator for a CLI or web request; an unknown name is refused and audited."""
    try:
        return get_operator(sessions, username)
    except NotFound:
        audit.record_refusal(sessions, actor=username[:128] or "unknown", action="ra.login",
                             object_type="operator", object_id=username[:128],
                             details={"error": "forbidden", "message": "no such operator"})
        raise Forbidden(f"forbidden: {username!r} is not an RA operator (set GOVPKI_ACTOR "
                        "to an operator's username)") from None


def operator_count(sessions: sessionmaker[Session]) -> int:
    with transaction(sessions) as session:
        return session.scalar(select(func.count()).select_from(models.Operator)) or 0


def _check_name(value: str, field: str, limit: int = 64) -> str:
    value = value.strip()
    if not value or len(value) > limit or not value.isprintable():
        raise ValidationError(f"{field} must be 1-{limit} printable characters", field=field)
    if contains_national_id(value):
        raise ValidationError(f"{field} must not contain an identity number", field=field)
    return value


def add_operator(sessions: sessionmaker[Session], actor: Operator | None, username: str, *,
                 org_code: str, role: str, display_name: str | None = None,
                 official_identifier: str | None = None) -> Operator:
    """Create an account with its first role. ``actor=None`` is the bootstrap (see module doc)."""
    policy = get_authz_policy()
    username = _check_name(username, "username")
    if role not in policy.roles:
        raise ValidationError(f"unknown role {role!r} (known: {', '.join(policy.roles)})",
                              field="role")
    with transaction(sessions) as session:
        org = get_organisation(session, org_code)
        count = session.scalar(select(func.count()).select_from(models.Operator)) or 0
        official_id = None
        if official_identifier is not None:
            official = session.scalar(select(models.Official).where(
                models.Official.identifier == official_identifier))
            if official is None:
                raise NotFound(f"no official with identifier {official_identifier!r}",
                               field="official")
            official_id = official.id
    if actor is None:
        if count:
            raise Forbidden("forbidden: operators exist already; set GOVPKI_ACTOR to one "
                            "holding operator.create (bootstrap only creates the first)")
        if role != BOOTSTRAP_ROLE:
            raise ValidationError(f"the first operator must be a {BOOTSTRAP_ROLE}", field="role")
    else:
        authorize(sessions, actor, "operator.create", org, object_type="operator",
                  object_id=username)
    if role == "official" and official_id is None:
        raise ValidationError("an account with the official role must name its official "
                              "record (--official IDENTIFIER)", field="official")
    by = actor.username if actor else "bootstrap"
    try:
        with transaction(sessions) as session:
            if session.scalar(select(models.Operator.id).where(
                    models.Operator.username == username)) is not None:
                raise Duplicate(f"operator {username!r} exists already", username=username)
            row = models.Operator(username=username, display_name=(display_name or username),
                                  organisation_id=org.id, official_id=official_id, active=True,
                                  created_at=utcnow(), bootstrap=actor is None)
            session.add(row)
            session.flush()
            session.add(models.RoleAssignment(operator_id=row.id, role=role, status="active",
                                              granted_by=by, approved_by=None,
                                              created_at=utcnow()))
            session.flush()
            audit.record_event(session, actor=by, action="ra.operator.create",
                               object_type="operator", object_id=username, outcome="success",
                               details={"organisation": org.code, "role": role,
                                        "bootstrap": actor is None})
            return _record(session, row)
    except Duplicate as exc:
        _refused(sessions, by, "ra.operator.create", username, exc)
        raise


def _refused(sessions: sessionmaker[Session], actor: str, action: str, username: str,
             exc: GovpkiError) -> None:
    audit.record_refusal(sessions, actor=actor, action=action, object_type="operator",
                         object_id=username, details={"error": exc.kind, "message": exc.message})


def grant_role(sessions: sessionmaker[Session], actor: Operator, username: str,
               role: str) -> Operator:
    """Add ``role`` to an account: active at once, or pending a second operator's approval."""
    policy = get_authz_policy()
    if role not in policy.roles:
        raise ValidationError(f"unknown role {role!r} (known: {', '.join(policy.roles)})",
                              field="role")
    target = get_operator(sessions, username)
    authorize(sessions, actor, "operator.role.change", target.organisation,
              object_type="operator", object_id=username)
    if role in target.roles or role in target.pending_roles:
        raise Duplicate(f"{username} already holds or awaits role {role}")
    conflicts = policy.conflicts(target.roles | target.pending_roles | {role})
    if conflicts:
        exc = SeparationOfDuties(
            f"{username} cannot hold {role} together with "
            f"{', '.join(sorted((target.roles | target.pending_roles) - {role}))}: "
            f"{'; '.join(f'{g.name} ({g.zh})' for g in conflicts)}", role=role)
        _refused(sessions, actor.username, "ra.operator.role.change", username, exc)
        raise exc
    status = "pending" if policy.approvals_required("operator.role.change") else "active"
    with transaction(sessions) as session:
        session.add(models.RoleAssignment(operator_id=target.id, role=role, status=status,
                                          granted_by=actor.username, created_at=utcnow()))
        session.flush()
        audit.record_event(session, actor=actor.username, action="ra.operator.role.grant",
                           object_type="operator", object_id=username, outcome="success",
                           details={"role": role, "status": status})
    return get_operator(sessions, username)


def approve_role(sessions: sessionmaker[Session], actor: Operator, username: str,
                 role: str) -> Operator:
    """The second operator's approval of a pending role: never the granter, never oneself."""
    target = get_operator(sessions, username)
    authorize(sessions, actor, "operator.role.change", target.organisation,
              object_type="operator", object_id=username)
    with transaction(sessions) as session:
        assignment = session.scalar(select(models.RoleAssignment).where(
            models.RoleAssignment.operator_id == target.id,
            models.RoleAssignment.role == role))
        granted_by = assignment.granted_by if assignment else None
        pending = assignment is not None and assignment.status == "pending"
    if not pending:
        exc: GovpkiError = InvalidTransition(f"{username} has no pending role {role}")
        _refused(sessions, actor.username, "ra.operator.role.approve", username, exc)
        raise exc
    if actor.username in (granted_by, username):
        exc = TwoPersonRuleViolation(
            f"forbidden: two-person rule: {actor.username} granted this role or would receive "
            "it; a different operator must approve", role=role)
        _refused(sessions, actor.username, "ra.operator.role.approve", username, exc)
        raise exc
    with transaction(sessions) as session:
        row = session.scalar(select(models.RoleAssignment).where(
            models.RoleAssignment.operator_id == target.id,
            models.RoleAssignment.role == role,
            models.RoleAssignment.status == "pending").with_for_update())
        if row is None:
            raise InvalidTransition(f"{username} has no pending role {role}")
        row.status = "active"
        row.approved_by = actor.username
        session.flush()
        audit.record_event(session, actor=actor.username, action="ra.operator.role.approve",
                           object_type="operator", object_id=username, outcome="success",
                           details={"role": role, "granted_by": granted_by})
    return get_operator(sessions, username)


def list_operators(sessions: sessionmaker[Session], actor: Operator) -> list[Operator]:
    prefix = visible_path(actor, "operator.view")
    if prefix is None:
        authorize(sessions, actor, "operator.view", actor.organisation)
        return []
    with transaction(sessions) as session:
        rows = session.scalars(select(models.Operator).order_by(models.Operator.username)).all()
        records = [_record(session, r) for r in rows]
    return [r for r in records if r.organisation.path.startswith(prefix)]
