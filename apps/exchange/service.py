"""The exchange's operations, shared by the CLI, the REST API and (later) the web pages.

Each function takes the context, the acting RA operator and plain values; authorises through
:mod:`apps.exchange.authz` (``exchange.send`` / ``.receive`` / ``.view`` for an organisation);
does the work through :mod:`apps.exchange.hub`, :mod:`apps.exchange.package`,
:mod:`apps.exchange.receipts` and :mod:`apps.exchange.org_keys`; and returns frozen records
(:mod:`apps.exchange.records`). Every refusal — bad input, a classified document, a revoked
seal, a tampered body, a receipt for something never received — is an audit event before the
typed error reaches the edge. A web page is one more caller of these functions: it renders
what they return and shows ``GovpkiError.message`` when they raise.

``org`` arguments name the organisation the actor acts for; they default to the actor's own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from apps.exchange import hub, org_keys
from apps.exchange.authz import RECEIVE, SEND, VIEW, authorize, permits, scope_of
from apps.exchange.errors import Forbidden, OrgKeyMissing, ValidationError
from apps.exchange.header import OrgName
from apps.exchange.package import (
    DocumentFile,
    Draft,
    OpenedDocument,
    build_package,
    open_envelope,
    parse_package,
)
from apps.exchange.policy import ExchangePolicy, get_policy
from apps.exchange.receipts import BUSINESS_KINDS, TECHNICAL, make_receipt
from apps.exchange.records import FetchedPackage, PackageSummary, ReceiptRecord, Submission
from ca.context import CaContext
from core import audit
from core.db import transaction
from core.errors import GovpkiError
from ra.orgs import get_organisation, list_organisations
from ra.records import Operator, Organisation, Page

__all__ = [
    "OpenResult",
    "SendRequest",
    "fetch",
    "inbox",
    "open_document",
    "outbox",
    "overdue",
    "receipt",
    "receipts",
    "recipient_directory",
    "search",
    "send",
    "signed_header",
    "status",
    "submit",
    "submit_receipt",
]


@dataclass(frozen=True)
class SendRequest:
    """A document to send, organisations named by code (the names come from ra's tree)."""

    issuer: str
    number: str
    title: str
    date: dt.date
    urgency: str
    classification: str
    main: tuple[str, ...]
    copy: tuple[str, ...] = ()
    body: DocumentFile = field(default_factory=lambda: DocumentFile("", b""), repr=False)
    attachments: tuple[DocumentFile, ...] = field(default=(), repr=False)
    message_id: str | None = None


@dataclass(frozen=True)
class OpenResult:
    """An opened document, its verification (for display) and the technical receipt."""

    document: OpenedDocument
    receipt: ReceiptRecord
    verified_at: dt.datetime | None

    def verification(self) -> dict[str, Any]:
        """What a document view shows: the seal's verdict on the header (signature, chain,
        revocation) and that the body matched it."""
        checked = self.document.verification
        signer = checked.signer
        return {"valid": checked.valid, "reasons": list(checked.reasons),
                "seal": signer.as_dict() if signer is not None else None,
                "body_matches_header": True,
                "verified_at": self.verified_at.isoformat() if self.verified_at else None}


# -- helpers ---------------------------------------------------------------------------------------


def _organisation(ctx: CaContext, code: str) -> Organisation:
    with transaction(ctx.sessions) as session:
        try:
            return get_organisation(session, code)
        except GovpkiError:
            raise ValidationError(f"no organisation with code {code!r}", field="organisation",
                                  code=code) from None


def _acting_for(ctx: CaContext, actor: Operator, org: str | None, action: str,
                object_id: str = "") -> Organisation:
    organisation = actor.organisation if org is None else _organisation(ctx, org)
    authorize(ctx.sessions, actor, action, organisation, object_id=object_id)
    return organisation


@contextmanager
def _audited(ctx: CaContext, actor: str, action: str, object_id: str,
             **details: Any) -> Iterator[None]:
    """Record a refusal (or failure, for 5xx) of ``action`` when a typed error escapes; the
    transactions inside have ended by then. Authorisation refusals are audited already."""
    try:
        yield
    except Forbidden:
        raise
    except GovpkiError as exc:
        audit.record_refusal(
            ctx.sessions, actor=actor, action=action, object_type="exchange-package",
            object_id=object_id[:128],
            outcome="refused" if exc.http_status < 500 else "failure",
            details={**details, "error": exc.kind, "message": exc.message[:500]})
        raise


def _draft(ctx: CaContext, request: SendRequest) -> Draft:
    with transaction(ctx.sessions) as session:
        def name(code: str) -> OrgName:
            return org_keys.org_name(session, code)

        return Draft(number=request.number, title=request.title, issuer=name(request.issuer),
                     date=request.date, urgency=request.urgency,
                     classification=request.classification,
                     main=tuple(name(c) for c in request.main),
                     copy=tuple(name(c) for c in request.copy), body=request.body,
                     attachments=request.attachments, message_id=request.message_id)


# -- sending ---------------------------------------------------------------------------------------


def send(ctx: CaContext, actor: Operator, request: SendRequest, *,
         policy: ExchangePolicy | None = None) -> Submission:
    """Seal, encrypt and submit a document for ``request.issuer`` (exchange.send there).

    Refused before any key is used: a classified document, bad metadata, oversized files, a
    recipient without a valid encryption certificate (each checked for revocation in the CA's
    store now), a document number the organisation has used. A resend (same ``message_id``
    and content) returns the stored package with ``created=False``."""
    policy = policy or get_policy()
    _acting_for(ctx, actor, request.issuer, SEND)
    with _audited(ctx, actor.username, SEND, request.message_id or request.number,
                  sender=request.issuer, number=request.number,
                  classification=request.classification):
        draft = _draft(ctx, request)
        codes = [o.code for o, _ in draft.metadata.recipients]
        certificates = org_keys.encryption_certificates(ctx, codes)
        seal = org_keys.seal_key(ctx, request.issuer, policy)
        built = build_package(draft, policy, seal, certificates,
                              receipts_to=hub.receipts_to(ctx))
        parsed = parse_package(built.package, policy)
        return hub.submit(ctx, parsed, policy=policy, submitted_by=actor.username)


def submit(ctx: CaContext, actor: Operator, package: bytes, *,
           policy: ExchangePolicy | None = None) -> Submission:
    """Accept a package a department's own system built and sealed (REST). The actor needs
    exchange.send for the header's issuing organisation."""
    policy = policy or get_policy()
    with _audited(ctx, actor.username, SEND, "", sender=actor.organisation.code):
        parsed = parse_package(package, policy)
    issuer = parsed.header.metadata.issuer.code
    message_id = parsed.header.message_id
    _acting_for(ctx, actor, issuer, SEND, message_id)
    with _audited(ctx, actor.username, SEND, message_id, sender=issuer,
                  number=parsed.header.metadata.number,
                  classification=parsed.header.metadata.classification):
        return hub.submit(ctx, parsed, policy=policy, submitted_by=actor.username)


# -- receiving -------------------------------------------------------------------------------------


def inbox(ctx: CaContext, actor: Operator, *, org: str | None = None,
          state: str | None = None, business_state: str | None = None, page: int = 1,
          per_page: int = 50) -> Page[PackageSummary]:
    """Packages addressed to the organisation (exchange.receive), newest first."""
    organisation = _acting_for(ctx, actor, org, RECEIVE)
    return hub.inbox(ctx, organisation.code, transport_state=state,
                     business_state=business_state, page=page, per_page=per_page)


def fetch(ctx: CaContext, actor: Operator, message_id: str, *, org: str | None = None
          ) -> FetchedPackage:
    """The package bytes for a recipient whose own node opens it (exchange.receive)."""
    organisation = _acting_for(ctx, actor, org, RECEIVE, message_id)
    with _audited(ctx, actor.username, "exchange.fetch", message_id,
                  recipient=organisation.code):
        return hub.fetch(ctx, message_id, organisation.code, actor=actor.username)


def _decrypt(ctx: CaContext, org: str, parsed: Any
             ) -> tuple[DocumentFile, tuple[DocumentFile, ...]]:
    for decryptor, certificate in org_keys.decryptors(ctx, org):
        try:
            return open_envelope(parsed, decryptor, certificate)
        except OrgKeyMissing:
            continue  # encrypted to another of the organisation's keys
    raise OrgKeyMissing(f"package {parsed.header.message_id} is not encrypted to any key the "
                        f"server holds for {org}", organisation=org)


def open_document(ctx: CaContext, actor: Operator, message_id: str, *, org: str | None = None,
                  policy: ExchangePolicy | None = None) -> OpenResult:
    """Fetch, verify and decrypt a package with the organisation's server-held key
    (exchange.receive), and answer the first opening with the technical receipt (delivered,
    verified) signed by the organisation's seal.

    Before accepting: the body is the one the header names, the header's seal signature,
    chain and revocation verify (now; a package already delivered is judged as of its
    delivery), the seal is the sender's, and the decrypted content is what the header's
    digest says. Any failure is audited and nothing is acknowledged."""
    policy = policy or get_policy()
    organisation = _acting_for(ctx, actor, org, RECEIVE, message_id)
    code = organisation.code
    with _audited(ctx, actor.username, "exchange.open", message_id, recipient=code):
        fetched = hub.fetch(ctx, message_id, code, actor=actor.username)
        parsed = parse_package(fetched.package, policy)
        at = fetched.delivery.delivered_at
        verification = hub.verify_sender(ctx, parsed, policy, at=at)
        body, attachments = _decrypt(ctx, code, parsed)
        _signed_header, stored = hub.receipt_precheck(ctx, message_id, code, TECHNICAL, "",
                                                      policy=policy)
        if stored is None:
            seal = org_keys.seal_key(ctx, code, policy)
            statement = make_receipt(parsed.signed_header, message_id=message_id,
                                     kind=TECHNICAL, recipient=OrgName(code, organisation.name),
                                     seal=seal)
            stored, _created = hub.record_receipt(ctx, message_id, code, statement,
                                                  policy=policy, actor=actor.username)
    with transaction(ctx.sessions) as session:
        audit.record_event(session, actor=actor.username, action="exchange.open",
                           object_type="exchange-package", object_id=message_id,
                           outcome="success", details={"recipient": code})
    document = OpenedDocument(parsed.header, body, attachments, verification)
    return OpenResult(document, stored, at or stored.created_at)


def receipt(ctx: CaContext, actor: Operator, message_id: str, kind: str, *, reason: str = "",
            org: str | None = None, policy: ExchangePolicy | None = None) -> ReceiptRecord:
    """A business receipt — signed for (签收), returned (退回, with a reason), completed
    (办结) — signed with the organisation's server-held seal (exchange.receive). Repeating a
    step already taken returns the stored receipt."""
    policy = policy or get_policy()
    if kind not in BUSINESS_KINDS:
        raise ValidationError(f"kind must be one of {', '.join(BUSINESS_KINDS)} (the technical "
                              f"receipt is sent when the document is opened)", field="kind")
    organisation = _acting_for(ctx, actor, org, RECEIVE, message_id)
    code = organisation.code
    with _audited(ctx, actor.username, "exchange.receipt", message_id, recipient=code,
                  kind=kind):
        signed_header, stored = hub.receipt_precheck(ctx, message_id, code, kind, reason,
                                                     policy=policy)
        if stored is not None:
            return stored
        seal = org_keys.seal_key(ctx, code, policy)
        statement = make_receipt(signed_header, message_id=message_id, kind=kind,
                                 recipient=OrgName(code, organisation.name), seal=seal,
                                 reason=reason)
        record, _created = hub.record_receipt(ctx, message_id, code, statement, policy=policy,
                                              actor=actor.username)
        return record


def submit_receipt(ctx: CaContext, actor: Operator, message_id: str, statement: bytes, *,
                   org: str | None = None, policy: ExchangePolicy | None = None
                   ) -> tuple[ReceiptRecord, bool]:
    """A receipt signed on the recipient's own node (REST): verified and recorded like the
    server's own. (record, created)."""
    policy = policy or get_policy()
    organisation = _acting_for(ctx, actor, org, RECEIVE, message_id)
    with _audited(ctx, actor.username, "exchange.receipt", message_id,
                  recipient=organisation.code):
        return hub.record_receipt(ctx, message_id, organisation.code, statement,
                                  policy=policy, actor=actor.username)


# -- tracking and search ---------------------------------------------------------------------------


def _viewable_side(ctx: CaContext, actor: Operator, message_id: str) -> str | None:
    """None when the actor sees the whole package (sender side), else the one recipient
    whose delivery it may see; Forbidden (audited) when neither."""
    sender, recipients = hub.parties(ctx, message_id)
    sender_org = _organisation(ctx, sender)
    if permits(actor, VIEW, sender_org):
        return None
    for code in recipients:
        if permits(actor, VIEW, _organisation(ctx, code)):
            return code
    authorize(ctx.sessions, actor, VIEW, sender_org, object_id=message_id)
    raise AssertionError("authorize refuses here")  # pragma: no cover


def status(ctx: CaContext, actor: Operator, message_id: str) -> PackageSummary:
    """A package with its per-recipient technical and business states and overdue flags
    (exchange.view): every recipient for the sender's side, its own for a recipient."""
    only = _viewable_side(ctx, actor, message_id)
    return hub.package_summary(ctx, message_id, only_org=only)


def receipts(ctx: CaContext, actor: Operator, message_id: str) -> list[ReceiptRecord]:
    """The receipts of a package, as visible as :func:`status` (exchange.view)."""
    only = _viewable_side(ctx, actor, message_id)
    return hub.receipts_of(ctx, message_id, only)


def signed_header(ctx: CaContext, actor: Operator, message_id: str) -> bytes:
    """The package's signed header as stored (DER SignedData), what receipts answer: for
    ``openssl cms -verify_receipt RECEIPT -in HEADER`` (exchange.view, as :func:`status`)."""
    _viewable_side(ctx, actor, message_id)
    return hub.signed_header_of(ctx, message_id)


def _visible_orgs(ctx: CaContext, actor: Operator, org: str | None) -> list[str] | None:
    if org is not None:
        return [_acting_for(ctx, actor, org, VIEW).code]
    scope = scope_of(actor, VIEW)
    if scope is None:
        authorize(ctx.sessions, actor, VIEW, actor.organisation)
        return []  # pragma: no cover - authorize refused
    kind, value = scope
    if kind == "all":
        return None
    if kind == "self":
        return [value]
    with transaction(ctx.sessions) as session:
        return [o.code for o in list_organisations(session, value)]


def search(ctx: CaContext, actor: Operator, *, org: str | None = None,
           number: str | None = None, title: str | None = None,
           date_from: dt.date | None = None, date_to: dt.date | None = None,
           page: int = 1, per_page: int = 50) -> Page[PackageSummary]:
    """Packages the actor may see (sent or received by its organisations; exchange.view),
    by number and title (contains) and document date range."""
    orgs = _visible_orgs(ctx, actor, org)
    return hub.search(ctx, orgs, number=number, title=title, date_from=date_from,
                      date_to=date_to, page=page, per_page=per_page)


def outbox(ctx: CaContext, actor: Operator, *, org: str | None = None, page: int = 1,
           per_page: int = 50) -> Page[PackageSummary]:
    """Packages the organisation sent, newest first, with every recipient's state."""
    organisation = _acting_for(ctx, actor, org, VIEW)
    return hub.search(ctx, None, sender=organisation.code, page=page, per_page=per_page)


def overdue(ctx: CaContext, actor: Operator, *, org: str | None = None
            ) -> list[PackageSummary]:
    """Packages with a delivery not signed for by its deadline, among those visible."""
    orgs = _visible_orgs(ctx, actor, org)
    found = hub.overdue(ctx)
    if orgs is None:
        return found
    visible = set(orgs)
    return [p for p in found if p.sender.code in visible
            or any(d.recipient.code in visible for d in p.deliveries)]


# -- choosing recipients ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipientChoice:
    """An organisation of ra's tree as a sender picks recipients (主送/抄送) from it."""

    organisation: Organisation
    #: An active encryption key is registered; its certificate is checked again (status and
    #: validity in the CA's store) when the document is sent.
    can_receive: bool


def recipient_directory(ctx: CaContext, actor: Operator, *, org: str | None = None
                        ) -> list[RecipientChoice]:
    """The whole organisation tree in tree order, each marked whether documents can be
    encrypted to it (exchange.send for the sending organisation): what the web pages'
    compose form offers."""
    _acting_for(ctx, actor, org, SEND)
    with transaction(ctx.sessions) as session:
        tree = list_organisations(session)
    keyed = {k.org_code for k in org_keys.list_keys(ctx)
             if k.purpose == "encryption" and k.state == "active"}
    return [RecipientChoice(o, o.code in keyed) for o in tree]
