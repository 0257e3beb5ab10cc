"""Who may send, receive and track documents for which organisation: policies/authz.yaml's
``exchange.*`` actions, applied here.

The rules are the RA's data (roles, their actions and scopes), read through
:mod:`policies.authz`; the actor is the RA operator (``ra.records.Operator``: a web session,
an API token, or GOVPKI_ACTOR on the CLI). Scopes mean, for the exchange: ``all`` every
organisation; ``subtree`` the operator's organisation and everything below it; ``self`` the
operator's own organisation only — an exchange clerk (公文收发员) acts for the organisation
they belong to, never for a neighbour. Every refusal is an audit event (under the action's
own name) before the error is raised.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.orm import Session, sessionmaker

from apps.exchange.errors import Forbidden
from core import audit
from policies.authz import get_authz_policy
from ra.records import Operator, Organisation

SEND: Final = "exchange.send"
RECEIVE: Final = "exchange.receive"
VIEW: Final = "exchange.view"


def refusal_reason(actor: Operator, action: str, org: Organisation) -> str | None:
    """None when ``actor`` may take ``action`` for ``org``, else why not."""
    policy = get_authz_policy()
    refused = policy.refusal_before_scope(action, username=actor.username, active=actor.active,
                                          roles=actor.roles)
    if refused is not None:
        return refused
    for role in policy.granting_roles(action, actor.roles):
        if role.scope == "all":
            return None
        if role.scope == "subtree" and actor.organisation.contains(org):
            return None
        if role.scope == "self" and actor.organisation.code == org.code:
            return None
    return f"{action} for organisation {org.code} is outside the scope of {actor.username}"


def authorize(sessions: sessionmaker[Session], actor: Operator, action: str,
              org: Organisation, *, object_id: str = "") -> None:
    """Allow, or audit the refusal and raise :class:`Forbidden` (403). Call it while holding
    no open transaction (the refusal is recorded in a transaction of its own)."""
    reason = refusal_reason(actor, action, org)
    if reason is None:
        return
    audit.record_refusal(sessions, actor=actor.username, action=action,
                         object_type="exchange-package" if object_id else "organisation",
                         object_id=object_id or org.code,
                         details={"error": "forbidden", "message": reason,
                                  "organisation": org.code, "roles": sorted(actor.roles)})
    raise Forbidden(f"forbidden: {reason}", action=action)


def permits(actor: Operator, action: str, org: Organisation) -> bool:
    return refusal_reason(actor, action, org) is None


def scope_of(actor: Operator, action: str) -> tuple[str, str] | None:
    """What ``actor`` may list under ``action``: ("all", ""), ("subtree", path),
    ("self", code), or None for nothing."""
    policy = get_authz_policy()
    if not actor.active:
        return None
    best: tuple[str, str] | None = None
    for name in actor.roles:
        role = policy.roles.get(name)
        if role is None or action not in role.actions:
            continue
        if role.scope == "all":
            return ("all", "")
        if role.scope == "subtree":
            best = ("subtree", actor.organisation.path)
        elif best is None:
            best = ("self", actor.organisation.code)
    return best
