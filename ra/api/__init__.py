"""The RA's REST API at /api/v1: everything the RA web pages do, as JSON (docs/api.md).

One route table (:mod:`ra.api.spec`) declares every endpoint; this package registers each on
``ra_api_blueprint`` from it, and :mod:`ra.api.openapi` writes the OpenAPI 3.1 document from
the same table. Views are thin: they call ra's services, which authorise through ra.authz (the
one decision point) and audit; errors are GovpkiError subclasses rendered as RFC 9457 problem
bodies by the application's handler. Modules: spec (route table, input specs), http (request
handling), auth (bearer token, enrollment code), serialise (records → JSON + schemas), queries
(reads no service offers), and one module of views per area.
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
from ra.api.http import API_PREFIX, install_hooks, make_view
from ra.api.spec import ROUTES

ra_api_blueprint = Blueprint("ra_api", __name__, url_prefix=API_PREFIX)
for _route in ROUTES:
    ra_api_blueprint.add_url_rule(_route.flask_rule, endpoint=_route.operation_id,
                                  view_func=make_view(_route), methods=[_route.method])
install_hooks(ra_api_blueprint, {f"ra_api.{r.operation_id}": r for r in ROUTES})

__all__ = ["ra_api_blueprint"]
