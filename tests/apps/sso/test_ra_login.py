"""RA operators log in through the provider: certificate login end to end over HTTP (the RA
pages as an OIDC client), the provider's password form kept for the bootstrap administrator
only, and the RA's own client registration following the issuer."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import requests
from sqlalchemy import select

from apps.sso import clients
from apps.sso.ra_client import ra_client
from core.audit import AuditEvent
from core.db import transaction
from ra.config import RaConfig
from tests.apps.sso.conftest import (
    LOCAL,
    audit_events,
    challenge_of,
    csrf_of,
    make_app,
    make_person,
    served_config,
    sign_answer,
)
from tests.browser import serve


def test_an_operator_logs_in_to_the_ra_with_the_certificate(sso_pki) -> None:
    operator = make_person(sso_pki, name="马受理", role="ra-operator", org="630100")
    app = make_app(sso_pki)
    with serve(app) as base:
        app.config["GOVPKI_SSO_CONFIG"] = served_config(base)
        browser = requests.Session()
        login_page = browser.get(f"{base}/ra/officials", timeout=10)
        # /ra/officials → /ra/sso/login → /oauth/authorize → the provider's login page
        assert urlsplit(login_page.url).path == "/sso/login", login_page.url
        challenge_id, code = challenge_of(login_page.text)
        agent = requests.Session()  # `govpki token sign-challenge` on the official's machine
        answered = sign_answer(None, operator.key, operator.certificate, code, origin=base,
                               post=lambda path, body: agent.post(base + path, json=body,
                                                                  timeout=10))
        assert answered.status_code == 200, answered.text
        next_url = login_page.url.split("next=", 1)[1].split("&")[0]
        from urllib.parse import unquote

        landed = browser.post(f"{base}/sso/login", data={
            "csrf_token": csrf_of(login_page.text), "method": "signed-challenge",
            "challenge": challenge_id, "next": unquote(next_url)}, timeout=15)
        assert landed.url == f"{base}/ra/officials", landed.url
        assert landed.status_code == 200 and "马受理" in landed.text
    with transaction(sso_pki.ctx.sessions) as session:
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "ra.login", AuditEvent.outcome == "success",
            AuditEvent.actor == operator.account.username)).one()
    assert json.loads(event.details)["method"] == "oidc"
    assert json.loads(event.details)["acr"] == "urn:govpki:acr:certificate"


def _password_post(client, username: str, password: str, code: str):
    page = client.get("/sso/login").get_data(as_text=True)
    return client.post("/sso/login", data={
        "csrf_token": csrf_of(page), "method": "password-totp", "username": username,
        "password": password, "totp": code})


def test_provider_password_form_is_the_bootstrap_administrators(sso_pki, app) -> None:
    from tests.ra.web.conftest import bootstrap_login, make_login, totp

    other = make_login(sso_pki, "630000", "ca-admin")
    client = app.test_client()
    refused = _password_post(client, other.username, other.password, totp(other))
    html = refused.get_data(as_text=True)
    assert refused.status_code == 403
    assert "口令登录仅保留给初始管理员" in html and 'id="challenge-code"' in html
    assert "govpki_sso_session=" not in " ".join(refused.headers.getlist("Set-Cookie"))
    assert [e for e in audit_events(sso_pki, "ra.login", "refused")
            if e["object_id"] == other.username][-1]["details"]["error"] \
        == "password-login-not-allowed"
    admin = bootstrap_login(sso_pki)
    allowed = _password_post(app.test_client(), admin.username, admin.password, totp(admin))
    assert allowed.status_code == 303


def test_provider_without_password_login(sso_pki) -> None:
    app = make_app(sso_pki)
    app.config["GOVPKI_RA_CONFIG"] = RaConfig(cookie_secure=False, password_login="none")
    page = app.test_client().get("/sso/login").get_data(as_text=True)
    assert 'id="challenge-code"' in page and "password-totp-username" not in page


def test_the_ra_client_follows_the_issuer(sso_pki) -> None:
    from apps.sso.provider import Provider

    first = ra_client(Provider(sso_pki.ctx, served_config("http://127.0.0.1:1")))
    moved = ra_client(Provider(sso_pki.ctx, served_config("https://pki.example.gov.cn")))
    assert first.client_id == moved.client_id
    assert moved.redirect_uris == ("https://pki.example.gov.cn/ra/sso/callback",)
    assert moved.backchannel_logout_uri == "https://pki.example.gov.cn/ra/sso/backchannel-logout"
    assert clients.get_client(sso_pki.ctx.sessions, moved.client_id) == moved
    assert audit_events(sso_pki, "sso.client.update")[-1]["object_id"] == moved.client_id
    ra_client(Provider(sso_pki.ctx, served_config(LOCAL)))  # back where the other tests are
