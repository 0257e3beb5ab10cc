"""RFC 2634 (ESS) signed receipts: proof that a recipient received and verified a signed
message, bound to that message's signature value.

The sender puts a receiptRequest (§2.7) into the signed attributes of its SignedData
(:func:`make_receipt_request`, passed to :func:`signing.cms.sign_cms`). The recipient answers
with :func:`sign_receipt` (§2.4): a SignedData whose encapsulated content is a ``Receipt``
(§2.8: version 1, the original contentType, the signedContentIdentifier from the request, the
original SignatureValue) and whose signed attributes carry msgSigDigest (§2.10), the digest of
the original signer's signed attributes. :func:`verify_receipt` checks the receipt's own
signature and chain, then §2.6: that it answers exactly this message.

``openssl cms -verify_receipt RECEIPT -in ORIGINAL`` checks the same binding (OpenSSL's
``ossl_cms_Receipt_verify``): it finds the original SignerInfo by the receipt's
originatorSignatureValue and recomputes msgSigDigest with *that SignerInfo's* digest algorithm.
The receipt is always signed with the original signer's digest algorithm too, so whichever of
the two algorithms a verifier takes, it computes the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hsm.signer import Signer
from signing.cms import (
    _HASHES,
    OID_CONTENT_TYPE,
    CertificateInput,
    CmsVerification,
    ParsedSignedData,
    ParsedSignerInfo,
    RevocationChecker,
    Timestamper,
    _find_certificate,
    _sign_econtent,
    _verify_signature,
    load_certificates,
    parse_signed_data,
    verify_cms,
)
from signing.cms_errors import MalformedCms, ReceiptError

__all__ = [
    "ReceiptRequestInfo",
    "ReceiptVerification",
    "make_receipt_request",
    "receipt_request_of",
    "sign_receipt",
    "verify_receipt",
]

OID_RECEIPT_REQUEST = "1.2.840.113549.1.9.16.2.1"
OID_MSG_SIG_DIGEST = "1.2.840.113549.1.9.16.2.5"
OID_CT_RECEIPT = "1.2.840.113549.1.9.16.1.1"
MAX_RECEIPTS_TO = 16  # ub-receiptsTo, RFC 2634 §2.7


class _GeneralNamesList(core.SequenceOf):
    _child_spec = asn1_x509.GeneralNames


class ReceiptsFrom(core.Choice):
    """RFC 2634 §2.7: allOrFirstTier [0] INTEGER { allReceipts(0), firstTierRecipients(1) }
    or receiptList [1] SEQUENCE OF GeneralNames."""

    _alternatives = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("all_or_first_tier", core.Integer, {"implicit": 0}),
        ("receipt_list", _GeneralNamesList, {"implicit": 1}),
    ]


class ReceiptRequest(core.Sequence):
    _fields = [  # noqa: RUF012
        ("signed_content_identifier", core.OctetString),
        ("receipts_from", ReceiptsFrom),
        ("receipts_to", _GeneralNamesList),
    ]


class Receipt(core.Sequence):
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("content_type", core.ObjectIdentifier),
        ("signed_content_identifier", core.OctetString),
        ("originator_signature_value", core.OctetString),
    ]


GeneralNameInput = str | x509.GeneralName


def _general_name(value: GeneralNameInput) -> asn1_x509.GeneralName:
    """An e-mail address, a URI (``scheme://...``), or a pyca RFC822Name,
    UniformResourceIdentifier or DirectoryName."""
    if isinstance(value, x509.RFC822Name | x509.UniformResourceIdentifier):
        value = value.value
    if isinstance(value, str):
        kind = ("uniform_resource_identifier" if "://" in value
                else "rfc822_name" if "@" in value else None)
        if kind is None:
            raise ValueError(f"receipts_to entry {value!r} is neither an e-mail address nor a "
                             f"URI (give an x509.DirectoryName for a name)")
        try:
            return asn1_x509.GeneralName({kind: value})
        except (UnicodeError, ValueError):
            # rfc822Name and URI are IA5String (RFC 5280 §4.2.1.6): an internationalised
            # mailbox would need SmtpUTF8Mailbox (RFC 9598), which receipts do not use.
            raise ValueError(f"receipts_to entry {value!r} must be ASCII (a non-ASCII domain "
                             f"is converted to IDNA, a non-ASCII mailbox is not allowed)") \
                from None
    if isinstance(value, x509.DirectoryName):
        return asn1_x509.GeneralName({"directory_name": asn1_x509.Name.load(
            value.value.public_bytes())})
    raise TypeError(f"receipts_to entries must be str or an x509 RFC822Name, "
                    f"UniformResourceIdentifier or DirectoryName, not {type(value).__name__}")


def make_receipt_request(receipts_to: Sequence[GeneralNameInput], *,
                         content_identifier: bytes | None = None,
                         receipts_from: Literal["all", "first-tier"]
                         | Sequence[GeneralNameInput] = "all") -> cms.CMSAttribute:
    """The receiptRequest signed attribute (RFC 2634 §2.7) for :func:`signing.cms.sign_cms`.

    ``receipts_to``: where receipts go, one GeneralNames each (e-mail, URI or directory name).
    ``content_identifier``: the signedContentIdentifier receipts will quote; 32 random bytes
    by default (as openssl does) — the exchange passes its global message id so that a receipt
    is tied to the package. ``receipts_from``: everyone (``"all"``), the first tier of
    recipients, or a list of names.
    """
    if not receipts_to:
        raise ValueError("receipts_to needs at least one name (RFC 2634 §2.7)")
    if len(receipts_to) > MAX_RECEIPTS_TO:
        raise ValueError(f"receipts_to holds at most {MAX_RECEIPTS_TO} names "
                         f"(ub-receiptsTo)")
    identifier = content_identifier if content_identifier is not None else secrets.token_bytes(32)
    if not isinstance(identifier, bytes) or not identifier:
        raise ValueError("content_identifier must be non-empty bytes")
    if receipts_from == "all":
        source = ReceiptsFrom({"all_or_first_tier": 0})
    elif receipts_from == "first-tier":
        source = ReceiptsFrom({"all_or_first_tier": 1})
    else:
        if isinstance(receipts_from, str) or not receipts_from:
            raise ValueError("receipts_from is 'all', 'first-tier' or a non-empty list of names")
        source = ReceiptsFrom({"receipt_list": [[_general_name(n)] for n in receipts_from]})
    request = ReceiptRequest({
        "signed_content_identifier": identifier,
        "receipts_from": source,
        "receipts_to": [[_general_name(n)] for n in receipts_to],
    })
    return cms.CMSAttribute({"type": OID_RECEIPT_REQUEST, "values": [request]})


@dataclass(frozen=True)
class ReceiptRequestInfo:
    """A receipt request as found in a signed message."""

    signer_index: int
    content_identifier: bytes
    receipts_from: str | tuple[str, ...]  # "all" | "first-tier" | names
    receipts_to: tuple[str, ...]


def _names_text(names: Any) -> tuple[str, ...]:
    out: list[str] = []
    for general_names in names:
        for name in general_names:
            value = name.chosen
            out.append(value.human_friendly if name.name == "directory_name"
                       else str(value.native))
    return tuple(out)


def _request_of(si: ParsedSignerInfo) -> ReceiptRequestInfo | None:
    values = si.attributes.get(OID_RECEIPT_REQUEST)
    if not values:
        return None
    request = ReceiptRequest.load(values[0], strict=True)
    source = request["receipts_from"]
    if source.name == "all_or_first_tier":
        origin: str | tuple[str, ...] = "all" if source.chosen.native == 0 else "first-tier"
    else:
        origin = _names_text(source.chosen)
    return ReceiptRequestInfo(si.index, bytes(request["signed_content_identifier"].native),
                              origin, _names_text(request["receipts_to"]))


def receipt_request_of(signed_data: bytes) -> ReceiptRequestInfo | None:
    """The first receipt request among a signed message's signers, if any."""
    parsed = parse_signed_data(signed_data)
    for si in parsed.signer_infos:
        try:
            found = _request_of(si)
        except Exception:
            raise MalformedCms("the receiptRequest attribute cannot be read") from None
        if found is not None:
            return found
    return None


def _msg_sig_digest(si: ParsedSignerInfo) -> bytes:
    """RFC 2634 §2.4 step 5 / §2.10 as OpenSSL computes it: the original signer's digest
    algorithm over the DER SET OF its signed attributes."""
    assert si.signed_attrs_der is not None
    return hashlib.new(si.digest_name, si.signed_attrs_der).digest()


def _requesting_signer(original: ParsedSignedData) -> tuple[ParsedSignerInfo,
                                                            ReceiptRequestInfo]:
    """The first signer with a receipt request; RFC 2634 §2.2.1/§2.3: when several signers
    request receipts, the requests must be identical or no receipt is returned."""
    found: list[tuple[ParsedSignerInfo, ReceiptRequestInfo]] = []
    for si in original.signer_infos:
        values = si.attributes.get(OID_RECEIPT_REQUEST)
        if values is not None and len(values) != 1:
            raise ReceiptError("a receiptRequest attribute must have exactly one value "
                               "(RFC 2634 §1.3.4)")
        try:
            request = _request_of(si)
        except Exception:
            raise ReceiptError("the original message's receiptRequest cannot be read") \
                from None
        if request is not None:
            found.append((si, request))
    if not found:
        raise ReceiptError("the original message requests no receipt (no receiptRequest "
                           "attribute): a receipt answers a request (RFC 2634 §2.3)")
    if len({values for si, _ in found
            for values in si.attributes[OID_RECEIPT_REQUEST]}) > 1:
        raise ReceiptError("the signers of the original request different receipts: RFC 2634 "
                           "§2.3 forbids returning any")
    return found[0]


def _may_answer(si: ParsedSignerInfo, certificate_der: bytes) -> bool:
    """§2.3: with a receiptList, only the listed entities return receipts. The certificate
    speaks for its subject (directoryName) and its e-mail and URI subjectAltNames."""
    source = ReceiptRequest.load(si.attributes[OID_RECEIPT_REQUEST][0])["receipts_from"]
    if source.name == "all_or_first_tier":
        return True  # firstTierRecipients only matters behind a mail list agent
    cert = asn1_x509.Certificate.load(certificate_der)
    alt_names = cert.subject_alt_name_value
    own = {(n.name, n.native) for n in alt_names or []
           if n.name in ("rfc822_name", "uniform_resource_identifier")}
    for general_names in source.chosen:
        for name in general_names:
            if name.name == "directory_name" and name.chosen == cert.subject:
                return True
            if name.name in ("rfc822_name", "uniform_resource_identifier") \
                    and (name.name, name.native) in own:
                return True
    return False


def sign_receipt(original_signed_data: bytes, signer: Signer, certificate: CertificateInput,
                 chain: Iterable[CertificateInput] = (), *,
                 timestamp: Timestamper | None = None,
                 signing_time: dt.datetime | None = None) -> bytes:
    """A signed receipt (DER ContentInfo(SignedData) with id-ct-receipt content) for the
    signer of ``original_signed_data`` that requested one.

    The original signer's signature over its signed attributes is checked first (RFC 2634
    §2.3 and §2.4 step 1: no receipt for a request whose signature does not verify); checking
    its chain and revocation is the caller's part, done before accepting the message.
    Refuses (ReceiptError) when no receipt was requested, the original is itself a receipt
    (§2.2), several signers request different receipts, or the request lists who may answer
    and ``certificate`` is not among them (§2.3).
    """
    original = parse_signed_data(original_signed_data)
    if original.content_type == OID_CT_RECEIPT:
        raise ReceiptError("the message is itself a receipt: receipts are never requested for "
                           "receipts (RFC 2634 §2.2)")
    si, request = _requesting_signer(original)
    if si.signed_attrs_der is None or si.digest_name not in _HASHES:
        raise ReceiptError("the requesting signer has no signed attributes or an unaccepted "
                           "digest algorithm")
    receipt_signer = load_certificates(certificate, "certificate")
    if len(receipt_signer) == 1 and not _may_answer(
            si, receipt_signer[0].public_bytes(serialization.Encoding.DER)):
        raise ReceiptError("the original requests receipts only from "
                           f"{', '.join(request.receipts_from)}, not from "
                           f"{receipt_signer[0].subject.rfc4514_string()}")
    originator = _find_certificate(si, original.certificates)
    if originator is None:
        raise ReceiptError("the original signer's certificate is not in the message")
    # The signature over the signed attributes needs no content (it may be detached and
    # already verified by the caller against the document).
    problem = _verify_signature(si, originator.pyca.public_key(), si.signed_attrs_der,
                                si.digest_name, prehashed=False)
    if problem:
        raise ReceiptError(f"the original signature does not verify: {problem}")
    receipt = Receipt({
        "version": 1,
        "content_type": _content_type_of(si),
        "signed_content_identifier": request.content_identifier,
        "originator_signature_value": si.signature,
    })
    econtent = bytes(receipt.dump())
    hash_name = si.digest_name
    msg_sig_digest = cms.CMSAttribute({"type": OID_MSG_SIG_DIGEST,
                                       "values": [core.OctetString(_msg_sig_digest(si))]})
    return _sign_econtent(
        econtent_type=OID_CT_RECEIPT, digest_value=hashlib.new(hash_name, econtent).digest(),
        econtent=econtent, signer=signer, certificate=certificate, chain=chain,
        hash_name=hash_name, timestamp=timestamp, extra_attributes=[msg_sig_digest],
        signing_time=signing_time)


def _content_type_of(si: ParsedSignerInfo) -> str:
    values = si.attributes.get(OID_CONTENT_TYPE)
    if not values or len(values) != 1:
        raise ReceiptError("the original signer has no contentType attribute")
    return str(core.ObjectIdentifier.load(values[0]).dotted)


@dataclass(frozen=True)
class ReceiptVerification:
    """A signed receipt's verdict: its own signature (``receipt``) and the RFC 2634 §2.6
    binding to the original message."""

    valid: bool
    reasons: tuple[str, ...]
    receipt: CmsVerification
    content_identifier: bytes | None
    signer_certificate: x509.Certificate | None
    signing_time: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        cert = self.signer_certificate
        return {
            "valid": self.valid,
            "reasons": list(self.reasons),
            "content_identifier": self.content_identifier.hex()
            if self.content_identifier is not None else None,
            "signer": cert.subject.rfc4514_string() if cert else None,
            "signing_time": self.signing_time.isoformat() if self.signing_time else None,
            "receipt": self.receipt.as_dict(),
        }


def verify_receipt(receipt: bytes, original_signed_data: bytes, *,
                   trust_roots: CertificateInput | Iterable[CertificateInput],
                   at: dt.datetime | None = None,
                   revocation: RevocationChecker | None = None) -> ReceiptVerification:
    """Verify a signed receipt against the message it answers (RFC 2634 §2.6).

    The receipt's own signature, chain and revocation are checked as by
    :func:`signing.cms.verify_cms`; then: one signer; content id-ct-receipt; a Receipt v1 whose
    originatorSignatureValue is a signature of the original; msgSigDigest equal to the digest
    of that signer's signed attributes; the original contentType; and the
    signedContentIdentifier of the original's receiptRequest.
    """
    checked = verify_cms(receipt, None, trust_roots=trust_roots, at=at, revocation=revocation)
    reasons = list(checked.reasons)
    original = parse_signed_data(original_signed_data)
    identifier: bytes | None = None
    if checked.content_type != OID_CT_RECEIPT or checked.content is None:
        reasons.append("not a signed receipt (the content is not id-ct-receipt)")
    elif len(checked.signers) != 1:
        reasons.append("a signed receipt has exactly one signer")
    else:
        try:
            rct = Receipt.load(checked.content, strict=True)
            version = rct["version"].native
            content_type = rct["content_type"].dotted
            identifier = bytes(rct["signed_content_identifier"].native)
            signature_value = bytes(rct["originator_signature_value"].native)
        except Exception:
            reasons.append("the Receipt content cannot be read")
        else:
            try:
                reasons.extend(_binding_problems(checked, original, version, content_type,
                                                 identifier, signature_value))
            except Exception:  # a damaged msgSigDigest or request value
                reasons.append("the receipt's or the original's ESS attributes cannot be read")
    signer = checked.signer
    return ReceiptVerification(
        valid=not reasons, reasons=tuple(reasons), receipt=checked,
        content_identifier=identifier,
        signer_certificate=signer.certificate if signer else None,
        signing_time=signer.signing_time if signer else None)


def _binding_problems(checked: CmsVerification, original: ParsedSignedData, version: int,
                      content_type: str, identifier: bytes, signature_value: bytes) -> list[str]:
    if version != 1:
        return [f"Receipt version {version} is not 1"]
    osi = next((si for si in original.signer_infos if si.signature == signature_value), None)
    if osi is None:
        return ["the receipt answers another message (no signature of the original matches "
                "its originatorSignatureValue)"]
    problems: list[str] = []
    signer = checked.signers[0]
    digests = signer.attributes.get(OID_MSG_SIG_DIGEST)
    if not digests or len(digests) != 1:
        problems.append("the receipt has no msgSigDigest attribute")
    elif osi.signed_attrs_der is None or osi.digest_name not in _HASHES:
        problems.append("the original signer has no signed attributes to digest")
    elif core.OctetString.load(digests[0]).native != _msg_sig_digest(osi):
        problems.append("msgSigDigest does not match the original signer's signed attributes")
    try:
        original_type = _content_type_of(osi)
        request = _request_of(osi)
    except Exception:
        return [*problems, "the original message's attributes cannot be read"]
    if original_type != content_type:
        problems.append("the receipt names another content type than the original")
    if request is None:
        problems.append("the original message requested no receipt")
    elif request.content_identifier != identifier:
        problems.append("the receipt's signedContentIdentifier differs from the request's")
    return problems
