"""The PKCS#11 key store on a real SoftHSM2 token: generation, signing, decryption, refusals.

Nothing is mocked: keys are generated on the token, signatures are checked by pyca against the
public key read back from the token, and export is attempted through python-pkcs11 directly.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e

from hsm.algorithms import KeyType, algorithm
from hsm.errors import (
    DecryptionFailed,
    GovpkiError,
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
from hsm.pkcs11_store import Pkcs11KeyStore, Pkcs11Signer
from hsm.pkcs11_uri import Pkcs11Uri
from hsm.signer import Signer
from tests import softhsm
from tests.hsm.conftest import SoftHsmToken

pytestmark = pytest.mark.hsm

DATA = "省政府办公厅 关于印发会议纪要的通知 — 2024".encode() * 7


def verify(public: PublicKeyTypes, signature: bytes, data: bytes,
           hash_algorithm: hashes.HashAlgorithm) -> None:
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(hash_algorithm))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, data, padding.PKCS1v15(), hash_algorithm)


def raw_to_der(raw: bytes) -> bytes:
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                int.from_bytes(raw[half:], "big"))


def on_token(hsm_token: SoftHsmToken, action: Callable[[Any], Any]) -> Any:
    """Run ``action(session)`` on a session of our own, straight through python-pkcs11.

    No PIN: login is per application, and the session fixture's store is logged in.
    """
    with PKCS11_LOCK:
        lib = pkcs11.lib(os.path.realpath(hsm_token.module))
        session = lib.get_token(token_label=hsm_token.label).open(rw=True)
        try:
            return action(session)
        finally:
            session.close()


def exception_text(exc: BaseException) -> str:
    """Everything an operator could see of an exception: message, repr, chain, traceback."""
    parts = ["".join(traceback.format_exception(exc)), repr(exc)]
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, GovpkiError):
        parts.append(repr(exc.problem()))
    return "\n".join(parts)


# -- generation and signing ------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(KeyType), ids=lambda k: k.value)
def test_each_key_type_signs_der_and_raw_and_pyca_verifies(
        token_keys: dict[KeyType, Pkcs11Signer], key_type: KeyType) -> None:
    signer = token_keys[key_type]
    assert isinstance(signer, Signer)
    assert signer.key_type is key_type
    public = signer.public_key()
    alg = algorithm(key_type)
    assert public.key_size == alg.bits  # type: ignore[union-attr]
    hash_algorithm = alg.hash_algorithm()

    der = signer.sign(DATA, hash_algorithm)
    verify(public, der, DATA, hash_algorithm)
    raw = signer.sign_raw(DATA, hash_algorithm)
    if alg.family == "ec":
        assert len(raw) == 2 * ((alg.bits + 7) // 8)
        verify(public, raw_to_der(raw), DATA, hash_algorithm)
    else:
        assert raw == der  # RSASSA-PKCS1-v1_5 is deterministic
    with pytest.raises(InvalidSignature):
        verify(public, der, DATA + b"x", hash_algorithm)


@pytest.mark.parametrize(("key_type", "hash_algorithm"), [
    (KeyType.EC_P256, hashes.SHA384()),
    (KeyType.EC_P256, hashes.SHA512()),
    (KeyType.EC_P384, hashes.SHA256()),
    (KeyType.EC_P256, hashes.SHA3_256()),
    (KeyType.RSA_2048, hashes.SHA1()),  # noqa: S303 - legacy hash must still verify
    (KeyType.RSA_2048, hashes.SHA224()),
    (KeyType.RSA_2048, hashes.SHA384()),
    (KeyType.RSA_3072, hashes.SHA512()),
], ids=lambda v: getattr(v, "value", getattr(v, "name", v)))
def test_other_hashes_verify(token_keys: dict[KeyType, Pkcs11Signer], key_type: KeyType,
                             hash_algorithm: hashes.HashAlgorithm) -> None:
    signer = token_keys[key_type]
    verify(signer.public_key(), signer.sign(DATA, hash_algorithm), DATA, hash_algorithm)


def test_rsa_with_a_hash_outside_pkcs1_is_refused(
        token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    with pytest.raises(UnsupportedMechanism, match="md5"):
        token_keys[KeyType.RSA_2048].sign(DATA, hashes.MD5())  # noqa: S303 - must be refused


def test_public_key_is_the_tokens_and_ids_match(
        hsm_token: SoftHsmToken, token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    """CKA_ID is identical on both halves, and the public key object holds what we report."""
    signer = token_keys[KeyType.EC_P256]
    label = f"key-{KeyType.EC_P256.value}"

    def read(session: Any) -> dict[Any, dict[str, Any]]:
        found = {}
        for obj in session.get_objects({Attribute.LABEL: label}):
            found[obj[Attribute.CLASS]] = {"id": obj[Attribute.ID]}
            if obj[Attribute.CLASS] == ObjectClass.PUBLIC_KEY:
                found[obj[Attribute.CLASS]]["point"] = obj[Attribute.EC_POINT]
        return found

    objects = on_token(hsm_token, read)
    assert set(objects) == {ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY}
    assert objects[ObjectClass.PRIVATE_KEY]["id"] == objects[ObjectClass.PUBLIC_KEY]["id"]
    assert objects[ObjectClass.PRIVATE_KEY]["id"] == signer.key_id
    assert len(signer.key_id) == 16
    point = signer.public_key().public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint)
    assert point in objects[ObjectClass.PUBLIC_KEY]["point"]


def test_get_finds_generated_keys_and_caches_the_signer(
        hsm_token: SoftHsmToken, store: Pkcs11KeyStore,
        token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    for key_type, generated in token_keys.items():
        uri = hsm_token.key_uri(f"key-{key_type.value}")
        assert store.exists(uri)
        assert store.get(uri) is generated
        assert store.get(uri) is store.get(uri)
    assert not store.exists(hsm_token.key_uri("no-such-key"))


def test_a_second_store_on_the_same_token_shares_the_login(
        hsm_token: SoftHsmToken, store: Pkcs11KeyStore,
        token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    """Login is per application: the second store must not log in again, nor log out."""
    uri = hsm_token.key_uri(f"key-{KeyType.RSA_3072.value}")
    with Pkcs11KeyStore(hsm_token.module, hsm_token.label, pin=hsm_token.pin) as second:
        signer = second.get(uri)  # a lookup of its own, not the first store's cache
        assert signer is not token_keys[KeyType.RSA_3072]
        assert signer.public_key() == token_keys[KeyType.RSA_3072].public_key()
        verify(signer.public_key(), signer.sign(DATA, hashes.SHA256()), DATA, hashes.SHA256())
    assert second.closed
    with pytest.raises(HsmError, match="closed"):
        signer.sign(DATA, hashes.SHA256())
    # The first store is still logged in after the second one closed.
    first = store.get(uri)
    verify(first.public_key(), first.sign(DATA, hashes.SHA256()), DATA, hashes.SHA256())


def test_the_real_module_path_and_its_symlink_are_one_module(
        hsm_token: SoftHsmToken, token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    """Loading libsofthsm2.so under a second name would fail with "already initialized"."""
    real = os.path.realpath(hsm_token.module)
    with Pkcs11KeyStore(real, hsm_token.label, pin=hsm_token.pin) as other:
        uri = hsm_token.key_uri(f"key-{KeyType.EC_P384.value}")
        assert other.get(uri).public_key() == token_keys[KeyType.EC_P384].public_key()


def test_generate_with_an_explicit_id(hsm_token: SoftHsmToken, store: Pkcs11KeyStore) -> None:
    uri = Pkcs11Uri(token=hsm_token.label, object="explicit-id", id=b"\xab\xcd\x01").format()
    signer = store.generate(uri, "ec-p256")
    assert signer.key_id == b"\xab\xcd\x01"
    with pytest.raises(KeyExists, match="id abcd01"):
        store.generate(Pkcs11Uri(token=hsm_token.label, object="other-label",
                                 id=b"\xab\xcd\x01").format(), "ec-p256")


# -- keys stay on the token ------------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "secret_attributes"), [
    (KeyType.EC_P256, [Attribute.VALUE]),
    (KeyType.RSA_2048, [Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1, Attribute.PRIME_2]),
], ids=["ec", "rsa"])
def test_private_key_cannot_be_read_or_exported(
        hsm_token: SoftHsmToken, token_keys: dict[KeyType, Pkcs11Signer], key_type: KeyType,
        secret_attributes: list[Attribute]) -> None:
    signer = token_keys[key_type]
    flags = signer.key_attributes()
    assert flags["CKA_TOKEN"] is True
    assert flags["CKA_PRIVATE"] is True
    assert flags["CKA_SENSITIVE"] is True
    assert flags["CKA_EXTRACTABLE"] is False
    assert flags["CKA_ALWAYS_SENSITIVE"] is True
    assert flags["CKA_NEVER_EXTRACTABLE"] is True
    assert flags["CKA_LOCAL"] is True  # generated on the token, not imported
    assert flags["CKA_SIGN"] is True
    assert flags["CKA_DECRYPT"] is (key_type is KeyType.RSA_2048)

    label = f"key-{key_type.value}"

    def try_to_read(session: Any) -> list[str]:
        key = session.get_key(ObjectClass.PRIVATE_KEY, label=label)
        refused = []
        for attribute in secret_attributes:
            with pytest.raises(p11e.AttributeSensitive):
                key[attribute]
            refused.append(attribute.name)
        with pytest.raises(p11e.AttributeReadOnly):
            key[Attribute.EXTRACTABLE] = True  # CKA_EXTRACTABLE can only ever go to False
        # Nor can it leave wrapped: a session AES key that may wrap is refused the key.
        wrapping = session.generate_key(pkcs11.KeyType.AES, 256, store=False,
                                        capabilities=pkcs11.MechanismFlag.WRAP)
        with pytest.raises(p11e.KeyUnextractable):
            wrapping.wrap_key(key, mechanism=pkcs11.Mechanism.AES_KEY_WRAP_PAD)
        wrapping.destroy()
        return refused

    assert on_token(hsm_token, try_to_read) == [a.name for a in secret_attributes]

    private = signer.as_private_key()
    assert isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    with pytest.raises(UnsupportedMechanism, match="stays on the token"):
        private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    with pytest.raises(UnsupportedMechanism, match="stays on the token"):
        private.private_numbers()


# -- decryption ------------------------------------------------------------------------------


OAEP_SHA256 = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
# SHA-1 in OAEP is not a signature hash: it is the one OAEP SoftHSM2 does natively.
OAEP_SHA1 = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)  # noqa: S303


@pytest.mark.parametrize("pad", [
    padding.PKCS1v15(),
    OAEP_SHA256,  # SoftHSM2 2.6 refuses these parameters: raw RSA + OAEP decoding in hsm/
    OAEP_SHA1,  # SoftHSM2 does this one natively
    padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"cms-label"),
    padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA384(), None),  # noqa: S303
], ids=["pkcs1v15", "oaep-sha256", "oaep-sha1", "oaep-sha256-label", "oaep-sha384-mgf1sha1"])
@pytest.mark.parametrize("key_type", [KeyType.RSA_2048, KeyType.RSA_4096],
                         ids=lambda k: k.value)
def test_rsa_decrypts_what_pyca_encrypted(
        token_keys: dict[KeyType, Pkcs11Signer], key_type: KeyType,
        pad: padding.AsymmetricPadding) -> None:
    signer = token_keys[key_type]
    public = signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    for message in (b"\x00\x01 content-encryption key \x00", b"", os.urandom(32)):
        ciphertext = public.encrypt(message, pad)
        assert signer.decrypt(ciphertext, pad) == message
        assert signer.as_private_key().decrypt(ciphertext, pad) == message  # type: ignore[union-attr]


@pytest.mark.parametrize("pad", [padding.PKCS1v15(), OAEP_SHA256, OAEP_SHA1],
                         ids=["pkcs1v15", "oaep-sha256", "oaep-sha1"])
def test_damaged_or_foreign_ciphertext_fails_uniformly(
        token_keys: dict[KeyType, Pkcs11Signer], pad: padding.AsymmetricPadding) -> None:
    signer = token_keys[KeyType.RSA_2048]
    public = signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    damaged = bytearray(public.encrypt(b"secret", pad))
    damaged[-1] ^= 0x01
    foreign = rsa.generate_private_key(65537, 2048).public_key().encrypt(b"secret", pad)
    for ciphertext in (bytes(damaged), foreign, b"\x00" * 256, b"short"):
        with pytest.raises(DecryptionFailed) as caught:
            signer.decrypt(ciphertext, pad)
        assert isinstance(caught.value, ValueError)  # as pyca raises for a software key
        assert str(caught.value) == f"decryption with {signer.key_uri} failed"


def test_ec_keys_do_not_decrypt(token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    with pytest.raises(UnsupportedMechanism, match="needs an RSA key"):
        token_keys[KeyType.EC_P256].decrypt(b"x" * 64, padding.PKCS1v15())


def test_pss_is_refused_clearly(token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    private = token_keys[KeyType.RSA_2048].as_private_key()
    assert isinstance(private, rsa.RSAPrivateKey)
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH)
    with pytest.raises(UnsupportedMechanism, match="PSS"):
        private.sign(DATA, pss, hashes.SHA256())


def test_as_private_key_signs_prehashed_digests(
        token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    h = hashes.Hash(hashes.SHA256())
    h.update(DATA)
    digest = h.finalize()
    ec_key = token_keys[KeyType.EC_P256].as_private_key()
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey)
    signature = ec_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    verify(ec_key.public_key(), signature, DATA, hashes.SHA256())
    rsa_key = token_keys[KeyType.RSA_2048].as_private_key()
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    signature = rsa_key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    verify(rsa_key.public_key(), signature, DATA, hashes.SHA256())


# -- concurrency -----------------------------------------------------------------------------


def test_eight_threads_sign_concurrently_through_one_store(
        hsm_token: SoftHsmToken, store: Pkcs11KeyStore,
        token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    """Without the process-wide lock SoftHSM2 (mutexes off) double-frees or segfaults here."""
    threads, per_thread = 8, 40
    uris = [hsm_token.key_uri(f"key-{kt.value}") for kt in (KeyType.EC_P256, KeyType.RSA_2048,
                                                             KeyType.EC_P384)]
    start = threading.Barrier(threads)

    def work(worker: int) -> list[tuple[str, bytes, bytes, bool]]:
        start.wait()
        results = []
        for i in range(per_thread):
            signer = store.get(uris[(worker + i) % len(uris)])
            data = f"worker {worker} message {i}".encode()
            raw = i % 2 == 1 and signer.key_type.value.startswith("ec")
            sig = (signer.sign_raw if raw else signer.sign)(data, hashes.SHA256())
            results.append((signer.key_uri, data, sig, raw))
        return results

    with ThreadPoolExecutor(max_workers=threads) as pool:
        batches = list(pool.map(work, range(threads)))
    signatures = [entry for batch in batches for entry in batch]
    assert len(signatures) == threads * per_thread
    for uri, data, sig, raw in signatures:
        public = store.get(uri).public_key()
        verify(public, raw_to_der(sig) if raw else sig, data, hashes.SHA256())


# -- errors ----------------------------------------------------------------------------------


def test_nonexistent_module_is_named(hsm_token: SoftHsmToken, tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "libpkcs11-missing.so")
    with pytest.raises(ModuleNotFound, match=re.escape("libpkcs11-missing.so")) as caught:
        Pkcs11KeyStore(missing, hsm_token.label, pin=hsm_token.pin)
    assert missing in str(caught.value)


def test_a_file_that_is_not_a_pkcs11_module_is_refused(hsm_token: SoftHsmToken,
                                                       tmp_path: Path) -> None:
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"\x7fELF not really a shared object")
    with pytest.raises(ModuleNotFound, match=r"cannot load PKCS#11 module .*libfake\.so"):
        Pkcs11KeyStore(str(fake), hsm_token.label, pin=hsm_token.pin)


def test_unknown_token_lists_available_labels(hsm_token: SoftHsmToken) -> None:
    with pytest.raises(TokenNotFound) as caught:
        Pkcs11KeyStore(hsm_token.module, "no-such-token", pin=hsm_token.pin)
    message = str(caught.value)
    assert "'no-such-token'" in message
    assert f"'{hsm_token.label}'" in message
    assert f"'{hsm_token.spare_label}'" in message


def _session_handle(hsm_token: SoftHsmToken) -> int:
    """The handle of a fresh plain session (opened and closed again): handles only grow."""
    with PKCS11_LOCK:
        lib = pkcs11.lib(os.path.realpath(hsm_token.module))
        session = lib.get_token(token_label=hsm_token.spare_label).open()
        try:
            return int(session.handle)
        finally:
            session.close()


def test_wrong_pin_is_refused_without_revealing_it(hsm_token: SoftHsmToken) -> None:
    """C_Login really runs here (nothing in this process is logged in to the spare token), on
    a session that is closed again: python-pkcs11's own login path leaked one per wrong PIN."""
    from hsm.token_cryptoki import cryptoki

    wrong = "wrong-pin-4f9d2c71"
    first = _session_handle(hsm_token)
    for _ in range(2):
        with pytest.raises(WrongPin) as caught:
            Pkcs11KeyStore(hsm_token.module, hsm_token.spare_label, pin=wrong)
    last = _session_handle(hsm_token)
    functions = cryptoki(os.path.realpath(hsm_token.module))
    with PKCS11_LOCK:
        leaked = [h for h in range(first + 1, last) if functions.session_open(h)]
    assert last > first + 1  # the wrong PINs were really tried, each on a session
    assert leaked == []
    assert str(caught.value) == f"wrong user PIN for token '{hsm_token.spare_label}'"
    text = exception_text(caught.value)
    assert wrong not in text
    assert hsm_token.pin not in text
    with Pkcs11KeyStore(hsm_token.module, hsm_token.spare_label, pin=hsm_token.pin) as ok:
        assert not ok.exists(Pkcs11Uri(token=hsm_token.spare_label, object="x").format())


def test_wrong_pin_while_logged_in_is_still_refused(hsm_token: SoftHsmToken,
                                                    store: Pkcs11KeyStore) -> None:
    """The token would answer UserAlreadyLoggedIn to any PIN: the store must check it itself."""
    wrong = "another-wrong-pin-88a1"
    with pytest.raises(WrongPin, match="differs from the PIN") as caught:
        Pkcs11KeyStore(hsm_token.module, hsm_token.label, pin=wrong)
    text = exception_text(caught.value)
    assert wrong not in text
    assert hsm_token.pin not in text


def test_missing_pin_variable_is_named(hsm_token: SoftHsmToken) -> None:
    variable = "GOVPKI_TEST_PIN_THAT_IS_NOT_SET"
    assert variable not in os.environ
    with pytest.raises(MissingSecret, match=f"export {variable}"):
        Pkcs11KeyStore(hsm_token.module, hsm_token.label, pin_env=variable)


def test_missing_key(hsm_token: SoftHsmToken, store: Pkcs11KeyStore) -> None:
    with pytest.raises(KeyNotFound, match="no private key labelled 'absent-key'"):
        store.get(hsm_token.key_uri("absent-key"))


def test_generate_refuses_an_existing_label(
        hsm_token: SoftHsmToken, store: Pkcs11KeyStore,
        token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    uri = hsm_token.key_uri(f"key-{KeyType.EC_P256.value}")
    before = token_keys[KeyType.EC_P256].public_key()
    for key_type in ("ec-p256", "rsa-2048"):
        with pytest.raises(KeyExists, match="already has an object labelled"):
            store.generate(uri, key_type)
    assert store.get(uri).public_key() == before

    def count(session: Any) -> int:
        return len(list(session.get_objects({Attribute.LABEL: f"key-{KeyType.EC_P256.value}"})))

    assert on_token(hsm_token, count) == 2  # still one private and one public key


@pytest.mark.parametrize("key_type", ["rsa-1024", "ec-p521", "ed25519", ""])
def test_unsupported_key_type_is_refused_before_touching_the_token(
        hsm_token: SoftHsmToken, store: Pkcs11KeyStore, key_type: str) -> None:
    uri = hsm_token.key_uri(f"unsupported-{key_type}")
    with pytest.raises(UnsupportedKeyType, match="unsupported key type"):
        store.generate(uri, key_type)
    assert not store.exists(uri)


@pytest.mark.parametrize(("uri", "message"), [
    ("pkcs11:token=another-token;object=k", "names token='another-token'"),
    ("pkcs11:token=govpki-hsm-test", "add object=<label>"),
    ("pkcs11:token=govpki-hsm-test;object=k;type=cert", "type=private"),
    ("pkcs11:token=govpki-hsm-test;object=k;serial=0000", "names serial='0000'"),
    ("pkcs11:object=k?pin-value=1234", "pin-value is refused"),
    ("pkcs11:object=k?pin-source=file:/etc/pin", "does not read PINs"),
    ("pkcs11:object=k?module-path=/usr/lib/other.so", "names module-path="),
    ("file:k", "must start with 'pkcs11:'"),
])
def test_key_uris_that_do_not_fit_the_store(store: Pkcs11KeyStore, uri: str,
                                            message: str) -> None:
    with pytest.raises(InvalidKeyUri, match=message):
        store.get(uri)


def test_a_uri_without_token_means_this_stores_token(
        store: Pkcs11KeyStore, token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    signer = store.get(f"pkcs11:object=key-{KeyType.EC_P384.value};type=private")
    assert signer.public_key() == token_keys[KeyType.EC_P384].public_key()


def test_a_closed_store_refuses_work(hsm_token: SoftHsmToken) -> None:
    closing = Pkcs11KeyStore(hsm_token.module, hsm_token.label, pin=hsm_token.pin)
    closing.close()
    closing.close()  # idempotent
    with pytest.raises(HsmError, match="closed"):
        closing.exists(hsm_token.key_uri("anything"))


# -- SoftHSM2 and tokens created late (documents tests/softhsm.py) --------------------------


def test_token_created_by_another_process_after_load_is_invisible(
        hsm_token: SoftHsmToken, store: Pkcs11KeyStore) -> None:
    """SoftHSM2 scans its token directory only in C_Initialize (see tests/softhsm.py)."""
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "govpki-hsm-unseen",
                    "--pin", hsm_token.pin, "--so-pin", hsm_token.so_pin],
                   check=True, capture_output=True, env=os.environ.copy())
    with pytest.raises(TokenNotFound, match="govpki-hsm-unseen"):
        Pkcs11KeyStore(hsm_token.module, "govpki-hsm-unseen", pin=hsm_token.pin)


def test_init_token_after_load_is_visible_and_leaves_sessions_alone(
        hsm_token: SoftHsmToken, store: Pkcs11KeyStore,
        token_keys: dict[KeyType, Pkcs11Signer]) -> None:
    softhsm.init_token("govpki-hsm-late", hsm_token.pin, hsm_token.so_pin)
    with Pkcs11KeyStore(hsm_token.module, "govpki-hsm-late", pin=hsm_token.pin) as late:
        signer = late.generate("pkcs11:token=govpki-hsm-late;object=late-key", "ec-p256")
        verify(signer.public_key(), signer.sign(DATA, hashes.SHA256()), DATA, hashes.SHA256())
    # The main store's session survived.
    existing = token_keys[KeyType.EC_P256]
    verify(existing.public_key(), existing.sign(DATA, hashes.SHA256()), DATA, hashes.SHA256())
