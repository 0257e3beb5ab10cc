"""Read-only pages: dashboard, organisation tree, operators, audit log."""

from __future__ import annotations

from flask.typing import ResponseReturnValue
from werkzeug.exceptions import NotFound

from ra.operators import list_operators
from ra.web import queries
from ra.web.base import actor, arg_text, bp, ca_context, page_number, query_args, render

AUDIT_PER_PAGE = 50


@bp.get("/")
def dashboard() -> ResponseReturnValue:
    board = queries.dashboard(ca_context(), actor())
    return render("dashboard.html", board=board)


@bp.get("/orgs")
def organisations() -> ResponseReturnValue:
    return render("orgs.html", roots=queries.organisation_tree(ca_context(), actor()))


@bp.get("/operators")
def operators() -> ResponseReturnValue:
    return render("operators.html", operators=list_operators(ca_context().sessions, actor()))


@bp.get("/audit")
def audit_log() -> ResponseReturnValue:
    filters = {"who": arg_text("who", 64), "action": arg_text("action", 64),
               "object_id": arg_text("object_id", 128)}
    page = queries.audit_page(ca_context(), actor(), page=page_number(),
                              per_page=AUDIT_PER_PAGE, **filters)
    return render("audit.html", page=page, filters=filters, args=query_args(filters))


@bp.route("/<path:rest>", methods=["GET", "POST"])
def unknown_page(rest: str) -> ResponseReturnValue:
    """Any other /ra/... path: the RA's own 404 page rather than the API's JSON."""
    raise NotFound()
