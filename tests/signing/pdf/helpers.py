"""Helpers for PDF tests: documents made with pyHanko's writer (no reportlab), the independent
checkers (poppler's pdfsig and pdftoppm, pyHanko's own validation), and the alterations a
signed paper may suffer afterwards."""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

A4 = (595, 842)


def _font() -> generic.DictionaryObject:
    return generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/Font"), pdf_name("/Subtype"): pdf_name("/Type1"),
        pdf_name("/BaseFont"): pdf_name("/Helvetica")})


def make_pdf(pages: int = 1, *, title: str = "Official paper") -> bytes:
    """A plain PDF of ``pages`` A4 pages with a line of text each."""
    writer = PdfFileWriter()
    font = writer.add_object(_font())
    for number in range(1, pages + 1):
        text = f"BT /F1 18 Tf 72 760 Td ({title}, page {number} of {pages}) Tj ET\n"
        text += "".join(f"BT /F1 10 Tf 72 {700 - 14 * i} Td (Line {i} of the paper.) Tj ET\n"
                        for i in range(30))
        content = writer.add_object(generic.StreamObject(stream_data=text.encode("ascii")))
        resources = generic.DictionaryObject({
            pdf_name("/Font"): generic.DictionaryObject({pdf_name("/F1"): font})})
        writer.insert_page(PageObject(contents=content, media_box=[0, 0, *A4],
                                      resources=resources))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_encrypted_pdf(password: str) -> bytes:
    writer = PdfFileWriter()
    writer.insert_page(PageObject(
        contents=writer.add_object(generic.StreamObject(stream_data=b"BT ET")),
        media_box=[0, 0, *A4]))
    writer.encrypt(password, password)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_pdf_with_field(name: str, box: tuple[int, int, int, int]) -> bytes:
    """A document whose author prepared an empty signature field."""
    from pyhanko.sign.fields import SigFieldSpec, append_signature_field

    writer = IncrementalPdfFileWriter(io.BytesIO(make_pdf(1)))
    append_signature_field(writer, SigFieldSpec(sig_field_name=name, on_page=0, box=box))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# -- alterations after signing --------------------------------------------------------------------


def flip_signed_byte(signed: bytes) -> bytes:
    """Change one byte inside the signed range of the first signature (page content)."""
    index = signed.index(b"Line 7 of the paper.")
    return signed[:index] + b"X" + signed[index + 1:]


def add_page(signed: bytes) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    content = writer.add_object(generic.StreamObject(stream_data=b"BT /F1 12 Tf 72 700 Td "
                                                                 b"(Inserted page) Tj ET"))
    writer.insert_page(PageObject(contents=content, media_box=[0, 0, *A4]))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def add_annotation(signed: bytes) -> bytes:
    """A text comment on page 1, as a reader's "add note" would do (incremental update)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    page_ref = writer.find_page_for_modification(0)[0]
    annot = generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/Annot"), pdf_name("/Subtype"): pdf_name("/Text"),
        pdf_name("/Rect"): generic.ArrayObject([generic.NumberObject(v)
                                                for v in (100, 100, 120, 120)]),
        pdf_name("/Contents"): generic.TextStringObject("改一下"),
    })
    writer.register_annotation(page_ref, writer.add_object(annot))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# -- poppler --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PdfsigSignature:
    field: str
    signed: bool
    valid: bool
    trusted: bool
    text: str


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def pdfsig(path: Path, nssdir: Path) -> list[PdfsigSignature]:
    """poppler's pdfsig on ``path`` with our root in ``nssdir``; one entry per signature."""
    result = subprocess.run(["pdfsig", "-nssdir", f"sql:{nssdir}", str(path)],
                            capture_output=True, text=True, check=False, timeout=60)
    blocks = re.split(r"^Signature #\d+:\s*$", result.stdout, flags=re.M)[1:]
    out = []
    for block in blocks:
        name = re.search(r"Signature Field Name: (.*)", block)
        out.append(PdfsigSignature(
            field=name.group(1).strip() if name else "?",
            signed="is not signed" not in block,
            valid="Signature Validation: Signature is Valid." in block,
            trusted="Certificate Validation: Certificate is Trusted." in block,
            text=block.strip()))
    return out


def render(path: Path, out_prefix: Path, page: int = 1, dpi: int = 100) -> Path:
    subprocess.run(["pdftoppm", "-r", str(dpi), "-f", str(page), "-l", str(page), "-png",
                    str(path), str(out_prefix)], check=True, capture_output=True, timeout=60)
    candidates = sorted(out_prefix.parent.glob(f"{out_prefix.name}*.png"))
    assert candidates, "pdftoppm wrote no image"
    return candidates[-1]


# -- pyHanko's own validation (the independent verdict) -------------------------------------------


def pyhanko_verdicts(data: bytes, root: x509.Certificate, *, lta: bool = False
                     ) -> list[tuple[str, bool, str]]:
    """(field, passed, indication) per regular signature, judged by pyHanko's AdES validation
    with only ``root`` trusted and no fetching: ades_lta_validation for ``lta``, otherwise
    pyHanko's classic ``validate_pdf_signature`` with the DSS as the only revocation source."""
    from pyhanko.sign.ades.report import AdESPassed
    from pyhanko.sign.validation import (
        DocumentSecurityStore,
        async_validate_pdf_signature,
    )
    from pyhanko.sign.validation.ades import ades_lta_validation
    from pyhanko.sign.validation.policy_decl import (
        PdfSignatureValidationSpec,
        RevinfoOnlineFetchingRule,
        RevocationInfoGatheringSpec,
        SignatureValidationSpec,
    )
    from pyhanko.sign.validation.settings import KeyUsageConstraints
    from pyhanko_certvalidator import ValidationContext
    from pyhanko_certvalidator.context import CertValidationPolicySpec
    from pyhanko_certvalidator.policy_decl import (
        CertRevTrustPolicy,
        RevocationCheckingPolicy,
        RevocationCheckingRule,
    )
    from pyhanko_certvalidator.registry import SimpleTrustManager

    from signing.pdf_signer import to_asn1

    reader = PdfFileReader(io.BytesIO(data))
    rule = RevocationCheckingRule.CRL_OR_OCSP_REQUIRED
    policy = CertRevTrustPolicy(RevocationCheckingPolicy(rule, rule))
    usage = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"},
                                match_all_key_usages=False)
    results = []
    for sig in reader.embedded_regular_signatures:
        if lta:
            spec = PdfSignatureValidationSpec(SignatureValidationSpec(
                cert_validation_policy=CertValidationPolicySpec(
                    trust_manager=SimpleTrustManager.build(trust_roots=[to_asn1(root)]),
                    revinfo_policy=policy),
                revinfo_gathering_policy=RevocationInfoGatheringSpec(
                    online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY),
                key_usage_settings=usage))
            result = asyncio.run(ades_lta_validation(sig, spec))
            passed = isinstance(result.ades_subindic, AdESPassed) and bool(
                result.api_status and result.api_status.bottom_line)
            results.append((sig.field_name, passed, str(result.ades_subindic)))
            continue
        try:
            dss = DocumentSecurityStore.read_dss(reader)
            certs = list(dss.load_certs())
            ocsps = [o.get_object().data for o in dss.ocsps]
            crls = [c.get_object().data for c in dss.crls]
        except Exception:
            certs, ocsps, crls = [], [], []
        from asn1crypto import crl as asn1_crl
        from asn1crypto import ocsp as asn1_ocsp

        vc = ValidationContext(trust_roots=[to_asn1(root)], other_certs=certs,
                               ocsps=[asn1_ocsp.OCSPResponse.load(o) for o in ocsps],
                               crls=[asn1_crl.CertificateList.load(c) for c in crls],
                               allow_fetching=False, revinfo_policy=policy)
        status = asyncio.run(async_validate_pdf_signature(sig, vc, ts_validation_context=vc,
                                                          key_usage_settings=usage))
        results.append((sig.field_name, bool(status.bottom_line), status.summary()))
    return results
