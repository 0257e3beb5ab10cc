"""CSRF protection for the RA pages: a secret token in every state-changing form.

Logged in, the token is the session's own ``csrf_token`` (ra.authn keeps it with the session
row, so it dies with the session). Before login there is no session yet, so the login form
uses a double-submit token: a random value in a SameSite=Strict cookie that the form must
repeat; another site can neither read the cookie nor make the browser send it (login CSRF,
logging a victim into an attacker's account, is refused too). The SameSite=Strict session
cookie is the first line; this token is the second, for browsers or proxies that drop it.
"""

from __future__ import annotations

import secrets
from typing import Final

from flask import g, request
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response

from core.web import security

LOGIN_COOKIE: Final = "govpki_ra_login_csrf"
FIELD: Final = "csrf_token"


class CsrfRefused(BadRequest):
    """A POST without the form's token, or with another one: nothing was changed."""

    description = "the form's security token is missing or does not match"


def _login_token() -> str:
    """The pre-login token: the browser's cookie, or a new one to be set with the response."""
    existing = request.cookies.get(LOGIN_COOKIE, "")
    if 32 <= len(existing) <= 128:
        return existing
    fresh = g.get("ra_new_login_token")
    if fresh is None:
        fresh = secrets.token_urlsafe(32)
        g.ra_new_login_token = fresh
    return str(fresh)


def form_token(session_token: str | None) -> str:
    """What a form's hidden ``csrf_token`` field carries on this page."""
    return session_token if session_token else _login_token()


def check(session_token: str | None) -> None:
    """Refuse the POST unless it repeats the expected token (constant-time comparison)."""
    expected = session_token or request.cookies.get(LOGIN_COOKIE, "")
    submitted = request.form.get(FIELD, "")
    if not security.tokens_match(expected, submitted):
        raise CsrfRefused()


def persist_login_token(response: Response, *, secure: bool, path: str) -> None:
    """Set the pre-login cookie if this page handed out a new token."""
    fresh = g.get("ra_new_login_token")
    if fresh is not None:
        response.set_cookie(LOGIN_COOKIE, str(fresh), path=path, httponly=True, secure=secure,
                            samesite="Strict")


def forget_login_token(response: Response, *, secure: bool, path: str) -> None:
    response.delete_cookie(LOGIN_COOKIE, path=path, secure=secure, httponly=True,
                           samesite="Strict")
