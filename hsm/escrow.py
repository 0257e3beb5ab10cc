"""The key management centre's key operations, on the server key store (hsm/ side of kmc/).

The KMC (kmc/) decides *what* to escrow, certify and release; this module is the only code that
touches the escrowed private keys, so nothing above hsm/ handles key material (DESIGN.md, "Key
material"). Two backends behind one interface, chosen by the KMC master key's URI:

``pkcs11:`` — :class:`Pkcs11EscrowBackend` (production; SoftHSM2 in tests)
    * The **master key** is AES-256 generated on the token (CKM_AES_KEY_GEN): CKA_TOKEN,
      CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=false, CKA_WRAP and CKA_UNWRAP only (no
      encrypt, decrypt, sign or derive), CKA_MODIFIABLE=false so nobody can later turn on
      CKA_DECRYPT and use it as a decryption oracle. The token then reports
      CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE and CKA_LOCAL; generation is refused (and the
      key destroyed) if it does not.
    * An **escrowed key** is an RSA pair generated on the token as *session* objects
      (CKA_TOKEN=false: nothing accumulates on the HSM), private half CKA_SENSITIVE=true and
      CKA_EXTRACTABLE=true — extractable only under wrap, since a sensitive key's value can
      never be read. It signs its own CSR (proof of possession for the CA), is wrapped under
      the master key with ``CKM_AES_KEY_WRAP_PAD`` (RFC 5649 on SoftHSM2, see below) and
      destroyed. The blob is all that remains: AES-KWP(master, PKCS#8 PrivateKeyInfo).
    * **Release** unwraps the blob into a session object on the HSM, checks its modulus against
      the public key the escrow record names (a swapped blob is refused), wraps it under a fresh
      session AES-256 CEK with AES-KWP, wraps the CEK to the target token's RSA transport key
      with CKM_RSA_PKCS_OAEP (the transport key is imported as a session public key object with
      CKA_WRAP only), and destroys every session object. The key is never in the clear outside
      the HSM; see :mod:`hsm.key_transport` for the envelope.

``file:`` — :class:`SoftwareEscrowBackend` (the embedded default without an HSM)
    There is no non-extractable key in a file store, so the honest equivalent is: the master key
    is an RSA-3072 key pair in the file store (PBES2-encrypted PKCS#8 under the store's
    passphrase, like the CA's file keys), and each blob is RSA-OAEP-SHA256(master, CEK) ||
    AES-KWP(CEK, PKCS#8) — the CKM_RSA_AES_KEY_WRAP layout. Escrowing needs only the master
    *public* key; release needs the passphrase. Keys are generated and unwrapped in this
    process's memory (Python cannot zeroise it): production runs the KMC on a PKCS#11 HSM.

SoftHSM2 2.6 facts this relies on (measured; tests/kmc/test_escrow.py keeps them true):
``CKM_AES_KEY_WRAP_PAD`` (0x210A) produces RFC 5649 output — although PKCS#11 v2.40 describes
0x210A as RFC 3394 with PKCS#7 padding, and v3.0 gives RFC 5649 its own number,
``CKM_AES_KEY_WRAP_KWP`` (0x210B), which SoftHSM2 does not offer. SoftHSM2 zero-pads the PKCS#8
to a multiple of 8 bytes *before* the RFC 5649 wrap, so the unwrapped bytes carry up to 7
trailing zeros its own C_UnwrapKey ignores. It has no CKM_RSA_AES_KEY_WRAP (hence the two-step
envelope) and accepts CKM_RSA_PKCS_OAEP only with SHA-1. Every PKCS#11 call holds
:data:`hsm.pkcs11_lock.PKCS11_LOCK`; the lock is held for a whole generation or release, so
session objects never outlive the operation that made them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from asn1crypto.keys import PrivateKeyInfo
from cryptography import x509
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)
from cryptography.x509.oid import NameOID

from hsm.algorithms import KeyType, algorithm
from hsm.errors import (
    DecryptionFailed,
    HsmError,
    InvalidKeyUri,
    KeyExists,
    KeyNotFound,
    UnsupportedKeyType,
    UnsupportedMechanism,
)
from hsm.key_transport import TransportWrap, load_transport_key
from hsm.keystore import KeyRing
from hsm.signer import Signer

__all__ = [
    "MECH_AES_KWP",
    "MECH_RSA_AES_KWP",
    "EscrowBackend",
    "EscrowIntegrityError",
    "EscrowedKey",
    "MasterKeyInfo",
    "create_master_key",
    "open_backend",
]

MECH_AES_KWP: Final = "CKM_AES_KEY_WRAP_PAD"
"""Blob = RFC 5649 AES-KWP under the HSM's AES-256 master key."""
MECH_RSA_AES_KWP: Final = "RSA-OAEP-SHA256+AES-KWP"
"""Blob = RSA-OAEP-SHA256(master, CEK) || RFC 5649 AES-KWP(CEK, PKCS#8): file store."""
MASTER_FILE_KEY_TYPE: Final = KeyType.RSA_3072
CSR_SUBJECT: Final = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "govpki kmc escrow")])
"""The CSR's subject: the CA builds the certificate's subject from the caller's records."""
_CEK_BYTES: Final = 32
_MASTER_ID_BYTES: Final = 16
_OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                            label=None)


class EscrowIntegrityError(DecryptionFailed):
    """An escrow blob does not unwrap under the master key, or unwraps to another key than the
    escrow record names. One message for every cause (no oracle)."""

    kind = "hsm-escrow-integrity"


@dataclass(frozen=True)
class MasterKeyInfo:
    key_uri: str
    mechanism: str
    protection: dict[str, Any]
    """CKA_SENSITIVE, CKA_EXTRACTABLE, ... as the token reports them (empty for a file key)."""
    public_key_der: bytes | None = None


@dataclass(frozen=True)
class EscrowedKey:
    """A freshly escrowed key: its public half, the CSR it signed, and the wrapped blob."""

    key_type: KeyType
    public_key: rsa.RSAPublicKey
    csr_der: bytes
    wrapped: bytes = field(repr=False)
    mechanism: str


class EscrowBackend(Protocol):
    key_uri: str
    mechanism: str

    def generate(self, key_type: KeyType | str) -> EscrowedKey:
        """A new RSA key pair, wrapped under the master key; the private key is gone after."""
        ...

    def wrap_for_transport(self, wrapped: bytes, expected: rsa.RSAPublicKey,
                           transport: rsa.RSAPublicKey, oaep_hash: str = "sha1"
                           ) -> TransportWrap:
        """Re-wrap an escrow blob for a token's transport key (see :mod:`hsm.key_transport`)."""
        ...


# ---------------------------------------------------------------------------------------------
# Opening


def create_master_key(keyring: KeyRing, key_uri: str) -> MasterKeyInfo:
    """Generate the KMC master key at ``key_uri``; refuses a name already taken (KeyExists)."""
    store = keyring.store_for(key_uri)
    if store.scheme == "pkcs11":
        from hsm.pkcs11_store import Pkcs11KeyStore

        assert isinstance(store, Pkcs11KeyStore)
        return _Pkcs11Master(store, key_uri).create()
    signer = keyring.generate(key_uri, MASTER_FILE_KEY_TYPE)
    public = signer.public_key()
    return MasterKeyInfo(key_uri, MECH_RSA_AES_KWP, {},
                         public.public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))


def open_backend(keyring: KeyRing, key_uri: str, mechanism: str) -> EscrowBackend:
    """The backend for an existing master key (its mechanism as recorded when created)."""
    store = keyring.store_for(key_uri)
    if store.scheme == "pkcs11":
        if mechanism != MECH_AES_KWP:
            raise UnsupportedMechanism(f"master key {key_uri} is recorded with {mechanism}; a "
                                       f"PKCS#11 master key wraps with {MECH_AES_KWP}")
        from hsm.pkcs11_store import Pkcs11KeyStore

        assert isinstance(store, Pkcs11KeyStore)
        return Pkcs11EscrowBackend(store, key_uri)
    if mechanism != MECH_RSA_AES_KWP:
        raise UnsupportedMechanism(f"master key {key_uri} is recorded with {mechanism}; a file "
                                   f"master key wraps with {MECH_RSA_AES_KWP}")
    return SoftwareEscrowBackend(keyring.get(key_uri))


def _check_rsa(key_type: KeyType | str) -> KeyType:
    alg = algorithm(key_type)
    if alg.family != "rsa":
        raise UnsupportedKeyType(f"escrowed encryption keys are RSA (CMS key transport); "
                                 f"{alg.key_type.value} is not")
    return alg.key_type


def _csr(private_key: rsa.RSAPrivateKey) -> bytes:
    csr = x509.CertificateSigningRequestBuilder().subject_name(CSR_SUBJECT).sign(
        private_key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def _oaep(name: str) -> padding.OAEP:
    chosen: hashes.HashAlgorithm = hashes.SHA1() if name == "sha1" else hashes.SHA256()  # noqa: S303
    return padding.OAEP(mgf=padding.MGF1(chosen), algorithm=chosen, label=None)


# ---------------------------------------------------------------------------------------------
# Software (file store)


class SoftwareEscrowBackend:
    """File-store master key (RSA-3072); keys exist in this process's memory while handled."""

    mechanism = MECH_RSA_AES_KWP

    def __init__(self, master: Signer) -> None:
        public = master.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise UnsupportedKeyType(f"the file master key {master.key_uri} must be RSA")
        self.key_uri = master.key_uri
        self._master = master
        self._public = public

    def generate(self, key_type: KeyType | str) -> EscrowedKey:
        kt = _check_rsa(key_type)
        key = rsa.generate_private_key(public_exponent=65537, key_size=algorithm(kt).bits)
        csr = _csr(key)
        cek = os.urandom(_CEK_BYTES)
        wrapped = self._public.encrypt(cek, _OAEP_SHA256) + aes_key_wrap_with_padding(
            cek, _pkcs8(key))
        return EscrowedKey(kt, key.public_key(), csr, wrapped, self.mechanism)

    def wrap_for_transport(self, wrapped: bytes, expected: rsa.RSAPublicKey,
                           transport: rsa.RSAPublicKey, oaep_hash: str = "sha1"
                           ) -> TransportWrap:
        transport = load_transport_key(transport)
        pkcs8 = self._unwrap(wrapped, expected)
        cek = os.urandom(_CEK_BYTES)
        return TransportWrap(transport.encrypt(cek, _oaep(oaep_hash)),
                             aes_key_wrap_with_padding(cek, pkcs8), oaep_hash)

    def _unwrap(self, wrapped: bytes, expected: rsa.RSAPublicKey) -> bytes:
        size = (self._public.key_size + 7) // 8
        failure = EscrowIntegrityError(f"the escrowed key does not unwrap under master key "
                                       f"{self.key_uri} to the key its record names")
        try:
            cek = self._master.decrypt(wrapped[:size], _OAEP_SHA256)
            pkcs8 = aes_key_unwrap_with_padding(cek, wrapped[size:])
            # Only the public half is compared, so asn1crypto reads it without pyca's full
            # (slow) RSA key validation: the bytes are re-wrapped, never used here.
            key = PrivateKeyInfo.load(pkcs8)["private_key"].parsed
            numbers = (key["modulus"].native, key["public_exponent"].native)
        except (ValueError, InvalidUnwrap, InvalidKey, TypeError, KeyError):
            raise failure from None
        wanted = expected.public_numbers()
        if numbers != (wanted.n, wanted.e):
            raise failure
        return pkcs8


def _pkcs8(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# ---------------------------------------------------------------------------------------------
# PKCS#11


class _Pkcs11Master:
    """Finding and creating the AES master key on a Pkcs11KeyStore's token."""

    def __init__(self, store: Any, key_uri: str) -> None:
        from hsm.pkcs11_uri import parse_pkcs11_uri

        ref = parse_pkcs11_uri(key_uri)
        if not ref.object:
            raise InvalidKeyUri(f"master key URI {key_uri} must name the key: add object=<label>")
        if ref.type not in (None, "secret-key"):
            raise InvalidKeyUri(f"master key URI {key_uri} selects type={ref.type}; the KMC "
                                f"master key is type=secret-key")
        if ref.token is not None and ref.token != store.token_label:
            raise InvalidKeyUri(f"master key URI {key_uri} names token {ref.token!r}, but the "
                                f"configured store is token {store.token_label!r}")
        if ref.pin_source is not None:
            raise InvalidKeyUri(f"key URI {key_uri} has pin-source; PINs come from the "
                                f"environment")
        self.store = store
        self.key_uri = key_uri
        self.label: str = ref.object
        self.key_id: bytes | None = ref.id
        self._handle: Any = None

    def _query(self) -> dict[Any, Any]:
        from pkcs11 import Attribute, ObjectClass

        query: dict[Any, Any] = {Attribute.CLASS: ObjectClass.SECRET_KEY,
                                 Attribute.LABEL: self.label}
        if self.key_id is not None:
            query[Attribute.ID] = self.key_id
        return query

    def get(self) -> Any:
        from hsm.pkcs11_lock import PKCS11_LOCK

        with PKCS11_LOCK:
            if self._handle is None:
                found = self.store._objects(self._query())
                if not found:
                    raise KeyNotFound(f"no KMC master key labelled {self.label!r} on token "
                                      f"{self.store.token_label!r} (key {self.key_uri}): run "
                                      f"`govpki kmc init`")
                if len(found) > 1:
                    raise KeyNotFound(f"{len(found)} secret keys are labelled {self.label!r} on "
                                      f"token {self.store.token_label!r}; add id=... to "
                                      f"{self.key_uri}")
                self._handle = found[0]
            return self._handle

    def create(self) -> MasterKeyInfo:
        from pkcs11 import Attribute, MechanismFlag
        from pkcs11 import KeyType as P11KeyType
        from pkcs11 import exceptions as p11e
        from pkcs11.constants import DEFAULT

        from hsm.pkcs11_lock import PKCS11_LOCK

        key_id = self.key_id or secrets.token_bytes(_MASTER_ID_BYTES)
        template = {
            Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
            Attribute.ENCRYPT: False, Attribute.DECRYPT: False, Attribute.DERIVE: False,
            Attribute.SIGN: DEFAULT, Attribute.VERIFY: DEFAULT, Attribute.MODIFIABLE: False,
        }
        with PKCS11_LOCK:
            session = self.store._session()
            taken = self.store._objects({Attribute.LABEL: self.label})
            if taken:
                raise KeyExists(f"token {self.store.token_label!r} already has an object "
                                f"labelled {self.label!r}; refusing to create a second KMC "
                                f"master key under that name")
            try:
                key = session.generate_key(
                    P11KeyType.AES, 256, id=key_id, label=self.label, store=True,
                    capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP, template=template)
            except p11e.PKCS11Error as exc:
                raise HsmError(f"generating the KMC master key {self.key_uri} on token "
                               f"{self.store.token_label!r} failed: "
                               f"{type(exc).__name__}") from exc
            protection = _attributes(key)
            wanted = {"CKA_SENSITIVE": True, "CKA_EXTRACTABLE": False,
                      "CKA_NEVER_EXTRACTABLE": True, "CKA_ALWAYS_SENSITIVE": True,
                      "CKA_TOKEN": True, "CKA_WRAP": True, "CKA_UNWRAP": True,
                      "CKA_ENCRYPT": False, "CKA_DECRYPT": False}
            wrong = {k: protection.get(k) for k, v in wanted.items() if protection.get(k) != v}
            if wrong:
                with suppress(p11e.PKCS11Error):
                    key.destroy()
                raise HsmError(f"token {self.store.token_label!r} did not keep the KMC master "
                               f"key as asked ({wrong}); the key was destroyed")
            self._handle = key
        return MasterKeyInfo(self.key_uri, MECH_AES_KWP, protection)


def _attributes(obj: Any) -> dict[str, Any]:
    from pkcs11 import Attribute
    from pkcs11 import exceptions as p11e

    names = ("TOKEN", "PRIVATE", "SENSITIVE", "EXTRACTABLE", "NEVER_EXTRACTABLE",
             "ALWAYS_SENSITIVE", "LOCAL", "MODIFIABLE", "WRAP", "UNWRAP", "ENCRYPT", "DECRYPT",
             "SIGN", "DERIVE")
    out: dict[str, Any] = {}
    for name in names:
        try:
            value = obj[getattr(Attribute, name)]
        except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive):
            value = None
        out[f"CKA_{name}"] = bool(value) if value is not None else None
    return out


class Pkcs11EscrowBackend:
    """Escrow on the HSM that holds the AES master key (see the module docstring)."""

    mechanism = MECH_AES_KWP

    def __init__(self, store: Any, key_uri: str) -> None:
        self._master = _Pkcs11Master(store, key_uri)
        self._store = store
        self.key_uri = key_uri

    def master_attributes(self) -> dict[str, Any]:
        """The master key's protection attributes as the token reports them now."""
        from hsm.pkcs11_lock import PKCS11_LOCK

        with PKCS11_LOCK:
            return _attributes(self._master.get())

    def generate(self, key_type: KeyType | str) -> EscrowedKey:
        from pkcs11 import Attribute, Mechanism, MechanismFlag
        from pkcs11 import KeyType as P11KeyType
        from pkcs11 import exceptions as p11e

        from hsm.pkcs11_lock import PKCS11_LOCK
        from hsm.pkcs11_store import Pkcs11Signer, _pyca_public_key

        kt = _check_rsa(key_type)
        bits = algorithm(kt).bits
        with PKCS11_LOCK:
            kek = self._master.get()
            session = self._store._session()
            try:
                public_obj, private_obj = session.generate_keypair(
                    P11KeyType.RSA, bits, store=False,
                    capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY
                    | MechanismFlag.DECRYPT | MechanismFlag.ENCRYPT,
                    public_template={Attribute.TOKEN: False, Attribute.WRAP: False},
                    private_template={
                        Attribute.TOKEN: False, Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True,
                        # CKA_SIGN only for the CSR's proof of possession: the session object
                        # is destroyed below; the delivered copy is unwrapped without it.
                        Attribute.SIGN: True, Attribute.DECRYPT: True,
                        Attribute.UNWRAP: False, Attribute.DERIVE: False})
            except p11e.PKCS11Error as exc:
                raise HsmError(f"generating an {kt.value} key for escrow on token "
                               f"{self._store.token_label!r} failed: "
                               f"{type(exc).__name__}") from exc
            try:
                public = _pyca_public_key(public_obj, P11KeyType.RSA)
                assert isinstance(public, rsa.RSAPublicKey)
                signer = Pkcs11Signer(self._store, f"{self.key_uri} (escrow session key)",
                                      "kmc-escrow", private_obj, public, b"")
                private = signer.as_private_key()
                assert isinstance(private, rsa.RSAPrivateKey)
                csr = _csr(private)
                try:
                    wrapped = bytes(kek.wrap_key(private_obj, mechanism=Mechanism.AES_KEY_WRAP_PAD))
                except p11e.MechanismInvalid:
                    raise UnsupportedMechanism(f"token {self._store.token_label!r} does not "
                                               f"offer CKM_AES_KEY_WRAP_PAD") from None
                except p11e.PKCS11Error as exc:
                    raise HsmError(f"wrapping the escrowed key under {self.key_uri} failed: "
                                   f"{type(exc).__name__}") from exc
            finally:
                _destroy(private_obj, public_obj)
        return EscrowedKey(kt, public, csr, wrapped, self.mechanism)

    def wrap_for_transport(self, wrapped: bytes, expected: rsa.RSAPublicKey,
                           transport: rsa.RSAPublicKey, oaep_hash: str = "sha1"
                           ) -> TransportWrap:
        from pkcs11 import MGF, Attribute, Mechanism, ObjectClass
        from pkcs11 import KeyType as P11KeyType
        from pkcs11 import exceptions as p11e
        from pkcs11.constants import DEFAULT

        from hsm.pkcs11_lock import PKCS11_LOCK

        transport = load_transport_key(transport)
        numbers = transport.public_numbers()
        hash_mech, mgf = ((Mechanism.SHA_1, MGF.SHA1) if oaep_hash == "sha1"
                          else (Mechanism.SHA256, MGF.SHA256))
        with PKCS11_LOCK, self._unwrapped(wrapped, expected) as private_obj:
            session = self._store._session()
            made: list[Any] = []
            try:
                cek = session.generate_key(
                    P11KeyType.AES, 256, store=False,
                    template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True,
                              Attribute.WRAP: True, Attribute.UNWRAP: False,
                              Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
                              Attribute.DERIVE: False, Attribute.SIGN: DEFAULT,
                              Attribute.VERIFY: DEFAULT})
                made.append(cek)
                inner = bytes(cek.wrap_key(private_obj, mechanism=Mechanism.AES_KEY_WRAP_PAD))
                target = session.create_object({
                    Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: P11KeyType.RSA,
                    Attribute.TOKEN: False, Attribute.WRAP: True, Attribute.ENCRYPT: False,
                    Attribute.VERIFY: False,
                    Attribute.MODULUS: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8,
                                                          "big"),
                    Attribute.PUBLIC_EXPONENT: numbers.e.to_bytes(
                        (numbers.e.bit_length() + 7) // 8, "big")})
                made.append(target)
                outer = bytes(target.wrap_key(cek, mechanism=Mechanism.RSA_PKCS_OAEP,
                                              mechanism_param=(hash_mech, mgf, None)))
            except (p11e.ArgumentsBad, p11e.MechanismParamInvalid):
                raise UnsupportedMechanism(f"token {self._store.token_label!r} refuses "
                                           f"RSA-OAEP with {oaep_hash}") from None
            except p11e.PKCS11Error as exc:
                raise HsmError(f"wrapping the escrowed key for the transport key failed on "
                               f"token {self._store.token_label!r}: "
                               f"{type(exc).__name__}") from exc
            finally:
                _destroy(*made)
        return TransportWrap(outer, inner, oaep_hash)

    def install(self, wrapped: bytes, expected: rsa.RSAPublicKey, key_uri: str) -> Signer:
        """Unwrap an escrowed key onto the HSM for good, as a non-extractable decryption key at
        ``key_uri`` (an organisation's exchange key whose documents the server opens)."""
        from pkcs11 import Attribute, Mechanism, ObjectClass
        from pkcs11 import KeyType as P11KeyType
        from pkcs11 import exceptions as p11e
        from pkcs11.constants import DEFAULT

        from hsm.pkcs11_lock import PKCS11_LOCK
        from hsm.pkcs11_uri import parse_pkcs11_uri

        ref = parse_pkcs11_uri(key_uri)
        if not ref.object or (ref.token is not None and ref.token != self._store.token_label):
            raise InvalidKeyUri(f"{key_uri} must name object=<label> on token "
                                f"{self._store.token_label!r}")
        key_id = ref.id or secrets.token_bytes(_MASTER_ID_BYTES)
        numbers = expected.public_numbers()
        with PKCS11_LOCK:
            if self._store._objects({Attribute.LABEL: ref.object}):
                raise KeyExists(f"token {self._store.token_label!r} already has an object "
                                f"labelled {ref.object!r}")
            kek = self._master.get()
            session = self._store._session()
            try:
                private = kek.unwrap_key(
                    ObjectClass.PRIVATE_KEY, P11KeyType.RSA, wrapped,
                    mechanism=Mechanism.AES_KEY_WRAP_PAD, id=key_id, label=ref.object,
                    store=True, template={
                        **_PRIVATE_ONLY(DEFAULT), Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                        Attribute.DECRYPT: True, Attribute.UNWRAP: True,
                        Attribute.SIGN: False, Attribute.DERIVE: False})
            except p11e.PKCS11Error:
                raise EscrowIntegrityError(f"the escrowed key does not unwrap under master key "
                                           f"{self.key_uri}") from None
            if int.from_bytes(bytes(private[Attribute.MODULUS]), "big") != numbers.n:
                _destroy(private)
                raise EscrowIntegrityError(f"the escrowed key does not unwrap under master key "
                                           f"{self.key_uri}")
            try:
                session.create_object({
                    Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: P11KeyType.RSA,
                    Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.ID: key_id,
                    Attribute.LABEL: ref.object, Attribute.ENCRYPT: True,
                    Attribute.WRAP: True, Attribute.VERIFY: False,
                    Attribute.MODULUS: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8,
                                                          "big"),
                    Attribute.PUBLIC_EXPONENT: numbers.e.to_bytes(
                        (numbers.e.bit_length() + 7) // 8, "big")})
            except p11e.PKCS11Error as exc:
                _destroy(private)
                raise HsmError(f"storing the public key of {key_uri} failed: "
                               f"{type(exc).__name__}") from exc
        signer: Signer = self._store.get(key_uri)
        return signer

    @contextmanager
    def _unwrapped(self, wrapped: bytes, expected: rsa.RSAPublicKey) -> Iterator[Any]:
        """The escrowed key as a session object on the HSM (sensitive, extractable only under
        wrap, no use of its own), checked against ``expected``; destroyed on exit."""
        from pkcs11 import Attribute, Mechanism, ObjectClass
        from pkcs11 import KeyType as P11KeyType
        from pkcs11 import exceptions as p11e
        from pkcs11.constants import DEFAULT

        from hsm.pkcs11_lock import PKCS11_LOCK

        failure = EscrowIntegrityError(f"the escrowed key does not unwrap under master key "
                                       f"{self.key_uri} to the key its record names")
        with PKCS11_LOCK:
            kek = self._master.get()
            try:
                private = kek.unwrap_key(
                    ObjectClass.PRIVATE_KEY, P11KeyType.RSA, bytes(wrapped),
                    mechanism=Mechanism.AES_KEY_WRAP_PAD, store=False,
                    template={**_PRIVATE_ONLY(DEFAULT), Attribute.PRIVATE: True,
                              Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True,
                              Attribute.DECRYPT: False, Attribute.SIGN: False,
                              Attribute.UNWRAP: False, Attribute.DERIVE: False})
            except p11e.PKCS11Error:
                raise failure from None
            try:
                modulus = int.from_bytes(bytes(private[Attribute.MODULUS]), "big")
                exponent = int.from_bytes(bytes(private[Attribute.PUBLIC_EXPONENT]), "big")
                wanted = expected.public_numbers()
                if (modulus, exponent) != (wanted.n, wanted.e):
                    raise failure
                yield private
            finally:
                _destroy(private)


def _PRIVATE_ONLY(default: object) -> dict[Any, Any]:
    """python-pkcs11 puts every capability attribute into an unwrap template; CKA_ENCRYPT,
    CKA_VERIFY and CKA_WRAP are invalid on a private key (CKR_ATTRIBUTE_TYPE_INVALID), so they
    are dropped (its DEFAULT marker removes a key from the template)."""
    from pkcs11 import Attribute

    return {Attribute.ENCRYPT: default, Attribute.VERIFY: default, Attribute.WRAP: default}


def _destroy(*objects: Any) -> None:
    from pkcs11 import exceptions as p11e

    from hsm.pkcs11_lock import PKCS11_LOCK

    with PKCS11_LOCK:
        for obj in objects:
            with suppress(p11e.PKCS11Error):
                obj.destroy()
