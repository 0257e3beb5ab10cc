"""Certificate requests (证书申请): the queue, submission, approval, rejection, execution."""

from __future__ import annotations

from typing import Final

from ca.revocation import REVOCATION_REASONS
from policies.authz import REQUEST_KINDS
from ra import models, requests
from ra.api import serialise
from ra.api.http import Call, Reply, page_reply
from ra.api.spec import PAGINATION, REQUEST_ID, Body, Field, Param, api_route
from ra.records import RequestRecord

COMMENT: Final = Field("comment", "string", "Why (shown to the official and audited).",
                       max_length=requests.MAX_COMMENT, multiline=True)
SUBMIT: Final = Body("RequestSubmit", (
    Field("official", "string", "The official's identifier.", required=True, max_length=64),
    Field("kind", "string", "What is asked for.", required=True, enum=REQUEST_KINDS),
    Field("csr", "string", "PKCS#10 request in PEM (new-pair, renewal, re-key); its key "
          "is certified, its subject is not (the RA's records are).",
          max_length=requests.MAX_CSR_BYTES, multiline=True),
    Field("serials", "strings", "Certificates to revoke, suspend or release (hex serials).",
          max_length=64),
    Field("ca", "string", "Issuing CA (default: officials).", max_length=64),
    Field("reason", "string", "RFC 5280 revocation reason (revocation only).",
          enum=REVOCATION_REASONS),
    COMMENT), "A new request.")
APPROVE: Final = Body("RequestApprove", (COMMENT,), "An approval, with an optional comment.",
                      optional=True)
REJECT: Final = Body("RequestReject", (
    Field("comment", "string", "Why the request is refused (required: the official is told).",
          required=True, max_length=requests.MAX_COMMENT, multiline=True),), "A rejection.")
EMPTY: Final = Body("Empty", (), "No members.", optional=True)

STATE = Param("state", "query", "Only requests in this state.", enum=models.REQUEST_STATES)
ORG = Param("org", "query", "Only requests for officials of this organisation's subtree.",
            max_length=32)
EXECUTE = Param("execute", "query", "Carry the request out as soon as it is approved "
                "(issue, revoke, suspend, release), as `govpki ra request approve` does.",
                "boolean", default=True)


def _reply(record: RequestRecord, status: int = 200) -> Reply:
    headers = {"Location": f"/api/v1/requests/{record.id}"} if status == 201 else {}
    return Reply(serialise.request_record(record), status, headers)


@api_route("GET", "/requests", operation_id="listRequests", summary="The request queue",
           tag="requests", params=(STATE, ORG, *PAGINATION), responses={200: "RequestPage"},
           errors=(404,), paginated=True)
def list_requests(call: Call) -> Reply:
    """Requests for officials the caller may see (request.view), oldest first."""
    page = requests.list_requests(call.ctx, call.operator, state=call.query["state"],
                                  org_code=call.query["org"], page=call.query["page"],
                                  per_page=call.query["per_page"])
    return page_reply(page, serialise.request_record)


@api_route("POST", "/requests", operation_id="submitRequest", summary="Submit a request",
           tag="requests", body=SUBMIT, responses={201: "Request"}, errors=(404, 409))
def submit_request(call: Call) -> Reply:
    """Open a request for an official (request.submit). Issuance kinds need ``csr``; status
    kinds name ``serials``. A suspension (a lost USB key) is carried out at once and comes
    back ``done``; everything else waits for approval by someone other than the submitter."""
    b = call.body
    csr = b.get("csr")
    record = requests.submit(call.ctx, call.operator, b["official"], b["kind"],
                             csr=csr.encode() if csr is not None else None,
                             serials=b.get("serials", ()), ca=b.get("ca"),
                             reason=b.get("reason"), comment=b.get("comment", ""))
    return _reply(record, 201)


@api_route("GET", "/requests/{request_id}", operation_id="getRequest", summary="One request",
           tag="requests", params=(REQUEST_ID,), responses={200: "Request"}, errors=(404,))
def get_request(call: Call) -> Reply:
    """One request, if the caller may see its official (request.view)."""
    return _reply(requests.get_request(call.ctx, call.operator, call.path["request_id"]))


@api_route("POST", "/requests/{request_id}/approve", operation_id="approveRequest",
           summary="Approve a request", tag="requests", params=(REQUEST_ID, EXECUTE),
           body=APPROVE, responses={200: "Request"}, errors=(404, 409))
def approve_request(call: Call) -> Reply:
    """One approval (request.approve; never the submitter's, never twice by one operator).
    When enough operators have approved, the request is carried out at once unless
    ``execute=false``; if carrying it out fails, the approval stands and the problem says
    why: retry with POST /requests/{request_id}/execute."""
    record = requests.approve(call.ctx, call.operator, call.path["request_id"],
                              call.body.get("comment", ""))
    if record.state == "approved" and call.query["execute"]:
        record = requests.execute(call.ctx, call.operator, record.id)
    return _reply(record)


@api_route("POST", "/requests/{request_id}/reject", operation_id="rejectRequest",
           summary="Reject a request", tag="requests", params=(REQUEST_ID,), body=REJECT,
           responses={200: "Request"}, errors=(404, 409))
def reject_request(call: Call) -> Reply:
    """Refuse a submitted request, saying why (request.reject)."""
    return _reply(requests.reject(call.ctx, call.operator, call.path["request_id"],
                                  call.body["comment"]))


@api_route("POST", "/requests/{request_id}/execute", operation_id="executeRequest",
           summary="Carry out an approved request", tag="requests", params=(REQUEST_ID,),
           body=EMPTY, responses={200: "Request"}, errors=(404, 409))
def execute_request(call: Call) -> Reply:
    """Issue the certificate, or change the certificates' status, of an approved request
    (request.issue, certificate.revoke/suspend/release); again after a failure."""
    return _reply(requests.execute(call.ctx, call.operator, call.path["request_id"]))
