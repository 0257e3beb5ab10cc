"""HTTP views of ca/: CA certificates for AIA caIssuers (`/certs/<ca>.crt`) and CRLs
(`/crl/<ca>.crl`, `/crl/<ca>-delta.crl`). Protocol logic lives in ca/crl.py; these views only
pick the stored bytes and set HTTP caching from the CRL's own times."""

from __future__ import annotations

import math

from flask import Blueprint, Response, current_app, request

from ca.context import CaContext
from ca.crl import CrlRecord, current_crl
from ca.errors import UnknownCa
from ca.status import authority_names
from ca.store import get_authority
from core.db import transaction, utcnow

ca_blueprint = Blueprint("ca", __name__)

DELTA_SUFFIX = "-delta"


@ca_blueprint.get("/certs/<name>.crt")
def ca_certificate(name: str) -> Response:
    """DER certificate of the CA's current generation (RFC 5280 §4.2.2.1: application/pkix-cert)."""
    ctx: CaContext = current_app.config["GOVPKI_CA"]
    with transaction(ctx.sessions) as session:
        authority = get_authority(session, name)
    response = Response(authority.certificate_der, mimetype="application/pkix-cert")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def _which(ctx: CaContext, name: str) -> tuple[str, bool]:
    """(CA, delta?) for the file name without ``.crl``: ``officials`` or ``officials-delta``.

    One route serves both, so a CA whose own name ends in ``-delta`` still gets its full CRL:
    an exact CA name wins."""
    with transaction(ctx.sessions) as session:
        names = set(authority_names(session))
    if name in names:
        return name, False
    if name.endswith(DELTA_SUFFIX) and name[: -len(DELTA_SUFFIX)] in names:
        return name[: -len(DELTA_SUFFIX)], True
    known = ", ".join(sorted(names)) or "none"
    raise UnknownCa(f"no CA named '{name.removesuffix(DELTA_SUFFIX)}' (known: {known})",
                    ca=name)


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
    """The newest full or delta CRL of a CA; generated on demand if none is stored yet."""
    ctx: CaContext = current_app.config["GOVPKI_CA"]
    ca, delta = _which(ctx, name)
    return crl_response(current_crl(ctx, ca, delta=delta))
