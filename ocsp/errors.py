"""Errors of the OCSP responder, each carrying the RFC 6960 §4.2.1 status it is answered with.

They never leave :func:`ocsp.responder.OcspResponder.respond`: the edge turns every one of them into
an unsigned OCSPResponse with that status, so a client always gets a protocol answer.
"""

from __future__ import annotations

import enum

from core.errors import GovpkiError


class ResponseStatus(enum.IntEnum):
    """OCSPResponseStatus (RFC 6960 §4.2.1); 4 is not used."""

    SUCCESSFUL = 0
    MALFORMED_REQUEST = 1
    INTERNAL_ERROR = 2
    TRY_LATER = 3
    SIG_REQUIRED = 5
    UNAUTHORIZED = 6


class OcspError(GovpkiError):
    """Root of the responder's errors."""

    kind = "ocsp-error"
    status = ResponseStatus.INTERNAL_ERROR


class MalformedRequest(OcspError):
    """The request is not a valid OCSPRequest (or breaks a bound: size, CertIDs, nonce length)."""

    kind = "ocsp-malformed-request"
    http_status = 400
    status = ResponseStatus.MALFORMED_REQUEST


class Unauthorized(OcspError):
    """No CA served here matches the CertID's issuer (RFC 6960 §2.3)."""

    kind = "ocsp-unauthorized"
    http_status = 403
    status = ResponseStatus.UNAUTHORIZED


class TryLater(OcspError):
    """The database (status source) is unavailable and no pre-signed answer is held."""

    kind = "ocsp-try-later"
    http_status = 503
    status = ResponseStatus.TRY_LATER
