"""Errors only the REST edge raises: transport problems (size, media type) and a refusal that
carries a per-row report.

They derive from :class:`ra.errors.RaError`, so the application's one GovpkiError handler
(govpki/wsgi.py) renders them as RFC 9457 problem bodies like every other error; nothing here
renders HTTP itself.
"""

from __future__ import annotations

from typing import Any

from ra.errors import ImportRefused, RaError


class BodyTooLarge(RaError):
    """The request body is larger than the endpoint accepts (``[ra] max_body_bytes``)."""

    kind = "body-too-large"
    http_status = 413


class LengthRequired(RaError):
    """A document upload without Content-Length (chunked): refused unread, so its size is
    known before anything is accepted (RFC 9110 §15.5.12)."""

    kind = "length-required"
    http_status = 411


class UnsupportedMediaType(RaError):
    """The body is not in a media type the endpoint reads (JSON, or CSV for a roster)."""

    kind = "unsupported-media-type"
    http_status = 415


class NotAnRaCertificate(RaError):
    """A status change was asked for a certificate that no RA official owns: the RA's request
    workflow has nobody to attach it to (the CA's own commands handle such certificates)."""

    kind = "not-an-ra-certificate"
    http_status = 409


class RosterRefused(RaError):
    """:class:`ra.errors.ImportRefused` with its per-row report in the problem body.

    GovpkiError.problem() keeps scalar details only; the report is a list, so this subclass
    adds it while the application's handler still renders it (one renderer for all errors).
    """

    kind = ImportRefused.kind
    http_status = ImportRefused.http_status

    def __init__(self, refused: ImportRefused) -> None:
        super().__init__(refused.message)
        self.problems = refused.problems

    def problem(self) -> dict[str, Any]:
        body = super().problem()
        body["problems"] = [{"line": p.line, "field": p.field, "message": p.message}
                            for p in self.problems]
        return body
