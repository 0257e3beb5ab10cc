"""A minimal office application that logs users in through govpki's single sign-on.

Flask + authlib's Flask client (the same library the provider uses, on the other side): code
flow with PKCE S256 and a nonce, the ID token checked against the provider's JWKS, OpenID
Connect Back-Channel Logout 1.0, and a page that demands a certificate login (acr) before a
sensitive action. docs/sso.md walks through it.

Register it first (a ca-admin, on the CA host)::

    govpki sso client add 值班管理 --client-id duty \\
        --redirect-uri https://duty.example.gov.cn/callback \\
        --backchannel-logout-uri https://duty.example.gov.cn/backchannel-logout \\
        --post-logout-redirect-uri https://duty.example.gov.cn/ \\
        --initiate-login-uri https://duty.example.gov.cn/login

then run it with the printed id and secret in the environment::

    SSO_ISSUER=https://sso.example.gov.cn SSO_CLIENT_ID=duty SSO_CLIENT_SECRET=… \\
    APP_SECRET_KEY=$(openssl rand -hex 32) flask --app examples/sso_client.py run

Sessions here are Flask's signed cookies for brevity; the set of sids ended by back-channel
logout is kept in memory (a real application keeps its sessions server-side and ends them).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from authlib.integrations.flask_client import OAuth
from flask import Flask, abort, redirect, request, session, url_for
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ACR_CERTIFICATE = "urn:govpki:acr:certificate"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def create_app(issuer: str | None = None, client_id: str | None = None,
               client_secret: str | None = None) -> Flask:
    issuer = (issuer or os.environ["SSO_ISSUER"]).rstrip("/")
    app = Flask(__name__)
    app.secret_key = os.environ.get("APP_SECRET_KEY") or os.urandom(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    oauth = OAuth(app)
    provider = oauth.register(
        "govpki", client_id=client_id or os.environ["SSO_CLIENT_ID"],
        client_secret=client_secret or os.environ["SSO_CLIENT_SECRET"],
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid profile organisation roles",
                       "code_challenge_method": "S256"})
    ended_sids: set[str] = set()
    lock = threading.Lock()

    @app.before_request
    def _ended_elsewhere() -> None:
        with lock:
            if session.get("sid") in ended_sids:
                session.clear()  # the provider said this login has ended (back channel)

    @app.get("/")
    def home() -> str:
        user = session.get("user")
        if not user:
            return '<p><a href="/login">统一身份认证登录</a></p>'
        org = user.get("organisation", {}).get("name", "")
        return (f"<p id='who'>{user['name']}（{org}）</p>"
                "<p><a href='/sensitive'>签批（需证书登录）</a> · <a href='/logout'>退出</a></p>")

    @app.get("/login")
    def login() -> Any:
        return provider.authorize_redirect(url_for("callback", _external=True))

    @app.get("/callback")
    def callback() -> Any:
        token = provider.authorize_access_token()  # code + PKCE; ID token, nonce checked
        user = token["userinfo"]
        session.clear()
        session.update(user=dict(user), sid=user.get("sid"), acr=user.get("acr"),
                       id_token=token["id_token"])
        return redirect(session.pop("after_login", "/"))

    @app.get("/sensitive")
    def sensitive() -> Any:
        if session.get("acr") != ACR_CERTIFICATE:
            session["after_login"] = "/sensitive"
            return provider.authorize_redirect(url_for("callback", _external=True),
                                               acr_values=ACR_CERTIFICATE)
        return "<p id='signed'>已使用数字证书登录，可以签批。</p>"

    @app.get("/logout")
    def logout() -> Any:
        hint = session.get("id_token")
        session.clear()
        metadata = provider.load_server_metadata()
        return redirect(f"{metadata['end_session_endpoint']}?id_token_hint={hint}"
                        f"&post_logout_redirect_uri={url_for('home', _external=True)}")

    @app.post("/backchannel-logout")
    def backchannel_logout() -> tuple[str, int]:
        """Back-Channel Logout 1.0 §2.6: validate the logout token, end the sid's session."""
        keys = KeySet.import_key_set(provider.fetch_jwk_set())
        try:
            decoded = jwt.decode(request.form.get("logout_token", ""), keys,
                                 algorithms=["ES256"])
        except (JoseError, ValueError):
            abort(400)
        claims = decoded.claims
        ok = (claims.get("iss") == issuer and claims.get("aud") == provider.client_id
              and BACKCHANNEL_EVENT in (claims.get("events") or {})
              and "nonce" not in claims and abs(time.time() - claims.get("iat", 0)) < 300
              and claims.get("sid"))
        if not ok:
            abort(400)
        with lock:
            ended_sids.add(claims["sid"])
        return "", 200

    return app


if __name__ == "__main__":
    create_app().run()
