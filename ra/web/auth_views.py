"""Login, logout and the language switch.

Operators log in with the certificate on their USB key through the single sign-on provider
(apps/sso, /ra/sso/login) when govpki has mounted it: that is the login page's main button,
and where a request without a session is sent (ra.web.base). The password + TOTP form below
it is the bootstrap administrator's (``[ra] password_login``); it renders the fields each
method of ra.authn.login_methods() names and hands the form to that method. A failed login
shows one generic message whichever factor was wrong; a lockout shows its own, and an account
that must use its certificate (right password, wrong kind of account) a page pointing there.
"""

from __future__ import annotations

from flask import current_app, g, redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from ra.authn import LANGUAGES, end_session, login_methods, set_session_lang, start_session
from ra.errors import AccountLocked, AuthenticationFailed, PasswordLoginNotAllowed
from ra.web import csrf
from ra.web.base import (
    COOKIE_PATH,
    LANG_COOKIE,
    SSO_LOGIN_KEY,
    SSO_LOGOUT_KEY,
    bp,
    ca_context,
    clear_session_cookie,
    lang,
    ra_config,
    render,
    safe_next,
    session_token,
    set_session_cookie,
    sso_login_url,
    web_session,
)

__all__ = ["SSO_LOGIN_KEY", "SSO_LOGOUT_KEY"]

#: What the login page says for each outcome that is not a success (message keys).
_FAILURE_KEYS = {AuthenticationFailed.kind: "login.failed", AccountLocked.kind: "login.locked",
                 PasswordLoginNotAllowed.kind: "login.certificate_only"}


def _login_page(status: int = 200, *, failure: str | None = None,
                username: str = "") -> tuple[str, int]:
    """The login page. With the provider mounted and passwords kept for the bootstrap
    administrator, certificate login is the page's one main action and the password form a
    secondary, folded section (opened by ?password=1 or when it has something to say)."""
    config = ra_config()
    methods = list(login_methods(config).values())
    if not config.any_password_login:
        methods = [m for m in methods if "password" not in m.fields]
    notice = None
    if request.args.get("expired"):
        notice = "login.expired"
    elif request.args.get("bye"):
        notice = "login.bye"
    sso_login = sso_login_url()
    secondary = sso_login is not None and config.certificate_first
    return render("login.html", status, methods=methods, failure=failure, notice=notice,
                  username=username, next=safe_next(request.values.get("next")),
                  sso_login=sso_login, password_secondary=secondary,
                  password_open=bool(failure or request.args.get("password")),
                  restricted=config.certificate_first)


@bp.get("/login")
def login() -> ResponseReturnValue:
    if web_session() is not None:
        return redirect(safe_next(request.args.get("next")), 303)
    return _login_page()


@bp.post("/login")
def login_post() -> ResponseReturnValue:
    ctx, config = ca_context(), ra_config()
    methods = login_methods(config)
    method = methods.get(request.form.get("method", ""))
    username = request.form.get("username", "")[:64]
    if method is None:
        return _login_page(400, failure="login.failed", username=username)
    form = {name: request.form.get(name, "") for name in method.fields}
    client = request.remote_addr or ""
    try:
        operator = method.authenticate(ctx, form, client=client)
    except (AuthenticationFailed, AccountLocked, PasswordLoginNotAllowed) as exc:
        return _login_page(exc.http_status, failure=_FAILURE_KEYS[exc.kind], username=username)
    # A fresh token on every login: a cookie planted before login is never promoted.
    token, _session = start_session(ctx, operator, method, client=client, lang=lang())
    response = redirect(safe_next(request.form.get("next")), 303)
    set_session_cookie(response, token)
    csrf.forget_login_token(response, secure=config.cookie_secure, path=COOKIE_PATH)
    return response


@bp.post("/logout")
def logout() -> Response:
    """End the RA session; one opened through single sign-on also ends at the provider (and
    so in every other office application), when govpki has mounted it (SSO_LOGOUT_KEY)."""
    current = web_session()
    end_session(ca_context(), session_token())
    sso_logout = current_app.config.get(SSO_LOGOUT_KEY)
    target = (sso_logout if sso_logout and current is not None and current.method == "oidc"
              else url_for("ra_web.login", bye=1))
    response = redirect(target, 303)
    clear_session_cookie(response)
    return response


@bp.get("/lang/<code>", endpoint="lang")
def lang_switch(code: str) -> Response:
    """A plain link switches the language: the choice is kept with the session and in a
    cookie for the login page. Harmless to follow from anywhere, so no form is needed."""
    code = code if code in LANGUAGES else "zh"
    token = session_token()
    if token:
        set_session_lang(ca_context(), token, code)
    g.ra_lang = code
    response = redirect(safe_next(request.args.get("next")), 303)
    response.set_cookie(LANG_COOKIE, code, path=COOKIE_PATH, httponly=True,
                        secure=ra_config().cookie_secure, samesite="Lax",
                        max_age=365 * 24 * 3600)
    return response

