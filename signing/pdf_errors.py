"""Errors of PDF signing, sealing and validation, each with a ``kind`` and an ``http_status``.

They extend :class:`signing.errors.SigningError` (the TSA's hierarchy) so the edges map every
signing/ error the same way: the CLI prints ``error: <message>`` on one line and exits 1, the
HTTP edge answers an RFC 9457 problem. A message never carries a PIN, a passphrase or document
content; it names the file, the field or the certificate and the rule that was broken.

Key and token errors (wrong PIN, missing token, unknown key) are hsm/'s own
(:class:`hsm.errors.WrongPin`, :class:`hsm.errors.TokenNotFound`, ...) and pass through
unchanged: they already say which token and why.
"""

from __future__ import annotations

from signing.errors import SigningError


class PdfError(SigningError):
    """Something about a PDF document or its signing that the caller can fix."""

    kind = "pdf"
    http_status = 400


# -- input documents ---------------------------------------------------------------------------


class NotAPdf(PdfError):
    """The input has no ``%PDF-`` header (a Word file, an image, HTML...)."""

    kind = "pdf-not-a-pdf"
    http_status = 415


class EmptyPdf(NotAPdf):
    """Zero bytes: an upload or a copy that failed before it started."""

    kind = "pdf-empty"
    http_status = 400


class PdfTooLarge(PdfError):
    """Over the configured size limit (``signing.pdf_limits``), refused before parsing."""

    kind = "pdf-too-large"
    http_status = 413


class CorruptPdf(PdfError):
    """A ``%PDF-`` header, but the file does not parse (truncated, damaged xref, bad objects)."""

    kind = "pdf-corrupt"
    http_status = 422


class EncryptedPdf(PdfError):
    """Encrypted, and no (or a wrong) password was given to open it."""

    kind = "pdf-encrypted"
    http_status = 422


# -- what to sign where ----------------------------------------------------------------------


class FieldError(PdfError):
    """The signature field cannot be used: unknown, already signed, not a signature field,
    bad page or box."""

    kind = "pdf-field"
    http_status = 422


class DocumentLocked(PdfError):
    """A certification signature (DocMDP P=1) forbids any further change, or a certification
    was asked for on a document that already carries signatures."""

    kind = "pdf-locked"
    http_status = 409


class SealImageError(PdfError):
    """The uploaded seal image is not a usable PNG/JPEG (or too large)."""

    kind = "pdf-seal-image"
    http_status = 422


class AppearanceError(PdfError):
    """The seal appearance cannot be drawn (no CJK font installed, text too long, ...)."""

    kind = "pdf-appearance"
    http_status = 500


# -- the signer's certificate -------------------------------------------------------------------


class CertificateRefused(PdfError):
    """The signer's certificate must not sign: the subclass says why, the message which
    certificate (subject and serial) and what was found."""

    kind = "pdf-certificate-refused"
    http_status = 422


class CertificateExpired(CertificateRefused):
    kind = "pdf-certificate-expired"


class CertificateNotYetValid(CertificateRefused):
    kind = "pdf-certificate-not-yet-valid"


class CertificateRevoked(CertificateRefused):
    kind = "pdf-certificate-revoked"


class CertificateSuspended(CertificateRefused):
    """certificateHold (冻结): it may be released again, but it must not sign meanwhile."""

    kind = "pdf-certificate-suspended"


class CertificateNotForSigning(CertificateRefused):
    """keyUsage without digitalSignature/nonRepudiation, or an EKU without a document-signing
    purpose, or a CA certificate."""

    kind = "pdf-certificate-not-for-signing"


class CertificateKeyMismatch(CertificateRefused):
    """The certificate certifies another public key than the key that would sign."""

    kind = "pdf-certificate-key-mismatch"


class RevocationUnknown(CertificateRefused):
    """The certificate's status could not be established (no OCSP answer, no CRL), so govpki
    will not vouch that it may sign."""

    kind = "pdf-revocation-unknown"
    http_status = 502


class InvalidCertificateFile(PdfError):
    """``--cert`` is not a PEM/DER certificate (or chain)."""

    kind = "pdf-invalid-certificate"


# -- services reached while signing -------------------------------------------------------------


class SigningFailed(PdfError):
    """Signing could not be completed (nothing was written)."""

    kind = "pdf-signing-failed"
    http_status = 500


class TimestampFailed(SigningFailed):
    """The TSA refused or could not be reached (B-T and above need its token)."""

    kind = "pdf-timestamp-failed"
    http_status = 502


class RevocationFetchFailed(SigningFailed):
    """B-LT/B-LTA: the OCSP responses or CRLs to embed could not be gathered."""

    kind = "pdf-revocation-fetch-failed"
    http_status = 502


# -- validation ----------------------------------------------------------------------------------


class TrustConfigError(PdfError):
    """Validation needs trust roots and none (or unreadable ones) were configured."""

    kind = "pdf-trust-config"
    http_status = 500


# -- server-held seals (signing.seals) -----------------------------------------------------------


class SealError(SigningError):
    kind = "seal"
    http_status = 400


class UnknownSeal(SealError):
    kind = "seal-unknown"
    http_status = 404


class SealForbidden(SealError):
    """The actor is not on the seal's access list (or approves their own use)."""

    kind = "seal-forbidden"
    http_status = 403


class SealApprovalRequired(SealForbidden):
    """The seal needs a second approver, and none (or no eligible one) was named."""

    kind = "seal-approval-required"
    http_status = 403


class InvalidSealDefinition(SealError):
    kind = "seal-invalid-definition"
    http_status = 500
