"""Logging in and out of the RA pages: cookie flags, generic failure, lockout, timeouts, CSRF
on the login form itself, no open redirect."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from core.db import transaction
from ra import models
from ra.config import RaConfig
from tests.ra.web.conftest import csrf_of, log_in, logged_in, make_app, make_login, totp

GENERIC = "登录失败：用户名、口令或动态口令不正确。"


def _cookie_attributes(response, name: str) -> list[str]:
    [header] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    return [part.strip().lower() for part in header.split(";")]


def test_login_page_renders_the_methods_fields(app) -> None:
    response = app.test_client().get("/ra/login")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'lang="zh-CN"' in html and "操作员登录" in html
    for field in ("username", "password", "totp"):
        assert f'name="{field}"' in html
    assert 'name="method" value="password-totp"' in html
    assert 'type="password"' in html and 'autocomplete="one-time-code"' in html


def test_login_sets_a_strict_http_only_secure_cookie_and_logout_ends_it(app, clerk) -> None:
    client = app.test_client()
    response = log_in(client, clerk)
    assert response.status_code == 303 and response.headers["Location"] == "/ra/"
    attributes = _cookie_attributes(response, "govpki_ra_session")
    assert {"httponly", "secure", "samesite=strict", "path=/ra"} <= set(attributes)
    assert not any(a.startswith(("expires", "max-age")) for a in attributes)
    dashboard = client.get("/ra/")
    assert dashboard.status_code == 200
    assert clerk.operator.display_name in dashboard.get_data(as_text=True)

    token = csrf_of(dashboard.get_data(as_text=True))
    bye = client.post("/ra/logout", data={"csrf_token": token})
    assert bye.status_code == 303 and bye.headers["Location"] == "/ra/login?bye=1"
    after = client.get("/ra/")
    assert after.status_code == 303 and after.headers["Location"].startswith("/ra/login")


def test_cookie_secure_follows_the_configuration(web_pki) -> None:
    login = make_login(web_pki, "630100", "ra-operator")
    app = make_app(web_pki, RaConfig(cookie_secure=False))
    response = log_in(app.test_client(), login)
    assert "secure" not in _cookie_attributes(response, "govpki_ra_session")


def test_failed_login_shows_one_generic_message(app, clerk) -> None:
    client = app.test_client()
    wrong_password = client.post("/ra/login", data={
        "csrf_token": csrf_of(client.get("/ra/login").get_data(as_text=True)),
        "method": "password-totp", "username": clerk.username,
        "password": "not-the-password", "totp": totp(clerk)})
    wrong_code = log_in(client, clerk, code="000000")
    unknown = client.post("/ra/login", data={
        "csrf_token": csrf_of(client.get("/ra/login").get_data(as_text=True)),
        "method": "password-totp", "username": "nobody-here", "password": "x" * 12,
        "totp": "123456"})
    for response in (wrong_password, wrong_code, unknown):
        html = response.get_data(as_text=True)
        assert response.status_code == 401
        assert GENERIC in html
        assert "govpki_ra_session=" not in " ".join(response.headers.getlist("Set-Cookie"))
    # The user name is kept in the form; the password never is.
    assert f'value="{clerk.username}"' in wrong_password.get_data(as_text=True)
    assert "not-the-password" not in wrong_password.get_data(as_text=True)


def test_lockout_after_repeated_failures_is_shown(web_pki) -> None:
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


def test_login_form_needs_its_csrf_token(app, clerk) -> None:
    client = app.test_client()
    client.get("/ra/login")
    response = client.post("/ra/login", data={
        "method": "password-totp", "username": clerk.username, "password": clerk.password,
        "totp": totp(clerk)})
    assert response.status_code == 400
    assert "表单已失效" in response.get_data(as_text=True)
    other = app.test_client()  # a token from another browser's cookie does not do either
    response = other.post("/ra/login", data={
        "csrf_token": csrf_of(client.get("/ra/login").get_data(as_text=True)),
        "method": "password-totp", "username": clerk.username, "password": clerk.password,
        "totp": totp(clerk)})
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
    assert response.headers["Location"] == "/ra/login?next=/ra/officials&expired=1"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "会话已超时" in page


def test_absolute_session_timeout(web_pki, app, clerk) -> None:
    client = logged_in(app, clerk)
    with transaction(web_pki.ctx.sessions) as session:
        session.execute(update(models.WebSession).where(
            models.WebSession.operator_id == clerk.operator.id).values(
            created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=9)))
    assert client.get("/ra/").status_code == 303


def test_login_redirects_only_to_local_pages(app, clerk) -> None:
    client = app.test_client()
    token = csrf_of(client.get("/ra/login?next=/ra/officials").get_data(as_text=True))
    response = client.post("/ra/login", data={
        "csrf_token": token, "method": "password-totp", "username": clerk.username,
        "password": clerk.password, "totp": totp(clerk), "next": "/ra/officials?q=张"})
    assert response.headers["Location"] == "/ra/officials?q=%E5%BC%A0"
    for target in ("//evil.example/ra", "https://evil.example/", "/ocsp", "/ra.evil",
                   "/ra\\..\\x"):
        page = client.get("/ra/lang/zh", query_string={"next": target})
        assert page.headers["Location"] == "/ra/", target


def test_pages_need_a_session(app) -> None:
    client = app.test_client()
    for path in ("/ra/", "/ra/officials", "/ra/requests", "/ra/audit", "/ra/orgs"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/ra/login?next=")
    # A form posted without a session changes nothing: back to the login page.
    response = client.post("/ra/officials/new", data={"identifier": "X1", "name": "张三"})
    assert response.status_code == 303 and response.headers["Location"] == "/ra/login"


def test_login_page_offers_single_sign_on_and_sso_logout_continues_at_the_provider(
        ra_file_pki) -> None:
    """With the provider mounted (the whole app), the RA login page links to SSO; an RA
    session opened through SSO (method oidc) logs out at the provider too."""
    from govpki.wsgi import create_app
    from ra import authn
    from ra.config import RaConfig
    from ra.web.auth_views import SSO_LOGOUT_KEY
    from tests.ra.conftest import make_login

    app = create_app(ctx=ra_file_pki.ctx)
    flask_app = app.default
    client = flask_app.test_client()
    page = client.get("/ra/login")
    assert page.status_code == 200 and "/ra/sso/login?next=" in page.get_data(as_text=True)
    operator, _, _ = make_login(ra_file_pki, "630100", "ra-operator")

    class Oidc:
        name, acr, fields = "oidc", "urn:govpki:acr:certificate", ()

    token, session = authn.start_session(ra_file_pki.ctx, operator, Oidc(), client="test")
    client.set_cookie("govpki_ra_session", token, path="/ra")
    out = client.post("/ra/logout", data={"csrf_token": session.csrf_token})
    assert out.status_code == 303
    assert out.headers["Location"] == flask_app.config[SSO_LOGOUT_KEY]
    assert out.headers["Location"].startswith("/oauth/logout?client_id=")
    assert authn.resume_session(ra_file_pki.ctx, token, config=RaConfig()) is None
