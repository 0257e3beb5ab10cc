"""Hand-written DER for the responder's hot path: ResponseData, BasicOCSPResponse, OCSPResponse.

Every answer with a nonce or several CertIDs is signed on request, so building it must cost little
next to the signature; a few byte concatenations do (asn1crypto's object model costs more than an
ECDSA signature). The structures are small and fixed (RFC 6960 §4.2.1), and the tests parse every
output with asn1crypto and pyca and check it with ``openssl ocsp``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ocsp.errors import ResponseStatus

OID_BASIC = bytes.fromhex("06092b0601050507300101")  # id-pkix-ocsp-basic
OID_NONCE = bytes.fromhex("06092b0601050507300102")  # id-pkix-ocsp-nonce


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def generalized_time(when: dt.datetime) -> bytes:
    """GeneralizedTime in UTC with whole seconds and Z (RFC 5280 §4.1.2.5.2)."""
    return tlv(0x18, when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ").encode("ascii"))


@dataclass(frozen=True)
class SingleAnswer:
    """What one SingleResponse says (RFC 6960 §4.2.1 / §2.2)."""

    cert_id_der: bytes
    status: str  # good | revoked | unknown
    this_update: dt.datetime
    next_update: dt.datetime | None
    revoked_at: dt.datetime | None = None
    reason_code: int | None = None


def single_response(answer: SingleAnswer) -> bytes:
    if answer.status == "good":
        status = b"\x80\x00"  # [0] IMPLICIT NULL
    elif answer.status == "unknown":
        status = b"\x82\x00"  # [2] IMPLICIT UnknownInfo (NULL)
    elif answer.status == "revoked":
        if answer.revoked_at is None:
            raise ValueError("revoked_at is required when status is revoked")
        info = generalized_time(answer.revoked_at)
        if answer.reason_code is not None:
            # revocationReason [0] EXPLICIT CRLReason (ENUMERATED)
            info += tlv(0xA0, tlv(0x0A, bytes((answer.reason_code,))))
        status = tlv(0xA1, info)  # [1] IMPLICIT RevokedInfo
    else:
        raise ValueError(f"status must be good, revoked or unknown, not {answer.status!r}")
    body = answer.cert_id_der + status + generalized_time(answer.this_update)
    if answer.next_update is not None:
        body += tlv(0xA0, generalized_time(answer.next_update))
    return tlv(0x30, body)


def response_data(responder_key_hash: bytes, produced_at: dt.datetime,
                  answers: list[SingleAnswer], nonce: bytes | None) -> bytes:
    """tbsResponseData: version v1 (default, omitted), responderID byKey, producedAt, responses,
    and the nonce extension echoing the request's (RFC 6960 §4.4.1, RFC 8954)."""
    responder_id = tlv(0xA2, tlv(0x04, responder_key_hash))  # [2] EXPLICIT KeyHash
    body = (responder_id + generalized_time(produced_at)
            + tlv(0x30, b"".join(single_response(a) for a in answers)))
    if nonce is not None:
        ext = tlv(0x30, OID_NONCE + tlv(0x04, tlv(0x04, nonce)))
        body += tlv(0xA1, tlv(0x30, ext))  # [1] EXPLICIT Extensions
    return tlv(0x30, body)


def ocsp_response(tbs: bytes, signature_algorithm_der: bytes, signature: bytes,
                  certs_der: list[bytes]) -> bytes:
    """OCSPResponse(successful) wrapping a BasicOCSPResponse."""
    basic = tbs + signature_algorithm_der + tlv(0x03, b"\x00" + signature)
    if certs_der:
        basic += tlv(0xA0, tlv(0x30, b"".join(certs_der)))
    response_bytes = tlv(0x30, OID_BASIC + tlv(0x04, tlv(0x30, basic)))
    return tlv(0x30, b"\x0a\x01\x00" + tlv(0xA0, response_bytes))


def error_response(status: ResponseStatus) -> bytes:
    """An unsigned OCSPResponse carrying only a status (RFC 6960 §4.2.1)."""
    if status is ResponseStatus.SUCCESSFUL:
        raise ValueError("a successful response needs responseBytes")
    return bytes((0x30, 0x03, 0x0A, 0x01, int(status)))


ERROR_RESPONSES: dict[ResponseStatus, bytes] = {s: error_response(s) for s in ResponseStatus
                                                 if s is not ResponseStatus.SUCCESSFUL}
