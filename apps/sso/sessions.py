"""The provider's own server-side sessions: one per logged-in browser, with the ``sid`` that
ID tokens and logout tokens carry (OIDC Back-Channel Logout 1.0 §2.1) and the list of clients
that received tokens in it (whom a logout must tell).

Like ra.authn's sessions, only the SHA-256 of the 256-bit cookie value is stored, and a
session ends after ``[sso] session_idle_minutes`` without a request or
``session_absolute_hours`` after login, or when its account is deactivated. A session
remembers how it was proved (method, acr, the certificate), because ID tokens say so and a
client may demand a certificate login (acr) before a sensitive action.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from apps.sso import backchannel, models
from apps.sso.cert_login import AMR, LoginResult
from apps.sso.config import SsoConfig
from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow
from ra.authn import token_hash
from ra.errors import NotFound
from ra.operators import get_operator
from ra.records import Operator

LANGUAGES = ("zh", "en")


@dataclass(frozen=True)
class ProviderSession:
    id: int
    sid: str
    operator: Operator
    method: str
    acr: str
    cert_ca: str | None
    cert_serial: str | None
    auth_time: dt.datetime
    csrf_token: str
    lang: str

    @property
    def amr(self) -> list[str]:
        return list(AMR.get(self.acr, []))


def start(ctx: CaContext, result: LoginResult, *, client: str, lang: str = "zh"
          ) -> tuple[str, ProviderSession]:
    """A session for a just-proved login: (cookie value, session). Audited as sso.login."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    lang = lang if lang in LANGUAGES else "zh"
    with transaction(ctx.sessions) as session:
        row = models.ProviderSession(
            sid=secrets.token_urlsafe(24), token_hash=token_hash(token),
            csrf_token=secrets.token_urlsafe(32), operator_id=result.operator.id,
            username=result.operator.username, method=result.method, acr=result.acr,
            cert_ca=result.cert_ca, cert_serial=result.cert_serial,
            client_address=client[:64], lang=lang, auth_time=now, last_seen=now)
        session.add(row)
        session.flush()
        audit.record_event(session, actor=result.operator.username, action="sso.login",
                           object_type="operator", object_id=result.operator.username,
                           outcome="success",
                           details={"method": result.method, "acr": result.acr,
                                    "certificate": result.cert_serial, "ca": result.cert_ca,
                                    "client": client[:64], "session": row.id})
        return token, _record(row, result.operator)


def _record(row: models.ProviderSession, operator: Operator) -> ProviderSession:
    return ProviderSession(row.id, row.sid, operator, row.method, row.acr, row.cert_ca,
                           row.cert_serial, row.auth_time, row.csrf_token, row.lang)


def _expired(row: models.ProviderSession, config: SsoConfig, now: dt.datetime) -> str | None:
    if now - row.last_seen > dt.timedelta(minutes=config.session_idle_minutes):
        return "idle"
    if now - row.auth_time > dt.timedelta(hours=config.session_absolute_hours):
        return "absolute"
    return None


def resume(ctx: CaContext, config: SsoConfig, token: str) -> ProviderSession | None:
    """The live session a cookie names, touched; None when unknown, ended, timed out, or its
    account deactivated."""
    if not token or len(token) > 128:
        return None
    now = utcnow()
    with transaction(ctx.sessions) as session:
        row = session.scalar(select(models.ProviderSession).where(
            models.ProviderSession.token_hash == token_hash(token)))
        if row is None or row.ended_at is not None:
            return None
        why = _expired(row, config, now)
        if why is not None:
            row.ended_at, row.ended_reason = now, why
            return None
        if now - row.last_seen > dt.timedelta(seconds=60):
            row.last_seen = now
        username = row.username
        values = row
    try:
        operator = get_operator(ctx.sessions, username)
    except NotFound:
        operator = None
    if operator is None or not operator.active:
        end(ctx, values.sid, reason="deactivated", actor="system")
        return None
    return _record(values, operator)


def by_sid(session: Session, sid: str) -> models.ProviderSession | None:
    return session.scalar(select(models.ProviderSession).where(
        models.ProviderSession.sid == sid))


def live_by_sid(ctx: CaContext, config: SsoConfig, sid: str) -> ProviderSession | None:
    """A live session by its sid (the token endpoint checks the code's session still is)."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        row = by_sid(session, sid)
        if row is None or row.ended_at is not None or _expired(row, config, now):
            return None
        username, values = row.username, row
    operator = get_operator(ctx.sessions, username)
    return _record(values, operator) if operator.active else None


def add_client(ctx: CaContext, session_id: int, client_id: str) -> None:
    """Remember that ``client_id`` received tokens in this session (idempotent)."""
    with transaction(ctx.sessions) as session:
        exists = session.scalar(select(models.SessionClient.id).where(
            models.SessionClient.session_id == session_id,
            models.SessionClient.client_id == client_id))
        if exists is None:
            session.add(models.SessionClient(session_id=session_id, client_id=client_id,
                                             first_at=utcnow()))


@dataclass(frozen=True)
class EndedSession:
    id: int
    sid: str
    username: str
    operator_id: int
    client_ids: tuple[str, ...]
    #: The back-channel logout deliveries owed for it (apps/sso/backchannel.py).
    deliveries: tuple[int, ...] = ()


def end(ctx: CaContext, sid: str, *, reason: str, actor: str) -> EndedSession | None:
    """End a session and revoke its access tokens, and owe each client that took part a
    logout token (one transaction: no logout is lost on the way); None when it had already
    ended."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        row = by_sid(session, sid)
        if row is None or row.ended_at is not None:
            return None
        row.ended_at, row.ended_reason = now, reason
        session.execute(update(models.AccessToken).where(
            models.AccessToken.session_id == row.id,
            models.AccessToken.revoked_at.is_(None)).values(revoked_at=now))
        client_ids = tuple(session.scalars(select(models.SessionClient.client_id).where(
            models.SessionClient.session_id == row.id)))
        deliveries = backchannel.enqueue(session, session_id=row.id, sid=row.sid,
                                         sub=row.username, client_ids=client_ids, now=now)
        audit.record_event(session, actor=actor, action="sso.logout", object_type="operator",
                           object_id=row.username, outcome="success",
                           details={"session": row.id, "reason": reason,
                                    "clients": list(client_ids)})
        return EndedSession(row.id, row.sid, row.username, row.operator_id, client_ids,
                            deliveries)
