"""An independent OIDC client library over real HTTP on loopback: authlib's requests client
(OAuth2Session with PKCE S256) completes the code flow against the discovery document, the
ID token is validated against the JWKS with joserfc, userinfo answers, and RP-initiated
logout ends the session at a second application through Back-Channel Logout 1.0."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask, request
from joserfc import jwt
from joserfc.jwk import KeySet

from apps.sso.cert_login import ACR_CERTIFICATE
from tests.apps.sso.conftest import (
    audit_events,
    challenge_of,
    csrf_of,
    make_app,
    register,
    served_config,
    sign_answer,
)
from tests.browser import serve


class RelyingParty:
    """A second office application: records the logout tokens it receives."""

    def __init__(self) -> None:
        self.logout_tokens: list[str] = []
        self.received = threading.Event()
        self.app = Flask("relying-party")

        @self.app.post("/backchannel")
        def backchannel() -> tuple[str, int]:
            self.logout_tokens.append(request.form["logout_token"])
            self.received.set()
            return "", 200


def _user_agent_login(ua: requests.Session, base: str, person) -> None:
    html = ua.get(f"{base}/sso/login").text
    challenge_id, code = challenge_of(html)

    def post(path: str, body: dict[str, Any]) -> requests.Response:
        return ua.post(base + path, json=body)

    answer = sign_answer(None, person.key, person.certificate, code, origin=base, post=post)
    assert answer.status_code == 200, answer.text
    done = ua.post(f"{base}/sso/login", data={"csrf_token": csrf_of(html),
                                              "method": "signed-challenge",
                                              "challenge": challenge_id},
                   allow_redirects=False)
    assert done.status_code == 303, done.text


def run_code_flow(pki, person, *, public: bool = False) -> None:
    rp = RelyingParty()
    app = make_app(pki)
    with serve(app) as base, serve(rp.app) as rp_base:
        app.config["GOVPKI_SSO_CONFIG"] = served_config(base)
        registered, secret = register(pki, base=rp_base, public=public,
                                      backchannel=f"{rp_base}/backchannel")
        meta = requests.get(f"{base}/.well-known/openid-configuration", timeout=10).json()
        assert meta["issuer"] == base

        ua = requests.Session()  # the official's browser
        _user_agent_login(ua, base, person)

        oauth = OAuth2Session(registered.client_id, secret, scope="openid profile organisation",
                              redirect_uri=registered.redirect_uris[0],
                              code_challenge_method="S256",
                              token_endpoint_auth_method="none" if public
                              else "client_secret_basic")
        verifier, nonce = generate_token(48), generate_token(16)
        uri, state = oauth.create_authorization_url(meta["authorization_endpoint"],
                                                    code_verifier=verifier, nonce=nonce)
        reply = ua.get(uri, allow_redirects=False)
        assert reply.status_code == 302, reply.text
        location = reply.headers["Location"]
        assert location.startswith(registered.redirect_uris[0])
        token = oauth.fetch_token(meta["token_endpoint"], authorization_response=location,
                                  code_verifier=verifier, state=state)
        jwks = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
        decoded = jwt.decode(token["id_token"], jwks, algorithms=["ES256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": base},
            aud={"essential": True, "value": registered.client_id},
            nonce={"essential": True, "value": nonce},
            sub={"essential": True, "value": person.account.username},
            acr={"essential": True, "value": ACR_CERTIFICATE}).validate(decoded.claims)
        info = oauth.get(meta["userinfo_endpoint"]).json()
        assert info["sub"] == person.account.username and info["organisation"]["name"]

        out = ua.get(meta["end_session_endpoint"], params={
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": f"{rp_base}/bye"}, allow_redirects=False)
        assert out.status_code == 302 and out.headers["Location"] == f"{rp_base}/bye"
        assert rp.received.wait(10)
        logout = jwt.decode(rp.logout_tokens[0], jwks, algorithms=["ES256"])
        assert logout.header["typ"] == "logout+jwt"
        claims = logout.claims
        assert claims["sid"] == decoded.claims["sid"] and claims["sub"] == info["sub"]
        assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"]
        assert "nonce" not in claims and claims["aud"] == registered.client_id
        assert oauth.get(meta["userinfo_endpoint"]).status_code == 401
        assert ua.get(f"{base}/sso/portal", allow_redirects=False).status_code == 303
        sent = audit_events(pki, "sso.backchannel-logout", "success")
        assert sent[-1]["object_id"] == registered.client_id


def test_authlib_client_code_flow_and_backchannel_logout(sso_pki, person) -> None:
    run_code_flow(sso_pki, person)


def test_public_client_with_pkce_alone(sso_pki, person) -> None:
    run_code_flow(sso_pki, person, public=True)


@pytest.mark.postgres
def test_code_flow_on_postgres(pg_file_pki) -> None:
    from tests.apps.sso.conftest import make_person, sso_ready

    pki = sso_ready(pg_file_pki)
    run_code_flow(pki, make_person(pki, name="马丽"))
