"""Errors of the CMS API (signing/cms.py, cms_envelope.py, cms_receipt.py, cms_cli.py).

Every class carries a machine-readable ``kind`` and an ``http_status`` (core/errors.py), so the
CLI and HTTP edges map them without knowing this module. Messages are safe to show: no PIN,
passphrase, key material or plaintext ever reaches one.

What is an exception and what is a result: a signature that *parses* but does not verify (other
data, a changed byte, an untrusted or revoked signer) is not an error but a
:class:`signing.cms.CmsVerification` with ``valid=False`` and its reasons, because a relying
application must be able to report *why* a document is not authentic. Exceptions are for input
that cannot be judged at all (garbage instead of CMS, empty or oversized files, a detached
signature without its data) and for refusals to produce something (wrong key, unusable
certificate, a TSA that does not answer).
"""

from __future__ import annotations

from core.errors import GovpkiError


class CmsError(GovpkiError):
    """Root of the CMS errors."""

    kind = "cms"
    http_status = 400


class MalformedCms(CmsError):
    """Not DER/BER CMS of the expected type (garbage, truncated, trailing bytes, a field that
    does not decode). Raised for input that cannot be judged at all."""

    kind = "cms-malformed"


class EmptyContent(CmsError):
    """Nothing to sign or verify: a 0-byte file or empty bytes."""

    kind = "cms-empty-content"


class InputTooLarge(CmsError):
    """Content, signature or envelope over the size limit (the limit is in the message)."""

    kind = "cms-input-too-large"
    http_status = 413


class InputUnreadable(CmsError):
    """A file named as input cannot be read (missing, a directory, no permission)."""

    kind = "cms-input-unreadable"


class ContentMissing(CmsError):
    """A detached signature was given without the data it signs."""

    kind = "cms-content-missing"


class UnsupportedAlgorithm(CmsError):
    """A digest, signature, key transport or content encryption algorithm govpki does not
    produce or accept (SHA-1, MD5, 3DES, EC key transport, ...)."""

    kind = "cms-unsupported-algorithm"


class InvalidCertificate(CmsError):
    """A certificate argument that is not PEM or DER X.509, or a trust-root list that is empty."""

    kind = "cms-invalid-certificate"


class CertificateKeyMismatch(CmsError):
    """The key does not belong to the certificate (the wrong key for this signer), or the key
    produced a signature that the certificate's public key does not verify."""

    kind = "cms-certificate-key-mismatch"


class CertificateNotUsable(CmsError):
    """The certificate must not be used for this operation: expired or not yet valid, or its
    key usage excludes signing (or, for recipients, key encipherment)."""

    kind = "cms-certificate-not-usable"


class TimestampFailed(CmsError):
    """The time-stamp authority refused, did not answer, or answered with a token that does not
    stamp our signature value (wrong imprint or nonce)."""

    kind = "cms-timestamp-failed"
    http_status = 502


class NotARecipient(CmsError):
    """The envelope has no recipient entry for this certificate or key."""

    kind = "cms-not-a-recipient"
    http_status = 403


class DecryptionFailed(CmsError):
    """The envelope does not decrypt: wrong key, or tampered or damaged ciphertext.

    One message for every cause (RSA padding, content padding, GCM tag), so failures cannot be
    told apart from outside (Bleichenbacher / padding-oracle style attacks).
    """

    kind = "cms-decryption-failed"


class ReceiptError(CmsError):
    """A signed receipt cannot be produced: no receipt was requested, the original is itself a
    receipt, or the original signature does not verify (RFC 2634 §2.3)."""

    kind = "cms-receipt"


class KeyFileError(CmsError):
    """A ``--key-file`` that cannot be used: unreadable, not a private key, wrong passphrase."""

    kind = "cms-key-file"
