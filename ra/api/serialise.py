"""ra's records as JSON, and the JSON Schemas (OpenAPI 3.1 = JSON Schema 2020-12) they follow.

Each serialiser sits beside its schema so that a field added to one is seen missing from the
other; the API tests validate every answer they get against these schemas. Times are RFC 3339
in UTC; serials are lower-case hexadecimal without leading zeros (ca.store's form).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from cryptography.hazmat.primitives.serialization import Encoding

from ca.store import CertificateRecord
from core.audit import AuditEvent
from ra.api_tokens import ApiTokenRecord
from ra.enrollment import EnrollmentCodeRecord, EnrollmentStatus
from ra.records import CertificateRef, Official, Operator, Organisation, RequestRecord


def when(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], *, optional: tuple[str, ...] = (),
         description: str = "") -> dict[str, Any]:
    """An object schema whose members are all required except ``optional``."""
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "required": [k for k in properties if k not in optional],
                           "additionalProperties": False}
    if description:
        out["description"] = description
    return out


STR: Final = {"type": "string"}
INT: Final = {"type": "integer"}
BOOL: Final = {"type": "boolean"}
TIME: Final = {"type": "string", "format": "date-time"}
OPT_STR: Final = {"type": ["string", "null"]}
OPT_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
STRS: Final = {"type": "array", "items": STR}


def organisation(org: Organisation) -> dict[str, Any]:
    return {"code": org.code, "name": org.name, "kind": org.kind,
            "parent_code": org.parent_code, "path": org.path}


def organisation_node(org: Organisation, children: list[dict[str, Any]]) -> dict[str, Any]:
    return {**organisation(org), "children": children}


def official(o: Official) -> dict[str, Any]:
    return {"identifier": o.identifier, "name": o.name,
            "organisation": {"code": o.organisation.code, "name": o.organisation.name},
            "position": o.position, "unit": o.unit, "contact": o.contact, "status": o.status}


def certificate_ref(ref: CertificateRef) -> dict[str, Any]:
    return {"ca": ref.ca, "serial": ref.serial}


def request_record(r: RequestRecord) -> dict[str, Any]:
    return {"id": r.id, "kind": r.kind, "state": r.state, "official": r.official.identifier,
            "organisation": r.official.organisation.code, "ca": r.ca, "profile": r.profile,
            "reason": r.reason, "required_approvals": r.required_approvals,
            "approvals": list(r.approvals), "submitted_by": r.submitted_by,
            "submitted_at": when(r.submitted_at), "submit_comment": r.submit_comment,
            "decided_by": r.decided_by, "decided_at": when(r.decided_at),
            "decision_comment": r.decision_comment, "executed_by": r.executed_by,
            "executed_at": when(r.executed_at),
            "targets": [certificate_ref(t) for t in r.targets],
            "issued": [certificate_ref(t) for t in r.issued],
            "encryption_status": r.encryption_status, "last_error": r.last_error,
            "has_csr": r.has_csr}


def certificate_summary(c: CertificateRecord) -> dict[str, Any]:
    return {"ca": c.ca, "serial": c.serial, "profile": c.profile, "subject": c.subject,
            "key_type": c.key_type, "state": c.state, "status": c.status,
            "not_before": when(c.not_before), "not_after": when(c.not_after),
            "revoked_at": when(c.revoked_at), "revocation_reason": c.revocation_reason}


def certificate(c: CertificateRecord, owner: Official | None, request_id: int | None
                ) -> dict[str, Any]:
    pem = (c.certificate().public_bytes(Encoding.PEM).decode()
           if c.certificate_der is not None else None)
    return {**certificate_summary(c), "official": owner.identifier if owner else None,
            "request_id": request_id, "certificate_pem": pem}


def operator(op: Operator) -> dict[str, Any]:
    return {"username": op.username, "display_name": op.display_name,
            "organisation": op.organisation.code, "roles": sorted(op.roles),
            "pending_roles": sorted(op.pending_roles), "active": op.active}


def api_token(t: ApiTokenRecord) -> dict[str, Any]:
    return {"id": t.id, "operator": t.operator, "name": t.name, "prefix": t.prefix,
            "created_by": t.created_by, "created_at": when(t.created_at),
            "expires_at": when(t.expires_at), "revoked_at": when(t.revoked_at),
            "last_used_at": when(t.last_used_at)}


def enrollment_code(code: str, r: EnrollmentCodeRecord) -> dict[str, Any]:
    return {"code": code, "id": r.id, "official": r.official, "kind": r.kind,
            "created_by": r.created_by, "expires_at": when(r.expires_at)}


def enrollment_status(s: EnrollmentStatus) -> dict[str, Any]:
    return {"request_id": s.request_id, "state": s.state, "message": s.message,
            "certificate_pem": s.certificate_pem, "chain_pem": list(s.chain_pem),
            "encryption_status": s.encryption_status}


def audit_event(e: AuditEvent) -> dict[str, Any]:
    return {"seq": e.seq, "occurred_at": when(e.occurred_at), "actor": e.actor,
            "action": e.action, "object_type": e.object_type, "object_id": e.object_id,
            "outcome": e.outcome, "details": e.details_dict(), "prev_hash": e.prev_hash,
            "hash": e.hash}


_CERT_SUMMARY: Final = {
    "ca": STR, "serial": {"type": "string", "pattern": "^[0-9a-f]+$"}, "profile": STR,
    "subject": {"type": "string", "description": "RFC 4514 form"}, "key_type": STR,
    "state": {"type": "string", "description": "issued, or pending: reserved, never signed"},
    "status": {"type": "string", "enum": ["good", "revoked", "hold"]},
    "not_before": TIME, "not_after": TIME, "revoked_at": OPT_TIME,
    "revocation_reason": OPT_STR}
_ORG: Final = {"code": STR, "name": STR,
               "kind": {"type": "string", "enum": ["province", "prefecture", "county",
                                                   "department"]},
               "parent_code": OPT_STR, "path": {"type": "string",
                                                "description": "codes from the root down"}}
_OPERATOR: Final = {"username": STR, "display_name": STR, "organisation": STR,
                    "roles": STRS, "pending_roles": STRS, "active": BOOL}
_TOKEN: Final = {"id": INT, "operator": STR, "name": STR,
                 "prefix": {"type": "string", "description": "the token's first characters"},
                 "created_by": STR, "created_at": TIME, "expires_at": TIME,
                 "revoked_at": OPT_TIME, "last_used_at": OPT_TIME}

#: Response schemas by name (components/schemas of the OpenAPI document).
SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "Problem": {
        "type": "object", "description": "RFC 9457 problem details. Validation problems name "
        "the offending input in `field`; a refused roster lists every row's problems.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri-reference",
                     "description": "urn:govpki:problem:<kind>, or about:blank for HTTP-level "
                                    "problems (unknown path, method not allowed)"},
            "title": STR, "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": STR, "field": {"type": "string", "description": "the input at fault"},
            "problems": {"type": "array", "items": _obj(
                {"line": INT, "field": STR, "message": STR})}},
        "additionalProperties": True},
    "Organisation": _obj(_ORG),
    "OrganisationNode": _obj({**_ORG, "children": {"type": "array",
                                                   "items": _ref("OrganisationNode")}}),
    "OrganisationTree": _obj({"items": {"type": "array", "items": _ref("OrganisationNode")},
                              "total": INT}, description="the visible subtrees"),
    "Official": _obj({
        "identifier": STR, "name": STR,
        "organisation": _obj({"code": STR, "name": STR}),
        "position": STR, "unit": OPT_STR, "contact": STR,
        "status": {"type": "string", "enum": ["active", "left"]}}),
    "CertificateRef": _obj({"ca": STR, "serial": STR}),
    "Request": _obj({
        "id": INT,
        "kind": {"type": "string", "enum": ["new-pair", "renewal", "re-key", "revocation",
                                            "suspension", "release"]},
        "state": {"type": "string", "enum": ["submitted", "approved", "rejected", "issued",
                                             "done"]},
        "official": STR, "organisation": STR, "ca": STR, "profile": STR, "reason": OPT_STR,
        "required_approvals": INT, "approvals": STRS, "submitted_by": STR,
        "submitted_at": TIME, "submit_comment": STR, "decided_by": OPT_STR,
        "decided_at": OPT_TIME, "decision_comment": OPT_STR, "executed_by": OPT_STR,
        "executed_at": OPT_TIME,
        "targets": {"type": "array", "items": _ref("CertificateRef")},
        "issued": {"type": "array", "items": _ref("CertificateRef")},
        "encryption_status": OPT_STR, "last_error": OPT_STR, "has_csr": BOOL}),
    "CertificateSummary": _obj(_CERT_SUMMARY),
    "Certificate": _obj({**_CERT_SUMMARY, "official": OPT_STR,
                         "request_id": {"type": ["integer", "null"]},
                         "certificate_pem": OPT_STR}),
    "Operator": _obj(_OPERATOR),
    "ApiToken": _obj(_TOKEN),
    "NewApiToken": _obj({**_TOKEN, "token": {
        "type": "string", "description": "the bearer token: shown this once, never again"}}),
    "EnrollmentCode": _obj({"code": {"type": "string", "description": "shown this once"},
                            "id": INT, "official": STR, "kind": STR, "created_by": STR,
                            "expires_at": TIME}),
    "EnrollmentAccepted": _obj({"request_id": INT, "state": STR, "message": STR,
                                "status_url": {"type": "string", "format": "uri-reference"}}),
    "EnrollmentStatus": _obj({"request_id": INT, "state": STR, "message": STR,
                              "certificate_pem": OPT_STR, "chain_pem": STRS,
                              "encryption_status": OPT_STR}),
    "WrappedEncryptionKey": {"type": "object", "description": (
        "The escrowed encryption key wrapped to the USB key's transport key (the key management "
        "centre's format, all members wrapped or public; see docs/kmc.md)")},
    "AuditEvent": _obj({"seq": INT, "occurred_at": TIME, "actor": STR, "action": STR,
                        "object_type": STR, "object_id": STR,
                        "outcome": {"type": "string", "enum": ["success", "refused",
                                                               "failure"]},
                        "details": {"type": "object"}, "prev_hash": STR, "hash": STR}),
    "ImportResult": _obj({"imported": INT, "officials": {"type": "array",
                                                         "items": _ref("Official")}}),
    "OpenApiDocument": {"type": "object", "description": "this document"},
}

#: Items of list envelopes: "OfficialPage" is a page of Official, "OperatorList" a list.
PAGED: Final = ("Official", "Request", "AuditEvent")
LISTED: Final = ("Operator", "ApiToken", "CertificateSummary")


def envelope_schemas() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in PAGED:
        out[f"{name}Page"] = _obj({"items": {"type": "array", "items": _ref(name)},
                                   "total": INT, "page": INT, "per_page": INT, "pages": INT},
                                  description=f"one page of {name} items; Link has the others")
    for name in LISTED:
        out[f"{name}List"] = _obj({"items": {"type": "array", "items": _ref(name)},
                                   "total": INT})
    return out
