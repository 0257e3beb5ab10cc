"""The RA web blueprint and what every page shares: the operator's session, language, CSRF
check, security headers, the error page and small form/paging helpers.

Every page needs a logged-in operator except the few in :data:`PUBLIC_ENDPOINTS`: the default
is closed, so a view added later without thinking about login is still protected. The session
itself lives in ra.authn (server-side rows); this module only carries its cookie.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final, cast
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from ca.context import CaContext
from core.errors import GovpkiError
from core.web import assets, pages, security
from ra.authn import LANGUAGES, WebSession, resume_session
from ra.authz import permits
from ra.config import RaConfig, ra_config_from
from ra.records import Official, Operator, Organisation
from ra.web import csrf, i18n

log = logging.getLogger("govpki.ra.web")

bp = Blueprint("ra_web", __name__, url_prefix="/ra", template_folder="templates",
               static_folder="static", static_url_path="/static")
bp.register_blueprint(assets.shell_blueprint())  # the shared layout and /ra/ui/ui.css

SESSION_COOKIE: Final = "govpki_ra_session"
LANG_COOKIE: Final = "govpki_ra_lang"
COOKIE_PATH: Final = "/ra"
#: The stylesheets and icon: no session, no database round trip, cacheable.
STATIC_ENDPOINTS: Final = frozenset({"ra_web.static", assets.static_endpoint("ra_web")})
#: Endpoints reachable without a session: logging in, choosing a language, the stylesheets and
#: the "no such page" answer. Everything else redirects to the login page.
PUBLIC_ENDPOINTS: Final = frozenset({"ra_web.login", "ra_web.login_post", "ra_web.lang",
                                     "ra_web.unknown_page", *STATIC_ENDPOINTS})
#: app.config keys the composition root sets when the SSO provider is mounted: where operators
#: log in (certificate login through the provider, the default way in), and where logging out
#: of an SSO session continues (RP-initiated logout, so every application's session ends).
SSO_LOGIN_KEY: Final = "GOVPKI_RA_SSO_LOGIN"
SSO_LOGOUT_KEY: Final = "GOVPKI_RA_SSO_LOGOUT"
DISPLAY_TZ: Final = pages.DISPLAY_TZ
#: Content-Security-Policy of every page (core.web.security's: nothing but our own origin, no
#: inline script or style, no framing: the pages hold approve/revoke buttons).
CSP: Final = security.content_security_policy()


def ca_context() -> CaContext:
    return cast(CaContext, current_app.config["GOVPKI_CA"])


def ra_config() -> RaConfig:
    """The [ra] settings, validated once per application (tests may put their own in
    ``app.config["GOVPKI_RA_CONFIG"]``)."""
    config = current_app.config.get("GOVPKI_RA_CONFIG")
    if config is None:
        config = ra_config_from(ca_context().config.sections)
        current_app.config["GOVPKI_RA_CONFIG"] = config
    return cast(RaConfig, config)


def sso_login_url() -> str | None:
    """Where certificate login starts, when govpki mounted the SSO provider (else None)."""
    return cast(str | None, current_app.config.get(SSO_LOGIN_KEY))


def web_session() -> WebSession | None:
    return cast(WebSession | None, g.get("ra_session"))


def session_token() -> str:
    return cast(str, g.get("ra_session_token", ""))


def actor() -> Operator:
    """The logged-in operator (every non-public view runs with one)."""
    current = web_session()
    if current is None:  # pragma: no cover - the before_request hook guarantees a session
        raise RuntimeError("no operator session")
    return current.operator


def lang() -> str:
    return cast(str, g.get("ra_lang", i18n.DEFAULT_LANGUAGE))


def _(key: str, **kwargs: Any) -> str:
    return i18n.translate(key, lang(), **kwargs)


# ---------------------------------------------------------------------------------------------
# Request hooks


@bp.before_request
def _before() -> ResponseReturnValue | None:
    g.ra_lang = request.cookies.get(LANG_COOKIE, "")
    if g.ra_lang not in LANGUAGES:
        g.ra_lang = i18n.DEFAULT_LANGUAGE
    if request.endpoint in STATIC_ENDPOINTS:
        return None  # the stylesheet needs no session (and no database round trip)
    config = ra_config()
    # Flask 3.1 lets a blueprint set the body limit per request: oversized uploads get 413
    # from here without limiting the rest of the application (OCSP, CRL) to the RA's size.
    request.max_content_length = config.max_body_bytes
    token = request.cookies.get(SESSION_COOKIE, "")
    current = resume_session(ca_context(), token, config=config) if token else None
    g.ra_session, g.ra_session_token = current, token if current else ""
    g.ra_session_expired = bool(token) and current is None
    if current is not None and current.lang in LANGUAGES:
        g.ra_lang = current.lang
    if request.endpoint == "ra_web.unknown_page":
        raise NotFound()
    if current is None and request.endpoint not in PUBLIC_ENDPOINTS:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        sso_login = sso_login_url()
        if sso_login is not None and config.certificate_first:
            # Operators log in with their certificate through the provider; /ra/login stays
            # for the bootstrap administrator's password.
            return redirect(sso_login + (f"?{urlencode({'next': target})}" if target else ""),
                            303)
        return redirect(url_for("ra_web.login", next=target,
                                expired=1 if g.ra_session_expired else None), 303)
    if request.method == "POST":
        csrf.check(current.csrf_token if current else None)
    return None


@bp.after_request
def _after(response: Response) -> Response:
    headers = response.headers
    security.set_page_headers(headers)
    if request.endpoint in STATIC_ENDPOINTS:
        return response
    # Pages show officials' records: no shared or back-button cache may keep them.
    headers["Cache-Control"] = "no-store"
    try:
        secure = ra_config().cookie_secure
    except GovpkiError:  # a broken [ra] table: its error page is on its way already
        secure = True
    if g.get("ra_session_expired"):
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, secure=secure,
                               httponly=True, samesite="Strict")
    csrf.persist_login_token(response, secure=secure, path=COOKIE_PATH)
    return response


def set_session_cookie(response: Response, token: str) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it, the
    first CSRF defence), Secure unless the configuration says the site is plain HTTP. No
    expiry: the server ends the session (idle/absolute timeout), the browser forgets it on
    exit."""
    response.set_cookie(SESSION_COOKIE, token, path=COOKIE_PATH, httponly=True,
                        secure=ra_config().cookie_secure, samesite="Strict")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, secure=ra_config().cookie_secure,
                           httponly=True, samesite="Strict")


# ---------------------------------------------------------------------------------------------
# Rendering


def can(action: str, org: Organisation | None = None, *, official: Official | None = None,
        request_kind: str | None = None) -> bool:
    """Whether to show a link or button: ra.authz.permits, never a decision of our own.

    Without ``org`` the question is "on the operator's own organisation" (navigation).
    """
    current = web_session()
    if current is None:
        return False
    who = current.operator
    return permits(who, action, org or who.organisation, official=official,
                   request_kind=request_kind)


local_time = pages.local_time
local_date = pages.local_date
here = pages.here
page_number = pages.page_number
see_other = pages.see_other


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    current = web_session()
    code = lang()
    return {
        "_": _, "lang": code, "me": current.operator if current else None,
        "csrf_token": csrf.form_token(current.csrf_token if current else None),
        "can": can, "local_time": local_time, "local_date": local_date, "here": here,
        "role_name": lambda role: i18n.role_name(role, code),
        "field_label": lambda field: i18n.field_label(field, code), "has_text": i18n.has,
        "other_lang": i18n.other_language(code),
    }


def render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"ra/{template}", **context), status


# ---------------------------------------------------------------------------------------------
# Errors: a page with the message and the right status, never a stack trace


def error_page(status: int, title_key: str, message: str = "", *,
               field: str | None = None) -> tuple[str, int]:
    return render("error.html", status, code=status, title=_(title_key), message=message,
                  field_label=i18n.field_label(field, lang()) if field else None)


pages.register_error_pages(bp, error_page, title_key=i18n.error_title_key, translate=_,
                           csrf_refused=csrf.CsrfRefused, log=log)


# ---------------------------------------------------------------------------------------------
# Forms and paging


def form_text(name: str) -> str:
    return request.form.get(name, "")


def arg_text(name: str, limit: int = 128) -> str:
    return request.args.get(name, "").strip()[:limit]


def field_errors(exc: GovpkiError) -> dict[str, str]:
    """{field: message} for a form to highlight; "" when the error names no field."""
    field = exc.details.get("field")
    return {field if isinstance(field, str) else "": exc.message}


def safe_next(target: str | None) -> str:
    """Only local RA paths: a login link must not become an open redirect."""
    default = url_for("ra_web.dashboard")
    if not target or not target.startswith(COOKIE_PATH) or target.startswith("//") \
            or "\\" in target or any(ord(c) < 32 for c in target):
        return default
    rest = target[len(COOKIE_PATH):]
    return target if rest == "" or rest[0] in "/?" else default


def query_args(values: Mapping[str, object]) -> dict[str, object]:
    """Query arguments for url_for without the empty ones (clean pager links)."""
    return {k: v for k, v in values.items() if v not in (None, "")}

