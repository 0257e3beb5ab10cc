"""GET /audit: the tamper-evident audit log, newest first, for auditors (audit.read)."""

from __future__ import annotations

from core.audit import OUTCOMES
from ra.api import queries, serialise
from ra.api.http import Call, Reply, page_reply
from ra.api.spec import PAGINATION, Param, api_route

ACTION = Param("action", "query", "Only this action and those below it (ra.request matches "
               "ra.request.approve).", max_length=100)
ACTOR = Param("actor", "query", "Only events of this actor (exact name).", max_length=255)
OUTCOME = Param("outcome", "query", "Only events with this outcome.", enum=OUTCOMES)


@api_route("GET", "/audit", operation_id="listAuditEvents", summary="The audit log",
           tag="audit", params=(ACTION, ACTOR, OUTCOME, *PAGINATION),
           responses={200: "AuditEventPage"}, paginated=True)
def list_audit_events(call: Call) -> Reply:
    """Audit events, newest first, each with its chain hashes (verify the chain with
    `govpki audit verify`, which also checks the signed checkpoints)."""
    page = queries.audit_events(call.ctx, call.operator, action=call.query["action"],
                                by=call.query["actor"], outcome=call.query["outcome"],
                                page=call.query["page"], per_page=call.query["per_page"])
    return page_reply(page, serialise.audit_event)
