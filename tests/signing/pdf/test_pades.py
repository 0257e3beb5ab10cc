"""PAdES signing checked by independent validators: poppler's pdfsig (NSS, our root only) for
B-B, B-T and B-LT, visible and invisible, single and multiple signatures; pyHanko's AdES LTA
validation, offline, for B-LTA; govpki's own verifier beside both."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from signing import pades
from signing.appearance import FieldPlacement, PagePlacement, RoundSeal
from signing.pades import Level, PadesOptions, SigningServices, sign_pdf
from signing.pdf_errors import DocumentLocked, EncryptedPdf, FieldError, TimestampFailed
from signing.pdf_verify import VerifyOptions, _has_signature_ts, verify_pdf
from tests.signing.pdf.conftest import REVIEWER_DN, PdfPki
from tests.signing.pdf.helpers import (
    have,
    make_encrypted_pdf,
    make_pdf_with_field,
    pdfsig,
    pyhanko_verdicts,
)

needs_pdfsig = pytest.mark.skipif(not (have("pdfsig") and have("certutil")),
                                  reason="poppler-utils / libnss3-tools not installed")


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _offline(pdf_pki: PdfPki) -> VerifyOptions:
    return VerifyOptions(trust_roots=[pdf_pki.root])


@needs_pdfsig
@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT"])
@pytest.mark.parametrize("visible", [False, True], ids=["invisible", "visible"])
def test_pdfsig_trusts_each_level(pdf_pki: PdfPki, official, services, one_page,
                                  tmp_path: Path, level: str, visible: bool) -> None:
    options = PadesOptions(level=Level(level), reason="同意",
                           appearance=RoundSeal("青海省人民政府办公厅") if visible else None)
    signed = sign_pdf(one_page, official, options, services)
    found = pdfsig(_write(tmp_path, "signed.pdf", signed), pdf_pki.nssdir)
    assert len(found) == 1, found
    assert found[0].valid and found[0].trusted, found[0].text
    assert "ETSI.CAdES.detached" in found[0].text
    report = verify_pdf(signed, VerifyOptions(trust_roots=[pdf_pki.root],
                                              fetcher=services.fetcher))
    assert report.valid, report.as_dict()
    assert report.signatures[0].level == level


def test_levels_structure(pdf_pki: PdfPki, official, services, one_page) -> None:
    """B-T carries a signature time-stamp from govpki's TSA; B-LT a DSS with the chain, OCSP
    responses and CRLs; B-LTA a document time-stamp after it."""
    for level in Level:
        signed = sign_pdf(one_page, official, PadesOptions(level=level), services)
        reader = PdfFileReader(io.BytesIO(signed))
        sigs = list(reader.embedded_signatures)
        regular = [s for s in sigs if s.sig_object_type == "/Sig"]
        assert len(regular) == 1
        has_ts = _has_signature_ts(regular[0])
        assert has_ts == (level is not Level.B_B)
        dss = reader.root["/DSS"] if "/DSS" in reader.root else None
        if level.long_term:
            assert dss is not None and len(dss["/OCSPs"]) >= 1 and len(dss["/CRLs"]) >= 1
            assert len(dss["/Certs"]) >= 3
        else:
            assert dss is None
        doc_ts = [s for s in sigs if s.sig_object_type == "/DocTimeStamp"]
        assert len(doc_ts) == (1 if level is Level.B_LTA else 0)
        assert regular[0].signer_info["signed_attrs"].native is not None


def test_b_lta_passes_pyhankos_lta_validation_offline(pdf_pki: PdfPki, official, services,
                                                      one_page) -> None:
    """pdfsig cannot check document time-stamps; pyHanko's AdES LTA validation can, with only
    the root trusted and nothing fetched."""
    signed = sign_pdf(one_page, official, PadesOptions(level=Level.B_LTA), services)
    verdicts = pyhanko_verdicts(signed, pdf_pki.root, lta=True)
    assert verdicts and all(passed for _f, passed, _i in verdicts), verdicts
    report = verify_pdf(signed, _offline(pdf_pki))
    assert report.valid, report.as_dict()
    assert [s.kind for s in report.signatures] == ["signature", "document-timestamp"]
    assert report.signatures[0].level == "B-LTA"


@pytest.mark.parametrize("level", [Level.B_LT, Level.B_LTA])
def test_long_term_levels_validate_offline_with_only_the_root(pdf_pki: PdfPki, official,
                                                              services, one_page,
                                                              level: Level) -> None:
    signed = sign_pdf(one_page, official, PadesOptions(level=level), services)
    report = verify_pdf(signed, _offline(pdf_pki))
    assert report.valid, report.as_dict()
    sig = report.signatures[0]
    assert sig.revocation == "good" and sig.revocation_source == "embedded"
    assert sig.signer_name == "张三" and sig.signer_organisation == "青海省人民政府办公厅"
    assert sig.timestamp_time is not None and sig.timestamp_valid
    assert sig.claimed_signing_time is not None


def test_b_b_offline_is_not_valid_for_lack_of_revocation_data(pdf_pki: PdfPki, official,
                                                              services, one_page) -> None:
    signed = sign_pdf(one_page, official, PadesOptions(level=Level.B_B), services)
    report = verify_pdf(signed, _offline(pdf_pki))
    assert not report.valid
    assert report.signatures[0].revocation == "unknown"
    assert report.signatures[0].intact
    online = verify_pdf(signed, VerifyOptions(trust_roots=[pdf_pki.root],
                                              fetcher=services.fetcher))
    assert online.valid and online.signatures[0].revocation_source == "fetched"


@needs_pdfsig
def test_four_signatures_in_sequence_then_locked(pdf_pki: PdfPki, official, seal_key, services,
                                                 three_pages, tmp_path: Path) -> None:
    """Drafter, reviewer, leader, then the department seal, each an incremental update; the
    seal locks the final version. Every earlier signature stays valid at every step."""
    reviewer = pdf_pki.file_key(subject=REVIEWER_DN)
    leader = pdf_pki.file_key()
    data = three_pages
    steps = [(official, PadesOptions(level=Level.B_LT, reason="拟稿")),
             (reviewer, PadesOptions(level=Level.B_LT, reason="审核",
                                     appearance=RoundSeal("秘书处审核"),
                                     placement=PagePlacement(-1, (72, 100, 172, 200)))),
             (leader, PadesOptions(level=Level.B_T, reason="签发")),
             (seal_key, PadesOptions(level=Level.B_LT, reason="盖章", certify=True,
                                     appearance=RoundSeal("青海省人民政府办公厅")))]
    for number, (key, options) in enumerate(steps, 1):
        data = sign_pdf(data, key, options, services)
        report = verify_pdf(data, VerifyOptions(trust_roots=[pdf_pki.root],
                                                fetcher=services.fetcher))
        assert len(report.signatures) == number
        assert report.valid, report.as_dict()
    found = pdfsig(_write(tmp_path, "four.pdf", data), pdf_pki.nssdir)
    assert len(found) == 4 and all(s.valid and s.trusted for s in found), found
    final = verify_pdf(data, VerifyOptions(trust_roots=[pdf_pki.root],
                                           fetcher=services.fetcher))
    assert final.signatures[-1].docmdp == "no-changes"
    assert [s.modification for s in final.signatures[:3]] == ["form-filling"] * 3
    with pytest.raises(DocumentLocked, match="locked the document"):
        sign_pdf(data, official, PadesOptions(level=Level.B_B), services)


def test_certification_signature_first(pdf_pki: PdfPki, official, seal_key, services,
                                       one_page) -> None:
    """A first signature with certify is a DocMDP certification; P=2 still lets approvals
    follow, P=1 refuses them."""
    certified = sign_pdf(one_page, seal_key, PadesOptions(level=Level.B_LT, certify=True,
                                                          certify_permits="signatures"),
                         services)
    approved = sign_pdf(certified, official, PadesOptions(level=Level.B_LT), services)
    report = verify_pdf(approved, _offline(pdf_pki))
    assert report.valid, report.as_dict()
    assert report.signatures[0].certification and report.signatures[0].docmdp == "fill-forms"
    locked = sign_pdf(one_page, seal_key, PadesOptions(level=Level.B_B, certify=True),
                      services)
    with pytest.raises(DocumentLocked):
        sign_pdf(locked, official, PadesOptions(level=Level.B_B), services)


def test_existing_field_is_used(pdf_pki: PdfPki, official, services) -> None:
    prepared = make_pdf_with_field("领导签发", (300, 300, 420, 420))
    signed = sign_pdf(prepared, official, PadesOptions(
        level=Level.B_T, appearance=RoundSeal("青海省人民政府办公厅"),
        placement=FieldPlacement("领导签发")), services)
    reader = PdfFileReader(io.BytesIO(signed))
    assert [s.field_name for s in reader.embedded_signatures] == ["领导签发"]
    with pytest.raises(FieldError, match="already signed"):
        sign_pdf(signed, official, PadesOptions(level=Level.B_B,
                                                placement=FieldPlacement("领导签发")), services)
    with pytest.raises(FieldError, match="no signature field"):
        sign_pdf(prepared, official, PadesOptions(level=Level.B_B,
                                                  placement=FieldPlacement("nope")), services)


def test_box_outside_page_and_missing_page(official, services, one_page) -> None:
    seal = RoundSeal("青海省人民政府办公厅")
    with pytest.raises(FieldError, match="outside page"):
        sign_pdf(one_page, official, PadesOptions(
            level=Level.B_B, appearance=seal,
            placement=PagePlacement(1, (900, 900, 1000, 1000))), services)
    with pytest.raises(FieldError, match="page 3 does not exist"):
        sign_pdf(one_page, official, PadesOptions(
            level=Level.B_B, appearance=seal, placement=PagePlacement(3)), services)


def _contents_padding(signed: bytes) -> tuple[int, int]:
    """(hex characters reserved, hex characters of zero padding) of the last /Contents."""
    match = list(re.finditer(rb"/Contents <([0-9A-Fa-f]+)>", signed))[-1]
    hex_text = match.group(1)
    padding = len(hex_text) - len(hex_text.rstrip(b"0"))
    return len(hex_text), padding


@pytest.mark.parametrize("level", [Level.B_B, Level.B_T, Level.B_LT])
def test_container_sized_to_measure(official, services, one_page, level: Level) -> None:
    """The reservation is the measured container plus SIZE_SLACK, not pyHanko's +50%."""
    signed = sign_pdf(one_page, official, PadesOptions(level=level), services)
    reader = PdfFileReader(io.BytesIO(signed))
    sig = next(iter(reader.embedded_regular_signatures))
    reserved, _padding = _contents_padding(signed[:sig.byte_range[2]])
    actual = len(sig.pkcs7_content) * 2
    assert actual <= reserved <= actual + pades.SIZE_SLACK + 16, (reserved, actual)


@pytest.mark.parametrize("level", [Level.B_T, Level.B_LTA])
def test_overflow_is_retried_with_the_exact_size(pdf_pki: PdfPki, official, services,
                                                 one_page, level: Level,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """If a container (or the document time-stamp) ever came out larger than reserved,
    signing is redone once with the size the failure reported (forced: negative slack)."""
    monkeypatch.setattr(pades, "SIZE_SLACK", -200)
    signed = sign_pdf(one_page, official, PadesOptions(level=level), services)
    reader = PdfFileReader(io.BytesIO(signed))
    assert len(list(reader.embedded_signatures)) == (2 if level is Level.B_LTA else 1)
    assert verify_pdf(signed, _offline(pdf_pki)).valid is (level is Level.B_LTA)


def test_large_chain_and_token_never_too_small(pdf_pki: PdfPki, official, services,
                                               one_page) -> None:
    """A long chain in the CMS (every CA certificate plus extra certificates) still fits."""
    from signing.pdf_signer import SigningKey

    padded = SigningKey(official.signer, official.certificate,
                        (*pdf_pki.chain, pdf_pki.devices, pdf_pki.tsa.certificate) * 6)
    signed = sign_pdf(one_page, padded, PadesOptions(level=Level.B_LT), services)
    assert verify_pdf(signed, _offline(pdf_pki)).valid


def test_fifty_page_document(pdf_pki: PdfPki, official, services, fifty_pages) -> None:
    signed = sign_pdf(fifty_pages, official, PadesOptions(level=Level.B_LT), services)
    assert signed.startswith(fifty_pages)  # an incremental update: the original is intact
    assert verify_pdf(signed, _offline(pdf_pki)).valid


def test_remote_signer_over_http(pdf_pki: PdfPki, official, one_page) -> None:
    """A signer away from the CA host: TSA, OCSP, CRLs and the status check over HTTP."""
    signed = sign_pdf(one_page, official, PadesOptions(level=Level.B_LT), pdf_pki.over_http())
    assert verify_pdf(signed, _offline(pdf_pki)).valid


def test_encrypted_document_with_password(pdf_pki: PdfPki, official, services) -> None:
    encrypted = make_encrypted_pdf("机密口令")
    with pytest.raises(EncryptedPdf, match="encrypted"):
        sign_pdf(encrypted, official, PadesOptions(level=Level.B_B), services)
    with pytest.raises(EncryptedPdf, match="does not open"):
        sign_pdf(encrypted, official, PadesOptions(level=Level.B_B), services,
                 password="wrong")
    signed = sign_pdf(encrypted, official, PadesOptions(level=Level.B_T), services,
                      password="机密口令")
    report = verify_pdf(signed, VerifyOptions(trust_roots=[pdf_pki.root],
                                              fetcher=services.fetcher, password="机密口令"))
    assert report.valid, report.as_dict()


def test_b_t_without_a_tsa_is_refused(official, services, one_page) -> None:
    no_tsa = SigningServices(timestamper=None, fetcher=services.fetcher,
                             status=services.status)
    with pytest.raises(TimestampFailed, match="no TSA"):
        sign_pdf(one_page, official, PadesOptions(level=Level.B_T), no_tsa)
