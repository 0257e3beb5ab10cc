"""Errors of signing/, each with a machine-readable ``kind`` and ``http_status`` for the edges.

Protocol errors of the TSA are *not* exceptions that reach HTTP: RFC 3161 answers them with a
TimeStampResp whose PKIStatus is rejection (HTTP 200). The classes here are for what sits
outside the protocol: a TSA that must refuse to start, and HTTP-level refusals (method, media
type, size) that the WSGI edge turns into RFC 9457 problem bodies.
"""

from __future__ import annotations

from core.errors import GovpkiError


class SigningError(GovpkiError):
    kind = "signing"
    http_status = 400


class TsaConfigError(SigningError):
    """The TSA cannot run as configured (no TSA key, certificate without critical
    timeStamping EKU, key and certificate do not match, bad clock settings). Raised at start-up
    so a misconfigured TSA never issues a single token."""

    kind = "tsa-config"
    http_status = 500


class TsaHttpError(SigningError):
    """A request refused before RFC 3161 applies (it never reached the protocol parser)."""

    kind = "tsa-http"


class MethodNotAllowed(TsaHttpError):
    kind = "method-not-allowed"
    http_status = 405


class UnsupportedMediaType(TsaHttpError):
    kind = "unsupported-media-type"
    http_status = 415


class PayloadTooLarge(TsaHttpError):
    kind = "payload-too-large"
    http_status = 413


class BadHttpRequest(TsaHttpError):
    kind = "bad-request"
    http_status = 400


class NotFound(TsaHttpError):
    kind = "not-found"
    http_status = 404
