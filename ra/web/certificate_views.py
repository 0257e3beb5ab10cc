"""Certificate detail with revoke / suspend / release.

The buttons never change a certificate themselves: each opens a request (revocation,
suspension, release) through ra.requests.submit, which then follows the workflow — a second
operator approves a revocation; a suspension, reversible, may be carried out at once when
policies/authz.yaml lists it in ``immediate_request_kinds`` (a lost USB key).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.serialization import Encoding
from flask import Response, request
from flask.typing import ResponseReturnValue

from ca.revocation import REVOCATION_REASONS
from policies.authz import get_authz_policy
from ra import requests as requests_service
from ra.errors import ValidationError
from ra.web import queries
from ra.web.base import actor, bp, ca_context, field_errors, form_text, render, see_other

#: Which request kinds a certificate in each status can be the target of.
ACTIONS_BY_STATUS = {"good": ("revocation", "suspension"), "hold": ("revocation", "release"),
                     "revoked": ()}


def _page(ca: str, serial: str, *, errors: dict[str, str] | None = None,
          values: dict[str, str] | None = None, status: int = 200) -> tuple[str, int]:
    view = queries.certificate_view(ca_context(), actor(), ca, serial)
    cert = view.certificate
    fingerprint = ""
    if cert.certificate_der is not None:
        fingerprint = hashlib.sha256(cert.certificate_der).hexdigest().upper()
    actions = ACTIONS_BY_STATUS.get(cert.status, ()) if view.official is not None else ()
    return render("certificate.html", status, view=view, cert=cert, official=view.official,
                  fingerprint=fingerprint, actions=actions, reasons=REVOCATION_REASONS,
                  immediate=get_authz_policy().immediate_request_kinds,
                  errors=errors or {}, values=values or {}, done=request.args.get("done", ""))


@bp.get("/certificates/<ca>/<serial>")
def certificate(ca: str, serial: str) -> ResponseReturnValue:
    return _page(ca, serial)


@bp.get("/certificates/<ca>/<serial>.pem")
def certificate_pem(ca: str, serial: str) -> ResponseReturnValue:
    """The certificate as PEM, for the operator to hand over or inspect with other tools."""
    view = queries.certificate_view(ca_context(), actor(), ca, serial)
    pem = view.certificate.certificate().public_bytes(Encoding.PEM)
    response = Response(pem, mimetype="application/x-pem-file")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{view.certificate.ca}-{view.certificate.serial}.pem"')
    return response


@bp.post("/certificates/<ca>/<serial>/request")
def certificate_request(ca: str, serial: str) -> ResponseReturnValue:
    view = queries.certificate_view(ca_context(), actor(), ca, serial)
    kind = form_text("kind")
    values = {"kind": kind, "reason": form_text("reason"), "comment": form_text("comment")}
    if view.official is None:
        raise ValidationError("this certificate was not issued through the RA", field="serials")
    try:
        record = requests_service.submit(
            ca_context(), actor(), view.official.identifier, kind,
            serials=[view.certificate.serial], ca=view.certificate.ca,
            reason=values["reason"] if kind == "revocation" else None,
            comment=values["comment"])
    except ValidationError as exc:
        errors = {f"{kind}_{k}": v for k, v in field_errors(exc).items()}
        return _page(ca, serial, errors=errors, values=values, status=exc.http_status)
    done = "executed" if record.state in ("done", "issued") else "submitted"
    return see_other("ra_web.request_detail", request_id=record.id, done=done)
