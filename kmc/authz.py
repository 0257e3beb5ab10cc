"""Who may view escrowed keys and recover them: policies/authz.yaml, applied to kmc's actions.

The rules are the same data the RA applies (roles, their actions and scopes, the two-person
rule), read through :mod:`policies.authz`. kmc may not import ra (they are siblings), so the
decision is made here for kmc's actions by the same rule the RA's ``ra.authz`` uses: a role
grants an action, ``all`` reaches every organisation, ``subtree`` the operator's organisation
and below. ``self``-scoped roles (an official's self-service) never reach the KMC: releasing a
key is never self-service. The actor is anything shaped like ``ra.records.Operator`` — the
composition root resolves the operator and passes it down.

Every refusal is an audit event before the error is raised, since a refused attempt to
recover someone's key is exactly what an auditor needs to see.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Final, Protocol

from sqlalchemy.orm import Session, sessionmaker

from core import audit
from kmc.errors import Forbidden
from policies.authz import AuthzPolicy, get_authz_policy

ESCROW_VIEW: Final = "kmc.escrow.view"
RECOVER_USER: Final = "kmc.recover.user"
RECOVER_AUTHORISED: Final = "kmc.recover.authorised"
RECOVERY_ACTION: Final = {"user": RECOVER_USER, "authorised": RECOVER_AUTHORISED}


class OrganisationLike(Protocol):
    @property
    def code(self) -> str: ...

    @property
    def path(self) -> str: ...


class Actor(Protocol):
    """An operator as the decision sees it (``ra.records.Operator`` has this shape)."""

    @property
    def username(self) -> str: ...

    @property
    def roles(self) -> Set[str]: ...

    @property
    def active(self) -> bool: ...

    @property
    def organisation(self) -> OrganisationLike: ...


def refusal_reason(actor: Actor, action: str, org_path: str | None,
                   policy: AuthzPolicy | None = None) -> str | None:
    """None when ``actor`` may take ``action`` on a key of the organisation at ``org_path``
    (None: every organisation, for listings), else why not."""
    policy = policy or get_authz_policy()
    refused = policy.refusal_before_scope(action, username=actor.username, active=actor.active,
                                          roles=actor.roles)
    if refused is not None:
        return refused
    for role in policy.granting_roles(action, actor.roles):
        if role.scope == "all":
            return None
        if role.scope == "subtree" and org_path is not None \
                and org_path.startswith(actor.organisation.path):
            return None
    where = f"organisation path {org_path}" if org_path is not None else "the whole system"
    return f"{action} on {where} is outside the scope of {actor.username}"


def authorize(sessions: sessionmaker[Session], actor: Actor, action: str,
              org_path: str | None, *, object_type: str, object_id: str) -> None:
    """Allow, or audit the refusal and raise :class:`kmc.errors.Forbidden` (HTTP 403).

    Records the refusal in a transaction of its own: call it while holding no open
    transaction (core.audit.record_refusal)."""
    reason = refusal_reason(actor, action, org_path)
    if reason is None:
        return
    audit.record_refusal(sessions, actor=actor.username, action=action,
                         object_type=object_type, object_id=object_id,
                         details={"error": "forbidden", "message": reason,
                                  "organisation_path": org_path,
                                  "roles": sorted(actor.roles)})
    raise Forbidden(f"forbidden: {reason}", action=action)


def visible_path(actor: Actor, action: str) -> str | None:
    """The organisation path prefix ``actor`` may list under ``action``: "" for everything,
    their subtree, or None for nothing."""
    policy = get_authz_policy()
    if not actor.active:
        return None
    best: str | None = None
    for name in actor.roles:
        role = policy.roles.get(name)
        if role is None or action not in role.actions:
            continue
        if role.scope == "all":
            return ""
        if role.scope == "subtree":
            best = actor.organisation.path
    return best


def approvals_required(action: str) -> int:
    """Distinct approvers (none the submitter) a recovery needs: policies/authz.yaml's
    two-person rule for ``action``, and never fewer than one — releasing an escrowed key is
    always a two-person act, whatever the file says."""
    return max(1, get_authz_policy().approvals_required(action))
