"""The exchange pages as an OpenID Connect relying party of govpki's provider (apps/sso).

Spoken over HTTP like any office application, so the pages may run on a host of their own:
discovery (OpenID Connect Discovery 1.0 §4) for the endpoints, the authorization code flow
(OIDC Core §3.1) with PKCE S256 (RFC 7636) as a public client, the ID token checked against
the provider's JWKS (§3.1.3.7: signature ES256, iss, aud, azp, exp, iat, nonce), and
Back-Channel Logout 1.0 §2.6 for the logout token. Nothing here imports apps/sso: the
composition root (govpki) tells the pages the issuer and registers their client there.

Discovery documents and key sets are cached for :data:`CACHE_SECONDS`; an ID token signed by
a key the cached set lacks fetches the set again once (the provider rotated its key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from apps.exchange.web.errors import BadLogoutToken, LoginFailed, ProviderUnavailable

CACHE_SECONDS: Final = 300
MAX_ANSWER: Final = 256 * 1024
ALGORITHMS: Final = ["ES256"]
SCOPE: Final = "openid profile organisation roles"
BACKCHANNEL_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
CLOCK_SKEW: Final = 30
LOGOUT_TOKEN_AGE: Final = 300


@dataclass(frozen=True)
class ClientUris:
    """What the pages register at the provider (exact strings: RFC 9700 §4.1.3)."""

    redirect_uri: str
    post_logout_redirect_uri: str
    backchannel_logout_uri: str
    initiate_login_uri: str


@dataclass(frozen=True)
class RelyingParty:
    """Where the provider is (``issuer``), the client id the pages use there, and the
    address the pages themselves are reached at (``base_url``, without /exchange).
    ``register`` makes sure the provider knows the client with these URIs (the composition
    root supplies it; idempotent)."""

    issuer: str
    client_id: str
    base_url: str
    register: Callable[[ClientUris], None] | None = None
    timeout: float = 15.0

    @property
    def uris(self) -> ClientUris:
        base = self.base_url.rstrip("/")
        return ClientUris(redirect_uri=f"{base}/exchange/sso/callback",
                          post_logout_redirect_uri=f"{base}/exchange/bye",
                          backchannel_logout_uri=f"{base}/exchange/sso/backchannel-logout",
                          initiate_login_uri=f"{base}/exchange/sso/login")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, S256."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _get_json(url: str, timeout: float, *, data: bytes | None = None) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers,  # noqa: S310 (configured http(s))
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:  # noqa: S310
            body = reply.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as exc:
        if data is not None and 400 <= exc.code < 500:
            raise LoginFailed(f"the provider refused the request (HTTP {exc.code})") from None
        raise ProviderUnavailable(f"the single sign-on provider answered HTTP {exc.code} "
                                  f"for {urllib.parse.urlsplit(url).path}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ProviderUnavailable(f"the single sign-on provider cannot be reached "
                                  f"({type(exc).__name__})") from None
    if len(body) > MAX_ANSWER:
        raise ProviderUnavailable("the single sign-on provider's answer is too large")
    try:
        value = json.loads(body)
    except ValueError:
        raise ProviderUnavailable("the single sign-on provider's answer is not JSON") from None
    if not isinstance(value, dict):
        raise ProviderUnavailable("the single sign-on provider's answer is not an object")
    return value


class ProviderDirectory:
    """Discovery documents and key sets by issuer, cached (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metadata: dict[str, tuple[float, dict[str, Any]]] = {}
        self._keys: dict[str, tuple[float, KeySet]] = {}

    def metadata(self, rp: RelyingParty) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            cached = self._metadata.get(rp.issuer)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        found = _get_json(f"{rp.issuer}/.well-known/openid-configuration", rp.timeout)
        if found.get("issuer") != rp.issuer:  # Discovery 1.0 §4.3
            raise ProviderUnavailable("the discovery document names another issuer")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(found.get(name), str):
                raise ProviderUnavailable(f"the discovery document lacks {name}")
        with self._lock:
            self._metadata[rp.issuer] = (now, found)
        return found

    def keys(self, rp: RelyingParty, *, refresh: bool = False) -> KeySet:
        now = time.monotonic()
        with self._lock:
            cached = self._keys.get(rp.issuer)
        if cached is not None and not refresh and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        data = _get_json(str(self.metadata(rp)["jwks_uri"]), rp.timeout)
        try:
            keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise ProviderUnavailable("the provider's key set cannot be read") from None
        with self._lock:
            self._keys[rp.issuer] = (now, keys)
        return keys

    def decode(self, rp: RelyingParty, token: str, error: type[LoginFailed | BadLogoutToken]
               ) -> dict[str, Any]:
        """The token's claims once its signature verifies with the provider's keys."""
        if not token or len(token) > 16384:
            raise error("no token, or an oversized one")
        kid = _kid_of(token)
        if kid is None:
            raise error("the token is not a signed JWT with a key id")
        keys = self.keys(rp)
        try:
            keys.get_by_kid(kid)
        except (JoseError, ValueError, KeyError):
            keys = self.keys(rp, refresh=True)  # a key the provider rotated in since
        try:
            return dict(jwt.decode(token, keys, algorithms=ALGORITHMS).claims)
        except (JoseError, ValueError, TypeError) as exc:
            raise error(f"the token's signature does not verify ({type(exc).__name__})"
                        ) from None


def _kid_of(token: str) -> str | None:
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "=="))
    except (ValueError, UnicodeDecodeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) and kid else None


DIRECTORY = ProviderDirectory()


def authorization_url(rp: RelyingParty, *, state: str, nonce: str, verifier: str) -> str:
    endpoint = str(DIRECTORY.metadata(rp)["authorization_endpoint"])
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": rp.client_id,
        "redirect_uri": rp.uris.redirect_uri, "scope": SCOPE, "state": state, "nonce": nonce,
        "code_challenge": code_challenge(verifier), "code_challenge_method": "S256"})
    return f"{endpoint}?{query}"


def redeem(rp: RelyingParty, code: str, verifier: str) -> str:
    """The authorization code exchanged at the token endpoint (RFC 6749 §4.1.3, PKCE):
    the ID token."""
    body = urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": code, "client_id": rp.client_id,
        "redirect_uri": rp.uris.redirect_uri, "code_verifier": verifier}).encode()
    answer = _get_json(str(DIRECTORY.metadata(rp)["token_endpoint"]), rp.timeout, data=body)
    token = answer.get("id_token")
    if not isinstance(token, str):
        raise LoginFailed("the token endpoint returned no ID token")
    return token


def _audience_ok(claims: Mapping[str, Any], client_id: str) -> bool:
    aud = claims.get("aud")
    return aud == client_id or (isinstance(aud, list) and client_id in aud)


def check_id_token(rp: RelyingParty, token: str, *, nonce: str,
                   now: float | None = None) -> dict[str, Any]:
    """OIDC Core §3.1.3.7: the ID token's claims, or LoginFailed naming what failed."""
    claims = DIRECTORY.decode(rp, token, LoginFailed)
    at = time.time() if now is None else now
    problems = []
    if claims.get("iss") != rp.issuer:
        problems.append("iss")
    if not _audience_ok(claims, rp.client_id):
        problems.append("aud")
    if isinstance(claims.get("aud"), list) and claims.get("azp") != rp.client_id:
        problems.append("azp")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or exp < at - CLOCK_SKEW:
        problems.append("exp")
    if not isinstance(iat, int) or iat > at + CLOCK_SKEW:
        problems.append("iat")
    if claims.get("nonce") != nonce:
        problems.append("nonce")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        problems.append("sub")
    if problems:
        raise LoginFailed(f"the ID token is not acceptable ({', '.join(problems)})")
    return claims


def check_logout_token(rp: RelyingParty, token: str, *, now: float | None = None
                       ) -> dict[str, Any]:
    """Back-Channel Logout 1.0 §2.6: signature, iss, aud, iat, events, sid or sub, no
    nonce."""
    claims = DIRECTORY.decode(rp, token, BadLogoutToken)
    at = time.time() if now is None else now
    problems = []
    if claims.get("iss") != rp.issuer:
        problems.append("iss")
    if not _audience_ok(claims, rp.client_id):
        problems.append("aud")
    iat = claims.get("iat")
    if not isinstance(iat, int) or abs(at - iat) > LOGOUT_TOKEN_AGE:
        problems.append("iat")
    events = claims.get("events")
    if not isinstance(events, dict) or BACKCHANNEL_EVENT not in events:
        problems.append("events")
    if "nonce" in claims:
        problems.append("nonce")
    sid, sub = claims.get("sid"), claims.get("sub")
    if not (isinstance(sid, str) and sid) and not (isinstance(sub, str) and sub):
        problems.append("sid/sub")
    if problems:
        raise BadLogoutToken(f"not an acceptable logout token ({', '.join(problems)})")
    return claims


def end_session_url(rp: RelyingParty) -> str | None:
    """RP-initiated logout 1.0 §2 at the provider, back to the pages' goodbye page."""
    endpoint = DIRECTORY.metadata(rp).get("end_session_endpoint")
    if not isinstance(endpoint, str):
        return None
    query = urllib.parse.urlencode({"client_id": rp.client_id,
                                    "post_logout_redirect_uri":
                                        rp.uris.post_logout_redirect_uri})
    return f"{endpoint}?{query}"
