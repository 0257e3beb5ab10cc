"""HTTP views of ca/: CA certificates for AIA caIssuers (`/certs/<ca>.crt`, `/certs/<ca>/gN.crt`)
and CRLs (`/crl/<ca>.crl`, `/crl/<ca>-delta.crl`, `/crl/<ca>/gN.crl`, `/crl/<ca>/gN-delta.crl`).
Protocol logic lives in ca/crl.py and the path rules in ca/published.py; these views only pick
the stored bytes and set HTTP caching from the CRL's own times."""

from __future__ import annotations

import math

from flask import Blueprint, Response, current_app, request

from ca.context import CaContext
from ca.crl import CrlRecord
from ca.published import ca_certificate_for, crl_for
from core.db import utcnow

ca_blueprint = Blueprint("ca", __name__)


def _certificate(stem: str) -> Response:
    ctx: CaContext = current_app.config["GOVPKI_CA"]
    response = Response(ca_certificate_for(ctx, stem), mimetype="application/pkix-cert")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@ca_blueprint.get("/certs/<name>.crt")
def ca_certificate(name: str) -> Response:
    """DER certificate of the CA's first key generation, which the caIssuers URL of every
    certificate it signed names (RFC 5280 §4.2.2.1: application/pkix-cert)."""
    return _certificate(name)


@ca_blueprint.get("/certs/<name>/<generation>.crt")
def ca_generation_certificate(name: str, generation: str) -> Response:
    """DER certificate of key generation N (``gN``) of the CA."""
    return _certificate(f"{name}/{generation}")


def crl_response(record: CrlRecord) -> Response:
    """application/pkix-crl (RFC 5280 §4.2.1.13 / RFC 2585 §4.2) with caching up to nextUpdate:
    a cache may keep it until then and no longer; the CRL number is the entity tag."""
    response = Response(record.der, mimetype="application/pkix-crl")
    max_age = max(0, math.floor((record.next_update - utcnow()).total_seconds()))
    response.headers["Cache-Control"] = f"public, max-age={max_age}, no-transform"
    response.last_modified = record.this_update
    response.expires = record.next_update
    response.set_etag(f"{record.ca}-{'delta-' if record.is_delta else ''}{record.number}")
    response.make_conditional(request)  # 304 for a matching If-None-Match/If-Modified-Since
    return response


@ca_blueprint.get("/crl/<name>.crl")
def crl(name: str) -> Response:
    """The newest full or delta CRL of a CA's first key generation; generated on demand if
    none is stored yet."""
    return crl_response(crl_for(current_app.config["GOVPKI_CA"], name))


@ca_blueprint.get("/crl/<name>/<generation>.crl")
def generation_crl(name: str, generation: str) -> Response:
    """The newest full (``gN``) or delta (``gN-delta``) CRL of key generation N."""
    return crl_response(crl_for(current_app.config["GOVPKI_CA"], f"{name}/{generation}"))
