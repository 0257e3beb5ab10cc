"""Validating signed official papers: one plain result per signature, for people and programs.

Every application that receives a paper must be able to tell, offline, whether it is authentic
and unchanged (issue 5). :func:`verify_pdf` answers with a :class:`PdfVerification` holding a
:class:`SignatureReport` per signature and document time-stamp, in the order they were
applied: who signed (name, organisation), when they claimed to and when the TSA says, whether
the bytes are intact and the signature mathematically valid, whether the certificate chains to
a configured root, its revocation status at signing time and where that came from (embedded in
the document, or fetched from govpki's OCSP/CRL), what the signature covers and what was
changed after it (LTV updates and form filling are allowed, anything else is not).

The judgement is pyHanko's AdES validation (ETSI EN 319 102-1), chosen per signature:

* followed by a document time-stamp (B-LTA): ``ades_lta_validation`` — the time-stamp chain is
  the evidence record that proves the validation data existed in time;
* otherwise (B-B, B-T, B-LT): ``ades_with_time_validation`` with the document's DSS and the
  signature's own revocation archive as local knowledge, the signature time-stamp as best
  signature time, and online fetching only when allowed (``fetcher``; ``None`` is offline).

Revocation data is required (CRL or OCSP) for the signer and every CA; a B-B signature
verified offline is therefore *not* valid — nothing vouches that its certificate was good.
A document that cannot be parsed becomes an invalid report carrying the reason, never an
exception other than the input errors of :mod:`signing.pdf_limits` (empty, not a PDF, too
large, encrypted without the password), so the verifier can be fed anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESIndeterminate, AdESPassed
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, ModificationLevel
from pyhanko.sign.general import find_unique_cms_attribute
from pyhanko.sign.validation import DocumentSecurityStore, EmbeddedPdfSignature
from pyhanko.sign.validation.ades import (
    ades_lta_validation,
    ades_with_time_validation,
)
from pyhanko.sign.validation.pdf_embedded import (
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from signing.pdf_errors import CorruptPdf, PdfError, TrustConfigError
from signing.pdf_limits import DEFAULT_LIMITS, PdfLimits, open_pdf
from signing.pdf_revinfo import GovpkiFetcherBackend, Transport
from signing.pdf_signer import to_asn1

log = logging.getLogger(__name__)

# What a signer's certificate must allow: either bit (pyHanko's default is nonRepudiation
# only), and when it has an EKU, a document-signing purpose.
SIGNER_KEY_USAGE = KeyUsageConstraints(
    key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False,
    extd_key_usage={"1.3.6.1.5.5.7.3.36", "email_protection", "any_extended_key_usage",
                    "1.2.840.113583.1.1.5", "1.3.6.1.4.1.311.10.3.12"},
    explicit_extd_key_usage_required=False,
)
_MODIFICATION_NAMES = {
    ModificationLevel.NONE: "none",
    ModificationLevel.LTA_UPDATES: "ltv-updates",
    ModificationLevel.FORM_FILLING: "form-filling",
    ModificationLevel.ANNOTATIONS: "annotations",
    ModificationLevel.OTHER: "other",
}
_COVERAGE_NAMES = {
    SignatureCoverageLevel.ENTIRE_FILE: "entire-file",
    SignatureCoverageLevel.ENTIRE_REVISION: "entire-revision",
    SignatureCoverageLevel.CONTIGUOUS_BLOCK_FROM_START: "partial",
    SignatureCoverageLevel.UNCLEAR: "unclear",
}


class Revocation(enum.StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    UNKNOWN = "unknown"
    NOT_CHECKED = "not-checked"


@dataclass(frozen=True)
class SignatureReport:
    """The verdict on one signature (or document time-stamp) and the facts behind it."""

    field_name: str
    kind: str  # "signature" | "document-timestamp"
    valid: bool
    problems: tuple[str, ...] = ()
    signer_name: str | None = None
    signer_organisation: str | None = None
    signer_subject: str | None = None
    signer_serial: str | None = None
    issuer: str | None = None
    claimed_signing_time: dt.datetime | None = None
    timestamp_time: dt.datetime | None = None
    timestamp_valid: bool | None = None
    level: str | None = None  # B-B | B-T | B-LT | B-LTA, as found in the document
    intact: bool = False
    signature_valid: bool = False
    trusted: bool = False
    trust_anchor: str | None = None
    revocation: str = Revocation.NOT_CHECKED.value
    revocation_source: str = "none"  # embedded | fetched | none
    revocation_detail: str | None = None
    coverage: str = "unclear"
    modification: str | None = None
    modifications_allowed: bool | None = None
    docmdp: str | None = None  # the lock this signature imposes, if any
    certification: bool = False
    ades_indication: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["problems"] = list(self.problems)
        for key, value in out.items():
            if isinstance(value, dt.datetime):
                out[key] = value.isoformat()
        return out


@dataclass(frozen=True)
class PdfVerification:
    valid: bool
    signatures: tuple[SignatureReport, ...] = ()
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "error": self.error,
                "signatures": [s.as_dict() for s in self.signatures]}


@dataclass
class VerifyOptions:
    """``trust_roots``: the root certificates to trust (required). ``fetcher``: fetch missing
    revocation data from govpki's OCSP/CRL (``None``: offline, embedded data only)."""

    trust_roots: Sequence[x509.Certificate]
    fetcher: GovpkiFetcherBackend | None = None
    limits: PdfLimits = field(default_factory=lambda: DEFAULT_LIMITS)
    password: str | None = None


class _CountingTransport:
    """Counts fetches, so a report can say whether revocation data came from outside."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.blocking = inner.blocking
        self.count = 0

    def get(self, url: str, accept: Iterable[str]) -> tuple[bytes, str]:
        self.count += 1
        return self.inner.get(url, accept)

    def post(self, url: str, body: bytes, content_type: str,
             accept: Iterable[str]) -> tuple[bytes, str]:
        self.count += 1
        return self.inner.post(url, body, content_type, accept)


def _spec(options: VerifyOptions, fetcher: GovpkiFetcherBackend | None
          ) -> SignatureValidationSpec:
    if not options.trust_roots:
        raise TrustConfigError("no trust roots are configured: give the root CA certificates "
                               "(--trust, or GOVPKI_HOME's CA)")
    policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(
            trust_roots=[to_asn1(c) for c in options.trust_roots]),
        revinfo_policy=CertRevTrustPolicy(RevocationCheckingPolicy(
            ee_certificate_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED,
            intermediate_ca_cert_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED)),
    )
    gathering = RevocationInfoGatheringSpec(
        online_fetching_rule=(RevinfoOnlineFetchingRule.NO_HISTORICAL_FETCH if fetcher
                              else RevinfoOnlineFetchingRule.LOCAL_ONLY),
        fetcher_backend=fetcher)
    return SignatureValidationSpec(cert_validation_policy=policy,
                                   revinfo_gathering_policy=gathering,
                                   key_usage_settings=SIGNER_KEY_USAGE)


def _dss_knowledge(reader: PdfFileReader) -> tuple[LocalKnowledge, bool]:
    """The DSS's certificates, OCSP responses and CRLs; and whether it holds any revinfo."""
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except Exception:  # NoDSSFoundError, or a damaged DSS: nothing to learn from it
        return LocalKnowledge(), False
    ocsps = [c for resp in dss.ocsps for c in OCSPContainer.load_multi(
        asn1_ocsp.OCSPResponse.load(resp.get_object().read_data(DecodePurpose.OCSP_RESPONSE)))]
    crls = [CRLContainer(asn1_crl.CertificateList.load(
        c.get_object().read_data(DecodePurpose.CRL))) for c in dss.crls]
    certs = list(dss.load_certs())
    return LocalKnowledge(known_ocsps=ocsps, known_crls=crls, known_certs=certs), bool(
        ocsps or crls)


def _archival_knowledge(sig: EmbeddedPdfSignature) -> LocalKnowledge:
    """Adobe's revocation-info-archival signed attribute (other signers' B-LT form)."""
    try:
        archive = find_unique_cms_attribute(sig.signer_info["signed_attrs"],
                                            "adobe_revocation_info_archival")
    except Exception:
        return LocalKnowledge()
    return LocalKnowledge(known_ocsps=[OCSPContainer(o) for o in archive["ocsp"]],
                          known_crls=[CRLContainer(c) for c in archive["crl"]])


def _merge(*parts: LocalKnowledge) -> LocalKnowledge:
    return LocalKnowledge(known_ocsps=[o for p in parts for o in p.known_ocsps],
                          known_crls=[c for p in parts for c in p.known_crls],
                          known_certs=[c for p in parts for c in p.known_certs])


def _name_part(cert: asn1_x509.Certificate | None, key: str) -> str | None:
    if cert is None:
        return None
    value = cert.subject.native.get(key)
    return str(value) if value else None


def _has_signature_ts(sig: EmbeddedPdfSignature) -> bool:
    # Only the attribute types are read: ``.native`` of the whole set would decode (and
    # asn1crypto re-encode) the entire time-stamp token, seconds for one check.
    try:
        return any(a["type"].native == "signature_time_stamp_token"
                   for a in sig.signer_info["unsigned_attrs"])
    except Exception:  # absent (asn1crypto Void) or damaged
        return False


def _level(sig: EmbeddedPdfSignature, later_doc_ts: bool, dss_revinfo: bool) -> str:
    has_ts = _has_signature_ts(sig)
    if later_doc_ts and has_ts:
        return "B-LTA"
    if has_ts and dss_revinfo:
        return "B-LT"
    return "B-T" if has_ts else "B-B"


async def _validate_now(sig: EmbeddedPdfSignature, spec: SignatureValidationSpec,
                        knowledge: LocalKnowledge, fetcher: GovpkiFetcherBackend | None
                        ) -> tuple[Any, Any, str | None]:
    """(status, AdES-style indication, failure text) of a signature without a time-stamp,
    validated at the present by pyHanko's PDF validator (its AdES basic validation does not
    produce a PDF status object for such signatures in pyHanko 0.38)."""
    policy = spec.cert_validation_policy
    vc = ValidationContext(
        trust_manager=policy.trust_manager, other_certs=knowledge.known_certs,
        crls=[c.crl_data for c in knowledge.known_crls],
        ocsps=[o.ocsp_response_data for o in knowledge.known_ocsps],
        allow_fetching=fetcher is not None, fetcher_backend=fetcher,
        revinfo_policy=policy.revinfo_policy)
    status = await async_validate_pdf_signature(sig, vc, key_usage_settings=SIGNER_KEY_USAGE,
                                                diff_policy=DEFAULT_DIFF_POLICY)
    if status.bottom_line:
        return status, AdESPassed.OK, None
    indication = status.trust_problem_indic
    failure = None
    if indication is not None and getattr(indication, "name", "") in (
            "CERTIFICATE_CHAIN_GENERAL_FAILURE", "TRY_LATER") and not status.trusted and (
            status.validation_path is not None):
        # a path to a trusted root was built and then failed: its revocation check
        failure = "no revocation information"
    return status, indication, failure


async def _verify_signature(sig: EmbeddedPdfSignature, spec: SignatureValidationSpec,
                            later_doc_ts: bool, dss: LocalKnowledge, dss_revinfo: bool,
                            counter: _CountingTransport | None,
                            fetcher: GovpkiFetcherBackend | None) -> SignatureReport:
    name = sig.field_name or "?"
    before = counter.count if counter else 0
    try:
        if later_doc_ts:
            lta = await ades_lta_validation(
                sig, PdfSignatureValidationSpec(spec, diff_policy=DEFAULT_DIFF_POLICY))
            status: Any = lta.api_status
            indication: Any = lta.ades_subindic
            failure = lta.failure_msg
            ts_time = lta.best_signature_time if status is None else None
        else:
            sig.compute_integrity_info(diff_policy=DEFAULT_DIFF_POLICY)
            knowledge = _merge(spec.local_knowledge, dss, _archival_knowledge(sig))
            ts_time = None
            if _has_signature_ts(sig):
                # validation with time (§5.5): the token's time is the best signature time
                result = await ades_with_time_validation(
                    sig.signed_data, dataclasses.replace(spec, local_knowledge=knowledge),
                    timing_info=ValidationTimingInfo.now(), raw_digest=sig.compute_digest(),
                    extra_status_kwargs=sig.summarise_integrity_info(),
                    status_cls=PdfSignatureStatus)
                status, indication, failure = (result.api_status, result.ades_subindic,
                                               result.failure_msg)
            else:
                # B-B: nothing proves when it was made, so it is judged at the present
                status, indication, failure = await _validate_now(sig, spec, knowledge,
                                                                  fetcher)
    except Exception as exc:  # a damaged signature dictionary or CMS blob
        return SignatureReport(field_name=name, kind="signature", valid=False,
                               problems=(f"the signature cannot be evaluated: "
                                         f"{_first_line(exc)}",))
    fetched = counter is not None and counter.count > before
    return _report(sig, name, status, indication, failure, ts_time, later_doc_ts, dss_revinfo,
                   fetched)


def _report(sig: EmbeddedPdfSignature, name: str, status: Any, indication: Any,
            failure: str | None, ts_time: dt.datetime | None, later_doc_ts: bool,
            dss_revinfo: bool, fetched: bool) -> SignatureReport:
    problems: list[str] = []
    cert = getattr(status, "signing_cert", None) if status is not None else None
    if cert is None:
        try:
            cert = sig.signer_cert
        except Exception:
            cert = None
    passed = isinstance(indication, AdESPassed)
    if status is None:
        return SignatureReport(field_name=name, kind="signature", valid=False,
                               problems=(failure or f"validation failed ({indication})",),
                               ades_indication=str(getattr(indication, "name", indication)))
    intact, crypto_ok, trusted = bool(status.intact), bool(status.valid), bool(status.trusted)
    if not intact:
        problems.append("the signed bytes were changed after signing (digest mismatch)")
    elif not crypto_ok:
        problems.append("the signature value does not verify with the signer's key")
    revocation, detail = _revocation(status, indication, trusted, failure)
    if not trusted and revocation not in (Revocation.REVOKED, Revocation.SUSPENDED,
                                          Revocation.UNKNOWN):
        problems.append("the signer's certificate does not chain to a trusted root"
                        + (f" ({indication.name})" if indication is not None
                           and not passed else ""))
    if revocation in (Revocation.REVOKED, Revocation.SUSPENDED):
        problems.append(f"the signer's certificate was {revocation.value}: {detail}")
    elif revocation == Revocation.UNKNOWN:
        problems.append(f"revocation status unknown: {detail}")
    ts_status = getattr(status, "timestamp_validity", None)
    timestamp_time = getattr(ts_status, "timestamp", None) or ts_time
    ts_ok = None
    if ts_status is not None:
        ts_ok = bool(ts_status.intact and ts_status.valid and ts_status.trusted)
        if not ts_ok:
            problems.append("the signature time-stamp does not validate")
    coverage = _COVERAGE_NAMES.get(status.coverage, "unclear") if status.coverage else "unclear"
    mod_level = status.modification_level
    modification = _MODIFICATION_NAMES.get(mod_level) if mod_level is not None else None
    allowed = status.docmdp_ok
    if allowed is False:
        problems.append(f"the document was changed after this signature in a way it does not "
                        f"allow ({modification or 'unknown change'})")
    elif allowed is None and status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        problems.append("changes after this signature could not be analysed")
    if not passed and not problems:
        problems.append(failure or f"AdES validation: {getattr(indication, 'name', indication)}")
    docmdp = None
    try:
        level = sig.docmdp_level
        docmdp = level.name.lower().replace("_", "-") if level is not None else None
    except Exception:
        docmdp = None
    certification = False
    try:
        certification = "/Reference" in sig.sig_object and any(
            ref.get_object().get("/TransformMethod") == "/DocMDP"
            for ref in sig.sig_object["/Reference"])
    except Exception:
        certification = False
    path = getattr(status, "validation_path", None)
    anchor = None
    if path is not None:
        try:
            anchor = path.trust_anchor.authority.name.human_friendly
        except Exception:
            anchor = None
    return SignatureReport(
        field_name=name, kind="signature", valid=passed and not problems,
        problems=tuple(problems),
        signer_name=_name_part(cert, "common_name"),
        signer_organisation=_name_part(cert, "organization_name"),
        signer_subject=cert.subject.human_friendly if cert is not None else None,
        signer_serial=format(cert.serial_number, "x") if cert is not None else None,
        issuer=cert.issuer.human_friendly if cert is not None else None,
        claimed_signing_time=_claimed_time(sig, status),
        timestamp_time=timestamp_time, timestamp_valid=ts_ok,
        level=_level(sig, later_doc_ts, dss_revinfo), intact=intact, signature_valid=crypto_ok,
        trusted=trusted, trust_anchor=anchor, revocation=revocation.value,
        revocation_source=("fetched" if fetched else "embedded")
        if revocation in (Revocation.GOOD, Revocation.REVOKED, Revocation.SUSPENDED) else "none",
        revocation_detail=detail, coverage=coverage, modification=modification,
        modifications_allowed=allowed, docmdp=docmdp, certification=certification,
        ades_indication=getattr(indication, "name", None))


def _claimed_time(sig: EmbeddedPdfSignature, status: Any) -> dt.datetime | None:
    """The signer's own claim: CMS signingTime, or (PAdES forbids that attribute) the
    signature dictionary's /M."""
    claimed = getattr(status, "signer_reported_dt", None)
    if claimed is None:
        try:
            claimed = sig.self_reported_timestamp
        except Exception:
            claimed = None
    return claimed


def _revocation(status: Any, indication: Any, trusted: bool,
                failure: str | None = None) -> tuple[Revocation, str | None]:
    details = getattr(status, "revocation_details", None)
    if details is not None:
        reason = details.revocation_reason.native if details.revocation_reason else None
        who = "a CA certificate in its chain" if details.ca_revoked else "the signer"
        when = details.revocation_date
        text = f"{who}, on {when:%Y-%m-%d %H:%M} UTC" + (f" ({reason})" if reason else "")
        if reason == "certificate_hold":
            return Revocation.SUSPENDED, text
        return Revocation.REVOKED, text
    name = getattr(indication, "name", "")
    if "REVOKED" in name:
        return Revocation.REVOKED, name
    if isinstance(indication, AdESIndeterminate) and name in (
            "TRY_LATER", "REVOCATION_OUT_OF_BOUNDS_NO_POE", "OUT_OF_BOUNDS_NO_POE"):
        return Revocation.UNKNOWN, ("no usable OCSP response or CRL (embed them with B-LT, or "
                                    "allow fetching)")
    if failure and "revocation information" in failure:
        return Revocation.UNKNOWN, ("no usable OCSP response or CRL in the document (sign at "
                                    "B-LT) and none fetched")
    if trusted and isinstance(indication, AdESPassed):
        return Revocation.GOOD, None
    return Revocation.NOT_CHECKED, None


async def _verify_timestamp(sig: EmbeddedPdfSignature, options: VerifyOptions,
                            dss: LocalKnowledge, fetcher: GovpkiFetcherBackend | None
                            ) -> SignatureReport:
    name = sig.field_name or "?"
    try:
        vc = ValidationContext(
            trust_roots=[to_asn1(c) for c in options.trust_roots],
            other_certs=dss.known_certs,
            crls=[c.crl_data for c in dss.known_crls],
            ocsps=[o.ocsp_response_data for o in dss.known_ocsps],
            allow_fetching=fetcher is not None, fetcher_backend=fetcher,
            revinfo_policy=CertRevTrustPolicy(RevocationCheckingPolicy(
                ee_certificate_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED,
                intermediate_ca_cert_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED),
                retroactive_revinfo=True))
        status = await async_validate_pdf_timestamp(sig, validation_context=vc,
                                                    diff_policy=DEFAULT_DIFF_POLICY)
    except Exception as exc:
        return SignatureReport(field_name=name, kind="document-timestamp", valid=False,
                               problems=(f"the document time-stamp cannot be evaluated: "
                                         f"{_first_line(exc)}",))
    problems = []
    if not (status.intact and status.valid):
        problems.append("the document time-stamp does not match the document")
    if not status.trusted:
        problems.append("the TSA certificate does not chain to a trusted root")
    if status.docmdp_ok is False:
        problems.append("the document was changed after the time-stamp")
    mod = status.modification_level
    return SignatureReport(
        field_name=name, kind="document-timestamp", valid=not problems,
        problems=tuple(problems), signer_name=_name_part(status.signing_cert, "common_name"),
        signer_organisation=_name_part(status.signing_cert, "organization_name"),
        signer_subject=status.signing_cert.subject.human_friendly,
        timestamp_time=status.timestamp, timestamp_valid=not problems, level=None,
        intact=bool(status.intact), signature_valid=bool(status.valid),
        trusted=bool(status.trusted),
        revocation=(Revocation.GOOD if status.trusted else Revocation.NOT_CHECKED).value,
        coverage=_COVERAGE_NAMES.get(status.coverage, "unclear") if status.coverage else "unclear",
        modification=_MODIFICATION_NAMES.get(mod) if mod is not None else None,
        modifications_allowed=status.docmdp_ok)


async def async_verify_pdf(data: bytes, options: VerifyOptions) -> PdfVerification:
    """Verify every signature in ``data``; see the module docstring."""
    counter = None
    fetcher = options.fetcher
    if fetcher is not None:
        counter = _CountingTransport(fetcher.transport)
        fetcher = GovpkiFetcherBackend(counter, fetcher.limits)
    spec = _spec(options, fetcher)
    try:
        reader = open_pdf(data, options.limits, password=options.password)
    except CorruptPdf as exc:
        return PdfVerification(valid=False, error=exc.message)
    try:
        signatures = list(reader.embedded_signatures)
    except Exception as exc:
        return PdfVerification(valid=False, error=f"the signatures cannot be read: "
                                                  f"{_first_line(exc)}")
    if not signatures:
        return PdfVerification(valid=False, error="the document carries no signatures")
    dss, dss_revinfo = _dss_knowledge(reader)
    doc_ts_revisions = [s.signed_revision for s in signatures
                        if s.sig_object_type == "/DocTimeStamp"]
    reports = []
    for sig in signatures:
        try:
            is_doc_ts = sig.sig_object_type == "/DocTimeStamp"
            if is_doc_ts:
                reports.append(await _verify_timestamp(sig, options, dss, fetcher))
                continue
            later = any(rev > sig.signed_revision for rev in doc_ts_revisions)
        except Exception as exc:
            reports.append(SignatureReport(field_name=getattr(sig, "field_name", "?") or "?",
                                           kind="signature", valid=False,
                                           problems=(f"the signature cannot be evaluated: "
                                                     f"{_first_line(exc)}",)))
            continue
        reports.append(await _verify_signature(sig, spec, later, dss, dss_revinfo, counter,
                                               fetcher))
    return PdfVerification(valid=all(r.valid for r in reports), signatures=tuple(reports))


def verify_pdf(data: bytes, options: VerifyOptions) -> PdfVerification:
    """Synchronous :func:`async_verify_pdf`. Raises only :class:`PdfError` input errors."""
    try:
        return asyncio.run(async_verify_pdf(data, options))
    except PdfError:
        raise
    except Exception as exc:  # last line of defence: an unreadable document is invalid
        log.debug("verification failed", exc_info=True)
        return PdfVerification(valid=False, error=f"the document cannot be verified: "
                                                  f"{_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text[:300]
