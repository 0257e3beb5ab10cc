"""REST ``/api/v1/exchange/...``: the exchange for a department's own document system.

ra owns /api/v1 (bearer tokens, input checks, problem bodies, the OpenAPI document); this
module contributes the exchange's endpoints through ra's extension point as the route group
:data:`ROUTES`, which the composition root registers (``ra.api.register_routes``) before it
assembles the application. Every view calls :mod:`apps.exchange.service` with the token's
operator: authorisation (``exchange.*`` in policies/authz.yaml) and auditing happen there.

Two ways to send: ``POST /exchange/packages`` takes a package the department's system built
and sealed itself (DER ExchangePackage, docs/exchange.md); ``POST /exchange/documents`` takes
the document as JSON (files base64) and has the server seal it with the organisation's
server-held seal. Receipts likewise: made on the node and uploaded, or made by the server.
Binary answers (the package, the signed header, receipts) are DER, in the media types below.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

from apps.exchange import service
from apps.exchange.errors import PackageNotFound, ValidationError
from apps.exchange.package import DocumentFile
from apps.exchange.policy import get_policy
from apps.exchange.records import PackageSummary, ReceiptRecord
from ra.api import BinaryBody, BinaryContent, Body, Call, Field, Param, Reply, RouteGroup
from ra.api.http import page_reply

PACKAGE_TYPE: Final = "application/vnd.govpki.exchange-package"
CMS_TYPE: Final = "application/pkcs7-mime"
TAG: Final = "exchange"
_B64_PER_BYTE: Final = 4 / 3

_STR: Final = {"type": "string"}
_NULL_STR: Final = {"type": ["string", "null"]}
_TIME: Final = {"type": "string", "format": "date-time"}
_NULL_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
_INT: Final = {"type": "integer"}


def _obj(properties: Mapping[str, Any], description: str = "") -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": dict(properties),
            "required": list(properties), "additionalProperties": False}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ORG = _obj({"code": _STR, "name": _STR})
_FILE_INFO = _obj({"name": _STR, "size": _INT, "sha256": _STR})
SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "ExchangeOrg": _ORG,
    "ExchangeDelivery": _obj({
        "recipient": _ref("ExchangeOrg"),
        "role": {"type": "string", "enum": ["main", "copy"]},
        "transport_state": {"type": "string", "enum": ["pending", "fetched", "delivered"]},
        "business_state": {"type": "string",
                           "enum": ["none", "signed-for", "returned", "completed"]},
        "fetched_at": _NULL_TIME, "delivered_at": _NULL_TIME, "business_at": _NULL_TIME,
        "return_reason": _NULL_STR, "overdue": {"type": "boolean"}},
        "one recipient: technical state (delivered = fetched, verified and acknowledged) "
        "apart from the business state (signed for, returned, completed)"),
    "ExchangePackage": _obj({
        "message_id": _STR, "content_digest": _STR, "number": _STR, "title": _STR,
        "sender": _ref("ExchangeOrg"), "document_date": {"type": "string", "format": "date"},
        "urgency": _STR, "classification": _STR, "sent_at": _TIME, "deadline": _TIME,
        "size": _INT, "submitted_by": _STR, "overdue": {"type": "boolean"},
        "deliveries": {"type": "array", "items": _ref("ExchangeDelivery")}},
        "a package's header fields and its deliveries (all of them for the sender, the "
        "caller's own for a recipient)"),
    "ExchangePackagePage": _obj({
        "items": {"type": "array", "items": _ref("ExchangePackage")}, "total": _INT,
        "page": _INT, "per_page": _INT, "pages": _INT}),
    "ExchangePackageList": _obj({
        "items": {"type": "array", "items": _ref("ExchangePackage")}, "total": _INT}),
    "ExchangeSubmission": {**_obj({
        "created": {"type": "boolean"}, "package": _ref("ExchangePackage")}),
        "description": "created is false for a resend of a stored package: nothing new was "
                       "stored"},
    "ExchangeReceipt": _obj({
        "message_id": _STR, "recipient": _ref("ExchangeOrg"),
        "kind": {"type": "string", "enum": ["delivered", "signed-for", "returned",
                                            "completed"]},
        "reason": _NULL_STR, "signer": _STR, "created_by": _STR, "created_at": _TIME}),
    "ExchangeReceiptList": _obj({
        "items": {"type": "array", "items": _ref("ExchangeReceipt")}, "total": _INT}),
    "ExchangeStatus": _obj({"package": _ref("ExchangePackage"),
                            "receipts": {"type": "array", "items": _ref("ExchangeReceipt")}}),
    "ExchangeOpened": _obj({
        "header": {"type": "object", "description": "the verified header's fields"},
        "verification": {"type": "object",
                         "description": "the seal's verdict: valid, reasons, seal (signer, "
                                        "chain, revocation), verified_at"},
        "receipt": _ref("ExchangeReceipt"),
        "body": _ref("ExchangeFile"),
        "attachments": {"type": "array", "items": _ref("ExchangeFile")}}),
    "ExchangeFile": _obj({"name": _STR, "size": _INT, "sha256": _STR, "content": {
        "type": "string", "contentEncoding": "base64"}}),
}

ROUTES: Final = RouteGroup("exchange", schemas=SCHEMAS)

MESSAGE_ID: Final = Param("message_id", "path", "The package's global message id (UUID).",
                          max_length=36)
ORG: Final = Param("org", "query", "The organisation acted for (default: the token's "
                                   "operator's own).", max_length=32)
PAGE: Final = Param("page", "query", "Page number, from 1.", "integer", minimum=1, default=1)
PER_PAGE: Final = Param("per_page", "query", "Items per page.", "integer", minimum=1,
                        maximum=500, default=50)


def _limit(policy_bytes: int) -> int:
    """A JSON body holding ``policy_bytes`` of files as base64, plus the metadata."""
    return int(policy_bytes * _B64_PER_BYTE) + 1024 * 1024


_POLICY = get_policy()
SEND_BODY: Final = Body("ExchangeSendRequest", (
    Field("from", "string", "Issuing organisation's code (default: the operator's own).",
          max_length=32),
    Field("number", "string", "Document number (文号).", required=True,
          max_length=_POLICY.limits.max_number_chars),
    Field("title", "string", "Title (标题).", required=True,
          max_length=_POLICY.limits.max_title_chars),
    Field("date", "string", "Document date YYYY-MM-DD (成文日期).", required=True,
          max_length=10),
    Field("urgency", "string", "紧急程度.", required=True, enum=tuple(_POLICY.urgencies)),
    Field("classification", "string", "密级 (only non-classified documents travel).",
          required=True, max_length=16),
    Field("main", "strings", "Main recipients' codes (主送).", required=True, max_length=32,
          max_items=_POLICY.limits.max_recipients),
    Field("copy", "strings", "Copy recipients' codes (抄送).", max_length=32,
          max_items=_POLICY.limits.max_recipients),
    Field("body_name", "string", "The body PDF's file name.", required=True),
    Field("body", "string", "The body PDF, base64.", required=True,
          max_length=int(_POLICY.limits.max_body_bytes * _B64_PER_BYTE) + 4),
    Field("attachment_names", "strings", "Attachments' file names, in order.",
          max_items=_POLICY.limits.max_attachments),
    Field("attachments", "strings", "Attachments, base64, in the order of their names.",
          max_length=int(_POLICY.limits.max_attachment_bytes * _B64_PER_BYTE) + 4,
          max_items=_POLICY.limits.max_attachments),
    Field("message_id", "string", "Resend: the message id of the earlier attempt.",
          max_length=36)),
    "A document for the server to seal with the organisation's seal and send.")
RECEIPT_BODY: Final = Body("ExchangeReceiptRequest", (
    Field("kind", "string", "signed-for (签收), returned (退回), completed (办结).",
          required=True, enum=("signed-for", "returned", "completed")),
    Field("reason", "string", "Why the document is returned (required for returned).",
          max_length=_POLICY.limits.max_reason_chars, multiline=True)),
    "A business receipt for the server to sign with the organisation's seal.")


def _package(p: PackageSummary) -> dict[str, Any]:
    return p.as_dict()


def _receipt(r: ReceiptRecord) -> dict[str, Any]:
    return r.as_dict()


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{field} is not base64", field=field) from None


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError("date must be YYYY-MM-DD", field="date") from None


def _files(names: Sequence[str], contents: Sequence[str]) -> tuple[DocumentFile, ...]:
    if len(names) != len(contents):
        raise ValidationError("attachment_names and attachments must have the same length",
                              field="attachments")
    return tuple(DocumentFile(n, _b64(c, f"attachments[{i}]"))
                 for i, (n, c) in enumerate(zip(names, contents, strict=True)))


def _submitted(result: Any) -> Reply:
    status = 201 if result.created else 200
    return Reply({"created": result.created, "package": _package(result.package)}, status,
                 {"Location": f"/api/v1/exchange/packages/{result.message_id}"})


@ROUTES.route("POST", "/exchange/documents", operation_id="exchangeSendDocument",
              summary="Seal and send a document with the organisation's server-held seal",
              tag=TAG, body=SEND_BODY,
              max_body=_limit(_POLICY.limits.max_package_bytes),
              responses={201: "ExchangeSubmission", 200: "ExchangeSubmission"},
              errors=(403, 404, 409, 413, 422))
def _send(call: Call) -> Reply:
    """The server seals the header with the organisation's seal, encrypts the body to every
    recipient's organisation-encryption certificate (checked for revocation first) and stores
    the package before answering 201. A resend (same message_id and content) answers 200
    with the stored package. Classified documents are refused (403) and audited."""
    b = call.body
    request = service.SendRequest(
        issuer=b.get("from") or call.operator.organisation.code, number=b["number"],
        title=b["title"], date=_date(b["date"]), urgency=b["urgency"],
        classification=b["classification"], main=tuple(b["main"]),
        copy=tuple(b.get("copy", ())),
        body=DocumentFile(b["body_name"], _b64(b["body"], "body")),
        attachments=_files(b.get("attachment_names", ()), b.get("attachments", ())),
        message_id=b.get("message_id"))
    return _submitted(service.send(call.ctx, call.operator, request))


@ROUTES.route("POST", "/exchange/packages", operation_id="exchangeSubmitPackage",
              summary="Submit a package built and sealed by the department's own system",
              tag=TAG, binary_body=BinaryBody((PACKAGE_TYPE,), "A DER ExchangePackage."),
              max_body=_POLICY.limits.max_package_bytes + 1024 * 1024,
              responses={201: "ExchangeSubmission", 200: "ExchangeSubmission"},
              errors=(403, 404, 409, 413, 422))
def _submit(call: Call) -> Reply:
    """The hub checks the header's seal (signature, chain, revocation, that it is the
    issuing organisation's registered seal), the policy, and that the encrypted body is the
    one the header names; it never opens the body. 201 once stored, 200 for a resend."""
    return _submitted(service.submit(call.ctx, call.operator, call.upload))


@ROUTES.route("GET", "/exchange/inbox", operation_id="exchangeInbox",
              summary="Documents addressed to the organisation (收件箱)", tag=TAG,
              params=(ORG, Param("state", "query", "Technical state.",
                                 enum=("pending", "fetched", "delivered")),
                      Param("business_state", "query", "Business state.",
                            enum=("none", "signed-for", "returned", "completed")),
                      PAGE, PER_PAGE),
              responses={200: "ExchangePackagePage"}, paginated=True, errors=(403,))
def _inbox(call: Call) -> Reply:
    """Newest first, each with the organisation's own delivery (exchange.receive)."""
    q = call.query
    found = service.inbox(call.ctx, call.operator, org=q["org"], state=q["state"],
                          business_state=q["business_state"], page=q["page"],
                          per_page=q["per_page"])
    return page_reply(found, _package)


@ROUTES.route("GET", "/exchange/outbox", operation_id="exchangeOutbox",
              summary="Documents the organisation sent, with every recipient's state", tag=TAG,
              params=(ORG, PAGE, PER_PAGE), responses={200: "ExchangePackagePage"},
              paginated=True, errors=(403,))
def _outbox(call: Call) -> Reply:
    """Newest first (exchange.view)."""
    q = call.query
    return page_reply(service.outbox(call.ctx, call.operator, org=q["org"], page=q["page"],
                                     per_page=q["per_page"]), _package)


@ROUTES.route("GET", "/exchange/search", operation_id="exchangeSearch",
              summary="Search sent and received documents by number, title and date", tag=TAG,
              params=(ORG, Param("number", "query", "Document number contains."),
                      Param("title", "query", "Title contains.", max_length=200),
                      Param("date_from", "query", "Document date from (YYYY-MM-DD).",
                            max_length=10),
                      Param("date_to", "query", "Document date to (YYYY-MM-DD).",
                            max_length=10), PAGE, PER_PAGE),
              responses={200: "ExchangePackagePage"}, paginated=True, errors=(403,))
def _search(call: Call) -> Reply:
    """Among the documents the operator's organisations sent or received (exchange.view)."""
    q = call.query
    found = service.search(call.ctx, call.operator, org=q["org"], number=q["number"],
                           title=q["title"],
                           date_from=_date(q["date_from"]) if q["date_from"] else None,
                           date_to=_date(q["date_to"]) if q["date_to"] else None,
                           page=q["page"], per_page=q["per_page"])
    return page_reply(found, _package)


@ROUTES.route("GET", "/exchange/overdue", operation_id="exchangeOverdue",
              summary="Documents not signed for by their deadline", tag=TAG, params=(ORG,),
              responses={200: "ExchangePackageList"}, errors=(403,))
def _overdue(call: Call) -> Reply:
    """Deadlines come from the urgency (policies/exchange.yaml); returned documents are not
    overdue."""
    found = service.overdue(call.ctx, call.operator, org=call.query["org"])
    return Reply({"items": [_package(p) for p in found], "total": len(found)})


@ROUTES.route("GET", "/exchange/packages/{message_id}", operation_id="exchangeStatus",
              summary="A document's state at every recipient, with its receipts (跟踪)",
              tag=TAG, params=(MESSAGE_ID,), responses={200: "ExchangeStatus"},
              errors=(403, 404))
def _status(call: Call) -> Reply:
    """The sender's side sees every recipient; a recipient sees its own (exchange.view)."""
    message_id = call.path["message_id"]
    summary = service.status(call.ctx, call.operator, message_id)
    found = service.receipts(call.ctx, call.operator, message_id)
    return Reply({"package": _package(summary), "receipts": [_receipt(r) for r in found]})


@ROUTES.route("GET", "/exchange/packages/{message_id}/package",
              operation_id="exchangeFetchPackage",
              summary="Fetch the package as sent, for a recipient that opens it itself",
              tag=TAG, params=(MESSAGE_ID, ORG),
              responses={200: BinaryContent(PACKAGE_TYPE, "The DER ExchangePackage")},
              errors=(403, 404))
def _fetch(call: Call) -> Reply:
    """The same bytes every time (idempotent); the first fetch marks the delivery fetched.
    Verify the header and decrypt the body on the node, then upload the technical receipt."""
    fetched = service.fetch(call.ctx, call.operator, call.path["message_id"],
                            org=call.query["org"])
    return Reply.binary(fetched.package, PACKAGE_TYPE)


@ROUTES.route("GET", "/exchange/packages/{message_id}/header",
              operation_id="exchangeSignedHeader",
              summary="The signed header (what receipts answer)", tag=TAG,
              params=(MESSAGE_ID,),
              responses={200: BinaryContent(CMS_TYPE, "DER CMS SignedData")},
              errors=(403, 404))
def _header(call: Call) -> Reply:
    """For `openssl cms -verify_receipt RECEIPT -in HEADER -inform DER` (exchange.view)."""
    return Reply.binary(service.signed_header(call.ctx, call.operator,
                                              call.path["message_id"]), CMS_TYPE)


@ROUTES.route("POST", "/exchange/packages/{message_id}/open", operation_id="exchangeOpen",
              summary="Verify and decrypt with the organisation's server-held key",
              tag=TAG, params=(MESSAGE_ID, ORG), responses={200: "ExchangeOpened"},
              errors=(403, 404, 409, 422))
def _open(call: Call) -> Reply:
    """Checks the seal (signature, chain, revocation) and that the body is the one the
    header names, decrypts, and on the first opening records the technical receipt
    (delivered and verified) signed with the organisation's seal."""
    opened = service.open_document(call.ctx, call.operator, call.path["message_id"],
                                   org=call.query["org"])
    document = opened.document

    def file(f: DocumentFile) -> dict[str, Any]:
        return {**f.info.as_dict(), "content": base64.b64encode(f.content).decode("ascii")}

    return Reply({"header": document.header.as_dict(), "verification": opened.verification(),
                  "receipt": _receipt(opened.receipt), "body": file(document.body),
                  "attachments": [file(a) for a in document.attachments]})


@ROUTES.route("POST", "/exchange/packages/{message_id}/receipts",
              operation_id="exchangeReceipt",
              summary="Sign for, return or complete with the organisation's seal", tag=TAG,
              params=(MESSAGE_ID, ORG), body=RECEIPT_BODY,
              responses={201: "ExchangeReceipt", 200: "ExchangeReceipt"},
              errors=(403, 404, 409, 422))
def _receipt_view(call: Call) -> Reply:
    """An RFC 2634 signed receipt bound to the header's signature, with the statement of
    the act; repeating a step already taken answers 200 with the stored receipt."""
    started = dt.datetime.now(dt.UTC)
    record = service.receipt(call.ctx, call.operator, call.path["message_id"],
                             call.body["kind"], reason=call.body.get("reason") or "",
                             org=call.query["org"])
    # A receipt stored by an earlier call was stored before this one started.
    return Reply(_receipt(record), 201 if record.created_at >= started else 200)


@ROUTES.route("POST", "/exchange/packages/{message_id}/receipts/signed",
              operation_id="exchangeUploadReceipt",
              summary="Upload a receipt signed on the recipient's own node", tag=TAG,
              params=(MESSAGE_ID, ORG),
              binary_body=BinaryBody((CMS_TYPE,), "The DER receipt statement (SignedData "
                                                  "with the RFC 2634 receipt inside)."),
              max_body=256 * 1024,
              responses={201: "ExchangeReceipt", 200: "ExchangeReceipt"},
              errors=(403, 404, 409, 422))
def _upload_receipt(call: Call) -> Reply:
    """Verified like the server's own (both signatures, chain, revocation, the
    organisation's registered seal); kind delivered is the technical receipt."""
    record, created = service.submit_receipt(call.ctx, call.operator, call.path["message_id"],
                                             call.upload, org=call.query["org"])
    return Reply(_receipt(record), 201 if created else 200)


@ROUTES.route("GET", "/exchange/packages/{message_id}/receipts/{org}/{kind}",
              operation_id="exchangeReceiptFile",
              summary="One receipt as DER, for openssl", tag=TAG,
              params=(MESSAGE_ID, Param("org", "path", "The recipient's code.", max_length=32),
                      Param("kind", "path", "The receipt's kind.",
                            enum=("delivered", "signed-for", "returned", "completed")),
                      Param("part", "query", "ess: the RFC 2634 receipt (openssl cms "
                                             "-verify_receipt); statement: the signed "
                                             "statement around it.",
                            enum=("ess", "statement"), default="ess")),
              responses={200: BinaryContent(CMS_TYPE, "DER CMS SignedData")},
              errors=(403, 404))
def _receipt_file(call: Call) -> Reply:
    """As visible as the package's status (exchange.view)."""
    path = call.path
    for r in service.receipts(call.ctx, call.operator, path["message_id"]):
        if r.recipient.code == path["org"] and r.kind == path["kind"]:
            return Reply.binary(r.ess_receipt if call.query["part"] == "ess" else r.statement,
                                CMS_TYPE)
    raise PackageNotFound(f"no {path['kind']} receipt from {path['org']} for "
                          f"{path['message_id']}", message_id=path["message_id"])
