"""Parsing OCSPRequest DER (RFC 6960 §4.1.1) with asn1crypto.

pyca's request loader refuses requests with more than one CertID, which RFC 6960 allows and
``openssl ocsp`` sends (DESIGN.md, Pitfalls), so requests are parsed here. Every way a request can
be wrong ends in :class:`~ocsp.errors.MalformedRequest`, which the responder answers with
``malformedRequest``; nothing else escapes this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import core as asn1
from asn1crypto import ocsp as asn1_ocsp

from ocsp.errors import MalformedRequest

# RFC 5019 §2.1.1 keeps requests small (one CertID, no signature); this bound leaves room for a
# signed request with a few certificates while refusing anything that could tie up a worker.
MAX_REQUEST_SIZE = 16 * 1024
# RFC 6960 sets no limit; 64 answers fit comfortably in one response and bound the signing work.
MAX_CERT_IDS = 64
# RFC 8954 §2.1: a nonce is 1..32 octets; a responder rejects a longer one (malformedRequest).
MIN_NONCE, MAX_NONCE = 1, 32
NONCE_OID = "1.3.6.1.5.5.7.48.1.2"
# id-pkix-ocsp-pref-sig-algs and id-pkix-ocsp-response are informational: ignored if critical.
_KNOWN_EXTENSIONS = {NONCE_OID, "1.3.6.1.5.5.7.48.1.4", "1.3.6.1.5.5.7.48.1.8",
                     "1.3.6.1.5.5.7.48.1.9"}
# CertID hash algorithms this responder can match (pre-signing covers sha1 and sha256).
HASH_OIDS = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_HASH_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}


@dataclass(frozen=True)
class CertIdRequest:
    """One CertID as asked: the hash algorithm, the issuer hashes, the serial and its exact DER.

    ``der`` is echoed into the answer unchanged, so a client's own comparison always matches
    (clients differ on whether the hash AlgorithmIdentifier carries NULL parameters).
    """

    hash_algorithm: str  # sha1 | sha256 | sha384 | sha512 | dotted OID when unsupported
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int
    der: bytes

    @property
    def key(self) -> tuple[str, bytes, bytes, int]:
        """The pre-signed cache key: what identifies an answer, whatever the DER encoding."""
        return (self.hash_algorithm, self.issuer_name_hash, self.issuer_key_hash, self.serial)


@dataclass(frozen=True)
class OcspRequest:
    cert_ids: tuple[CertIdRequest, ...]
    # The nonce as the client sent it (the OCTET STRING's contents), echoed in the response.
    nonce: bytes | None


def parse_request(der: bytes) -> OcspRequest:
    """Parse and bound an OCSPRequest; raise MalformedRequest naming what is wrong."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise MalformedRequest("the request must be bytes")
    der = bytes(der)
    if not der:
        raise MalformedRequest("empty request")
    if len(der) > MAX_REQUEST_SIZE:
        raise MalformedRequest(f"request larger than {MAX_REQUEST_SIZE} bytes")
    try:
        return _parse(der)
    except MalformedRequest:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
            UnicodeError, RecursionError) as exc:
        # asn1crypto parses lazily and reports bad encodings with these built-in errors.
        raise MalformedRequest(f"not a valid OCSPRequest: {type(exc).__name__}") from None


def _parse(der: bytes) -> OcspRequest:
    request = asn1_ocsp.OCSPRequest.load(der, strict=True)
    tbs = request["tbs_request"]
    if tbs["version"].native != "v1":
        raise MalformedRequest("unsupported OCSPRequest version")
    items = list(tbs["request_list"])
    if not items:
        raise MalformedRequest("the request has no CertID")
    if len(items) > MAX_CERT_IDS:
        raise MalformedRequest(f"more than {MAX_CERT_IDS} CertIDs in one request")
    cert_ids = tuple(_cert_id(item["req_cert"]) for item in items)
    for item in items:
        _check_extensions(item["single_request_extensions"], "singleRequestExtensions")
    nonce = _check_extensions(tbs["request_extensions"], "requestExtensions")
    return OcspRequest(cert_ids, nonce)


def _cert_id(cert_id: asn1_ocsp.CertId) -> CertIdRequest:
    oid = cert_id["hash_algorithm"]["algorithm"].dotted
    name = HASH_OIDS.get(oid, oid)
    name_hash = cert_id["issuer_name_hash"].native
    key_hash = cert_id["issuer_key_hash"].native
    serial = cert_id["serial_number"].native
    if not isinstance(name_hash, bytes) or not isinstance(key_hash, bytes):
        raise MalformedRequest("CertID issuer hashes must be OCTET STRINGs")
    if not isinstance(serial, int):
        raise MalformedRequest("CertID serialNumber must be an INTEGER")
    size = _HASH_SIZES.get(name)
    if size is not None and (len(name_hash) != size or len(key_hash) != size):
        raise MalformedRequest(f"CertID hashes are not {name} digests ({size} octets)")
    return CertIdRequest(name, name_hash, key_hash, serial, cert_id.dump())


def _check_extensions(extensions: asn1.Sequence, where: str) -> bytes | None:
    """Return the nonce (if any); refuse a critical extension we do not understand."""
    nonce = None
    if not extensions.native:
        return None
    seen: set[str] = set()
    for ext in extensions:
        oid = ext["extn_id"].dotted
        if oid in seen:
            raise MalformedRequest(f"extension {oid} appears twice in {where}")
        seen.add(oid)
        if oid == NONCE_OID:
            if where != "requestExtensions":
                continue  # RFC 6960 §4.4.1 puts the nonce in requestExtensions only
            nonce = _nonce(ext["extn_value"].contents)
        elif ext["critical"].native and oid not in _KNOWN_EXTENSIONS:
            raise MalformedRequest(f"unsupported critical extension {oid} in {where}")
    return nonce


def _nonce(extn_value: bytes) -> bytes:
    """RFC 8954 §2.1: Nonce ::= OCTET STRING (SIZE(1..32)) inside the extnValue."""
    try:
        inner = asn1.OctetString.load(extn_value, strict=True)
        value = inner.native
    except ValueError:
        raise MalformedRequest("the nonce extension is not an OCTET STRING") from None
    if not isinstance(value, bytes) or not MIN_NONCE <= len(value) <= MAX_NONCE:
        raise MalformedRequest(
            f"nonce must be {MIN_NONCE}..{MAX_NONCE} octets (RFC 8954 §2.1), "
            f"not {len(value) if isinstance(value, bytes) else 0}")
    return value
