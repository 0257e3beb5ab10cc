"""The exchange pages' blueprint and what every page shares: the login session, language,
CSRF check, security headers, the error page and small helpers.

Every page needs a session except :data:`PUBLIC_ENDPOINTS` (the OIDC login, callback and
back-channel logout, the goodbye page, the language switch, the stylesheet): the default is
closed. Every POST but the back-channel logout (server to server, authenticated by the logout
token itself) must repeat the session's CSRF token.
"""

from __future__ import annotations

import logging
from typing import Any, Final, cast
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.wrappers import Response

from apps.exchange.policy import ExchangePolicy, get_policy
from apps.exchange.web import i18n, sessions
from apps.exchange.web.errors import ProviderUnavailable
from apps.exchange.web.oidc import RelyingParty
from apps.exchange.web.sessions import PageSession
from ca.context import CaContext
from core.errors import GovpkiError
from core.web import assets, pages, security
from ra.config import RaConfig, ra_config_from
from ra.records import Operator

log = logging.getLogger("govpki.exchange.web")

bp = Blueprint("exchange_web", __name__, url_prefix="/exchange", template_folder="templates",
               static_folder="static", static_url_path="/static")
bp.register_blueprint(assets.shell_blueprint())  # the shared layout and /exchange/ui/ui.css

SESSION_COOKIE: Final = "govpki_exchange_session"
LANG_COOKIE: Final = "govpki_exchange_lang"
COOKIE_PATH: Final = "/exchange"
CSRF_FIELD: Final = "csrf_token"
#: app.config key: the RelyingParty (or a callable giving it: the issuer may only be known
#: once the server listens) that the composition root sets when it mounts the pages.
RP_KEY: Final = "GOVPKI_EXCHANGE_RP"
STATIC_ENDPOINTS: Final = frozenset({"exchange_web.static",
                                     assets.static_endpoint("exchange_web")})
PUBLIC_ENDPOINTS: Final = frozenset({
    "exchange_web.sso_login", "exchange_web.sso_callback", "exchange_web.backchannel_logout",
    "exchange_web.bye", "exchange_web.lang", *STATIC_ENDPOINTS})
#: Form bodies other than the compose form (a receipt, a logout): small.
SMALL_BODY: Final = 64 * 1024
#: Room for the multipart framing and form fields around the policy's package limit.
UPLOAD_OVERHEAD: Final = 1024 * 1024
DISPLAY_TZ: Final = pages.DISPLAY_TZ


class CsrfRefused(BadRequest):
    description = "the form's security token is missing or does not match"


def ca_context() -> CaContext:
    return cast(CaContext, current_app.config["GOVPKI_CA"])


def ra_config() -> RaConfig:
    """The [ra] settings (session timeouts, cookie_secure): one policy for every page."""
    config = current_app.config.get("GOVPKI_RA_CONFIG")
    if config is None:
        config = ra_config_from(ca_context().config.sections)
        current_app.config["GOVPKI_RA_CONFIG"] = config
    return cast(RaConfig, config)


def relying_party() -> RelyingParty:
    value = current_app.config.get(RP_KEY)
    found = value() if callable(value) else value
    if not isinstance(found, RelyingParty):
        raise ProviderUnavailable("the exchange pages have no single sign-on provider "
                                  "configured")
    return found


#: app.config key: an ExchangePolicy in place of policies/exchange.yaml's (tests with small
#: limits); normally unset.
POLICY_KEY: Final = "GOVPKI_EXCHANGE_POLICY"


def policy() -> ExchangePolicy:
    configured = current_app.config.get(POLICY_KEY)
    return configured if isinstance(configured, ExchangePolicy) else get_policy()


def page_session() -> PageSession | None:
    return cast(PageSession | None, g.get("exchange_session"))


def actor() -> Operator:
    current = page_session()
    if current is None:  # pragma: no cover - the before_request hook guarantees one
        raise RuntimeError("no session")
    return current.operator


def lang() -> str:
    return cast(str, g.get("exchange_lang", i18n.DEFAULT_LANGUAGE))


def _(key: str, **kwargs: Any) -> str:
    return i18n.translate(key, lang(), **kwargs)


# ---------------------------------------------------------------------------------------------
# Hooks


def _body_limit() -> int:
    if request.endpoint == "exchange_web.compose_post":
        return policy().limits.max_package_bytes + UPLOAD_OVERHEAD
    return SMALL_BODY


@bp.before_request
def _before() -> ResponseReturnValue | None:
    g.exchange_lang = request.cookies.get(LANG_COOKIE, "")
    if g.exchange_lang not in i18n.LANGUAGES:
        g.exchange_lang = i18n.DEFAULT_LANGUAGE
    if request.endpoint in STATIC_ENDPOINTS:
        return None
    request.max_content_length = _body_limit()  # 413 before an oversized body is read
    token = request.cookies.get(SESSION_COOKIE, "")
    current = sessions.resume(ca_context(), token, config=ra_config()) if token else None
    g.exchange_session = current
    g.exchange_session_expired = bool(token) and current is None
    if current is not None:
        g.exchange_lang = current.lang
    if request.endpoint == "exchange_web.unknown_page":
        raise NotFound()
    if current is None and request.endpoint not in PUBLIC_ENDPOINTS:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        query = f"?{urlencode({'next': target})}" if target else ""
        return redirect(url_for("exchange_web.sso_login") + query, 303)
    if request.method == "POST" and request.endpoint != "exchange_web.backchannel_logout":
        expected = current.csrf_token if current is not None else ""
        if not security.tokens_match(expected, request.form.get(CSRF_FIELD, "")):
            raise CsrfRefused()
    return None


def _form_action() -> tuple[str, ...]:
    """The provider's origin may receive the logout redirect of a form (CSP form-action
    covers redirects after a submission)."""
    try:
        parts = urlsplit(relying_party().issuer)
    except GovpkiError:
        return (security.SELF,)
    return (security.SELF, f"{parts.scheme}://{parts.netloc}") \
        if parts.scheme in ("http", "https") else (security.SELF,)


@bp.after_request
def _after(response: Response) -> Response:
    headers = response.headers
    security.set_page_headers(headers, form_action=_form_action())
    if request.endpoint in STATIC_ENDPOINTS:
        return response
    headers["Cache-Control"] = "no-store"  # documents must not stay in a shared cache
    if g.get("exchange_session_expired"):
        clear_session_cookie(response)
    return response


def cookie_secure() -> bool:
    try:
        return ra_config().cookie_secure
    except GovpkiError:
        return True


def set_session_cookie(response: Response, token: str) -> None:
    """HttpOnly, Secure (unless the site is configured as plain HTTP), SameSite=Lax: the
    login ends in a top-level redirect from the provider, which may be another site, and a
    Strict cookie would not come back with it; every change is a POST with the CSRF token.
    No expiry: the server ends the session, the browser forgets it on exit."""
    response.set_cookie(SESSION_COOKIE, token, path=COOKIE_PATH, httponly=True,
                        secure=cookie_secure(), samesite="Lax")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True,
                           secure=cookie_secure(), samesite="Lax")


# ---------------------------------------------------------------------------------------------
# Rendering


local_time = pages.local_time
here = pages.here
page_number = pages.page_number
see_other = pages.see_other


def file_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} B"


def urgency_label(name: str) -> str:
    found = policy().urgencies.get(name)
    return name if found is None or lang() == "zh" else found.en


def urgency_class(name: str) -> str:
    """"top" for the policy's most urgent level, "high" for the next, else "normal"."""
    ranked = sorted(policy().urgencies.values(), key=lambda u: u.hours)
    names = [u.name for u in ranked]
    if name in names[:1]:
        return "top"
    if name in names[1:2] and len(names) > 2:
        return "high"
    return "normal"


def classification_label(name: str) -> str:
    found = policy().classifications.get(name)
    return name if found is None or lang() == "zh" else found.en


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    current = page_session()
    code = lang()
    return {
        "_": _, "lang": code, "me": current.operator if current else None,
        "page_session": current, "csrf_token": current.csrf_token if current else "",
        "local_time": local_time, "file_size": file_size, "here": here,
        "urgency_label": urgency_label, "urgency_class": urgency_class,
        "classification_label": classification_label,
        "other_lang": i18n.other_language(code), "has_text": i18n.has,
        "field_label": lambda field: i18n.field_label(field, code),
    }


def render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"exchange/{template}", **context), status


# ---------------------------------------------------------------------------------------------
# Errors: a page with the message and the right status, never a stack trace


def error_page(status: int, title_key: str, message: str = "", *,
               field: str | None = None) -> tuple[str, int]:
    return render("error.html", status, code=status, title=_(title_key), message=message,
                  field=i18n.field_label(field, lang()) if field else None)


def _too_large(exc: HTTPException) -> tuple[str, int] | None:
    """An oversized upload's page names the limit it went over."""
    if isinstance(exc, RequestEntityTooLarge):
        return error_page(413, "error.status.413",
                          _("error.too_large", limit=file_size(_body_limit())))
    return None


pages.register_error_pages(bp, error_page, title_key=i18n.error_title_key, translate=_,
                           csrf_refused=CsrfRefused, log=log, special=_too_large)
