"""USB-key enrollment (hsm/token.py) on real SoftHSM2 tokens, one throwaway token per test.

Nothing is mocked: keys are generated on the token, CSRs are checked by pyca and by
``openssl req -verify``, certificates come from a small CA made here with pyca, and what the
token holds is read back through python-pkcs11 directly, not through the code under test.
Failures of a full token are in test_token_full.py; key-reference parsing in test_token_ref.py.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import subprocess
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, CertificateType, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.attributes import AttributeMapper, handle_ulong

from core.errors import GovpkiError
from hsm.algorithms import KeyType
from hsm.errors import (
    HsmError,
    KeyExists,
    KeyNotFound,
    MissingSecret,
    TokenNotFound,
    UnsupportedKeyType,
    WrongPin,
)
from hsm.pkcs11_lock import PKCS11_LOCK
from hsm.token import (
    LABEL_PREFIX,
    PLACEHOLDER_SUBJECT,
    CertificateMismatch,
    InvalidCertificate,
    InvalidKeyReference,
    TokenKey,
    UsbToken,
    list_tokens,
    open_token,
)
from hsm.token_cryptoki import cryptoki
from tests import softhsm
from tests.conftest import require

pytestmark = pytest.mark.hsm

PIN = "usb-user-pin-31415"
SO_PIN = "usb-so-pin-27182"
NOW = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
CATEGORY_MAPPER = AttributeMapper()
CATEGORY_MAPPER.register_handler(Attribute.CERTIFICATE_CATEGORY, *handle_ulong)


# -- fixtures and helpers (test_token_full.py uses them too) -----------------------------------


@dataclass(frozen=True)
class UsbKey:
    """A fresh SoftHSM2 token standing in for one official's USB key."""

    module: str
    label: str
    pin: str

    @property
    def directory(self) -> Path:
        """SoftHSM2's directory for this token (found by the label in its token.object)."""
        base = softhsm.softhsm_token_dir()
        assert base is not None
        padded = self.label.encode("utf-8").ljust(32, b" ")
        for candidate in base.iterdir():
            token_file = candidate / "token.object"
            if token_file.is_file() and padded in token_file.read_bytes():
                return candidate
        raise AssertionError(f"no SoftHSM2 directory holds token {self.label!r}")

    def open(self) -> Any:
        return open_token(self.module, self.label, self.pin)


@pytest.fixture(scope="session")
def usb_module(tmp_path_factory: pytest.TempPathFactory) -> str:
    softhsm.require_softhsm()
    softhsm.init_softhsm(tmp_path_factory.mktemp("softhsm"))  # the first caller's dir wins
    return softhsm.SOFTHSM_MODULE


@pytest.fixture
def usb(usb_module: str) -> UsbKey:
    label = f"usb-{secrets.token_hex(4)}"
    softhsm.init_token(label, PIN, SO_PIN)
    return UsbKey(usb_module, label, PIN)


@pytest.fixture
def token(usb: UsbKey) -> Iterator[UsbToken]:
    with usb.open() as opened:
        yield opened


@contextmanager
def raw_session(usb: UsbKey, mapper: AttributeMapper | None = None) -> Iterator[Any]:
    """A session of our own straight through python-pkcs11, no PIN: while an UsbToken is open
    the application is logged in, so it sees private objects too."""
    with PKCS11_LOCK:
        lib = pkcs11.lib(os.path.realpath(usb.module))
        session = lib.get_token(token_label=usb.label).open(
            rw=True, attribute_mapper=mapper or AttributeMapper())
        try:
            yield session
        finally:
            session.close()


def raw_objects(usb: UsbKey, query: dict[Attribute, Any] | None = None) -> list[tuple[Any, ...]]:
    """(class, label, id) of every object a plain session sees."""
    with raw_session(usb) as session:
        return sorted((int(o[Attribute.CLASS]), o[Attribute.LABEL], bytes(o[Attribute.ID]))
                      for o in session.get_objects(query or {}))


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


@dataclass
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "省政府办公厅"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str, parent: Ca | None = None,
            extra: x509.ExtensionType | None = None) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name = parent.cert.subject if parent else name(common_name)
    signing_key = parent.key if parent else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                     False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if parent:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
            critical=False)
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return Ca(key, builder.sign(signing_key, hashes.SHA256()))


def issue(ca: Ca, public_key: PublicKeyTypes, common_name: str = "张三") -> x509.Certificate:
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False,
                                     False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
        .sign(ca.key, hashes.SHA256())
    )


def der_integer(value: int) -> bytes:
    """DER INTEGER for a positive int, written out here independently of the code under test."""
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    assert len(body) < 128
    return bytes([0x02, len(body)]) + body


def verify(public: PublicKeyTypes, signature: bytes, data: bytes) -> None:
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


def require_openssl() -> str:
    path = shutil.which("openssl")
    require(path is not None, "the openssl command")
    assert path is not None
    return path


# -- opening ----------------------------------------------------------------------------------


def test_wrong_pin_is_refused_without_revealing_it_and_leaks_no_session(usb: UsbKey) -> None:
    """C_Login really runs (nothing in this process is logged in to a fresh token), and the
    session it ran on is closed again: python-pkcs11's own login path would leave it open."""
    with raw_session(usb) as before:
        first = int(before.handle)
    functions = cryptoki(usb.module)  # once python-pkcs11 has loaded the module
    wrong = "wrong-pin-5c1e9a"
    with pytest.raises(WrongPin) as caught, open_token(usb.module, usb.label, wrong):
        pass
    assert str(caught.value) == f"wrong user PIN for token '{usb.label}'"
    assert caught.value.kind == "hsm-wrong-pin"
    text = exception_text(caught.value)
    assert wrong not in text
    assert usb.pin not in text
    with raw_session(usb) as after:
        last = int(after.handle)
        assert last > first
        leaked = [h for h in range(first + 1, last) if functions.session_open(h)]
    assert leaked == []
    with usb.open() as opened:  # the right PIN still works
        assert opened.list_objects() == []


def test_unknown_token_names_the_label_and_the_labels_present(usb: UsbKey) -> None:
    with pytest.raises(TokenNotFound) as caught, open_token(usb.module, "no-such-usb-key",
                                                            usb.pin):
        pass
    message = str(caught.value)
    assert "'no-such-usb-key'" in message
    assert f"'{usb.label}'" in message
    assert usb.pin not in exception_text(caught.value)


def test_empty_pin_is_refused_before_touching_the_token(usb: UsbKey) -> None:
    with pytest.raises(MissingSecret, match="no user PIN"), open_token(usb.module, usb.label, ""):
        pass


def test_the_login_ends_with_the_block_even_on_an_error(usb: UsbKey) -> None:
    with pytest.raises(RuntimeError, match="official cancelled"), usb.open() as opened:
        opened.generate_signing_key("ec-p256")
        raise RuntimeError("official cancelled")
    assert opened.closed
    with pytest.raises(HsmError, match="closed"):
        opened.list_objects()
    # Logged out: a plain session sees the public key but no longer the private one.
    kinds = [c for c, _, _ in raw_objects(usb)]
    assert kinds == [int(ObjectClass.PUBLIC_KEY)]
    with usb.open() as again:
        assert [o.kind for o in again.list_objects()] == ["private-key", "public-key"]


def test_a_second_open_on_the_same_token_shares_the_login_and_checks_the_pin(
        usb: UsbKey) -> None:
    with usb.open() as outer:
        key = outer.generate_signing_key("ec-p256")
        wrong = "another-wrong-pin-71"
        with pytest.raises(WrongPin, match="differs from the PIN") as caught, \
                open_token(usb.module, usb.label, wrong):
            pass
        assert wrong not in exception_text(caught.value)
        with usb.open() as inner:
            assert inner.find_key(key.id_hex) == key
        # The inner block gave up only its share: the outer session still signs.
        signer = outer.signer(key)
        verify(signer.public_key(), signer.sign(b"challenge", hashes.SHA256()), b"challenge")


def test_list_tokens_needs_no_pin(usb: UsbKey) -> None:
    summary = next(t for t in list_tokens(usb.module) if t.label == usb.label)
    assert summary.user_pin_initialized
    assert not summary.user_pin_locked
    assert summary.manufacturer == "SoftHSM project"


def test_free_space_is_unknown_on_softhsm(token: UsbToken) -> None:
    space = token.free_space()
    assert (space.free_public, space.total_public, space.free_private,
            space.total_private) == (None, None, None, None)


# -- key generation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "secret"), [
    (KeyType.EC_P256, Attribute.VALUE),
    (KeyType.EC_P384, Attribute.VALUE),
    (KeyType.RSA_2048, Attribute.PRIVATE_EXPONENT),
    (KeyType.RSA_3072, Attribute.PRIME_1),
], ids=lambda v: getattr(v, "value", None) if isinstance(v, KeyType) else v.name)
def test_generated_key_is_sensitive_non_extractable_and_paired_by_id(
        usb: UsbKey, token: UsbToken, key_type: KeyType, secret: Attribute) -> None:
    key = token.generate_signing_key(key_type)
    assert key.key_type is key_type
    assert len(key.key_id) == 16
    assert key.label == f"{LABEL_PREFIX}{key.id_hex[:8]}"
    public = key.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    assert public.key_size == {"ec-p256": 256, "ec-p384": 384, "rsa-2048": 2048,
                               "rsa-3072": 3072}[key_type.value]

    with raw_session(usb) as session:
        (private,) = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        (public_obj,) = session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY})
        assert bytes(private[Attribute.ID]) == bytes(public_obj[Attribute.ID]) == key.key_id
        assert private[Attribute.LABEL] == public_obj[Attribute.LABEL] == key.label
        expected = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False, Attribute.ALWAYS_SENSITIVE: True,
                    Attribute.NEVER_EXTRACTABLE: True, Attribute.LOCAL: True,
                    Attribute.SIGN: True, Attribute.DECRYPT: False, Attribute.UNWRAP: False,
                    Attribute.DERIVE: False}
        assert {a: private[a] for a in expected} == expected
        assert public_obj[Attribute.TOKEN] is True
        assert public_obj[Attribute.PRIVATE] is False
        assert public_obj[Attribute.VERIFY] is True
        with pytest.raises(p11e.AttributeSensitive):
            private[secret]  # reading the private value is the point

    listed = token.list_objects()
    assert [(o.kind, o.label, o.id_hex, o.key_type) for o in listed] == [
        ("private-key", key.label, key.id_hex, key_type.value),
        ("public-key", key.label, key.id_hex, key_type.value),
    ]
    assert (listed[0].sensitive, listed[0].extractable) == (True, False)
    signer = token.signer(key)
    verify(signer.public_key(), signer.sign(b"login challenge", hashes.SHA256()),
           b"login challenge")


def test_a_chosen_label_and_a_taken_one(token: UsbToken) -> None:
    key = token.generate_signing_key("ec-p256", label="张三 签名密钥")
    assert key.label == "张三 签名密钥"
    with pytest.raises(KeyExists, match="already has an object labelled"):
        token.generate_signing_key("rsa-2048", label="张三 签名密钥")
    with pytest.raises(InvalidKeyReference, match="control characters"):
        token.generate_signing_key("ec-p256", label="bad\nlabel")
    assert len(token.list_objects()) == 2


@pytest.mark.parametrize("key_type", ["ed25519", "rsa-1024", "ec-p521", ""])
def test_unsupported_key_types_are_refused_before_touching_the_token(
        usb: UsbKey, token: UsbToken, key_type: str) -> None:
    with pytest.raises(UnsupportedKeyType, match="unsupported key type"):
        token.generate_signing_key(key_type)
    assert raw_objects(usb) == []


# -- CSR ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "hash_name"), [
    (KeyType.EC_P256, "sha256"), (KeyType.EC_P384, "sha384"), (KeyType.RSA_2048, "sha256"),
], ids=lambda v: getattr(v, "value", v))
def test_csr_is_signed_on_the_token_and_openssl_agrees(
        token: UsbToken, tmp_path: Path, key_type: KeyType, hash_name: str) -> None:
    openssl = require_openssl()
    key = token.generate_signing_key(key_type)
    pem = token.build_csr(key)
    assert pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    csr = x509.load_pem_x509_csr(pem)
    assert csr.is_signature_valid
    assert csr.public_key() == key.public_key
    assert csr.subject == PLACEHOLDER_SUBJECT
    assert csr.signature_hash_algorithm is not None
    assert csr.signature_hash_algorithm.name == hash_name
    path = tmp_path / "request.csr"
    path.write_bytes(pem)
    result = subprocess.run([openssl, "req", "-in", str(path), "-noout", "-verify"],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stdout + result.stderr


def test_csr_with_a_subject_of_the_callers_choice(token: UsbToken) -> None:
    key = token.generate_signing_key("ec-p256")
    subject = name("李四")
    csr = x509.load_pem_x509_csr(token.build_csr(key, subject))
    assert csr.subject == subject
    assert csr.is_signature_valid


# -- certificates -------------------------------------------------------------------------------


def test_certificate_and_chain_are_stored_beside_the_key(
        usb: UsbKey, token: UsbToken, tmp_path: Path) -> None:
    openssl = require_openssl()
    root = make_ca("省政府根CA")
    issuing = make_ca("省政府签发CA", parent=root)
    key = token.generate_signing_key("ec-p256")
    csr = x509.load_pem_x509_csr(token.build_csr(key))
    cert = issue(issuing, csr.public_key())
    pem = cert.public_bytes(serialization.Encoding.PEM)
    chain: list[x509.Certificate | bytes] = [
        issuing.cert.public_bytes(serialization.Encoding.DER), root.cert]

    token.store_certificate(key, pem, chain)

    listed = token.list_objects()
    certs = {o.id_hex: o for o in listed if o.kind == "certificate"}
    assert len(certs) == 3
    mine = certs[key.id_hex]
    assert mine.label == key.label
    assert mine.category == "token-user"
    assert mine.subject == cert.subject.rfc4514_string()
    assert mine.issuer == issuing.cert.subject.rfc4514_string()
    assert mine.serial == cert.serial_number
    assert mine.not_after == NOW + dt.timedelta(days=730)
    for ca in (issuing, root):
        ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        stored = certs[ski.digest.hex()]
        assert stored.category == "authority"
        assert stored.label == ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[
            0].value
    # The key's three objects share one CKA_ID and one label.
    assert sorted(o.kind for o in listed if o.id_hex == key.id_hex) == [
        "certificate", "private-key", "public-key"]
    assert {o.label for o in listed if o.id_hex == key.id_hex} == {key.label}

    with raw_session(usb, CATEGORY_MAPPER) as session:
        (obj,) = session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                      Attribute.ID: key.key_id})
        der = cert.public_bytes(serialization.Encoding.DER)
        assert obj[Attribute.CERTIFICATE_TYPE] == CertificateType.X_509
        assert obj[Attribute.TOKEN] is True
        assert obj[Attribute.PRIVATE] is False
        assert bytes(obj[Attribute.VALUE]) == der
        assert bytes(obj[Attribute.SUBJECT]) == cert.subject.public_bytes()
        assert bytes(obj[Attribute.ISSUER]) == cert.issuer.public_bytes()
        assert bytes(obj[Attribute.SERIAL_NUMBER]) == der_integer(cert.serial_number)
        assert obj[Attribute.CERTIFICATE_CATEGORY] == 1
        values = {bytes(o[Attribute.ID]).hex(): bytes(o[Attribute.VALUE])
                  for o in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})}
    # What the token holds is a chain openssl accepts.
    files = {}
    for id_hex, value in values.items():
        files[id_hex] = tmp_path / f"{id_hex}.pem"
        files[id_hex].write_bytes(
            x509.load_der_x509_certificate(value).public_bytes(serialization.Encoding.PEM))
    root_id = root.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    issuing_id = issuing.cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value
    result = subprocess.run(
        [openssl, "verify", "-attime", str(int(NOW.timestamp()) + 3600),
         "-CAfile", str(files[root_id.digest.hex()]),
         "-untrusted", str(files[issuing_id.digest.hex()]), str(files[key.id_hex])],
        capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

    # Storing again writes nothing new; a second key's chain reuses the CA certificates.
    token.store_certificate(key, cert, chain)
    assert token.list_objects() == listed
    other = token.generate_signing_key("rsa-2048")
    token.store_certificate(other, issue(issuing, other.public_key, "王五"),
                            [issuing.cert, root.cert])
    kinds = [o.kind for o in token.list_objects()]
    assert kinds.count("certificate") == 4


def test_a_renewed_certificate_for_the_same_key_replaces_the_old_one(token: UsbToken) -> None:
    ca = make_ca("省政府签发CA")
    key = token.generate_signing_key("ec-p256")
    first = issue(ca, key.public_key)
    second = issue(ca, key.public_key)
    token.store_certificate(key, first)
    token.store_certificate(key, second)
    mine = [o for o in token.list_objects() if o.kind == "certificate"
            and o.id_hex == key.id_hex]
    assert [o.serial for o in mine] == [second.serial_number]


def test_a_certificate_for_another_key_is_refused_and_nothing_is_written(
        usb: UsbKey, token: UsbToken) -> None:
    ca = make_ca("省政府签发CA")
    key = token.generate_signing_key("ec-p256")
    other = token.generate_signing_key("ec-p256")
    before = raw_objects(usb)
    foreign = issue(ca, ec.generate_private_key(ec.SECP256R1()).public_key())
    for wrong in (foreign, issue(ca, other.public_key)):
        with pytest.raises(CertificateMismatch, match="is for another public key") as caught:
            token.store_certificate(key, wrong, [ca.cert])
        assert "nothing was written" in str(caught.value)
    assert raw_objects(usb) == before


@pytest.mark.parametrize("garbage", [b"", b"not a certificate", "-----BEGIN CERTIFICATE-----\n"
                                     "AAAA\n-----END CERTIFICATE-----\n", b"\x30\x03\x02\x01\x01"])
def test_input_that_is_not_a_certificate_is_refused(usb: UsbKey, token: UsbToken,
                                                    garbage: bytes | str) -> None:
    key = token.generate_signing_key("ec-p256")
    before = raw_objects(usb)
    with pytest.raises(InvalidCertificate, match=r"not a PEM or DER X\.509 certificate"):
        token.store_certificate(key, garbage)
    ca = make_ca("省政府签发CA")
    with pytest.raises(InvalidCertificate, match="chain certificate 2"):
        token.store_certificate(key, issue(ca, key.public_key), [ca.cert, garbage])
    assert raw_objects(usb) == before


# -- finding and deleting -----------------------------------------------------------------------


def test_find_key_by_id_label_uri_and_the_ambiguous_bare_hex(token: UsbToken) -> None:
    first = token.generate_signing_key("ec-p256")
    # A label that is also the first key's id in hex: the bare word matches both keys.
    second = token.generate_signing_key("ec-p256", label=first.id_hex)
    assert token.find_key(f"id:{first.id_hex}") == first
    assert token.find_key(f"id:{':'.join(f'{b:02X}' for b in first.key_id)}") == first
    assert token.find_key(f"label:{first.id_hex}") == second
    assert token.find_key(first.key_uri) == first
    assert token.find_key(first.label) == first
    assert token.find_key(second.id_hex) == second
    with pytest.raises(KeyNotFound, match=r"2 private keys .* match") as caught:
        token.find_key(first.id_hex)
    assert f"id:{first.id_hex}" in str(caught.value)
    with pytest.raises(KeyNotFound, match="no private key with label 'absent'"):
        token.find_key("absent")
    with pytest.raises(InvalidKeyReference, match="names token 'another-token'"):
        token.find_key(f"pkcs11:token=another-token;object={first.label}")
    with pytest.raises(InvalidKeyReference, match="not hex"):
        token.find_key("id:xyz")


def test_delete_key_rolls_an_enrollment_back(usb: UsbKey, token: UsbToken) -> None:
    ca = make_ca("省政府签发CA")
    keep = token.generate_signing_key("ec-p256")
    token.store_certificate(keep, issue(ca, keep.public_key, "留下"), [ca.cert])

    rejected = token.generate_signing_key("rsa-2048")
    token.build_csr(rejected)
    assert token.delete_key(rejected) == 2
    failed = token.generate_signing_key("ec-p384")
    token.store_certificate(failed, issue(ca, failed.public_key), [ca.cert])
    assert token.delete_key(failed) == 3
    assert token.delete_key(failed) == 0  # already gone: nothing to do

    ids = {bytes(i) for _, _, i in raw_objects(usb)}
    assert rejected.key_id not in ids
    assert failed.key_id not in ids
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ids == {keep.key_id, ski}  # the other key and the shared CA certificate stay
    with pytest.raises(KeyNotFound):
        token.signer(failed)
    with pytest.raises(KeyNotFound):
        token.build_csr(rejected)
    with pytest.raises(KeyNotFound):
        token.store_certificate(failed, issue(ca, failed.public_key))


def test_a_token_key_made_up_by_the_caller_is_checked_against_the_token(
        token: UsbToken) -> None:
    key = token.generate_signing_key("ec-p256")
    forged = TokenKey(key_id=key.key_id, label="forged", key_type=KeyType.RSA_2048,
                      key_uri="pkcs11:object=forged",
                      public_key=ec.generate_private_key(ec.SECP256R1()).public_key())
    ca = make_ca("省政府签发CA")
    with pytest.raises(CertificateMismatch):
        token.store_certificate(forged, issue(ca, forged.public_key))
    token.store_certificate(forged, issue(ca, key.public_key))  # the token's key decides
    (cert,) = [o for o in token.list_objects() if o.kind == "certificate"]
    assert cert.label == key.label


def test_messages_are_one_line(usb: UsbKey, token: UsbToken) -> None:
    key = token.generate_signing_key("ec-p256")
    errors: list[HsmError] = []
    for action in (lambda: token.find_key("absent"),
                   lambda: token.store_certificate(key, b"junk"),
                   lambda: token.generate_signing_key("ed25519")):
        with pytest.raises(HsmError) as caught:
            action()
        errors.append(caught.value)
    for error in errors:
        assert "\n" not in str(error)
        assert re.match(r"^[a-z-]+$", error.kind)
