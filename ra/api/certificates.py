"""Certificates: one certificate with its status, and the requests that change its status.

A status change is never made directly: revoke, suspend and release open a request of the
corresponding kind for the certificate's owner (ra.requests.submit decides and audits), so the
two-person rule and the audit trail are the same as for a request submitted any other way.
"""

from __future__ import annotations

from typing import Final

from ca.revocation import REVOCATION_REASONS
from ra import requests
from ra.api import queries, serialise
from ra.api.errors import NotAnRaCertificate
from ra.api.http import Call, Reply
from ra.api.requests import COMMENT
from ra.api.spec import CA_NAME, SERIAL, Body, Field, api_route

REVOKE: Final = Body("CertificateRevoke", (
    Field("reason", "string", "RFC 5280 reason (default: unspecified).",
          enum=REVOCATION_REASONS),
    COMMENT), "Why the certificate is to be revoked.", optional=True)
STATUS_CHANGE: Final = Body("CertificateStatusChange", (COMMENT,),
                            "An optional comment.", optional=True)
_PARAMS: Final = (CA_NAME, SERIAL)


@api_route("GET", "/certificates/{ca}/{serial}", operation_id="getCertificate",
           summary="One certificate", tag="certificates", params=_PARAMS,
           responses={200: "Certificate"}, errors=(404,))
def get_certificate(call: Call) -> Reply:
    """Status, subject, validity and PEM of one certificate, for whoever may view its owner
    (official.view); a certificate not issued through the RA is visible to all-scoped roles
    only."""
    found = queries.certificate(call.ctx, call.operator, call.path["ca"], call.path["serial"])
    return Reply(serialise.certificate(found.certificate, found.owner, found.request_id))


def _open(call: Call, kind: str) -> Reply:
    found = queries.owned_certificate(call.ctx, call.path["ca"], call.path["serial"])
    cert = found.certificate
    if found.owner is None:
        # Seeing that it exists is itself official.view on the whole system.
        queries.certificate(call.ctx, call.operator, cert.ca, cert.serial)
        raise NotAnRaCertificate(f"certificate {cert.ca}/{cert.serial} was not issued through "
                                 "the RA: no official owns it (use govpki ca revoke/suspend/"
                                 "release)")
    record = requests.submit(call.ctx, call.operator, found.owner.identifier, kind,
                             serials=[cert.serial], ca=cert.ca,
                             reason=call.body.get("reason") if kind == "revocation" else None,
                             comment=call.body.get("comment", ""))
    return Reply(serialise.request_record(record), 201,
                 {"Location": f"/api/v1/requests/{record.id}"})


@api_route("POST", "/certificates/{ca}/{serial}/revoke", operation_id="revokeCertificate",
           summary="Request revocation", tag="certificates", params=_PARAMS, body=REVOKE,
           responses={201: "Request"}, errors=(404, 409))
def revoke(call: Call) -> Reply:
    """Open a revocation request for the certificate (request.submit); it is carried out
    once approved."""
    return _open(call, "revocation")


@api_route("POST", "/certificates/{ca}/{serial}/suspend", operation_id="suspendCertificate",
           summary="Suspend (certificateHold)", tag="certificates", params=_PARAMS,
           body=STATUS_CHANGE, responses={201: "Request"}, errors=(404, 409))
def suspend(call: Call) -> Reply:
    """Open a suspension request; suspension is carried out at once (a lost USB key), so the
    request comes back ``done``."""
    return _open(call, "suspension")


@api_route("POST", "/certificates/{ca}/{serial}/release", operation_id="releaseCertificate",
           summary="Request release from hold", tag="certificates", params=_PARAMS,
           body=STATUS_CHANGE, responses={201: "Request"}, errors=(404, 409))
def release(call: Call) -> Reply:
    """Open a release request for a suspended certificate; carried out once approved."""
    return _open(call, "release")

