"""The official's side of key delivery: the escrowed encryption key goes *into* the USB key.

Runs on the official's machine (or the recovery officer's), next to :mod:`hsm.token`. The key
management centre never sees the token and the token never sees the key in the clear::

    with open_token(module, label, pin) as usb:
        transport = create_transport_key(usb)          # RSA-2048 made on the token, unwrap-only
        wrapped = <the KMC's answer for transport.spki_der>   # RA endpoint, or a released file
        key = unwrap_into_token(usb, wrapped)          # C_UnwrapKey twice, inside the token

1. :func:`create_transport_key` generates an RSA key pair on the token whose private half may
   only unwrap (CKA_UNWRAP; no decrypt, sign or derive; sensitive, never extractable). It is a
   token object, so a release made by another process later (user recovery over two days) still
   finds it; :func:`unwrap_into_token` destroys it once used.
2. The KMC wraps the escrowed key for its public half (:mod:`hsm.key_transport`).
3. :func:`unwrap_into_token` unwraps the CEK with CKM_RSA_PKCS_OAEP into a *session* AES key
   (sensitive, not extractable, unwrap-only), unwraps the PKCS#8 key with it into a token
   object (CKM_AES_KEY_WRAP_KWP where the token offers it, else CKM_AES_KEY_WRAP_PAD, which is
   RFC 5649 on SoftHSM2), destroys the CEK, checks the unwrapped modulus against the public key
   the KMC named, adds the public key object and writes certificate and chain beside them.

The delivered private key: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true, CKA_EXTRACTABLE false,
CKA_DECRYPT and CKA_UNWRAP (CMS key transport) true, CKA_SIGN and CKA_DERIVE false: an
encryption key never signs, so it cannot be mistaken for the non-repudiable signing key. The
token reports CKA_LOCAL, CKA_NEVER_EXTRACTABLE and CKA_ALWAYS_SENSITIVE false for it — true:
it was born in the KMC's HSM, not here. Its CKA_ID is the certificate's subjectKeyIdentifier
(the key was certified before delivery, so the value is known), the label
``govpki-enc-<8 hex digits>``. Delivering the same key again is a no-op (idempotent retry);
a failure removes what this call wrote. Every PKCS#11 call holds
:data:`hsm.pkcs11_lock.PKCS11_LOCK`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import MGF, Attribute, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11 import exceptions as p11e
from pkcs11.constants import DEFAULT

from hsm.enroll import Enrollment
from hsm.errors import HsmError, KeyExists, KeyNotFound, UnsupportedMechanism
from hsm.key_transport import InvalidWrappedKey, WrappedKey, spki_der, spki_sha256
from hsm.pkcs11_lock import PKCS11_LOCK
from hsm.pkcs11_login import open_session
from hsm.pkcs11_store import find_token, load_module
from hsm.token import TokenKey, UsbToken

__all__ = [
    "ENCRYPTION_LABEL_PREFIX",
    "TRANSPORT_LABEL_PREFIX",
    "ReceiveEncryptionKey",
    "TransportKey",
    "create_transport_key",
    "discard_transport_key",
    "find_transport_key",
    "unwrap_into_token",
]

TRANSPORT_LABEL_PREFIX: Final = "govpki-kmc-transport-"
ENCRYPTION_LABEL_PREFIX: Final = "govpki-enc-"
TRANSPORT_BITS: Final = 2048
_ID_BYTES: Final = 16
# python-pkcs11 puts these into every unwrap template; they are invalid on a private key.
_PRIVATE_ONLY: Final = {Attribute.ENCRYPT: DEFAULT, Attribute.VERIFY: DEFAULT,
                        Attribute.WRAP: DEFAULT}


@dataclass(frozen=True)
class TransportKey:
    """An unwrap-only RSA key pair on the token that the KMC wraps a key to."""

    key_id: bytes
    label: str
    public_key: rsa.RSAPublicKey = field(repr=False)

    @property
    def spki_der(self) -> bytes:
        """What to send to the KMC (DER SubjectPublicKeyInfo)."""
        return spki_der(self.public_key)

    @property
    def sha256(self) -> str:
        return spki_sha256(self.public_key)


@contextmanager
def _session(usb: UsbToken) -> Iterator[Any]:
    """A session of our own on the USB key. Login is per application and ``usb`` holds it, so
    this session is logged in too (DESIGN.md, Pitfalls); it is closed on exit."""
    if usb.closed:
        raise HsmError(f"the session on token {usb.token_label!r} is closed")
    lib = load_module(usb.module_path)
    with PKCS11_LOCK:
        token = find_token(lib, usb.module_path, usb.token_label)
        session = open_session(token, rw=True)
        try:
            yield session
        finally:
            with suppress(p11e.PKCS11Error):
                session.close()


def _rsa_public(obj: Any) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(int.from_bytes(bytes(obj[Attribute.PUBLIC_EXPONENT]), "big"),
                                int.from_bytes(bytes(obj[Attribute.MODULUS]), "big")
                                ).public_key()


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _destroy(*objects: Any) -> None:
    with PKCS11_LOCK:
        for obj in objects:
            with suppress(p11e.PKCS11Error):
                obj.destroy()


# ---------------------------------------------------------------------------------------------
# Transport keys


def create_transport_key(usb: UsbToken) -> TransportKey:
    """Generate the unwrap-only RSA-2048 transport key pair on the token (see module doc)."""
    key_id = secrets.token_bytes(_ID_BYTES)
    label = f"{TRANSPORT_LABEL_PREFIX}{key_id.hex()[:8]}"
    with _session(usb) as session:
        try:
            public, private = session.generate_keypair(
                P11KeyType.RSA, TRANSPORT_BITS, id=key_id, label=label, store=True,
                capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
                public_template={Attribute.PRIVATE: False, Attribute.ENCRYPT: False,
                                 Attribute.VERIFY: False, Attribute.WRAP: True},
                private_template={Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                                  Attribute.EXTRACTABLE: False, Attribute.UNWRAP: True,
                                  Attribute.DECRYPT: False, Attribute.SIGN: False,
                                  Attribute.DERIVE: False})
        except p11e.PKCS11Error as exc:
            for obj in _find(session, {Attribute.ID: key_id}):
                _destroy(obj)
            raise HsmError(f"token {usb.token_label!r} could not generate a transport key "
                           f"({type(exc).__name__})") from exc
        if private[Attribute.SENSITIVE] is not True or private[Attribute.EXTRACTABLE] is not \
                False:
            _destroy(private, public)
            raise HsmError(f"token {usb.token_label!r} did not keep the transport key "
                           f"sensitive and non-extractable; it was removed")
        return TransportKey(key_id, label, _rsa_public(public))


def find_transport_key(usb: UsbToken, sha256: str) -> TransportKey:
    """The transport key whose SubjectPublicKeyInfo hashes to ``sha256`` (from a WrappedKey)."""
    with _session(usb) as session:
        obj = _transport_private(session, usb, sha256)
        key_id = bytes(obj[Attribute.ID])
        label = str(obj[Attribute.LABEL])
        return TransportKey(key_id, label, _rsa_public(obj))


def discard_transport_key(usb: UsbToken, transport: TransportKey) -> None:
    """Remove a transport key pair (after use, or when a delivery is abandoned)."""
    with _session(usb) as session:
        _destroy(*_find(session, {Attribute.ID: transport.key_id,
                                  Attribute.LABEL: transport.label}))


def _find(session: Any, query: dict[Attribute, Any]) -> list[Any]:
    with PKCS11_LOCK:
        return list(session.get_objects(query))


def _transport_private(session: Any, usb: UsbToken, sha256: str) -> Any:
    with PKCS11_LOCK:
        for obj in _find(session, {Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                   Attribute.KEY_TYPE: P11KeyType.RSA}):
            label = str(obj[Attribute.LABEL] or "")
            if label.startswith(TRANSPORT_LABEL_PREFIX) and \
                    spki_sha256(_rsa_public(obj)) == sha256:
                return obj
    raise KeyNotFound(f"token {usb.token_label!r} has no transport key {sha256[:16]}…: the "
                      f"key was wrapped for another token (or the transport key was removed)")


# ---------------------------------------------------------------------------------------------
# Unwrapping


def _kwp_mechanism(usb: UsbToken) -> Any:
    """RFC 5649 unwrap: CKM_AES_KEY_WRAP_KWP where offered, else CKM_AES_KEY_WRAP_PAD."""
    lib = load_module(usb.module_path)
    with PKCS11_LOCK:
        mechanisms = {int(m) for m in find_token(lib, usb.module_path,
                                                  usb.token_label).slot.get_mechanisms()}
    if int(Mechanism.AES_KEY_WRAP_KWP) in mechanisms:  # PKCS#11 v3.0's number for RFC 5649
        return Mechanism.AES_KEY_WRAP_KWP
    if int(Mechanism.AES_KEY_WRAP_PAD) in mechanisms:
        return Mechanism.AES_KEY_WRAP_PAD
    raise UnsupportedMechanism(f"token {usb.token_label!r} offers no RFC 5649 AES key unwrap "
                               f"(CKM_AES_KEY_WRAP_KWP / CKM_AES_KEY_WRAP_PAD); it cannot "
                               f"receive an escrowed key without exposing it")


def _key_id(public: rsa.RSAPublicKey, cert: x509.Certificate | None) -> bytes:
    if cert is not None:
        with suppress(x509.ExtensionNotFound):
            return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return x509.SubjectKeyIdentifier.from_public_key(public).digest


def unwrap_into_token(usb: UsbToken, wrapped: WrappedKey, *, label: str | None = None
                      ) -> TokenKey:
    """Unwrap ``wrapped`` inside the token, store certificate and chain beside it, remove the
    transport key; returns the delivered key (see the module docstring for every attribute).

    Raises KeyNotFound when this token has no matching transport key, KeyExists when another
    key already uses the CKA_ID or label, DecryptionFailed when the envelope does not unwrap or
    unwraps to another key than the KMC named. Nothing is left behind on failure except the
    transport key, so the same envelope can be tried again.
    """
    expected = wrapped.public_key()
    cert = wrapped.certificate()
    if cert is not None and cert.public_key() != expected:
        raise InvalidWrappedKey("the certificate in the wrapped key is for another key than "
                                "the one wrapped")
    key_id = _key_id(expected, cert)
    label = label or f"{ENCRYPTION_LABEL_PREFIX}{key_id.hex()[:8]}"
    kwp = _kwp_mechanism(usb)
    oaep = ((Mechanism.SHA_1, MGF.SHA1) if wrapped.oaep_hash == "sha1"
            else (Mechanism.SHA256, MGF.SHA256))
    created = False
    with _session(usb) as session:
        transport = _transport_private(session, usb, wrapped.transport_key_sha256)
        transport_id = bytes(transport[Attribute.ID])
        existing = _find(session, {Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                   Attribute.ID: key_id})
        if existing:
            if len(existing) > 1 or _rsa_public(existing[0]) != expected:
                raise KeyExists(f"token {usb.token_label!r} already has another key with id "
                                f"{key_id.hex()}")
        else:
            if _find(session, {Attribute.LABEL: label}):
                raise KeyExists(f"token {usb.token_label!r} already has an object labelled "
                                f"{label!r}")
            _unwrap(session, usb, transport, wrapped, kwp, oaep, key_id, label, expected)
            created = True
    key = usb.find_key(f"id:{key_id.hex()}")
    try:
        if cert is not None:
            usb.store_certificate(key, cert, wrapped.chain_der)
    except BaseException:
        if created:
            usb.delete_key(key)
        raise
    with _session(usb) as session:
        _destroy(*_find(session, {Attribute.ID: transport_id}))
    return key


def _unwrap(session: Any, usb: UsbToken, transport: Any, wrapped: WrappedKey, kwp: Any,
            oaep: tuple[Any, Any], key_id: bytes, label: str, expected: rsa.RSAPublicKey
            ) -> None:
    from hsm.errors import DecryptionFailed

    failed = DecryptionFailed(f"the wrapped key does not unwrap on token {usb.token_label!r} "
                              f"to the key the KMC named")
    with PKCS11_LOCK:
        try:
            cek = transport.unwrap_key(
                ObjectClass.SECRET_KEY, P11KeyType.AES, wrapped.wrapped_cek,
                mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(*oaep, None), store=False,
                template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                          Attribute.UNWRAP: True, Attribute.WRAP: False,
                          Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
                          Attribute.DERIVE: False, Attribute.SIGN: DEFAULT,
                          Attribute.VERIFY: DEFAULT})
        except (p11e.MechanismInvalid, p11e.MechanismParamInvalid, p11e.ArgumentsBad):
            raise UnsupportedMechanism(f"token {usb.token_label!r} cannot unwrap with "
                                       f"RSA-OAEP-{wrapped.oaep_hash}") from None
        except p11e.PKCS11Error:
            raise failed from None
        try:
            private = cek.unwrap_key(
                ObjectClass.PRIVATE_KEY, P11KeyType.RSA, wrapped.wrapped_key, mechanism=kwp,
                id=key_id, label=label, store=True,
                template={**_PRIVATE_ONLY, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                          Attribute.EXTRACTABLE: False, Attribute.DECRYPT: True,
                          Attribute.UNWRAP: True, Attribute.SIGN: False,
                          Attribute.DERIVE: False})
        except p11e.PKCS11Error:
            raise failed from None
        finally:
            _destroy(cek)
        if _rsa_public(private) != expected:
            _destroy(private)
            raise failed
        numbers = expected.public_numbers()
        try:
            session.create_object({
                Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: P11KeyType.RSA,
                Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.ID: key_id,
                Attribute.LABEL: label, Attribute.ENCRYPT: True, Attribute.WRAP: True,
                Attribute.VERIFY: False, Attribute.MODULUS: _int_bytes(numbers.n),
                Attribute.PUBLIC_EXPONENT: _int_bytes(numbers.e)})
        except p11e.PKCS11Error as exc:
            _destroy(private)
            raise HsmError(f"token {usb.token_label!r} could not store the public key of the "
                           f"delivered key ({type(exc).__name__}); nothing was left") from exc


# ---------------------------------------------------------------------------------------------
# The enrollment step


class ReceiveEncryptionKey:
    """The KMC's enrollment step (replaces :class:`hsm.enroll.DeliverEncryptionKey`).

    ``fetch`` sends the transport public key (DER SPKI) to whoever releases the key — the RA's
    enrollment endpoint, authenticated by the same one-time code — and returns the KMC's
    :class:`WrappedKey`, or None when the RA reports no escrowed key for this request. Undo
    removes the delivered key (and the transport key).
    """

    name = "receive the encryption key pair from the key management centre"

    def __init__(self, fetch: Callable[[bytes], WrappedKey | None]) -> None:
        self.fetch = fetch
        self.key: TokenKey | None = None

    def run(self, state: Enrollment) -> None:
        status = state.reply.encryption_status if state.reply else None
        if status != "escrowed":
            if status:
                state.notes.append(f"encryption key pair: {status}")
            return
        transport = create_transport_key(state.token)
        try:
            wrapped = self.fetch(transport.spki_der)
            if wrapped is None:
                state.notes.append("encryption key pair: the KMC has none for this request")
                discard_transport_key(state.token, transport)
                return
            self.key = unwrap_into_token(state.token, wrapped)
        except BaseException:
            with suppress(HsmError):
                discard_transport_key(state.token, transport)
            raise
        state.notes.append(f"encryption key pair delivered as id:{self.key.id_hex}")

    def undo(self, state: Enrollment) -> None:
        if self.key is not None:
            state.token.delete_key(self.key)
