"""`openssl cms -verify` accepts govpki's CMS signatures; a changed byte fails; signatures
made by openssl verify with verify_cms. EC P-256 and RSA keys, file keys and a SoftHSM2 USB key,
detached and attached."""

from __future__ import annotations

from pathlib import Path

import pytest

from signing.cms import sign_cms, verify_cms
from tests.signing.cms.conftest import TOKEN_PIN, CmsPki, Party, UsbSigner
from tests.signing.cms.helpers import flip, openssl, openssl_verify


def party(cms_pki: CmsPki, kind: str) -> Party:
    return cms_pki.ec if kind == "ec" else cms_pki.rsa


@pytest.mark.parametrize("kind", ["ec", "rsa"])
@pytest.mark.parametrize("detached", [True, False], ids=["detached", "attached"])
def test_openssl_accepts_ours_and_rejects_a_changed_byte(cms_pki: CmsPki, document: Path,
                                                         tmp_path: Path, kind: str,
                                                         detached: bool) -> None:
    who = party(cms_pki, kind)
    signature = sign_cms(document, who.signer, who.certificate, cms_pki.chain,
                         detached=detached)
    sig = tmp_path / "doc.p7s"
    sig.write_bytes(signature)
    out = tmp_path / "out"
    result = openssl_verify(sig, cms_pki.root_pem, document if detached else None, out=out)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Verification successful" in result.stderr
    assert out.read_bytes() == document.read_bytes()
    # Without -purpose any: the smimesign purpose holds too (emailProtection in the profile).
    default = openssl_verify(sig, cms_pki.root_pem, document if detached else None,
                             purpose=None)
    assert default.returncode == 0, default.stderr.decode()

    changed = tmp_path / "changed.txt"
    data = document.read_bytes()
    if detached:
        changed.write_bytes(flip(data, len(data) // 2))
        bad = openssl_verify(sig, cms_pki.root_pem, changed)
        assert verify_cms(signature, changed, trust_roots=cms_pki.root).valid is False
    else:
        at = signature.index(data[:64]) + 100  # a byte of the encapsulated content
        tampered = tmp_path / "tampered.p7s"
        tampered.write_bytes(flip(signature, at))
        bad = openssl_verify(tampered, cms_pki.root_pem)
        assert verify_cms(tampered.read_bytes(), trust_roots=cms_pki.root).valid is False
    assert bad.returncode != 0
    assert b"digest failure" in bad.stderr.lower() or b"failure" in bad.stderr.lower()


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "attached"])
@pytest.mark.hsm
def test_usb_key_signature_is_accepted_by_openssl(cms_pki: CmsPki, usb_signer: UsbSigner,
                                                  document: Path, tmp_path: Path,
                                                  detached: bool) -> None:
    """The official's USB key (SoftHSM2: software SHA-256, raw CKM_ECDSA, DER-encoded)."""
    from hsm.token import open_token

    with open_token(usb_signer.module, usb_signer.label, TOKEN_PIN) as usb:
        signer = usb.signer(usb.find_key(usb_signer.key_uri))
        signature = sign_cms(document, signer, usb_signer.certificate, cms_pki.chain,
                             detached=detached)
    sig = tmp_path / "usb.p7s"
    sig.write_bytes(signature)
    result = openssl_verify(sig, cms_pki.root_pem, document if detached else None)
    assert result.returncode == 0, result.stderr.decode()
    verdict = verify_cms(signature, document if detached else None, trust_roots=cms_pki.root)
    assert verdict.valid, verdict.reasons
    assert verdict.signer_certificate == usb_signer.certificate


class RawEcdsaSigner:
    """A token driver that breaks the Signer contract by returning raw r||s (DESIGN.md,
    Pitfalls): sign_cms must still produce a DER ECDSA-Sig-Value."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def sign(self, data: bytes, hash_algorithm: object) -> bytes:
        return self._inner.sign_raw(data, hash_algorithm)  # type: ignore[attr-defined]


def test_raw_r_s_from_a_token_is_der_encoded(cms_pki: CmsPki, document: Path,
                                             tmp_path: Path) -> None:
    signer = RawEcdsaSigner(cms_pki.ec.signer)
    assert len(signer.sign(b"x", __import__("cryptography.hazmat.primitives.hashes",
                                            fromlist=["SHA256"]).SHA256())) == 64
    signature = sign_cms(document, signer, cms_pki.ec.certificate,  # type: ignore[arg-type]
                         cms_pki.chain)
    sig = tmp_path / "raw.p7s"
    sig.write_bytes(signature)
    result = openssl_verify(sig, cms_pki.root_pem, document)
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize(("kind", "mode"), [
    (kind, mode) for kind in ("ec", "rsa") for mode in ("detached", "attached", "noattr")
] + [("rsa", "pss"), ("ec", "stream")])
def test_openssl_signatures_verify_with_verify_cms(cms_pki: CmsPki, document: Path,
                                                   tmp_path: Path, kind: str,
                                                   mode: str) -> None:
    who = party(cms_pki, kind)
    sig = tmp_path / "openssl.p7s"
    argv: list[str | Path] = ["cms", "-sign", "-binary", "-in", document, "-signer",
                              who.cert_pem, "-inkey", who.plain_key_pem, "-certfile",
                              cms_pki.chain_pem, "-outform", "DER", "-out", sig, "-md", "sha256"]
    if mode in ("attached", "stream"):
        argv.append("-nodetach")
    if mode == "stream":
        argv.append("-stream")  # BER: indefinite lengths, the content in chunks
    if mode == "noattr":
        argv.append("-noattr")
    if mode == "pss":
        argv += ["-keyopt", "rsa_padding_mode:pss"]
    made = openssl(*argv)
    assert made.returncode == 0, made.stderr.decode()
    signature = sig.read_bytes()
    attached = mode in ("attached", "stream")
    if mode == "stream":
        assert signature[1] == 0x80  # indefinite length: really BER
    verdict = verify_cms(signature, None if attached else document,
                         trust_roots=[cms_pki.root_pem.read_bytes()])
    assert verdict.valid, verdict.reasons
    assert verdict.signer_certificate == who.certificate
    assert verdict.detached is not attached
    if mode != "noattr":
        assert verdict.signing_time is not None
    other = tmp_path / "other.txt"
    other.write_bytes(document.read_bytes() + b".")
    if attached:
        assert verdict.content == document.read_bytes()
        assert not verify_cms(signature, other, trust_roots=cms_pki.root).valid
    else:
        changed = verify_cms(signature, other, trust_roots=cms_pki.root)
        assert not changed.valid and not changed.integrity


def test_openssl_pem_output_verifies(cms_pki: CmsPki, document: Path, tmp_path: Path) -> None:
    sig = tmp_path / "openssl.pem"
    made = openssl("cms", "-sign", "-binary", "-in", document, "-signer", cms_pki.ec.cert_pem,
                   "-inkey", cms_pki.ec.plain_key_pem, "-outform", "PEM", "-out", sig,
                   "-certfile", cms_pki.chain_pem)
    assert made.returncode == 0, made.stderr.decode()
    assert verify_cms(sig.read_bytes(), document, trust_roots=cms_pki.root).valid
