"""The RA web pages (/ra) as an OpenID Connect client of the provider: "RA operators and
administrators log in through the same provider".

New routes under /ra/sso (ra/web sends operators here: certificate login is how they log in,
the bootstrap administrator's password form aside):

* ``GET /ra/sso/login?next=/ra/...`` — an authorization request (code flow, PKCE S256, nonce,
  state); state, verifier, nonce and the page to return to travel in a cookie sealed with the
  RA's installation secret (ra.sealing: AES-GCM), so any node can finish the flow.
* ``GET /ra/sso/callback`` — checks state, exchanges the code at the token endpoint over
  HTTP like any other client, checks the ID token (signature against the provider's keys,
  iss, aud, exp, nonce), maps ``sub`` (the RA account name) to the operator and opens an
  ordinary ra.authn session whose ``acr`` is the ID token's: the RA's pages then work as after
  a password login.
* ``POST /ra/sso/backchannel-logout`` — OIDC Back-Channel Logout 1.0 §2.6: a valid logout
  token ends the RA sessions its ``sid`` opened.

The client registers itself (public client, PKCE only) the first time it is used, with
redirect and back-channel URIs under the provider's issuer, which is also the RA's address in
the one-application deployment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from flask import Blueprint, redirect, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.wrappers import Response

from apps.sso import clients, models
from apps.sso.errors import MalformedInput
from apps.sso.provider import BACKCHANNEL_EVENT, Provider
from apps.sso.views import ca_context, error_page, provider, sso_config
from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow
from ra.authn import end_sessions_by_hash, start_session
from ra.errors import AuthenticationFailed, NotFound
from ra.operators import get_operator
from ra.records import Operator
from ra.sealing import Sealer
from ra.web.base import ra_config

bp = Blueprint("sso_ra_client", __name__)

STATE_COOKIE: Final = "govpki_ra_oidc"
RA_SESSION_COOKIE: Final = "govpki_ra_session"  # ra.web.base.SESSION_COOKIE
STATE_SECONDS: Final = 600
CLIENT_NAME: Final = "注册审核系统 (RA)"


class OidcLogin:
    """"Logged in through the provider" as an ra.authn.LoginMethod: ra.authn keeps its name
    and acr (the ID token's) with the session. It proves nothing from a form by itself: the
    callback has checked the ID token before a session is started with it."""

    name: str = "oidc"
    fields: tuple[str, ...] = ()

    def __init__(self, acr: str) -> None:
        self.acr = acr

    def authenticate(self, ctx: CaContext, form: Mapping[str, str], *, client: str
                     ) -> Operator:
        raise AuthenticationFailed("log in through the single sign-on provider")


def ra_client(server: Provider) -> clients.RegisteredClient:
    """The RA's own client registration, made on first use; its URIs follow the issuer (a
    changed ``[sso] issuer`` or public base URL moves them with it)."""
    client_id = server.config.ra_client_id
    base = server.issuer
    uris: dict[str, Any] = {
        "redirect_uris": [f"{base}/ra/sso/callback"],
        "post_logout_redirect_uris": [f"{base}/ra/login?bye=1"],
        "backchannel_logout_uri": f"{base}/ra/sso/backchannel-logout",
        "initiate_login_uri": f"{base}/ra/sso/login"}
    found = clients.get_client(server.ctx.sessions, client_id)
    if found is None:
        created, _secret = clients.add_client(server.ctx.sessions, "system", CLIENT_NAME,
                                              client_id=client_id, public=True, **uris)
        return created
    if (list(found.redirect_uris), list(found.post_logout_redirect_uris),
            found.backchannel_logout_uri, found.initiate_login_uri) != tuple(uris.values()):
        return clients.set_uris(server.ctx.sessions, "system", client_id, **uris)
    return found


def _seal(data: dict[str, Any]) -> str:
    sealed = Sealer.for_home(ca_context().config.home).seal(json.dumps(data).encode(),
                                                            "ra-oidc-state")
    return base64.urlsafe_b64encode(sealed).decode("ascii")


def _unseal(value: str) -> dict[str, Any] | None:
    try:
        raw = Sealer.for_home(ca_context().config.home).open(
            base64.urlsafe_b64decode(value.encode("ascii")), "ra-oidc-state")
        data = json.loads(raw)
    except Exception:  # any damage to the cookie means "no login in progress"
        return None
    return data if isinstance(data, dict) else None


def _safe_ra_next(target: str | None) -> str:
    if not target or not target.startswith("/ra/") or target.startswith("/ra/sso") \
            or "\\" in target or any(ord(c) < 32 for c in target):
        return "/ra/"
    return target


@bp.get("/ra/sso/login")
def ra_login() -> ResponseReturnValue:
    server = provider()
    client = ra_client(server)
    verifier = secrets.token_urlsafe(48)
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": client.client_id,
        "redirect_uri": client.redirect_uris[0], "scope": "openid profile organisation roles",
        "state": state, "nonce": nonce, "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256"})
    response = redirect(f"/oauth/authorize?{query}", 303)
    response.set_cookie(STATE_COOKIE, _seal({
        "state": state, "nonce": nonce, "verifier": verifier, "at": int(time.time()),
        "next": _safe_ra_next(request.args.get("next"))}), path="/ra/sso", httponly=True,
        secure=sso_config().cookie_secure, samesite="Lax", max_age=STATE_SECONDS)
    return response


def _exchange(server: Provider, client: clients.RegisteredClient, code: str,
              verifier: str) -> dict[str, Any]:
    body = urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": code, "client_id": client.client_id,
        "redirect_uri": client.redirect_uris[0], "code_verifier": verifier}).encode()
    req = urllib.request.Request(  # noqa: S310 (the provider's own http(s) issuer)
        f"{server.issuer}/oauth/token", data=body, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as reply:  # noqa: S310
            data = json.loads(reply.read(65536))
    except urllib.error.HTTPError as exc:
        raise MalformedInput(f"the token endpoint refused the code (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise MalformedInput(f"the token endpoint could not be reached: "
                             f"{type(exc).__name__}") from None
    if not isinstance(data, dict) or not isinstance(data.get("id_token"), str):
        raise MalformedInput("the token endpoint returned no ID token")
    return data


def check_id_token(server: Provider, id_token: str, *, audience: str, nonce: str
                   ) -> dict[str, Any]:
    """OIDC Core §3.1.3.7: signature, iss, aud, azp, exp, nonce."""
    claims = server.keys.verify(id_token)
    now = time.time()
    aud = claims.get("aud")
    problems = []
    if claims.get("iss") != server.issuer:
        problems.append("iss")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        problems.append("aud")
    if not isinstance(claims.get("exp"), int) or claims["exp"] < now - 30:
        problems.append("exp")
    if claims.get("nonce") != nonce:
        problems.append("nonce")
    if problems:
        raise MalformedInput(f"the ID token is not acceptable ({', '.join(problems)})")
    return claims


@bp.get("/ra/sso/callback")
def ra_callback() -> ResponseReturnValue:
    server = provider()
    client = ra_client(server)
    saved = _unseal(request.cookies.get(STATE_COOKIE, ""))
    fresh = saved is not None and int(time.time()) - int(saved.get("at", 0)) < STATE_SECONDS
    if not fresh or saved is None or request.args.get("state") != saved.get("state"):
        server.refuse("ra.login", client.client_id, "oidc-state", {})
        return error_page(400, "error.title", "the login did not start here or took too long")
    if request.args.get("error") or not request.args.get("code"):
        return redirect("/ra/login", 303)
    try:
        tokens = _exchange(server, client, request.args["code"], str(saved["verifier"]))
        claims = check_id_token(server, tokens["id_token"], audience=client.client_id,
                                nonce=str(saved["nonce"]))
        operator = get_operator(server.ctx.sessions, str(claims.get("sub", "")))
    except (MalformedInput, NotFound) as exc:
        server.refuse("ra.login", client.client_id, "oidc", {"message": exc.message[:200]})
        return error_page(403, "error.forbidden", exc.message)
    ctx = ca_context()
    method = OidcLogin(acr=str(claims.get("acr") or "urn:govpki:acr:oidc"))
    token, _ = start_session(ctx, operator, method, client=request.remote_addr or "")
    with transaction(ctx.sessions) as session:
        session.add(models.RaClientSession(sid=str(claims.get("sid", ""))[:64],
                                           ra_token_hash=hashlib.sha256(token.encode())
                                           .hexdigest(), created_at=utcnow()))
    response = redirect(_safe_ra_next(str(saved.get("next"))), 303)
    response.set_cookie(RA_SESSION_COOKIE, token, path="/ra", httponly=True,
                        secure=ra_config().cookie_secure, samesite="Strict")
    response.delete_cookie(STATE_COOKIE, path="/ra/sso")
    return response


def check_logout_token(server: Provider, token: str, *, audience: str) -> dict[str, Any]:
    """Back-Channel Logout 1.0 §2.6: signature, iss, aud, iat, events, sid or sub, no nonce."""
    claims = server.keys.verify(token)
    events = claims.get("events")
    now = time.time()
    problems = []
    if claims.get("iss") != server.issuer:
        problems.append("iss")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        problems.append("aud")
    if not isinstance(claims.get("iat"), int) or abs(now - claims["iat"]) > 300:
        problems.append("iat")
    if not isinstance(events, dict) or BACKCHANNEL_EVENT not in events:
        problems.append("events")
    if "nonce" in claims:
        problems.append("nonce")
    if not claims.get("sid") and not claims.get("sub"):
        problems.append("sid/sub")
    if problems:
        raise MalformedInput(f"not an acceptable logout token ({', '.join(problems)})")
    return claims


@bp.post("/ra/sso/backchannel-logout")
def ra_backchannel_logout() -> Response:
    server = provider()
    client = ra_client(server)
    try:
        claims = check_logout_token(server, request.form.get("logout_token", ""),
                                    audience=client.client_id)
    except MalformedInput as exc:
        server.refuse("ra.logout", client.client_id, "logout-token",
                      {"message": exc.message[:200]})
        response = Response(json.dumps({"error": "invalid_request",
                                        "error_description": exc.message}), 400,
                            mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response
    ctx = ca_context()
    with transaction(ctx.sessions) as session:
        hashes = list(session.scalars(select(models.RaClientSession.ra_token_hash).where(
            models.RaClientSession.sid == str(claims.get("sid", "")))))
        ended = end_sessions_by_hash(session, hashes)
        audit.record_event(session, actor=str(claims.get("sub") or "unknown"),
                           action="ra.logout", object_type="operator",
                           object_id=str(claims.get("sub") or ""), outcome="success",
                           details={"via": "backchannel-logout", "sessions": ended})
    response = Response("", 200)
    response.headers["Cache-Control"] = "no-store"
    return response


