"""The SSO blueprint: OIDC endpoints (/.well-known/openid-configuration, /oauth/...) and the
pages (/sso/login, /sso/portal, /sso/admin/clients). Thin: the protocol is provider.py, the
login methods cert_login.py and ra.authn, the sessions sessions.py.

Cookies: the provider session (``govpki_sso_session``, path /, HttpOnly, SameSite=Lax so that
a top-level redirect from an office application on another host still carries it, Secure
unless [sso] cookie_secure is false), the browser binding of login challenges
(``govpki_sso_browser``, /sso, Strict) and the pre-login CSRF token (``govpki_sso_csrf``,
/sso, Strict). Pages have the RA's Content-Security-Policy: nothing but our own origin, no
inline script (the login page polls through static/sso-login.js).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from typing import Any, Final, cast
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2.rfc6749 import OAuth2Error  # type: ignore[import-untyped]
from authlib.oidc.core.errors import LoginRequiredError  # type: ignore[import-untyped]
from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from apps.sso import cert_login, clients, i18n, ratelimit, sessions
from apps.sso.cert_login import (
    ACR_CERTIFICATE,
    ACR_PASSWORD,
    ClientCertificateLogin,
    LoginRefused,
    SignedChallengeLogin,
    password_result,
)
from apps.sso.config import SsoConfig, sso_config_from
from apps.sso.errors import ChallengeRefused, MalformedInput, RateLimited
from apps.sso.provider import ACR_VALUES, Provider, SsoUser, requested_acr
from apps.sso.sessions import ProviderSession
from ca.context import CaContext
from core.errors import GovpkiError
from core.web import assets, security
from hsm.challenge import origin_of
from ra.authn import LoginMethod, login_methods
from ra.errors import AccountLocked, AuthenticationFailed, PasswordLoginNotAllowed
from ra.web.base import ra_config

log = logging.getLogger("govpki.sso")

bp = Blueprint("sso", __name__, template_folder="templates", static_folder="static",
               static_url_path="/sso/static")
bp.register_blueprint(assets.shell_blueprint(), url_prefix="/sso")  # /sso/ui/ui.css, layout

SESSION_COOKIE: Final = "govpki_sso_session"
BROWSER_COOKIE: Final = "govpki_sso_browser"
CSRF_COOKIE: Final = "govpki_sso_csrf"
LANG_COOKIE: Final = "govpki_sso_lang"
CLIENT_CERT_HEADER: Final = "Client-Cert"
MAX_JSON: Final = 64 * 1024
#: Where the pages' forms may end: here, or (after login/logout) at any registered
#: application's redirect URI, which may be on another host.
FORM_ACTION: Final = (security.SELF, "http:", "https:")
CSP: Final = security.content_security_policy(FORM_ACTION)
_JSON_PREFIXES: Final = ("/sso/challenge", "/oauth/token", "/oauth/userinfo", "/oauth/jwks",
                         "/.well-known", "/sso/login/challenge")
_NEXT_PREFIXES: Final = ("/oauth/authorize?", "/sso/portal", "/sso/admin/")
#: Answers that need no session and are the same for everyone (stylesheets, discovery, keys).
_NO_SESSION_ENDPOINTS: Final = frozenset({"sso.static", assets.static_endpoint("sso"),
                                          "sso.discovery", "sso.jwks"})


def ca_context() -> CaContext:
    return cast(CaContext, current_app.config["GOVPKI_CA"])


def sso_config() -> SsoConfig:
    """The [sso] settings, validated once per application (tests may set
    ``app.config["GOVPKI_SSO_CONFIG"]``)."""
    config = current_app.config.get("GOVPKI_SSO_CONFIG")
    if config is None:
        config = sso_config_from(ca_context().config.sections)
        current_app.config["GOVPKI_SSO_CONFIG"] = config
    return cast(SsoConfig, config)


def provider() -> Provider:
    server = current_app.config.get("GOVPKI_SSO_PROVIDER")
    if server is None:
        server = Provider(ca_context(), sso_config())
        current_app.config["GOVPKI_SSO_PROVIDER"] = server
    return cast(Provider, server)


def current() -> ProviderSession | None:
    return cast(ProviderSession | None, g.get("sso_session"))


def lang() -> str:
    return cast(str, g.get("sso_lang", "zh"))


def _(key: str, **kwargs: Any) -> str:
    return i18n.translate(key, lang(), **kwargs)


def client_address() -> str:
    return request.remote_addr or ""


def _rate_subjects(*, new_browser: bool) -> list[ratelimit.Subject]:
    """Whom a rate limit counts: the source address and, when it has one (or, for a new
    login code, is getting one), the browser."""
    subjects = [ratelimit.Subject("address", ratelimit.source_address(
        client_address(), request.headers.get("X-Forwarded-For"), sso_config()))]
    existing = request.cookies.get(BROWSER_COOKIE, "")
    browser = _browser_token() if new_browser else (
        existing if 32 <= len(existing) <= 128 else "")
    if browser:
        subjects.append(ratelimit.Subject("browser", browser))
    return subjects


# ---------------------------------------------------------------------------------------------
# Hooks, cookies, CSRF


@bp.before_request
def _before() -> None:
    g.sso_lang = request.cookies.get(LANG_COOKIE, "zh")
    if g.sso_lang not in i18n.LANGUAGES:
        g.sso_lang = "zh"
    if request.endpoint in _NO_SESSION_ENDPOINTS:
        return
    request.max_content_length = MAX_JSON
    token = request.cookies.get(SESSION_COOKIE, "")
    found = sessions.resume(ca_context(), sso_config(), token) if token else None
    g.sso_session = found
    g.sso_session_token = token if found else ""
    g.sso_expired = bool(token) and found is None
    if found is not None:
        g.sso_lang = found.lang


@bp.after_request
def _after(response: Response) -> Response:
    headers = response.headers
    security.set_transport_headers(headers)
    if request.endpoint in _NO_SESSION_ENDPOINTS:
        return response
    headers.setdefault("Cache-Control", "no-store")
    if response.mimetype == "text/html":
        security.set_page_headers(headers, form_action=FORM_ACTION)
    secure = _cookie_secure()
    if g.get("sso_expired"):
        response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True,
                               samesite="Lax")
    for name, value in (("sso_new_browser", BROWSER_COOKIE), ("sso_new_csrf", CSRF_COOKIE)):
        fresh = g.get(name)
        if fresh:
            response.set_cookie(value, fresh, path="/sso", httponly=True, secure=secure,
                                samesite="Strict")
    return response


def _cookie_secure() -> bool:
    try:
        return sso_config().cookie_secure
    except GovpkiError:
        return True


def _browser_token() -> str:
    existing = request.cookies.get(BROWSER_COOKIE, "")
    if 32 <= len(existing) <= 128:
        return existing
    if not g.get("sso_new_browser"):
        g.sso_new_browser = secrets.token_urlsafe(32)
    return cast(str, g.sso_new_browser)


def csrf_token() -> str:
    """The token forms carry: the session's when logged in, else a double-submit cookie's."""
    session = current()
    if session is not None:
        return session.csrf_token
    existing = request.cookies.get(CSRF_COOKIE, "")
    if 32 <= len(existing) <= 128:
        return existing
    if not g.get("sso_new_csrf"):
        g.sso_new_csrf = secrets.token_urlsafe(32)
    return cast(str, g.sso_new_csrf)


def check_csrf() -> bool:
    session = current()
    expected = session.csrf_token if session else request.cookies.get(CSRF_COOKIE, "")
    submitted = request.form.get("csrf_token", "")
    return security.tokens_match(expected, submitted)


def safe_next(target: str | None) -> str:
    """Only our own authorize requests and SSO pages: never an open redirect."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target) \
            or not target.startswith(_NEXT_PREFIXES) or target.startswith("//"):
        return url_for("sso.portal")
    return target


def set_session_cookie(response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True,
                        secure=_cookie_secure(), samesite="Lax")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=_cookie_secure(), httponly=True,
                           samesite="Lax")


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    session = current()
    return {"_": _, "lang": lang(), "me": session, "csrf_token": csrf_token(),
            "other_lang": "en" if lang() == "zh" else "zh", "here": request.full_path.rstrip("?"),
            "local_time": _local_time, "is_admin": bool(
                session and clients.ADMIN_ROLE in session.operator.roles)}


def _local_time(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")


def render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"sso/{template}", **context), status


def error_page(status: int, title_key: str, message: str = "") -> tuple[str, int]:
    return render("error.html", status, code=status, title=_(title_key), message=message)


def _wants_json() -> bool:
    return request.path.startswith(_JSON_PREFIXES)


@bp.errorhandler(GovpkiError)
def _govpki_error(exc: GovpkiError) -> ResponseReturnValue:
    status = exc.http_status if 400 <= exc.http_status < 600 else 500
    response: Response
    if _wants_json():
        response = jsonify(exc.problem())
        response.content_type = "application/problem+json"
    else:
        title = {403: "error.forbidden", 429: "error.rate_limited"}.get(status, "error.title")
        body, status = error_page(status, title, exc.message)
        response = Response(body, status, mimetype="text/html")
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)  # RFC 6585 §4, RFC 9110 §10.2.3
    return response, status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    if _wants_json():
        response = jsonify({"type": "about:blank", "title": exc.name, "status": status,
                            "detail": exc.description})
        response.content_type = "application/problem+json"
        return response, status
    return error_page(status, "error.not_found" if status == 404 else "error.title")


# ---------------------------------------------------------------------------------------------
# Discovery, JWKS, token, userinfo


@bp.get("/.well-known/openid-configuration", endpoint="discovery")
def discovery() -> Response:
    response = jsonify(provider().metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/oauth/jwks", endpoint="jwks")
def jwks() -> Response:
    response = jsonify(provider().keys.jwks())
    response.content_type = "application/jwk-set+json"
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.post("/oauth/token")
def token() -> Response:
    server = provider()
    response = cast(Response, server.create_token_response())
    if response.status_code >= 400:
        try:
            error = json.loads(response.get_data(as_text=True)).get("error", "")
        except ValueError:
            error = ""
        client_id = request.form.get("client_id") or (
            request.authorization.username if request.authorization else None)
        server.refuse("sso.token", client_id, str(error),
                      {"grant_type": request.form.get("grant_type", "")[:64]})
    response.headers["Pragma"] = "no-cache"
    return response


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    response = cast(Response, provider().create_endpoint_response("userinfo"))
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------------------------------------
# Authorization endpoint


def _without(query: str, *, drop_login: bool) -> str:
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "max_age" and drop_login:
            continue
        if key == "prompt" and drop_login:
            value = " ".join(p for p in value.split() if p != "login")
            if not value:
                continue
        pairs.append((key, value))
    return urlencode(pairs)


@bp.get("/oauth/authorize")
def authorize() -> ResponseReturnValue:
    server = provider()
    session = current()
    user = SsoUser(session) if session is not None else None
    try:
        grant = server.get_consent_grant(end_user=user)
        wanted, essential = requested_acr(request.args)
    except OAuth2Error as error:
        server.refuse("sso.authorize", request.args.get("client_id"), str(error.error),
                      {"description": str(error.description or "")[:200],
                       "redirect_uri": request.args.get("redirect_uri", "")[:255]})
        if error.redirect_uri:
            return server.handle_error_response(None, error)
        return error_page(400, "error.client", _("error.client.detail"))
    redirect_uri = grant.redirect_uri or request.args.get("redirect_uri")
    prompts = set(request.args.get("prompt", "").split())
    acr = [v for v in wanted if v in ACR_VALUES]
    if wanted and not acr and essential:
        unmet = OAuth2Error(error="unmet_authentication_requirements",
                            description="none of the requested acr values is offered",
                            redirect_uri=redirect_uri, state=request.args.get("state"))
        server.refuse("sso.authorize", request.args.get("client_id"), unmet.error, {})
        return server.handle_error_response(None, unmet)
    needs_login = session is None or "login" in prompts or (
        acr and session.acr not in acr) or _too_old(session, request.args.get("max_age"))
    if needs_login:
        if "none" in prompts:
            return server.handle_error_response(None, LoginRequiredError(
                redirect_uri=redirect_uri, state=request.args.get("state")))
        query = _without(request.query_string.decode("ascii", "replace"), drop_login=True)
        return redirect(url_for("sso.login", next=f"/oauth/authorize?{query}",
                                acr=" ".join(acr) or None), 303)
    assert user is not None
    return server.create_authorization_response(grant=grant, grant_user=user)


def _too_old(session: ProviderSession | None, max_age: str | None) -> bool:
    if session is None or not max_age:
        return False
    try:
        seconds = int(max_age)
    except ValueError:
        return False
    return (dt.datetime.now(dt.UTC) - session.auth_time).total_seconds() > max(0, seconds)


# ---------------------------------------------------------------------------------------------
# Logging in


def _methods() -> dict[str, LoginMethod]:
    """The provider's login methods: certificate login first, then ra.authn's (password +
    TOTP: the bootstrap administrator's, as ``[ra] password_login`` says)."""
    config = sso_config()
    methods: dict[str, LoginMethod] = {m.name: m for m in (SignedChallengeLogin(config),
                                                           ClientCertificateLogin(config))}
    methods.update(login_methods(ra_config()))
    return methods


def _requested_acr() -> list[str]:
    raw = request.values.get("acr", "")
    return [v for v in raw.split() if v in ACR_VALUES]


def _login_page(status: int = 200, *, failure: str | None = None,
                failure_detail: str = "", username: str = "") -> tuple[str, int]:
    config = sso_config()
    acr = _requested_acr()
    ratelimit.take(ca_context(), config, ratelimit.CHALLENGE, _rate_subjects(new_browser=True),
                   client=client_address())
    challenge = cert_login.new_challenge(ca_context(), config, _browser_token(),
                                         client=client_address())
    next_url = safe_next(request.values.get("next"))
    refused = request.args.get("refused")
    if refused and refused.isdigit() and failure is None:
        state, detail = cert_login.challenge_state(ca_context(), int(refused), _browser_token())
        if state in ("refused", "expired"):
            failure, failure_detail = "login.failed", detail or _("login.challenge.expired")
    return render("login.html", status, challenge=challenge, next=next_url,
                  acr=" ".join(acr), show_password=ra_config().any_password_login and (
                      not acr or ACR_PASSWORD in acr),
                  password_open=failure in ("login.password_failed", "login.certificate_only"),
                  acr_required=ACR_CERTIFICATE in acr and ACR_PASSWORD not in acr,
                  has_client_cert=bool(request.headers.get(CLIENT_CERT_HEADER)),
                  failure=failure, failure_detail=failure_detail, username=username,
                  issuer=provider().issuer, minutes=max(1, config.challenge_seconds // 60),
                  expired_notice=bool(request.args.get("expired")))


@bp.get("/sso/login")
def login() -> ResponseReturnValue:
    session = current()
    acr = _requested_acr()
    if session is not None and (not acr or session.acr in acr):
        return redirect(safe_next(request.args.get("next")), 303)
    return _login_page()


@bp.post("/sso/login")
def login_post() -> ResponseReturnValue:
    if not check_csrf():
        return error_page(400, "error.title", _("error.csrf"))
    ctx = ca_context()
    method = _methods().get(request.form.get("method", ""))
    username = request.form.get("username", "")[:64]
    if method is None:
        return _login_page(400, failure="login.password_failed")
    if isinstance(method, SignedChallengeLogin):
        _check_answers()
        form = {"challenge": request.form.get("challenge", ""), "browser": _browser_token()}
    elif isinstance(method, ClientCertificateLogin):
        form = {"client_cert": request.headers.get(CLIENT_CERT_HEADER, "")}
    else:
        form = {name: request.form.get(name, "") for name in method.fields}
    acr = _requested_acr()
    try:
        detailed = getattr(method, "authenticate_detailed", None)
        if detailed is not None:
            result = detailed(ctx, form, client=client_address())
        else:
            result = password_result(method, method.authenticate(ctx, form,
                                                                 client=client_address()))
    except LoginRefused as exc:
        if isinstance(exc, ChallengeRefused):
            _count_wrong_answer()
        key = f"refused.{exc.reason}"
        return _login_page(exc.http_status, failure="login.failed",
                           failure_detail=_(key) if i18n.has(key) else exc.message)
    except PasswordLoginNotAllowed as exc:
        return _login_page(exc.http_status, failure="login.certificate_only")
    except (AuthenticationFailed, AccountLocked) as exc:
        return _login_page(exc.http_status, failure="login.password_failed",
                           username=username)
    if acr and result.acr not in acr:
        return _login_page(403, failure="login.acr_required")
    previous = current()
    if previous is not None:
        provider().logout(previous.sid, reason="new-login", actor=previous.operator.username)
    token, _session = sessions.start(ctx, result, client=client_address(), lang=lang())
    response = redirect(safe_next(request.form.get("next")), 303)
    set_session_cookie(response, token)
    response.delete_cookie(CSRF_COOKIE, path="/sso", secure=_cookie_secure(), httponly=True,
                           samesite="Strict")
    return response


@bp.get("/sso/login/challenge/<int:challenge_id>")
def challenge_poll(challenge_id: int) -> Response:
    state, _detail = cert_login.challenge_state(ca_context(), challenge_id, _browser_token())
    return jsonify({"state": state})


def _json_body() -> object:
    raw = request.get_data(cache=False)
    if len(raw) > MAX_JSON:
        raise MalformedInput("the body is too large")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedInput("the body must be JSON") from None


def _check_answers() -> None:
    """Refuse (429) a source address or browser that has sent too many wrong codes."""
    ratelimit.check(ca_context(), sso_config(), ratelimit.ANSWER_FAILURE,
                    _rate_subjects(new_browser=False), client=client_address())


def _count_wrong_answer() -> None:
    ratelimit.record(ca_context(), sso_config(), ratelimit.ANSWER_FAILURE,
                     _rate_subjects(new_browser=False))


@bp.post("/sso/challenge")
def challenge_fetch() -> Response:
    """For `govpki token sign-challenge`: the challenge a code names."""
    body = _json_body()
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str):
        raise MalformedInput("the body must be {\"code\": \"…\"}")
    _check_answers()
    try:
        record = cert_login.describe_challenge(ca_context(), code, client=client_address())
    except ChallengeRefused:
        _count_wrong_answer()
        raise
    return jsonify({"origin": origin_of(provider().issuer), "nonce": record.nonce,
                    "expires_at": int(record.expires_at.timestamp()),
                    "requested_from": record.client_address,
                    "requested_at": _local_time(record.created_at) + " (UTC+8)"})


@bp.post("/sso/challenge/answer")
def challenge_answer() -> Response:
    answer = cert_login.parse_answer(_json_body())
    _check_answers()
    try:
        result = cert_login.answer_challenge(ca_context(), sso_config(), answer,
                                             origin=origin_of(provider().issuer),
                                             client=client_address())
    except ChallengeRefused:
        _count_wrong_answer()
        raise
    return jsonify({"status": "signed", "username": result.operator.username,
                    "name": result.operator.display_name})


# ---------------------------------------------------------------------------------------------
# Logging out (RP-Initiated Logout 1.0 + Back-Channel Logout 1.0)


@bp.route("/oauth/logout", methods=["GET", "POST"])
def logout() -> ResponseReturnValue:
    server = provider()
    session = current()
    try:
        req = server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        server.refuse("sso.logout", request.values.get("client_id"), str(error.error),
                      {"description": str(error.description or "")[:200]})
        return error_page(400, "error.title", str(error.description or error.error))
    hint_sid = (req.id_token_claims or {}).get("sid")
    if request.method == "POST":
        if not check_csrf():
            return error_page(400, "error.title", _("error.csrf"))
    elif session is not None and (req.needs_confirmation or hint_sid != session.sid):
        return render("logout.html", params=list(request.args.items(multi=True)))
    response = server.create_endpoint_response("end_session", req)
    g.sso_session = None  # the page after logout shows nobody logged in
    if response is None:
        response = Response(render_template("sso/logged_out.html"), 200, mimetype="text/html")
    clear_session_cookie(response)
    return response


@bp.get("/sso/lang/<code>", endpoint="lang")
def lang_switch(code: str) -> Response:
    code = code if code in i18n.LANGUAGES else "zh"
    response = redirect(safe_next(request.args.get("next")), 303)
    response.set_cookie(LANG_COOKIE, code, path="/", httponly=True, secure=_cookie_secure(),
                        samesite="Lax", max_age=365 * 24 * 3600)
    return response


from apps.sso import portal as _portal  # noqa: E402, F401 (registers the portal pages)
