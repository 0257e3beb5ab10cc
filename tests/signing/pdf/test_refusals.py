"""govpki refuses to sign with a certificate that must not sign, and says which; bad documents
get their own one-line error and no signature."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ca.revocation import release, revoke, suspend
from hsm.signer import SoftwareSigner
from signing.pades import Level, PadesOptions, SigningServices, sign_pdf
from signing.pdf_errors import (
    CertificateExpired,
    CertificateKeyMismatch,
    CertificateNotForSigning,
    CertificateNotYetValid,
    CertificateRevoked,
    CertificateSuspended,
    CorruptPdf,
    EmptyPdf,
    EncryptedPdf,
    NotAPdf,
    PdfTooLarge,
    RevocationUnknown,
)
from signing.pdf_limits import PdfLimits
from signing.pdf_revinfo import OcspStatusSource, WsgiTransport
from signing.pdf_signer import SigningKey
from tests.ca.helpers import SERVER_DN
from tests.signing.pdf.conftest import PdfPki
from tests.signing.pdf.helpers import make_encrypted_pdf, make_pdf

B_B = PadesOptions(level=Level.B_B)


def _serial(key: SigningKey) -> str:
    return format(key.certificate.serial_number, "x")


@pytest.mark.parametrize("source", ["store", "ocsp"])
def test_revoked_signer_is_refused(pdf_pki: PdfPki, services, one_page, source: str) -> None:
    key = pdf_pki.file_key()
    revoke(pdf_pki.ctx, _serial(key), "keyCompromise", ca="officials", actor="test")
    if source == "ocsp":
        services = pdf_pki.services(status=OcspStatusSource(
            WsgiTransport(pdf_pki.base_url, pdf_pki.app, fallback=None)))
    with pytest.raises(CertificateRevoked, match=r"was revoked on .* \(keyCompromise\)"):
        sign_pdf(one_page, key, B_B, services)


def test_suspended_signer_is_refused_until_released(pdf_pki: PdfPki, services,
                                                    one_page) -> None:
    key = pdf_pki.file_key()
    suspend(pdf_pki.ctx, _serial(key), ca="officials", actor="test")
    with pytest.raises(CertificateSuspended, match="suspended"):
        sign_pdf(one_page, key, B_B, services)
    over_ocsp = pdf_pki.services(status=OcspStatusSource(
        WsgiTransport(pdf_pki.base_url, pdf_pki.app, fallback=None)))
    with pytest.raises(CertificateSuspended, match="certificateHold"):
        sign_pdf(one_page, key, B_B, over_ocsp)
    release(pdf_pki.ctx, _serial(key), ca="officials", actor="test")
    assert sign_pdf(one_page, key, B_B, services)


def test_revoked_signer_refused_at_b_lt_by_pyhanko_too(pdf_pki: PdfPki, one_page) -> None:
    """Even without govpki's own status check, B-LT's pre-signing validation refuses."""
    key = pdf_pki.file_key()
    revoke(pdf_pki.ctx, _serial(key), "keyCompromise", ca="officials", actor="test")
    unchecked = pdf_pki.services(status=None, require_status=False)
    with pytest.raises(CertificateRevoked):
        sign_pdf(one_page, key, PadesOptions(level=Level.B_LT), unchecked)


def test_expired_and_not_yet_valid(pdf_pki: PdfPki, official, one_page) -> None:
    later = official.certificate.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(CertificateExpired, match="expired on"):
        sign_pdf(one_page, official, B_B, pdf_pki.services(now=lambda: later))
    earlier = official.certificate.not_valid_before_utc - dt.timedelta(days=1)
    with pytest.raises(CertificateNotYetValid, match="valid only from"):
        sign_pdf(one_page, official, B_B, pdf_pki.services(now=lambda: earlier))


def test_encryption_certificate_is_not_for_signing(pdf_pki: PdfPki, services,
                                                   one_page) -> None:
    key = pdf_pki.file_key("official-encryption", key=rsa.generate_private_key(65537, 2048))
    with pytest.raises(CertificateNotForSigning, match="neither digitalSignature nor "
                                                      "nonRepudiation"):
        sign_pdf(one_page, key, B_B, services)


def test_tls_certificate_eku_does_not_allow_documents(pdf_pki: PdfPki, services,
                                                      one_page) -> None:
    key = pdf_pki.file_key("server-tls", SERVER_DN, san_dns=("ra.gov.qh",))
    with pytest.raises(CertificateNotForSigning, match="extendedKeyUsage allows only "
                                                      "serverAuth"):
        sign_pdf(one_page, SigningKey(key.signer, key.certificate, (pdf_pki.devices,
                                                                    pdf_pki.root)),
                 B_B, services)


def test_ca_certificate_is_not_a_signer(pdf_pki: PdfPki, services, one_page) -> None:
    signer = pdf_pki.ctx.keyring.get("file:officials-ca-1")
    key = SigningKey(signer, pdf_pki.officials, (pdf_pki.root,))
    with pytest.raises(CertificateNotForSigning, match="CA certificate"):
        sign_pdf(one_page, key, B_B, services)


def test_certificate_for_another_key(official, services, one_page) -> None:
    other = SoftwareSigner("test:other", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(CertificateKeyMismatch, match="is not for the key"):
        sign_pdf(one_page, SigningKey(other, official.certificate, official.chain), B_B,
                 services)


def test_unknown_status_is_refused(pdf_pki: PdfPki, official, one_page) -> None:
    # the certificate's OCSP URL is the PKI's, answered by a responder that is down
    silent = pdf_pki.services(status=OcspStatusSource(WsgiTransport(
        pdf_pki.base_url, lambda environ, start: (start("503 Unavailable", []), [b""])[1],
        fallback=None)))
    with pytest.raises(RevocationUnknown, match=r"could not be established .*HTTP 503"):
        sign_pdf(one_page, official, B_B, silent)
    unchecked = SigningServices(status=None)
    with pytest.raises(RevocationUnknown, match="no way to check"):
        sign_pdf(one_page, official, B_B, unchecked)


@pytest.mark.parametrize(("data", "error", "message"), [
    (b"", EmptyPdf, "is empty"),
    (b"PK\x03\x04 a zip file, not a paper", NotAPdf, "not a PDF"),
    (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer <<>>\n%%EOF", CorruptPdf,
     "damaged"),
], ids=["zero-bytes", "not-a-pdf", "corrupt"])
def test_bad_input_documents(official, services, data: bytes, error: type,
                             message: str) -> None:
    with pytest.raises(error, match=message):
        sign_pdf(data, official, B_B, services)


def test_truncated_pdf(official, services, one_page) -> None:
    with pytest.raises(CorruptPdf):
        sign_pdf(one_page[: len(one_page) // 2], official, B_B, services)


def test_encrypted_without_password(official, services) -> None:
    with pytest.raises(EncryptedPdf, match="GOVPKI_PDF_PASSWORD"):
        sign_pdf(make_encrypted_pdf("x"), official, B_B, services)


def test_over_the_size_limit(pdf_pki: PdfPki, official, one_page) -> None:
    small = pdf_pki.services(limits=PdfLimits(max_bytes=1000))
    with pytest.raises(PdfTooLarge, match="over the limit"):
        sign_pdf(one_page, official, B_B, small)
    few_pages = pdf_pki.services(limits=PdfLimits(max_pages=2))
    with pytest.raises(PdfTooLarge, match="pages"):
        sign_pdf(make_pdf(3), official, B_B, few_pages)
