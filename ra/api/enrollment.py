"""USB-key enrollment: codes for operators to hand out, and the two calls `govpki token
enroll` makes with a code (and nothing else: the official has no account or certificate yet).

The code travels in the body of ``POST /enrollment`` and in ``Authorization: Enrollment
<code>`` afterwards — never in a URL, which proxies log.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from ra import enrollment, requests
from ra.api import serialise
from ra.api.http import Call, Reply
from ra.api.spec import REQUEST_ID, Body, Field, api_route
from ra.errors import ValidationError

CREATE: Final = Body("EnrollmentCodeCreate", (
    Field("official", "string", "The official's identifier.", required=True, max_length=64),
    Field("kind", "string", "The request the code opens (default new-pair).",
          enum=requests.ISSUANCE_KINDS)), "Whom the code is for.")
REDEEM: Final = Body("EnrollmentRedeem", (
    Field("code", "string", "The one-time code (groups of five, separators optional).",
          required=True, max_length=64),
    Field("csr", "string", "PKCS#10 request in PEM, signed by the new key on the USB key.",
          required=True, max_length=requests.MAX_CSR_BYTES, multiline=True)),
    "A code and the CSR it is redeemed with.")
TRANSPORT: Final = Body("TransportKey", (
    Field("transport_key", "string", "The USB key's transport public key: DER "
          "SubjectPublicKeyInfo in base64.", required=True, max_length=8192),),
    "Where to wrap the escrowed encryption key to.")
_MESSAGES: Final = {"submitted": "waiting for an RA operator's approval"}


@api_route("POST", "/enrollment-codes", operation_id="createEnrollmentCode",
           summary="Hand out a one-time enrollment code", tag="enrollment", body=CREATE,
           responses={201: "EnrollmentCode"}, errors=(404,))
def create_code(call: Call) -> Reply:
    """A code for `govpki token enroll` (enrollment.create on the official's organisation),
    valid ``[ra] enrollment_code_hours``; it is in this answer once and never again, and it
    retires the official's earlier unused codes."""
    code, record = enrollment.create_enrollment_code(
        call.ctx, call.operator, call.body["official"],
        kind=call.body.get("kind", "new-pair"), config=call.config)
    return Reply(serialise.enrollment_code(code, record), 201)


@api_route("POST", "/enrollment", operation_id="redeemEnrollmentCode",
           summary="Submit a CSR with a one-time code", tag="enrollment", auth="none",
           body=REDEEM, responses={202: "EnrollmentAccepted"}, errors=(401, 403))
def redeem(call: Call) -> Reply:
    """Open the issuance request the code was handed out for (once). The request waits for
    an RA operator's approval; poll ``status_url`` with ``Authorization: Enrollment
    <code>``. An unknown code is 401, a used or expired one 403, a bad CSR 400 (and the code
    stays usable)."""
    record = enrollment.redeem_enrollment_code(call.ctx, call.body["code"],
                                               call.body["csr"].encode(), client=call.client)
    url = f"/api/v1/enrollment/{record.id}"
    return Reply({"request_id": record.id, "state": record.state,
                  "message": _MESSAGES.get(record.state, record.state), "status_url": url},
                 202, {"Location": url})


@api_route("GET", "/enrollment/{request_id}", operation_id="enrollmentStatus",
           summary="How an enrollment request went", tag="enrollment", auth="enrollment",
           params=(REQUEST_ID,), responses={200: "EnrollmentStatus"}, errors=(403,))
def status(call: Call) -> Reply:
    """The request's state and, once issued, the certificate and its chain (issuing CA first)
    to write onto the USB key. Only the code that opened the request may read it."""
    return Reply(serialise.enrollment_status(enrollment.enrollment_status(
        call.ctx, call.enrollment_code, call.path["request_id"], client=call.client)))


@api_route("POST", "/enrollment/{request_id}/encryption-key", operation_id="deliverEncryptionKey",
           summary="The escrowed encryption key, wrapped for the USB key", tag="enrollment",
           auth="enrollment", params=(REQUEST_ID,), body=TRANSPORT,
           responses={200: "WrappedEncryptionKey"}, errors=(400, 403, 409))
def encryption_key(call: Call) -> Reply:
    """The dual-certificate model's second half: the key management centre wraps the
    encryption key it escrowed for this request to a transport key generated on the USB key,
    which unwraps it inside (C_UnwrapKey). Once only; later copies are recoveries under the
    two-person rule (409)."""
    try:
        spki = base64.b64decode(call.body["transport_key"], validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("transport_key is not base64", field="transport_key") from None
    return Reply(enrollment.deliver_encryption_key(
        call.ctx, call.enrollment_code, call.path["request_id"], spki, client=call.client))
