"""The OpenAPI 3.1 document of the RA's REST API, written from the one route table.

Nothing here is typed twice: paths, methods, parameters, request bodies and their JSON
Schemas come from the route table (``ra.api.spec``: the RA's own routes and the groups that
packages above ra contributed, the same declarations the views are registered and their input
checked from), response schemas from ``ra.api.serialise`` and from the contributing groups.
Each assembled application keeps the document of the routes it serves (``api_blueprint``), so
what GET /api/v1/openapi.json answers (without authentication, so a client can be generated
offline from it) is exactly what that application serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Final

from flask import current_app

from ra.api import serialise
from ra.api.http import Call, Reply
from ra.api.spec import BinaryContent, Route, RouteGroup, api_route, route_groups

VERSION: Final = "1.0.0"
#: Where an assembled application keeps its document (Flask ``app.extensions``).
APP_KEY: Final = "govpki.api_document"
_PROBLEM: Final = {"application/problem+json": {"schema": {"$ref":
                                                           "#/components/schemas/Problem"}}}
_DESCRIPTION: Final = """\
The registration authority of govpki over HTTP: organisations, officials, certificate
requests and their approval, certificates, operators and API tokens, the audit log, and USB-key
enrollment. Everything the RA web pages do, as JSON. Other parts of govpki serve their
endpoints through the same table, authentication and error handling (e.g. signing and
verifying PDF documents, tag `signing`).

* Authentication: `Authorization: Bearer <API token>` (RFC 6750), the token acting as one
  operator with that operator's roles; enrollment calls use the one-time enrollment code alone.
* Authorisation is decided by the RA's one decision point from policies/authz.yaml; a refusal
  is 403 and is recorded in the audit log.
* Errors are RFC 9457 problem details (`application/problem+json`); validation problems name
  the input at fault in `field`. An unknown path is 404 and a method the path does not take
  405 (with `Allow`), both as problem bodies.
* Lists are paged with `page` and `per_page`; the body carries `total` and `pages`, the `Link`
  header (RFC 8288) the first, previous, next and last pages.
* Bodies larger than `[ra] max_body_bytes` (default 1 MiB; rosters 8 MiB; documents as the
  endpoint says) are refused with 413, bodies in another media type than the endpoint reads
  with 415. A document upload must carry `Content-Length` (411 otherwise).
"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(status: int) -> dict[str, Any]:
    out: dict[str, Any] = {"description": HTTPStatus(status).phrase, "content": _PROBLEM}
    if status == 411:
        out["description"] = "Length Required: send the document with a Content-Length"
    if status == 401:
        out["headers"] = {"WWW-Authenticate": {
            "description": "The challenge: Bearer (RFC 6750) or Enrollment.",
            "schema": {"type": "string"}}}
    return out


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary,
                          "tags": [route.tag]}
    if route.description:
        op["description"] = " ".join(route.description.split())
    op["security"] = {"bearer": [{"bearerToken": []}],
                      "enrollment": [{"enrollmentCode": []}], "none": []}[route.auth]
    if route.params:
        op["parameters"] = [{"name": p.name, "in": p.location, "required": p.is_required,
                             "description": p.description, "schema": p.schema()}
                            for p in route.params]
    if route.body is not None:
        op["requestBody"] = {"required": not route.body.optional, "content": {
            "application/json": {"schema": _ref(route.body.name)}}}
    elif route.csv_body:
        op["requestBody"] = {"required": True, "content": {
            "text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "contentMediaType": "text/csv"}}}}}}
    elif route.binary_body is not None:
        op["requestBody"] = {
            "required": True,
            "description": f"{route.binary_body.description} At most {route.max_body} bytes, "
                           f"with Content-Length.",
            "content": {media: {"schema": {"type": "string", "contentMediaType": media}}
                        for media in route.binary_body.media_types}}
    responses: dict[str, Any] = {}
    for status, schema in route.responses.items():
        answer: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if isinstance(schema, BinaryContent):
            if schema.description:
                answer["description"] = schema.description
            answer["content"] = {schema.media_type: {"schema": {
                "type": "string", "contentMediaType": schema.media_type}}}
        elif schema is not None:
            answer["content"] = {"application/json": {"schema": _ref(schema)}}
        headers: dict[str, Any] = {}
        if status < 300:
            for name, description in route.response_headers.items():
                headers[name] = {"description": description, "schema": {"type": "string"}}
        if route.paginated:
            headers["Link"] = {"description": "RFC 8288 links: first, prev, next, last",
                               "schema": {"type": "string"}}
        if status in (201, 202):
            headers["Location"] = {"description": "Where the new resource is",
                                   "schema": {"type": "string"}}
        if headers:
            answer["headers"] = headers
        responses[str(status)] = answer
    problems = {400, *route.errors}
    if route.auth != "none":
        problems.add(401)
    if route.auth == "bearer":
        problems.add(403)
    if route.body is not None or route.csv_body:
        problems.update((413, 415))
    if route.binary_body is not None:
        problems.update((411, 413, 415))
    for status in sorted(problems):
        responses[str(status)] = _problem(status)
    responses["default"] = {"description": "Any other problem: 503 while the CA is not "
                                           "initialised, 500 when a key store or the database "
                                           "fails (the server's log has the details)",
                            "content": _PROBLEM}
    op["responses"] = responses
    return op


def check_schema_names(group: RouteGroup) -> None:
    """A contributed group may not redefine a schema ra defines (its document would lie)."""
    ours = {*serialise.SCHEMAS, *serialise.envelope_schemas(), "Problem"}
    ours.update(r.body.name for r in route_groups()[0].routes if r.body is not None)
    clash = sorted(ours & (set(group.schemas) | {r.body.name for r in group.routes
                                                   if r.body is not None}))
    if clash:
        raise ValueError(f"route group {group.name!r}: schema(s) {', '.join(clash)} are ra's "
                         f"own")


#: Documents by table; each entry keeps its groups alive, so no id in a key is reused.
_DOCUMENTS: dict[tuple[int, ...], tuple[tuple[RouteGroup, ...], dict[str, Any]]] = {}


def document(groups: Sequence[RouteGroup] | None = None) -> dict[str, Any]:
    """The document of ``groups`` (default: the RA's routes and every group registered now).
    Built once per distinct table: the routes of a group do not change once registered."""
    groups = tuple(groups if groups is not None else route_groups())
    key = tuple(x for g in groups for x in (id(g), len(g.routes), len(g.schemas)))
    if key not in _DOCUMENTS:
        _DOCUMENTS[key] = (groups, _build(groups))
    return _DOCUMENTS[key][1]


def served_document() -> dict[str, Any]:
    """The document of the application answering this request (what it serves)."""
    doc = current_app.extensions.get(APP_KEY)
    return doc if doc is not None else document()


def _build(groups: Sequence[RouteGroup]) -> dict[str, Any]:
    routes = [r for g in groups for r in g.routes]
    paths: dict[str, dict[str, Any]] = {}
    bodies: dict[str, Any] = {}
    contributed: dict[str, Any] = {}
    for group in groups:
        contributed.update(group.schemas)
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
        if route.body is not None:
            bodies[route.body.name] = route.body.schema()
    tags = list(dict.fromkeys(r.tag for r in routes))
    return {
        "openapi": "3.1.0",
        "info": {"title": "govpki registration authority API", "version": VERSION,
                 "description": _DESCRIPTION},
        "servers": [{"url": "/api/v1"}],
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "schemas": {**serialise.SCHEMAS, **serialise.envelope_schemas(), **bodies,
                        **contributed},
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "gp_...",
                                "description": "An API token (`govpki ra api-token create`, "
                                               "or POST /operators/{username}/tokens)."},
                "enrollmentCode": {"type": "http", "scheme": "Enrollment",
                                   "description": "`Authorization: Enrollment <code>`: the "
                                                  "one-time code that opened the request."}}},
    }


@api_route("GET", "/openapi.json", operation_id="openApiDocument",
           summary="This API's OpenAPI 3.1 document", tag="meta", auth="none",
           responses={200: "OpenApiDocument"})
def openapi_json(call: Call) -> Reply:
    """The OpenAPI document (no authentication)."""
    return Reply(served_document(), headers={"Cache-Control": "public, max-age=3600"})
