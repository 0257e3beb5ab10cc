"""Logging in and out of the exchange pages through the single sign-on provider.

* ``GET /exchange/sso/login?next=/exchange/...`` — an authorization request (code flow,
  PKCE S256, nonce, state); state, verifier, nonce and the page to return to travel in a
  cookie sealed with the installation secret (ra.sealing, AES-GCM), so any node finishes it.
* ``GET /exchange/sso/callback`` — checks state, redeems the code at the token endpoint over
  HTTP, checks the ID token (oidc.check_id_token), maps ``sub`` (the RA account) to the
  operator whose roles and organisation authorise every exchange action, and opens a page
  session bound to the provider's ``sid``.
* ``POST /exchange/logout`` — ends the page session and continues at the provider's
  end-session endpoint (RP-initiated logout), so single sign-on ends everywhere.
* ``POST /exchange/sso/backchannel-logout`` — Back-Channel Logout 1.0 §2.6: a valid logout
  token ends the sessions its ``sid`` opened (200), anything else is refused (400).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any, Final

from flask import redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from apps.exchange.web import oidc, sessions
from apps.exchange.web.base import (
    COOKIE_PATH,
    LANG_COOKIE,
    bp,
    ca_context,
    clear_session_cookie,
    cookie_secure,
    page_session,
    relying_party,
    render,
    set_session_cookie,
)
from apps.exchange.web.errors import BadLogoutToken, LoginFailed
from core import audit
from ra.errors import NotFound
from ra.operators import get_operator
from ra.sealing import Sealer

STATE_COOKIE: Final = "govpki_exchange_oidc"
STATE_PATH: Final = "/exchange/sso"
STATE_SECONDS: Final = 600
SEAL_CONTEXT: Final = "exchange-oidc-state"


def _seal(data: dict[str, Any]) -> str:
    sealer = Sealer.for_home(ca_context().config.home)
    return base64.urlsafe_b64encode(sealer.seal(json.dumps(data).encode(),
                                                SEAL_CONTEXT)).decode("ascii")


def _unseal(value: str) -> dict[str, Any] | None:
    if not value or len(value) > 4096:
        return None
    try:
        raw = Sealer.for_home(ca_context().config.home).open(
            base64.urlsafe_b64decode(value.encode("ascii")), SEAL_CONTEXT)
        data = json.loads(raw)
    except Exception:  # any damage to the cookie means "no login in progress"
        return None
    return data if isinstance(data, dict) else None


def safe_next(target: str | None) -> str:
    """Only local exchange pages: a login link must not become an open redirect."""
    default = url_for("exchange_web.inbox")
    if not target or not target.startswith(COOKIE_PATH + "/") or target.startswith("//") \
            or target.startswith(STATE_PATH) or "\\" in target \
            or any(ord(c) < 32 for c in target):
        return default
    return target


def _refuse(reason: str, message: str, actor: str = "unknown") -> None:
    audit.record_refusal(ca_context().sessions, actor=actor[:128], action="exchange.login",
                         object_type="operator", object_id=actor[:128],
                         details={"error": reason, "message": message[:300]})


@bp.get("/sso/login")
def sso_login() -> ResponseReturnValue:
    rp = relying_party()
    if rp.register is not None:
        rp.register(rp.uris)
    verifier = secrets.token_urlsafe(48)
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    response = redirect(oidc.authorization_url(rp, state=state, nonce=nonce,
                                               verifier=verifier), 303)
    response.set_cookie(STATE_COOKIE, _seal({
        "state": state, "nonce": nonce, "verifier": verifier, "at": int(time.time()),
        "next": safe_next(request.args.get("next"))}), path=STATE_PATH, httponly=True,
        secure=cookie_secure(), samesite="Lax", max_age=STATE_SECONDS)
    return response


@bp.get("/sso/callback")
def sso_callback() -> ResponseReturnValue:
    rp = relying_party()
    saved = _unseal(request.cookies.get(STATE_COOKIE, ""))
    fresh = saved is not None and int(time.time()) - int(saved.get("at", 0)) < STATE_SECONDS
    if saved is None or not fresh or request.args.get("state") != saved.get("state"):
        _refuse("oidc-state", "the login did not start here or took too long")
        raise LoginFailed("the login did not start here or took too long: log in again")
    if request.args.get("error"):
        error = request.args.get("error", "")[:64]
        _refuse("oidc-error", f"the provider answered {error}")
        raise LoginFailed(f"the single sign-on provider did not log you in ({error})")
    code = request.args.get("code", "")
    if not code:
        raise LoginFailed("the provider's answer carries no authorization code")
    try:
        id_token = oidc.redeem(rp, code, str(saved["verifier"]))
        claims = oidc.check_id_token(rp, id_token, nonce=str(saved["nonce"]))
    except LoginFailed as exc:
        _refuse("oidc", exc.message)
        raise
    username = str(claims["sub"])
    try:
        operator = get_operator(ca_context().sessions, username)
    except NotFound:
        operator = None
    if operator is None or not operator.active:
        _refuse("no-account", "no active RA account for the ID token's subject", username)
        raise LoginFailed(f"{username} has no active account for the exchange")
    org_claim = claims.get("organisation")
    claimed_org = str(org_claim.get("name", "")) if isinstance(org_claim, dict) else ""
    token, _session = sessions.start(
        ca_context(), operator, sid=str(claims.get("sid") or ""),
        acr=str(claims.get("acr") or ""), claimed_org=claimed_org,
        client=request.remote_addr or "", lang=request.cookies.get(LANG_COOKIE, "zh"))
    response = redirect(safe_next(str(saved.get("next") or "")), 303)
    set_session_cookie(response, token)
    response.delete_cookie(STATE_COOKIE, path=STATE_PATH, httponly=True,
                           secure=cookie_secure(), samesite="Lax")
    return response


@bp.post("/sso/backchannel-logout")
def backchannel_logout() -> Response:
    """Answers per Back-Channel Logout 1.0 §2.8: 200 when the sessions are ended, 400 with
    an OAuth-style JSON error when the token is refused; never cached."""
    rp = relying_party()
    try:
        claims = oidc.check_logout_token(rp, request.form.get("logout_token", ""))
    except BadLogoutToken as exc:
        _refuse("logout-token", exc.message)
        response = Response(json.dumps({"error": "invalid_request",
                                        "error_description": exc.message}), 400,
                            mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response
    sessions.end_by_sid(ca_context(), str(claims.get("sid") or ""),
                        sub=str(claims.get("sub") or ""))
    response = Response("", 200)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    current = page_session()
    if current is not None:
        sessions.end_by_id(ca_context(), current.id, reason="logout")
    target = oidc.end_session_url(relying_party()) or url_for("exchange_web.bye")
    response = redirect(target, 303)
    clear_session_cookie(response)
    return response


@bp.get("/bye")
def bye() -> ResponseReturnValue:
    return render("bye.html")


@bp.get("/lang/<code>")
def lang(code: str) -> ResponseReturnValue:
    response = redirect(safe_next(request.args.get("next")), 303)
    if code in sessions.LANGUAGES:
        current = page_session()
        if current is not None:
            sessions.set_lang(ca_context(), current.id, code)
        response.set_cookie(LANG_COOKIE, code, path=COOKIE_PATH, httponly=True,
                            secure=cookie_secure(), samesite="Lax",
                            max_age=365 * 24 * 3600)
    return response

