"""The one signer interface for every key backend.

Certificates, CRLs, OCSP responses, timestamps, CMS and JWS are all built above hsm/ as
to-be-signed bytes and signed here, so a CA key on an HSM and a file key behave the same and
nobody above hsm/ touches private key material.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from hsm.algorithms import KeyType, key_type_of
from hsm.errors import UnsupportedMechanism


@runtime_checkable
class Signer(Protocol):
    """A private key that stays where it is."""

    @property
    def key_uri(self) -> str: ...

    @property
    def key_type(self) -> KeyType: ...

    def public_key(self) -> PublicKeyTypes: ...

    def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        """DER signature (ECDSA-Sig-Value) or RSASSA-PKCS1-v1_5, as X.509, CMS and OCSP want."""
        ...

    def sign_raw(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        """r||s for ECDSA (JWS, RFC 7518 §3.4); the same as :meth:`sign` for RSA."""
        ...

    def decrypt(self, ciphertext: bytes, pad: padding.AsymmetricPadding) -> bytes:
        """RSA key transport (CMS EnvelopedData). EC keys raise UnsupportedMechanism."""
        ...

    def as_private_key(self) -> PrivateKeyTypes:
        """An object pyca's builders accept as ``private_key`` (CRL/OCSP builders)."""
        ...


def der_to_raw_ecdsa(der_signature: bytes, key_bits: int) -> bytes:
    r, s = decode_dss_signature(der_signature)
    size = (key_bits + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


class SoftwareSigner:
    """A signer over a private key held in this process (file key store, throwaway lint keys)."""

    def __init__(self, key_uri: str, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        self._uri = key_uri
        self._key = private_key
        self._public = private_key.public_key()
        self._type = key_type_of(self._public)

    @property
    def key_uri(self) -> str:
        return self._uri

    @property
    def key_type(self) -> KeyType:
        return self._type

    def public_key(self) -> PublicKeyTypes:
        return self._public

    def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), hash_algorithm)
        return self._key.sign(data, ec.ECDSA(hash_algorithm))

    def sign_raw(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        signature = self.sign(data, hash_algorithm)
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return der_to_raw_ecdsa(signature, self._key.curve.key_size)
        return signature

    def decrypt(self, ciphertext: bytes, pad: padding.AsymmetricPadding) -> bytes:
        if not isinstance(self._key, rsa.RSAPrivateKey):
            raise UnsupportedMechanism("decryption needs an RSA key")
        return self._key.decrypt(ciphertext, pad)

    def as_private_key(self) -> PrivateKeyTypes:
        return self._key

    def __repr__(self) -> str:
        return f"SoftwareSigner({self._uri!r}, {self._type.value})"
