"""The envelope that carries an escrowed encryption key from the KMC's HSM into a USB key.

Server side (:mod:`hsm.escrow`) makes it, token side (:mod:`hsm.kmc_unwrap`) opens it *inside*
the token with C_UnwrapKey, so the private key is in the clear only inside the two PKCS#11
devices. The construction is PKCS#11 v2.40 §2.1.21 CKM_RSA_AES_KEY_WRAP done in two steps,
because SoftHSM2 2.6 (and many USB tokens) do not offer that mechanism in one:

1. a fresh AES-256 key (the CEK) wraps the private key's PKCS#8 PrivateKeyInfo with AES Key Wrap
   with Padding (RFC 5649; on SoftHSM2 ``CKM_AES_KEY_WRAP_PAD``, 0x210A; PKCS#11 v3.0 names the
   RFC 5649 mechanism ``CKM_AES_KEY_WRAP_KWP``, 0x210B);
2. the CEK is wrapped to the token's transport public key with RSAES-OAEP (``CKM_RSA_PKCS_OAEP``,
   MGF1 with the same hash; SHA-1 by default because SoftHSM2 accepts no other OAEP hash).

``wrapped_cek || wrapped_key`` is byte for byte what CKM_RSA_AES_KEY_WRAP would produce, so a
token that has the one-step mechanism could take it as it is.

Only public and wrapped values live here: the JSON form can be stored, logged or sent over
HTTP without revealing the key (it is useless without the transport private key, which never
leaves the token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from hsm.errors import HsmError

FORMAT: Final = "govpki-kmc-rsa-aes-kwp-v1"
"""RSA-OAEP(CEK) || AES-KWP(CEK, PKCS#8): the CKM_RSA_AES_KEY_WRAP layout (see module doc)."""
OAEP_HASHES: Final = ("sha1", "sha256")
MIN_TRANSPORT_BITS: Final = 2048


class InvalidWrappedKey(HsmError):
    """A wrapped-key envelope or transport key that is malformed or not for this token."""

    kind = "hsm-invalid-wrapped-key"
    http_status = 400


def spki_der(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def spki_sha256(public_key: rsa.RSAPublicKey | bytes) -> str:
    """Lowercase hex SHA-256 of the SubjectPublicKeyInfo: how a transport key is named."""
    der = public_key if isinstance(public_key, bytes) else spki_der(public_key)
    return hashlib.sha256(der).hexdigest()


def load_transport_key(data: bytes | str | rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    """A transport public key from PEM or DER SubjectPublicKeyInfo (or a pyca key): RSA of at
    least 2048 bits, since it protects the CEK of a key kept for years."""
    if isinstance(data, rsa.RSAPublicKey):
        key: object = data
    else:
        raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
        try:
            key = (load_pem_public_key(raw) if raw.lstrip().startswith(b"-----BEGIN")
                   else load_der_public_key(raw))
        except (ValueError, TypeError):
            raise InvalidWrappedKey("the transport key is not a PEM or DER "
                                    "SubjectPublicKeyInfo") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidWrappedKey(f"the transport key must be RSA (it carries the CEK with "
                                f"RSA-OAEP), not {type(key).__name__}")
    if key.key_size < MIN_TRANSPORT_BITS:
        raise InvalidWrappedKey(f"the transport key has {key.key_size} bits; at least "
                                f"{MIN_TRANSPORT_BITS} are required")
    return key


@dataclass(frozen=True)
class TransportWrap:
    """What the server's backend returns: the two wrapped parts and the OAEP hash used."""

    wrapped_cek: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)
    oaep_hash: str


@dataclass(frozen=True)
class WrappedKey:
    """An escrowed key wrapped for one token's transport key, with what the token stores
    beside it (the public key it must match, the certificate and chain)."""

    escrow_id: int
    key_type: str
    transport_key_sha256: str
    """spki_sha256 of the transport public key the CEK is wrapped to."""
    oaep_hash: str
    wrapped_cek: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)
    public_key_der: bytes = field(repr=False)
    """SubjectPublicKeyInfo of the delivered key: the token checks the unwrapped key against it."""
    certificate_der: bytes | None = field(default=None, repr=False)
    chain_der: tuple[bytes, ...] = field(default=(), repr=False)
    format: str = FORMAT

    def __post_init__(self) -> None:
        if self.format != FORMAT:
            raise InvalidWrappedKey(f"unknown wrapped-key format {self.format!r} "
                                    f"(this version reads {FORMAT})")
        if self.oaep_hash not in OAEP_HASHES:
            raise InvalidWrappedKey(f"oaep_hash must be one of {', '.join(OAEP_HASHES)}")
        if not self.wrapped_cek or not self.wrapped_key or len(self.wrapped_key) % 8:
            raise InvalidWrappedKey("the wrapped key is empty or not a whole number of "
                                    "64-bit blocks (RFC 5649)")

    def public_key(self) -> rsa.RSAPublicKey:
        key = load_der_public_key(self.public_key_der)
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidWrappedKey("the delivered key's public key is not RSA")
        return key

    def certificate(self) -> x509.Certificate | None:
        if self.certificate_der is None:
            return None
        return x509.load_der_x509_certificate(self.certificate_der)

    def to_json(self) -> dict[str, Any]:
        """JSON-able mapping (bytes in base64): safe to store or send, it is all wrapped."""
        return {
            "format": self.format, "escrow_id": self.escrow_id, "key_type": self.key_type,
            "transport_key_sha256": self.transport_key_sha256, "oaep_hash": self.oaep_hash,
            "wrapped_cek": _b64(self.wrapped_cek), "wrapped_key": _b64(self.wrapped_key),
            "public_key": _b64(self.public_key_der),
            "certificate": _b64(self.certificate_der) if self.certificate_der else None,
            "chain": [_b64(c) for c in self.chain_der],
        }

    @classmethod
    def from_json(cls, data: object) -> WrappedKey:
        if not isinstance(data, dict):
            raise InvalidWrappedKey("a wrapped key is a JSON object")
        try:
            return cls(
                format=str(data["format"]), escrow_id=int(data["escrow_id"]),
                key_type=str(data["key_type"]),
                transport_key_sha256=str(data["transport_key_sha256"]),
                oaep_hash=str(data["oaep_hash"]),
                wrapped_cek=_unb64(data["wrapped_cek"]),
                wrapped_key=_unb64(data["wrapped_key"]),
                public_key_der=_unb64(data["public_key"]),
                certificate_der=_unb64(data["certificate"]) if data.get("certificate")
                else None,
                chain_der=tuple(_unb64(c) for c in data.get("chain") or ()),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            if isinstance(exc, InvalidWrappedKey):
                raise
            raise InvalidWrappedKey(f"the wrapped key lacks or garbles a field "
                                    f"({type(exc).__name__})") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError("base64 text expected")
    return base64.b64decode(value, validate=True)
