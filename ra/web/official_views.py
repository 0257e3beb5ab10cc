"""Officials (工作人员): search, register, edit, bulk import, and certificate requests with a CSR.

Validation errors from ra.officials re-render the form with the offending field marked and the
operator's input kept (400, or 409 for an identifier already registered); a refusal by
ra.authz is the 403 page.
"""

from __future__ import annotations

from flask import request
from flask.typing import ResponseReturnValue

from ra import officials as officials_service
from ra import requests as requests_service
from ra.enrollment import create_enrollment_code
from ra.errors import Duplicate, ImportRefused, ValidationError
from ra.web import queries
from ra.web.base import (
    actor,
    arg_text,
    bp,
    ca_context,
    field_errors,
    form_text,
    page_number,
    query_args,
    ra_config,
    render,
    see_other,
)

PER_PAGE = 50
OFFICIAL_FIELDS = ("identifier", "name", "org_code", "position", "contact", "unit")
MAX_CSR_UPLOAD = requests_service.MAX_CSR_BYTES


@bp.get("/officials")
def officials() -> ResponseReturnValue:
    ctx, who = ca_context(), actor()
    q, org = arg_text("q", 64), arg_text("org", 32)
    page = officials_service.list_officials(ctx.sessions, who, org_code=org or None,
                                            query=q or None, page=page_number(),
                                            per_page=PER_PAGE)
    return render("officials.html", page=page, q=q, org=org,
                  orgs=queries.organisations_for(ctx, who, "official.view"),
                  args=query_args({"q": q, "org": org}))


def _form_page(template_values: dict[str, str], *, editing: str | None = None,
               errors: dict[str, str] | None = None, status: int = 200) -> tuple[str, int]:
    action = "official.edit" if editing else "official.create"
    return render("official_form.html", status, values=template_values, editing=editing,
                  errors=errors or {},
                  orgs=queries.organisations_for(ca_context(), actor(), action))


@bp.get("/officials/new")
def official_new() -> ResponseReturnValue:
    return _form_page({"org_code": request.args.get("org", "")})


@bp.post("/officials/new")
def official_create() -> ResponseReturnValue:
    values = {name: form_text(name) for name in OFFICIAL_FIELDS}
    data = officials_service.OfficialInput(**values)
    try:
        official = officials_service.create_official(ca_context().sessions, actor(), data)
    except (ValidationError, Duplicate) as exc:
        return _form_page(values, errors=field_errors(exc), status=exc.http_status)
    return see_other("ra_web.official", identifier=official.identifier, done="created")


@bp.get("/official/<identifier>")
def official(identifier: str) -> ResponseReturnValue:
    overview = queries.official_overview(ca_context(), actor(), identifier)
    return render("official.html", overview=overview, official=overview.official,
                  done=request.args.get("done", ""), kinds=requests_service.ISSUANCE_KINDS)


@bp.get("/official/<identifier>/edit")
def official_edit(identifier: str) -> ResponseReturnValue:
    current = officials_service.get_official(ca_context().sessions, actor(), identifier)
    values = {"identifier": current.identifier, "name": current.name,
              "org_code": current.organisation.code, "position": current.position,
              "contact": current.contact, "unit": current.unit or "",
              "status": current.status}
    return _form_page(values, editing=identifier)


@bp.post("/official/<identifier>/edit")
def official_update(identifier: str) -> ResponseReturnValue:
    values = {name: form_text(name) for name in (*OFFICIAL_FIELDS[1:], "status")}
    try:
        officials_service.edit_official(ca_context().sessions, actor(), identifier, **values)
    except (ValidationError, Duplicate) as exc:
        return _form_page({"identifier": identifier, **values}, editing=identifier,
                          errors=field_errors(exc), status=exc.http_status)
    return see_other("ra_web.official", identifier=identifier, done="updated")


@bp.get("/officials/import")
def official_import_form() -> ResponseReturnValue:
    return render("import.html", columns=officials_service.ROSTER_COLUMNS)


@bp.post("/officials/import")
def official_import() -> ResponseReturnValue:
    upload = request.files.get("roster")
    content = upload.read() if upload is not None else b""
    try:
        created = officials_service.import_officials(ca_context().sessions, actor(), content)
    except ImportRefused as exc:
        return render("import.html", 400, columns=officials_service.ROSTER_COLUMNS,
                      refused=exc)
    return render("import.html", columns=officials_service.ROSTER_COLUMNS, created=created)


# ---------------------------------------------------------------------------------------------
# Issuance requests (new pair, renewal, re-key) with a CSR


def _request_page(identifier: str, *, values: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None, status: int = 200
                  ) -> tuple[str, int]:
    official = officials_service.get_official(ca_context().sessions, actor(), identifier)
    return render("request_new.html", status, official=official,
                  kinds=requests_service.ISSUANCE_KINDS, values=values or {"kind": "new-pair"},
                  errors=errors or {})


@bp.get("/official/<identifier>/requests/new")
def request_new(identifier: str) -> ResponseReturnValue:
    return _request_page(identifier, values={"kind": request.args.get("kind", "new-pair")})


@bp.post("/official/<identifier>/requests/new")
def request_submit(identifier: str) -> ResponseReturnValue:
    values = {"kind": form_text("kind"), "comment": form_text("comment"),
              "csr_text": form_text("csr_text")}
    upload = request.files.get("csr_file")
    csr = upload.read(MAX_CSR_UPLOAD + 1) if upload is not None and upload.filename else b""
    csr = csr or values["csr_text"].strip().encode()
    try:
        record = requests_service.submit(ca_context(), actor(), identifier, values["kind"],
                                         csr=csr, comment=values["comment"])
    except ValidationError as exc:
        return _request_page(identifier, values=values, errors=field_errors(exc),
                             status=exc.http_status)
    return see_other("ra_web.request_detail", request_id=record.id, done="submitted")


# ---------------------------------------------------------------------------------------------
# USB-key enrollment codes (`govpki token enroll` on the official's machine)


@bp.post("/official/<identifier>/enrollment-code")
def enrollment_code(identifier: str) -> ResponseReturnValue:
    """Hand out a one-time code: shown on this response only (the RA keeps its hash), for
    the official to type into `govpki token enroll`, which then submits the request."""
    code, record = create_enrollment_code(ca_context(), actor(), identifier,
                                          kind=form_text("kind") or "new-pair",
                                          config=ra_config())
    official = officials_service.get_official(ca_context().sessions, actor(), identifier)
    return render("enrollment_code.html", official=official, code=code, record=record)
