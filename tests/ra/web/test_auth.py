"""Logging in and out of the RA pages: who may use the password form ([ra] password_login:
the bootstrap administrator by default, every other operator is sent to certificate login),
cookie flags, generic failure, lockout, timeouts, CSRF on the login form itself, no open
redirect. Certificate login itself, end to end: tests/apps/sso/test_ra_login.py and
test_browser.py."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select, update

from core.audit import AuditEvent
from core.db import transaction
from ra import models
from ra.config import RaConfig
from tests.ra.web.conftest import (
    bootstrap_login,
    csrf_of,
    log_in,
    logged_in,
    make_app,
    make_login,
    totp,
)

GENERIC = "登录失败：用户名、口令或动态口令不正确。"
CERTIFICATE_ONLY = "口令登录仅保留给初始管理员"


def _cookie_attributes(response, name: str) -> list[str]:
    [header] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    return [part.strip().lower() for part in header.split(";")]


def _login_refusals(pki, username: str) -> list[dict]:
    with transaction(pki.ctx.sessions) as session:
        rows = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "ra.login", AuditEvent.object_id == username,
            AuditEvent.outcome == "refused").order_by(AuditEvent.seq)).all()
        return [json.loads(r.details) for r in rows]


def test_login_page_leads_to_certificate_login_with_the_password_form_folded(app) -> None:
    response = app.test_client().get("/ra/login?next=/ra/officials")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'lang="zh-CN"' in html and "操作员登录" in html
    # Certificate login through single sign-on is the page's main action...
    assert 'id="sso-login" href="/ra/sso/login?next=/ra/officials"' in html
    assert 'class="button primary wide" id="sso-login"' in html
    # ...and the bootstrap administrator's password form a folded, secondary section.
    assert '<details class="login-secondary" id="password-login">' in html
    assert "初始管理员口令登录" in html and "其他操作员请使用 USB Key 登录" in html
    for field in ("username", "password", "totp"):
        assert f'name="{field}"' in html
    assert 'name="method" value="password-totp"' in html
    assert 'type="password"' in html and 'autocomplete="one-time-code"' in html
    opened = app.test_client().get("/ra/login?password=1").get_data(as_text=True)
    assert '<details class="login-secondary" id="password-login" open>' in opened


def test_a_request_without_a_session_goes_to_certificate_login(app) -> None:
    client = app.test_client()
    for path in ("/ra/", "/ra/officials", "/ra/requests", "/ra/audit", "/ra/orgs"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/ra/sso/login?next=%2Fra%2F"), path
    # A form posted without a session changes nothing: back to (certificate) login.
    response = client.post("/ra/officials/new", data={"identifier": "X1", "name": "张三"})
    assert response.status_code == 303 and response.headers["Location"] == "/ra/sso/login"


def test_with_passwords_for_all_the_password_page_is_the_way_in(web_pki) -> None:
    """[ra] password_login = "all" (an installation that chose so): the old page order."""
    app = make_app(web_pki, RaConfig(password_login="all"))
    client = app.test_client()
    response = client.get("/ra/officials")
    assert response.headers["Location"] == "/ra/login?next=/ra/officials"
    html = client.get("/ra/login").get_data(as_text=True)
    assert "<details" not in html and "或使用口令和动态口令登录" in html


def test_bootstrap_administrator_logs_in_with_password_cookie_flags_and_logout(
        web_pki, app) -> None:
    admin = bootstrap_login(web_pki)
    client = app.test_client()
    response = log_in(client, admin)
    assert response.status_code == 303 and response.headers["Location"] == "/ra/"
    attributes = _cookie_attributes(response, "govpki_ra_session")
    assert {"httponly", "secure", "samesite=strict", "path=/ra"} <= set(attributes)
    assert not any(a.startswith(("expires", "max-age")) for a in attributes)
    dashboard = client.get("/ra/")
    assert dashboard.status_code == 200
    assert admin.operator.display_name in dashboard.get_data(as_text=True)
    with transaction(web_pki.ctx.sessions) as session:
        [method, acr] = session.execute(select(models.WebSession.method, models.WebSession.acr)
                                        .where(models.WebSession.operator_id == admin.operator.id)
                                        .order_by(models.WebSession.id.desc()).limit(1)).one()
    assert (method, acr) == ("password-totp", "urn:govpki:acr:password-totp")

    token = csrf_of(dashboard.get_data(as_text=True))
    bye = client.post("/ra/logout", data={"csrf_token": token})
    assert bye.status_code == 303 and bye.headers["Location"] == "/ra/login?bye=1"
    after = client.get("/ra/")
    assert after.status_code == 303 and after.headers["Location"].startswith("/ra/sso/login")


def test_operator_password_login_is_refused_and_audited(web_pki, app, clerk) -> None:
    """An operator other than the bootstrap administrator, with the right password and code,
    gets a page sending them to certificate login; no session; the refusal is audited."""
    client = app.test_client()
    response = log_in(client, clerk)
    html = response.get_data(as_text=True)
    assert response.status_code == 403
    assert CERTIFICATE_ONLY in html and 'href="/ra/sso/login?next=' in html
    assert '<details class="login-secondary" id="password-login" open>' in html
    assert "govpki_ra_session=" not in " ".join(response.headers.getlist("Set-Cookie"))
    assert client.get("/ra/").status_code == 303
    refusal = _login_refusals(web_pki, clerk.username)[-1]
    assert refusal["error"] == "password-login-not-allowed"
    assert refusal["method"] == "password-totp"


def test_nobody_logs_in_by_password_when_it_is_off(web_pki) -> None:
    admin = bootstrap_login(web_pki)
    app = make_app(web_pki, RaConfig(password_login="none"))
    client = app.test_client()
    page = client.get("/ra/login").get_data(as_text=True)
    assert 'id="sso-login"' in page and 'name="password"' not in page
    # The form is gone; a post made anyway (its double-submit token set by hand) is refused,
    # even for the bootstrap administrator with the right password and code.
    client.set_cookie("govpki_ra_login_csrf", "t" * 43, path="/ra")
    refused = client.post("/ra/login", data={
        "csrf_token": "t" * 43, "method": "password-totp", "username": admin.username,
        "password": admin.password, "totp": totp(admin)})
    assert refused.status_code == 403 and CERTIFICATE_ONLY in refused.get_data(as_text=True)
    assert _login_refusals(web_pki, admin.username)[-1]["error"] == "password-login-not-allowed"


def test_cookie_secure_follows_the_configuration(web_pki) -> None:
    admin = bootstrap_login(web_pki)
    app = make_app(web_pki, RaConfig(cookie_secure=False))
    response = log_in(app.test_client(), admin)
    assert "secure" not in _cookie_attributes(response, "govpki_ra_session")


def test_failed_login_shows_one_generic_message(web_pki, app, clerk) -> None:
    """Wrong credentials get the generic message whoever the account is: that a name is an
    operator's, and whether it may use a password, is not for someone guessing."""
    admin = bootstrap_login(web_pki)
    client = app.test_client()
    wrong_password = client.post("/ra/login", data={
        "csrf_token": csrf_of(client.get("/ra/login").get_data(as_text=True)),
        "method": "password-totp", "username": clerk.username,
        "password": "not-the-password", "totp": totp(clerk)})
    wrong_code = log_in(client, clerk, code="000000")
    wrong_admin_code = log_in(client, admin, code="000000")
    unknown = client.post("/ra/login", data={
        "csrf_token": csrf_of(client.get("/ra/login").get_data(as_text=True)),
        "method": "password-totp", "username": "nobody-here", "password": "x" * 12,
        "totp": "123456"})
    for response in (wrong_password, wrong_code, wrong_admin_code, unknown):
        html = response.get_data(as_text=True)
        assert response.status_code == 401
        assert GENERIC in html and CERTIFICATE_ONLY not in html
        assert "govpki_ra_session=" not in " ".join(response.headers.getlist("Set-Cookie"))
    # The user name is kept in the form; the password never is.
    assert f'value="{clerk.username}"' in wrong_password.get_data(as_text=True)
    assert "not-the-password" not in wrong_password.get_data(as_text=True)
    assert _login_refusals(web_pki, clerk.username)[-1]["error"] == "bad-credentials"


def test_lockout_after_repeated_failures_is_shown(web_pki) -> None:
    """Failures count towards the lockout for every account, allowed a password or not."""
    login = make_login(web_pki, "630100", "ra-operator")
    app = make_app(web_pki, RaConfig(lockout_threshold=3))
    client = app.test_client()
    statuses = [log_in(client, login, code="000000").status_code for _ in range(3)]
    assert statuses[:2] == [401, 401]
    locked = log_in(client, login)  # even the right code is refused while locked
    html = locked.get_data(as_text=True)
    assert locked.status_code == 403
    assert "账号因多次登录失败已被暂时锁定" in html
    assert client.get("/ra/").status_code == 303


def test_login_form_needs_its_csrf_token(web_pki, app) -> None:
    admin = bootstrap_login(web_pki)
    client = app.test_client()
    client.get("/ra/login")
    response = client.post("/ra/login", data={
        "method": "password-totp", "username": admin.username, "password": admin.password,
        "totp": totp(admin)})
    assert response.status_code == 400
    assert "表单已失效" in response.get_data(as_text=True)
    other = app.test_client()  # a token from another browser's cookie does not do either
    response = other.post("/ra/login", data={
        "csrf_token": csrf_of(client.get("/ra/login").get_data(as_text=True)),
        "method": "password-totp", "username": admin.username, "password": admin.password,
        "totp": totp(admin)})
    assert response.status_code == 400


def test_idle_session_times_out(web_pki, app, clerk) -> None:
    client = logged_in(app, clerk)
    assert client.get("/ra/").status_code == 200
    with transaction(web_pki.ctx.sessions) as session:
        session.execute(update(models.WebSession).where(
            models.WebSession.operator_id == clerk.operator.id).values(
            last_seen=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)))
    response = client.get("/ra/officials")
    assert response.status_code == 303
    assert response.headers["Location"] == "/ra/sso/login?next=%2Fra%2Fofficials"
    assert "govpki_ra_session=;" in " ".join(response.headers.getlist("Set-Cookie"))
    # Where the password page is the way in, it says why.
    plain = make_app(web_pki, RaConfig(password_login="all"))
    expired = logged_in(plain, clerk)
    with transaction(web_pki.ctx.sessions) as session:
        session.execute(update(models.WebSession).where(
            models.WebSession.operator_id == clerk.operator.id).values(
            last_seen=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)))
    response = expired.get("/ra/officials")
    assert response.headers["Location"] == "/ra/login?next=/ra/officials&expired=1"
    assert "会话已超时" in expired.get(response.headers["Location"]).get_data(as_text=True)


def test_absolute_session_timeout(web_pki, app, clerk) -> None:
    client = logged_in(app, clerk)
    with transaction(web_pki.ctx.sessions) as session:
        session.execute(update(models.WebSession).where(
            models.WebSession.operator_id == clerk.operator.id).values(
            created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=9)))
    assert client.get("/ra/").status_code == 303


def test_login_redirects_only_to_local_pages(web_pki, app) -> None:
    admin = bootstrap_login(web_pki)
    client = app.test_client()
    token = csrf_of(client.get("/ra/login?next=/ra/officials").get_data(as_text=True))
    response = client.post("/ra/login", data={
        "csrf_token": token, "method": "password-totp", "username": admin.username,
        "password": admin.password, "totp": totp(admin), "next": "/ra/officials?q=张"})
    assert response.headers["Location"] == "/ra/officials?q=%E5%BC%A0"
    for target in ("//evil.example/ra", "https://evil.example/", "/ocsp", "/ra.evil",
                   "/ra\\..\\x"):
        page = client.get("/ra/lang/zh", query_string={"next": target})
        assert page.headers["Location"] == "/ra/", target


def test_sso_logout_continues_at_the_provider(ra_file_pki) -> None:
    """An RA session opened through SSO (method oidc) logs out at the provider too."""
    from govpki.wsgi import create_app
    from ra import authn
    from ra.web.auth_views import SSO_LOGOUT_KEY

    app = create_app(ctx=ra_file_pki.ctx)
    flask_app = app.default
    client = flask_app.test_client()
    operator = make_login(ra_file_pki, "630100", "ra-operator").operator

    class Oidc:
        name, acr, fields = "oidc", "urn:govpki:acr:certificate", ()

    token, session = authn.start_session(ra_file_pki.ctx, operator, Oidc(), client="test")
    client.set_cookie("govpki_ra_session", token, path="/ra")
    out = client.post("/ra/logout", data={"csrf_token": session.csrf_token})
    assert out.status_code == 303
    assert out.headers["Location"] == flask_app.config[SSO_LOGOUT_KEY]
    assert out.headers["Location"].startswith("/oauth/logout?client_id=")
    assert authn.resume_session(ra_file_pki.ctx, token, config=RaConfig()) is None
