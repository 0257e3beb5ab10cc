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
    fast = _fast_parse(der)
    if fast is not None:
        return fast
    try:
        return _parse(der)
    except MalformedRequest:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
            UnicodeError, RecursionError) as exc:
        # asn1crypto parses lazily and reports bad encodings with these built-in errors.
        raise MalformedRequest(f"not a valid OCSPRequest: {type(exc).__name__}") from None


# ---------------------------------------------------------------------------------------------
# The fast path. Parsing with asn1crypto is ~70% of a nonce answer's CPU time; almost every
# request has one shape (RFC 5019 §2.1.1: no signature, no requestorName, CertIDs, at most a
# nonce). That shape is read here with a strict DER walker; anything else — and anything not in
# minimal DER — returns None and goes through asn1crypto, which also words every error. A
# property test checks both paths agree on every request the fast one accepts.

_HASH_DER = {
    bytes.fromhex("06052b0e03021a"): "sha1",
    bytes.fromhex("0609608648016503040201"): "sha256",
    bytes.fromhex("0609608648016503040202"): "sha384",
    bytes.fromhex("0609608648016503040203"): "sha512",
}
_NONCE_OID_DER = bytes.fromhex("06092b0601050507300102")


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of a minimal definite-length DER TLV, or ValueError."""
    if pos + 2 > end:
        raise ValueError
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 3 or pos + n > end or data[pos] == 0:
            raise ValueError
        length = int.from_bytes(data[pos:pos + n], "big")
        if length < 0x80 or length >> (8 * (n - 1)) == 0:
            raise ValueError  # not the minimal length encoding
        pos += n
    if pos + length > end:
        raise ValueError
    return tag, pos, pos + length


def _fast_parse(der: bytes) -> OcspRequest | None:
    try:
        return _fast(der)
    except ValueError:
        return None


def _fast(der: bytes) -> OcspRequest | None:
    tag, start, end = _tlv(der, 0, len(der))
    if tag != 0x30 or end != len(der):
        return None
    tag, pos, tbs_end = _tlv(der, start, end)
    if tag != 0x30 or tbs_end != end:
        return None  # a signature, or not a SEQUENCE: the slow path decides
    tag, list_start, list_end = _tlv(der, pos, tbs_end)
    if tag != 0x30:
        return None  # version, requestorName: rare, slow path
    cert_ids: list[CertIdRequest] = []
    item = list_start
    while item < list_end:
        tag, req_start, req_end = _tlv(der, item, list_end)
        if tag != 0x30:
            return None
        tag, cid_start, cid_end = _tlv(der, req_start, req_end)
        if tag != 0x30 or cid_end != req_end:
            return None  # singleRequestExtensions: slow path
        cert_id = _fast_cert_id(der, cid_start, cid_end)
        if cert_id is None:
            return None
        cert_ids.append(CertIdRequest(*cert_id, der[req_start:cid_end]))
        item = req_end
    if not cert_ids or len(cert_ids) > MAX_CERT_IDS:
        return None
    nonce = None
    if list_end != tbs_end:
        tag, ext_start, ext_end = _tlv(der, list_end, tbs_end)
        if tag != 0xA2 or ext_end != tbs_end:
            return None
        nonce = _fast_nonce(der, ext_start, ext_end)
        if nonce is None:
            return None
    return OcspRequest(tuple(cert_ids), nonce)


def _fast_cert_id(der: bytes, start: int, end: int) -> tuple[str, bytes, bytes, int] | None:
    tag, alg_start, alg_end = _tlv(der, start, end)
    if tag != 0x30:
        return None
    tag, oid_start, oid_end = _tlv(der, alg_start, alg_end)
    name = _HASH_DER.get(der[oid_start - 2:oid_end]) if tag == 0x06 else None
    if name is None:
        return None
    if oid_end != alg_end and der[oid_end:alg_end] != b"\x05\x00":
        return None  # parameters other than NULL
    hashes: list[bytes] = []
    pos = alg_end
    for _ in range(2):
        tag, h_start, h_end = _tlv(der, pos, end)
        if tag != 0x04:
            return None
        hashes.append(der[h_start:h_end])
        pos = h_end
    tag, i_start, i_end = _tlv(der, pos, end)
    if tag != 0x02 or i_end != end or i_start == i_end:
        return None
    if i_end - i_start > 1 and (
        (der[i_start] == 0 and der[i_start + 1] < 0x80)
        or (der[i_start] == 0xFF and der[i_start + 1] >= 0x80)
    ):
        return None  # non-minimal INTEGER
    size = _HASH_SIZES[name]
    if len(hashes[0]) != size or len(hashes[1]) != size:
        return None
    return name, hashes[0], hashes[1], int.from_bytes(der[i_start:i_end], "big", signed=True)


def _fast_nonce(der: bytes, start: int, end: int) -> bytes | None:
    """[2] EXPLICIT Extensions holding exactly one nonce extension, else None (slow path)."""
    tag, exts_start, exts_end = _tlv(der, start, end)
    if tag != 0x30 or exts_end != end:
        return None
    tag, ext_start, ext_end = _tlv(der, exts_start, exts_end)
    if tag != 0x30 or ext_end != exts_end:
        return None
    tag, oid_start, oid_end = _tlv(der, ext_start, ext_end)
    # minimal DER gives a 9-octet OID a 2-octet header, so the TLV starts 2 before its content
    if tag != 0x06 or der[oid_start - 2:oid_end] != _NONCE_OID_DER:
        return None
    pos = oid_end
    tag, v_start, v_end = _tlv(der, pos, ext_end)
    if tag == 0x01:
        return None  # an explicit critical flag: slow path
    if tag != 0x04 or v_end != ext_end:
        return None
    tag, n_start, n_end = _tlv(der, v_start, v_end)
    if tag != 0x04 or n_end != v_end or not MIN_NONCE <= n_end - n_start <= MAX_NONCE:
        return None
    return der[n_start:n_end]


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
