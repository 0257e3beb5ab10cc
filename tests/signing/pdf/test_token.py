"""Signing with an official's USB key (SoftHSM2): pyHanko's key operations go through govpki's
signer and the process-wide PKCS#11 lock, never through a PKCS#11 stack of pyHanko's own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hsm import pkcs11_store
from hsm.pkcs11_lock import PKCS11_LOCK
from signing.appearance import RoundSeal
from signing.pades import Level, PadesOptions, sign_pdf
from signing.pdf_verify import VerifyOptions, verify_pdf
from tests.signing.pdf.conftest import PdfPki
from tests.signing.pdf.helpers import have, pdfsig

pytestmark = pytest.mark.hsm


def test_token_signature_goes_through_govpki_signer_in_the_lock(
        pdf_pki: PdfPki, usb_key, services, one_page, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    original = pkcs11_store.Pkcs11Signer._sign_digest

    def spy(self: pkcs11_store.Pkcs11Signer, digest: bytes, hash_algorithm: object) -> bytes:
        calls.append(digest)
        return original(self, digest, hash_algorithm)  # type: ignore[arg-type]

    monkeypatch.setattr(pkcs11_store.Pkcs11Signer, "_sign_digest", spy)
    signed = sign_pdf(one_page, usb_key.key, PadesOptions(level=Level.B_LT), services)
    assert len(calls) == 1  # one signature on the token; the size estimate never signs
    assert "pyhanko.sign.pkcs11" not in sys.modules
    report = verify_pdf(signed, VerifyOptions(trust_roots=[pdf_pki.root]))
    assert report.valid, report.as_dict()
    assert report.signatures[0].signer_name == "王五"


def test_sign_digest_holds_the_process_lock(usb_key, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever pyHanko calls ends in the token call with PKCS11_LOCK held."""
    from cryptography.hazmat.primitives import hashes

    held: list[bool] = []
    signer = usb_key.key.signer
    key_obj = signer._key  # python-pkcs11 private key object

    class Probe:
        def sign(self, data: bytes, **kw: object) -> bytes:
            held.append(PKCS11_LOCK._is_owned())  # type: ignore[attr-defined]
            return key_obj.sign(data, **kw)

        def __getattr__(self, name: str) -> object:
            return getattr(key_obj, name)

    monkeypatch.setattr(signer, "_key", Probe())
    signer.sign(b"data", hashes.SHA256())
    assert held == [True]


@pytest.mark.skipif(not (have("pdfsig") and have("certutil")), reason="poppler-utils missing")
@pytest.mark.parametrize("level", [Level.B_B, Level.B_T, Level.B_LT])
def test_pdfsig_trusts_token_signatures(pdf_pki: PdfPki, usb_key, seal_key, services,
                                        one_page, tmp_path: Path, level: Level) -> None:
    """Token-signed alone, then the department seal after it: both valid and trusted."""
    signed = sign_pdf(one_page, usb_key.key, PadesOptions(
        level=level, appearance=RoundSeal("厅领导签发")), services)
    sealed = sign_pdf(signed, seal_key, PadesOptions(
        level=level, appearance=RoundSeal("青海省人民政府办公厅")), services)
    path = tmp_path / "token.pdf"
    path.write_bytes(sealed)
    found = pdfsig(path, pdf_pki.nssdir)
    assert len(found) == 2 and all(s.valid and s.trusted for s in found), found
