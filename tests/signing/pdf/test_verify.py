"""govpki's verifier beside pyHanko's own validation: they agree on good papers and on papers
altered after signing (bytes changed, a page added, a comment added); the verifier survives
any mutated input (hypothesis)."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils.reader import PdfFileReader

from signing.pades import Level, PadesOptions, sign_pdf
from signing.pdf_errors import PdfError, TrustConfigError
from signing.pdf_verify import VerifyOptions, verify_pdf
from tests.signing.pdf.conftest import PdfPki
from tests.signing.pdf.helpers import (
    add_annotation,
    add_page,
    flip_signed_byte,
    make_pdf,
    pyhanko_verdicts,
)


@pytest.fixture(scope="module")
def signed_lt(official, services) -> bytes:
    return sign_pdf(make_pdf(2), official, PadesOptions(level=Level.B_LT), services)


def _offline(pdf_pki: PdfPki, **kw: object) -> VerifyOptions:
    return VerifyOptions(trust_roots=[pdf_pki.root], **kw)  # type: ignore[arg-type]


def test_agrees_with_pyhanko_on_a_good_paper(pdf_pki: PdfPki, signed_lt: bytes) -> None:
    ours = verify_pdf(signed_lt, _offline(pdf_pki))
    theirs = pyhanko_verdicts(signed_lt, pdf_pki.root)
    assert ours.valid and all(passed for _f, passed, _s in theirs), (ours.as_dict(), theirs)
    assert [s.field_name for s in ours.signatures] == [f for f, _p, _s in theirs]
    sig = ours.signatures[0]
    assert (sig.intact, sig.signature_valid, sig.trusted) == (True, True, True)
    assert sig.coverage == "entire-revision" and sig.modification == "ltv-updates"
    assert sig.modifications_allowed is True


@pytest.mark.parametrize("alter, expect", [
    (flip_signed_byte, "changed after signing"),
    (add_page, "changed after this signature"),
    (add_annotation, "changed after this signature"),
], ids=["bytes-changed", "page-added", "annotation-added"])
def test_alterations_reported_by_both(pdf_pki: PdfPki, signed_lt: bytes, alter,
                                      expect: str) -> None:
    altered = alter(signed_lt)
    ours = verify_pdf(altered, _offline(pdf_pki))
    theirs = pyhanko_verdicts(altered, pdf_pki.root)
    assert not ours.valid
    assert theirs and not any(passed for _f, passed, _s in theirs), theirs
    sig = ours.signatures[0]
    assert any(expect in p for p in sig.problems), sig.problems
    if alter is flip_signed_byte:
        assert not sig.intact
    else:
        assert sig.intact and sig.modifications_allowed is False
        assert sig.modification in ("annotations", "other")


def test_form_filling_and_later_signatures_are_allowed(pdf_pki: PdfPki, official, services,
                                                       signed_lt: bytes) -> None:
    twice = sign_pdf(signed_lt, official, PadesOptions(level=Level.B_T), services)
    report = verify_pdf(twice, VerifyOptions(trust_roots=[pdf_pki.root],
                                             fetcher=services.fetcher))
    assert report.valid, report.as_dict()
    assert report.signatures[0].modification == "form-filling"
    assert report.signatures[0].modifications_allowed is True
    theirs = pyhanko_verdicts(twice, pdf_pki.root)
    assert theirs[0][1], theirs


def test_untrusted_root(pdf_pki: PdfPki, signed_lt: bytes) -> None:
    """Trusting only another root (the devices CA) the signature does not chain."""
    report = verify_pdf(signed_lt, VerifyOptions(trust_roots=[pdf_pki.devices]))
    assert not report.valid
    assert not report.signatures[0].trusted
    assert any("trusted root" in p for p in report.signatures[0].problems)


def test_no_trust_roots(signed_lt: bytes) -> None:
    with pytest.raises(TrustConfigError):
        verify_pdf(signed_lt, VerifyOptions(trust_roots=[]))


def test_unsigned_document(pdf_pki: PdfPki) -> None:
    report = verify_pdf(make_pdf(1), _offline(pdf_pki))
    assert not report.valid and report.error == "the document carries no signatures"


def test_revoked_after_signing_b_lt_stays_valid(pdf_pki: PdfPki, services) -> None:
    """B-LT proves the status at signing time: a later revocation does not undo it."""
    from ca.revocation import revoke

    key = pdf_pki.file_key()
    signed = sign_pdf(make_pdf(1), key, PadesOptions(level=Level.B_LT), services)
    revoke(pdf_pki.ctx, format(key.certificate.serial_number, "x"), "affiliationChanged",
           ca="officials", actor="test")
    assert verify_pdf(signed, _offline(pdf_pki)).valid
    b_b = sign_pdf(make_pdf(1), pdf_pki.file_key(), PadesOptions(level=Level.B_B), services)
    assert verify_pdf(b_b, VerifyOptions(trust_roots=[pdf_pki.root],
                                         fetcher=services.fetcher)).valid


def test_revoked_before_verification_b_b_is_reported(pdf_pki: PdfPki, services) -> None:
    from ca.revocation import revoke

    key = pdf_pki.file_key()
    signed = sign_pdf(make_pdf(1), key, PadesOptions(level=Level.B_B), services)
    revoke(pdf_pki.ctx, format(key.certificate.serial_number, "x"), "keyCompromise",
           ca="officials", actor="test")
    report = verify_pdf(signed, VerifyOptions(trust_roots=[pdf_pki.root],
                                              fetcher=services.fetcher))
    assert not report.valid
    assert report.signatures[0].revocation == "revoked"
    assert report.signatures[0].revocation_source == "fetched"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_pdfs_never_crash_the_verifier(pdf_pki: PdfPki, signed_lt: bytes,
                                               data: st.DataObject) -> None:
    """Flip, delete, insert or truncate bytes anywhere: the verifier answers invalid (or a
    typed input error), never with another exception and never valid for a changed paper."""
    blob = bytearray(signed_lt)
    kind = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate", "splice"]))
    position = data.draw(st.integers(0, len(blob) - 1))
    if kind == "flip":
        blob[position] ^= data.draw(st.integers(1, 255))
    elif kind == "delete":
        del blob[position: position + data.draw(st.integers(1, 64))]
    elif kind == "insert":
        blob[position:position] = data.draw(st.binary(min_size=1, max_size=64))
    elif kind == "truncate":
        del blob[position:]
    else:
        other = data.draw(st.integers(0, len(blob) - 1))
        size = data.draw(st.integers(1, 200))
        blob[position: position + size] = signed_lt[other: other + size]
    mutated = bytes(blob)
    try:
        report = verify_pdf(mutated, _offline(pdf_pki))
    except PdfError:
        return
    if report.valid and mutated != signed_lt:
        # Valid after a change only if nothing the signature covers changed: the first
        # differing byte lies inside the /Contents hole or after the signed revision.
        reader = PdfFileReader(io.BytesIO(signed_lt))
        _start, hole, second, length = next(iter(reader.embedded_regular_signatures)).byte_range
        differing = [i for i, (a, b) in enumerate(zip(mutated, signed_lt, strict=False))
                     if a != b]
        first = differing[0] if differing else min(len(mutated), len(signed_lt))
        assert hole <= first < second or first >= second + length, (kind, position, first)
