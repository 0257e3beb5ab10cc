"""The little DER the pipeline needs to put a token's signature onto pyca-built TBS bytes."""

from __future__ import annotations


def _read_tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag offset, content offset, end offset) of the TLV at ``offset``."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    length = data[offset + 1]
    content = offset + 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or content + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[content:content + n], "big")
        content += n
    end = content + length
    if end > len(data):
        raise ValueError("truncated DER")
    return offset, content, end


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _encode_length(len(content)) + content


def signature_algorithm_of(signed_der: bytes) -> bytes:
    """The AlgorithmIdentifier TLV that follows the TBS in a Certificate/CertificateList."""
    _, content, _ = _read_tlv(signed_der, 0)
    _, _, tbs_end = _read_tlv(signed_der, content)
    start, _, end = _read_tlv(signed_der, tbs_end)
    return signed_der[start:end]


def replace_tbs_signature_algorithm(tbs_der: bytes, algorithm_der: bytes) -> bytes:
    """The TBSCertificate with its ``signature`` field (RFC 5280 §4.1.2.3, the third element
    after the [0] version) set to ``algorithm_der``; every other byte is kept."""
    _, content, end = _read_tlv(tbs_der, 0)
    if end != len(tbs_der) or tbs_der[0] != 0x30:
        raise ValueError("not a TBSCertificate")
    position = content
    if tbs_der[position] == 0xA0:  # version [0] EXPLICIT
        position = _read_tlv(tbs_der, position)[2]
    position = _read_tlv(tbs_der, position)[2]  # serialNumber
    start, _, stop = _read_tlv(tbs_der, position)
    if tbs_der[start] != 0x30:
        raise ValueError("TBSCertificate signature field is not an AlgorithmIdentifier")
    return tlv(0x30, tbs_der[content:start] + algorithm_der + tbs_der[stop:end])


def assemble_signed(tbs_der: bytes, algorithm_der: bytes, signature: bytes) -> bytes:
    """SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature } (RFC 5280 §4.1.1)."""
    return tlv(0x30, tbs_der + algorithm_der + tlv(0x03, b"\x00" + signature))
