"""The exchange pages (apps/exchange/web) in the one-application deployment: an OpenID
Connect client of the SSO provider mounted beside them.

The pages import nothing of apps/sso (siblings); this composition root tells them where the
provider is (``[sso] issuer``, else the public base URL — the same address the RA's client
uses) and registers their client there: a public client (PKCE only) whose URIs follow the
issuer, made by `govpki init` and again on first use, updated when the issuer moves (as the
RA's own client is, apps/sso/ra_client.py).
"""

from __future__ import annotations

from functools import partial

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from apps.exchange.web import (
    CLIENT_ID,
    CLIENT_NAME,
    RP_KEY,
    ClientUris,
    RelyingParty,
    exchange_web_blueprint,
)
from apps.sso import clients
from apps.sso.config import SsoConfig, sso_config_from
from ca.context import CaContext
from core.errors import GovpkiError


def register_exchange_client(sessions: sessionmaker[Session], uris: ClientUris) -> None:
    """Make sure the provider knows the exchange pages' client with exactly these URIs
    (idempotent; two nodes registering at once end with one registration)."""
    wanted = {"redirect_uris": [uris.redirect_uri],
              "post_logout_redirect_uris": [uris.post_logout_redirect_uri],
              "backchannel_logout_uri": uris.backchannel_logout_uri,
              "initiate_login_uri": uris.initiate_login_uri}
    found = clients.get_client(sessions, CLIENT_ID)
    if found is None:
        try:
            clients.add_client(sessions, "system", CLIENT_NAME, client_id=CLIENT_ID,
                               public=True, **wanted)  # type: ignore[arg-type]
            return
        except GovpkiError:
            found = clients.get_client(sessions, CLIENT_ID)  # another node was first
            if found is None:
                raise
    if (list(found.redirect_uris), list(found.post_logout_redirect_uris),
            found.backchannel_logout_uri, found.initiate_login_uri) != tuple(wanted.values()):
        clients.set_uris(sessions, "system", CLIENT_ID, **wanted)  # type: ignore[arg-type]


def relying_party(ctx: CaContext, sso: SsoConfig) -> RelyingParty:
    issuer = (sso.issuer or ctx.config.public_base_url).rstrip("/")
    return RelyingParty(issuer=issuer, client_id=CLIENT_ID, base_url=issuer,
                        register=partial(register_exchange_client, ctx.sessions))


def mount_exchange_web(app: Flask, ctx: CaContext) -> None:
    """Register the pages at /exchange; their provider is read when a login starts (the
    [sso] settings may be replaced once the server listens, as tests do)."""

    def current() -> RelyingParty:
        sso = app.config.get("GOVPKI_SSO_CONFIG")
        if not isinstance(sso, SsoConfig):
            sso = sso_config_from(ctx.config.sections)
        return relying_party(ctx, sso)

    app.config[RP_KEY] = current
    app.register_blueprint(exchange_web_blueprint)


def register_at_init(ctx: CaContext) -> str:
    """`govpki init`: the exchange pages' client, so the provider lists it from the start."""
    rp = relying_party(ctx, sso_config_from(ctx.config.sections))
    register_exchange_client(ctx.sessions, rp.uris)
    return rp.uris.redirect_uri
