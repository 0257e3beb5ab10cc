"""The software key store: encrypted PKCS#8 files, 0600, never overwritten, names not paths."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hsm.errors import (
    InvalidKeyUri,
    KeyExists,
    KeyNotFound,
    MissingSecret,
    UnsupportedKeyType,
    UnsupportedMechanism,
    WrongPin,
)
from hsm.file_store import FileKeyStore
from hsm.signer import Signer

PASSPHRASE = b"file-store-test-passphrase"
DATA = "公文交换 测试".encode()


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-2048"])
def test_generate_then_get_from_a_fresh_store(key_dir: Path, key_type: str) -> None:
    signer = FileKeyStore(key_dir, passphrase=PASSPHRASE).generate("file:issuing-ca", key_type)
    assert isinstance(signer, Signer)
    reopened = FileKeyStore(key_dir, passphrase=PASSPHRASE)
    assert reopened.exists("file:issuing-ca")
    loaded = reopened.get("file:issuing-ca")
    assert loaded.key_type.value == key_type
    assert loaded.public_key() == signer.public_key()
    signature = loaded.sign(DATA, hashes.SHA256())
    public = signer.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, DATA, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, DATA, padding.PKCS1v15(), hashes.SHA256())


def test_key_file_is_encrypted_pkcs8_and_private_to_the_owner(key_dir: Path) -> None:
    FileKeyStore(key_dir, passphrase=PASSPHRASE).generate("file:root-ca", "ec-p256")
    path = key_dir / "root-ca.p8.pem"
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert b"BEGIN PRIVATE KEY" not in pem and b"BEGIN EC PRIVATE KEY" not in pem
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    with pytest.raises(TypeError):  # pyca: "Password was not given but private key is encrypted"
        serialization.load_pem_private_key(pem, password=None)


def test_wrong_passphrase_is_wrong_pin_and_not_echoed(key_dir: Path) -> None:
    FileKeyStore(key_dir, passphrase=PASSPHRASE).generate("file:ocsp", "ec-p256")
    wrong = b"not-the-passphrase-31337"
    with pytest.raises(WrongPin, match="wrong passphrase") as caught:
        FileKeyStore(key_dir, passphrase=wrong).get("file:ocsp")
    assert wrong.decode() not in str(caught.value)
    assert PASSPHRASE.decode() not in str(caught.value)


def test_passphrase_from_the_environment(key_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVPKI_TEST_FILE_PASSPHRASE", PASSPHRASE.decode())
    store = FileKeyStore(key_dir, passphrase_env="GOVPKI_TEST_FILE_PASSPHRASE")
    store.generate("file:tsa", "ec-p256")
    assert FileKeyStore(key_dir, passphrase=PASSPHRASE).get("file:tsa").key_type.value == "ec-p256"


def test_missing_passphrase_variable_is_named(key_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVPKI_TEST_UNSET_PASSPHRASE", raising=False)
    store = FileKeyStore(key_dir, passphrase_env="GOVPKI_TEST_UNSET_PASSPHRASE")
    with pytest.raises(MissingSecret, match="export GOVPKI_TEST_UNSET_PASSPHRASE"):
        store.generate("file:sso", "ec-p256")
    assert not key_dir.exists() or not any(key_dir.iterdir())


def test_existing_key_is_never_overwritten(key_dir: Path) -> None:
    store = FileKeyStore(key_dir, passphrase=PASSPHRASE)
    original = store.generate("file:root-ca", "ec-p256")
    before = (key_dir / "root-ca.p8.pem").read_bytes()
    with pytest.raises(KeyExists, match="refusing to overwrite"):
        FileKeyStore(key_dir, passphrase=PASSPHRASE).generate("file:root-ca", "rsa-2048")
    assert (key_dir / "root-ca.p8.pem").read_bytes() == before
    assert FileKeyStore(key_dir, passphrase=PASSPHRASE).get("file:root-ca").public_key() == \
        original.public_key()


@pytest.mark.parametrize("uri", [
    "file:../x",
    "file:../../etc/passwd",
    "file:/etc/passwd",
    "file:a/b",
    "file:..",
    "file:.hidden",
    "file:",
    "file:a\x00b",
    "file:a b",
    "file:" + "a" * 129,
    "pkcs11:token=t;object=k",
    "FILE:x",
])
def test_names_that_are_paths_or_not_file_uris_are_refused(tmp_path: Path, uri: str) -> None:
    key_dir = tmp_path / "keys"
    store = FileKeyStore(key_dir, passphrase=PASSPHRASE)
    with pytest.raises(InvalidKeyUri):
        store.generate(uri, "ec-p256")
    with pytest.raises(InvalidKeyUri):
        store.exists(uri)
    with pytest.raises(InvalidKeyUri):
        store.get(uri)
    assert sorted(os.listdir(tmp_path)) in ([], ["keys"])
    assert not key_dir.exists() or not any(key_dir.iterdir())


def test_missing_key(key_dir: Path) -> None:
    with pytest.raises(KeyNotFound, match="file:absent"):
        FileKeyStore(key_dir, passphrase=PASSPHRASE).get("file:absent")


def test_unsupported_key_type(key_dir: Path) -> None:
    with pytest.raises(UnsupportedKeyType, match="rsa-1024"):
        FileKeyStore(key_dir, passphrase=PASSPHRASE).generate("file:weak", "rsa-1024")
    assert not (key_dir / "weak.p8.pem").exists()


def test_ec_file_keys_do_not_decrypt(key_dir: Path) -> None:
    signer = FileKeyStore(key_dir, passphrase=PASSPHRASE).generate("file:ec", "ec-p256")
    with pytest.raises(UnsupportedMechanism):
        signer.decrypt(b"\x00" * 32, padding.PKCS1v15())
