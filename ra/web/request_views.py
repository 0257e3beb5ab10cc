"""The request queue (证书申请): list by state, approve, reject with a reason, execute.

Approving is followed by execution as soon as the request becomes approved, as
`govpki ra request approve` does: the operator who gives the deciding approval has the
certificate issued (or the status changed) in the same step. If the CA refuses, the request
stays approved with its error recorded, and the page offers to execute it again.
"""

from __future__ import annotations

from flask import request
from flask.typing import ResponseReturnValue

from core.errors import GovpkiError
from ra import models
from ra import requests as requests_service
from ra.errors import ValidationError
from ra.web.base import (
    actor,
    arg_text,
    bp,
    ca_context,
    field_errors,
    form_text,
    page_number,
    query_args,
    render,
    see_other,
)

PER_PAGE = 50


@bp.get("/requests")
def requests_queue() -> ResponseReturnValue:
    state = arg_text("state", 16)
    if state not in models.REQUEST_STATES:
        state = ""
    page = requests_service.list_requests(ca_context(), actor(), state=state or None,
                                          page=page_number(), per_page=PER_PAGE)
    return render("requests.html", page=page, state=state, states=models.REQUEST_STATES,
                  args=query_args({"state": state}))


def _detail(request_id: int, *, errors: dict[str, str] | None = None,
            problem: str | None = None, status: int = 200,
            values: dict[str, str] | None = None) -> tuple[str, int]:
    record = requests_service.get_request(ca_context(), actor(), request_id)
    return render("request.html", status, req=record, errors=errors or {},
                  execute_action=requests_service.EXECUTE_ACTION[record.kind],
                  problem=problem, values=values or {}, done=request.args.get("done", ""))


@bp.get("/requests/<int:request_id>")
def request_detail(request_id: int) -> ResponseReturnValue:
    return _detail(request_id)


@bp.post("/requests/<int:request_id>/approve")
def request_approve(request_id: int) -> ResponseReturnValue:
    ctx, who = ca_context(), actor()
    comment = form_text("comment")
    try:
        record = requests_service.approve(ctx, who, request_id, comment)
    except ValidationError as exc:
        return _detail(request_id, errors=field_errors(exc), status=exc.http_status,
                       values={"approve_comment": comment})
    if record.state != "approved":
        return see_other("ra_web.request_detail", request_id=request_id, done="approved")
    return _execute(request_id, after_approval=True)


@bp.post("/requests/<int:request_id>/reject")
def request_reject(request_id: int) -> ResponseReturnValue:
    comment = form_text("comment")
    try:
        requests_service.reject(ca_context(), actor(), request_id, comment)
    except ValidationError as exc:
        return _detail(request_id, errors={"reject_" + k: v
                                           for k, v in field_errors(exc).items()},
                       status=exc.http_status, values={"reject_comment": comment})
    return see_other("ra_web.request_detail", request_id=request_id, done="rejected")


@bp.post("/requests/<int:request_id>/execute")
def request_execute(request_id: int) -> ResponseReturnValue:
    return _execute(request_id, after_approval=False)


def _execute(request_id: int, *, after_approval: bool) -> ResponseReturnValue:
    try:
        requests_service.execute(ca_context(), actor(), request_id)
    except GovpkiError as exc:
        if exc.http_status == 403:
            raise  # not allowed: the 403 page, like any other refusal
        # The CA refused or failed: the request keeps its state and records the error.
        return _detail(request_id, problem=exc.message, status=exc.http_status)
    return see_other("ra_web.request_detail", request_id=request_id,
                     done="executed" if not after_approval else "approved-executed")
