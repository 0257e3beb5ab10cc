"""Single sign-on (统一身份认证): an OpenID Connect provider with certificate login.

Modules: config ([sso] table), errors, models (tables) and migrations (alembic branch "sso"),
keys (ID-token keys in govpki's key store, JWS over hsm's Signer, rotation), clients (client
registry), cert_login (certificate login methods for ra.authn: RFC 9440 header from a trusted
proxy, signed challenge), sessions (the provider's own server-side sessions with their sid),
provider (authlib AuthorizationServer wiring, back-channel logout), views (the blueprint:
OIDC endpoints and login pages), portal (office portal, client administration page), i18n
(page texts), ra_client (the RA web pages as an OIDC client), cli (`govpki sso ...`). The
official's side of certificate login is hsm/challenge.py (`govpki token sign-challenge`).
docs/sso.md.
"""

from pathlib import Path

MIGRATIONS = str(Path(__file__).parent / "migrations")


def version_locations() -> list[str]:
    """sso's migration directory, to append to ``ca.context.version_locations()``."""
    return [MIGRATIONS]
