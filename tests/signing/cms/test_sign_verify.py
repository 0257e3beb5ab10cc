"""sign_cms / verify_cms: what a signature carries, what verification reports, and every
refusal as a typed error (never a stack trace)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signing.cms import (
    CmsVerification,
    RevocationStatus,
    parse_signed_data,
    sign_cms,
    verify_cms,
)
from signing.cms_errors import (
    CertificateKeyMismatch,
    CertificateNotUsable,
    CmsError,
    ContentMissing,
    EmptyContent,
    InputTooLarge,
    InvalidCertificate,
    MalformedCms,
    UnsupportedAlgorithm,
)
from tests.signing.cms.conftest import CmsPki
from tests.signing.cms.helpers import openssl_verify


def test_signed_attributes_and_structure(cms_pki: CmsPki, document: Path) -> None:
    when = dt.datetime(2025, 3, 1, 8, 0, 5, 250000, tzinfo=dt.UTC)
    cert = cms_pki.ec.certificate
    signature = sign_cms(document, cms_pki.ec.signer, cert, cms_pki.chain,
                         signing_time=max(when, cert.not_valid_before_utc + dt.timedelta(1)))
    info = cms.ContentInfo.load(signature)
    sd = info["content"]
    assert sd["version"].native == "v1"
    assert sd["encap_content_info"]["content"].native is None  # detached
    # The signer and the issuing CA, as a SET (DER order), so a verifier needs only the root.
    assert sorted(c.chosen.subject.native["common_name"] for c in sd["certificates"]) == \
        sorted(["张三", cms_pki.chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
                .value])
    si = sd["signer_infos"][0]
    assert si["sid"].name == "issuer_and_serial_number"
    assert si["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"
    attrs = {a["type"].native: a["values"] for a in si["signed_attrs"]}
    assert set(attrs) == {"content_type", "signing_time", "message_digest",
                          "signing_certificate_v2"}
    assert attrs["content_type"][0].native == "data"
    assert attrs["message_digest"][0].native == hashlib.sha256(document.read_bytes()).digest()
    assert attrs["signing_time"][0].name == "utc_time"  # RFC 5652 §11.3 for 1950-2049
    ess = attrs["signing_certificate_v2"][0]["certs"][0]
    der = cert.public_bytes(serialization.Encoding.DER)
    assert ess["cert_hash"].native == hashlib.sha256(der).digest()
    assert ess["issuer_serial"]["serial_number"].native == cert.serial_number
    # SHA-256 is ESSCertIDv2's DEFAULT: DER omits it.
    assert b"\x30\x0b\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01" not in ess.dump()


def test_signing_time_after_2049_is_generalized_time(cms_pki: CmsPki) -> None:
    from signing.cms import _cms_time

    assert _cms_time(dt.datetime(2050, 1, 1, tzinfo=dt.UTC)).name == "generalized_time"
    assert _cms_time(dt.datetime(2049, 12, 31, 23, 59, tzinfo=dt.UTC)).name == "utc_time"


def test_verification_report(cms_pki: CmsPki, document: Path) -> None:
    signature = sign_cms(document, cms_pki.rsa.signer, cms_pki.rsa.certificate, cms_pki.chain,
                         detached=False, digest="sha384")
    verdict = verify_cms(signature, trust_roots=cms_pki.root_pem.read_bytes())
    assert verdict.valid and verdict.reasons == ()
    assert verdict.integrity and verdict.chain_valid
    assert verdict.content == document.read_bytes()
    signer = verdict.signer
    assert signer is not None
    assert signer.certificate == cms_pki.rsa.certificate
    assert signer.digest_algorithm == "sha384"
    assert signer.signature_algorithm == "rsa"
    assert signer.chain == (cms_pki.rsa.certificate, *cms_pki.chain, cms_pki.root)
    assert signer.revocation is RevocationStatus.NOT_CHECKED
    assert verdict.signing_time is not None
    assert abs(verdict.signing_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert verdict.timestamp_time is None
    report = json.loads(json.dumps(verdict.as_dict(), ensure_ascii=False))
    assert report["signers"][0]["subject"].startswith("CN=张三")
    assert report["signers"][0]["chain"][-1] == cms_pki.root.subject.rfc4514_string()


def test_large_file_is_streamed(cms_pki: CmsPki, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        for i in range(5):
            fh.write(bytes([i]) * (1024**2 + 17))
    signature = sign_cms(big, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain)
    assert len(signature) < 8192  # detached: the content is not in it
    sig = tmp_path / "big.p7s"
    sig.write_bytes(signature)
    result = openssl_verify(sig, cms_pki.root_pem, big)
    assert result.returncode == 0, result.stderr.decode()
    assert verify_cms(signature, big, trust_roots=cms_pki.root).valid


def test_signature_over_other_data(cms_pki: CmsPki, document: Path) -> None:
    signature = sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain)
    verdict = verify_cms(signature, b"another document", trust_roots=cms_pki.root)
    assert not verdict.valid and not verdict.integrity
    assert verdict.chain_valid  # the signer is fine; the data are not what was signed
    assert any("message digest differs" in r for r in verdict.reasons)


def test_untrusted_root(cms_pki: CmsPki, document: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "另一个根CA")])
    now = dt.datetime.now(dt.UTC)
    other_root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                  .public_key(key.public_key()).serial_number(7)
                  .not_valid_before(now - dt.timedelta(days=1))
                  .not_valid_after(now + dt.timedelta(days=1))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                  .sign(key, hashes.SHA256()))
    signature = sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain)
    verdict = verify_cms(signature, document, trust_roots=other_root)
    assert not verdict.valid and verdict.integrity and not verdict.chain_valid
    assert any("does not chain to a trust root" in r for r in verdict.reasons)


def test_validation_time_outside_the_certificate(cms_pki: CmsPki, document: Path) -> None:
    signature = sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain)
    later = cms_pki.ec.certificate.not_valid_after_utc + dt.timedelta(days=1)
    verdict = verify_cms(signature, document, trust_roots=cms_pki.root, at=later)
    assert not verdict.valid and verdict.integrity
    assert any("expired" in r for r in verdict.reasons)


def test_swapped_signer_certificate_is_caught_by_ess(cms_pki: CmsPki, document: Path) -> None:
    """RFC 5035: a second certificate for the same key, put in as the signer's, must not pass.
    sid and certificates are unsigned; signingCertificateV2 is signed."""
    twin = cms_pki.issue("twin", "official-signing", "ec-p256", key=cms_pki.ec.key)
    signature = sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain)
    info = cms.ContentInfo.load(signature)
    sd = info["content"]
    si = sd["signer_infos"][0]
    twin_asn1 = cms.CertificateChoices({"certificate": __import__(
        "asn1crypto.x509", fromlist=["Certificate"]).Certificate.load(
        twin.certificate.public_bytes(serialization.Encoding.DER))})
    si["sid"] = cms.SignerIdentifier({"issuer_and_serial_number": {
        "issuer": twin_asn1.chosen.issuer, "serial_number": twin_asn1.chosen.serial_number}})
    sd["certificates"] = [twin_asn1, *list(sd["certificates"])[1:]]
    forged = info.dump(force=True)
    verdict = verify_cms(forged, document, trust_roots=cms_pki.root)
    assert verdict.signer_certificate == twin.certificate
    assert verdict.integrity  # the signature itself verifies: same key
    assert not verdict.valid
    assert any("signing-certificate attribute names another certificate" in r
               for r in verdict.reasons)


def test_detached_signature_needs_its_data(cms_pki: CmsPki, document: Path) -> None:
    signature = sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain)
    with pytest.raises(ContentMissing):
        verify_cms(signature, trust_roots=cms_pki.root)


@pytest.mark.parametrize("garbage", [
    pytest.param(b"hello, not CMS", id="text"),
    pytest.param(b"\x30\x03\x02\x01\x01", id="der-integer-sequence"),
    pytest.param(b"\x30\x82\xff\xff" + b"\x00" * 40, id="truncated"),
    pytest.param(b"-----BEGIN CMS-----\n!!!!\n-----END CMS-----\n", id="pem-not-base64"),
])
def test_garbage_is_malformed(cms_pki: CmsPki, garbage: bytes) -> None:
    with pytest.raises(MalformedCms) as caught:
        verify_cms(garbage, b"data", trust_roots=cms_pki.root)
    assert caught.value.kind == "cms-malformed" and caught.value.http_status == 400


def test_other_der_is_malformed(cms_pki: CmsPki, document: Path) -> None:
    certificate = cms_pki.ec.certificate.public_bytes(serialization.Encoding.DER)
    with pytest.raises(MalformedCms):
        verify_cms(certificate, document, trust_roots=cms_pki.root)
    signature = sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain)
    with pytest.raises(MalformedCms):
        verify_cms(signature + b"\x00", document, trust_roots=cms_pki.root)
    from signing.cms_envelope import encrypt_cms

    envelope = encrypt_cms(b"x", [cms_pki.org.certificate])
    with pytest.raises(MalformedCms, match="content type is enveloped_data"):
        verify_cms(envelope, document, trust_roots=cms_pki.root)


def test_empty_inputs(cms_pki: CmsPki, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(EmptyContent, match=r"empty\.txt is empty"):
        sign_cms(empty, cms_pki.ec.signer, cms_pki.ec.certificate)
    with pytest.raises(EmptyContent):
        sign_cms(b"", cms_pki.ec.signer, cms_pki.ec.certificate)
    with pytest.raises(EmptyContent):
        verify_cms(b"", b"data", trust_roots=cms_pki.root)
    assert not empty.with_suffix(".p7s").exists()


def test_oversized_inputs(cms_pki: CmsPki, document: Path) -> None:
    with pytest.raises(InputTooLarge, match="over the limit of 100 bytes") as caught:
        sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, max_bytes=100)
    assert caught.value.http_status == 413
    with pytest.raises(InputTooLarge):
        sign_cms(document.read_bytes(), cms_pki.ec.signer, cms_pki.ec.certificate,
                 detached=False, max_bytes=100)
    signature = sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate)
    with pytest.raises(InputTooLarge):
        verify_cms(signature, document, trust_roots=cms_pki.root, max_bytes=100)


def test_wrong_key_for_the_certificate(cms_pki: CmsPki, document: Path) -> None:
    with pytest.raises(CertificateKeyMismatch, match="does not belong to the certificate"):
        sign_cms(document, cms_pki.rsa.signer, cms_pki.ec.certificate)


def test_certificate_not_for_signing(cms_pki: CmsPki, document: Path) -> None:
    with pytest.raises(CertificateNotUsable, match="not meant for signing"):
        sign_cms(document, cms_pki.org.signer, cms_pki.org.certificate)


def test_expired_certificate(cms_pki: CmsPki, document: Path) -> None:
    after = cms_pki.ec.certificate.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(CertificateNotUsable, match="is valid from"):
        sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, signing_time=after)


@pytest.mark.parametrize("digest", ["sha1", "md5", "sm3"])
def test_weak_or_unknown_digest(cms_pki: CmsPki, document: Path, digest: str) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, digest=digest)


def test_argument_errors(cms_pki: CmsPki, document: Path) -> None:
    with pytest.raises(TypeError, match=r"pathlib\.Path"):
        sign_cms(str(document), cms_pki.ec.signer, cms_pki.ec.certificate)  # type: ignore[arg-type]
    with pytest.raises(InvalidCertificate):
        sign_cms(document, cms_pki.ec.signer, b"not a certificate")
    with pytest.raises(InvalidCertificate, match="no trust roots"):
        verify_cms(b"x", b"y", trust_roots=[])
    with pytest.raises(TypeError, match="timezone-aware"):
        sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate,
                 signing_time=dt.datetime(2025, 1, 1))  # noqa: DTZ001
    duplicate = cms.CMSAttribute({"type": "signing_time",
                                  "values": [cms.Time({"utc_time": dt.datetime.now(dt.UTC)})]})
    with pytest.raises(ValueError, match="must not repeat"):
        sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate,
                 signed_attributes=[duplicate])


def test_errors_are_govpki_errors() -> None:
    from core.errors import GovpkiError

    assert issubclass(CmsError, GovpkiError)
    for cls in (MalformedCms, EmptyContent, InputTooLarge, ContentMissing,
                UnsupportedAlgorithm, CertificateKeyMismatch, CertificateNotUsable):
        assert issubclass(cls, CmsError) and cls.kind.startswith("cms-")


def test_parse_signed_data_exposes_raw_fields(cms_pki: CmsPki, document: Path) -> None:
    signature = sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain,
                         detached=False)
    parsed = parse_signed_data(signature)
    assert parsed.content == document.read_bytes()
    assert len(parsed.signer_infos) == 1
    si = parsed.signer_infos[0]
    assert si.digest_name == "sha256" and si.signed_attrs_der is not None
    assert si.signed_attrs_der[0] == 0x31  # the SET OF the signature covers


def test_as_dict_of_an_unknown_signer(cms_pki: CmsPki, document: Path) -> None:
    """A signature whose certificates were stripped: reported, not a crash."""
    signature = sign_cms(document, cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain)
    info = cms.ContentInfo.load(signature)
    del info["content"]["certificates"]
    stripped = info.dump(force=True)
    verdict = verify_cms(stripped, document, trust_roots=cms_pki.root)
    assert isinstance(verdict, CmsVerification) and not verdict.valid
    assert "the signer's certificate is not in the signature" in verdict.reasons[0]
    verdict = verify_cms(stripped, document, trust_roots=cms_pki.root,
                         other_certificates=[cms_pki.ec.certificate, *cms_pki.chain])
    assert verdict.valid, verdict.reasons
    assert verdict.as_dict()["signers"][0]["valid"] is True


def test_ess_v2_hash_is_checked_against_sha256(cms_pki: CmsPki) -> None:
    """The helper that builds the attribute caches per certificate; the value is the RFC 5035
    ESSCertIDv2 and round-trips through asn1crypto's own class."""
    from signing.cms import _Cert, _ess_signing_certificate_v2

    der = cms_pki.rsa.certificate.public_bytes(serialization.Encoding.DER)
    attr = _ess_signing_certificate_v2(_Cert.from_der(der))
    value = tsp.SigningCertificateV2.load(attr["values"][0].dump())
    assert value["certs"][0]["cert_hash"].native == hashlib.sha256(der).digest()
