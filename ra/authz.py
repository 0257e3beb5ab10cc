"""The RA's one authorisation decision point, applying policies/authz.yaml.

Every service in ra/ calls :func:`authorize` before acting, and nothing else in ra/ decides
permissions: views, the REST API and the CLI all end up here, so the authorisation-matrix test
of this function covers them all. A refusal raises :class:`ra.errors.Forbidden` *and* leaves an
audit event, because a refused attempt is exactly what an auditor needs to see.

:func:`authorize` records refusals in a transaction of its own, so call it while holding no
open transaction (SQLite's write lock, PostgreSQL's audit-chain lock; see
core.audit.record_refusal). Services read what they need, close that transaction, decide, then
write in a new transaction that re-checks state.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core import audit
from policies.authz import AuthzPolicy, get_authz_policy
from ra.errors import Forbidden
from ra.records import Official, Operator, Organisation

__all__ = ["authorize", "permits", "visible_path"]


def permits(actor: Operator, action: str, org: Organisation | None, *,
            official: Official | None = None, request_kind: str | None = None,
            policy: AuthzPolicy | None = None) -> bool:
    """The decision alone, without auditing: for filtering rows (a roster's organisations).

    ``org`` None means "the whole system" (listing everything): only all-scoped roles may.
    A ``self``-scoped role acts only on the official record linked to its account.
    """
    return _reason(actor, action, org, official, request_kind,
                   policy or get_authz_policy()) is None


def _reason(actor: Operator, action: str, org: Organisation | None, official: Official | None,
            request_kind: str | None, policy: AuthzPolicy) -> str | None:
    refused = policy.refusal_before_scope(action, username=actor.username, active=actor.active,
                                          roles=actor.roles)
    if refused is not None:
        return refused
    for role in policy.granting_roles(action, actor.roles):
        if role.request_kinds is not None and request_kind is not None \
                and request_kind not in role.request_kinds:
            continue
        if role.scope == "all":
            return None
        if role.scope == "subtree" and org is not None and actor.organisation.contains(org):
            return None
        if role.scope == "self" and official is not None and actor.official_id == official.id:
            return None
    where = f"organisation {org.code}" if org is not None else "the whole system"
    kind = f" for {request_kind} requests" if request_kind else ""
    return f"{action}{kind} on {where} is outside the scope of {actor.username}"


def authorize(sessions: sessionmaker[Session], actor: Operator, action: str,
              org: Organisation | None, *, official: Official | None = None,
              request_kind: str | None = None, object_type: str = "",
              object_id: str = "") -> None:
    """Allow, or audit the refusal and raise :class:`Forbidden` (HTTP 403).

    ``sessions`` is where the refusal is recorded; the decision itself reads only the actor,
    the object and the policy.
    """
    reason = _reason(actor, action, org, official, request_kind, get_authz_policy())
    if reason is None:
        return
    if not object_type:
        object_type, object_id = ("organisation", org.code) if org is not None else ("", "")
    audit.record_refusal(
        sessions, actor=actor.username, action=f"ra.{action}", object_type=object_type,
        object_id=object_id,
        details={"error": "forbidden", "message": reason,
                 "organisation": org.code if org is not None else None,
                 "roles": sorted(actor.roles)},
    )
    raise Forbidden(f"forbidden: {reason}", action=action)


def visible_path(actor: Operator, action: str) -> str | None:
    """The organisation path prefix that limits what ``actor`` may list under ``action``:
    "" for everything, the actor's subtree for subtree roles, None when nothing at all.

    Self-scoped roles get their own organisation here; callers narrow to the linked official.
    """
    policy = get_authz_policy()
    best: str | None = None
    for name in actor.roles:
        role = policy.roles.get(name)
        if role is None or action not in role.actions or not actor.active:
            continue
        if role.scope == "all":
            return ""
        best = actor.organisation.path
    return best
