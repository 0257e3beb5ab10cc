"""The OpenID Connect provider: authlib's AuthorizationServer wired to govpki's tables, keys,
sessions and audit log, plus Back-Channel Logout (which authlib lacks).

What authlib does and what is ours:

* authlib: the authorization and token endpoints' request validation and error responses
  (RFC 6749 §4.1, §5.2), client authentication, PKCE (RFC 7636) through ``CodeChallenge``
  (narrowed here to S256 and made mandatory for every client), OpenID Connect's code flow
  (``OpenIDCode``: nonce replay, prompt), the UserInfo endpoint and RP-Initiated Logout's
  request validation (``EndSessionEndpoint``).
* ours: storage (apps/sso/models.py, codes and tokens hashed), the ID token itself (built
  here and signed by apps/sso/keys.py through hsm's Signer, never by a key authlib holds),
  ``acr``/``amr``/``sid`` claims, code replay (a second exchange revokes what the first
  issued, RFC 6749 §4.1.2), the claims a government application needs (name, organisation,
  position, roles, certificate serial) and OpenID Connect Back-Channel Logout 1.0 (logout
  tokens with ``sid``, ``sub`` and the ``events`` claim, never a ``nonce``, POSTed to each
  client's ``backchannel_logout_uri`` through a retried outbox: apps/sso/backchannel.py).

The provider is callable without a web framework apart from authlib's Flask request
adapter; apps/sso/views.py is the thin edge.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector  # type: ignore[import-untyped]
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Request, grants  # type: ignore[import-untyped]
from authlib.oauth2.rfc6750 import BearerTokenValidator  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import CodeChallenge  # type: ignore[import-untyped]
from authlib.oidc.core import OpenIDCode, UserInfo, UserInfoEndpoint  # type: ignore[import-untyped]
from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest  # type: ignore[import-untyped]
from flask import g as flask_g
from flask import request as flask_request
from sqlalchemy import select, update

from apps.sso import backchannel, clients, models, sessions
from apps.sso.cert_login import ACR_CERTIFICATE, ACR_PASSWORD
from apps.sso.config import SsoConfig
from apps.sso.keys import TokenKeys, b64url
from apps.sso.sessions import ProviderSession
from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow
from ra.errors import NotFound
from ra.officials import load_official

SCOPES: Final = ("openid", "profile", "organisation", "roles", "certificate")
#: Which claims each scope releases (OIDC Core §5.4 for profile; the rest are govpki's).
SCOPE_CLAIMS: Final = {
    "profile": ("name", "preferred_username", "locale"),
    "organisation": ("organisation", "position", "unit"),
    "roles": ("roles",),
    "certificate": ("cert_serial", "cert_ca"),
}
ACR_VALUES: Final = (ACR_CERTIFICATE, ACR_PASSWORD)
BACKCHANNEL_EVENT: Final = backchannel.BACKCHANNEL_EVENT
MAX_CLAIMS_PARAMETER: Final = 4096


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def subject(session: ProviderSession) -> str:
    """``sub``: the RA account name, unique and never reassigned (accounts are deactivated,
    not deleted or renamed)."""
    return session.operator.username


@dataclass(frozen=True)
class SsoUser:
    """The "user" authlib passes around: the provider session that proved it."""

    session: ProviderSession

    def get_user_id(self) -> str:
        return subject(self.session)


@dataclass(frozen=True)
class StoredCode:
    """An authorization code as authlib's AuthorizationCodeMixin wants it."""

    id: int
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    session_id: int
    claims_request: str
    created_at: dt.datetime

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> None:
        return None  # taken from the session, which knows it exactly

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass(frozen=True)
class StoredToken:
    """An access token as authlib's TokenMixin wants it (for UserInfo)."""

    client: clients.RegisteredClient
    scope: str
    expires_at: dt.datetime
    revoked: bool
    user: SsoUser | None

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, int((self.expires_at - utcnow()).total_seconds()))

    def is_expired(self) -> bool:
        return utcnow() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked or self.user is None

    def get_user(self) -> SsoUser | None:
        return self.user

    def get_client(self) -> clients.RegisteredClient:
        return self.client


def requested_acr(data: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The acr values a request asks for and whether they are essential: ``acr_values``
    (OIDC Core §3.1.2.1, voluntary) or ``claims`` → id_token → acr (§5.5.1.1)."""
    values = [v for v in str(data.get("acr_values") or "").split() if v]
    essential = False
    raw = data.get("claims")
    if raw:
        if len(str(raw)) > MAX_CLAIMS_PARAMETER:
            raise InvalidRequestError("the 'claims' parameter is too long")
        try:
            parsed = json.loads(str(raw))
        except ValueError:
            raise InvalidRequestError("the 'claims' parameter is not JSON") from None
        acr = parsed.get("id_token", {}).get("acr") if isinstance(parsed, dict) \
            and isinstance(parsed.get("id_token"), dict) else None
        if isinstance(acr, dict):
            essential = acr.get("essential") is True
            if isinstance(acr.get("value"), str):
                values = [acr["value"]]
            elif isinstance(acr.get("values"), list):
                values = [v for v in acr["values"] if isinstance(v, str)]
    return values, essential


class S256Only(CodeChallenge):
    """PKCE, S256 only, for every client (RFC 9700 §2.1.1: plain is refused)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 (authlib's class attribute)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("'code_challenge' is required (PKCE, RFC 7636, S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256 (plain is not "
                                      "accepted)")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012
    AUTHORIZATION_CODE_LENGTH = 43

    @property
    def provider(self) -> Provider:
        return self.server

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        self.provider.save_code(code, request)

    def query_authorization_code(self, code: str, client: Any) -> StoredCode | None:
        return self.provider.redeem_code(code, client)

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        pass  # redeem_code marked it used: a second exchange is a replay, not "unknown"

    def authenticate_user(self, authorization_code: StoredCode) -> SsoUser | None:
        return self.provider.user_for_code(authorization_code)


class IdTokens(OpenIDCode):
    """OpenID Connect on the code grant; the ID token is built and signed by us."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return self.provider.nonce_seen(request.payload.client_id, nonce)

    def generate_user_info(self, user: SsoUser, scope: str) -> UserInfo:
        return self.provider.user_info(user.session, scope)

    def encode_id_token(self, token: Mapping[str, Any], request: OAuth2Request) -> str:
        code: StoredCode = request.authorization_code
        user: SsoUser = request.user
        return self.provider.id_token(user.session, request.client, code,
                                      str(token.get("access_token") or ""), str(token["scope"]))


class AccessTokens(BearerTokenValidator):
    def __init__(self, provider: Provider) -> None:
        super().__init__()
        self.provider = provider

    def authenticate_token(self, token_string: str) -> StoredToken | None:
        return self.provider.find_token(token_string)


class UserInfoPoint(UserInfoEndpoint):
    def generate_user_info(self, user: SsoUser, scope: str) -> UserInfo:
        return self.server.user_info(user.session, scope)

    def get_issuer(self) -> str:
        return self.server.issuer


class EndSession(EndSessionEndpoint):
    """RP-Initiated Logout 1.0 request validation; ending is the provider's."""

    def get_server_jwks(self) -> dict[str, Any]:
        return self.server.keys.jwks()

    def get_algorithms(self) -> list[str]:
        return ["ES256"]

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        self.server.end_for_request(end_session_request)

    def is_post_logout_redirect_uri_legitimate(self, request: OAuth2Request,
                                               post_logout_redirect_uri: str, client: Any,
                                               logout_hint: str | None) -> bool:
        """§3: without an ID token hint, redirect only where the OP knows the target to be
        legitimate: the RA pages' own client, whose URIs the provider derived from its issuer
        (apps/sso/ra_client.py). The URI was already checked to be registered exactly."""
        return bool(client is not None
                    and client.get_client_id() == self.server.config.ra_client_id)


class _IssuerRequest(FlaskOAuth2Request):
    """authlib's Flask request, with the URI spelt from the issuer: behind the TLS proxy the
    WSGI request is plain http, but what clients use (and authlib checks) is the issuer."""

    def __init__(self, issuer: str) -> None:
        req = flask_request
        OAuth2Request.__init__(self, req.method, issuer + req.full_path.rstrip("?"),
                               headers=req.headers)
        self._request = req
        self.payload = FlaskOAuth2Payload(req)


class Provider(AuthorizationServer):
    """One per application (it holds the CA context, the [sso] settings and the keys)."""

    def __init__(self, ctx: CaContext, config: SsoConfig) -> None:
        super().__init__()
        self.ctx = ctx
        self.config = config
        self.issuer = config.issuer_for(ctx.config.public_base_url)
        self.keys = TokenKeys(ctx)
        self.deliverer = backchannel.Deliverer(ctx, config, self.keys, self.issuer)
        self.load_config({
            "OAUTH2_SCOPES_SUPPORTED": list(SCOPES),
            "OAUTH2_TOKEN_EXPIRES_IN": {"authorization_code": config.access_token_seconds},
        })
        self._query_client = self._client
        self._save_token = self._store_token
        self.register_grant(CodeGrant, [S256Only(required=True), IdTokens(self)])
        protector = ResourceProtector()
        protector.register_token_validator(AccessTokens(self))
        self.register_endpoint(UserInfoPoint(resource_protector=protector))
        self.register_endpoint(EndSession)

    # -- authlib hooks ----------------------------------------------------------------------

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return _IssuerRequest(self.issuer)

    def _client(self, client_id: str) -> clients.RegisteredClient | None:
        return clients.get_client(self.ctx.sessions, client_id)

    def save_code(self, code: str, request: OAuth2Request) -> None:
        user: SsoUser = request.user
        data = request.payload.data
        now = utcnow()
        with transaction(self.ctx.sessions) as session:
            session.add(models.AuthorizationCode(
                code_hash=_hash(code), client_id=request.client.client_id,
                session_id=user.session.id, redirect_uri=request.payload.redirect_uri,
                scope=request.scope or "", nonce=data.get("nonce") or None,
                code_challenge=data["code_challenge"],
                code_challenge_method=data.get("code_challenge_method") or "S256",
                claims_request=str(data.get("claims") or "")[:MAX_CLAIMS_PARAMETER],
                created_at=now, expires_at=now + dt.timedelta(seconds=self.config.code_seconds)))
        sessions.add_client(self.ctx, user.session.id, request.client.client_id)

    def redeem_code(self, code: str, client: Any) -> StoredCode | None:
        """The code's record, marked used in the same statement that finds it unused; a code
        seen before is a replay: refused, its tokens revoked, audited."""
        if not isinstance(code, str) or len(code) > 128:
            return None
        now = utcnow()
        problem: str | None
        with transaction(self.ctx.sessions) as session:
            row = session.scalar(select(models.AuthorizationCode).where(
                models.AuthorizationCode.code_hash == _hash(code)))
            if row is None:
                problem = "unknown"
            elif row.client_id != client.client_id:
                problem = "other-client"
            elif row.used_at is not None:
                problem = "replayed"
            elif now > row.expires_at:
                problem = "expired"
            else:
                claimed = session.execute(update(models.AuthorizationCode).where(
                    models.AuthorizationCode.id == row.id,
                    models.AuthorizationCode.used_at.is_(None)).values(used_at=now))
                problem = None if getattr(claimed, "rowcount", 1) == 1 else "replayed"
            if problem == "replayed" and row is not None:
                session.execute(update(models.AccessToken).where(
                    models.AccessToken.code_id == row.id,
                    models.AccessToken.revoked_at.is_(None)).values(revoked_at=now))
            stored = None if row is None or problem else StoredCode(
                row.id, row.client_id, row.redirect_uri, row.scope, row.nonce,
                row.code_challenge, row.code_challenge_method, row.session_id,
                row.claims_request, row.created_at)
        if problem is not None:
            self.refuse("sso.token", client.client_id, problem,
                        {"code": row.id if row is not None else None})
        return stored

    def user_for_code(self, code: StoredCode) -> SsoUser | None:
        with transaction(self.ctx.sessions) as session:
            row = session.get(models.ProviderSession, code.session_id)
            sid = row.sid if row is not None else ""
        live = sessions.live_by_sid(self.ctx, self.config, sid) if sid else None
        if live is None:
            self.refuse("sso.token", code.client_id, "session-ended", {"code": code.id})
            return None
        return SsoUser(live)

    def nonce_seen(self, client_id: str | None, nonce: str) -> bool:
        with transaction(self.ctx.sessions) as session:
            return session.scalar(select(models.AuthorizationCode.id).where(
                models.AuthorizationCode.client_id == (client_id or ""),
                models.AuthorizationCode.nonce == nonce).limit(1)) is not None

    def _store_token(self, token: Mapping[str, Any], request: OAuth2Request) -> None:
        user: SsoUser = request.user
        code: StoredCode | None = request.authorization_code
        now = utcnow()
        with transaction(self.ctx.sessions) as session:
            session.add(models.AccessToken(
                token_hash=_hash(str(token["access_token"])), client_id=request.client.client_id,
                session_id=user.session.id, code_id=code.id if code else None,
                scope=str(token.get("scope") or ""), issued_at=now,
                expires_at=now + dt.timedelta(seconds=int(token.get("expires_in") or 0))))

    def find_token(self, token_string: str) -> StoredToken | None:
        if not isinstance(token_string, str) or len(token_string) > 256:
            return None
        with transaction(self.ctx.sessions) as session:
            row = session.scalar(select(models.AccessToken).where(
                models.AccessToken.token_hash == _hash(token_string)))
            if row is None:
                return None
            values = (row.client_id, row.scope, row.expires_at, row.revoked_at is not None)
            sess = session.get(models.ProviderSession, row.session_id)
            sid = sess.sid if sess is not None else ""
        client = self._client(values[0])
        if client is None:
            return None
        live = sessions.live_by_sid(self.ctx, self.config, sid) if sid else None
        return StoredToken(client, values[1], values[2], values[3],
                           SsoUser(live) if live else None)

    # -- claims and tokens ------------------------------------------------------------------

    def user_info(self, session: ProviderSession, scope: str) -> UserInfo:
        """The claims ``scope`` releases about the session's account (OIDC Core §5.4)."""
        operator = session.operator
        official = None
        if operator.official_id is not None:
            try:
                with transaction(self.ctx.sessions) as db:
                    official = load_official(db, operator.official_id)
            except NotFound:
                official = None
        org = official.organisation if official is not None else operator.organisation
        values: dict[str, Any] = {
            "name": official.name if official is not None else operator.display_name,
            "preferred_username": operator.username, "locale": "zh-CN",
            "organisation": {"code": org.code, "name": org.name},
            "position": official.position if official is not None else "",
            "unit": official.unit if official is not None else None,
            "roles": sorted(operator.roles),
            "cert_serial": session.cert_serial, "cert_ca": session.cert_ca,
        }
        info: dict[str, Any] = {"sub": subject(session)}
        granted = set(scope.split())
        for name, claims in SCOPE_CLAIMS.items():
            if name in granted:
                info.update({c: values[c] for c in claims if values[c] not in (None, "")})
        return UserInfo(info)

    def id_token(self, session: ProviderSession, client: clients.RegisteredClient,
                 code: StoredCode | None, access_token: str, scope: str) -> str:
        """The ID token (OIDC Core §2, §3.1.3.6), signed ES256 through the key store."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": subject(session), "aud": client.client_id,
            "azp": client.client_id, "iat": now, "exp": now + self.config.id_token_seconds,
            "auth_time": int(session.auth_time.timestamp()), "acr": session.acr,
            "amr": session.amr, "sid": session.sid,
        }
        if code is not None and code.nonce:
            claims["nonce"] = code.nonce
        if access_token:
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["at_hash"] = b64url(digest[:16])
        claims.update({k: v for k, v in self.user_info(session, scope).items() if k != "sub"})
        return self.keys.sign(claims)

    # -- discovery --------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """OpenID Connect Discovery 1.0 §3, with RFC 8414 and the logout specs' members."""
        base = self.issuer
        claims = sorted({"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr",
                         "amr", "sid", "azp", "at_hash",
                         *(c for cs in SCOPE_CLAIMS.values() for c in cs)})
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "userinfo_endpoint": f"{base}/oauth/userinfo",
            "jwks_uri": f"{base}/oauth/jwks",
            "end_session_endpoint": f"{base}/oauth/logout",
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "acr_values_supported": list(ACR_VALUES),
            "claims_supported": claims,
            "claims_parameter_supported": True,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "prompt_values_supported": ["none", "login"],
            "ui_locales_supported": ["zh-CN", "en"],
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
            "frontchannel_logout_supported": False,
            "authorization_response_iss_parameter_supported": False,
        }

    # -- logout -----------------------------------------------------------------------------

    def end_for_request(self, req: EndSessionRequest) -> None:
        """RP-Initiated Logout: end the browser's session (and the one the hint's sid names,
        which the hint's valid signature lets the RP ask for)."""
        claims = req.id_token_claims or {}
        current: ProviderSession | None = flask_g.get("sso_session")
        sids = []
        if current is not None:
            sids.append(current.sid)
        if isinstance(claims.get("sid"), str) and claims["sid"] not in sids:
            sids.append(claims["sid"])
        actor = current.operator.username if current is not None else \
            str(claims.get("sub") or "anonymous")
        for sid in sids:
            self.logout(sid, reason="rp-initiated" if req.client else "user", actor=actor)

    def logout(self, sid: str, *, reason: str, actor: str) -> int:
        """End a session everywhere: its tokens revoked, and each client that took part owed
        a logout token (apps/sso/backchannel.py), tried at once with a short timeout and
        retried by the scheduler. Returns how many clients acknowledged the first attempt."""
        ended = sessions.end(self.ctx, sid, reason=reason, actor=actor)
        if ended is None or not ended.deliveries:
            return 0
        outcomes = self.deliverer.deliver(ended.deliveries)
        return sum(o.state == backchannel.DELIVERED for o in outcomes)

    # -- audit ------------------------------------------------------------------------------

    def refuse(self, action: str, client_id: str | None, reason: str,
               details: Mapping[str, Any] | None = None) -> None:
        audit.record_refusal(self.ctx.sessions, actor=str(client_id or "anonymous")[:64],
                             action=action, object_type="sso-client",
                             object_id=str(client_id or "")[:64],
                             details={"error": reason, **(details or {})})


def basic_auth(client_id: str, secret: str) -> str:
    """An RFC 6749 §2.3.1 Authorization header value (form-encoded id and secret)."""
    raw = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()
