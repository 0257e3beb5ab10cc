"""GET /orgs, GET /orgs/{code}: the organisation tree (单位), as far as the caller may see it."""

from __future__ import annotations

from typing import Any

from ra.api import queries, serialise
from ra.api.http import Call, Reply
from ra.api.spec import ORG_CODE, Param, api_route
from ra.records import Organisation

UNDER = Param("under", "query", "Only this organisation's subtree.", max_length=32)


def tree(orgs: list[Organisation]) -> list[dict[str, Any]]:
    """Nested nodes from a tree-ordered list: an organisation whose parent is not in the list
    (the top of the caller's scope) is a root."""
    nodes: dict[str, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for org in orgs:  # parents come first (ordered by path)
        node = serialise.organisation_node(org, [])
        nodes[org.code] = node
        parent = nodes.get(org.parent_code or "")
        (parent["children"] if parent is not None else roots).append(node)
    return roots


@api_route("GET", "/orgs", operation_id="listOrganisations", summary="The organisation tree",
           tag="organisations", params=(UNDER,), responses={200: "OrganisationTree"},
           errors=(404,))
def list_orgs(call: Call) -> Reply:
    """Every organisation the caller may see (org.view), nested: an RA operator sees the
    subtree of their own organisation, all-scoped roles the whole province."""
    orgs = queries.visible_organisations(call.ctx, call.operator, call.query["under"])
    return Reply({"items": tree(orgs), "total": len(orgs)})


@api_route("GET", "/orgs/{code}", operation_id="getOrganisation", summary="One organisation",
           tag="organisations", params=(ORG_CODE,), responses={200: "Organisation"},
           errors=(404,))
def get_org(call: Call) -> Reply:
    """One organisation, if the caller may see it (org.view on it)."""
    return Reply(serialise.organisation(queries.organisation(call.ctx, call.operator,
                                                             call.path["code"])))
