"""The client registry: office applications a ca-admin registers (`govpki sso client add`,
the /sso/admin/clients page).

Redirect URIs are compared exactly, character for character (OAuth 2.0 Security BCP, RFC 9700
§4.1.3): no prefix, wildcard or normalisation, so an open redirector on a registered host
cannot receive codes. A registered URI must be absolute http(s) without a fragment (RFC 6749
§3.1.2); plain http is accepted because the government network terminates TLS at its own
proxies, and loopback clients (RFC 8252 §7.3) use it too.

A confidential client gets a 256-bit secret, shown once and stored as its SHA-256; a public
client (``--public``) has none and authenticates with PKCE alone. Every client must use PKCE
S256 anyway (provider.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from apps.sso import models
from apps.sso.errors import ClientRefused, NotAllowed, UnknownClient
from core import audit
from core.db import transaction, utcnow
from ra.records import Operator

ADMIN_ROLE: Final = "ca-admin"
DEFAULT_SCOPE: Final = "openid profile organisation roles certificate"
MAX_URI: Final = 512
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,63}")


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RegisteredClient:
    """A client as authlib's ClientMixin wants it (duck-typed), and as pages show it."""

    client_id: str
    name: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    backchannel_logout_uri: str | None
    initiate_login_uri: str | None
    scope: str
    active: bool
    created_by: str
    created_at: dt.datetime
    client_metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def public(self) -> bool:
        return self.secret_hash is None

    @property
    def token_endpoint_auth_method(self) -> str:
        return "none" if self.public else "client_secret_basic"

    # -- authlib ClientMixin --------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC Core §3.1.2.1: redirect_uri is REQUIRED; no default is ever chosen for a client.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None or not isinstance(client_secret, str):
            return False
        return hmac.compare_digest(hash_secret(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


def _record(row: models.Client) -> RegisteredClient:
    post_logout = tuple(json.loads(row.post_logout_redirect_uris or "[]"))
    return RegisteredClient(
        client_id=row.client_id, name=row.name, secret_hash=row.secret_hash,
        redirect_uris=tuple(json.loads(row.redirect_uris)),
        post_logout_redirect_uris=post_logout,
        backchannel_logout_uri=row.backchannel_logout_uri,
        initiate_login_uri=row.initiate_login_uri, scope=row.scope, active=row.active,
        created_by=row.created_by, created_at=row.created_at,
        client_metadata={"post_logout_redirect_uris": list(post_logout),
                         "backchannel_logout_uri": row.backchannel_logout_uri,
                         "backchannel_logout_session_required": True})


def check_uri(value: str, field_name: str) -> str:
    """An absolute http(s) URI without fragment or user info, at most 512 characters."""
    value = value.strip()
    if not value or len(value) > MAX_URI or any(ord(c) <= 32 or ord(c) == 127 for c in value):
        raise ClientRefused(f"{field_name} must be 1-{MAX_URI} characters without spaces",
                            field=field_name)
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ClientRefused(f"{field_name} {value!r} is not a URI", field=field_name) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientRefused(f"{field_name} {value!r} must be an absolute http(s) URI",
                            field=field_name)
    if parts.fragment or "#" in value:
        raise ClientRefused(f"{field_name} {value!r} must not have a fragment (RFC 6749 "
                            "§3.1.2)", field=field_name)
    if parts.username or parts.password:
        raise ClientRefused(f"{field_name} {value!r} must not carry user information",
                            field=field_name)
    return value


def require_admin(sessions: sessionmaker[Session], actor: Operator, action: str,
                  object_id: str) -> None:
    """Managing clients is system administration: a ca-admin's (refusals are audited)."""
    if actor.active and ADMIN_ROLE in actor.roles:
        return
    audit.record_refusal(sessions, actor=actor.username, action=action,
                         object_type="sso-client", object_id=object_id,
                         details={"error": "forbidden", "roles": sorted(actor.roles)})
    raise NotAllowed(f"forbidden: managing SSO clients needs the {ADMIN_ROLE} role")


def add_client(sessions: sessionmaker[Session], actor: Operator | str, name: str, *,
               redirect_uris: Sequence[str], post_logout_redirect_uris: Sequence[str] = (),
               backchannel_logout_uri: str | None = None,
               initiate_login_uri: str | None = None, public: bool = False,
               client_id: str | None = None, scope: str = DEFAULT_SCOPE
               ) -> tuple[RegisteredClient, str | None]:
    """Register a client; returns it and its secret (None for a public client). Show the
    secret once: only its hash is kept. ``actor`` a plain string is the composition root
    registering its own client (the RA pages)."""
    by = actor if isinstance(actor, str) else actor.username
    if not isinstance(actor, str):
        require_admin(sessions, actor, "sso.client.add", client_id or name)
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise ClientRefused("name must be 1-64 printable characters", field="name")
    if not redirect_uris:
        raise ClientRefused("a client needs at least one redirect URI", field="redirect_uri")
    redirects = [check_uri(u, "redirect_uri") for u in redirect_uris]
    post_logout = [check_uri(u, "post_logout_redirect_uri") for u in post_logout_redirect_uris]
    backchannel = check_uri(backchannel_logout_uri, "backchannel_logout_uri") \
        if backchannel_logout_uri else None
    initiate = check_uri(initiate_login_uri, "initiate_login_uri") \
        if initiate_login_uri else None
    client_id = client_id or f"app-{secrets.token_hex(8)}"
    if not _CLIENT_ID.fullmatch(client_id):
        raise ClientRefused("client id must be 3-64 letters, digits, '.', '_' or '-'",
                            field="client_id")
    unknown = set(scope.split()) - set(DEFAULT_SCOPE.split())
    if "openid" not in scope.split() or unknown:
        raise ClientRefused(f"scope must include openid and only {DEFAULT_SCOPE}",
                            field="scope")
    secret = None if public else secrets.token_urlsafe(32)
    with transaction(sessions) as session:
        if session.scalar(select(models.Client.id).where(
                models.Client.client_id == client_id)) is not None:
            raise ClientRefused(f"client {client_id!r} is already registered",
                                field="client_id")
        row = models.Client(client_id=client_id, name=name,
                            secret_hash=hash_secret(secret) if secret else None,
                            redirect_uris=json.dumps(redirects),
                            post_logout_redirect_uris=json.dumps(post_logout),
                            backchannel_logout_uri=backchannel, initiate_login_uri=initiate,
                            scope=" ".join(scope.split()), active=True, created_by=by,
                            created_at=utcnow())
        session.add(row)
        session.flush()
        audit.record_event(session, actor=by, action="sso.client.add",
                           object_type="sso-client", object_id=client_id, outcome="success",
                           details={"name": name, "redirect_uris": redirects,
                                    "backchannel_logout_uri": backchannel,
                                    "public": public})
        return _record(row), secret


def set_uris(sessions: sessionmaker[Session], by: str, client_id: str, *,
             redirect_uris: Sequence[str], post_logout_redirect_uris: Sequence[str],
             backchannel_logout_uri: str | None, initiate_login_uri: str | None
             ) -> RegisteredClient:
    """Replace a client's URIs: for the composition root's own client (the RA pages), whose
    URIs follow the issuer; audited like a registration."""
    redirects = [check_uri(u, "redirect_uri") for u in redirect_uris]
    post_logout = [check_uri(u, "post_logout_redirect_uri") for u in post_logout_redirect_uris]
    backchannel = check_uri(backchannel_logout_uri, "backchannel_logout_uri") \
        if backchannel_logout_uri else None
    initiate = check_uri(initiate_login_uri, "initiate_login_uri") \
        if initiate_login_uri else None
    with transaction(sessions) as session:
        row = session.scalar(select(models.Client).where(models.Client.client_id == client_id)
                             .with_for_update())
        if row is None:
            raise UnknownClient(f"no client {client_id!r}")
        row.redirect_uris, row.post_logout_redirect_uris = (json.dumps(redirects),
                                                            json.dumps(post_logout))
        row.backchannel_logout_uri, row.initiate_login_uri = backchannel, initiate
        audit.record_event(session, actor=by, action="sso.client.update",
                           object_type="sso-client", object_id=client_id, outcome="success",
                           details={"redirect_uris": redirects,
                                    "backchannel_logout_uri": backchannel})
        return _record(row)


def get_client(sessions: sessionmaker[Session], client_id: str) -> RegisteredClient | None:
    """The active client with this id, or None."""
    if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
        return None
    with transaction(sessions) as session:
        row = session.scalar(select(models.Client).where(models.Client.client_id == client_id,
                                                         models.Client.active.is_(True)))
        return _record(row) if row is not None else None


def list_clients(sessions: sessionmaker[Session], *, include_inactive: bool = False
                 ) -> list[RegisteredClient]:
    with transaction(sessions) as session:
        query = select(models.Client).order_by(models.Client.name)
        if not include_inactive:
            query = query.where(models.Client.active.is_(True))
        return [_record(r) for r in session.scalars(query)]


def set_active(sessions: sessionmaker[Session], actor: Operator, client_id: str,
               active: bool) -> RegisteredClient:
    require_admin(sessions, actor, "sso.client.disable", client_id)
    with transaction(sessions) as session:
        row = session.scalar(select(models.Client).where(models.Client.client_id == client_id))
        if row is None:
            raise UnknownClient(f"no client {client_id!r}")
        row.active = active
        audit.record_event(session, actor=actor.username,
                           action="sso.client.enable" if active else "sso.client.disable",
                           object_type="sso-client", object_id=client_id, outcome="success")
        return _record(row)
