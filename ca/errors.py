"""Errors of the certificate authority, each with a machine-readable kind for the edges."""

from core.errors import GovpkiError


class CaError(GovpkiError):
    kind = "ca"
    http_status = 400


class InvalidCsr(CaError):
    """The CSR does not parse (garbage, truncated, wrong encoding)."""

    kind = "invalid-csr"


class CsrSignatureInvalid(CaError):
    """The CSR's self-signature does not verify: no proof of possession of the key."""

    kind = "csr-signature-invalid"


class PolicyViolation(CaError):
    """The request is well-formed but the profile or RFC 5280 forbids it."""

    kind = "policy-violation"


class LintFailed(PolicyViolation):
    """The pre-issuance check found errors in the to-be-signed certificate."""

    kind = "lint-failed"


class UnknownCa(CaError):
    kind = "unknown-ca"
    http_status = 404


class IssuerUnavailable(CaError):
    """The issuing CA is revoked, suspended, expired or not yet valid."""

    kind = "issuer-unavailable"
    http_status = 409


class CertificateNotFound(CaError):
    kind = "certificate-not-found"
    http_status = 404


class AmbiguousSerial(CaError):
    kind = "ambiguous-serial"
    http_status = 409


class InvalidStatusChange(CaError):
    """E.g. releasing a certificate that is not on hold, revoking a revoked one."""

    kind = "invalid-status-change"
    http_status = 409


class CeremonyError(CaError):
    kind = "ceremony"


class NotInitialised(CaError):
    kind = "not-initialised"
    http_status = 503


class AlreadyInitialised(CeremonyError):
    kind = "already-initialised"
    http_status = 409
