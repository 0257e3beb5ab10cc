"""The KMC on the shared test PKIs, officials' USB keys on SoftHSM2, and a CMS decryptor.

The server key store is whatever the ``pki`` matrix gives (file keys, or SoftHSM2's "govpki-ca"
token as the HSM); every official's USB key is a fresh SoftHSM2 token of its own. Nothing is
mocked: keys are generated, wrapped and unwrapped by SoftHSM2 (or pyca for the file store),
documents are encrypted by ``openssl cms`` and decrypted with the token's private key.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding

from hsm.pkcs11_uri import Pkcs11Uri
from hsm.token import UsbToken, open_token
from kmc import keys
from kmc.errors import KmcAlreadyInitialised
from ra import officials
from ra.records import Official, Operator
from tests import softhsm
from tests.conftest import Pki
from tests.ra.conftest import make_operator, ra_ready, unique

USB_PIN = "usb-user-pin-1618"
USB_SO_PIN = "usb-so-pin-0577"


@pytest.fixture(scope="session")
def usb_module(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SoftHSM2 for the officials' USB keys (the first conftest to configure it wins)."""
    softhsm.require_softhsm()
    softhsm.init_softhsm(tmp_path_factory.mktemp("softhsm"))
    return softhsm.SOFTHSM_MODULE


@dataclass(frozen=True)
class UsbKey:
    """A fresh SoftHSM2 token standing in for one USB key."""

    module: str
    label: str
    pin: str = USB_PIN

    def open(self) -> Any:
        return open_token(self.module, self.label, self.pin)


@pytest.fixture
def new_usb(usb_module: str):
    def make(prefix: str = "usb") -> UsbKey:
        label = f"{prefix}-{secrets.token_hex(4)}"
        softhsm.init_token(label, USB_PIN, USB_SO_PIN)
        return UsbKey(usb_module, label)
    return make


_initialised: set[str] = set()


def master_uri(pki: Pki) -> str:
    """The master key's URI for this PKI: on the session's SoftHSM2 "HSM" token (labels
    prefixed per PKI, as tests/conftest.py does for CA keys), or in the file store."""
    if pki.keys == "softhsm":
        return Pkcs11Uri(token="govpki-ca", object=f"{pki.home.name}-kmc-master",
                         type="secret-key").format()
    return "file:kmc-master"


def kmc_ready(pki: Pki) -> Pki:
    """ra's tables and organisations, and the KMC master key, once per PKI."""
    ra_ready(pki)
    if pki.id + pki.ctx.config.database_url not in _initialised:
        try:
            keys.init_master_key(pki.ctx, actor="test-ceremony", key_uri=master_uri(pki))
        except KmcAlreadyInitialised:
            pass
        _initialised.add(pki.id + pki.ctx.config.database_url)
    return pki


@pytest.fixture
def kmc_pki(pki: Pki, usb_module: str) -> Pki:
    return kmc_ready(pki)


@pytest.fixture
def kmc_file_pki(file_pki: Pki, usb_module: str) -> Pki:
    return kmc_ready(file_pki)


def make_official(pki: Pki, clerk: Operator, org: str = "630100-BGT") -> Official:
    return officials.create_official(pki.ctx.sessions, clerk, officials.OfficialInput(
        unique("QH"), "张三", org, "科员", "0971-1234567", "秘书科"))


def operators(pki: Pki, org: str = "630100", role: str = "ra-operator"
              ) -> tuple[Operator, Operator]:
    return make_operator(pki, org, role), make_operator(pki, org, role)


@contextmanager
def opened(usb: UsbKey) -> Iterator[UsbToken]:
    with usb.open() as token:
        yield token


# -- CMS ---------------------------------------------------------------------------------------


def openssl_encrypt(cert: x509.Certificate, message: bytes, directory: Path,
                    oaep: str | None = None) -> bytes:
    """`openssl cms -encrypt`: EnvelopedData, RSA key transport, AES-256-CBC (issue 8's shape)."""
    cert_file = directory / f"enc-{secrets.token_hex(3)}.pem"
    cert_file.write_bytes(cert.public_bytes(Encoding.PEM))
    argv = ["openssl", "cms", "-encrypt", "-aes256", "-binary", "-outform", "DER",
            "-recip", str(cert_file)]
    if oaep:  # "sha1" (openssl's OAEP default) or "sha256"
        argv += ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", f"rsa_oaep_md:{oaep}",
                 "-keyopt", f"rsa_mgf1_md:{oaep}"]
    result = subprocess.run(argv, input=message, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def decrypt_on_token(token: UsbToken, key_ref: str, envelope: bytes) -> bytes:
    """Open CMS EnvelopedData with the token's private key: the token unwraps the CEK
    (C_Decrypt, PKCS#1 v1.5 or OAEP), pyca decrypts the AES-CBC content."""
    info = cms.ContentInfo.load(envelope)
    assert info["content_type"].native == "enveloped_data"
    enveloped = info["content"]
    [recipient] = list(enveloped["recipient_infos"])
    ktri = recipient.chosen
    assert isinstance(ktri, cms.KeyTransRecipientInfo)
    key = token.find_key(key_ref)
    signer = token.signer(key)
    algorithm = ktri["key_encryption_algorithm"]["algorithm"].native
    if algorithm == "rsaes_oaep":
        # SHA-1 is openssl cms's OAEP default (not a signature); SoftHSM2 has no other native
        # OAEP hash, so SHA-256 goes through Pkcs11Signer's raw-RSA fallback.
        params = ktri["key_encryption_algorithm"]["parameters"]
        name = params["hash_algorithm"]["algorithm"].native
        chosen = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}[name]  # noqa: S303
        pad: asym_padding.AsymmetricPadding = asym_padding.OAEP(
            mgf=asym_padding.MGF1(chosen), algorithm=chosen, label=None)
    else:
        assert algorithm == "rsaes_pkcs1v15", algorithm
        pad = asym_padding.PKCS1v15()
    cek = signer.decrypt(ktri["encrypted_key"].native, pad)
    content = enveloped["encrypted_content_info"]
    alg = content["content_encryption_algorithm"]
    assert alg["algorithm"].native == "aes256_cbc"
    iv = alg["parameters"].native
    decryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
    padded = decryptor.update(content["encrypted_content"].native) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()
