"""Bad input, each refused and audited: wrong redirect URI, PKCE plain or missing, replayed
code, expired and replayed challenges, tampered tokens, revoked / suspended / foreign
certificates, a Client-Cert header from an untrusted address, a wrong signature."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import update

from apps.sso import models
from ca.revocation import release, revoke, suspend
from core.db import transaction, utcnow
from tests.apps.sso.conftest import (
    LOCAL,
    audit_events,
    authorize_url,
    certificate_login,
    challenge_of,
    code_from,
    csrf_of,
    make_app,
    make_person,
    pkce,
    sign_answer,
)
from tests.ca.helpers import new_key


def _basic(registered, secret) -> dict[str, str]:
    auth = base64.b64encode(f"{registered.client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {auth}"}


def _logged_in(app, person):
    client = app.test_client()
    assert certificate_login(client, person).status_code == 303
    return client


def test_wrong_redirect_uri_is_a_page_not_a_redirect(app, sso_pki, person, office_app) -> None:
    registered, _secret = office_app
    client = _logged_in(app, person)
    _v, challenge = pkce()
    for uri in ("https://evil.example/callback", registered.redirect_uris[0] + "/",
                registered.redirect_uris[0] + "?x=1"):
        reply = client.get(authorize_url(registered.client_id, uri, challenge))
        assert reply.status_code == 400 and "Location" not in reply.headers
        assert "回调地址" in reply.get_data(as_text=True)
    unknown = client.get(authorize_url("app-nobody", registered.redirect_uris[0], challenge))
    assert unknown.status_code == 400
    refused = audit_events(sso_pki, "sso.authorize", "refused")
    assert any("evil.example" in e["details"].get("redirect_uri", "") for e in refused)


@pytest.mark.parametrize("method", ["plain", None])
def test_pkce_plain_or_missing_is_refused(app, sso_pki, person, office_app, method) -> None:
    registered, _secret = office_app
    client = _logged_in(app, person)
    verifier, challenge = pkce()
    extra = {"code_challenge_method": method} if method else {}
    url = authorize_url(registered.client_id, registered.redirect_uris[0],
                        verifier if method else challenge, **extra)
    if method is None:
        url = url.replace("&code_challenge_method=S256", "").replace(
            f"&code_challenge={challenge}", "")
    reply = client.get(url)
    assert reply.status_code == 302 and "error=invalid_request" in reply.headers["Location"]
    assert audit_events(sso_pki, "sso.authorize", "refused")[-1]["details"]["error"] \
        == "invalid_request"


def test_replayed_code_is_refused_and_revokes_tokens(app, sso_pki, person, office_app) -> None:
    registered, secret = office_app
    client = _logged_in(app, person)
    verifier, challenge = pkce()
    reply = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                     challenge))
    code = code_from(reply.headers["Location"])
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": registered.redirect_uris[0]}
    first = client.post("/oauth/token", data=form, headers=_basic(registered, secret))
    assert first.status_code == 200
    access = first.get_json()["access_token"]
    second = client.post("/oauth/token", data=form, headers=_basic(registered, secret))
    assert second.status_code == 400 and second.get_json()["error"] == "invalid_grant"
    info = client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert info.status_code == 401  # RFC 6749 §4.1.2: tokens from a replayed code revoked
    assert any(e["details"]["error"] == "replayed"
               for e in audit_events(sso_pki, "sso.token", "refused"))


def test_wrong_verifier_wrong_secret_and_wrong_redirect_at_token(app, sso_pki, person,
                                                                 office_app) -> None:
    registered, secret = office_app
    client = _logged_in(app, person)
    for change in ("verifier", "secret", "redirect"):
        verifier, challenge = pkce()
        reply = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                         challenge))
        form = {"grant_type": "authorization_code", "code": code_from(reply.headers["Location"]),
                "code_verifier": pkce()[0] if change == "verifier" else verifier,
                "redirect_uri": registered.redirect_uris[0] + ("x" if change == "redirect"
                                                               else "")}
        answer = client.post("/oauth/token", data=form, headers=_basic(
            registered, "wrong" if change == "secret" else secret))
        assert answer.status_code in (400, 401)
        assert answer.get_json()["error"] in ("invalid_grant", "invalid_client")


def test_tampered_tokens_are_refused(app, sso_pki, person, office_app) -> None:
    registered, secret = office_app
    client = _logged_in(app, person)
    verifier, challenge = pkce()
    reply = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                     challenge))
    tokens = client.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code_from(reply.headers["Location"]),
        "code_verifier": verifier, "redirect_uri": registered.redirect_uris[0]},
        headers=_basic(registered, secret)).get_json()
    head, body, sig = tokens["id_token"].split(".")
    claims = base64.urlsafe_b64decode(body + "==").replace(b'"acr":"urn:govpki:acr:certificate"',
                                                           b'"acr":"urn:govpki:acr:anything!!"')
    forged = ".".join([head, base64.urlsafe_b64encode(claims).rstrip(b"=").decode(), sig])
    provider = app.config["GOVPKI_SSO_PROVIDER"]
    from apps.sso.errors import MalformedInput

    with pytest.raises(MalformedInput):
        provider.keys.verify(forged)
    logout = client.get("/oauth/logout", query_string={"id_token_hint": forged})
    assert logout.status_code == 400
    assert audit_events(sso_pki, "sso.logout", "refused")
    bad_bearer = client.get("/oauth/userinfo",
                            headers={"Authorization": f"Bearer {tokens['access_token']}x"})
    assert bad_bearer.status_code == 401


def test_expired_and_replayed_challenges(app, sso_pki, person) -> None:
    client = app.test_client()
    html = client.get("/sso/login").get_data(as_text=True)
    challenge_id, code = challenge_of(html)
    with transaction(sso_pki.ctx.sessions) as session:
        session.execute(update(models.LoginChallenge).where(
            models.LoginChallenge.id == challenge_id).values(
            expires_at=utcnow() - dt.timedelta(seconds=1)))
    expired = sign_answer(client, person.key, person.certificate, code)
    assert expired.status_code == 400 and expired.get_json()["reason"] == "expired"

    html = client.get("/sso/login").get_data(as_text=True)
    challenge_id, code = challenge_of(html)
    assert sign_answer(client, person.key, person.certificate, code).status_code == 200
    replay = sign_answer(client, person.key, person.certificate, code)
    assert replay.status_code == 400 and replay.get_json()["reason"] == "replayed"
    # The browser picks the login up once; a second pick-up is a replay too.
    form = {"csrf_token": csrf_of(html), "method": "signed-challenge",
            "challenge": challenge_id}
    assert client.post("/sso/login", data=form).status_code == 303
    other = app.test_client()
    other.get("/sso/login")
    assert other.post("/sso/login", data=form).status_code in (400, 403)
    reasons = {e["details"]["reason"] for e in audit_events(sso_pki, "sso.login", "refused")}
    assert {"expired", "replayed"} <= reasons


def test_signature_for_another_origin_or_key_is_refused(app, sso_pki, person) -> None:
    client = app.test_client()
    _id, code = challenge_of(client.get("/sso/login").get_data(as_text=True))
    relayed = sign_answer(client, person.key, person.certificate, code,
                          origin="https://phish.example")
    assert relayed.status_code == 400 and relayed.get_json()["reason"] == "bad-signature"
    _id, code = challenge_of(client.get("/sso/login").get_data(as_text=True))
    wrong_key = sign_answer(client, new_key("ec-p256"), person.certificate, code)
    assert wrong_key.get_json()["reason"] == "bad-signature"


@pytest.mark.parametrize("status", ["revoked", "suspended"])
def test_revoked_or_suspended_certificate_is_refused_with_a_page(app, sso_pki, status
                                                                 ) -> None:
    person = make_person(sso_pki, name="李强")
    if status == "revoked":
        revoke(sso_pki.ctx, person.serial, "keyCompromise", actor="test")
    else:
        suspend(sso_pki.ctx, person.serial, actor="test")
    client = app.test_client()
    html = client.get("/sso/login").get_data(as_text=True)
    challenge_id, code = challenge_of(html)
    answer = sign_answer(client, person.key, person.certificate, code)
    assert answer.status_code == 403 and answer.get_json()["reason"] == status
    page = client.get(f"/sso/login?refused={challenge_id}").get_data(as_text=True)
    assert ("已吊销" in page or "已被吊销" in page) if status == "revoked" else "冻结" in page
    events = audit_events(sso_pki, "sso.login", "refused")
    assert events[-1]["object_id"] == person.serial and events[-1]["details"]["reason"] == status
    if status == "suspended":
        release(sso_pki.ctx, person.serial, actor="test")
        assert certificate_login(client, person).status_code == 303


def test_certificate_without_account_or_foreign_is_refused(app, sso_pki) -> None:
    nobody = make_person(sso_pki, name="赵敏", with_account=False)
    client = app.test_client()
    _id, code = challenge_of(client.get("/sso/login").get_data(as_text=True))
    answer = sign_answer(client, nobody.key, nobody.certificate, code)
    assert answer.get_json()["reason"] == "no-account"
    # A self-made certificate with clientAuth: not issued here.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = new_key("ec-p256")
    name = nobody.certificate.issuer  # pretends to come from our CA
    now = dt.datetime.now(dt.UTC)
    fake = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, "冒充")])).issuer_name(name).public_key(key.public_key())
            .serial_number(nobody.certificate.serial_number).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(key, hashes.SHA256()))
    _id, code = challenge_of(client.get("/sso/login").get_data(as_text=True))
    answer = sign_answer(client, key, fake, code)
    assert answer.get_json()["reason"] == "foreign"


def _header(cert) -> str:
    return ":" + base64.b64encode(cert.public_bytes(Encoding.DER)).decode() + ":"


def test_client_cert_header_only_from_trusted_proxy(sso_pki, person) -> None:
    from urllib.parse import quote

    for trusted, expect in ((("10.9.9.9",), 403), (("127.0.0.0/8",), 303)):
        app = make_app(sso_pki, trusted_proxies=trusted)
        client = app.test_client()
        page = client.get("/sso/login", headers={"Client-Cert": _header(person.certificate)})
        html = page.get_data(as_text=True)
        assert "使用此证书登录" in html
        reply = client.post("/sso/login", data={"csrf_token": csrf_of(html),
                                                "method": "client-certificate"},
                            headers={"Client-Cert": _header(person.certificate)},
                            environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert reply.status_code == expect, reply.get_data(as_text=True)
    assert audit_events(sso_pki, "sso.login", "refused")[-1]["details"]["reason"] \
        == "untrusted-proxy"
    # nginx's $ssl_client_escaped_cert form from the trusted proxy works too.
    app = make_app(sso_pki, trusted_proxies=("127.0.0.1",))
    client = app.test_client()
    escaped = quote(person.certificate.public_bytes(Encoding.PEM).decode(), safe="")
    html = client.get("/sso/login").get_data(as_text=True)
    reply = client.post("/sso/login", data={"csrf_token": csrf_of(html),
                                            "method": "client-certificate"},
                        headers={"Client-Cert": escaped})
    assert reply.status_code == 303
    assert audit_events(sso_pki, "sso.login", "success")[-1]["details"]["method"] \
        == "client-certificate"


def test_login_form_without_csrf_and_open_redirects_are_refused(app, person) -> None:
    client = app.test_client()
    client.get("/sso/login")
    assert client.post("/sso/login", data={"method": "signed-challenge"}).status_code == 400
    html = client.get("/sso/login?next=https://evil.example/").get_data(as_text=True)
    assert 'name="next" value="https://evil' not in html and 'value="/sso/portal"' in html
    switch = client.get("/sso/lang/en?next=https://evil.example/")
    assert switch.headers["Location"].endswith("/sso/portal")


def test_issuer_is_what_the_challenge_signs(sso_pki, person) -> None:
    app = make_app(sso_pki, issuer="https://sso.example.gov.cn")
    client = app.test_client()
    _id, code = challenge_of(client.get("/sso/login").get_data(as_text=True))
    local = sign_answer(client, person.key, person.certificate, code, origin=LOCAL)
    assert local.get_json()["reason"] == "bad-signature"


def test_replayed_nonce_is_refused(app, sso_pki, person, office_app) -> None:
    registered, _secret = office_app
    client = _logged_in(app, person)
    _v, challenge = pkce()
    first = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                     challenge, nonce="same-nonce-1"))
    assert "code=" in first.headers["Location"]
    again = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                     challenge, nonce="same-nonce-1"))
    assert "error=invalid_request" in again.headers["Location"]
    assert "Replay" in audit_events(sso_pki, "sso.authorize", "refused")[-1]["details"][
        "description"]
