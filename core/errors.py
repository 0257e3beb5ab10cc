"""The root of every govpki error.

Each package derives its own hierarchy from :class:`GovpkiError` and gives every class a
machine-readable ``kind`` and an ``http_status``; the HTTP and CLI edges (govpki/) map errors
to problem bodies and exit codes from those two fields alone, so no view or command has to
know a package's exception classes.
"""

from __future__ import annotations

from typing import Any


class GovpkiError(Exception):
    """Base of all expected, user-facing errors. The message is safe to show: no secrets."""

    kind: str = "error"
    http_status: int = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def problem(self) -> dict[str, Any]:
        """RFC 9457 problem body for the HTTP edge."""
        body: dict[str, Any] = {
            "type": f"urn:govpki:problem:{self.kind}",
            "title": self.kind,
            "status": self.http_status,
            "detail": self.message,
        }
        body.update({k: v for k, v in self.details.items() if _is_json_scalar(v)})
        return body


def _is_json_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


class ConfigError(GovpkiError):
    kind = "config"
    http_status = 500


class NotFound(GovpkiError):
    kind = "not-found"
    http_status = 404


class Conflict(GovpkiError):
    kind = "conflict"
    http_status = 409


class AuditError(GovpkiError):
    kind = "audit"
    http_status = 500
