"""Errors of the policies package: bad profile files, unknown profiles, subjects that break a rule.

Every class carries a machine-readable ``kind`` and an ``http_status`` (see core/errors.py), so the
HTTP and CLI edges can report a policy failure without knowing these classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import GovpkiError


class PolicyError(GovpkiError):
    """Base of every error raised by ``policies``."""

    kind = "policy"
    http_status = 400


@dataclass(frozen=True)
class ProfileProblem:
    """One thing wrong with a profile: the dotted field path (``key_usage.ec[1]``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class ProfileInvalid(PolicyError):
    """A profile file (or mapping) breaks the profile format.

    422 rather than 500: the CA administrator's pages may submit a profile for checking, and for
    them a bad profile is bad input. At start-up the CLI prints the one-line message and exits.
    ``problems`` lists every problem found, not only the first, so one edit fixes a file.
    """

    kind = "profile-invalid"
    http_status = 422

    def __init__(
        self, message: str, problems: tuple[ProfileProblem, ...] = (), **details: Any
    ) -> None:
        super().__init__(message, **details)
        self.problems = problems


class ProfileNotFound(PolicyError):
    """No profile of that name (the message names the known profiles)."""

    kind = "profile-not-found"
    http_status = 404


class KeyTypeNotAllowed(PolicyError):
    """A key type or key family that the profile does not allow was asked for."""

    kind = "key-type-not-allowed"
    http_status = 400


class SubjectRuleViolation(PolicyError):
    """A subject name (or subject alternative name) breaks the profile's rules.

    ``details`` carries ``attribute`` (``CN``, ``OU``, ``subjectAltName``...) and ``rule`` (a
    short machine-readable name such as ``max-length`` or ``national-id``) so the RA can point
    at the form field.
    """

    kind = "subject-rule-violation"
    http_status = 400

    def __init__(self, message: str, *, attribute: str | None, rule: str, **details: Any) -> None:
        super().__init__(message, attribute=attribute, rule=rule, **details)
        self.attribute = attribute
        self.rule = rule
