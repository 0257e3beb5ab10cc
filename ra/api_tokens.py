"""Bearer tokens for REST API clients, each acting as one operator with that operator's roles.

A token is ``gp_`` + 43 url-safe characters (256 bits); only its SHA-256 is stored, with a
short prefix so an operator can tell tokens apart in a list. Tokens expire (``api_token_days``
by default) and can be revoked; creating or revoking one for another operator is
``apitoken.manage`` (security administration), one's own needs no extra permission.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select

from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow
from ra import models
from ra.authz import authorize
from ra.errors import AuthenticationFailed, NotFound, ValidationError
from ra.operators import get_operator, load_operator
from ra.records import Operator

TOKEN_PREFIX: Final = "gp_"  # noqa: S105 (a visible prefix, not a secret)
MAX_DAYS: Final = 366


@dataclass(frozen=True)
class ApiTokenRecord:
    id: int
    operator: str
    name: str
    prefix: str
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _record(row: models.ApiToken, username: str) -> ApiTokenRecord:
    return ApiTokenRecord(row.id, username, row.name, row.prefix, row.created_by,
                          row.created_at, row.expires_at, row.revoked_at, row.last_used_at)


def _check_manage(ctx: CaContext, actor: Operator, target: Operator) -> None:
    if actor.id != target.id:
        authorize(ctx.sessions, actor, "apitoken.manage", target.organisation,
                  object_type="operator", object_id=target.username)


def create_api_token(ctx: CaContext, actor: Operator, username: str, name: str, *,
                     days: int = 90) -> tuple[str, ApiTokenRecord]:
    """A new token for ``username``: (the token, shown once; its record)."""
    target = get_operator(ctx.sessions, username)
    _check_manage(ctx, actor, target)
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise ValidationError("a token name is 1 to 64 printable characters", field="name")
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError(f"days must be 1..{MAX_DAYS}", field="days")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with transaction(ctx.sessions) as session:
        row = models.ApiToken(token_hash=_hash(token), prefix=token[:10],
                              operator_id=target.id, name=name, created_by=actor.username,
                              created_at=now, expires_at=now + dt.timedelta(days=days))
        session.add(row)
        session.flush()
        audit.record_event(session, actor=actor.username, action="ra.apitoken.create",
                           object_type="operator", object_id=username, outcome="success",
                           details={"token": row.id, "name": name, "prefix": row.prefix,
                                    "expires_at": row.expires_at.isoformat()})
        return token, _record(row, username)


def authenticate_api_token(ctx: CaContext, token: str, *, client: str = "") -> Operator:
    """The operator a bearer token acts for; unknown, revoked or expired tokens are refused
    (401) and the refusal audited under the token's prefix (never the token)."""
    now = utcnow()
    operator: Operator | None = None
    if token.startswith(TOKEN_PREFIX) and len(token) <= 128:
        with transaction(ctx.sessions) as session:
            row = session.scalar(select(models.ApiToken).where(
                models.ApiToken.token_hash == _hash(token)))
            if row is not None and row.revoked_at is None and row.expires_at > now:
                found = load_operator(session, row.operator_id)
                if found is not None and found.active:
                    operator = found
                    if row.last_used_at is None or now - row.last_used_at > dt.timedelta(
                            minutes=5):
                        row.last_used_at = now
    if operator is None:
        audit.record_refusal(ctx.sessions, actor="anonymous", action="ra.api.authenticate",
                             object_type="api-token", object_id=token[:10],
                             details={"client": client[:64], "error": "bad-token"})
        raise AuthenticationFailed("the API token is unknown, revoked or expired")
    return operator


def list_api_tokens(ctx: CaContext, actor: Operator, username: str) -> list[ApiTokenRecord]:
    target = get_operator(ctx.sessions, username)
    _check_manage(ctx, actor, target)
    with transaction(ctx.sessions) as session:
        rows = session.scalars(select(models.ApiToken).where(
            models.ApiToken.operator_id == target.id).order_by(models.ApiToken.id)).all()
        return [_record(r, username) for r in rows]


def revoke_api_token(ctx: CaContext, actor: Operator, token_id: int) -> ApiTokenRecord:
    with transaction(ctx.sessions) as session:
        row = session.get(models.ApiToken, token_id)
        if row is None:
            raise NotFound(f"no API token {token_id}")
        owner = session.get(models.Operator, row.operator_id)
        assert owner is not None
        username = owner.username
    target = get_operator(ctx.sessions, username)
    _check_manage(ctx, actor, target)
    with transaction(ctx.sessions) as session:
        row = session.get(models.ApiToken, token_id)
        assert row is not None
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            audit.record_event(session, actor=actor.username, action="ra.apitoken.revoke",
                               object_type="operator", object_id=username, outcome="success",
                               details={"token": token_id, "prefix": row.prefix})
        return _record(row, username)
