"""The WSGI application: Flask blueprints for pages and small endpoints, lean WSGI apps for the
hot protocol paths (OCSP), composed by path; errors as RFC 9457 problem bodies.

`govpki serve` runs ``create_app`` under granian (``factory=True``); ``GOVPKI_SERVE_ONLY``
(set by ``--only``) selects a split deployment, e.g. a responder node serving OCSP alone.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from apps.exchange.api import ROUTES as EXCHANGE_API
from apps.sso.config import sso_config_from
from apps.sso.ra_client import bp as sso_ra_client_blueprint
from apps.sso.views import bp as sso_blueprint
from ca.context import CaContext
from ca.web import ca_blueprint
from core.config import Config, load_config
from core.errors import GovpkiError
from govpki.exchange_web import mount_exchange_web
from ra.api import api_blueprint, register_routes
from ra.web import ra_web_blueprint
from ra.web.auth_views import SSO_LOGIN_KEY, SSO_LOGOUT_KEY

SERVICES = ("ca", "ocsp", "tsa")


def _flask_app(ctx: CaContext, with_ca: bool) -> Flask:
    app = Flask("govpki")
    app.config["GOVPKI_CA"] = ctx
    if with_ca:
        app.register_blueprint(ca_blueprint)
        app.register_blueprint(ra_web_blueprint)
        app.register_blueprint(api_blueprint())
        app.register_blueprint(sso_blueprint)
        app.register_blueprint(sso_ra_client_blueprint)
        mount_exchange_web(app, ctx)  # /exchange: the exchange pages, an OIDC client of SSO
        # The RA login page offers single sign-on, and an SSO session's logout continues at
        # the provider so every office application's session ends (RP-initiated logout).
        sso = sso_config_from(ctx.config.sections)
        issuer = (sso.issuer or ctx.config.public_base_url).rstrip("/")
        app.config[SSO_LOGIN_KEY] = "/ra/sso/login"
        app.config[SSO_LOGOUT_KEY] = (
            f"/oauth/logout?client_id={quote(sso.ra_client_id)}"
            f"&post_logout_redirect_uri={quote(issuer + '/ra/login?bye=1', safe='')}")

    @app.errorhandler(GovpkiError)
    def _govpki_error(exc: GovpkiError) -> tuple[Response, int]:
        response = jsonify(exc.problem())
        response.content_type = "application/problem+json"
        if exc.http_status == 503:  # the database is away (core.db.DatabaseUnavailable)
            response.headers["Retry-After"] = "5"
        return response, exc.http_status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        response = jsonify({"type": "about:blank", "title": exc.name, "status": code,
                            "detail": exc.description})
        # Keep what the exception says about itself (Allow on a 405, RFC 9110 §15.5.6;
        # Retry-After on a 503), not its text/html content type.
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        response.content_type = "application/problem+json"
        return response, code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("unexpected error")
        response = jsonify({"type": "about:blank", "title": "internal error", "status": 500,
                            "detail": "the server failed; the error is in its log"})
        response.content_type = "application/problem+json"
        return response, 500

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    return app


class PrefixRouter:
    """Sends /ocsp... and /tsa... to their lean apps with the environ untouched (they read the
    raw path themselves), everything else to Flask."""

    def __init__(self, default: Any, routes: dict[str, Any]) -> None:
        self.default = default
        self.routes = routes

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.routes.items():
            if path == prefix or path.startswith(prefix + "/"):
                return app(environ, start_response)
        return self.default(environ, start_response)


def create_app(config: Config | None = None, only: str | None = None,
               ctx: CaContext | None = None) -> Any:
    """The whole service (default) or one part of it (``only``: one of SERVICES).

    ``ctx`` lets a caller that already holds an open context (tests, an embedding process)
    serve it; otherwise one is opened from ``config`` (GOVPKI_HOME by default)."""
    from govpki.health import Probe, ReadinessApp
    from govpki.kmc_wiring import install_kmc
    from govpki.logging import RequestIdMiddleware, access_mode, configure_logging
    from govpki.metrics import MetricsApp, OcspMetrics, count_readiness_failures
    from govpki.scheduler import start_scheduler
    from govpki.signing_api import bind_signing_api, install_signing_api
    from ocsp.wsgi import create_ocsp_app
    from signing.config import tsa_config_from
    from signing.tsa_wsgi import create_tsa_app

    only = only or os.environ.get("GOVPKI_SERVE_ONLY") or None
    if only is not None and only not in SERVICES:
        raise ValueError(f"unknown service {only!r} (known: {', '.join(SERVICES)})")
    configure_logging()  # JSON lines on stderr, unless logging is configured already
    install_kmc()
    install_signing_api()  # POST /api/v1/sign/pdf and /verify/pdf in ra's /api/v1 table
    register_routes(EXCHANGE_API)  # /api/v1/exchange/... (apps/exchange/api.py)
    if ctx is None:
        ctx = CaContext.open(config or load_config())
    config = ctx.config
    flask_app = _flask_app(ctx, with_ca=only in (None, "ca"))
    routes: dict[str, Any] = {}
    if only in (None, "ocsp"):
        routes["/ocsp"] = OcspMetrics(create_ocsp_app(ctx))
    if only in (None, "tsa"):
        routes["/tsa"] = create_tsa_app(ctx, tsa_config_from(config.sections))
    bind_signing_api(flask_app, ctx, routes.get("/ocsp"))  # their OCSP answered in-process
    probe = Probe(ctx)
    routes["/readyz"] = ReadinessApp(probe, on_failure=count_readiness_failures)
    routes["/metrics"] = MetricsApp(ctx, probe)
    start_scheduler(ctx, crl=only in (None, "ca"), ocsp=only in (None, "ocsp"))
    return RequestIdMiddleware(PrefixRouter(flask_app, routes), access=access_mode(only))
