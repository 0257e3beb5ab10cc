"""The RA's web pages for operators (注册审核机构), mounted at /ra.

Server-rendered Flask + Jinja2, Simplified Chinese first, no external assets (the government
network is isolated). The views are thin: who may do what is decided by the ra services they
call (ra.authz.authorize, audited); a view only hides links the operator could not follow
(ra.authz.permits). Logging in goes through ra.authn's one interface, so certificate login
(the SSO issue) adds a login method, not a view.

Modules: base (blueprint, session, headers, error page), csrf, i18n (the string catalogue),
queries (reads no service offers), and one module of views per area.
"""

from ra.web import (  # noqa: F401 (importing a view module registers its routes)
    auth_views,
    certificate_views,
    expiring_views,
    official_views,
    pages,
    request_views,
)
from ra.web.base import bp as ra_web_blueprint

__all__ = ["ra_web_blueprint"]
