"""Errors of the key management centre, each with a machine-readable kind and HTTP status.

The CLI and HTTP edges map them from ``kind``/``http_status`` alone (core/errors.py). Messages
name escrow records, certificates and fingerprints, never key material.
"""

from __future__ import annotations

from core.errors import GovpkiError


class KmcError(GovpkiError):
    kind = "kmc"
    http_status = 400


class KmcNotInitialised(KmcError):
    """No active KMC master key: `govpki kmc init` has not been run."""

    kind = "kmc-not-initialised"
    http_status = 409


class KmcAlreadyInitialised(KmcError):
    kind = "kmc-already-initialised"
    http_status = 409


class SigningKeyNotEscrowable(KmcError):
    """A signing key was asked to be escrowed, exported or recovered: never (non-repudiation)."""

    kind = "kmc-signing-key-refused"
    http_status = 403


class EscrowNotFound(KmcError):
    kind = "kmc-escrow-not-found"
    http_status = 404


class RecoveryNotFound(KmcError):
    kind = "kmc-recovery-not-found"
    http_status = 404


class Forbidden(KmcError):
    """The actor may not take this KMC action on this key (the refusal is audited)."""

    kind = "forbidden"
    http_status = 403


class TwoPersonRuleViolation(Forbidden):
    """Approving one's own recovery request, or approving it twice."""

    kind = "two-person-rule"


class InvalidTransition(KmcError):
    """The escrow or recovery is not in a state that allows this step."""

    kind = "kmc-invalid-transition"
    http_status = 409


class ValidationError(KmcError):
    """Bad input; ``details['field']`` names the field."""

    kind = "validation"
    http_status = 400
