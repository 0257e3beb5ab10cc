"""EnvelopedData / AuthEnvelopedData: `openssl cms -decrypt` decrypts ours with the recipient's
key, decrypt_cms decrypts `openssl cms -encrypt` output, and every failure is a typed error
that does not say which step failed."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import cms

from signing.cms_envelope import decrypt_cms, encrypt_cms, recipients_of
from signing.cms_errors import (
    CertificateNotUsable,
    DecryptionFailed,
    EmptyContent,
    InputTooLarge,
    InvalidCertificate,
    MalformedCms,
    NotARecipient,
    UnsupportedAlgorithm,
)
from tests.signing.cms.conftest import CmsPki, HsmRecipient
from tests.signing.cms.helpers import flip, openssl

SECRET = "（内部）关于2025年度预算调整的通知\n".encode() * 300 + bytes(range(256))


@pytest.mark.parametrize("key_transport", ["rsaes-oaep", "rsaes-pkcs1v15"])
@pytest.mark.parametrize("content_encryption", ["aes256-cbc", "aes256-gcm"])
def test_openssl_decrypts_ours(cms_pki: CmsPki, tmp_path: Path, key_transport: str,
                               content_encryption: str) -> None:
    envelope = encrypt_cms(SECRET, [cms_pki.org2.certificate, cms_pki.org.certificate],
                           key_transport=key_transport,  # type: ignore[arg-type]
                           content_encryption=content_encryption)  # type: ignore[arg-type]
    path = tmp_path / "env.der"
    path.write_bytes(envelope)
    for party in (cms_pki.org, cms_pki.org2):
        result = openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", path,
                         "-recip", party.cert_pem, "-inkey", party.plain_key_pem)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == SECRET
        assert decrypt_cms(envelope, party.signer, party.certificate) == SECRET
    expected = "enveloped_data" if content_encryption == "aes256-cbc" \
        else "authenticated_enveloped_data"
    assert cms.ContentInfo.load(envelope)["content_type"].native == expected


@pytest.mark.parametrize("cipher", ["-aes256", "-aes-256-gcm", "-aes128"])
@pytest.mark.parametrize("oaep", [False, True], ids=["pkcs1v15", "oaep-sha256"])
def test_we_decrypt_openssl(cms_pki: CmsPki, tmp_path: Path, cipher: str, oaep: bool) -> None:
    plain = tmp_path / "plain.bin"
    plain.write_bytes(SECRET)
    out = tmp_path / "openssl-env.der"
    argv: list[str | Path] = ["cms", "-encrypt", "-binary", "-in", plain, "-outform", "DER",
                              "-out", out, cipher, "-recip", cms_pki.org.cert_pem]
    if oaep:
        argv += ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"]
    made = openssl(*argv)
    assert made.returncode == 0, made.stderr.decode()
    envelope = out.read_bytes()
    assert decrypt_cms(envelope, cms_pki.org.signer, cms_pki.org.certificate) == SECRET
    assert decrypt_cms(envelope, cms_pki.org.signer) == SECRET  # tries every entry
    (recipient,) = recipients_of(envelope)
    assert recipient.matches(cms_pki.org.certificate)


@pytest.mark.hsm
def test_hsm_held_organisation_key_decrypts(cms_pki: CmsPki,
                                            hsm_recipient: HsmRecipient) -> None:
    """The exchange's case: the organisation key stays in the server HSM (SoftHSM2) and
    decrypts through the hsm Signer (CKM_RSA_PKCS_OAEP, or raw RSA + OAEP decoding)."""
    for key_transport in ("rsaes-oaep", "rsaes-pkcs1v15"):
        envelope = encrypt_cms(SECRET, [hsm_recipient.certificate, cms_pki.org.certificate],
                               key_transport=key_transport)
        assert decrypt_cms(envelope, hsm_recipient.signer,
                           hsm_recipient.certificate) == SECRET


def test_not_a_recipient(cms_pki: CmsPki) -> None:
    envelope = encrypt_cms(SECRET, [cms_pki.org.certificate])
    with pytest.raises(NotARecipient, match="not addressed to") as caught:
        decrypt_cms(envelope, cms_pki.org2.signer, cms_pki.org2.certificate)
    assert caught.value.http_status == 403
    with pytest.raises(NotARecipient, match="does not belong"):
        decrypt_cms(envelope, cms_pki.org2.signer, cms_pki.org.certificate)


def test_wrong_key_without_certificate_fails_uniformly(cms_pki: CmsPki) -> None:
    """AES-GCM content: with PKCS#1 v1.5 a wrong key unwraps to a random CEK (implicit
    rejection, no error), and under CBC that random key yields valid padding about once in 256
    tries (garbage, no error: one CI run hit it); a GCM tag fails every time."""
    messages = set()
    for key_transport in ("rsaes-oaep", "rsaes-pkcs1v15"):
        envelope = encrypt_cms(SECRET, [cms_pki.org.certificate],
                               key_transport=key_transport, content_encryption="aes256-gcm")
        with pytest.raises(DecryptionFailed) as caught:
            decrypt_cms(envelope, cms_pki.org2.signer)
        messages.add(caught.value.message)
    assert len(messages) == 1


@pytest.mark.parametrize("content_encryption", ["aes256-cbc", "aes256-gcm"])
def test_tampered_ciphertext(cms_pki: CmsPki, content_encryption: str) -> None:
    envelope = encrypt_cms(SECRET, [cms_pki.org.certificate],
                           content_encryption=content_encryption)  # type: ignore[arg-type]
    tampered = flip(envelope, len(envelope) - 40)  # in the last ciphertext blocks / the tag
    if content_encryption == "aes256-gcm":
        with pytest.raises(DecryptionFailed):
            decrypt_cms(tampered, cms_pki.org.signer, cms_pki.org.certificate)
    else:
        # CBC has no integrity of its own: garbage or a padding failure. This is why the
        # exchange signs inside the envelope and verifies after decrypting.
        try:
            plaintext = decrypt_cms(tampered, cms_pki.org.signer, cms_pki.org.certificate)
        except DecryptionFailed:
            return
        assert plaintext != SECRET


def test_tampered_wrapped_key(cms_pki: CmsPki) -> None:
    envelope = encrypt_cms(SECRET, [cms_pki.org.certificate], key_transport="rsaes-pkcs1v15")
    ktri = cms.ContentInfo.load(envelope)["content"]["recipient_infos"][0].chosen
    wrapped = ktri["encrypted_key"].native
    at = envelope.index(wrapped) + 10
    with pytest.raises(DecryptionFailed):
        decrypt_cms(flip(envelope, at), cms_pki.org.signer, cms_pki.org.certificate)


def test_recipient_refusals(cms_pki: CmsPki) -> None:
    with pytest.raises(UnsupportedAlgorithm, match="RSA encryption certificates only"):
        encrypt_cms(SECRET, [cms_pki.ec.certificate])
    with pytest.raises(CertificateNotUsable, match="no keyEncipherment"):
        encrypt_cms(SECRET, [cms_pki.rsa.certificate])  # a signing certificate
    with pytest.raises(InvalidCertificate):
        encrypt_cms(SECRET, [])
    with pytest.raises(InvalidCertificate):
        encrypt_cms(SECRET, [b"not a certificate"])


def test_input_refusals(cms_pki: CmsPki, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EmptyContent):
        encrypt_cms(b"", [cms_pki.org.certificate])
    with pytest.raises(TypeError):
        encrypt_cms("text", [cms_pki.org.certificate])  # type: ignore[arg-type]
    with pytest.raises(UnsupportedAlgorithm):
        encrypt_cms(SECRET, [cms_pki.org.certificate],
                    content_encryption="des-ede3-cbc")  # type: ignore[arg-type]
    with pytest.raises(MalformedCms):
        decrypt_cms(b"garbage", cms_pki.org.signer)
    with pytest.raises(EmptyContent):
        decrypt_cms(b"", cms_pki.org.signer)
    signed_not_enveloped = bytes.fromhex("3011060b2a864886f70d0109100102a0020500")
    with pytest.raises(MalformedCms):
        decrypt_cms(signed_not_enveloped, cms_pki.org.signer)
    monkeypatch.setattr("signing.cms_envelope.MAX_PLAINTEXT_BYTES", 10)
    with pytest.raises(InputTooLarge):
        encrypt_cms(SECRET, [cms_pki.org.certificate])
