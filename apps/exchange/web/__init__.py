"""The exchange's web pages (公文交换), mounted at /exchange: inbox, outbox, compose, a
received document with its seal verification, business receipts, tracking and search.

Server-rendered Flask + Jinja2, Simplified Chinese first, no external assets, the RA pages'
security headers. Logging in is single sign-on: the pages are an OpenID Connect client of
govpki's provider (oidc.py; the composition root gives them the issuer and registers the
client), and their sessions (sessions.py, one table of their own) end with the provider's
back-channel logout. The acting account is the RA operator the ID token names: its roles and
organisation authorise every action through apps.exchange.service, which the views call for
everything they show or do. docs/exchange.md, "Web pages".

Modules: base (blueprint, session, headers, errors), oidc (the relying party), sessions and
models (page sessions), auth_views (login, callback, logout), views (the pages), forms (the
compose form), i18n (the string catalogue).
"""

from apps.exchange.web import auth_views, views  # noqa: F401 (importing registers the routes)
from apps.exchange.web.base import POLICY_KEY, RP_KEY
from apps.exchange.web.base import bp as exchange_web_blueprint
from apps.exchange.web.oidc import ClientUris, RelyingParty

#: The client id the pages use at the provider (one registration per installation).
CLIENT_ID = "govpki-exchange"
CLIENT_NAME = "公文交换系统"

__all__ = ["CLIENT_ID", "CLIENT_NAME", "POLICY_KEY", "RP_KEY", "ClientUris", "RelyingParty",
           "exchange_web_blueprint"]
