"""The WSGI application: one blueprint per package, errors as RFC 9457 problem bodies."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from ca.context import CaContext
from ca.web import ca_blueprint
from core.config import Config, load_config
from core.errors import GovpkiError


def create_app(config: Config | None = None) -> Flask:
    config = config or load_config()
    app = Flask("govpki")
    app.config["GOVPKI_CA"] = CaContext.open(config)
    app.register_blueprint(ca_blueprint)

    @app.errorhandler(GovpkiError)
    def _govpki_error(exc: GovpkiError) -> tuple[Response, int]:
        response = jsonify(exc.problem())
        response.content_type = "application/problem+json"
        return response, exc.http_status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        response = jsonify({"type": "about:blank", "title": exc.name, "status": code,
                            "detail": exc.description})
        response.content_type = "application/problem+json"
        return response, code

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    return app
