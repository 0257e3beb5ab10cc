"""The exchange pages' login sessions (table in :mod:`apps.exchange.web.models`).

Opened only by the OIDC callback, after the ID token was checked; resumed from the cookie on
every request with the RA's idle and absolute timeouts (``[ra] session_idle_minutes`` and
``session_absolute_hours``: one policy for every page an official uses); ended by logout, by a
back-channel logout token naming the provider session (``sid``), or when the account is
deactivated. Every start and end is an audit event.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update

from apps.exchange.web import models
from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow
from ra.authn import token_hash
from ra.config import RaConfig
from ra.errors import NotFound
from ra.operators import get_operator
from ra.records import Operator

LANGUAGES = ("zh", "en")


@dataclass(frozen=True)
class PageSession:
    id: int
    operator: Operator
    sid: str
    acr: str
    claimed_org: str
    csrf_token: str
    lang: str
    created_at: dt.datetime


def start(ctx: CaContext, operator: Operator, *, sid: str, acr: str, claimed_org: str,
          client: str, lang: str = "zh") -> tuple[str, PageSession]:
    """A new session for the operator an ID token named: (cookie value, session)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    lang = lang if lang in LANGUAGES else "zh"
    with transaction(ctx.sessions) as session:
        row = models.WebSession(token_hash=token_hash(token), username=operator.username,
                                sid=sid[:64], acr=acr[:128], claimed_org=claimed_org[:128],
                                csrf_token=secrets.token_urlsafe(32), lang=lang,
                                client_address=client[:64], created_at=now, last_seen=now)
        session.add(row)
        session.flush()
        audit.record_event(session, actor=operator.username, action="exchange.login",
                           object_type="operator", object_id=operator.username,
                           outcome="success", details={"via": "oidc", "acr": acr[:128],
                                                       "client": client[:64],
                                                       "session": row.id})
        return token, PageSession(row.id, operator, row.sid, row.acr, row.claimed_org,
                                  row.csrf_token, lang, now)


def resume(ctx: CaContext, token: str, *, config: RaConfig) -> PageSession | None:
    """The live session a cookie names; None when unknown, ended, timed out, or when its
    account is gone or deactivated (the session is ended then)."""
    if not token or len(token) > 128:
        return None
    now = utcnow()
    with transaction(ctx.sessions) as session:
        row = session.scalar(select(models.WebSession).where(
            models.WebSession.token_hash == token_hash(token)))
        if row is None or row.ended_at is not None:
            return None
        if config.session_timed_out(now, row.created_at, row.last_seen):
            row.ended_at = now
            return None
        if now - row.last_seen > dt.timedelta(seconds=60):  # not a write per page view
            row.last_seen = now
        values = (row.id, row.username, row.sid, row.acr, row.claimed_org, row.csrf_token,
                  row.lang, row.created_at)
    try:
        operator = get_operator(ctx.sessions, values[1])
    except NotFound:
        operator = None
    if operator is None or not operator.active:
        end_by_id(ctx, values[0], reason="account-inactive")
        return None
    return PageSession(values[0], operator, *values[2:])


def end_by_id(ctx: CaContext, session_id: int, *, reason: str) -> bool:
    """Logout (or a deactivated account): the cookie stops working everywhere at once."""
    with transaction(ctx.sessions) as session:
        row = session.get(models.WebSession, session_id)
        if row is None or row.ended_at is not None:
            return False
        row.ended_at = utcnow()
        audit.record_event(session, actor=row.username, action="exchange.logout",
                           object_type="operator", object_id=row.username, outcome="success",
                           details={"via": reason, "session": row.id})
        return True


def end_by_sid(ctx: CaContext, sid: str, *, sub: str) -> int:
    """Back-channel logout: end every live session the provider session ``sid`` opened
    (only ``sub``'s, should a token name both)."""
    with transaction(ctx.sessions) as session:
        query = update(models.WebSession).where(models.WebSession.sid == sid[:64],
                                                models.WebSession.ended_at.is_(None))
        if sub:
            query = query.where(models.WebSession.username == sub[:64])
        result = session.execute(query.values(ended_at=utcnow()))
        ended = int(getattr(result, "rowcount", 0) or 0)
        audit.record_event(session, actor=sub[:128] or "unknown", action="exchange.logout",
                           object_type="operator", object_id=sub[:128], outcome="success",
                           details={"via": "backchannel-logout", "sessions": ended})
        return ended


def set_lang(ctx: CaContext, session_id: int, lang: str) -> None:
    if lang not in LANGUAGES:
        return
    with transaction(ctx.sessions) as session:
        session.execute(update(models.WebSession).where(
            models.WebSession.id == session_id).values(lang=lang))
