"""Errors of the document exchange, each with a machine-readable kind and HTTP status.

The CLI (one ``error: ...`` line, exit 1) and the REST API (RFC 9457 problem body) map them
from ``kind``/``http_status`` alone (core/errors.py); the web pages can show ``message``
as it is. Messages name documents by number and message id, organisations by code, and
certificates by CA and serial — never key material or a document's content.
"""

from __future__ import annotations

from core.errors import GovpkiError


class ExchangeError(GovpkiError):
    kind = "exchange"
    http_status = 400


class ExchangePolicyInvalid(ExchangeError):
    """policies/exchange.yaml breaks its format (a deployment error, found at load time)."""

    kind = "exchange-policy-invalid"
    http_status = 500


class ValidationError(ExchangeError):
    """Bad input; ``details['field']`` names the field."""

    kind = "validation"


class ClassifiedRefused(ExchangeError):
    """A package marked secret or above: only non-classified documents travel here."""

    kind = "exchange-classified"
    http_status = 403


class PackageTooLarge(ExchangeError):
    """A body, an attachment or a whole package over policies/exchange.yaml's limits."""

    kind = "exchange-too-large"
    http_status = 413


class MalformedPackage(ExchangeError):
    """Bytes that are not an exchange package, header or receipt statement."""

    kind = "exchange-malformed"


class SignatureInvalid(ExchangeError):
    """A header or receipt whose signature, chain or revocation check fails, or whose signer
    is not the organisation it speaks for."""

    kind = "exchange-signature-invalid"
    http_status = 422


class TamperedPackage(ExchangeError):
    """The encrypted body does not match what the signed header says (changed in storage or
    in transit), or does not decrypt to it."""

    kind = "exchange-tampered"
    http_status = 422


class RecipientKeyInvalid(ExchangeError):
    """A recipient without a valid (unexpired, unrevoked) organisation encryption
    certificate: nothing can be encrypted to it."""

    kind = "exchange-recipient-key"
    http_status = 409


class OrgKeyMissing(ExchangeError):
    """An organisation has no seal, or the server does not hold the key it needs."""

    kind = "exchange-org-key-missing"
    http_status = 409


class DuplicateDocumentNumber(ExchangeError):
    """The sending organisation has already sent a document with this number (文号)."""

    kind = "exchange-duplicate-number"
    http_status = 409


class MessageIdConflict(ExchangeError):
    """A message id already used for other content: a resend must repeat the same package."""

    kind = "exchange-message-id-conflict"
    http_status = 409


class PackageNotFound(ExchangeError):
    kind = "exchange-not-found"
    http_status = 404


class NotReceived(ExchangeError):
    """A receipt for a package this organisation never received (unknown, not addressed to
    it, or not yet fetched and verified)."""

    kind = "exchange-not-received"
    http_status = 409


class InvalidTransition(ExchangeError):
    """A business step the delivery's state does not allow (completing before signing for,
    returning a completed document)."""

    kind = "exchange-invalid-transition"
    http_status = 409


class ReceiptInvalid(ExchangeError):
    """A receipt that does not verify against the package it claims to answer."""

    kind = "exchange-receipt-invalid"
    http_status = 422


class Forbidden(ExchangeError):
    """The actor may not take this exchange action for this organisation (audited)."""

    kind = "forbidden"
    http_status = 403
