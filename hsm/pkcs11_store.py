"""PKCS#11 key store: keys generated and used on a token (server HSM, USB key, SoftHSM2 in tests).

Keys are named by RFC 7512 URIs (``pkcs11:token=govpki-ca;object=root-ca``), generated on the
token as sensitive, non-extractable objects, and used through :class:`Pkcs11Signer`, which
implements :class:`hsm.signer.Signer` like the file store's signer does: callers above hsm/
cannot tell the backends apart.

Things this module does on purpose, each learned on SoftHSM2 2.6 and python-pkcs11 0.10:

* Every PKCS#11 call holds :data:`hsm.pkcs11_lock.PKCS11_LOCK` (python-pkcs11 initialises
  modules without locking callbacks, so SoftHSM2 runs without its own mutexes).
* Login is per application, not per session: a second ``open(user_pin=...)`` on a token that
  this process is already logged in to raises UserAlreadyLoggedIn *without checking the PIN*,
  and closing a logged-in session logs every session out. So the logged-in session is shared
  by all stores on the same token in this process and closed when the last of them closes; a
  second store's PIN is checked against the first one's (an HMAC under a per-process key; the
  PIN itself is not kept).
* A module is loaded once per real path: loading the same library under a second name (the
  Debian symlink /usr/lib/softhsm/libsofthsm2.so) fails with "already initialized".
* SoftHSM2 has no CKM_ECDSA_SHA256 (nor do many USB tokens): every signature hashes in software
  and sends only the digest to the token, raw CKM_ECDSA for EC (r||s, DER-encoded here) and
  DigestInfo + CKM_RSA_PKCS for RSA. Large CRLs then cross the PKCS#11 boundary as 32 bytes.
* SoftHSM2 refuses CKM_RSA_PKCS_OAEP with any hash but SHA-1 (CKR_ARGUMENTS_BAD). OAEP is tried
  natively first; if the token refuses the parameters, the key does a raw RSA operation
  (CKM_RSA_X_509) and the OAEP decoding (RFC 8017 §7.1.2) is done here, failing with one
  uniform error so that padding failures cannot be told apart.
* SoftHSM2 reads its token directory at C_Initialize: tokens that another process (softhsm2-util)
  creates later stay invisible until C_Finalize + C_Initialize, which invalidates every session
  handle. tests/softhsm.py therefore initialises late tokens inside the process instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from typing import Any

import pkcs11
from asn1crypto.core import OctetString
from asn1crypto.keys import ECDomainParameters
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import (
    NoDigestInfo,
    Prehashed,
    encode_dss_signature,
)
from pkcs11 import MGF, Attribute, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11 import exceptions as p11e
from pkcs11.util.ec import encode_named_curve_parameters

from hsm.algorithms import KeyType, algorithm, key_type_of
from hsm.errors import (
    DecryptionFailed,
    HsmError,
    InvalidKeyUri,
    KeyExists,
    KeyNotFound,
    MissingSecret,
    ModuleNotFound,
    TokenNotFound,
    UnsupportedKeyType,
    UnsupportedMechanism,
    WrongPin,
)
from hsm.pkcs11_lock import PKCS11_LOCK
from hsm.pkcs11_login import check_user_pin, open_session
from hsm.pkcs11_uri import Pkcs11Uri, parse_pkcs11_uri

__all__ = ["Pkcs11KeyStore", "Pkcs11Signer", "is_module_loaded"]

# RFC 8017 §9.2 note 1: DER DigestInfo prefixes for EMSA-PKCS1-v1_5 over CKM_RSA_PKCS.
_DIGEST_INFO: dict[str, bytes] = {
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha224": bytes.fromhex("302d300d06096086480165030402040500041c"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
# OAEP hash → (CKM_ hash mechanism, CKG_MGF1_ constant).
_OAEP_HASHES: dict[str, tuple[Mechanism, MGF]] = {
    "sha1": (Mechanism.SHA_1, MGF.SHA1),
    "sha224": (Mechanism.SHA224, MGF.SHA224),
    "sha256": (Mechanism.SHA256, MGF.SHA256),
    "sha384": (Mechanism.SHA384, MGF.SHA384),
    "sha512": (Mechanism.SHA512, MGF.SHA512),
}
_KEY_ID_BYTES = 16
_PIN_FAILURES = (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange)
# What tokens answer to a ciphertext that does not decrypt. SoftHSM2 reports bad PKCS#1 v1.5
# and OAEP padding as CKR_GENERAL_ERROR, so during decryption that counts as a failed
# decryption too (a genuinely broken device then shows up at the next signature instead).
_BAD_CIPHERTEXT = (p11e.EncryptedDataInvalid, p11e.EncryptedDataLenRange,
                   p11e.DataInvalid, p11e.DataLenRange, p11e.GeneralError, p11e.FunctionFailed)
_REFUSED_PARAMETERS = (p11e.ArgumentsBad, p11e.MechanismParamInvalid, p11e.MechanismInvalid)

# Process-wide state, only touched while holding PKCS11_LOCK.
_MODULES: dict[str, Any] = {}  # real path → pkcs11 lib
_LOGINS: dict[tuple[str, int], _Login] = {}  # (real module path, slot id) → shared session
_PIN_KEY = secrets.token_bytes(32)  # compares PINs without keeping them


class _Login:
    """The one logged-in session of this process on one token, shared by its stores."""

    def __init__(self, key: tuple[str, int], session: Any, pin_digest: bytes | None) -> None:
        self.key = key
        self.session = session
        # None when another component of this process had already logged in: then the PIN
        # could not be checked, and later stores cannot be checked against it either.
        self.pin_digest = pin_digest
        self.users = 1


def is_module_loaded(module_path: str) -> bool:
    """Whether this process has loaded (and C_Initialized) the module at ``module_path``.

    SoftHSM2 reads SOFTHSM2_CONF and its token directory once, when loaded: the test helpers
    use this to decide how a new token can still become visible to this process.
    """
    with PKCS11_LOCK:
        return os.path.realpath(module_path) in _MODULES


def load_module(module_path: str) -> Any:
    """The module loaded and initialised once per process (by real path): a second
    C_Initialize would fail, and every store, USB-key tool and unwrap shares this one."""
    key = os.path.realpath(module_path)
    with PKCS11_LOCK:
        lib = _MODULES.get(key)
        if lib is not None:
            return lib
        if not os.path.isfile(key):
            raise ModuleNotFound(f"PKCS#11 module {module_path} does not exist")
        try:
            lib = pkcs11.lib(key)
        except (p11e.PKCS11Error, OSError) as exc:
            hint = ""
            if "already initialized" in str(exc):
                hint = " (it is already loaded in this process under another name)"
            raise ModuleNotFound(
                f"cannot load PKCS#11 module {module_path}: {exc}{hint}"
            ) from None
        _MODULES[key] = lib
        return lib


def find_token(lib: Any, module_path: str, label: str) -> Any:
    """The token labelled ``label``, or TokenNotFound naming the labels present."""
    with PKCS11_LOCK:
        try:
            tokens = list(lib.get_tokens())
        except p11e.PKCS11Error as exc:
            raise HsmError(f"cannot list the tokens of {module_path}: "
                           f"{type(exc).__name__}") from exc
    matching = [t for t in tokens if t.label == label]
    if not matching:
        labels = sorted({t.label for t in tokens if t.label})
        available = ", ".join(repr(x) for x in labels) if labels else "none"
        raise TokenNotFound(
            f"no token labelled {label!r} in PKCS#11 module {module_path} "
            f"(available tokens: {available})"
        )
    if len(matching) > 1:
        raise TokenNotFound(
            f"{len(matching)} tokens are labelled {label!r} in {module_path}; token labels "
            f"must be unique for key URIs to name one token"
        )
    return matching[0]


def _acquire_login(module_key: str, token: Any, pin: str) -> _Login:
    key = (module_key, int(token.slot.slot_id))
    digest = hmac.new(_PIN_KEY, pin.encode("utf-8"), hashlib.sha256).digest()
    with PKCS11_LOCK:
        login = _LOGINS.get(key)
        if login is not None:
            if login.pin_digest is not None and not hmac.compare_digest(login.pin_digest,
                                                                        digest):
                raise WrongPin(
                    f"wrong user PIN for token {token.label!r}: it differs from the PIN this "
                    f"process already logged in to the token with"
                )
            login.users += 1
            return login
        pin_digest: bytes | None = digest
        check_user_pin(module_key, token, pin)  # on a session of its own: no leak on a wrong PIN
        try:
            session = token.open(rw=True, user_pin=pin)
        except p11e.UserAlreadyLoggedIn:
            # Someone else in this process (pyHanko, a test) logged in outside our stores.
            # Login is per application, so a session without the PIN is logged in too.
            session = open_session(token, rw=True)
            pin_digest = None
        except _PIN_FAILURES:
            raise WrongPin(f"wrong user PIN for token {token.label!r}") from None
        except p11e.PinLocked:
            raise WrongPin(f"the user PIN of token {token.label!r} is locked "
                           f"(too many wrong attempts); the security officer must reset it"
                           ) from None
        except p11e.PinExpired:
            raise WrongPin(f"the user PIN of token {token.label!r} has expired; "
                           f"change it before use") from None
        except p11e.UserPinNotInitialized:
            raise WrongPin(f"token {token.label!r} has no user PIN set yet") from None
        except p11e.PKCS11Error as exc:
            raise HsmError(f"cannot log in to token {token.label!r}: "
                           f"{type(exc).__name__}") from None
        login = _Login(key, session, pin_digest)
        _LOGINS[key] = login
        return login


def _release_login(login: _Login) -> None:
    with PKCS11_LOCK:
        login.users -= 1
        if login.users > 0:
            return
        _LOGINS.pop(login.key, None)
        try:
            login.session.close()  # C_Logout (if we logged in) + C_CloseSession
        except p11e.PKCS11Error:
            pass  # the token went away; nothing left to release


class Pkcs11KeyStore:
    """Keys on one PKCS#11 token, reached through one shared logged-in session.

    Opening the store loads the module, finds the token by label and logs in, so a wrong
    module path, token label or PIN fails at start-up rather than at the first signature.
    The PIN comes from ``pin`` or the ``pin_env`` environment variable (never argv); it is not
    kept after login. Use as a context manager or call :meth:`close`.
    """

    scheme = "pkcs11"

    def __init__(self, module_path: str, token_label: str, pin: str | None = None,
                 pin_env: str = "GOVPKI_PKCS11_PIN") -> None:
        self.module_path = module_path
        self.token_label = token_label
        self._module_key = os.path.realpath(module_path)
        self._lib = load_module(module_path)
        self._token = find_token(self._lib, module_path, token_label)
        if pin is None:
            pin = os.environ.get(pin_env)
            if not pin:
                raise MissingSecret(
                    f"the user PIN for PKCS#11 token {token_label!r} is not set: "
                    f"export {pin_env}"
                )
        elif not pin:
            raise MissingSecret(f"an empty user PIN was given for PKCS#11 token "
                                f"{token_label!r}")
        self._login = _acquire_login(self._module_key, self._token, pin)
        del pin
        self._closed = False
        self._state_lock = threading.Lock()
        self._signers: dict[tuple[str, bytes | None], Pkcs11Signer] = {}

    def __enter__(self) -> Pkcs11KeyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Pkcs11KeyStore({self.module_path!r}, {self.token_label!r}, {state})"

    def close(self) -> None:
        """Release this store's share of the session; the last store on the token logs out."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._signers.clear()
        _release_login(self._login)

    @property
    def closed(self) -> bool:
        return self._closed

    def exists(self, uri: str) -> bool:
        """Whether the token holds a private key that :meth:`get` would return for ``uri``."""
        ref = self._resolve(uri)
        with PKCS11_LOCK:
            return bool(self._objects(_private_key_query(ref)))

    def generate(self, uri: str, key_type: KeyType | str) -> Pkcs11Signer:
        """Generate a key pair on the token: sensitive, never extractable, stored on the token.

        Refuses a label that any object on the token already carries (KeyExists), so a re-run
        ceremony cannot create a second key under a CA key's name. The global lock is held
        through the check and the generation, so two threads cannot both pass the check; this
        pauses other PKCS#11 work for the generation time (under a second on SoftHSM2, longer
        on real HSMs), which ceremonies can afford.
        """
        alg = algorithm(key_type)
        ref = self._resolve(uri)
        label = _label(ref)
        key_id = ref.id if ref.id else secrets.token_bytes(_KEY_ID_BYTES)
        private_template: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
        }
        public_template: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: False,
            Attribute.VERIFY: True,
        }
        capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY
        if alg.family == "rsa":
            p11_type = P11KeyType.RSA
            capabilities |= (MechanismFlag.DECRYPT | MechanismFlag.UNWRAP
                             | MechanismFlag.ENCRYPT | MechanismFlag.WRAP)
            private_template.update({Attribute.DECRYPT: True, Attribute.UNWRAP: True})
            public_template.update({Attribute.ENCRYPT: True, Attribute.WRAP: True})
            key_length: int | None = alg.bits
        else:
            p11_type = P11KeyType.EC
            private_template.update({Attribute.DERIVE: False})
            public_template[Attribute.EC_PARAMS] = encode_named_curve_parameters(alg.curve_oid)
            key_length = None
        with PKCS11_LOCK:
            session = self._session()
            taken = self._objects({Attribute.LABEL: label})
            if taken:
                kinds = ", ".join(sorted({_class_name(o) for o in taken}))
                raise KeyExists(
                    f"token {self.token_label!r} already has an object labelled {label!r} "
                    f"({kinds}); refusing to create a second key under that name"
                )
            if ref.id is not None and self._objects({Attribute.ID: key_id}):
                raise KeyExists(f"token {self.token_label!r} already has an object with "
                                f"id {key_id.hex()}; refusing to reuse it")
            try:
                public_obj, private_obj = session.generate_keypair(
                    p11_type, key_length, id=key_id, label=label, store=True,
                    capabilities=capabilities, public_template=public_template,
                    private_template=private_template,
                )
            except p11e.MechanismInvalid:
                raise UnsupportedMechanism(f"token {self.token_label!r} cannot generate "
                                           f"{alg.key_type.value} keys") from None
            except (p11e.KeySizeRange, p11e.DomainParamsInvalid, p11e.TemplateInconsistent,
                    p11e.AttributeValueInvalid) as exc:
                raise UnsupportedKeyType(
                    f"token {self.token_label!r} refuses to generate {alg.key_type.value} keys "
                    f"({type(exc).__name__})"
                ) from exc
            except p11e.PKCS11Error as exc:
                raise HsmError(f"generating {alg.key_type.value} key {uri} on token "
                               f"{self.token_label!r} failed: {type(exc).__name__}") from exc
            public = _pyca_public_key(public_obj, p11_type)
        signer = Pkcs11Signer(self, uri, label, private_obj, public, key_id)
        return self._remember(ref, signer)

    def get(self, uri: str) -> Pkcs11Signer:
        """The signer for an existing key; looked up once, then served from a cache."""
        ref = self._resolve(uri)
        cache_key = (_label(ref), ref.id)
        with self._state_lock:
            cached = self._signers.get(cache_key)
        if cached is not None:
            return cached
        with PKCS11_LOCK:
            self._session()
            found = self._objects(_private_key_query(ref))
            if not found:
                raise KeyNotFound(f"no private key labelled {ref.object!r} on token "
                                  f"{self.token_label!r} (key {uri})")
            if len(found) > 1:
                raise KeyNotFound(
                    f"{len(found)} private keys are labelled {ref.object!r} on token "
                    f"{self.token_label!r}; add id=... to the key URI to choose one"
                )
            private_obj = found[0]
            p11_type, key_id = self._read(private_obj, Attribute.KEY_TYPE, Attribute.ID)
            if p11_type not in (P11KeyType.RSA, P11KeyType.EC):
                raise UnsupportedKeyType(f"key {uri} is a {_enum_name(p11_type)} key; only RSA "
                                         f"and EC keys are supported")
            public = self._public_key_for(private_obj, p11_type, key_id, _label(ref), uri)
        signer = Pkcs11Signer(self, uri, _label(ref), private_obj, public, key_id)
        return self._remember(ref, signer)

    # -- internals --------------------------------------------------------------------------

    def _remember(self, ref: Pkcs11Uri, signer: Pkcs11Signer) -> Pkcs11Signer:
        with self._state_lock:
            return self._signers.setdefault((_label(ref), ref.id), signer)

    def _session(self) -> Any:
        if self._closed:
            raise HsmError(f"the PKCS#11 key store for token {self.token_label!r} is closed")
        return self._login.session

    def _objects(self, query: dict[Attribute, Any]) -> list[Any]:
        """All matching objects; the search is run to completion inside the lock, so no
        half-finished C_FindObjects operation is left for the garbage collector to end."""
        with PKCS11_LOCK:
            session = self._session()
            try:
                return list(session.get_objects(query))
            except p11e.PKCS11Error as exc:
                raise HsmError(f"searching token {self.token_label!r} failed: "
                               f"{type(exc).__name__}") from exc

    def _read(self, obj: Any, *attributes: Attribute) -> list[Any]:
        with PKCS11_LOCK:
            self._session()
            try:
                return [obj[a] for a in attributes]
            except p11e.PKCS11Error as exc:
                raise HsmError(f"reading attributes on token {self.token_label!r} failed: "
                               f"{type(exc).__name__}") from exc

    def _public_key_for(self, private_obj: Any, p11_type: Any, key_id: bytes, label: str,
                        uri: str) -> PublicKeyTypes:
        """The public key from the token's public key object (same CKA_ID, preferably the
        same label); for RSA the private key's own modulus and exponent will do."""
        candidates: list[Any] = []
        if key_id:
            base = {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: key_id}
            candidates = self._objects({**base, Attribute.LABEL: label}) or self._objects(base)
        else:
            candidates = self._objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                        Attribute.LABEL: label})
        if len(candidates) == 1:
            return _pyca_public_key(candidates[0], p11_type)
        if p11_type == P11KeyType.RSA:
            return _pyca_public_key(private_obj, p11_type)
        state = "no" if not candidates else f"{len(candidates)}"
        raise KeyNotFound(f"key {uri}: {state} matching public key objects on token "
                          f"{self.token_label!r}; the EC public key cannot be rebuilt without one")

    def _resolve(self, uri: str) -> Pkcs11Uri:
        """Parse a key URI and check it names this store's token and a private key."""
        ref = parse_pkcs11_uri(uri)
        if not ref.object:
            raise InvalidKeyUri(f"key URI {uri} must name the key: add object=<label>")
        if ref.type not in (None, "private"):
            raise InvalidKeyUri(f"key URI {uri} selects type={ref.type}; a signing key is "
                                f"type=private (or no type)")
        if ref.pin_source is not None:
            raise InvalidKeyUri(f"key URI {uri} has pin-source; govpki does not read PINs from "
                                f"URIs: the PIN comes from the environment")
        slot = self._token.slot
        major, minor = self._lib.library_version
        version = f"{major}.{minor}"
        checks: list[tuple[str, object, object]] = [
            ("token", ref.token, self._token.label),
            ("manufacturer", ref.manufacturer, self._token.manufacturer_id),
            ("serial", ref.serial, _text(self._token.serial)),
            ("model", ref.model, self._token.model),
            ("library-manufacturer", ref.library_manufacturer, self._lib.manufacturer_id),
            ("library-description", ref.library_description, self._lib.library_description),
            ("slot-description", ref.slot_description, slot.slot_description),
            ("slot-manufacturer", ref.slot_manufacturer, slot.manufacturer_id),
            ("slot-id", ref.slot_id, int(slot.slot_id)),
            ("module-path", ref.module_path and os.path.realpath(ref.module_path),
             self._module_key),
        ]
        if ref.library_version is not None:
            wanted = ref.library_version if "." in ref.library_version else None
            actual = version if wanted else version.split(".")[0]
            checks.append(("library-version", ref.library_version, actual))
        for name, wanted_value, actual_value in checks:
            if wanted_value is not None and wanted_value != actual_value:
                raise InvalidKeyUri(
                    f"key URI {uri} names {name}={wanted_value!r}, but this store is on "
                    f"token {self.token_label!r} with {name} {actual_value!r}"
                )
        if ref.module_name is not None:
            stem = os.path.basename(self._module_key).split(".")[0].removeprefix("lib")
            if ref.module_name not in (stem, os.path.basename(self._module_key)):
                raise InvalidKeyUri(f"key URI {uri} names module-name={ref.module_name!r}, "
                                    f"but this store uses {self.module_path}")
        return ref


class Pkcs11Signer:
    """A private key on a token, behind the :class:`hsm.signer.Signer` interface.

    The key's object handle and its public key are read once and cached. Data is hashed in
    software; only digests go to the token (see the module docstring for why).
    """

    def __init__(self, store: Pkcs11KeyStore, key_uri: str, label: str, private_obj: Any,
                 public_key: PublicKeyTypes, key_id: bytes) -> None:
        self._store = store
        self._uri = key_uri
        self._label = label
        self._key = private_obj
        self._public = public_key
        self._type = key_type_of(public_key)
        self._key_id = key_id
        self._bits = algorithm(self._type).bits
        self._size = (self._bits + 7) // 8  # modulus or field element length in bytes
        self._oaep_native: dict[tuple[str, str, bytes | None], bool] = {}
        self._private_key: PrivateKeyTypes | None = None

    @property
    def key_uri(self) -> str:
        return self._uri

    @property
    def key_type(self) -> KeyType:
        return self._type

    @property
    def key_id(self) -> bytes:
        """CKA_ID, identical on the private and the public key object."""
        return self._key_id

    def public_key(self) -> PublicKeyTypes:
        return self._public

    def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        """DER ECDSA-Sig-Value or RSASSA-PKCS1-v1_5 over ``data``."""
        return self._sign_digest(_digest(bytes(data), hash_algorithm), hash_algorithm)

    def sign_raw(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        """r||s for ECDSA (as the token returns it); the same as :meth:`sign` for RSA."""
        digest = _digest(bytes(data), hash_algorithm)
        if isinstance(self._public, ec.EllipticCurvePublicKey):
            return self._ecdsa_raw(digest)
        return self._sign_digest(digest, hash_algorithm)

    def decrypt(self, ciphertext: bytes, pad: padding.AsymmetricPadding) -> bytes:
        """RSA key transport: PKCS#1 v1.5 (CKM_RSA_PKCS) or OAEP with MGF1 (CKM_RSA_PKCS_OAEP,
        or raw RSA plus OAEP decoding here when the token refuses the OAEP parameters)."""
        if not isinstance(self._public, rsa.RSAPublicKey):
            raise UnsupportedMechanism(f"key {self._uri} is a {self._type.value} key: "
                                       f"decryption needs an RSA key")
        ciphertext = bytes(ciphertext)
        if len(ciphertext) != self._size:
            raise DecryptionFailed(f"decryption with {self._uri} failed")
        if isinstance(pad, padding.PKCS1v15):
            return self._decrypt(ciphertext, Mechanism.RSA_PKCS, None)
        if not isinstance(pad, padding.OAEP):
            raise UnsupportedMechanism(f"RSA decryption with {type(pad).__name__} padding is not "
                                       f"supported (PKCS1v15 and OAEP are)")
        mgf = pad.mgf
        mgf_hash = getattr(mgf, "_algorithm", None)
        if not isinstance(mgf, padding.MGF1) or not isinstance(mgf_hash, hashes.HashAlgorithm):
            raise UnsupportedMechanism("OAEP decryption needs MGF1")
        oaep_hash = pad.algorithm
        if oaep_hash.name not in _OAEP_HASHES or mgf_hash.name not in _OAEP_HASHES:
            raise UnsupportedMechanism(f"OAEP with {oaep_hash.name}/MGF1-{mgf_hash.name} is not "
                                       f"supported (SHA-1 and SHA-2 are)")
        label: bytes | None = getattr(pad, "_label", None) or None
        mode = (oaep_hash.name, mgf_hash.name, label)
        if self._oaep_native.get(mode, True):
            param = (_OAEP_HASHES[oaep_hash.name][0], _OAEP_HASHES[mgf_hash.name][1], label)
            try:
                plaintext = self._decrypt(ciphertext, Mechanism.RSA_PKCS_OAEP, param,
                                          refused_is_signal=True)
            except _ParametersRefused:
                self._oaep_native[mode] = False
            else:
                self._oaep_native[mode] = True
                return plaintext
        encoded = self._decrypt(ciphertext, Mechanism.RSA_X_509, None)
        return _oaep_decode(encoded.rjust(self._size, b"\0"), oaep_hash, mgf_hash, label or b"",
                            self._uri)

    def as_private_key(self) -> PrivateKeyTypes:
        """A pyca private key whose ``sign()`` calls the token, for pyca's certificate, CRL and
        OCSP builders. Not a documented pyca extension point: tests/hsm/test_pyca_contract.py
        guards it, and setup.py pins pyca's upper bound."""
        if self._private_key is None:
            if isinstance(self._public, ec.EllipticCurvePublicKey):
                self._private_key = TokenEllipticCurvePrivateKey(self, self._public)
            else:
                assert isinstance(self._public, rsa.RSAPublicKey)
                self._private_key = TokenRsaPrivateKey(self, self._public)
        return self._private_key

    def key_attributes(self) -> dict[str, Any]:
        """The private key's protection attributes as the token reports them (for ceremonies
        and audits: proof that the key is sensitive and was never extractable)."""
        names = {
            "CKA_TOKEN": Attribute.TOKEN,
            "CKA_PRIVATE": Attribute.PRIVATE,
            "CKA_SENSITIVE": Attribute.SENSITIVE,
            "CKA_EXTRACTABLE": Attribute.EXTRACTABLE,
            "CKA_ALWAYS_SENSITIVE": Attribute.ALWAYS_SENSITIVE,
            "CKA_NEVER_EXTRACTABLE": Attribute.NEVER_EXTRACTABLE,
            "CKA_LOCAL": Attribute.LOCAL,
            "CKA_SIGN": Attribute.SIGN,
            "CKA_DECRYPT": Attribute.DECRYPT,
            "CKA_UNWRAP": Attribute.UNWRAP,
        }
        result: dict[str, Any] = {}
        with PKCS11_LOCK:
            self._store._session()
            for name, attribute in names.items():
                try:
                    result[name] = self._key[attribute]
                except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive):
                    result[name] = None
                except p11e.PKCS11Error as exc:
                    raise HsmError(f"reading {name} of {self._uri} failed: "
                                   f"{type(exc).__name__}") from exc
        return result

    def __repr__(self) -> str:
        return f"Pkcs11Signer({self._uri!r}, {self._type.value})"

    # -- internals --------------------------------------------------------------------------

    def _sign_digest(self, digest: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        if isinstance(self._public, ec.EllipticCurvePublicKey):
            raw = self._ecdsa_raw(digest)
            return encode_dss_signature(int.from_bytes(raw[: self._size], "big"),
                                        int.from_bytes(raw[self._size:], "big"))
        prefix = _DIGEST_INFO.get(hash_algorithm.name)
        if prefix is None:
            raise UnsupportedMechanism(f"RSA signatures with {hash_algorithm.name} are not "
                                       f"supported ({', '.join(_DIGEST_INFO)} are)")
        return self._token_sign(prefix + digest, Mechanism.RSA_PKCS)

    def _ecdsa_raw(self, digest: bytes) -> bytes:
        raw = self._token_sign(digest, Mechanism.ECDSA)
        if len(raw) != 2 * self._size:
            raise HsmError(f"token returned a {len(raw)}-byte ECDSA signature for {self._uri}; "
                           f"expected {2 * self._size}")
        return raw

    def _token_sign(self, payload: bytes, mechanism: Mechanism) -> bytes:
        with PKCS11_LOCK:
            self._store._session()
            try:
                return bytes(self._key.sign(payload, mechanism=mechanism))
            except p11e.MechanismInvalid:
                raise UnsupportedMechanism(f"token {self._store.token_label!r} does not offer "
                                           f"{mechanism.name} for {self._uri}") from None
            except p11e.PKCS11Error as exc:
                raise HsmError(f"token {self._store.token_label!r} refused to sign with "
                               f"{self._uri}: {type(exc).__name__}") from exc

    def _decrypt(self, ciphertext: bytes, mechanism: Mechanism, param: Any,
                 refused_is_signal: bool = False) -> bytes:
        with PKCS11_LOCK:
            self._store._session()
            try:
                return bytes(self._key.decrypt(ciphertext, mechanism=mechanism,
                                               mechanism_param=param))
            except _BAD_CIPHERTEXT:
                raise DecryptionFailed(f"decryption with {self._uri} failed") from None
            except _REFUSED_PARAMETERS as exc:
                if refused_is_signal:
                    raise _ParametersRefused() from None
                raise UnsupportedMechanism(f"token {self._store.token_label!r} refuses "
                                           f"{mechanism.name} for {self._uri}") from exc
            except p11e.PKCS11Error as exc:
                raise HsmError(f"token {self._store.token_label!r} failed to decrypt with "
                               f"{self._uri}: {type(exc).__name__}") from exc


class _ParametersRefused(Exception):
    """The token does not take these mechanism parameters (internal: triggers the fallback)."""


class TokenEllipticCurvePrivateKey(ec.EllipticCurvePrivateKey):
    """pyca's EC private key interface over a token key: ``sign()`` asks the token.

    pyca's builders only call ``sign()`` (and read ``curve``/``public_key()``); everything that
    would reveal the private scalar raises instead.
    """

    def __init__(self, signer: Pkcs11Signer, public: ec.EllipticCurvePublicKey) -> None:
        self._signer = signer
        self._public = public

    def sign(self, data: Any, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedMechanism(f"{type(signature_algorithm).__name__} is not supported "
                                       f"by token keys (ECDSA is)")
        chosen = signature_algorithm.algorithm
        if isinstance(chosen, Prehashed):
            digest = bytes(data)
            if len(digest) != chosen.digest_size:
                raise ValueError("the prehashed digest does not match the hash algorithm's size")
            return self._signer._sign_digest(digest, chosen._algorithm)
        return self._signer.sign(bytes(data), chosen)

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise UnsupportedMechanism(f"ECDH with {self._signer.key_uri} is not available: the "
                                   f"key is generated for signing only")

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise UnsupportedMechanism(_not_exportable(self._signer))

    def private_bytes(self, encoding: serialization.Encoding,
                      format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        raise UnsupportedMechanism(_not_exportable(self._signer))

    def __copy__(self) -> TokenEllipticCurvePrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenEllipticCurvePrivateKey:
        return self

    def __repr__(self) -> str:
        return f"<TokenEllipticCurvePrivateKey {self._signer.key_uri}>"


class TokenRsaPrivateKey(rsa.RSAPrivateKey):
    """pyca's RSA private key interface over a token key: ``sign()`` and ``decrypt()`` ask the
    token. Only PKCS#1 v1.5 signatures are offered (what X.509, CMS and OCSP here use)."""

    def __init__(self, signer: Pkcs11Signer, public: rsa.RSAPublicKey) -> None:
        self._signer = signer
        self._public = public

    def sign(self, data: bytes, padding: AsymmetricPadding,
             algorithm: Prehashed | hashes.HashAlgorithm | NoDigestInfo) -> bytes:
        if not isinstance(padding, PKCS1v15):
            raise UnsupportedMechanism(f"RSA signatures with {type(padding).__name__} padding "
                                       f"are not supported by token keys (PKCS1v15 is)")
        if isinstance(algorithm, NoDigestInfo):
            return self._signer._token_sign(bytes(data), Mechanism.RSA_PKCS)
        if isinstance(algorithm, Prehashed):
            digest = bytes(data)
            if len(digest) != algorithm.digest_size:
                raise ValueError("the prehashed digest does not match the hash algorithm's size")
            return self._signer._sign_digest(digest, algorithm._algorithm)
        return self._signer.sign(bytes(data), algorithm)

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        return self._signer.decrypt(ciphertext, padding)

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise UnsupportedMechanism(_not_exportable(self._signer))

    def private_bytes(self, encoding: serialization.Encoding,
                      format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        raise UnsupportedMechanism(_not_exportable(self._signer))

    def __copy__(self) -> TokenRsaPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenRsaPrivateKey:
        return self

    def __repr__(self) -> str:
        return f"<TokenRsaPrivateKey {self._signer.key_uri}>"


# -- helpers ------------------------------------------------------------------------------------


def _not_exportable(signer: Pkcs11Signer) -> str:
    return (f"the private key {signer.key_uri} stays on the token (CKA_SENSITIVE, not "
            f"extractable): it cannot be serialised or read as numbers")


def _label(ref: Pkcs11Uri) -> str:
    assert ref.object is not None  # checked by _resolve
    return ref.object


def _private_key_query(ref: Pkcs11Uri) -> dict[Attribute, Any]:
    query: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                   Attribute.LABEL: _label(ref)}
    if ref.id is not None:
        query[Attribute.ID] = ref.id
    return query


def _class_name(obj: Any) -> str:
    try:
        with PKCS11_LOCK:
            return _enum_name(obj[Attribute.CLASS]).lower().replace("_", " ")
    except p11e.PKCS11Error:
        return "object"


def _enum_name(value: Any) -> str:
    return str(getattr(value, "name", value))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _digest(data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
    if not isinstance(hash_algorithm, hashes.HashAlgorithm):
        raise TypeError("hash_algorithm must be a cryptography HashAlgorithm instance")
    h = hashes.Hash(hash_algorithm)
    h.update(data)
    return h.finalize()


def _pyca_public_key(obj: Any, p11_type: Any) -> PublicKeyTypes:
    """Build the pyca public key from a token object's public attributes."""
    with PKCS11_LOCK:
        if p11_type == P11KeyType.RSA:
            modulus = obj[Attribute.MODULUS]
            exponent = obj[Attribute.PUBLIC_EXPONENT]
            return rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"),
                                        int.from_bytes(modulus, "big")).public_key()
        if p11_type != P11KeyType.EC:
            raise UnsupportedKeyType(f"{_enum_name(p11_type)} keys are not supported")
        params = ECDomainParameters.load(obj[Attribute.EC_PARAMS])
        point = bytes(obj[Attribute.EC_POINT])
    if params.name != "named":
        raise UnsupportedKeyType("EC keys with explicit curve parameters are not supported")
    oid = params.chosen.dotted
    try:
        curve = ec.get_curve_for_oid(x509.ObjectIdentifier(oid))()
    except LookupError:
        raise UnsupportedKeyType(f"EC curve {oid} is not supported") from None
    size = (curve.key_size + 7) // 8
    if not (len(point) == 2 * size + 1 and point[0] == 0x04):
        # CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 2.40); some tokens
        # return the bare point, which the length test above recognises.
        point = bytes(OctetString.load(point).native)
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)


def _mgf1(seed: bytes, length: int, hash_algorithm: hashes.HashAlgorithm) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += _digest(seed + counter.to_bytes(4, "big"), hash_algorithm)
        counter += 1
    return bytes(out[:length])


def _oaep_decode(em: bytes, oaep_hash: hashes.HashAlgorithm, mgf_hash: hashes.HashAlgorithm,
                 label: bytes, uri: str) -> bytes:
    """EME-OAEP decoding, RFC 8017 §7.1.2 step 3, for tokens without native OAEP-SHA-2.

    Every check is evaluated before the single decision, and every failure raises the same
    DecryptionFailed, so a caller learns nothing about which check failed (Manger's attack
    needs to tell "first byte not zero" apart). Python is not constant-time; the token's own
    OAEP is used whenever it accepts the parameters.
    """
    h_len = oaep_hash.digest_size
    k = len(em)
    if k < 2 * h_len + 2:
        raise DecryptionFailed(f"decryption with {uri} failed")
    l_hash = _digest(label, oaep_hash)
    y = em[0]
    masked_seed = em[1: 1 + h_len]
    masked_db = em[1 + h_len:]
    seed = bytes(a ^ b for a, b in zip(masked_seed, _mgf1(masked_db, h_len, mgf_hash),
                                       strict=True))
    db = bytes(a ^ b for a, b in zip(masked_db, _mgf1(seed, k - h_len - 1, mgf_hash),
                                     strict=True))
    good = int(hmac.compare_digest(db[:h_len], l_hash)) & int(y == 0)
    found = 0
    index = 0
    invalid = 0
    for i in range(h_len, len(db)):
        is_one = int(db[i] == 1)
        is_zero = int(db[i] == 0)
        first_one = (1 - found) & is_one
        index |= i * first_one
        invalid |= (1 - found) & (1 - is_one) & (1 - is_zero)
        found |= is_one
    if not (good & found & (1 - invalid)):
        raise DecryptionFailed(f"decryption with {uri} failed")
    return db[index + 1:]
