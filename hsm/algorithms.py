"""The one registry of key types and the signature algorithms they use.

Every caller asks this module which hash and which encoding belong to a key type, so adding SM2/SM3
or ML-DSA later is a new registry entry plus a backend mechanism, not a change in ca/ or signing/.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from hsm.errors import UnsupportedKeyType


class KeyType(enum.StrEnum):
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"


@dataclass(frozen=True)
class KeyAlgorithm:
    key_type: KeyType
    family: str  # "rsa" | "ec"
    bits: int
    # Default signature hash: SHA-256 for RSA and P-256, SHA-384 for P-384 (RFC 5480 §4 pairing).
    hash_name: str
    # Signature algorithm OID with that hash (RFC 4055 / RFC 5758).
    signature_oid: str
    # Name of the curve for EC keys (pyca class and the PKCS#11 EC params OID).
    curve_name: str = ""
    curve_oid: str = ""

    def hash_algorithm(self) -> hashes.HashAlgorithm:
        return _HASHES[self.hash_name]()

    def generate_software_key(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        if self.family == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=self.bits)
        return ec.generate_private_key(_CURVES[self.curve_name]())


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_CURVES: dict[str, type[ec.EllipticCurve]] = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1}

_SHA256_RSA = "1.2.840.113549.1.1.11"  # sha256WithRSAEncryption, RFC 4055

REGISTRY: dict[KeyType, KeyAlgorithm] = {
    KeyType.RSA_2048: KeyAlgorithm(KeyType.RSA_2048, "rsa", 2048, "sha256", _SHA256_RSA),
    KeyType.RSA_3072: KeyAlgorithm(KeyType.RSA_3072, "rsa", 3072, "sha256", _SHA256_RSA),
    KeyType.RSA_4096: KeyAlgorithm(KeyType.RSA_4096, "rsa", 4096, "sha256", _SHA256_RSA),
    KeyType.EC_P256: KeyAlgorithm(
        KeyType.EC_P256, "ec", 256, "sha256", "1.2.840.10045.4.3.2", "secp256r1",
        "1.2.840.10045.3.1.7",
    ),
    KeyType.EC_P384: KeyAlgorithm(
        KeyType.EC_P384, "ec", 384, "sha384", "1.2.840.10045.4.3.3", "secp384r1",
        "1.3.132.0.34",
    ),
}


def algorithm(key_type: KeyType | str) -> KeyAlgorithm:
    try:
        return REGISTRY[KeyType(key_type)]
    except ValueError:
        known = ", ".join(k.value for k in KeyType)
        raise UnsupportedKeyType(
            f"unsupported key type '{key_type}' (known: {known})"
        ) from None


def key_type_of(public_key: PublicKeyTypes) -> KeyType:
    """Classify a public key; outside the registry (RSA-1024, P-521, Ed25519) is refused."""
    if isinstance(public_key, rsa.RSAPublicKey):
        for alg in REGISTRY.values():
            if alg.family == "rsa" and alg.bits == public_key.key_size:
                return alg.key_type
        raise UnsupportedKeyType(f"RSA-{public_key.key_size} keys are not supported")
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        for alg in REGISTRY.values():
            if alg.family == "ec" and alg.curve_name == public_key.curve.name:
                return alg.key_type
        raise UnsupportedKeyType(f"EC curve {public_key.curve.name} is not supported")
    raise UnsupportedKeyType(f"{type(public_key).__name__} keys are not supported")
