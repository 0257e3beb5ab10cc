"""CMS SignedData (RFC 5652) for any file: sign and verify, detached or encapsulated.

Built with asn1crypto and signed through govpki's one :class:`hsm.signer.Signer`, so an
official's USB key, a department seal on the server HSM and a development file key produce the
same bytes. pyHanko's PDF CMS machinery is not used: it assumes its own signer classes and PDF
byte ranges, while a plain file signature needs exact control over every attribute, and the
exchange (receipts, envelopes) needs the same structures taken apart again.

What a signature carries, and why:

* signed attributes (RFC 5652 §5.3, §11): contentType, messageDigest and signingTime — the
  signature covers the attributes, which cover the content — and ESS signing-certificate-v2
  (RFC 5035, ESSCertIDv2 with SHA-256 and issuerSerial), so the signer certificate cannot be
  swapped for another one with the same key;
* the signer certificate and its chain in ``certificates``, so a verifier needs only the root;
* optionally an RFC 3161 signature timestamp as the unsigned attribute id-aa-timeStampToken,
  stamping the SignatureValue octets (RFC 3161 Appendix A), from govpki's own TSA — proof that
  the signature existed before its certificate expired or was revoked.

Verification (:func:`verify_cms`) reports, per signer: the certificate, claimed signing time,
timestamp time, integrity (messageDigest and signature), the chain to the given trust roots
(pyhanko-certvalidator), revocation (when a checker is given) and the reasons for any failure.
A signature that parses but fails is a result (``valid=False``), never an exception; input that
cannot be judged at all raises a :mod:`signing.cms_errors` error. Large files are digested in
chunks, never held in memory (detached signatures).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import datetime as dt
import enum
import functools
import hashlib
import itertools
import logging
import os
import secrets
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)

from core.errors import GovpkiError
from hsm.signer import Signer
from signing.cms_errors import (
    CertificateKeyMismatch,
    CertificateNotUsable,
    ContentMissing,
    EmptyContent,
    InputTooLarge,
    InputUnreadable,
    InvalidCertificate,
    MalformedCms,
    TimestampFailed,
    UnsupportedAlgorithm,
)

if TYPE_CHECKING:
    from ca.context import CaContext

log = logging.getLogger(__name__)

__all__ = [
    "MAX_ATTACHED_BYTES",
    "MAX_DETACHED_BYTES",
    "MAX_SIGNATURE_BYTES",
    "CmsVerification",
    "DataSource",
    "RevocationChecker",
    "RevocationStatus",
    "SignerVerification",
    "TimestampVerification",
    "Timestamper",
    "http_timestamper",
    "load_certificates",
    "parse_signed_data",
    "sign_cms",
    "store_revocation",
    "tsa_timestamper",
    "verify_cms",
]

# -- limits and algorithm tables ---------------------------------------------------------------

MAX_DETACHED_BYTES = 8 * 1024**3
"""Detached content is streamed; the limit only refuses absurd input (8 GiB)."""
MAX_ATTACHED_BYTES = 256 * 1024**2
"""Encapsulated content is held in memory by asn1crypto: 256 MiB."""
MAX_SIGNATURE_BYTES = MAX_ATTACHED_BYTES + 4 * 1024**2
"""A CMS object: encapsulated content plus certificates and timestamps."""
MAX_TSA_RESPONSE_BYTES = 1024**2
CHUNK_BYTES = 1024**2

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
OID_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"
OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
OID_SIGNATURE_TIME_STAMP = "1.2.840.113549.1.9.16.2.14"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_DIGEST_OIDS = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "1.3.14.3.2.26": "sha1",
    "1.2.840.113549.2.5": "md5",
}
# signatureAlgorithm OID → (family, hash it implies or None). rsaEncryption and id-ecPublicKey
# carry no hash: the SignerInfo's digestAlgorithm says which (openssl writes rsaEncryption).
_SIGNATURE_OIDS: dict[str, tuple[str, str | None]] = {
    "1.2.840.113549.1.1.1": ("rsa", None),
    "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.113549.1.1.10": ("rsa-pss", None),
    "1.2.840.10045.2.1": ("ecdsa", None),
    "1.2.840.10045.4.3.2": ("ecdsa", "sha256"),
    "1.2.840.10045.4.3.3": ("ecdsa", "sha384"),
    "1.2.840.10045.4.3.4": ("ecdsa", "sha512"),
}
# Extended key usages that make a certificate fit to sign documents, when it has an EKU at all:
# emailProtection (openssl's smimesign purpose), documentSigning (RFC 9336), anyExtendedKeyUsage,
# and the two PDF readers know (Microsoft document signing, Adobe authentic documents).
DOCUMENT_SIGNING_EKUS = frozenset({
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string,
    "1.3.6.1.5.5.7.3.36",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string,
    "1.3.6.1.4.1.311.10.3.12",
    "1.2.840.113583.1.1.5",
})
TIME_STAMPING_EKU = ExtendedKeyUsageOID.TIME_STAMPING.dotted_string

DataSource = bytes | bytearray | memoryview | os.PathLike[str]
"""Content: bytes in memory, or the path of a file (streamed when the signature is detached)."""
Timestamper = Callable[[bytes], bytes]
"""Takes the SignatureValue octets, returns a DER TimeStampToken (ContentInfo) stamping them."""


class RevocationStatus(enum.StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"
    NOT_CHECKED = "not-checked"


RevocationChecker = Callable[[x509.Certificate, x509.Certificate, dt.datetime], str]
"""``(certificate, issuer, moment) -> "good" | "revoked" | "unknown"``: the status at
``moment``. :func:`store_revocation` answers from govpki's own CA store; an OCSP or CRL client
can stand in for a remote verifier."""


# -- certificates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cert:
    """One certificate in the three forms the code needs, parsed once."""

    der: bytes
    asn1: asn1_x509.Certificate
    pyca: x509.Certificate

    @classmethod
    def from_der(cls, der: bytes) -> _Cert:
        """The parsed certificate, from a bounded per-process cache of DER bytes.

        A relying party meets the same few certificates (a seal's, its issuing CA's, the root)
        in every message it verifies, and parsing them — asn1crypto's name preparation above
        all — was most of a document exchange's CPU time. Both views are only read after
        parsing, so one parse can serve every message; a failure is not cached.
        """
        return _parsed_certificate(bytes(der))

    @classmethod
    def parse(cls, der: bytes) -> _Cert:
        """Parse both views and touch every field used later: pyca and asn1crypto decode
        lazily, and a damaged certificate must fail here (ValueError), not mid-verification."""
        with warnings.catch_warnings():
            # pyca warns, and will refuse, a non-positive serial (RFC 5280 §4.1.2.2): refuse now.
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            try:
                pyca = x509.load_der_x509_certificate(der)
            except CryptographyDeprecationWarning as exc:
                raise ValueError(f"certificate not allowed by RFC 5280: {exc}") from None
        asn1 = asn1_x509.Certificate.load(der)
        try:
            pyca.subject.rfc4514_string()
            pyca.issuer.rfc4514_string()
            pyca.public_key()
            pyca.extensions  # noqa: B018
            pyca.not_valid_before_utc  # noqa: B018
            pyca.not_valid_after_utc  # noqa: B018
            asn1.issuer.hashable  # noqa: B018 (names as certvalidator compares them)
            asn1.subject.hashable  # noqa: B018
            asn1.serial_number  # noqa: B018
            asn1.key_identifier  # noqa: B018
        except ValueError:
            raise
        except Exception as exc:  # UnsupportedAlgorithm, asn1crypto's TypeError/KeyError...
            raise ValueError(f"unusable certificate: {type(exc).__name__}") from None
        return cls(der, asn1, pyca)

    @property
    def subject(self) -> str:
        return self.pyca.subject.rfc4514_string()

    @property
    def serial_hex(self) -> str:
        return format(self.pyca.serial_number, "x")


@functools.lru_cache(maxsize=256)
def _parsed_certificate(der: bytes) -> _Cert:
    return _Cert.parse(der)


CertificateInput: TypeAlias = "x509.Certificate | asn1_x509.Certificate | bytes | bytearray | str"


def load_certificates(value: CertificateInput | Iterable[CertificateInput],
                      what: str = "certificate") -> list[x509.Certificate]:
    """Certificates from pyca or asn1crypto objects, DER bytes, or PEM (one or a bundle)."""
    return [c.pyca for c in _load_all(value, what)]


def _load_all(value: CertificateInput | Iterable[CertificateInput], what: str) -> list[_Cert]:
    if isinstance(value, x509.Certificate | asn1_x509.Certificate | bytes | bytearray | str):
        return _load_one(value, what)
    out: list[_Cert] = []
    for item in value:
        out.extend(_load_one(item, what))
    return out


def _load_one(value: CertificateInput, what: str) -> list[_Cert]:
    if isinstance(value, x509.Certificate):
        return [_Cert.from_der(value.public_bytes(serialization.Encoding.DER))]
    if isinstance(value, asn1_x509.Certificate):
        return [_Cert.from_der(value.dump())]
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    if not isinstance(value, bytes | bytearray):
        raise InvalidCertificate(f"{what} must be a certificate, PEM or DER bytes, not "
                                 f"{type(value).__name__}")
    data = bytes(value)
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
            return [_Cert.from_der(c.public_bytes(serialization.Encoding.DER)) for c in certs]
        return [_Cert.from_der(data)]
    except (ValueError, TypeError):
        raise InvalidCertificate(f"{what} is not a PEM or DER X.509 certificate") from None


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_signing_certificate(cert: _Cert, signer: Signer, at: dt.datetime) -> None:
    """Refuse before signing what no verifier would accept (and say which rule)."""
    if _spki(cert.pyca.public_key()) != _spki(signer.public_key()):
        raise CertificateKeyMismatch(
            f"the key {signer.key_uri} does not belong to the certificate {cert.subject} "
            f"(serial {cert.serial_hex}): the public keys differ")
    if not cert.pyca.not_valid_before_utc <= at <= cert.pyca.not_valid_after_utc:
        raise CertificateNotUsable(
            f"the certificate {cert.subject} is valid from "
            f"{cert.pyca.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.pyca.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not at "
            f"{at:%Y-%m-%d %H:%M} UTC")
    problem = _signing_usage_problem(cert.pyca)
    if problem:
        raise CertificateNotUsable(f"the certificate {cert.subject} is not meant for signing "
                                   f"documents: {problem}")


def _signing_usage_problem(cert: x509.Certificate) -> str | None:
    """RFC 5280 §4.2.1.3/§4.2.1.12 as document verifiers apply them: digitalSignature or
    nonRepudiation, and an EKU (if any) that allows document signing."""
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (ku.digital_signature or ku.content_commitment):
            return "its key usage has neither digitalSignature nor nonRepudiation"
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        return "its key usage extension cannot be read"
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        return "its extended key usage extension cannot be read"
    if not {o.dotted_string for o in eku} & DOCUMENT_SIGNING_EKUS:
        names = ", ".join(_eku_name(o) for o in eku)
        return f"its extended key usage ({names}) allows no document signing"
    return None


def _eku_name(oid: ObjectIdentifier) -> str:
    name = getattr(oid, "_name", None)
    return name if isinstance(name, str) and name != "Unknown OID" else oid.dotted_string


# -- content ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Content:
    digests: dict[str, bytes]
    size: int
    data: bytes | None  # kept only when asked (attached signatures)


def _hash_name(digest: str) -> str:
    name = digest.lower().replace("-", "")
    if name not in _HASHES:
        raise UnsupportedAlgorithm(f"digest {digest!r} is not supported (sha256, sha384, "
                                   f"sha512)")
    return name


def _read_content(data: DataSource, hash_names: Iterable[str], *, keep: bool, max_bytes: int,
                  what: str = "data") -> _Content:
    """Digest ``data`` with every hash in one pass; a file is read in chunks."""
    names = sorted(set(hash_names))
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if not raw:
            raise EmptyContent(f"the {what} is empty (0 bytes): there is nothing to sign")
        if len(raw) > max_bytes:
            raise InputTooLarge(f"the {what} is {len(raw)} bytes, over the limit of "
                                f"{max_bytes} bytes")
        return _Content({n: hashlib.new(n, raw).digest() for n in names}, len(raw),
                        raw if keep else None)
    if isinstance(data, str) or not isinstance(data, os.PathLike):
        raise TypeError(f"{what} must be bytes or a path (pathlib.Path), not "
                        f"{type(data).__name__}")
    path = Path(data)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise EmptyContent(f"{path.name} is empty (0 bytes): there is nothing to sign")
            if size > max_bytes:
                raise InputTooLarge(f"{path.name} is {size} bytes, over the limit of "
                                    f"{max_bytes} bytes")
            hashers = [hashlib.new(n) for n in names]
            kept: list[bytes] = []
            total = 0
            while chunk := fh.read(CHUNK_BYTES):
                total += len(chunk)
                if total > max_bytes:  # the file grew while we read it
                    raise InputTooLarge(f"{path.name} is over the limit of {max_bytes} bytes")
                for h in hashers:
                    h.update(chunk)
                if keep:
                    kept.append(chunk)
    except OSError as exc:
        raise InputUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    if total == 0:
        raise EmptyContent(f"{path.name} is empty (0 bytes): there is nothing to sign")
    return _Content({n: h.digest() for n, h in zip(names, hashers, strict=True)}, total,
                    b"".join(kept) if keep else None)


# -- signing ---------------------------------------------------------------------------------------


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise TypeError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(dt.UTC)


def _cms_time(value: dt.datetime) -> cms.Time:
    """RFC 5652 §11.3: UTCTime for 1950-2049, GeneralizedTime otherwise; whole seconds."""
    value = value.replace(microsecond=0)
    if 1950 <= value.year < 2050:
        return cms.Time({"utc_time": value})
    return cms.Time({"generalized_time": value})


def _ess_signing_certificate_v2(cert: _Cert) -> cms.CMSAttribute:
    """RFC 5035 §3: ESSCertIDv2 with SHA-256 (the DEFAULT, so hashAlgorithm is omitted in DER)
    and issuerSerial, which tells a re-issued certificate for the same key apart."""
    return cms.CMSAttribute.load(_ess_attribute_der(cert.der))


@functools.lru_cache(maxsize=256)
def _ess_attribute_der(cert_der: bytes) -> bytes:
    """Encoded once per certificate: asn1crypto spends milliseconds building a structure from
    Python values, and hands back a loaded one's bytes for free (as signing/tsa.py does)."""
    cert = asn1_x509.Certificate.load(cert_der)
    issuer = asn1_x509.Name.load(cert.issuer.dump())
    return bytes(cms.CMSAttribute({
        "type": "signing_certificate_v2",
        "values": [{"certs": [tsp.ESSCertIDv2({
            "hash_algorithm": {"algorithm": "sha256"},
            "cert_hash": hashlib.sha256(cert_der).digest(),
            "issuer_serial": {
                "issuer": [asn1_x509.GeneralName({"directory_name": issuer})],
                "serial_number": cert.serial_number,
            },
        })]}],
    }).dump())


def _signature_algorithm(signer: Signer, hash_name: str) -> str:
    key = signer.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"{hash_name}_rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"{hash_name}_ecdsa"
    raise UnsupportedAlgorithm(f"the key {signer.key_uri} is a {type(key).__name__}: CMS "
                               f"signatures need an RSA or EC key")


def _verify_raw(key: PublicKeyTypes, signature: bytes, data: bytes,
                hash_algorithm: hashes.HashAlgorithm) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_algorithm))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _sign_checked(signer: Signer, cert: _Cert, tbs: bytes, hash_name: str) -> bytes:
    """Sign and check the result with the certificate's key before anyone sees it.

    The Signer contract is DER ECDSA-Sig-Value; a token driver that hands back raw r||s
    (DESIGN.md, Pitfalls) is caught here and encoded, anything else that does not verify is
    refused rather than written into a signature nobody can check.
    """
    hash_algorithm = _HASHES[hash_name]()
    signature = signer.sign(tbs, hash_algorithm)
    key = cert.pyca.public_key()
    if _verify_raw(key, signature, tbs, hash_algorithm):
        return signature
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        if len(signature) == 2 * size:
            der = utils.encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                             int.from_bytes(signature[size:], "big"))
            if _verify_raw(key, der, tbs, hash_algorithm):
                return der
    raise CertificateKeyMismatch(f"the signature made with {signer.key_uri} does not verify "
                                 f"with the certificate {cert.subject}")


def _signed_attrs_tbs(attrs: cms.CMSAttributes) -> bytes:
    """RFC 5652 §5.4: the signature covers the DER of the attributes as a SET OF (tag 0x31);
    SignerInfo then carries the same contents as [0] IMPLICIT."""
    return bytes(attrs.dump())


def sign_cms(data: DataSource, signer: Signer, certificate: CertificateInput,
             chain: Iterable[CertificateInput] = (), *, detached: bool = True,
             digest: str = "sha256", timestamp: Timestamper | None = None,
             signed_attributes: Sequence[cms.CMSAttribute] = (),
             signing_time: dt.datetime | None = None,
             max_bytes: int | None = None) -> bytes:
    """DER ContentInfo(SignedData) over ``data``, signed by ``signer`` for ``certificate``.

    ``data`` is bytes or a :class:`pathlib.Path`; a detached signature streams the file,
    an attached one (``detached=False``) encapsulates it (up to :data:`MAX_ATTACHED_BYTES`).
    ``chain`` is the issuing CAs (the root may be included); ``timestamp`` adds an RFC 3161
    signature timestamp (see :func:`tsa_timestamper`, :func:`http_timestamper`).
    ``signed_attributes`` adds attributes such as an RFC 2634 receipt request
    (:func:`signing.cms_receipt.make_receipt_request`). ``signing_time`` is for tests and
    archives; it defaults to now.

    Refuses (typed errors): empty or oversized content, a key that is not the certificate's,
    a certificate that is expired, not yet valid, or not meant for signing, a digest other than
    SHA-256/384/512, a TSA that fails.
    """
    hash_name = _hash_name(digest)
    limit = max_bytes if max_bytes is not None else (
        MAX_DETACHED_BYTES if detached else MAX_ATTACHED_BYTES)
    if not detached:
        limit = min(limit, MAX_ATTACHED_BYTES)
    content = _read_content(data, [hash_name], keep=not detached, max_bytes=limit)
    return _sign_econtent(
        econtent_type=OID_DATA, digest_value=content.digests[hash_name],
        econtent=content.data, signer=signer, certificate=certificate, chain=chain,
        hash_name=hash_name, timestamp=timestamp, extra_attributes=signed_attributes,
        signing_time=signing_time)


def _sign_econtent(*, econtent_type: str, digest_value: bytes, econtent: bytes | None,
                   signer: Signer, certificate: CertificateInput,
                   chain: Iterable[CertificateInput], hash_name: str,
                   timestamp: Timestamper | None, extra_attributes: Sequence[cms.CMSAttribute],
                   signing_time: dt.datetime | None) -> bytes:
    """SignedData with one SignerInfo over already-digested content (also used for receipts)."""
    when = _aware(signing_time, "signing_time") if signing_time is not None else _utcnow()
    certs = _load_all(certificate, "certificate")
    if len(certs) != 1:
        raise InvalidCertificate(f"certificate must be one certificate, not {len(certs)} "
                                 f"(pass the issuing CAs as chain)")
    cert = certs[0]
    chain_certs = _load_all(chain, "chain certificate")
    _check_signing_certificate(cert, signer, when)
    signature_algorithm = _signature_algorithm(signer, hash_name)

    attributes = [
        cms.CMSAttribute({"type": "content_type", "values": [econtent_type]}),
        cms.CMSAttribute({"type": "signing_time", "values": [_cms_time(when)]}),
        cms.CMSAttribute({"type": "message_digest", "values": [digest_value]}),
        _ess_signing_certificate_v2(cert),
    ]
    taken = {a["type"].dotted for a in attributes}
    for extra in extra_attributes:
        oid = extra["type"].dotted
        if oid in taken:
            raise ValueError(f"signed_attributes must not repeat attribute {oid}: govpki sets "
                             f"contentType, signingTime, messageDigest and "
                             f"signingCertificateV2 itself")
        taken.add(oid)
        attributes.append(extra)
    signed_attrs = cms.CMSAttributes(attributes)
    signature = _sign_checked(signer, cert, _signed_attrs_tbs(signed_attrs), hash_name)

    signer_info: dict[str, Any] = {
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": cert.asn1.issuer, "serial_number": cert.asn1.serial_number}}),
        "digest_algorithm": {"algorithm": hash_name},
        "signed_attrs": signed_attrs,
        "signature_algorithm": {"algorithm": signature_algorithm},
        "signature": signature,
    }
    if timestamp is not None:
        token = _timestamp_token(timestamp, signature)
        signer_info["unsigned_attrs"] = [cms.CMSAttribute({
            "type": "signature_time_stamp_token", "values": [token]})]

    bundle: list[asn1_x509.Certificate] = []
    seen: set[bytes] = set()
    for c in [cert, *chain_certs]:
        if c.der not in seen:
            seen.add(c.der)
            bundle.append(asn1_x509.Certificate.load(c.der))
    encap: dict[str, Any] = {"content_type": econtent_type}
    if econtent is not None:
        encap["content"] = econtent
    signed_data = cms.SignedData({
        # RFC 5652 §5.1: v1 for id-data content with issuerAndSerialNumber signers, v3 for any
        # other eContentType (receipts).
        "version": "v1" if econtent_type == OID_DATA else "v3",
        "digest_algorithms": [{"algorithm": hash_name}],
        "encap_content_info": encap,
        "certificates": bundle,
        "signer_infos": [signer_info],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


# -- timestamps (RFC 3161) ---------------------------------------------------------------------


def _timestamp_token(timestamp: Timestamper, signature: bytes) -> cms.ContentInfo:
    """RFC 3161 Appendix A: the token stamps the SignatureValue octets; checked before use."""
    try:
        token_der = timestamp(signature)
    except GovpkiError:
        raise
    except Exception as exc:
        raise TimestampFailed(f"the time-stamp authority failed: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from exc
    try:
        token = cms.ContentInfo.load(bytes(token_der), strict=True)
        imprint = token["content"]["encap_content_info"]["content"].parsed["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].dotted
        hashed = imprint["hashed_message"].native
    except Exception:
        raise TimestampFailed("the time-stamp authority's answer is not a TimeStampToken") \
            from None
    name = _DIGEST_OIDS.get(algorithm)
    if name not in _HASHES or hashlib.new(str(name), signature).digest() != hashed:
        raise TimestampFailed("the timestamp token does not stamp this signature value")
    return token


class _TimeStampResp(core.Sequence):
    """RFC 3161 §2.4.2 TimeStampResp with timeStampToken OPTIONAL (asn1crypto's class makes it
    mandatory, so it cannot read a rejection)."""

    _fields = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def timestamp_query(message: bytes, digest: str = "sha256") -> tuple[bytes, int]:
    """DER TimeStampReq over ``message`` with a 64-bit nonce and certReq; returns (query, nonce)."""
    hash_name = _hash_name(digest)
    nonce = secrets.randbits(63) | 1
    query = tsp.TimeStampReq({
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": hash_name},
                            "hashed_message": hashlib.new(hash_name, message).digest()},
        "nonce": nonce,
        "cert_req": True,
    })
    return bytes(query.dump()), nonce


def token_from_response(response: bytes, message: bytes, digest: str, nonce: int) -> bytes:
    """The TimeStampToken of a granted TimeStampResp, checked against our query."""
    try:
        resp = _TimeStampResp.load(bytes(response), strict=True)
        status = resp["status"]["status"].native
        texts = resp["status"]["status_string"].native or []
        failure = resp["status"]["fail_info"].native
    except Exception:
        raise TimestampFailed("the time-stamp authority's answer is not a TimeStampResp") \
            from None
    if status not in ("granted", "granted_with_mods"):
        detail = "; ".join(str(t) for t in texts) or "no reason given"
        bits = f" [{', '.join(sorted(failure))}]" if failure else ""
        raise TimestampFailed(f"the time-stamp authority refused: {status}{bits} ({detail})")
    try:
        token = resp["time_stamp_token"]
        tst = token["content"]["encap_content_info"]["content"].parsed
        got_nonce = tst["nonce"].native
        hashed = tst["message_imprint"]["hashed_message"].native
        token_der = bytes(token.dump())
    except Exception:
        raise TimestampFailed("the time-stamp authority's token cannot be read") from None
    if got_nonce != nonce:
        raise TimestampFailed("the timestamp token does not answer our request (nonce differs)")
    if hashed != hashlib.new(_hash_name(digest), message).digest():
        raise TimestampFailed("the timestamp token stamps other data than our signature")
    return token_der


def tsa_timestamper(respond: Callable[[bytes], bytes], *, digest: str = "sha256") -> Timestamper:
    """A :data:`Timestamper` over an in-process TSA (``TimeStampAuthority.respond``)."""
    hash_name = _hash_name(digest)

    def stamp(message: bytes) -> bytes:
        query, nonce = timestamp_query(message, hash_name)
        return token_from_response(respond(query), message, hash_name, nonce)

    return stamp


def http_timestamper(url: str, *, digest: str = "sha256", timeout: float = 10.0) -> Timestamper:
    """A :data:`Timestamper` over RFC 3161 HTTP (``POST application/timestamp-query``),
    e.g. govpki's ``http://host:8600/tsa``."""
    hash_name = _hash_name(digest)
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"timestamp URL must be http:// or https://, not {url!r}")

    def stamp(message: bytes) -> bytes:
        query, nonce = timestamp_query(message, hash_name)
        request = urllib.request.Request(url, data=query, method="POST", headers={  # noqa: S310
            "Content-Type": "application/timestamp-query",
            "Accept": "application/timestamp-reply"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                body = response.read(MAX_TSA_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise TimestampFailed(f"the time-stamp authority at {url} answered HTTP "
                                  f"{exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TimestampFailed(f"the time-stamp authority at {url} cannot be reached: "
                                  f"{reason}") from None
        if len(body) > MAX_TSA_RESPONSE_BYTES:
            raise TimestampFailed(f"the time-stamp authority at {url} sent more than "
                                  f"{MAX_TSA_RESPONSE_BYTES} bytes")
        return token_from_response(body, message, hash_name, nonce)

    return stamp


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


# -- parsing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedSignerInfo:
    """One SignerInfo, every field decoded (asn1crypto parses lazily; nothing is left to fail
    later). ``attributes`` maps each signed attribute's OID to the DER of its values."""

    index: int
    sid_issuer: asn1_x509.Name | None
    sid_serial: int | None
    sid_key_id: bytes | None
    digest_oid: str
    signature_oid: str
    signature_parameters: Any
    signature: bytes
    signed_attrs_der: bytes | None  # the SET OF encoding the signature covers
    attributes: Mapping[str, tuple[bytes, ...]]
    unsigned: Mapping[str, tuple[bytes, ...]]

    @property
    def digest_name(self) -> str:
        return _DIGEST_OIDS.get(self.digest_oid, self.digest_oid)


@dataclass(frozen=True)
class ParsedSignedData:
    content_type: str
    content: bytes | None  # encapsulated content; None for a detached signature
    certificates: tuple[_Cert, ...]
    signer_infos: tuple[ParsedSignerInfo, ...]


def _der_header(tag: int, length: int) -> bytes:
    if length < 0x80:
        return bytes([tag, length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(body)]) + body


_CHECKED_ATTRIBUTES = frozenset({OID_CONTENT_TYPE, OID_MESSAGE_DIGEST, OID_SIGNING_TIME,
                                 OID_SIGNING_CERTIFICATE, OID_SIGNING_CERTIFICATE_V2})


def _attributes(attrs: Any, *, signed: bool) -> dict[str, tuple[bytes, ...]]:
    out: dict[str, tuple[bytes, ...]] = {}
    if not isinstance(attrs, cms.CMSAttributes):
        return out
    for attr in attrs:
        oid = attr["type"].dotted
        if signed and oid in _CHECKED_ATTRIBUTES:
            attr["values"].native  # noqa: B018 (a damaged value fails here, as MalformedCms)
        values = tuple(bytes(v.dump()) for v in attr["values"])
        if oid in out:
            if signed:
                # RFC 5652 §5.3 / §11: contentType, messageDigest and signingTime appear once;
                # a repeated signed attribute is refused rather than guessed at.
                raise ValueError(f"signed attribute {oid} appears twice")
            values = out[oid] + values  # unsigned ones (timestamps) may be added one by one
        out[oid] = values
    return out


def parse_signed_data(signature: bytes, *, expected_content_type: str | None = None
                      ) -> ParsedSignedData:
    """Decode a DER (or BER, or PEM-armoured) ContentInfo(SignedData) completely.

    Raises :class:`MalformedCms` for anything that is not one, :class:`EmptyContent` for no
    bytes and :class:`InputTooLarge` over :data:`MAX_SIGNATURE_BYTES`. Used by
    :func:`verify_cms` and the receipt code; callers that need a raw field use it too.
    """
    if not isinstance(signature, bytes | bytearray | memoryview):
        raise TypeError(f"signature must be bytes, not {type(signature).__name__}")
    raw = bytes(signature)
    if not raw:
        raise EmptyContent("the signature is empty (0 bytes)")
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise InputTooLarge(f"the signature is {len(raw)} bytes, over the limit of "
                            f"{MAX_SIGNATURE_BYTES} bytes")
    raw = _unarmour(raw)
    try:
        return _parse(raw, expected_content_type)
    except GovpkiError:
        raise
    except Exception:
        raise MalformedCms("not a CMS SignedData: the bytes do not decode as one "
                           "(garbage, truncated or damaged)") from None


def _unarmour(raw: bytes) -> bytes:
    """PEM ``-----BEGIN CMS-----`` / ``PKCS7`` armour → DER (openssl -outform PEM)."""
    head = raw.lstrip()[:30]
    if not head.startswith(b"-----BEGIN"):
        return raw
    lines = [line.strip() for line in raw.strip().splitlines()]
    body = b"".join(line for line in lines if line and not line.startswith(b"-----"))
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedCms("the PEM armour does not contain base64") from None


def _parse(raw: bytes, expected: str | None) -> ParsedSignedData:
    info = cms.ContentInfo.load(raw, strict=True)
    outer = info["content_type"].dotted
    if outer != OID_SIGNED_DATA:
        name = info["content_type"].native
        raise MalformedCms(f"not a CMS SignedData (its content type is {name}, {outer})")
    sd = info["content"]
    sd["version"].native  # noqa: B018 (decode now: asn1crypto parses lazily)
    [d["algorithm"].dotted for d in sd["digest_algorithms"]]
    encap = sd["encap_content_info"]
    content_type = encap["content_type"].dotted
    if expected is not None and content_type != expected:
        raise MalformedCms(f"the signed content is {content_type}, not {expected}")
    content_field = encap["content"]
    content: bytes | None = None
    if content_field.native is not None:
        # ParsableOctetString: .native merges a BER constructed OCTET STRING's chunks.
        native = content_field.native
        content = native if isinstance(native, bytes) else bytes(content_field)
    certificates: list[_Cert] = []
    certificate_set = sd["certificates"]
    for choice in certificate_set if isinstance(certificate_set, cms.CertificateSet) else []:
        if choice.name != "certificate":
            continue  # attribute and other certificates play no part here
        der = bytes(choice.chosen.dump())
        try:
            certificates.append(_Cert.from_der(der))
        except ValueError:
            continue  # a certificate pyca cannot read cannot be the signer's: ignore it
    signer_infos = [_parse_signer_info(i, si) for i, si in enumerate(sd["signer_infos"])]
    return ParsedSignedData(content_type, content, tuple(certificates), tuple(signer_infos))


def _parse_signer_info(index: int, si: cms.SignerInfo) -> ParsedSignerInfo:
    sid = si["sid"]
    issuer = serial = key_id = None
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        issuer.native  # noqa: B018
        serial = int(sid.chosen["serial_number"].native)
    else:
        key_id = bytes(sid.chosen.native)
    signed = si["signed_attrs"]
    signed_der: bytes | None = None
    attributes: dict[str, tuple[bytes, ...]] = {}
    if isinstance(signed, cms.CMSAttributes):
        contents = bytes(signed.contents)
        signed_der = _der_header(0x31, len(contents)) + contents
        attributes = _attributes(signed, signed=True)
    algo = si["signature_algorithm"]
    parameters = algo["parameters"]
    if parameters is not None:
        parameters.native  # noqa: B018
    return ParsedSignerInfo(
        index=index, sid_issuer=issuer, sid_serial=serial, sid_key_id=key_id,
        digest_oid=si["digest_algorithm"]["algorithm"].dotted,
        signature_oid=algo["algorithm"].dotted, signature_parameters=parameters,
        signature=bytes(si["signature"].native), signed_attrs_der=signed_der,
        attributes=attributes, unsigned=_attributes(si["unsigned_attrs"], signed=False))


# -- verification results ----------------------------------------------------------------------


@dataclass(frozen=True)
class TimestampVerification:
    """An RFC 3161 signature timestamp: when, by which TSA, and whether it holds."""

    time: dt.datetime | None
    valid: bool
    tsa_subject: str | None
    tsa_serial: str | None
    policy: str | None
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"time": _iso(self.time), "valid": self.valid, "tsa_subject": self.tsa_subject,
                "tsa_serial": self.tsa_serial, "policy": self.policy,
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class SignerVerification:
    """One SignerInfo's outcome. ``valid`` needs integrity, a chain to a trust root, a
    certificate fit for signing, a good (or unchecked) revocation state and, if present, a
    valid timestamp."""

    valid: bool
    reasons: tuple[str, ...]
    certificate: x509.Certificate | None
    digest_algorithm: str
    signature_algorithm: str
    signing_time: dt.datetime | None
    timestamp: TimestampVerification | None
    integrity: bool
    chain_valid: bool
    chain: tuple[x509.Certificate, ...]  # signer first, trust root last
    revocation: RevocationStatus
    validated_at: dt.datetime
    attributes: Mapping[str, tuple[bytes, ...]] = field(repr=False)
    warnings: tuple[str, ...] = ()

    @property
    def subject(self) -> str | None:
        return self.certificate.subject.rfc4514_string() if self.certificate else None

    def as_dict(self) -> dict[str, Any]:
        cert = self.certificate
        return {
            "valid": self.valid,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "subject": self.subject,
            "serial": format(cert.serial_number, "x") if cert else None,
            "issuer": cert.issuer.rfc4514_string() if cert else None,
            "digest_algorithm": self.digest_algorithm,
            "signature_algorithm": self.signature_algorithm,
            "signing_time": _iso(self.signing_time),
            "timestamp": self.timestamp.as_dict() if self.timestamp else None,
            "integrity": self.integrity,
            "chain_valid": self.chain_valid,
            "chain": [c.subject.rfc4514_string() for c in self.chain],
            "revocation": self.revocation.value,
            "validated_at": _iso(self.validated_at),
        }


@dataclass(frozen=True)
class CmsVerification:
    """The verdict on a CMS SignedData. ``valid`` only when there is at least one signer and
    every signer is valid; ``reasons`` says why not, each naming its signer."""

    valid: bool
    reasons: tuple[str, ...]
    detached: bool
    content_type: str
    signers: tuple[SignerVerification, ...]
    content: bytes | None = field(default=None, repr=False)  # encapsulated content

    @property
    def signer(self) -> SignerVerification | None:
        return self.signers[0] if self.signers else None

    @property
    def signer_certificate(self) -> x509.Certificate | None:
        return self.signers[0].certificate if self.signers else None

    @property
    def signing_time(self) -> dt.datetime | None:
        return self.signers[0].signing_time if self.signers else None

    @property
    def timestamp_time(self) -> dt.datetime | None:
        first = self.signers[0] if self.signers else None
        return first.timestamp.time if first and first.timestamp else None

    @property
    def integrity(self) -> bool:
        return bool(self.signers) and all(s.integrity for s in self.signers)

    @property
    def chain_valid(self) -> bool:
        return bool(self.signers) and all(s.chain_valid for s in self.signers)

    def as_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "reasons": list(self.reasons), "detached": self.detached,
                "content_type": self.content_type,
                "signers": [s.as_dict() for s in self.signers]}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- verification ------------------------------------------------------------------------------


def verify_cms(signature: bytes, data: DataSource | None = None, *,
               trust_roots: CertificateInput | Iterable[CertificateInput],
               at: dt.datetime | None = None, revocation: RevocationChecker | None = None,
               other_certificates: Iterable[CertificateInput] = (),
               max_bytes: int = MAX_DETACHED_BYTES) -> CmsVerification:
    """Verify a CMS SignedData (DER, BER or PEM) against ``trust_roots``.

    ``data`` is required for a detached signature (bytes or a path, streamed) and, for an
    attached one, must equal the encapsulated content if given. ``at`` fixes the validation
    time; without it a valid timestamp's time is used (the signature provably existed then),
    else now. ``revocation`` is asked about every certificate below the trust root at that
    time. ``other_certificates`` helps build paths when the signature lacks intermediates.

    Returns a :class:`CmsVerification`; raises only for input that cannot be judged
    (:class:`MalformedCms`, :class:`ContentMissing`, :class:`EmptyContent`,
    :class:`InputTooLarge`, :class:`InvalidCertificate` for the roots).
    """
    roots = _load_all(trust_roots, "trust root")
    if not roots:
        raise InvalidCertificate("no trust roots given: a signature is only as good as the "
                                 "root it chains to")
    extra = _load_all(other_certificates, "other certificate")
    at = _aware(at, "at") if at is not None else None
    parsed = parse_signed_data(signature)
    detached = parsed.content is None
    if detached and data is None:
        raise ContentMissing("the signature is detached: give the signed data to verify it "
                             "against")
    hash_names = {si.digest_name for si in parsed.signer_infos} & set(_HASHES)
    reasons: list[str] = []
    if parsed.content is not None:
        digests = {n: hashlib.new(n, parsed.content).digest() for n in hash_names}
        if data is not None:
            given = _read_content(data, ["sha256"], keep=False, max_bytes=max_bytes)
            if given.digests["sha256"] != hashlib.sha256(parsed.content).digest():
                reasons.append("the given data differ from the content inside the signature")
    else:
        assert data is not None
        digests = _read_content(data, hash_names or ["sha256"], keep=False,
                                max_bytes=max_bytes).digests
    now = _utcnow()
    try:
        signers = tuple(
            _verify_signer(si, parsed.content_type, digests, parsed.certificates + tuple(extra),
                           roots, at=at, now=now, revocation=revocation)
            for si in parsed.signer_infos)
    except GovpkiError:
        raise
    except Exception as exc:  # a damaged field no check above foresaw: still no stack trace
        log.warning("CMS signature could not be checked", exc_info=True)
        raise MalformedCms(f"the signature cannot be checked: a field is damaged "
                           f"({type(exc).__name__})") from None
    if not signers:
        reasons.append("the SignedData has no signers")
    for s in signers:
        who = s.subject or "an unknown signer"
        reasons.extend(f"{who}: {r}" for r in s.reasons)
    return CmsVerification(valid=not reasons and all(s.valid for s in signers),
                           reasons=tuple(reasons), detached=detached,
                           content_type=parsed.content_type, signers=signers,
                           content=parsed.content)


def _find_certificate(si: ParsedSignerInfo, certs: Sequence[_Cert]) -> _Cert | None:
    for c in certs:
        if si.sid_key_id is not None:
            ski = c.asn1.key_identifier
            if ski is not None and ski == si.sid_key_id:
                return c
        elif (c.pyca.serial_number == si.sid_serial and si.sid_issuer is not None
              and (c.asn1.issuer.dump() == si.sid_issuer.dump()
                   or c.asn1.issuer == si.sid_issuer)):
            return c
    return None


def _check_integrity(si: ParsedSignerInfo, content_type: str, digest: bytes | None,
                     cert: _Cert) -> list[str]:
    """RFC 5652 §5.4-§5.6 and §11.1/§11.2 for one SignerInfo; returns what failed."""
    reasons: list[str] = []
    hash_name = si.digest_name
    if hash_name not in _HASHES:
        return [f"digest algorithm {hash_name} is not accepted (SHA-256, SHA-384, SHA-512)"]
    assert digest is not None
    if si.signed_attrs_der is not None:
        ctype = si.attributes.get(OID_CONTENT_TYPE)
        if ctype is None or len(ctype) != 1:
            reasons.append("the contentType attribute is missing or has several values")
        elif core.ObjectIdentifier.load(ctype[0]).dotted != content_type:
            reasons.append("the contentType attribute does not match the signed content")
        md = si.attributes.get(OID_MESSAGE_DIGEST)
        if md is None or len(md) != 1:
            reasons.append("the messageDigest attribute is missing or has several values")
        elif core.OctetString.load(md[0]).native != digest:
            reasons.append("the data do not match the signature (message digest differs): "
                           "changed, or other data")
        tbs = si.signed_attrs_der
        prehashed = False
    else:
        if content_type != OID_DATA:
            reasons.append("signed attributes are required for non-data content (RFC 5652 "
                           "§5.3)")
        tbs = digest
        prehashed = True
    problem = _verify_signature(si, cert.pyca.public_key(), tbs, hash_name, prehashed)
    if problem:
        reasons.append(problem)
    return reasons


def _verify_signature(si: ParsedSignerInfo, key: PublicKeyTypes, tbs: bytes, hash_name: str,
                      prehashed: bool) -> str | None:
    family, implied = _SIGNATURE_OIDS.get(si.signature_oid, ("", None))
    if not family:
        return f"signature algorithm {si.signature_oid} is not supported"
    if implied is not None and implied != hash_name:
        return (f"the signature algorithm's hash ({implied}) differs from the digest algorithm "
                f"({hash_name})")
    hash_algorithm = _HASHES[hash_name]()
    algorithm: hashes.HashAlgorithm | utils.Prehashed = (
        utils.Prehashed(hash_algorithm) if prehashed else hash_algorithm)
    try:
        if family == "rsa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(si.signature, tbs, padding.PKCS1v15(), algorithm)
        elif family == "rsa-pss" and isinstance(key, rsa.RSAPublicKey):
            key.verify(si.signature, tbs, _pss(si.signature_parameters, hash_name), algorithm)
        elif family == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(si.signature, tbs, ec.ECDSA(algorithm))
        else:
            return "the signature algorithm does not fit the certificate's key"
    except InvalidSignature:
        return "the signature value does not verify with the signer's certificate"
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"the signature cannot be checked: {_first_line(exc)}"
    return None


def _pss(parameters: Any, hash_name: str) -> padding.PSS:
    """RFC 4055 RSASSA-PSS-params; the PSS hash must be the SignerInfo's digest."""
    params = algos.RSASSAPSSParams.load(parameters.dump()) if parameters is not None else None
    if params is None:
        raise ValueError("RSASSA-PSS without parameters")
    pss_hash = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    mgf_hash = mgf["parameters"]["algorithm"].native
    if pss_hash != hash_name or mgf["algorithm"].native != "mgf1" or mgf_hash not in _HASHES:
        raise ValueError("RSASSA-PSS parameters do not match the digest algorithm")
    return padding.PSS(mgf=padding.MGF1(_HASHES[mgf_hash]()),
                       salt_length=int(params["salt_length"].native))


def _check_ess(si: ParsedSignerInfo, cert: _Cert) -> list[str]:
    """RFC 5035 §3 / RFC 2634 §5.4: the first ESSCertID(v2) must name the signer certificate."""
    reasons: list[str] = []
    for oid, cls in ((OID_SIGNING_CERTIFICATE_V2, tsp.SigningCertificateV2),
                     (OID_SIGNING_CERTIFICATE, tsp.SigningCertificate)):
        values = si.attributes.get(oid)
        if values is None:
            continue
        if len(values) != 1:
            reasons.append("the signing-certificate attribute has several values")
            continue
        try:
            first = cls.load(values[0])["certs"][0]
            name = (first["hash_algorithm"]["algorithm"].native
                    if cls is tsp.SigningCertificateV2 else "sha1")
            expected = first["cert_hash"].native
            issuer_serial = first["issuer_serial"]
            serial = issuer_serial["serial_number"].native if issuer_serial.native else None
        except Exception:
            reasons.append("the signing-certificate attribute cannot be read")
            continue
        if name not in ("sha1", *_HASHES):
            reasons.append(f"the signing-certificate attribute uses {name}")
        elif hashlib.new(str(name), cert.der).digest() != expected:
            reasons.append("the signing-certificate attribute names another certificate than "
                           "the one that verifies the signature")
        elif serial is not None and serial != cert.pyca.serial_number:
            reasons.append("the signing-certificate attribute names another serial number")
    return reasons


def _signing_time(si: ParsedSignerInfo) -> dt.datetime | None:
    values = si.attributes.get(OID_SIGNING_TIME)
    if not values:
        return None
    value = cms.Time.load(values[0]).native
    return value if isinstance(value, dt.datetime) else None


def _verify_signer(si: ParsedSignerInfo, content_type: str, digests: Mapping[str, bytes],
                   certs: Sequence[_Cert], roots: Sequence[_Cert], *, at: dt.datetime | None,
                   now: dt.datetime, revocation: RevocationChecker | None,
                   ) -> SignerVerification:
    reasons: list[str] = []
    warnings: list[str] = []
    hash_name = si.digest_name
    signature_name = _SIGNATURE_OIDS.get(si.signature_oid, (si.signature_oid, None))[0]
    try:
        signing_time = _signing_time(si)
    except Exception:
        signing_time = None
        reasons.append("the signingTime attribute cannot be read")
    cert = _find_certificate(si, certs)
    if cert is None:
        return SignerVerification(
            valid=False, reasons=("the signer's certificate is not in the signature",),
            certificate=None, digest_algorithm=hash_name, signature_algorithm=signature_name,
            signing_time=signing_time, timestamp=None, integrity=False, chain_valid=False,
            chain=(), revocation=RevocationStatus.NOT_CHECKED, validated_at=at or now,
            attributes=si.attributes)
    integrity_reasons = _check_integrity(si, content_type, digests.get(hash_name), cert)
    reasons.extend(integrity_reasons)
    reasons.extend(_check_ess(si, cert))

    timestamp: TimestampVerification | None = None
    tokens = si.unsigned.get(OID_SIGNATURE_TIME_STAMP, ())
    if tokens:
        timestamp = _verify_timestamp(tokens[0], si.signature, certs, roots, at=at, now=now)
        if not timestamp.valid:
            reasons.extend(f"timestamp: {r}" for r in timestamp.reasons)
        elif signing_time is not None and timestamp.time is not None \
                and signing_time - timestamp.time > dt.timedelta(minutes=10):
            warnings.append("the claimed signing time is later than the timestamp")
    moment = at or (timestamp.time if timestamp and timestamp.valid and timestamp.time
                    else now)

    usage = _signing_usage_problem(cert.pyca)
    if usage:
        reasons.append(f"the certificate is not meant for signing documents: {usage}")
    path, chain_problem = _validate_chain(cert, certs, roots, moment)
    if chain_problem:
        reasons.append(chain_problem)
    state = RevocationStatus.NOT_CHECKED
    if revocation is not None and path:
        state, problems = _check_revocation(path, moment, revocation)
        reasons.extend(problems)
    return SignerVerification(
        valid=not reasons, reasons=tuple(reasons), certificate=cert.pyca,
        digest_algorithm=hash_name, signature_algorithm=signature_name,
        signing_time=signing_time, timestamp=timestamp, integrity=not integrity_reasons,
        chain_valid=chain_problem is None, chain=tuple(c.pyca for c in path),
        revocation=state, validated_at=moment, attributes=si.attributes,
        warnings=tuple(warnings))


def _verify_timestamp(token_der: bytes, signature_value: bytes, outer_certs: Sequence[_Cert],
                      roots: Sequence[_Cert], *, at: dt.datetime | None,
                      now: dt.datetime) -> TimestampVerification:
    """RFC 3161 §2.4.2 and Appendix A: a token over the SignatureValue, signed by a TSA whose
    certificate chains to a trust root and carries the timeStamping EKU."""
    def invalid(*why: str, time: dt.datetime | None = None, tsa: _Cert | None = None,
                policy: str | None = None) -> TimestampVerification:
        return TimestampVerification(time, False, tsa.subject if tsa else None,
                                     tsa.serial_hex if tsa else None, policy, tuple(why))

    try:
        parsed = parse_signed_data(token_der, expected_content_type=OID_TST_INFO)
        if parsed.content is None or len(parsed.signer_infos) != 1:
            return invalid("the timestamp token has no TSTInfo or not exactly one signer")
        tst = tsp.TSTInfo.load(parsed.content)
        gen_time = tst["gen_time"].native
        policy = tst["policy"].dotted
        imprint_oid = tst["message_imprint"]["hash_algorithm"]["algorithm"].dotted
        hashed = tst["message_imprint"]["hashed_message"].native
    except GovpkiError as exc:
        return invalid(f"the timestamp token cannot be read: {exc.message}")
    except Exception:
        return invalid("the timestamp token cannot be read")
    imprint_name = _DIGEST_OIDS.get(imprint_oid)
    if imprint_name not in _HASHES:
        return invalid(f"the timestamp imprint uses {imprint_name or imprint_oid}",
                       time=gen_time, policy=policy)
    reasons: list[str] = []
    if hashlib.new(str(imprint_name), signature_value).digest() != hashed:
        reasons.append("the timestamp stamps another signature value")
    si = parsed.signer_infos[0]
    certs = parsed.certificates + tuple(outer_certs)
    tsa = _find_certificate(si, certs)
    if tsa is None:
        return invalid(*reasons, "the TSA certificate is not in the token", time=gen_time,
                       policy=policy)
    digest = (hashlib.new(si.digest_name, parsed.content).digest()
              if si.digest_name in _HASHES else None)
    reasons.extend(_check_integrity(si, OID_TST_INFO, digest, tsa))
    reasons.extend(_check_ess(si, tsa))
    if not tsa.pyca.not_valid_before_utc <= gen_time <= tsa.pyca.not_valid_after_utc:
        reasons.append("the TSA certificate was not valid at the time it states")
    try:
        eku = {o.dotted_string for o in
               tsa.pyca.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value}
    except (x509.ExtensionNotFound, ValueError):
        eku = set()
    if TIME_STAMPING_EKU not in eku:
        reasons.append("the TSA certificate lacks the timeStamping extended key usage")
    _, chain_problem = _validate_chain(tsa, certs, roots, at or now)
    if chain_problem:
        reasons.append(f"TSA {chain_problem}")
    return TimestampVerification(gen_time, not reasons, tsa.subject, tsa.serial_hex, policy,
                                 tuple(reasons))


_T = TypeVar("_T")


def _run_sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """pyhanko-certvalidator is async-only; callers of this module are synchronous (CLI,
    Flask views). Inside a running event loop the coroutine runs on a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _validate_chain(cert: _Cert, certs: Sequence[_Cert], roots: Sequence[_Cert],
                    moment: dt.datetime) -> tuple[list[_Cert], str | None]:
    """Path from ``cert`` to one of ``roots`` valid at ``moment`` (RFC 5280 §6, by
    pyhanko-certvalidator; no fetching: the network is isolated and revocation is asked of the
    checker separately). Returns the path signer-first and a reason when it fails."""
    others = [c.asn1 for c in certs if c.der != cert.der]
    try:
        context = ValidationContext(trust_roots=[r.asn1 for r in roots], other_certs=others,
                                    moment=moment, allow_fetching=False,
                                    revocation_mode="soft-fail")
        validator = CertificateValidator(cert.asn1, intermediate_certs=others,
                                         validation_context=context)
        path = _run_sync(validator.async_validate_path())
    except PathBuildingError:
        return [], "certificate does not chain to a trust root"
    except ExpiredError:
        return [], f"certificate (or a CA above it) had expired at {moment:%Y-%m-%d %H:%M} UTC"
    except NotYetValidError:
        return [], f"certificate (or a CA above it) was not yet valid at " \
                   f"{moment:%Y-%m-%d %H:%M} UTC"
    except RevokedError:
        return [], "certificate chain contains a revoked certificate"
    except (PathValidationError, ValidationError) as exc:
        return [], f"certificate chain is not valid: {_first_line(exc)}"
    except Exception as exc:  # a certificate certvalidator cannot process
        return [], f"certificate chain cannot be validated ({type(exc).__name__})"
    # iter_certs runs from the trust anchor down to the leaf.
    chain = [_Cert.from_der(bytes(c.dump())) for c in path.iter_certs(include_root=True)]
    chain.reverse()
    return chain, None


def _check_revocation(path: Sequence[_Cert], moment: dt.datetime,
                      revocation: RevocationChecker) -> tuple[RevocationStatus, list[str]]:
    """Ask the checker about every certificate below the trust anchor, at ``moment``."""
    worst = RevocationStatus.GOOD
    reasons: list[str] = []
    for cert, issuer in itertools.pairwise(path):
        try:
            answer = RevocationStatus(str(revocation(cert.pyca, issuer.pyca, moment)))
        except GovpkiError as exc:
            answer = RevocationStatus.UNKNOWN
            reasons.append(f"revocation status of {cert.subject} could not be checked: "
                           f"{exc.message}")
        except Exception as exc:
            answer = RevocationStatus.UNKNOWN
            reasons.append(f"revocation status of {cert.subject} could not be checked "
                           f"({type(exc).__name__})")
        else:
            if answer is RevocationStatus.REVOKED:
                reasons.append(f"certificate {cert.subject} (serial {cert.serial_hex}) is "
                               f"revoked or suspended at {moment:%Y-%m-%d %H:%M} UTC")
            elif answer is not RevocationStatus.GOOD:
                reasons.append(f"revocation status of {cert.subject} is unknown")
        if answer is RevocationStatus.REVOKED:
            worst = RevocationStatus.REVOKED
        elif answer is not RevocationStatus.GOOD and worst is RevocationStatus.GOOD:
            worst = RevocationStatus.UNKNOWN
    return worst, reasons


def store_revocation(ctx: CaContext) -> RevocationChecker:
    """A :data:`RevocationChecker` answering from govpki's own CA store (``ca.status``), for
    verifiers on a host that has the database (DESIGN.md: "gathers revocation data from it
    directly"). Only ``ctx.sessions`` is used: open the context with an empty KeyRing.

    A certificate is revoked at ``moment`` if it was revoked or put on hold at or before it;
    a later revocation leaves an earlier (timestamped) signature valid. A certificate the CA
    never issued is ``unknown``.
    """
    from ca.status import authority_names, generations, status
    from core.db import transaction

    def check(cert: x509.Certificate, issuer: x509.Certificate,
              moment: dt.datetime) -> str:
        issuer_der = issuer.public_bytes(serialization.Encoding.DER)
        with transaction(ctx.sessions) as session:
            ca_name = next((name for name in authority_names(session)
                            if any(g.certificate_der == issuer_der
                                   for g in generations(session, name))), None)
            if ca_name is None:
                return RevocationStatus.UNKNOWN
            record = status(session, ca_name, format(cert.serial_number, "x"))
        if record is None:
            return RevocationStatus.UNKNOWN
        if record.status == "good":
            return RevocationStatus.GOOD
        since = record.revoked_at or record.status_changed_at
        if since is not None:
            since = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
            if since > moment:
                return RevocationStatus.GOOD
        return RevocationStatus.REVOKED

    return check
