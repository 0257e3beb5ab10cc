"""The one authentication interface of the RA's web pages and API.

A :class:`LoginMethod` turns what a login form (or a proxy) presents into an operator; the
views only know this protocol and :func:`login_methods`, so certificate login (the SSO issue)
is one more entry in the registry, not a change to the views. What a method proved is kept
with the session as ``acr`` (OIDC's authentication context class), so a page can later demand
a stronger login before a sensitive action.

Web sessions are server-side rows keyed by the SHA-256 of a 256-bit cookie value: logout and
deactivation end them at once, and a database copy holds no usable cookie. They end after
``session_idle_minutes`` without a request or ``session_absolute_hours`` after login.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow
from ra import models
from ra.config import RaConfig
from ra.credentials import PasswordTotpLogin
from ra.operators import load_operator
from ra.records import Operator

LANGUAGES = ("zh", "en")


class LoginMethod(Protocol):
    name: str
    acr: str
    fields: tuple[str, ...]

    def authenticate(self, ctx: CaContext, form: Mapping[str, str], *, client: str
                     ) -> Operator:
        """The operator the form proves, or raise ra.errors.AuthenticationFailed /
        AccountLocked / PasswordLoginNotAllowed (after auditing the refusal)."""
        ...


def login_methods(config: RaConfig) -> dict[str, LoginMethod]:
    """Every way an operator can log in, by name, in the order the login page offers them."""
    methods: list[LoginMethod] = [PasswordTotpLogin(config)]
    return {m.name: m for m in methods}


@dataclass(frozen=True)
class WebSession:
    id_hash: str
    operator: Operator
    method: str
    acr: str
    csrf_token: str
    created_at: dt.datetime
    last_seen: dt.datetime
    lang: str


def token_hash(token: str) -> str:
    """What a session table stores of a session cookie: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(ctx: CaContext, operator: Operator, method: LoginMethod, *, client: str,
                  lang: str = "zh") -> tuple[str, WebSession]:
    """A new session for a just-authenticated operator: (cookie value, session)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    lang = lang if lang in LANGUAGES else "zh"
    with transaction(ctx.sessions) as session:
        row = models.WebSession(token_hash=token_hash(token), operator_id=operator.id,
                                method=method.name, acr=method.acr,
                                csrf_token=secrets.token_urlsafe(32), lang=lang,
                                client=client[:64], created_at=now, last_seen=now)
        session.add(row)
        session.flush()
        audit.record_event(session, actor=operator.username, action="ra.login",
                           object_type="operator", object_id=operator.username,
                           outcome="success",
                           details={"method": method.name, "acr": method.acr,
                                    "client": client[:64], "session": row.id})
        return token, WebSession(row.token_hash, operator, row.method, row.acr,
                                 row.csrf_token, now, now, lang)


def resume_session(ctx: CaContext, token: str, *, config: RaConfig) -> WebSession | None:
    """The live session a cookie names, touched; None when unknown, ended or timed out, or
    when its operator has been deactivated since."""
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
        operator_row = session.get(models.Operator, row.operator_id)
        if operator_row is None or not operator_row.active:
            row.ended_at = now
            return None
        # Touch at most once a minute: every page view need not be a write.
        if now - row.last_seen > dt.timedelta(seconds=60):
            row.last_seen = now
        operator = load_operator(session, operator_row.id)
        assert operator is not None
        return WebSession(row.token_hash, operator, row.method, row.acr, row.csrf_token,
                          row.created_at, row.last_seen, row.lang)


def end_session(ctx: CaContext, token: str) -> None:
    """Logout: the cookie stops working everywhere at once."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        row = session.scalar(select(models.WebSession).where(
            models.WebSession.token_hash == token_hash(token),
            models.WebSession.ended_at.is_(None)))
        if row is None:
            return
        row.ended_at = now
        operator = session.get(models.Operator, row.operator_id)
        audit.record_event(session, actor=operator.username if operator else "unknown",
                           action="ra.logout", object_type="operator",
                           object_id=operator.username if operator else "",
                           outcome="success", details={"session": row.id})


def end_sessions_of(ctx: CaContext, operator_id: int) -> int:
    """End every session of an operator (deactivation, password reset)."""
    with transaction(ctx.sessions) as session:
        result = session.execute(update(models.WebSession).where(
            models.WebSession.operator_id == operator_id,
            models.WebSession.ended_at.is_(None)).values(ended_at=utcnow()))
        return int(getattr(result, "rowcount", 0) or 0)


def end_sessions_by_hash(session: Session, token_hashes: Sequence[str]) -> int:
    """End the sessions named by the SHA-256 of their cookies, inside the caller's
    transaction: what a relying party of single sign-on keeps (it never holds the cookie),
    for back-channel logout."""
    if not token_hashes:
        return 0
    result = session.execute(update(models.WebSession).where(
        models.WebSession.token_hash.in_(list(token_hashes)),
        models.WebSession.ended_at.is_(None)).values(ended_at=utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


def set_session_lang(ctx: CaContext, token: str, lang: str) -> None:
    if lang not in LANGUAGES:
        return
    with transaction(ctx.sessions) as session:
        session.execute(update(models.WebSession).where(
            models.WebSession.token_hash == token_hash(token)).values(lang=lang))
