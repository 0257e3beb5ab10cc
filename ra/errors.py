"""Errors of the registration authority, each with a machine-readable kind and HTTP status.

The CLI and (later) the REST edge map them from ``kind``/``http_status`` alone (core/errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import GovpkiError


class RaError(GovpkiError):
    kind = "ra"
    http_status = 400


class Forbidden(RaError):
    """The actor may not take this action on this object (the refusal is audited)."""

    kind = "forbidden"
    http_status = 403


class TwoPersonRuleViolation(Forbidden):
    """Approving one's own request or role change, or approving the same thing twice."""

    kind = "two-person-rule"


class SeparationOfDuties(Forbidden):
    """The roles asked for cannot be combined on one account (三员分立)."""

    kind = "separation-of-duties"


class NotFound(RaError):
    kind = "ra-not-found"
    http_status = 404


class InvalidTransition(RaError):
    """The request is not in a state that allows this step (e.g. approving a rejected one)."""

    kind = "invalid-transition"
    http_status = 409


class Duplicate(RaError):
    kind = "duplicate"
    http_status = 409


class ValidationError(RaError):
    """Bad input; ``details['field']`` names the field."""

    kind = "validation"
    http_status = 400

    def __init__(self, message: str, *, field: str, **details: Any) -> None:
        super().__init__(message, field=field, **details)
        self.field = field


@dataclass(frozen=True)
class RowProblem:
    """One reason one roster row was refused. ``line`` is the CSV line (header = line 1)."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


class ImportRefused(RaError):
    """A roster could not be imported; nothing was written. ``problems`` has every row's
    problems (or one line-0 problem when the file itself is unusable)."""

    kind = "import-refused"
    http_status = 400

    def __init__(self, message: str, problems: tuple[RowProblem, ...] = (),
                 **details: Any) -> None:
        super().__init__(message, **details)
        self.problems = problems

    def report(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class AuthenticationFailed(RaError):
    """Credentials did not prove who the caller is. The message never says which part was
    wrong (user name, password, TOTP code, token), so it cannot be used to probe accounts."""

    kind = "authentication-failed"
    http_status = 401


class AccountLocked(Forbidden):
    """Too many failed logins: the account is locked until ``details['until']``."""

    kind = "account-locked"


class PasswordLoginNotAllowed(Forbidden):
    """Password + TOTP proved who the caller is, but this account must log in with its
    certificate (``[ra] password_login``: by default only the bootstrap administrator keeps
    password login). Raised only after the credentials were right, so it tells nothing to
    someone guessing them."""

    kind = "password-login-not-allowed"


class EnrollmentRefused(RaError):
    """An enrollment code that is unknown, used, expired or for another request."""

    kind = "enrollment-refused"
    http_status = 403
