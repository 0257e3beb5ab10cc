"""Contract with pyca/cryptography: its builders sign with a token-backed private key.

govpki signs certificates, CRLs, OCSP responses and CSRs by handing pyca's builders
``signer.as_private_key()``: a Python subclass of ``ec.EllipticCurvePrivateKey`` /
``rsa.RSAPrivateKey`` whose ``sign()`` calls the token (DESIGN.md, "Key material", route (a)).
pyca does not document that subclasses are accepted; it works because its Rust builders call
the Python ``sign()`` method of whatever key they are given.

IF THIS TEST FAILS AFTER A PYCA UPGRADE, THE UPPER BOUND ON ``cryptography`` IN setup.py MUST
NOT MOVE: pin the last version that passes, and either wait for a fix or switch the signing
route (re-signing the TBS bytes, DESIGN.md route (b)) before upgrading.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from hsm.algorithms import KeyType
from hsm.pkcs11_store import Pkcs11Signer

pytestmark = pytest.mark.hsm

NOW = dt.datetime(2024, 6, 1, 8, 0, tzinfo=dt.UTC)


def verify(public: PublicKeyTypes, signature: bytes, data: bytes,
           hash_algorithm: hashes.HashAlgorithm | None) -> None:
    assert hash_algorithm is not None
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(hash_algorithm))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, data, padding.PKCS1v15(), hash_algorithm)


def self_signed(signer: Pkcs11Signer, private_key: object) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "省政府办公厅"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"合同测试 {signer.key_type.value}")])
    public = signer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(private_key, hashes.SHA256())  # type: ignore[arg-type]
    )


@pytest.fixture(params=[KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048],
                ids=lambda k: k.value)
def signer(request: pytest.FixtureRequest, token_keys: dict[KeyType, Pkcs11Signer]
           ) -> Pkcs11Signer:
    return token_keys[request.param]


def test_as_private_key_is_a_pyca_private_key(signer: Pkcs11Signer) -> None:
    private = signer.as_private_key()
    expected = (ec.EllipticCurvePrivateKey if signer.key_type.value.startswith("ec")
                else rsa.RSAPrivateKey)
    assert isinstance(private, expected)
    assert private.public_key() == signer.public_key()
    assert private.key_size == signer.public_key().key_size  # type: ignore[union-attr]


def test_certificate_builder_signs_on_the_token(signer: Pkcs11Signer) -> None:
    cert = self_signed(signer, signer.as_private_key())
    assert cert.public_key() == signer.public_key()
    cert.verify_directly_issued_by(cert)  # raises InvalidSignature if the token's is wrong
    verify(signer.public_key(), cert.signature, cert.tbs_certificate_bytes,
           cert.signature_hash_algorithm)


def test_crl_builder_signs_on_the_token(signer: Pkcs11Signer) -> None:
    cert = self_signed(signer, signer.as_private_key())
    revoked = [
        x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW).build()
        for serial in (0x1234567890ABCDEF, 0x7EDCBA0987654321)
    ]
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(42), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(signer.as_private_key(), hashes.SHA256())  # type: ignore[arg-type]
    public = signer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    assert crl.is_signature_valid(public)
    assert len(crl) == 2


def test_ocsp_response_builder_signs_on_the_token(signer: Pkcs11Signer) -> None:
    private = signer.as_private_key()
    cert = self_signed(signer, private)
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(cert=cert, issuer=cert, algorithm=hashes.SHA256(),
                      cert_status=ocsp.OCSPCertStatus.GOOD, this_update=NOW,
                      next_update=NOW + dt.timedelta(hours=4), revocation_time=None,
                      revocation_reason=None)
        .responder_id(ocsp.OCSPResponderEncoding.HASH, cert)
        .certificates([cert])
        .sign(private, hashes.SHA256())  # type: ignore[arg-type]
    )
    parsed = ocsp.load_der_ocsp_response(response.public_bytes(serialization.Encoding.DER))
    assert parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    verify(signer.public_key(), parsed.signature, parsed.tbs_response_bytes,
           parsed.signature_hash_algorithm)


def test_csr_builder_signs_on_the_token(signer: Pkcs11Signer) -> None:
    """Officials' USB keys enrol with a CSR signed on the token (proof of possession)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "张三")]))
        .sign(signer.as_private_key(), hashes.SHA256())  # type: ignore[arg-type]
    )
    assert csr.is_signature_valid
    assert csr.public_key() == signer.public_key()
