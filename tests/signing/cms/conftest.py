"""The CMS tests' PKI: officials' certificates issued by the session's demo CA (file_pki),
their keys in this process, and the chain as PEM files for the OpenSSL CLI.

Certificates come from govpki's own issuance pipeline with the shipped profiles
(official-signing for signers, org-encryption for envelope recipients), so what openssl
accepts here is what production certificates get. SoftHSM2 tokens are made per module: an
official's USB key (signing) and a server HSM key (decryption for the exchange).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ca.issuance import CertificateRequest, issue_certificate
from ca.store import chain_der
from core.db import transaction
from hsm.signer import Signer, SoftwareSigner
from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key
from tests.conftest import Pki

PEM = serialization.Encoding.PEM
ORG_DN = "CN=青海省财政厅,O=青海省财政厅,ST=青海省,C=CN"
KEY_PASSPHRASE = "cms-test-key-passphrase"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Party:
    """A key in this process and the certificate the demo CA issued for it."""

    name: str
    key: PrivateKey
    certificate: x509.Certificate
    cert_pem: Path  # the certificate alone
    key_pem: Path  # encrypted PKCS#8 (KEY_PASSPHRASE)
    plain_key_pem: Path  # unencrypted, for the OpenSSL CLI

    @property
    def signer(self) -> SoftwareSigner:
        return SoftwareSigner(f"file:{self.name}", self.key)


@dataclass(frozen=True)
class CmsPki:
    pki: Pki
    directory: Path
    root: x509.Certificate
    root_pem: Path
    chain: tuple[x509.Certificate, ...]  # the officials CA (what signatures carry)
    chain_pem: Path
    ec: Party  # official-signing, EC P-256
    rsa: Party  # official-signing, RSA-2048
    org: Party  # org-encryption, RSA-2048 (envelope recipient)
    org2: Party  # a second recipient

    def issue(self, name: str, profile: str, key_type: str, subject: str = OFFICIAL_DN,
              key: PrivateKey | None = None) -> Party:
        return _issue(self.pki, self.directory, name, profile, key_type, subject, key)


def _issue(pki: Pki, directory: Path, name: str, profile: str, key_type: str, subject: str,
           key: PrivateKey | None = None) -> Party:
    key = key or new_key(key_type)
    issued = issue_certificate(pki.ctx, CertificateRequest(
        ca="officials", profile=profile, csr=make_csr(key), subject=subject,
        requested_by="cms-tests"))
    cert = issued.certificate()
    cert_pem = directory / f"{name}.pem"
    cert_pem.write_bytes(cert.public_bytes(PEM))
    key_pem = directory / f"{name}.key.pem"
    key_pem.write_bytes(key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSPHRASE.encode())))
    plain = directory / f"{name}.plain.key.pem"
    plain.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return Party(name, key, cert, cert_pem, key_pem, plain)


@pytest.fixture(scope="session")
def cms_pki(file_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> CmsPki:
    directory = tmp_path_factory.mktemp("cms-pki")
    with transaction(file_pki.ctx.sessions) as session:
        chain = [x509.load_der_x509_certificate(d) for d in chain_der(session, "officials")]
    root_pem = directory / "root.pem"
    root_pem.write_bytes(chain[-1].public_bytes(PEM))
    chain_pem = directory / "chain.pem"
    chain_pem.write_bytes(b"".join(c.public_bytes(PEM) for c in chain[:-1]))
    return CmsPki(
        pki=file_pki, directory=directory, root=chain[-1], root_pem=root_pem,
        chain=tuple(chain[:-1]), chain_pem=chain_pem,
        ec=_issue(file_pki, directory, "official-ec", "official-signing", "ec-p256",
                  OFFICIAL_DN),
        rsa=_issue(file_pki, directory, "official-rsa", "official-signing", "rsa-2048",
                   OFFICIAL_DN),
        org=_issue(file_pki, directory, "org-enc", "org-encryption", "rsa-2048", ORG_DN),
        org2=_issue(file_pki, directory, "org-enc-2", "org-encryption", "rsa-2048",
                    "CN=青海省教育厅,O=青海省教育厅,ST=青海省,C=CN"),
    )


@pytest.fixture
def document(tmp_path: Path) -> Path:
    path = tmp_path / "公文.txt"
    path.write_bytes("青海省人民政府办公厅 关于印发……的通知\n".encode() * 200 + b"\x00\xff\r\n")
    return path


# -- SoftHSM2: an official's USB key and a server HSM key ---------------------------------------

USB_LABEL = "cms-usb-key"
HSM_LABEL = "cms-server-hsm"
TOKEN_PIN = "cms-user-pin-2718"
TOKEN_SO_PIN = "cms-so-pin-3141"


@dataclass(frozen=True)
class UsbSigner:
    module: str
    label: str
    key_uri: str  # RFC 7512 URI of the private key on the token
    certificate: x509.Certificate
    cert_pem: Path


@pytest.fixture(scope="session")
def softhsm_module(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests import softhsm

    softhsm.require_softhsm()
    softhsm.init_softhsm(tmp_path_factory.mktemp("softhsm"))  # the first caller's dir wins
    return softhsm.SOFTHSM_MODULE


@pytest.fixture(scope="session")
def usb_signer(softhsm_module: str, cms_pki: CmsPki) -> UsbSigner:
    """An EC P-256 signing key generated on a SoftHSM2 token and certified by the demo CA,
    as `govpki token enroll` leaves an official's USB key."""
    from hsm.token import open_token
    from tests import softhsm

    softhsm.init_token(USB_LABEL, TOKEN_PIN, TOKEN_SO_PIN)
    with open_token(softhsm_module, USB_LABEL, TOKEN_PIN) as usb:
        key = usb.generate_signing_key("ec-p256")
        issued = issue_certificate(cms_pki.pki.ctx, CertificateRequest(
            ca="officials", profile="official-signing", csr=usb.build_csr(key),
            subject=OFFICIAL_DN, requested_by="cms-tests"))
        cert = issued.certificate()
        usb.store_certificate(key, cert, list(cms_pki.chain))
    cert_pem = cms_pki.directory / "usb.pem"
    cert_pem.write_bytes(cert.public_bytes(PEM))
    return UsbSigner(softhsm_module, USB_LABEL, key.key_uri, cert, cert_pem)


@dataclass(frozen=True)
class HsmRecipient:
    signer: Signer  # a hsm.pkcs11_store.Pkcs11Signer
    certificate: x509.Certificate


@pytest.fixture(scope="session")
def hsm_recipient(softhsm_module: str, cms_pki: CmsPki) -> Iterator[HsmRecipient]:
    """An organisation's RSA encryption key on the server HSM (SoftHSM2), as the key management
    centre holds it for organisations that use the web pages."""
    from hsm.pkcs11_store import Pkcs11KeyStore
    from hsm.pkcs11_uri import Pkcs11Uri
    from tests import softhsm

    softhsm.init_token(HSM_LABEL, TOKEN_PIN, TOKEN_SO_PIN)
    with Pkcs11KeyStore(softhsm_module, HSM_LABEL, pin=TOKEN_PIN) as store:
        signer = store.generate(Pkcs11Uri(token=HSM_LABEL, object="org-enc-1").format(),
                                "rsa-2048")
        public = signer.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        issued = issue_certificate(cms_pki.pki.ctx, CertificateRequest(
            ca="officials", profile="org-encryption", csr=_csr_for(signer), subject=ORG_DN,
            requested_by="cms-tests"))
        yield HsmRecipient(signer, issued.certificate())


def _csr_for(signer: Signer) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    private = signer.as_private_key()
    assert isinstance(private, rsa.RSAPrivateKey)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
           .sign(private, hashes.SHA256()))
    return csr.public_bytes(PEM)
