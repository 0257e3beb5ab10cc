"""Officials (工作人员): search, register, read, edit, bulk import, their certificates."""

from __future__ import annotations

from typing import Final

from ra import officials
from ra.api import queries, serialise
from ra.api.errors import RosterRefused
from ra.api.http import Call, Reply, list_reply, page_reply
from ra.api.spec import IDENTIFIER, PAGINATION, Body, Field, Param, api_route
from ra.errors import ImportRefused, ValidationError

#: A roster may be larger than an ordinary body: up to ra.officials' own limit, plus room for
#: the multipart envelope around it.
ROSTER_BODY_LIMIT: Final = officials.MAX_ROSTER_BYTES + 64 * 1024

_NAME: Final = Field("name", "string", "Full name, as the certificate subject's CN.",
                     max_length=64)
_ORG: Final = Field("org_code", "string", "Code of the official's organisation.",
                    max_length=32)
_POSITION: Final = Field("position", "string", "Position (职务).", max_length=64)
_CONTACT: Final = Field("contact", "string", "Telephone or e-mail.", max_length=128)
_UNIT: Final = Field("unit", "string", "Unit within the organisation (the subject's OU).",
                     nullable=True, max_length=64)

CREATE: Final = Body("OfficialCreate", (
    Field("identifier", "string", "Internal staff identifier (never a resident identity "
          "number).", required=True, max_length=64),
    Field(_NAME.name, "string", _NAME.description, required=True, max_length=64),
    Field(_ORG.name, "string", _ORG.description, required=True, max_length=32),
    _POSITION, _CONTACT, _UNIT), "A new official.")
EDIT: Final = Body("OfficialEdit", (
    _NAME, _ORG, _POSITION, _CONTACT, _UNIT,
    Field("status", "string", "active, or left (no new certificates).",
          enum=("active", "left"))),
    "The members to change (JSON merge patch, RFC 7396: `unit: null` removes the unit).")

QUERY = Param("q", "query", "Name contains, or identifier starts with, this text.",
              max_length=64)
ORG = Param("org", "query", "Only this organisation's subtree.", max_length=32)


@api_route("GET", "/officials", operation_id="listOfficials", summary="Search officials",
           tag="officials", params=(QUERY, ORG, *PAGINATION), responses={200: "OfficialPage"},
           errors=(404,), paginated=True)
def list_officials(call: Call) -> Reply:
    """Officials the caller may see (official.view), in registration order, one page at a
    time; an out-of-scope ``org`` is refused (403)."""
    page = officials.list_officials(call.ctx.sessions, call.operator,
                                    org_code=call.query["org"], query=call.query["q"] or None,
                                    page=call.query["page"], per_page=call.query["per_page"])
    return page_reply(page, serialise.official)


@api_route("POST", "/officials", operation_id="createOfficial", summary="Register an official",
           tag="officials", body=CREATE, responses={201: "Official"}, errors=(404, 409))
def create_official(call: Call) -> Reply:
    """Register an official (official.create on the organisation). The subject their
    certificates will carry is checked now, not at issuance."""
    b = call.body
    created = officials.create_official(call.ctx.sessions, call.operator,
                                        officials.OfficialInput(
                                            b["identifier"], b["name"], b["org_code"],
                                            b.get("position", ""), b.get("contact", ""),
                                            b.get("unit")))
    return Reply(serialise.official(created), 201,
                 {"Location": f"/api/v1/officials/{created.identifier}"})


@api_route("POST", "/officials/import", operation_id="importOfficials",
           summary="Bulk-import officials from a CSV roster", tag="officials", csv_body=True,
           responses={201: "ImportResult"}, errors=(409,), max_body=ROSTER_BODY_LIMIT)
def import_officials(call: Call) -> Reply:
    """All rows or none. The roster is CSV (UTF-8, header row naming the columns identifier,
    name, org_code and optionally position, contact, unit), sent as text/csv or as the
    ``file`` part of multipart/form-data. A refused roster gives 400 with every row's
    problems in ``problems`` (line, field, message) and nothing imported."""
    try:
        created = officials.import_officials(call.ctx.sessions, call.operator, call.upload)
    except ImportRefused as exc:
        raise RosterRefused(exc) from None
    return Reply({"imported": len(created),
                  "officials": [serialise.official(o) for o in created]}, 201)


@api_route("GET", "/officials/{identifier}", operation_id="getOfficial",
           summary="One official", tag="officials", params=(IDENTIFIER,),
           responses={200: "Official"}, errors=(404,))
def get_official(call: Call) -> Reply:
    """One official, if the caller may see them (official.view)."""
    return Reply(serialise.official(officials.get_official(call.ctx.sessions, call.operator,
                                                           call.path["identifier"])))


@api_route("PATCH", "/officials/{identifier}", operation_id="editOfficial",
           summary="Edit an official", tag="officials", params=(IDENTIFIER,), body=EDIT,
           responses={200: "Official"}, errors=(404, 409))
def edit_official(call: Call) -> Reply:
    """Change some of name, org_code, position, contact, unit, status (official.edit; moving
    to another organisation needs it on both)."""
    if not call.body:
        raise ValidationError("nothing to change: give at least one of "
                              f"{', '.join(f.name for f in EDIT.fields)}", field="body")
    changed = officials.edit_official(call.ctx.sessions, call.operator,
                                      call.path["identifier"], **call.body)
    return Reply(serialise.official(changed))


@api_route("GET", "/officials/{identifier}/certificates",
           operation_id="listOfficialCertificates", summary="An official's certificates",
           tag="officials", params=(IDENTIFIER,), responses={200: "CertificateSummaryList"},
           errors=(404,))
def official_certificates(call: Call) -> Reply:
    """The official's signed certificates, newest first (at most 200; official.view)."""
    certs = queries.official_certificates(call.ctx, call.operator, call.path["identifier"])
    return list_reply(certs, serialise.certificate_summary)
