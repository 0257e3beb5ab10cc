"""The provider through Flask's test client: certificate login, the code flow with PKCE,
ID token, userinfo, discovery, JWKS, logout; acr demands and session timeouts."""

from __future__ import annotations

import base64
import datetime as dt

from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import update

from apps.sso import keys, models
from apps.sso.cert_login import ACR_CERTIFICATE, ACR_PASSWORD
from core.db import transaction, utcnow
from tests.apps.sso.conftest import (
    LOCAL,
    audit_events,
    authorize_url,
    certificate_login,
    code_from,
    pkce,
)


def _token(client, registered, secret, code, verifier, redirect_uri=None):
    auth = base64.b64encode(f"{registered.client_id}:{secret}".encode()).decode()
    return client.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
        "redirect_uri": redirect_uri or registered.redirect_uris[0]},
        headers={"Authorization": f"Basic {auth}"})


def _flow(client, registered, secret, **extra):
    verifier, challenge = pkce()
    reply = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                     challenge, **extra))
    assert reply.status_code == 302, reply.get_data(as_text=True)
    code = code_from(reply.headers["Location"])
    return _token(client, registered, secret, code, verifier), code, verifier


def test_discovery_and_jwks(app) -> None:
    client = app.test_client()
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["issuer"] == LOCAL
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["id_token_signing_alg_values_supported"] == ["ES256"]
    assert meta["backchannel_logout_supported"] is True
    assert set(meta["acr_values_supported"]) == {ACR_CERTIFICATE, ACR_PASSWORD}
    jwks = client.get("/oauth/jwks").get_json()
    assert jwks["keys"] and all(k["alg"] == "ES256" and "d" not in k for k in jwks["keys"])


def test_certificate_login_code_flow_id_token_userinfo(app, sso_pki, person, office_app
                                                       ) -> None:
    registered, secret = office_app
    client = app.test_client()
    verifier, challenge = pkce()
    start = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                     challenge, nonce="n-0S6"))
    assert start.status_code == 303 and "/sso/login" in start.headers["Location"]
    next_url = start.headers["Location"].split("next=", 1)[1].split("&")[0]
    from urllib.parse import unquote

    done = certificate_login(client, person, unquote(next_url))
    assert done.status_code == 303, done.get_data(as_text=True)
    back = client.get(done.headers["Location"])
    assert back.status_code == 302
    assert back.headers["Location"].startswith(registered.redirect_uris[0] + "?code=")
    assert "state=st-1" in back.headers["Location"]
    reply = _token(client, registered, secret, code_from(back.headers["Location"]), verifier)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    body = reply.get_json()
    keyset = KeySet.import_key_set(client.get("/oauth/jwks").get_json())
    token = jwt.decode(body["id_token"], keyset, algorithms=["ES256"])
    claims = token.claims
    assert token.header["typ"] == "JWT" and token.header["kid"]
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": LOCAL},
                          aud={"essential": True, "value": registered.client_id},
                          nonce={"essential": True, "value": "n-0S6"}).validate(claims)
    assert claims["sub"] == person.account.username
    assert claims["acr"] == ACR_CERTIFICATE and "hwk" in claims["amr"]
    assert claims["cert_serial"] == person.serial
    assert claims["organisation"]["code"] == "630100-BGT"
    assert claims["name"] == "王芳" and claims["position"] == "科员"
    assert claims["roles"] == ["official"] and claims["sid"]
    info = client.get("/oauth/userinfo",
                      headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.get_json()["sub"] == person.account.username
    assert info.get_json()["cert_serial"] == person.serial
    assert audit_events(sso_pki, "sso.login", "success")[-1]["details"]["certificate"] \
        == person.serial

    # The session serves a second authorization without logging in again.
    again, _code, _v = _flow(client, registered, secret)
    assert again.status_code == 200

    # Logout with the ID token as hint: session gone, tokens revoked, redirect allowed.
    bye = registered.redirect_uris[0].removesuffix("/callback") + "/bye"
    out = client.get("/oauth/logout", query_string={
        "id_token_hint": body["id_token"], "post_logout_redirect_uri": bye, "state": "s2"})
    assert out.status_code == 302 and out.headers["Location"].endswith("/bye?state=s2")
    info = client.get("/oauth/userinfo",
                      headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 401
    assert client.get("/sso/portal").status_code == 303


def test_portal_lists_applications(app, person, office_app) -> None:
    client = app.test_client()
    certificate_login(client, person)
    page = client.get("/sso/portal").get_data(as_text=True)
    assert office_app[0].name in page and office_app[0].initiate_login_uri in page
    assert "办公门户" in page


def test_acr_values_demand_certificate_after_password_login(app, sso_pki, office_app) -> None:
    """The bootstrap administrator's password login is acr password-totp; an application
    that wants a certificate login gets the login page with certificate login only."""
    from tests.ra.web.conftest import bootstrap_login, csrf_of, totp

    registered, secret = office_app
    login = bootstrap_login(sso_pki)
    client = app.test_client()
    page = client.get("/sso/login").get_data(as_text=True)
    done = client.post("/sso/login", data={
        "csrf_token": csrf_of(page), "method": "password-totp", "username": login.username,
        "password": login.password, "totp": totp(login)})
    assert done.status_code == 303, done.get_data(as_text=True)
    reply, _code, _v = _flow(client, registered, secret)
    from joserfc.jwk import KeySet

    claims = jwt.decode(reply.get_json()["id_token"],
                        KeySet.import_key_set(client.get("/oauth/jwks").get_json())).claims
    assert claims["acr"] == ACR_PASSWORD and "cert_serial" not in claims
    _verifier, challenge = pkce()
    step_up = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                       challenge, acr_values=ACR_CERTIFICATE))
    assert step_up.status_code == 303 and "acr=urn" in step_up.headers["Location"]
    login_page = client.get(step_up.headers["Location"]).get_data(as_text=True)
    assert "password-totp-username" not in login_page  # only certificate login is offered
    essential = client.get(authorize_url(
        registered.client_id, registered.redirect_uris[0], challenge,
        claims='{"id_token": {"acr": {"essential": true, "values": ["urn:other"]}}}'))
    assert "error=unmet_authentication_requirements" in essential.headers["Location"]
    none = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                    challenge, acr_values=ACR_CERTIFICATE, prompt="none"))
    assert "error=login_required" in none.headers["Location"]


def test_idle_and_absolute_timeouts(app, sso_pki, person) -> None:
    client = app.test_client()
    certificate_login(client, person)
    assert client.get("/sso/portal").status_code == 200
    with transaction(sso_pki.ctx.sessions) as session:
        session.execute(update(models.ProviderSession).where(
            models.ProviderSession.operator_id == person.account.id).values(
            last_seen=utcnow() - dt.timedelta(minutes=31)))
    assert client.get("/sso/portal").status_code == 303
    certificate_login(client, person)
    with transaction(sso_pki.ctx.sessions) as session:
        session.execute(update(models.ProviderSession).where(
            models.ProviderSession.operator_id == person.account.id,
            models.ProviderSession.ended_at.is_(None)).values(
            auth_time=utcnow() - dt.timedelta(hours=9)))
    assert client.get("/sso/portal").status_code == 303
    with transaction(sso_pki.ctx.sessions) as session:
        reasons = {r.ended_reason for r in session.query(models.ProviderSession).filter(
            models.ProviderSession.operator_id == person.account.id)}
    assert {"idle", "absolute"} <= reasons


def test_key_rotation_keeps_previous_key_in_jwks(app, sso_pki, person, office_app) -> None:
    registered, secret = office_app
    client = app.test_client()
    certificate_login(client, person)
    before, _c, _v = _flow(client, registered, secret)
    old_token = before.get_json()["id_token"]
    record = keys.rotate(sso_pki.ctx, actor="test")
    app.config["GOVPKI_SSO_PROVIDER"].keys.invalidate()
    jwks = client.get("/oauth/jwks").get_json()
    kids = [k["kid"] for k in jwks["keys"]]
    assert kids[0] == record.kid and len(kids) == 2
    keyset = KeySet.import_key_set(jwks)
    jwt.decode(old_token, keyset, algorithms=["ES256"])  # signed before: still verifies
    after, _c, _v = _flow(client, registered, secret)
    assert jwt.decode(after.get_json()["id_token"], keyset).header["kid"] == record.kid
