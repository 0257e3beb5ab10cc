"""Errors of the single sign-on provider, each with a machine-readable kind and HTTP status.

Protocol endpoints (token, userinfo) answer with OAuth error bodies (RFC 6749 §5.2, RFC 6750
§3.1) through authlib; everything else — the CLI, the login pages, the challenge endpoints —
maps these from ``kind``/``http_status`` alone (core/errors.py), as problem bodies (RFC 9457)
or a page. The login refusals are also ra.errors.AuthenticationFailed, which is what the
ra.authn.LoginMethod protocol promises its callers.
"""

from __future__ import annotations

from core.errors import GovpkiError
from ra.errors import AuthenticationFailed


class SsoError(GovpkiError):
    kind = "sso"
    http_status = 400


class ClientRefused(SsoError):
    """A client registration that is invalid (redirect URI not absolute, duplicate id)."""

    kind = "sso-client-invalid"


class UnknownClient(SsoError):
    kind = "sso-unknown-client"
    http_status = 404


class NotAllowed(SsoError):
    """The actor may not manage SSO clients or keys (a ca-admin may)."""

    kind = "forbidden"
    http_status = 403


class LoginRefused(SsoError, AuthenticationFailed):
    """A certificate login that did not prove who the caller is. ``reason`` is one word a
    page can show a sentence for (revoked, suspended, expired, foreign, …)."""

    kind = "sso-login-refused"
    http_status = 403

    def __init__(self, message: str, *, reason: str, **details: object) -> None:
        super().__init__(message, reason=reason, **details)
        self.reason = reason


class CertificateRefused(LoginRefused):
    """A login certificate that is revoked, suspended, expired, foreign, not for client
    authentication, or belongs to nobody with an account."""

    kind = "sso-certificate-refused"


class ChallengeRefused(LoginRefused):
    """A login challenge that is unknown, expired, already answered (a replayed nonce), or
    whose answer does not verify."""

    kind = "sso-challenge-refused"
    http_status = 400


class UntrustedProxy(LoginRefused):
    """A Client-Cert header from an address not listed in [sso] trusted_proxies."""

    kind = "sso-untrusted-proxy"


class MalformedInput(SsoError):
    """Outside input (a header, a challenge answer, a token) that does not parse."""

    kind = "sso-malformed"
    http_status = 400


class KeyUnavailable(SsoError):
    kind = "sso-key-unavailable"
    http_status = 503


class RateLimited(SsoError):
    """Too many login codes, or too many wrong codes and answers, from one browser or source
    address in one window ([sso] rate limits): 429 with Retry-After (RFC 6585 §4)."""

    kind = "sso-rate-limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int, limit: str) -> None:
        super().__init__(message, retry_after=retry_after, limit=limit)
        self.retry_after = retry_after
