"""HTTP views of ca/: CA certificates for AIA caIssuers (`/certs/<ca>.crt`)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from ca.context import CaContext
from ca.store import get_authority
from core.db import transaction

ca_blueprint = Blueprint("ca", __name__)


@ca_blueprint.get("/certs/<name>.crt")
def ca_certificate(name: str) -> Response:
    """DER certificate of the CA's current generation (RFC 5280 §4.2.2.1: application/pkix-cert)."""
    ctx: CaContext = current_app.config["GOVPKI_CA"]
    with transaction(ctx.sessions) as session:
        authority = get_authority(session, name)
    response = Response(authority.certificate_der, mimetype="application/pkix-cert")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
