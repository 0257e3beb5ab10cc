"""The REST API at /api/v1: everything the RA web pages do, as JSON (docs/api.md), and the
endpoints other parts of govpki serve through the same table.

One route table (:mod:`ra.api.spec`) declares every endpoint; :func:`api_blueprint` registers
each on a blueprint from it, and :mod:`ra.api.openapi` writes the OpenAPI 3.1 document from
the same table. Views are thin: they call ra's services, which authorise through ra.authz (the
one decision point) and audit; errors are GovpkiError subclasses rendered as RFC 9457 problem
bodies by the application's handler. Modules: spec (route table, input specs), http (request
handling), auth (bearer token, enrollment code), serialise (records → JSON + schemas), queries
(reads no service offers), and one module of views per area.

Packages above ra (govpki, apps/*) contribute endpoints without ra importing them: they
declare a :class:`RouteGroup` and the composition root calls :func:`register_routes` with it
before assembling the application (docs/api.md, "Endpoints of other packages").
"""

from flask import Blueprint

from ra.api import (  # noqa: F401 (importing a view module declares its routes)
    audit,
    certificates,
    enrollment,
    officials,
    openapi,
    operators,
    orgs,
    requests,
)
from ra.api import spec as _spec
from ra.api.http import API_PREFIX, Call, Reply, install_hooks, make_view
from ra.api.spec import (
    BinaryBody,
    BinaryContent,
    Body,
    Field,
    Param,
    RouteGroup,
    all_routes,
    route_groups,
    unregister_routes,
)


def register_routes(group: RouteGroup) -> None:
    """Serve ``group`` under /api/v1 in every application assembled from now on (see
    :func:`ra.api.spec.register_routes`); its schemas may not redefine ra's."""
    openapi.check_schema_names(group)
    _spec.register_routes(group)


def api_blueprint() -> Blueprint:
    """A blueprint serving every endpoint of the table as it is now: the RA's and the
    registered groups'. Built per application, so each keeps the routes — and the OpenAPI
    document — it was assembled with."""
    groups = route_groups()
    routes = all_routes()
    bp = Blueprint("ra_api", __name__, url_prefix=API_PREFIX)
    for route in routes:
        bp.add_url_rule(route.flask_rule, endpoint=route.operation_id,
                        view_func=make_view(route), methods=[route.method])
    install_hooks(bp, {f"ra_api.{r.operation_id}": r for r in routes})
    doc = openapi.document(groups)
    bp.record_once(lambda state: state.app.extensions.__setitem__(openapi.APP_KEY, doc))
    return bp


__all__ = ["BinaryBody", "BinaryContent", "Body", "Call", "Field", "Param", "Reply",
           "RouteGroup", "api_blueprint", "register_routes", "unregister_routes"]
