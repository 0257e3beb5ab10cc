"""Signing official papers: PAdES baseline signatures (ETSI EN 319 142-1) with pyHanko.

One entry point, :func:`sign_pdf` (and :func:`async_sign_pdf`), for every key govpki knows —
an official's USB key, a department seal key in the server's key store, a development file
key — all behind :class:`hsm.signer.Signer` and wrapped for pyHanko by
:class:`signing.pdf_signer.GovpkiPdfSigner`. What happens, in order:

1. the document passes the cheap checks (:mod:`signing.pdf_limits`: size, header, strict
   parse, password) and govpki refuses to add to it if an earlier signature locked it
   (DocMDP P=1, or a field lock with P=1);
2. the signer's certificate is checked before anything is drawn: valid now, an end-entity
   certificate whose keyUsage allows signing and whose EKU (if any) allows documents, and
   not revoked or suspended (:func:`check_signing_certificate`; each refusal its own error);
3. the signature field is prepared (invisible; a seal at a page and box; an existing field;
   the cross-page seal with one widget per page), with a ``/Lock`` (P=1) when a later
   signature must lock the document, or a DocMDP certification when it is the first;
4. the container is sized from a dry run that includes a real TSA token (pyHanko's estimate,
   without its 50% margin) plus :data:`SIZE_SLACK` bytes for what can still vary: the ECDSA
   signature length inside the token and the millisecond digits of its genTime. If a
   container still came out larger (never seen), signing is redone once with the exact size
   the error reports — never a "signature too small" failure and never a 30 KB hole;
5. B-T adds the signature time-stamp (RFC 3161 from govpki's TSA); B-LT adds, in a DSS
   incremental update, the chain and the OCSP responses and CRLs that pyHanko gathered for the
   signer and the TSA through :mod:`signing.pdf_revinfo`; B-LTA then adds a document
   time-stamp sized the same exact way, and the TSA's own revocation data after it.

Nothing is written anywhere until everything succeeded: the function returns the bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import io
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields as pdf_fields
from pyhanko.sign.fields import FieldMDPAction, FieldMDPSpec, MDPPerm, SigFieldSpec
from pyhanko.sign.general import SigningError as PyHankoSigningError
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner, PdfTimeStamper
from pyhanko.sign.signers.cms_embedder import SigObjSetup
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.stamp import NoOpStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator import errors as cv_errors
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)

from core.errors import GovpkiError
from signing.appearance import (
    DEFAULT_SEAL_PT,
    Appearance,
    CrossPagePlacement,
    FieldPlacement,
    PagePlacement,
    Placement,
    add_seal_xobject,
    set_normal_appearance,
    slice_appearance,
    widget_appearance,
)
from signing.pdf_errors import (
    CertificateExpired,
    CertificateNotForSigning,
    CertificateNotYetValid,
    CertificateRefused,
    CertificateRevoked,
    CertificateSuspended,
    DocumentLocked,
    FieldError,
    PdfError,
    RevocationFetchFailed,
    RevocationUnknown,
    SigningFailed,
    TimestampFailed,
)
from signing.pdf_limits import DEFAULT_LIMITS, PdfLimits, open_pdf
from signing.pdf_revinfo import (
    GovpkiFetcherBackend,
    HttpTransport,
    OcspStatusSource,
    StatusSource,
    Transport,
    complete_chain,
)
from signing.pdf_signer import GovpkiPdfSigner, SigningKey, certs_of, to_asn1, utcnow

log = logging.getLogger(__name__)

SIZE_SLACK = 128
"""Hex characters (64 DER bytes) reserved beyond the measured container: covers the TSA's
ECDSA signature (up to 3 bytes longer than in the dry run), genTime's millisecond digits
(up to 4), a serial number one byte longer, and a length octet at each nesting level."""

RETRY_SLACK = 128
"""Slack on the second attempt, on top of the size the first one actually needed: the second
container differs from the first only by the variable-length parts above."""

# EKUs that allow signing documents (RFC 5280 §4.2.1.12; RFC 9336 documentSigning; the
# S/MIME purpose NSS/pdfsig check; Adobe's and Microsoft's document-signing OIDs).
DOCUMENT_SIGNING_EKUS = {
    ObjectIdentifier("1.3.6.1.5.5.7.3.36"): "documentSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
    ObjectIdentifier("1.2.840.113583.1.1.5"): "Adobe Authentic Documents",
    ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"): "Microsoft document signing",
}


class Level(enum.StrEnum):
    """PAdES baseline levels (ETSI EN 319 142-1 §6)."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"

    @property
    def timestamped(self) -> bool:
        return self is not Level.B_B

    @property
    def long_term(self) -> bool:
        return self in (Level.B_LT, Level.B_LTA)


class CertifyPermits(enum.StrEnum):
    """What a certification (DocMDP) signature still allows (ISO 32000-2 §12.8.2.2, P)."""

    NOTHING = "nothing"  # P=1: the final version
    SIGNATURES = "signatures"  # P=2: filling in forms and signing
    ANNOTATIONS = "annotations"  # P=3: also comments

    @property
    def mdp(self) -> MDPPerm:
        return {"nothing": MDPPerm.NO_CHANGES, "signatures": MDPPerm.FILL_FORMS,
                "annotations": MDPPerm.ANNOTATE}[self.value]


@dataclass(frozen=True)
class PadesOptions:
    """How to sign. ``appearance`` without ``placement`` puts the seal at the lower right of
    the last page; ``placement`` without ``appearance`` is allowed only for an existing field
    (an invisible signature in it). ``certify`` locks the result: the first signature of a
    document becomes a DocMDP certification signature (``certify_permits`` says what remains
    allowed), a later one gets a field lock with P=1 (ISO 32000-2 Table 236)."""

    level: Level = Level.B_LT
    field_name: str | None = None
    appearance: Appearance | None = None
    placement: Placement | None = None
    reason: str | None = None
    location: str | None = None
    contact_info: str | None = None
    certify: bool = False
    certify_permits: CertifyPermits = CertifyPermits.NOTHING

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", Level(self.level))
        object.__setattr__(self, "certify_permits", CertifyPermits(self.certify_permits))
        if self.placement is not None and self.appearance is None and not isinstance(
                self.placement, FieldPlacement):
            raise FieldError("a page, box or cross-page placement needs a seal (--seal or "
                             "--seal-org)")
        if self.field_name is not None:
            _check_field_name(self.field_name)
        for name, value in (("reason", self.reason), ("location", self.location),
                            ("contact_info", self.contact_info)):
            if value is not None and (len(value) > 500 or any(not c.isprintable()
                                                              for c in value)):
                raise FieldError(f"{name} must be at most 500 printable characters")


def _check_field_name(name: str) -> None:
    if not name or len(name) > 100 or "." in name or any(not c.isprintable() for c in name):
        raise FieldError(f"a field name is 1-100 printable characters without '.', "
                         f"not {name!r}")


@dataclass
class SigningServices:
    """Where a signature's time, revocation data and the signer's status come from.

    ``timestamper``: govpki's TSA (in-process or over HTTP), needed from B-T up.
    ``fetcher``: OCSP/CRL/certificate fetching for B-LT (and chain completion).
    ``status``: the signer's revocation status for the refusal check; ``require_status``
    refuses when it cannot be established.
    ``trust_roots``: roots the signer's and TSA's chains must end in (B-LT validation);
    the signer's own chain root is used when none are given.
    """

    timestamper: TimeStamper | None = None
    fetcher: GovpkiFetcherBackend = field(default_factory=GovpkiFetcherBackend)
    status: StatusSource | None = None
    trust_roots: Sequence[x509.Certificate] = ()
    limits: PdfLimits = DEFAULT_LIMITS
    require_status: bool = True
    now: Callable[[], dt.datetime] = utcnow

    @property
    def transport(self) -> Transport:
        return self.fetcher.transport

    @classmethod
    def over_http(cls, *, tsa_url: str | None = None, transport: Transport | None = None,
                  trust_roots: Sequence[x509.Certificate] = ()) -> SigningServices:
        """A signer away from the CA host: TSA, OCSP and CRLs over HTTP at the URLs given
        and named in the certificates."""
        from signing.pdf_signer import HttpTimeStamper

        transport = transport or HttpTransport()
        return cls(timestamper=HttpTimeStamper(tsa_url, transport) if tsa_url else None,
                   fetcher=GovpkiFetcherBackend(transport), status=OcspStatusSource(transport),
                   trust_roots=tuple(trust_roots))


    @classmethod
    def in_process(cls, ctx: Any, *, transport: Transport | None = None,
                   tsa: Any = None) -> SigningServices:
        """A signer on the host that runs govpki: the TSA called in-process, the signer's
        status read from ca/'s store, CRLs and CA certificates produced in-process
        (:class:`~signing.pdf_revinfo.CaStoreTransport`; OCSP over HTTP unless ``transport``
        — e.g. a :class:`~signing.pdf_revinfo.WsgiTransport` over the whole govpki app, which
        the composition root can pass — answers it too). ``tsa``: an existing
        :class:`~signing.tsa.TimeStampAuthority` to reuse."""
        from signing.config import tsa_config_from
        from signing.pdf_revinfo import CaStoreTransport, StoreStatusSource
        from signing.pdf_signer import CallableTimeStamper
        from signing.tsa import TimeStampAuthority

        if tsa is None:
            tsa = TimeStampAuthority(ctx, tsa_config_from(ctx.config.sections))
        transport = transport or CaStoreTransport(ctx)
        return cls(timestamper=CallableTimeStamper(tsa.respond, "govpki's TSA"),
                   fetcher=GovpkiFetcherBackend(transport), status=StoreStatusSource(ctx))


# -- step 2: may this certificate sign? -----------------------------------------------------------


def _describe(cert: x509.Certificate) -> str:
    return f"{cert.subject.rfc4514_string()} (serial {cert.serial_number:x})"


def check_certificate_usage(cert: x509.Certificate, now: dt.datetime) -> None:
    """Validity period, CA flag, keyUsage and EKU, each refusal saying which."""
    who = _describe(cert)
    if now > cert.not_valid_after_utc:
        raise CertificateExpired(f"the certificate {who} expired on "
                                 f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if now < cert.not_valid_before_utc:
        raise CertificateNotYetValid(f"the certificate {who} is valid only from "
                                     f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if basic.ca:
            raise CertificateNotForSigning(f"the certificate {who} is a CA certificate, not "
                                           f"a signer's")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        allowed = [name for name in ("key_encipherment", "data_encipherment", "key_agreement",
                                     "key_cert_sign", "crl_sign")
                   if getattr(usage, name, False)]
        raise CertificateNotForSigning(
            f"the certificate {who} is not meant for signing: its keyUsage has neither "
            f"digitalSignature nor nonRepudiation (it allows {', '.join(allowed) or 'nothing'})")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not any(oid in DOCUMENT_SIGNING_EKUS for oid in eku):
        found = ", ".join(getattr(oid, "_name", None) or oid.dotted_string for oid in eku)
        raise CertificateNotForSigning(
            f"the certificate {who} is not meant for signing documents: its extendedKeyUsage "
            f"allows only {found} (documentSigning or emailProtection is needed)")


def check_signing_certificate(cert: x509.Certificate, chain: Sequence[x509.Certificate],
                              services: SigningServices) -> None:
    """Step 2 in full: usage, then revocation status (good, or refuse saying why)."""
    check_certificate_usage(cert, services.now())
    if services.status is None:
        if services.require_status:
            raise RevocationUnknown(f"no way to check whether {_describe(cert)} is revoked "
                                    f"was configured")
        return
    issuer = chain[0] if chain else None
    if issuer is None:
        if services.require_status:
            raise RevocationUnknown(f"the issuer of {_describe(cert)} is unknown, so its "
                                    f"status cannot be checked: give the chain with --cert")
        return
    answer = services.status.status(cert, issuer)
    when = f" on {answer.revoked_at:%Y-%m-%d %H:%M} UTC" if answer.revoked_at else ""
    if answer.status == "revoked":
        reason = f" ({answer.reason})" if answer.reason else ""
        raise CertificateRevoked(f"the certificate {_describe(cert)} was revoked{when}{reason}"
                                 f" [{answer.source}]")
    if answer.status == "hold":
        raise CertificateSuspended(f"the certificate {_describe(cert)} is suspended "
                                   f"(certificateHold){when} [{answer.source}]")
    if answer.status != "good" and services.require_status:
        detail = f": {answer.detail}" if answer.detail else ""
        raise RevocationUnknown(f"the status of {_describe(cert)} could not be established "
                                f"[{answer.source}]{detail}")


# -- step 1 and 3: the document and its field ----------------------------------------------------


def _existing_signatures(reader: PdfFileReader) -> list[Any]:
    try:
        return list(reader.embedded_signatures)
    except Exception as exc:
        raise PdfError(f"the document's existing signatures cannot be read: {exc}") from None


def _check_not_locked(reader: PdfFileReader) -> int:
    """Refuse when an earlier signature forbids changes; return how many there are."""
    signatures = _existing_signatures(reader)
    for sig in signatures:
        try:
            level = sig.docmdp_level
        except Exception:
            level = None
        if level == MDPPerm.NO_CHANGES:
            raise DocumentLocked(f"signature {sig.field_name!r} locked the document "
                                 f"(no changes allowed after it); it cannot be signed again")
    return len(signatures)


def _sig_field_names(reader: PdfFileReader) -> dict[str, bool]:
    """{name: filled} of the document's signature fields."""
    try:
        return {name: value is not None
                for name, value, _ref in pdf_fields.enumerate_sig_fields(reader)}
    except Exception as exc:
        raise PdfError(f"the document's form cannot be read: {exc}") from None


def _new_field_name(existing: dict[str, bool], stem: str) -> str:
    n = 1
    while f"{stem}{n}" in existing:
        n += 1
    return f"{stem}{n}"


def _lock_dict() -> generic.DictionaryObject:
    lock = FieldMDPSpec(FieldMDPAction.ALL).as_pdf_object()
    lock[pdf_name("/P")] = generic.NumberObject(MDPPerm.NO_CHANGES.value)
    return lock


def _page_box(page: generic.DictionaryObject) -> tuple[float, float, float, float]:
    box = page.get("/CropBox") or page.get("/MediaBox")
    if box is None:
        return 0.0, 0.0, 595.0, 842.0
    x1, y1, x2, y2 = (float(v) for v in box)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def _pages(writer: IncrementalPdfFileWriter) -> list[tuple[generic.Reference, Any]]:
    count = int(writer.root["/Pages"]["/Count"])
    out = []
    for index in range(count):
        page_ref = writer.find_page_for_modification(index)[0]
        out.append((page_ref, page_ref.get_object()))
    return out


def _ensure_form(writer: IncrementalPdfFileWriter) -> generic.ArrayObject:
    root = writer.root
    form_ref = root.raw_get("/AcroForm") if "/AcroForm" in root else None
    if form_ref is None:
        form = generic.DictionaryObject({pdf_name("/Fields"): generic.ArrayObject()})
        root[pdf_name("/AcroForm")] = writer.add_object(form)
        writer.update_root()
        fields: generic.ArrayObject = form["/Fields"]
        return fields
    form = root["/AcroForm"]
    if "/Fields" not in form:
        form[pdf_name("/Fields")] = generic.ArrayObject()
        writer.update_container(form)
    fields = form["/Fields"]
    writer.update_container(fields)
    return fields


def _add_widget_field(writer: IncrementalPdfFileWriter, name: str,
                      widgets: Sequence[tuple[generic.Reference, tuple[float, ...],
                                              generic.IndirectObject]],
                      lock: bool) -> None:
    """A signature field with one widget per (page, rect, appearance)."""
    fields = _ensure_form(writer)
    field_dict = generic.DictionaryObject({
        pdf_name("/FT"): pdf_name("/Sig"),
        pdf_name("/T"): generic.TextStringObject(name),
    })
    if lock:
        field_dict[pdf_name("/Lock")] = writer.add_object(_lock_dict())

    def widget(page_ref: generic.Reference, rect: tuple[float, ...],
               ap: generic.IndirectObject) -> generic.DictionaryObject:
        annot = generic.DictionaryObject({
            pdf_name("/Type"): pdf_name("/Annot"),
            pdf_name("/Subtype"): pdf_name("/Widget"),
            pdf_name("/F"): generic.NumberObject(4 | 128),  # Print, Locked
            pdf_name("/Rect"): generic.ArrayObject([generic.FloatObject(round(v, 3))
                                                    for v in rect]),
            pdf_name("/P"): page_ref,
        })
        set_normal_appearance(annot, ap)
        return annot

    if len(widgets) == 1:
        page_ref, rect, ap = widgets[0]
        field_dict.update(widget(page_ref, rect, ap))
        field_ref = writer.add_object(field_dict)
        writer.register_annotation(page_ref, field_ref)
    else:
        field_ref = writer.add_object(field_dict)
        kids = generic.ArrayObject()
        for page_ref, rect, ap in widgets:
            annot = widget(page_ref, rect, ap)
            annot[pdf_name("/Parent")] = field_ref
            annot_ref = writer.add_object(annot)
            writer.register_annotation(page_ref, annot_ref)
            kids.append(annot_ref)
        field_dict[pdf_name("/Kids")] = kids
    fields.append(field_ref)


def prepare_field(writer: IncrementalPdfFileWriter, reader: PdfFileReader,
                  options: PadesOptions, lock: bool) -> str:
    """Step 3: create (or find) the field and draw the seal in it; returns its name."""
    existing = _sig_field_names(reader)
    placement = options.placement
    appearance = options.appearance
    if placement is None and options.field_name in existing:
        placement = FieldPlacement(options.field_name)  # an existing field, named
    if appearance is not None and placement is None:
        placement = PagePlacement()
    if isinstance(placement, FieldPlacement):
        name = placement.field_name
        if name not in existing:
            known = ", ".join(sorted(existing)) or "none"
            raise FieldError(f"the document has no signature field {name!r} (fields: {known})")
        if existing[name]:
            raise FieldError(f"signature field {name!r} is already signed")
        if options.field_name not in (None, name):
            raise FieldError("give the field either with --field or in the placement, once")
        _fill_existing_field(writer, name, appearance, lock)
        return name
    name = options.field_name or _new_field_name(
        existing, "CrossPageSeal" if isinstance(placement, CrossPagePlacement) else "Signature")
    if name in existing:
        if existing[name]:
            raise FieldError(f"signature field {name!r} is already signed")
        if placement is not None:
            raise FieldError(f"field {name!r} already exists; sign it without a page/box "
                             f"placement")
        _fill_existing_field(writer, name, appearance, lock)
        return name
    if placement is None:
        spec = SigFieldSpec(sig_field_name=name, on_page=0,
                            field_mdp_spec=FieldMDPSpec(FieldMDPAction.ALL) if lock else None,
                            doc_mdp_update_value=MDPPerm.NO_CHANGES if lock else None)
        pdf_fields.append_signature_field(writer, spec)
        return name
    assert appearance is not None
    pages = _pages(writer)
    seal = add_seal_xobject(writer, appearance)
    if isinstance(placement, PagePlacement):
        index = placement.page - 1 if placement.page > 0 else len(pages) + placement.page
        if not 0 <= index < len(pages):
            raise FieldError(f"page {placement.page} does not exist (the document has "
                             f"{len(pages)} pages)")
        page_ref, page = pages[index]
        px1, py1, px2, py2 = _page_box(page)
        if placement.box is None:
            size = min(DEFAULT_SEAL_PT, (px2 - px1) / 3)
            box = (px2 - 72 - size, py1 + 96, px2 - 72, py1 + 96 + size)
        else:
            box = placement.box
        x1, y1, x2, y2 = box
        if x2 <= px1 or x1 >= px2 or y2 <= py1 or y1 >= py2:
            raise FieldError(f"the box {x1:g},{y1:g},{x2:g},{y2:g} lies outside page "
                             f"{index + 1} ({px1:g},{py1:g},{px2:g},{py2:g})")
        ap = widget_appearance(writer, seal, x2 - x1, y2 - y1)
        _add_widget_field(writer, name, [(page_ref, box, ap)], lock)
        return name
    assert isinstance(placement, CrossPagePlacement)
    size = placement.size
    widgets = []
    for i, (page_ref, page) in enumerate(pages):
        ap, slice_w = slice_appearance(writer, seal, size, i, len(pages))
        px1, py1, px2, py2 = _page_box(page)
        height = size * seal.height / max(seal.width, seal.height)
        cy = placement.y if placement.y is not None else (py1 + py2) / 2
        rect = (px2 - slice_w, cy - height / 2, px2, cy + height / 2)
        widgets.append((page_ref, rect, ap))
    _add_widget_field(writer, name, widgets, lock)
    return name


def _fill_existing_field(writer: IncrementalPdfFileWriter, name: str,
                         appearance: Appearance | None, lock: bool) -> None:
    field_ref = next((ref for fname, _v, ref in pdf_fields.enumerate_sig_fields(writer)
                      if fname == name), None)
    if field_ref is None:  # pragma: no cover (checked by the caller)
        raise FieldError(f"the document has no signature field {name!r}")
    field_obj = field_ref.get_object()
    if lock and "/Lock" not in field_obj:
        field_obj[pdf_name("/Lock")] = writer.add_object(_lock_dict())
        writer.mark_update(field_ref)
    if appearance is None:
        return
    kids = field_obj.get("/Kids")
    widgets = [k.get_object() for k in kids] if kids else [field_obj]
    widget_refs = [k for k in kids] if kids else [field_ref]
    seal = add_seal_xobject(writer, appearance)
    for widget, ref in zip(widgets, widget_refs, strict=True):
        rect = widget.get("/Rect")
        if rect is None:
            continue
        x1, y1, x2, y2 = (float(v) for v in rect)
        w, h = abs(x2 - x1), abs(y2 - y1)
        if w < 1 or h < 1:
            raise FieldError(f"field {name!r} is invisible (zero-sized); a seal cannot be "
                             f"shown in it")
        set_normal_appearance(widget, widget_appearance(writer, seal, w, h))
        writer.mark_update(ref)


# -- step 4 and 5: signing ------------------------------------------------------------------------


class _WithoutPyHankoAppearance:
    """pyHanko would draw its own text stamp into the field's widget (and refuses a field with
    several widgets). Our appearance is already in place, so the appearance step is removed
    from the signature-object setup that the session sends to the CMS embedder."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def send(self, value: Any) -> Any:
        if isinstance(value, SigObjSetup):
            value = dataclasses.replace(value, appearance_setup=None)
        return self._inner.send(value)

    def __next__(self) -> Any:
        return next(self._inner)

    def __iter__(self) -> Any:
        return self


_OVERFLOW = re.compile(r"contents required (\d+) bytes")


def _validation_context(services: SigningServices,
                        chain: Sequence[x509.Certificate]) -> ValidationContext:
    """For B-LT: trust the configured roots and the signer's own root, fetch revocation data
    through the services' fetcher, and require OCSP or CRL for every certificate (so a
    revoked or unknown one stops the signing instead of producing an unverifiable paper)."""
    roots = list(services.trust_roots)
    if chain and chain[-1].subject == chain[-1].issuer:
        roots.append(chain[-1])
    if not roots:
        raise RevocationFetchFailed("B-LT needs the root of the signer's chain: give the "
                                    "whole chain in the certificate file")
    policy = CertRevTrustPolicy(RevocationCheckingPolicy(
        ee_certificate_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED,
        intermediate_ca_cert_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED))
    return ValidationContext(
        trust_roots=[to_asn1(c) for c in certs_of(roots)],
        other_certs=[to_asn1(c) for c in chain],
        allow_fetching=True, fetcher_backend=services.fetcher, revinfo_policy=policy)


async def _sign_once(data: bytes, key: SigningKey, chain: tuple[x509.Certificate, ...],
                     options: PadesOptions, services: SigningServices, password: str | None,
                     reader: PdfFileReader, lock: bool, certify_first: bool,
                     reserve: int | None) -> tuple[bytes, int]:
    """One attempt; returns (signed bytes, hex characters reserved)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=True)
    if password is not None and writer.prev.encrypted:
        writer.encrypt(password)
    field_name = prepare_field(writer, reader, options, lock)
    level = options.level
    vc = _validation_context(services, chain) if level.long_term else None
    meta = PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm=None,
        reason=options.reason,
        location=options.location,
        contact_info=options.contact_info,
        subfilter=pdf_fields.SigSeedSubFilter.PADES,
        certify=certify_first,
        docmdp_permissions=options.certify_permits.mdp if certify_first else MDPPerm.FILL_FORMS,
        embed_validation_info=level.long_term,
        validation_context=vc,
        use_pades_lta=False,
        signer_key_usage=set(),
    )
    # pyHanko attaches per-document state (the PDF MAC provider) to the signer of an
    # encrypted document: such documents get a signer of their own.
    pyhanko_signer = (GovpkiPdfSigner(key.signer, key.certificate, chain)
                      if writer.security_handler is not None else key.pyhanko_signer(chain))
    timestamper = services.timestamper if level.timestamped else None
    if level.timestamped and timestamper is None:
        raise TimestampFailed(f"{level.value} needs a time-stamp, and no TSA is configured")
    pdf_signer = PdfSigner(meta, pyhanko_signer, timestamper=timestamper,
                           stamp_style=NoOpStampStyle())
    session = pdf_signer.init_signing_session(writer, existing_fields_only=True)
    session.cms_writer = _WithoutPyHankoAppearance(session.cms_writer)
    validation_info = await session.perform_presign_validation(writer)
    if reserve is None:
        measured = await session.estimate_signature_container_size(validation_info, tight=True)
        reserve = measured + SIZE_SLACK
    tbs = session.prepare_tbs_document(validation_info=validation_info, bytes_reserved=reserve)
    buffer = io.BytesIO()
    prepared, output = tbs.digest_tbs_document(output=buffer)
    post = await tbs.perform_signature(
        document_digest=prepared.document_digest,
        pdf_cms_signed_attrs=PdfCMSSignedAttributes(signing_time=session.system_time))
    await post.post_signature_processing(output)
    signed = buffer.getvalue()
    if level is Level.B_LTA:
        assert timestamper is not None and vc is not None
        signed = await _document_timestamp(signed, timestamper, pyhanko_signer.hash_name, vc,
                                           password)
    return signed, reserve


async def _document_timestamp(data: bytes, timestamper: TimeStamper, md_algorithm: str,
                              vc: ValidationContext, password: str | None) -> bytes:
    """B-LTA: a document time-stamp (ISO 32000-2 §12.8.5), sized like the signature."""
    dummy = await timestamper.async_dummy_response(md_algorithm)
    reserve = len(dummy.dump()) * 2 + SIZE_SLACK
    for _attempt in range(2):
        writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=True)
        if password is not None and writer.prev.encrypted:
            writer.encrypt(password)
        try:
            out = await PdfTimeStamper(timestamper, field_name=None).async_timestamp_pdf(
                writer, md_algorithm, validation_context=vc, bytes_reserved=reserve,
                output=io.BytesIO())
            return bytes(out.getvalue())
        except PyHankoSigningError as exc:
            needed = _OVERFLOW.search(str(exc))
            if needed is None:
                raise
            log.warning("document time-stamp needed %s hex characters, %d were reserved; "
                        "retrying with the exact size", needed.group(1), reserve)
            reserve = int(needed.group(1)) + max(SIZE_SLACK, RETRY_SLACK)
    raise SigningFailed("the document time-stamp did not fit its reserved space twice")


def _root_cause(exc: BaseException) -> BaseException:
    """pyHanko wraps certvalidator's verdict ("The signer's certificate could not be
    validated"); the certvalidator error underneath says why."""
    seen = {id(exc)}
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, cv_errors.PathValidationError | cv_errors.PathBuildingError
                      | cv_errors.InsufficientRevinfoError | cv_errors.OCSPFetchError
                      | cv_errors.CRLFetchError | TimestampRequestError):
            return current
        current = current.__cause__ or current.__context__
        if current is not None and id(current) in seen:
            break
        if current is not None:
            seen.add(id(current))
    return exc


def _translate(exc: BaseException) -> PdfError:
    """pyHanko/certvalidator failures as govpki's typed errors (one line, no trace)."""
    exc = _root_cause(exc)
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if isinstance(exc, TimestampRequestError):
        return TimestampFailed(f"the TSA did not time-stamp the signature: {text}")
    if isinstance(exc, cv_errors.RevokedError):
        if "certificate_hold" in text or "certificateHold" in text:
            return CertificateSuspended(f"a certificate in the signer's chain is suspended: "
                                        f"{text}")
        return CertificateRevoked(f"a certificate in the signer's or TSA's chain is revoked: "
                                  f"{text}")
    if isinstance(exc, cv_errors.InsufficientRevinfoError | cv_errors.OCSPFetchError
                  | cv_errors.CRLFetchError):
        return RevocationFetchFailed(f"revocation data for B-LT could not be gathered: {text}")
    if isinstance(exc, cv_errors.PathBuildingError | cv_errors.PathValidationError
                  | cv_errors.InvalidCertificateError):
        return CertificateRefused(f"the signer's or TSA's certificate does not validate: {text}")
    if isinstance(exc, PyHankoSigningError):
        if "Certification signatures must be the first" in text or "forbids" in text:
            return DocumentLocked(text)
        if "field" in text.lower():
            return FieldError(text)
        return SigningFailed(f"signing failed: {text}")
    if isinstance(exc, IOError):
        return SigningFailed(f"signing failed: {text}")
    return SigningFailed(f"signing failed: {type(exc).__name__}: {text}")


def _issuing_chain(key: SigningKey, services: SigningServices) -> tuple[x509.Certificate, ...]:
    """The signer's issuers up to the root: from the key's chain, else fetched over AIA
    caIssuers; remembered on the key (the chain of a certificate does not change)."""
    cached = key._cache.get("chain")
    if cached is None:
        cached = key._cache["chain"] = certs_of(
            complete_chain(key.certificate, key.chain, services.transport)[1:])
    return cached


async def async_sign_pdf(data: bytes, key: SigningKey, options: PadesOptions | None = None,
                         services: SigningServices | None = None, *,
                         password: str | None = None) -> bytes:
    """Sign ``data`` (a PDF) and return the signed PDF (an incremental update of it)."""
    options = options or PadesOptions()
    services = services or SigningServices()
    reader = open_pdf(data, services.limits, password=password)               # step 1
    existing = _check_not_locked(reader)
    chain = _issuing_chain(key, services)
    check_signing_certificate(key.certificate, chain, services)               # step 2
    certify_first = options.certify and existing == 0
    lock = options.certify and existing > 0
    reserve: int | None = None
    for _attempt in range(2):
        try:
            signed, used = await _sign_once(data, key, chain, options, services, password,
                                             reader, lock, certify_first, reserve)
            log.info("signed %s at %s: %d hex characters reserved for the container",
                     key.description or key.signer.key_uri, options.level.value, used)
            return signed
        except PyHankoSigningError as exc:
            needed = _OVERFLOW.search(str(exc))
            if needed is None or reserve is not None:
                raise _translate(exc) from None
            reserve = int(needed.group(1)) + max(SIZE_SLACK, RETRY_SLACK)
            log.warning("the signature container needed %s hex characters, more than "
                        "estimated; signing again with the exact size", needed.group(1))
        except PdfError:
            raise
        except Exception as exc:
            if isinstance(exc, GovpkiError):  # hsm errors (wrong PIN, token gone)
                raise
            raise _translate(exc) from None
    raise SigningFailed("the signature container did not fit its reserved space twice")


def sign_pdf(data: bytes, key: SigningKey, options: PadesOptions | None = None,
             services: SigningServices | None = None, *, password: str | None = None) -> bytes:
    """Synchronous :func:`async_sign_pdf` (its own event loop)."""
    return asyncio.run(async_sign_pdf(data, key, options, services, password=password))
