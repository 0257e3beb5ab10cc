"""The document package: build it (sender), take it apart and open it (hub, recipient).

A package is two CMS objects side by side (docs/exchange.md, "Package format"):

* the **header** — CMS SignedData (RFC 5652 §5) with the ExchangeHeader encapsulated
  (id-data), signed by the sending organisation's seal key, with an RFC 2634 receiptRequest
  (§2.7) whose signedContentIdentifier is the message id, so every receipt answers this
  signature. It is cleartext: the hub routes, tracks and searches by it.
* the **body** — CMS EnvelopedData (RFC 5652 §6): the DER DocumentContent (metadata again,
  the body PDF, the attachments) under a fresh AES-256-CBC key wrapped with RSAES-OAEP for
  each recipient organisation's encryption certificate. The hub never opens it.

The header binds the body twice: ``envelope_digest`` (SHA-256 of the EnvelopedData as sent,
so a changed ciphertext is caught before any key is used) and ``content_digest`` (SHA-256 of
the plaintext DocumentContent, which CBC cannot protect by itself: the signature over the
digest is the body's integrity). The content digest covers the message id, the metadata and
every file, so a resend of the same document gives the same id and digest however often it
is re-encrypted, and recipients eliminate duplicates by them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from cryptography import x509

from apps.exchange import asn1
from apps.exchange.errors import (
    MalformedPackage,
    OrgKeyMissing,
    PackageTooLarge,
    SignatureInvalid,
    TamperedPackage,
    ValidationError,
)
from apps.exchange.header import (
    FileInfo,
    Header,
    Metadata,
    OrgName,
    check_file_name,
    check_message_id,
    check_recipients,
    load_canonical,
    metadata_from_native,
    parse_header,
)
from apps.exchange.policy import ExchangePolicy
from core.errors import GovpkiError
from signing.cms import (
    OID_DATA,
    CmsVerification,
    RevocationChecker,
    parse_signed_data,
    sign_cms,
    verify_cms,
)
from signing.cms_envelope import Decryptor, decrypt_cms, encrypt_cms
from signing.cms_errors import CmsError, DecryptionFailed, NotARecipient
from signing.cms_receipt import make_receipt_request

if TYPE_CHECKING:
    from hsm.signer import Signer

PACKAGE_VERSION: Final = 1
CONTENT_VERSION: Final = 1
PDF_HEADER_WINDOW: Final = 1024
#: Room for the header, certificates and the envelope's own structure above the content.
PACKAGE_OVERHEAD: Final = 1024 * 1024


@dataclass(frozen=True)
class DocumentFile:
    """A file as the sender gives it and the recipient gets it back."""

    name: str
    content: bytes = field(repr=False)

    @property
    def info(self) -> FileInfo:
        return FileInfo(self.name, len(self.content), hashlib.sha256(self.content).digest())


@dataclass(frozen=True)
class Draft:
    """A document to send: the metadata the sender states, the body PDF and attachments.
    ``message_id`` is given only to resend a package (the same id and content again)."""

    number: str
    title: str
    issuer: OrgName
    date: dt.date
    urgency: str
    classification: str
    main: tuple[OrgName, ...]
    copy: tuple[OrgName, ...]
    body: DocumentFile
    attachments: tuple[DocumentFile, ...] = ()
    message_id: str | None = None

    @property
    def metadata(self) -> Metadata:
        return Metadata(self.number, self.title, self.issuer, self.date, self.urgency,
                        self.classification, self.main, self.copy)


@dataclass(frozen=True)
class SealKey:
    """The sending organisation's seal: a key in the server key store (or the department's
    own) and its department-seal certificate with the issuing chain."""

    signer: Signer
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class BuiltPackage:
    message_id: str
    header: Header
    signed_header: bytes = field(repr=False)
    envelope: bytes = field(repr=False)
    package: bytes = field(repr=False)


@dataclass(frozen=True)
class ParsedPackage:
    header: Header
    signed_header: bytes = field(repr=False)
    envelope: bytes = field(repr=False)


@dataclass(frozen=True)
class OpenedDocument:
    """What a recipient gets from a package: the verified header and the decrypted files."""

    header: Header
    body: DocumentFile
    attachments: tuple[DocumentFile, ...]
    verification: CmsVerification = field(repr=False)


# -- sender ----------------------------------------------------------------------------------------


def check_draft(draft: Draft, policy: ExchangePolicy) -> None:
    """Everything about a draft that policies/exchange.yaml decides, before any key is used:
    classification first (a classified document is refused whatever else it holds), then
    urgency, lengths, recipients, sizes and the body's PDF header."""
    policy.check_classification(draft.classification)
    policy.urgency(draft.urgency)
    limits = policy.limits
    for name, value, limit in (("number", draft.number, limits.max_number_chars),
                               ("title", draft.title, limits.max_title_chars)):
        if not value.strip() or len(value) > limit:
            raise ValidationError(f"{name} must be 1..{limit} characters", field=name)
    try:
        check_recipients(draft.issuer, draft.main, draft.copy)
        for i, f in enumerate((draft.body, *draft.attachments)):
            check_file_name(f.name, "body" if i == 0 else f"attachments[{i - 1}]")
        if draft.message_id is not None:
            check_message_id(draft.message_id)
    except MalformedPackage as exc:
        raise ValidationError(exc.message, **exc.details) from None
    if len(draft.main) + len(draft.copy) > limits.max_recipients:
        raise ValidationError(f"at most {limits.max_recipients} recipients", field="recipients")
    if len(draft.attachments) > limits.max_attachments:
        raise PackageTooLarge(f"{len(draft.attachments)} attachments, over the limit of "
                              f"{limits.max_attachments}", limit=limits.max_attachments)
    names = [a.name for a in draft.attachments]
    if len(set(names)) != len(names):
        raise ValidationError("two attachments have the same name", field="attachments")
    if not draft.body.content:
        raise ValidationError("the body PDF is empty", field="body")
    if len(draft.body.content) > limits.max_body_bytes:
        raise PackageTooLarge(f"the body is {len(draft.body.content)} bytes, over the limit of "
                              f"{limits.max_body_bytes}", limit=limits.max_body_bytes)
    if b"%PDF-" not in draft.body.content[:PDF_HEADER_WINDOW]:
        raise ValidationError(f"the body {draft.body.name!r} is not a PDF (no %PDF- header)",
                              field="body")
    for a in draft.attachments:
        if len(a.content) > limits.max_attachment_bytes:
            raise PackageTooLarge(f"attachment {a.name!r} is {len(a.content)} bytes, over the "
                                  f"limit of {limits.max_attachment_bytes}",
                                  limit=limits.max_attachment_bytes, attachment=a.name)
    total = len(draft.body.content) + sum(len(a.content) for a in draft.attachments)
    if total > limits.max_package_bytes:
        raise PackageTooLarge(f"body and attachments are {total} bytes, over the limit of "
                              f"{limits.max_package_bytes}", limit=limits.max_package_bytes)


def content_der(message_id: str, metadata: Metadata, body: DocumentFile,
                attachments: Sequence[DocumentFile]) -> bytes:
    """The DocumentContent (DER): the plaintext of the envelope and what content_digest
    covers. Deterministic, so a resend has the same digest."""
    return bytes(asn1.DocumentContent({
        "version": CONTENT_VERSION, "message_id": message_id, "metadata": metadata.to_asn1(),
        "body": {"name": body.name, "content": body.content},
        "attachments": [{"name": a.name, "content": a.content} for a in attachments],
    }).dump(force=True))


def build_package(draft: Draft, policy: ExchangePolicy, seal: SealKey,
                  recipient_certificates: Mapping[str, x509.Certificate], *,
                  receipts_to: str, sent_at: dt.datetime | None = None) -> BuiltPackage:
    """Sign and encrypt ``draft``. ``recipient_certificates`` maps every recipient's code to
    its organisation-encryption certificate, already checked for revocation by the caller
    (signing.cms_envelope checks validity and key usage again). ``receipts_to`` is the
    hub's URI that receipts are returned to (RFC 2634 receiptsTo)."""
    check_draft(draft, policy)
    missing = [o.code for o, _ in draft.metadata.recipients
               if o.code not in recipient_certificates]
    if missing:
        raise OrgKeyMissing(f"no encryption certificate given for {', '.join(missing)}")
    message_id = draft.message_id or str(uuid.uuid4())
    metadata = draft.metadata
    plaintext = content_der(message_id, metadata, draft.body, draft.attachments)
    content_digest = hashlib.sha256(plaintext).digest()
    certificates = [recipient_certificates[o.code] for o, _ in metadata.recipients]
    envelope = encrypt_cms(plaintext, certificates)
    when = (sent_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    header = Header(
        message_id=message_id, metadata=metadata, content_digest=content_digest,
        envelope_digest=hashlib.sha256(envelope).digest(), sent_at=when,
        deadline=policy.deadline(draft.urgency, when), body=draft.body.info,
        attachments=tuple(a.info for a in draft.attachments))
    request = make_receipt_request([receipts_to], content_identifier=message_id.encode())
    signed_header = sign_cms(header.to_der(), seal.signer, seal.certificate, seal.chain,
                             detached=False, signed_attributes=[request], signing_time=when)
    package = package_der(signed_header, envelope)
    return BuiltPackage(message_id, header, signed_header, envelope, package)


def package_der(signed_header: bytes, envelope: bytes) -> bytes:
    return bytes(asn1.ExchangePackage({"version": PACKAGE_VERSION, "header": signed_header,
                                       "body": envelope}).dump(force=True))


# -- hub and recipient -----------------------------------------------------------------------------


def header_of(signed_header: bytes) -> Header:
    """The ExchangeHeader inside a signed header (not yet verified: see verify_header)."""
    try:
        parsed = parse_signed_data(signed_header, expected_content_type=OID_DATA)
    except CmsError as exc:
        raise MalformedPackage(f"the package header is not a CMS SignedData: {exc.message}") \
            from None
    if parsed.content is None:
        raise MalformedPackage("the package header is detached: the header must be inside "
                               "its signature")
    if len(parsed.signer_infos) != 1:
        raise MalformedPackage("the package header must have exactly one signer (the "
                               "sending organisation's seal)")
    return parse_header(parsed.content)


def parse_package(der: bytes, policy: ExchangePolicy) -> ParsedPackage:
    """Take a package apart and check that the body is the one the header names. The header's
    signature is not checked here (see :func:`verify_header`)."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise TypeError(f"a package is bytes, not {type(der).__name__}")
    limit = policy.limits.max_package_bytes + PACKAGE_OVERHEAD
    if len(der) > limit:
        raise PackageTooLarge(f"the package is {len(der)} bytes, over the limit of {limit}",
                              limit=limit)
    native = load_canonical(asn1.ExchangePackage, bytes(der), "package")
    if native["version"] != PACKAGE_VERSION:
        raise MalformedPackage(f"package version {native['version']} is not "
                               f"{PACKAGE_VERSION}", field="version")
    signed_header, envelope = bytes(native["header"]), bytes(native["body"])
    header = header_of(signed_header)
    check_envelope(header, envelope)
    return ParsedPackage(header, signed_header, envelope)


def check_envelope(header: Header, envelope: bytes) -> None:
    if hashlib.sha256(envelope).digest() != header.envelope_digest:
        raise TamperedPackage(f"the encrypted body of {header.message_id} is not the one its "
                              f"signed header names (changed in storage or in transit)",
                              message_id=header.message_id)


def verify_header(signed_header: bytes, *, trust_roots: Iterable[x509.Certificate],
                  revocation: RevocationChecker, at: dt.datetime | None = None
                  ) -> CmsVerification:
    """The header's signature, chain and revocation (RFC 5652 §5.6 through verify_cms), or
    SignatureInvalid with the reasons. Whose seal it is, is the caller's check."""
    try:
        verification = verify_cms(signed_header, None, trust_roots=list(trust_roots), at=at,
                                  revocation=revocation)
    except CmsError as exc:
        raise MalformedPackage(f"the package header cannot be verified: {exc.message}") \
            from None
    if not verification.valid:
        raise SignatureInvalid("the package header's signature is not valid: "
                               + "; ".join(verification.reasons),
                               reasons="; ".join(verification.reasons))
    return verification


def open_envelope(parsed: ParsedPackage, decryptor: Decryptor,
                  certificate: x509.Certificate) -> tuple[DocumentFile, tuple[DocumentFile, ...]]:
    """Decrypt the body with the recipient's key and check it against the signed header:
    content digest, message id, metadata and every file. Any difference is TamperedPackage."""
    header = parsed.header
    check_envelope(header, parsed.envelope)
    try:
        plaintext = decrypt_cms(parsed.envelope, decryptor, certificate)
    except NotARecipient:
        raise OrgKeyMissing(f"package {header.message_id} is not encrypted to the certificate "
                            f"serial {certificate.serial_number:x}", message_id=header.message_id
                            ) from None
    except DecryptionFailed:
        raise TamperedPackage(f"the body of {header.message_id} does not decrypt: the "
                              f"ciphertext was changed or damaged",
                              message_id=header.message_id) from None
    except CmsError as exc:
        raise TamperedPackage(f"the body of {header.message_id} cannot be opened: "
                              f"{exc.message}", message_id=header.message_id) from None
    if hashlib.sha256(plaintext).digest() != header.content_digest:
        raise TamperedPackage(f"the decrypted body of {header.message_id} is not the content "
                              f"its signed header names", message_id=header.message_id)
    return _files_of(header, plaintext)


def _files_of(header: Header, plaintext: bytes
              ) -> tuple[DocumentFile, tuple[DocumentFile, ...]]:
    try:
        native: Any = load_canonical(asn1.DocumentContent, plaintext, "document content")
        if native["version"] != CONTENT_VERSION or native["message_id"] != header.message_id:
            raise MalformedPackage("the content names another version or message id")
        if metadata_from_native(native["metadata"]) != header.metadata:
            raise MalformedPackage("the content's metadata differ from the header's")
        body = DocumentFile(native["body"]["name"], bytes(native["body"]["content"]))
        attachments = tuple(DocumentFile(a["name"], bytes(a["content"]))
                            for a in native["attachments"])
    except GovpkiError as exc:
        raise TamperedPackage(f"the body of {header.message_id} does not match its header: "
                              f"{exc.message}", message_id=header.message_id) from None
    if body.info != header.body or tuple(a.info for a in attachments) != header.attachments:
        raise TamperedPackage(f"the files in {header.message_id} differ from the list in its "
                              f"header", message_id=header.message_id)
    return body, attachments
