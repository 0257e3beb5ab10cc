"""The official's side of USB-key enrollment: a key pair made on the USB key, a CSR signed by it,
the issued certificate and its chain written back beside it.

A library, not a command: ``govpki token ...`` and the RA's REST calls are wired on top of it.
The RA server never touches an official's token (DESIGN.md, "Layout"); this code runs on the
official's machine with the key plugged in::

    with open_token(module, "张三的USB Key", pin) as usb:
        key = usb.generate_signing_key("ec-p256")
        csr_pem = usb.build_csr(key)             # sent to the RA, which builds the real subject
        ...                                      # the RA approves, the CA issues
        usb.store_certificate(key, cert_pem, chain=[issuing_ca_pem, root_pem])
        # rejected or failed instead: usb.delete_key(key)

Why it looks the way it does:

* One signer for all (DESIGN.md): the CSR is signed through :class:`hsm.pkcs11_store.Pkcs11Signer`,
  found by the :class:`~hsm.pkcs11_store.Pkcs11KeyStore` this module opens on the token, so a USB
  key signs exactly as a CA key on an HSM does (software hash, raw CKM_ECDSA then DER for EC;
  DigestInfo + CKM_RSA_PKCS for RSA, the same bytes CKM_SHA256_RSA_PKCS would give, and
  available on tokens that lack the hash-and-sign mechanisms).
* The store also owns the process's one login per token (login is per application, see
  hsm/pkcs11_store.py). Before it logs in, it checks the PIN on a session of its own through the
  module's C_Login (:mod:`hsm.pkcs11_login`) and closes that session whatever the answer:
  python-pkcs11 0.10 leaks a session on every failed login.
* Objects are paired the way OpenSC, pkcs11-tool, NSS and the Windows minidrivers pair them: the
  private key, the public key and the certificate share one CKA_ID (and here one CKA_LABEL too).
  The CKA_ID is 16 random bytes chosen before generation (as the key store does), so the pair is
  created in one C_GenerateKeyPair with nothing to rewrite afterwards. docs/token.md lists every
  attribute and why.
* Nothing is left half-written: a failed generation removes whatever the token kept under the new
  CKA_ID; a certificate whose public key is not the key's is refused before anything is written;
  a store that fails part-way removes what it wrote. Tokens say "full" in several ways
  (CKR_DEVICE_MEMORY, or a bare CKR_GENERAL_ERROR from SoftHSM2 when its directory cannot take a
  new file): all become :class:`TokenWriteFailed`, and CKR_DEVICE_MEMORY its subclass
  :class:`TokenFull`.

Every PKCS#11 call holds :data:`hsm.pkcs11_lock.PKCS11_LOCK`. PINs never reach a message.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import x509 as asn1_x509
from asn1crypto.core import Integer
from asn1crypto.keys import ECDomainParameters
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, CertificateType, MechanismFlag, ObjectClass, TokenFlag
from pkcs11 import KeyType as P11KeyType
from pkcs11 import exceptions as p11e
from pkcs11.attributes import AttributeMapper, handle_ulong
from pkcs11.util.ec import encode_named_curve_parameters

from hsm.algorithms import REGISTRY, KeyType, algorithm
from hsm.errors import (
    HsmError,
    KeyExists,
    KeyNotFound,
    MissingSecret,
    TokenNotFound,
    UnsupportedKeyType,
    UnsupportedMechanism,
    WrongPin,
)
from hsm.pkcs11_lock import PKCS11_LOCK
from hsm.pkcs11_store import Pkcs11KeyStore, Pkcs11Signer, find_token, load_module
from hsm.pkcs11_uri import Pkcs11Uri
from hsm.token_cryptoki import cryptoki
from hsm.token_ref import (
    InvalidKeyReference,
    KeyReference,
    check_label,
    parse_key_id,
    parse_key_reference,
)

__all__ = [
    "KEY_ID_BYTES",
    "LABEL_PREFIX",
    "PLACEHOLDER_SUBJECT",
    "CertificateMismatch",
    "InvalidCertificate",
    "InvalidKeyReference",
    "KeyExists",
    "KeyNotFound",
    "KeyReference",
    "TokenError",
    "TokenFull",
    "TokenKey",
    "TokenNotFound",
    "TokenObject",
    "TokenSpace",
    "TokenSummary",
    "TokenWriteFailed",
    "UsbToken",
    "WrongPin",
    "list_tokens",
    "open_token",
    "parse_key_id",
    "parse_key_reference",
]

KEY_ID_BYTES = 16
LABEL_PREFIX = "govpki-sign-"
CA_LABEL_PREFIX = "govpki-ca-"
PLACEHOLDER_SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "govpki enrollment")])
"""The CSR's subject: the RA builds the certificate's real subject from its own records."""

# CKA_CERTIFICATE_CATEGORY values, PKCS#11 v2.40 §4.6.2.
CATEGORY_TOKEN_USER = 1
CATEGORY_AUTHORITY = 2
_CATEGORY_NAMES = {0: "unspecified", 1: "token-user", 2: "authority", 3: "other-entity"}

_KINDS = {
    ObjectClass.PRIVATE_KEY: "private-key",
    ObjectClass.PUBLIC_KEY: "public-key",
    ObjectClass.CERTIFICATE: "certificate",
    ObjectClass.DATA: "data",
    ObjectClass.SECRET_KEY: "secret-key",
}
_KIND_ORDER = {"private-key": 0, "public-key": 1, "certificate": 2}
_CKR_OF = {
    p11e.DeviceMemory: "CKR_DEVICE_MEMORY",
    p11e.DeviceError: "CKR_DEVICE_ERROR",
    p11e.GeneralError: "CKR_GENERAL_ERROR",
    p11e.FunctionFailed: "CKR_FUNCTION_FAILED",
    p11e.TokenWriteProtected: "CKR_TOKEN_WRITE_PROTECTED",
}
# Answers to a template attribute the token does not know or will not take.
_ATTRIBUTE_REFUSED = (p11e.AttributeTypeInvalid, p11e.AttributeValueInvalid,
                      p11e.TemplateInconsistent)
_UNREADABLE = (p11e.AttributeTypeInvalid, p11e.AttributeSensitive)

# python-pkcs11 does not know how to pack CKA_CERTIFICATE_CATEGORY (a CK_ULONG).
_MAPPER = AttributeMapper()
_MAPPER.register_handler(Attribute.CERTIFICATE_CATEGORY, *handle_ulong)


# -- errors (in hsm/errors.py's style: a kind and an HTTP status each; no PIN in any message) ---


class TokenError(HsmError):
    """Something about an official's USB key (beyond the store errors in hsm/errors.py)."""

    kind = "hsm-token"


class TokenWriteFailed(TokenError):
    """The token refused to store a new object: full, write-protected or failing."""

    kind = "hsm-token-write-failed"


class TokenFull(TokenWriteFailed):
    """The token said it has no room (CKR_DEVICE_MEMORY)."""

    kind = "hsm-token-full"
    http_status = 507


class CertificateMismatch(TokenError):
    """The certificate certifies another public key than the token key it is stored for."""

    kind = "hsm-certificate-mismatch"
    http_status = 400


class InvalidCertificate(TokenError):
    """Not a certificate: neither PEM nor DER X.509."""

    kind = "hsm-invalid-certificate"
    http_status = 400


# -- values handed to callers (plain data: no session, no handle, no secret) --------------------


@dataclass(frozen=True)
class TokenKey:
    """A signing key pair on the token, named by its CKA_ID (shared by both halves and, once
    stored, by its certificate) and its label."""

    key_id: bytes
    label: str
    key_type: KeyType
    key_uri: str
    """RFC 7512 URI with token, object, id and type=private: configuration can name the key."""
    public_key: PublicKeyTypes = field(compare=False, repr=False)

    @property
    def id_hex(self) -> str:
        return self.key_id.hex()


@dataclass(frozen=True)
class TokenObject:
    """One object on the token as `govpki token list` shows it; never a secret value."""

    kind: str  # "private-key" | "public-key" | "certificate" | "data" | "secret-key" | "other"
    label: str
    id_hex: str
    key_type: str | None = None  # "ec-p256", "rsa-2048", ... for keys
    subject: str | None = None  # RFC 4514, for certificates
    issuer: str | None = None
    serial: int | None = None
    not_after: dt.datetime | None = None  # timezone-aware UTC
    category: str | None = None  # CKA_CERTIFICATE_CATEGORY: token-user, authority, ...
    sensitive: bool | None = None  # private keys: CKA_SENSITIVE
    extractable: bool | None = None  # private keys: CKA_EXTRACTABLE


@dataclass(frozen=True)
class TokenSpace:
    """CK_TOKEN_INFO memory counters in bytes; None where the token does not say (SoftHSM2
    answers CK_UNAVAILABLE_INFORMATION: its room is the disk's)."""

    free_public: int | None
    total_public: int | None
    free_private: int | None
    total_private: int | None


@dataclass(frozen=True)
class TokenSummary:
    """An initialised token in a module, as seen without logging in."""

    label: str
    serial: str
    manufacturer: str
    model: str
    slot_id: int
    user_pin_initialized: bool
    user_pin_count_low: bool
    user_pin_final_try: bool
    user_pin_locked: bool
    write_protected: bool


# -- opening ----------------------------------------------------------------------------------


def list_tokens(module_path: str) -> list[TokenSummary]:
    """The initialised tokens a module offers (no PIN needed): to let the official pick one."""
    lib = load_module(module_path)
    with PKCS11_LOCK:
        try:
            tokens = list(lib.get_tokens())
        except p11e.PKCS11Error as exc:
            raise HsmError(f"cannot list the tokens of {module_path}: "
                           f"{type(exc).__name__}") from exc
        summaries = []
        for t in tokens:
            flags = TokenFlag(t.flags)
            if not flags & TokenFlag.TOKEN_INITIALIZED:
                continue
            summaries.append(TokenSummary(
                label=t.label, serial=_text(t.serial), manufacturer=t.manufacturer_id,
                model=t.model, slot_id=int(t.slot.slot_id),
                user_pin_initialized=bool(flags & TokenFlag.USER_PIN_INITIALIZED),
                user_pin_count_low=bool(flags & TokenFlag.USER_PIN_COUNT_LOW),
                user_pin_final_try=bool(flags & TokenFlag.USER_PIN_FINAL_TRY),
                user_pin_locked=bool(flags & TokenFlag.USER_PIN_LOCKED),
                write_protected=bool(flags & TokenFlag.WRITE_PROTECTED),
            ))
    return sorted(summaries, key=lambda s: (s.label, s.slot_id))


@contextmanager
def open_token(module_path: str, token_label: str, pin: str) -> Iterator[UsbToken]:
    """Log in to the token labelled ``token_label`` as its user and hand out a :class:`UsbToken`.

    The session is closed (and the login given up, unless another store in this process still
    shares it) when the block ends, also on an exception. A wrong PIN raises
    :class:`~hsm.errors.WrongPin`, a missing token :class:`~hsm.errors.TokenNotFound` naming the
    labels present. The PIN comes from the caller (environment or prompt), never argv.
    """
    usb = UsbToken._open(module_path, token_label, pin)
    del pin
    try:
        yield usb
    finally:
        usb.close()


# -- the session --------------------------------------------------------------------------------


class UsbToken:
    """A logged-in session on one official's token. Get one from :func:`open_token`."""

    def __init__(self, module_path: str, token: Any, store: Pkcs11KeyStore,
                 session: Any) -> None:
        self.module_path = module_path
        self.token_label: str = token.label
        self._token = token
        self._store = store
        self._session_obj = session
        self._closed = False

    @classmethod
    def _open(cls, module_path: str, token_label: str, pin: str) -> UsbToken:
        if not isinstance(pin, str) or not pin:
            raise MissingSecret(f"no user PIN was given for token {token_label!r}")
        lib = load_module(module_path)
        token = find_token(lib, module_path, token_label)
        with PKCS11_LOCK:  # nobody logs in or out between the store's login and our session
            store = Pkcs11KeyStore(module_path, token_label, pin=pin)  # checks the PIN first
            try:
                # A plain session is enough: login is per application and the store holds it.
                session = token.open(rw=True, attribute_mapper=_MAPPER)
            except p11e.PKCS11Error as exc:
                store.close()
                raise HsmError(f"cannot open a read/write session on token {token_label!r}: "
                               f"{type(exc).__name__}") from exc
        return cls(module_path, token, store, session)

    def close(self) -> None:
        """Close our session, then release the store's share of the login (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with PKCS11_LOCK:
            with suppress(p11e.PKCS11Error):
                self._session_obj.close()
            self._store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"UsbToken({self.token_label!r}, {state})"

    # -- keys ---------------------------------------------------------------------------------

    def generate_signing_key(self, key_type: KeyType | str = KeyType.EC_P256,
                             label: str | None = None) -> TokenKey:
        """Generate a signing key pair on the token (never outside it) and return it.

        The private key is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE and may
        only sign (no decrypt, unwrap or derive: an official's encryption key, if ever, is a
        separate pair). The label defaults to ``govpki-sign-<first 8 hex digits of the id>``;
        a label any object already carries is refused (KeyExists). If the token refuses to
        store the pair, whatever it kept under the new CKA_ID is removed and TokenWriteFailed
        (TokenFull for CKR_DEVICE_MEMORY) is raised. A token that does not honour
        CKA_SENSITIVE / CKA_EXTRACTABLE gets its key removed and an HsmError.
        """
        alg = algorithm(key_type)
        key_id = secrets.token_bytes(KEY_ID_BYTES)
        label = f"{LABEL_PREFIX}{key_id.hex()[:8]}" if label is None else check_label(label)
        private_template: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        }
        public_template: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: False,
            Attribute.VERIFY: True,
            Attribute.ENCRYPT: False,
            Attribute.WRAP: False,
        }
        if alg.family == "rsa":
            p11_type, key_length = P11KeyType.RSA, alg.bits
        else:
            p11_type, key_length = P11KeyType.EC, None
            public_template[Attribute.EC_PARAMS] = encode_named_curve_parameters(alg.curve_oid)
        what = f"a new {alg.key_type.value} key"
        with PKCS11_LOCK:
            session = self._session()
            taken = self._objects({Attribute.LABEL: label})
            if taken:
                kinds = ", ".join(sorted({self._kind(o) for o in taken}))
                raise KeyExists(f"token {self.token_label!r} already has an object labelled "
                                f"{label!r} ({kinds}); choose another label")
            try:
                _public, private = session.generate_keypair(
                    p11_type, key_length, id=key_id, label=label, store=True,
                    capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                    public_template=public_template, private_template=private_template,
                )
            except p11e.PKCS11Error as exc:
                left = self._remove({Attribute.ID: key_id})
                if isinstance(exc, p11e.MechanismInvalid):
                    raise UnsupportedMechanism(f"token {self.token_label!r} cannot generate "
                                               f"{alg.key_type.value} keys") from exc
                if isinstance(exc, p11e.KeySizeRange | p11e.DomainParamsInvalid):
                    raise UnsupportedKeyType(f"token {self.token_label!r} refuses to generate "
                                             f"{alg.key_type.value} keys "
                                             f"({type(exc).__name__})") from exc
                raise self._write_error(exc, what, left) from exc
            try:
                self._check_protection(private, label)
                key = self._token_key(key_id, label)
            except BaseException:
                self._remove({Attribute.ID: key_id})
                raise
        return key

    def find_key(self, reference: str | KeyReference) -> TokenKey:
        """The key pair named by ``reference``: its CKA_ID in hex (``id:0a1b...``), its label
        (``label:...``), a ``pkcs11:`` URI, or a bare word tried as both (see
        :mod:`hsm.token_ref`). Raises KeyNotFound when none or several keys match."""
        ref = parse_key_reference(reference) if isinstance(reference, str) else reference
        if ref.token is not None and ref.token != self.token_label:
            raise InvalidKeyReference(f"the key URI names token {ref.token!r}, but token "
                                      f"{self.token_label!r} is open")
        base: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        with PKCS11_LOCK:
            if ref.either:
                assert ref.key_id is not None and ref.label is not None
                found = (self._objects({**base, Attribute.ID: ref.key_id})
                         + self._objects({**base, Attribute.LABEL: ref.label}))
            else:
                query = dict(base)
                if ref.key_id is not None:
                    query[Attribute.ID] = ref.key_id
                if ref.label is not None:
                    query[Attribute.LABEL] = ref.label
                found = self._objects(query)
            pairs = sorted({(bytes(self._read(o, Attribute.ID) or b""),
                             str(self._read(o, Attribute.LABEL) or "")) for o in found})
            if not pairs:
                raise KeyNotFound(f"no private key with {ref} on token {self.token_label!r}")
            if len(pairs) > 1:
                shown = ", ".join(f"id:{i.hex()} ({label!r})" for i, label in pairs)
                raise KeyNotFound(f"{len(pairs)} private keys on token {self.token_label!r} "
                                  f"match {ref}: {shown}; name one by id:<hex>")
            key_id, label = pairs[0]
            return self._token_key(key_id, label)

    def signer(self, key: TokenKey) -> Pkcs11Signer:
        """The key behind the one signer interface (challenge signing, CMS, PDF), valid while
        this token is open."""
        with PKCS11_LOCK:
            return self._signer_for(key)[1]

    def build_csr(self, key: TokenKey, subject: x509.Name | None = None) -> bytes:
        """PEM PKCS#10 request for ``key``, signed on the token (proof of possession).

        The hash is the registry's for the key type (SHA-256; SHA-384 for P-384). The subject
        defaults to :data:`PLACEHOLDER_SUBJECT`: the RA sets the certificate's real subject from
        its records, so nothing the client puts there is trusted anyway.
        """
        signer = self.signer(key)
        private = signer.as_private_key()
        if not isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise UnsupportedKeyType(f"key {key.label!r} cannot sign a CSR")
        hash_algorithm = algorithm(signer.key_type).hash_algorithm()
        assert isinstance(hash_algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512)
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(subject if subject is not None else PLACEHOLDER_SUBJECT)
               .sign(private, hash_algorithm))
        # A token that signs wrongly should fail here, not at the RA.
        if not csr.is_signature_valid or csr.public_key() != signer.public_key():
            raise HsmError(f"token {self.token_label!r} produced a CSR for key {key.label!r} "
                           f"whose signature does not verify")
        return csr.public_bytes(serialization.Encoding.PEM)

    def delete_key(self, key: TokenKey) -> int:
        """Remove the key pair and every certificate sharing its CKA_ID; returns how many
        objects went. Used to roll back an enrollment that was rejected or failed; deleting a
        key that is already gone removes nothing and returns 0. CA certificates stored with
        the chain keep their own ids and stay (other keys may chain to them).

        Certificates go first and the private key last, so an interruption never leaves a
        certificate without its key.
        """
        removed = 0
        with PKCS11_LOCK:
            self._session()
            for object_class in (ObjectClass.CERTIFICATE, ObjectClass.PUBLIC_KEY,
                                 ObjectClass.PRIVATE_KEY):
                query = {Attribute.CLASS: object_class, Attribute.ID: key.key_id}
                found = self._objects(query)
                left = self._remove(query)
                if left:
                    raise TokenWriteFailed(f"could not remove key {key.label!r} (id "
                                           f"{key.id_hex}) from token {self.token_label!r}: "
                                           f"{', '.join(left)} remain")
                removed += len(found)
        return removed

    # -- certificates -----------------------------------------------------------------------

    def store_certificate(self, key: TokenKey,
                          certificate: x509.Certificate | bytes | str,
                          chain: Sequence[x509.Certificate | bytes | str] = ()) -> None:
        """Write the issued certificate beside its key and the CA certificates after it.

        The end-entity certificate gets the key's CKA_ID and label (that is how middleware
        pairs it with the key) and CKA_CERTIFICATE_CATEGORY "token user"; each chain
        certificate gets CKA_ID = its subject key identifier, its common name as label and
        category "authority" (where the token takes the category). Certificates already on
        the token with the same DER are not written twice. A certificate for another public
        key is refused (CertificateMismatch) before anything is written. If a write fails,
        everything this call wrote is removed again. A different certificate stored earlier
        for the same key (a renewal of the same key) is replaced once the new one is written.
        """
        end_entity = _load_certificate(certificate, "the certificate")
        authorities = [_load_certificate(c, f"chain certificate {i + 1}")
                       for i, c in enumerate(chain)]
        with PKCS11_LOCK:
            label, signer = self._signer_for(key)  # the token's public key, not the caller's
            if end_entity.public_key() != signer.public_key():
                raise CertificateMismatch(
                    f"the certificate (serial {end_entity.serial_number:x}, subject "
                    f"{_rfc4514(end_entity.subject)!r}) is for another public key than key "
                    f"{key.label!r} (id {key.id_hex}) on token {self.token_label!r}; nothing was "
                    f"written")
            ee_der = end_entity.public_bytes(serialization.Encoding.DER)
            superseded = []
            wanted: list[tuple[str, dict[Attribute, Any]]] = []
            present = False
            for obj in self._objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                      Attribute.ID: key.key_id}):
                if bytes(self._read(obj, Attribute.VALUE) or b"") == ee_der:
                    present = True
                else:
                    superseded.append(obj)
            if not present:
                wanted.append(("the certificate",
                               _certificate_template(ee_der, key.key_id, label,
                                                     CATEGORY_TOKEN_USER)))
            seen = {ee_der}
            for ca in authorities:
                der = ca.public_bytes(serialization.Encoding.DER)
                if der in seen:
                    continue
                seen.add(der)
                if self._objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                  Attribute.VALUE: der}):
                    continue
                ca_id = _subject_key_id(ca)
                wanted.append((f"CA certificate {_rfc4514(ca.subject)!r}",
                               _certificate_template(der, ca_id, _ca_label(ca, ca_id),
                                                     CATEGORY_AUTHORITY)))
            written: list[Any] = []
            for what, template in wanted:
                try:
                    written.append(self._create_certificate(template))
                except p11e.PKCS11Error as exc:
                    left = self._destroy_all(written)
                    raise self._write_error(exc, what, left) from exc
            left = self._destroy_all(superseded)
            if left:
                raise TokenWriteFailed(f"the new certificate is stored on token "
                                       f"{self.token_label!r}, but the one it replaces could "
                                       f"not be removed: {', '.join(left)} remain")

    # -- listing ----------------------------------------------------------------------------

    def list_objects(self) -> list[TokenObject]:
        """Every object this login can see, described by public attributes only."""
        with PKCS11_LOCK:
            objects = [self._describe(o) for o in self._objects({})]
        return sorted(objects, key=lambda o: (o.id_hex, _KIND_ORDER.get(o.kind, 9), o.label))

    def certificates(self) -> list[tuple[bytes, x509.Certificate]]:
        """(CKA_ID, certificate) of every certificate object that parses: what a tool picks
        a signing or login certificate from. Objects that do not parse are skipped."""
        out = []
        for obj in self._objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
            value = self._read(obj, Attribute.VALUE)
            key_id = bytes(self._read(obj, Attribute.ID) or b"")
            try:
                out.append((key_id, x509.load_der_x509_certificate(bytes(value or b""))))
            except (ValueError, x509.InvalidVersion):
                continue
        return out

    def free_space(self) -> TokenSpace:
        """Free and total public/private memory as the token reports it (CK_TOKEN_INFO)."""
        self._session()
        values = cryptoki(self.module_path).memory(int(self._token.slot.slot_id))
        return TokenSpace(*values)

    # -- internals --------------------------------------------------------------------------

    def _session(self) -> Any:
        if self._closed:
            raise HsmError(f"the session on token {self.token_label!r} is closed")
        return self._session_obj

    def _objects(self, query: dict[Attribute, Any]) -> list[Any]:
        """All matching objects, the search run to completion inside the lock."""
        with PKCS11_LOCK:
            session = self._session()
            try:
                return list(session.get_objects(query))
            except p11e.PKCS11Error as exc:
                raise HsmError(f"searching token {self.token_label!r} failed: "
                               f"{type(exc).__name__}") from exc

    def _read(self, obj: Any, attribute: Attribute) -> Any:
        """One attribute, or None when the object has none or keeps it secret."""
        with PKCS11_LOCK:
            self._session()
            try:
                return obj[attribute]
            except _UNREADABLE:
                return None
            except p11e.PKCS11Error as exc:
                raise HsmError(f"reading {attribute.name} on token {self.token_label!r} "
                               f"failed: {type(exc).__name__}") from exc

    def _kind(self, obj: Any) -> str:
        return _KINDS.get(self._read(obj, Attribute.CLASS), "other")

    def _signer_for(self, key: TokenKey) -> tuple[str, Pkcs11Signer]:
        """The key's label as the token has it and its signer, found again by CKA_ID (so a
        key deleted since, or a stale TokenKey, is not served from the store's cache)."""
        found = self._objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                               Attribute.ID: key.key_id})
        if not found:
            raise KeyNotFound(f"no private key with id {key.id_hex} ({key.label!r}) on token "
                              f"{self.token_label!r}")
        if len(found) > 1:
            raise KeyNotFound(f"{len(found)} private keys share id {key.id_hex} on token "
                              f"{self.token_label!r}; govpki cannot tell which is meant")
        label = _text(self._read(found[0], Attribute.LABEL) or "")
        return label, self._signer(key.key_id, label)

    def _signer(self, key_id: bytes, label: str) -> Pkcs11Signer:
        if not label:
            raise KeyNotFound(f"the private key with id {key_id.hex()} on token "
                              f"{self.token_label!r} has no label; govpki names keys by label")
        uri = Pkcs11Uri(token=self.token_label, object=label, id=key_id or None,
                        type="private").format()
        return self._store.get(uri)

    def _token_key(self, key_id: bytes, label: str) -> TokenKey:
        signer = self._signer(key_id, label)
        return TokenKey(key_id=key_id, label=label, key_type=signer.key_type,
                        key_uri=signer.key_uri, public_key=signer.public_key())

    def _check_protection(self, private: Any, label: str) -> None:
        sensitive = self._read(private, Attribute.SENSITIVE)
        extractable = self._read(private, Attribute.EXTRACTABLE)
        on_token = self._read(private, Attribute.TOKEN)
        if sensitive is not True or extractable is not False or on_token is not True:
            raise HsmError(f"token {self.token_label!r} did not keep key {label!r} sensitive, "
                           f"non-extractable and stored (CKA_SENSITIVE={sensitive}, "
                           f"CKA_EXTRACTABLE={extractable}, CKA_TOKEN={on_token}); the key "
                           f"was removed")

    def _create_certificate(self, template: dict[Attribute, Any]) -> Any:
        session = self._session()
        try:
            return session.create_object(template)
        except _ATTRIBUTE_REFUSED:
            # A token without CKA_CERTIFICATE_CATEGORY (older than PKCS#11 v2.20) still takes
            # the certificate; the category is informational.
            plain = {k: v for k, v in template.items() if k != Attribute.CERTIFICATE_CATEGORY}
            return session.create_object(plain)

    def _remove(self, query: dict[Attribute, Any]) -> list[str]:
        """Destroy every object matching ``query``; returns what could not be destroyed."""
        try:
            found = self._objects(query)
        except HsmError:
            return ["objects the token would not list"]
        return self._destroy_all(found)

    def _destroy_all(self, objects: Sequence[Any]) -> list[str]:
        left: list[str] = []
        with PKCS11_LOCK:
            for obj in reversed(objects):
                try:
                    obj.destroy()
                except p11e.PKCS11Error as exc:
                    left.append(f"{self._kind_or_object(obj)} ({type(exc).__name__})")
        return left

    def _kind_or_object(self, obj: Any) -> str:
        try:
            return self._kind(obj)
        except HsmError:
            return "object"

    def _write_error(self, exc: p11e.PKCS11Error, what: str, left: list[str]) -> HsmError:
        aftermath = ("nothing was left on the token" if not left
                     else f"these objects could not be removed: {', '.join(left)}")
        ckr = next((name for cls, name in _CKR_OF.items() if isinstance(exc, cls)), None)
        if isinstance(exc, p11e.DeviceMemory):
            return TokenFull(f"token {self.token_label!r} is full: no room for {what} ({ckr}); "
                             f"{aftermath}")
        if isinstance(exc, p11e.TokenWriteProtected):
            return TokenWriteFailed(f"token {self.token_label!r} is write-protected: {what} "
                                    f"could not be stored ({ckr}); {aftermath}")
        if ckr is not None:
            return TokenWriteFailed(f"token {self.token_label!r} could not store {what} ({ckr}): "
                                    f"it may be full, write-protected or failing; {aftermath}")
        return HsmError(f"storing {what} on token {self.token_label!r} failed "
                        f"({type(exc).__name__}); {aftermath}")

    def _describe(self, obj: Any) -> TokenObject:
        kind = self._kind(obj)
        label = _text(self._read(obj, Attribute.LABEL) or "")
        id_hex = bytes(self._read(obj, Attribute.ID) or b"").hex()
        if kind in ("private-key", "public-key"):
            private = kind == "private-key"
            return TokenObject(
                kind=kind, label=label, id_hex=id_hex, key_type=self._key_type_name(obj),
                sensitive=self._read(obj, Attribute.SENSITIVE) if private else None,
                extractable=self._read(obj, Attribute.EXTRACTABLE) if private else None,
            )
        if kind == "certificate":
            category = self._read(obj, Attribute.CERTIFICATE_CATEGORY)
            base = TokenObject(kind=kind, label=label, id_hex=id_hex,
                               category=_CATEGORY_NAMES.get(category) if category is not None
                               else None)
            value = self._read(obj, Attribute.VALUE)
            try:
                cert = x509.load_der_x509_certificate(bytes(value or b""))
            except ValueError:
                return base  # not X.509 (or not parseable): listed without details
            return TokenObject(
                kind=kind, label=label, id_hex=id_hex, category=base.category,
                subject=_rfc4514(cert.subject), issuer=_rfc4514(cert.issuer),
                serial=cert.serial_number, not_after=cert.not_valid_after_utc,
            )
        return TokenObject(kind=kind, label=label, id_hex=id_hex)

    def _key_type_name(self, obj: Any) -> str | None:
        p11_type = self._read(obj, Attribute.KEY_TYPE)
        if p11_type == P11KeyType.RSA:
            modulus = self._read(obj, Attribute.MODULUS)
            if not modulus:
                return "rsa"
            return f"rsa-{int.from_bytes(bytes(modulus), 'big').bit_length()}"
        if p11_type == P11KeyType.EC:
            params = self._read(obj, Attribute.EC_PARAMS)
            try:
                parsed = ECDomainParameters.load(bytes(params or b""))
                oid = parsed.chosen.dotted if parsed.name == "named" else None
            except ValueError:
                oid = None
            for alg in REGISTRY.values():
                if oid is not None and alg.curve_oid == oid:
                    return alg.key_type.value
            return f"ec-{oid}" if oid else "ec"
        return None if p11_type is None else str(getattr(p11_type, "name", p11_type)).lower()


# -- helpers ------------------------------------------------------------------------------------


def _load_certificate(value: x509.Certificate | bytes | str, what: str) -> x509.Certificate:
    if isinstance(value, x509.Certificate):
        return value
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    if not isinstance(value, bytes | bytearray):
        raise InvalidCertificate(f"{what} must be PEM or DER bytes or a certificate, not "
                                 f"{type(value).__name__}")
    data = bytes(value)
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InvalidCertificate(f"{what} is not a PEM or DER X.509 certificate") from None


def _certificate_template(der: bytes, cert_id: bytes, label: str,
                          category: int) -> dict[Attribute, Any]:
    """PKCS#11 v2.40 §4.6.2/§4.6.3 X.509 certificate object. CKA_SUBJECT, CKA_ISSUER and
    CKA_SERIAL_NUMBER are the certificate's own DER bytes (asn1crypto keeps them exactly as
    encoded), since middleware compares them byte by byte with certificates and keys."""
    tbs = asn1_x509.Certificate.load(der)["tbs_certificate"]
    return {
        Attribute.CLASS: ObjectClass.CERTIFICATE,
        Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.LABEL: label,
        Attribute.ID: cert_id,
        Attribute.SUBJECT: tbs["subject"].dump(),
        Attribute.ISSUER: tbs["issuer"].dump(),
        Attribute.SERIAL_NUMBER: Integer(tbs["serial_number"].native).dump(),
        Attribute.VALUE: der,
        Attribute.CERTIFICATE_CATEGORY: category,
    }


def _subject_key_id(cert: x509.Certificate) -> bytes:
    """A CA certificate's CKA_ID: its subjectKeyIdentifier (what its children's
    authorityKeyIdentifier carries), else RFC 5280 §4.2.1.2 method 1 over its key."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        pass
    try:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    except (TypeError, ValueError):
        raise InvalidCertificate(f"CA certificate {_rfc4514(cert.subject)!r} has a public key "
                                 f"govpki cannot identify") from None


def _ca_label(cert: x509.Certificate, cert_id: bytes) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = names[0].value if names else ""
    if isinstance(common_name, str) and common_name.strip():
        return common_name
    return f"{CA_LABEL_PREFIX}{cert_id.hex()[:8]}"


def _rfc4514(name: x509.Name) -> str:
    return name.rfc4514_string()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

