"""The exchange hub: store and forward. It checks what it can see — the header's signature,
chain and revocation, the sender's seal, the policy, that the body is the one the header
names — and never what it cannot: the body stays encrypted.

Reliability (docs/exchange.md, "Delivery"):

* :func:`submit` stores the package and one delivery row per recipient in **one transaction**
  with its audit event; only after the commit does the sender hear "accepted". A crash before
  the commit leaves nothing; after it, everything.
* The message id is unique: a resend of the same id and content digest is answered with the
  stored package (``created=False``) and stores nothing; the same id with other content is
  refused. So a sender that lost the answer simply sends again.
* :func:`fetch` is idempotent: it hands out the same bytes every time and counts; the first
  fetch moves the delivery from ``pending`` to ``fetched``.
* :func:`record_receipt` moves state by conditional updates (``... WHERE state = expected``),
  so two concurrent receipts cannot both take one step; a receipt already recorded is returned
  again instead of being stored twice (duplicates eliminated).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from apps.exchange import models
from apps.exchange.errors import (
    DuplicateDocumentNumber,
    InvalidTransition,
    MessageIdConflict,
    NotReceived,
    PackageNotFound,
    PackageTooLarge,
    ReceiptInvalid,
    SignatureInvalid,
    ValidationError,
)
from apps.exchange.header import Header, OrgName
from apps.exchange.org_keys import is_registered_seal, org_name, trust_chain
from apps.exchange.package import (
    ParsedPackage,
    header_of,
    package_der,
    verify_header,
)
from apps.exchange.policy import ExchangePolicy
from apps.exchange.receipts import TECHNICAL, VerifiedReceipt, statement_of, verify
from apps.exchange.records import (
    DeliveryStatus,
    FetchedPackage,
    PackageSummary,
    ReceiptRecord,
    Submission,
)
from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow
from ra.records import Page
from signing.cms import CmsVerification, store_revocation

#: business step → the state it needs and the state it leaves
BUSINESS_STEPS: Final = {
    "signed-for": ("none", "signed-for"),
    "returned": ("none", "returned"),
    "completed": ("signed-for", "completed"),
}


def receipts_to(ctx: CaContext) -> str:
    """Where receipts are returned (RFC 2634 receiptsTo): the hub's API on this
    installation's public base URL."""
    return f"{ctx.config.public_base_url.rstrip('/')}/api/v1/exchange"


# -- checks ----------------------------------------------------------------------------------------


def check_header_policy(session: Session, header: Header, policy: ExchangePolicy) -> None:
    """What policies/exchange.yaml says about a header, and that its organisations exist."""
    meta = header.metadata
    policy.check_classification(meta.classification)
    policy.urgency(meta.urgency)
    limits = policy.limits
    if len(meta.number) > limits.max_number_chars:
        raise ValidationError(f"number must be at most {limits.max_number_chars} characters",
                              field="number")
    if len(meta.title) > limits.max_title_chars:
        raise ValidationError(f"title must be at most {limits.max_title_chars} characters",
                              field="title")
    if len(meta.main) + len(meta.copy) > limits.max_recipients:
        raise ValidationError(f"at most {limits.max_recipients} recipients", field="recipients")
    if len(header.attachments) > limits.max_attachments:
        raise PackageTooLarge(f"{len(header.attachments)} attachments, over the limit of "
                              f"{limits.max_attachments}", limit=limits.max_attachments)
    if header.body.size > limits.max_body_bytes:
        raise PackageTooLarge(f"the body is {header.body.size} bytes, over the limit of "
                              f"{limits.max_body_bytes}", limit=limits.max_body_bytes)
    for a in header.attachments:
        if a.size > limits.max_attachment_bytes:
            raise PackageTooLarge(f"attachment {a.name!r} is {a.size} bytes, over the limit of "
                                  f"{limits.max_attachment_bytes}",
                                  limit=limits.max_attachment_bytes, attachment=a.name)
    total = header.body.size + sum(a.size for a in header.attachments)
    if total > limits.max_package_bytes:
        raise PackageTooLarge(f"body and attachments are {total} bytes, over the limit of "
                              f"{limits.max_package_bytes}", limit=limits.max_package_bytes)
    if header.deadline != policy.deadline(meta.urgency, header.sent_at):
        raise ValidationError(f"the deadline must be {policy.urgency(meta.urgency).hours} "
                              f"hours after sending for urgency {meta.urgency}",
                              field="deadline")
    for org in (meta.issuer, *meta.main, *meta.copy):
        org_name(session, org.code)


def verify_sender(ctx: CaContext, parsed: ParsedPackage, policy: ExchangePolicy, *,
                  at: dt.datetime | None = None) -> CmsVerification:
    """The header's signature, chain and revocation (at ``at``, default now), and that it is
    the issuing organisation's registered seal: SignatureInvalid otherwise."""
    with transaction(ctx.sessions) as session:
        _chain, root = trust_chain(session, policy.ca)
    verification = verify_header(parsed.signed_header, trust_roots=[root],
                                 revocation=store_revocation(ctx), at=at)
    signer = verification.signer_certificate
    issuer = parsed.header.metadata.issuer.code
    with transaction(ctx.sessions) as session:
        registered = signer is not None and is_registered_seal(session, issuer, signer)
    if not registered:
        raise SignatureInvalid(f"the header of {parsed.header.message_id} is not signed with "
                               f"a seal of {issuer}", message_id=parsed.header.message_id)
    return verification


# -- reading ---------------------------------------------------------------------------------------


def _delivery_status(row: models.Delivery, deadline: dt.datetime, now: dt.datetime
                     ) -> DeliveryStatus:
    return DeliveryStatus(
        recipient=OrgName(row.recipient_org, row.recipient_name), role=row.role,
        transport_state=row.transport_state, business_state=row.business_state,
        fetched_at=row.fetched_at, delivered_at=row.delivered_at, business_at=row.business_at,
        return_reason=row.return_reason,
        overdue=row.business_state == "none" and now > deadline)


def _summary(session: Session, row: models.Package, only_org: str | None = None
             ) -> PackageSummary:
    query = select(models.Delivery).where(models.Delivery.package_id == row.id)
    if only_org is not None:
        query = query.where(models.Delivery.recipient_org == only_org)
    now = utcnow()
    deliveries = tuple(_delivery_status(d, row.deadline, now)
                       for d in session.scalars(query.order_by(models.Delivery.id)))
    return PackageSummary(
        message_id=row.message_id, content_digest=row.content_digest,
        number=row.document_number, title=row.title,
        sender=OrgName(row.sender_org, row.sender_name), document_date=row.document_date,
        urgency=row.urgency, classification=row.classification, sent_at=row.sent_at,
        deadline=row.deadline, size=row.size, submitted_by=row.submitted_by,
        deliveries=deliveries)


def _package_row(session: Session, message_id: str) -> models.Package | None:
    return session.scalar(select(models.Package).where(models.Package.message_id == message_id))


def _delivery_row(session: Session, package_id: int, org: str) -> models.Delivery | None:
    return session.scalar(select(models.Delivery).where(
        models.Delivery.package_id == package_id, models.Delivery.recipient_org == org))


def package_summary(ctx: CaContext, message_id: str, *, only_org: str | None = None
                    ) -> PackageSummary:
    with transaction(ctx.sessions) as session:
        row = _package_row(session, message_id)
        if row is None:
            raise PackageNotFound(f"no package {message_id}", message_id=message_id)
        return _summary(session, row, only_org)


def parties(ctx: CaContext, message_id: str) -> tuple[str, tuple[str, ...]]:
    """(sender code, recipient codes) of a package, for authorisation."""
    with transaction(ctx.sessions) as session:
        row = _package_row(session, message_id)
        if row is None:
            raise PackageNotFound(f"no package {message_id}", message_id=message_id)
        recipients = session.scalars(select(models.Delivery.recipient_org).where(
            models.Delivery.package_id == row.id).order_by(models.Delivery.id)).all()
        return row.sender_org, tuple(recipients)


def signed_header_of(ctx: CaContext, message_id: str) -> bytes:
    with transaction(ctx.sessions) as session:
        row = _package_row(session, message_id)
        if row is None:
            raise PackageNotFound(f"no package {message_id}", message_id=message_id)
        return row.signed_header


# -- submission ------------------------------------------------------------------------------------


def _existing(session: Session, header: Header) -> models.Package | None:
    """The stored package with this message id, when it is the same content from the same
    sender (a resend); MessageIdConflict when the id names something else."""
    row = _package_row(session, header.message_id)
    if row is None:
        return None
    if row.content_digest != header.content_digest.hex() \
            or row.sender_org != header.metadata.issuer.code:
        raise MessageIdConflict(f"message id {header.message_id} is already used for other "
                                f"content: a resend must repeat the same package",
                                message_id=header.message_id)
    return row


def _duplicate_number(header: Header) -> DuplicateDocumentNumber:
    meta = header.metadata
    return DuplicateDocumentNumber(f"{meta.issuer.code} has already sent a document numbered "
                                   f"{meta.number!r}", number=meta.number,
                                   organisation=meta.issuer.code)


def submit(ctx: CaContext, parsed: ParsedPackage, *, policy: ExchangePolicy,
           submitted_by: str) -> Submission:
    """Store a package that :func:`parse_package` took apart (header checked against the
    policy and the sender's seal here), or recognise a resend. Returns only after the
    package, its deliveries and the audit event are committed together."""
    header = parsed.header
    meta = header.metadata
    with transaction(ctx.sessions) as session:
        check_header_policy(session, header, policy)
        names = {o.code: org_name(session, o.code).name
                 for o in (meta.issuer, *meta.main, *meta.copy)}
        existing = _existing(session, header)
        if existing is not None:
            return Submission(False, _summary(session, existing))
    verification = verify_sender(ctx, parsed, policy)
    signer = verification.signer_certificate
    assert signer is not None
    size = len(parsed.signed_header) + len(parsed.envelope)
    try:
        with transaction(ctx.sessions) as session:
            existing = _existing(session, header)
            if existing is not None:
                return Submission(False, _summary(session, existing))
            if session.scalar(select(models.Package.id).where(
                    models.Package.sender_org == meta.issuer.code,
                    models.Package.document_number == meta.number)) is not None:
                raise _duplicate_number(header)
            row = models.Package(
                message_id=header.message_id, content_digest=header.content_digest.hex(),
                envelope_digest=header.envelope_digest.hex(), sender_org=meta.issuer.code,
                sender_name=names[meta.issuer.code], document_number=meta.number,
                title=meta.title, document_date=meta.date, urgency=meta.urgency,
                classification=meta.classification, sent_at=header.sent_at,
                deadline=header.deadline, signed_header=parsed.signed_header,
                envelope=parsed.envelope, size=size, seal_ca=_ca_of(session, signer, policy),
                seal_serial=format(signer.serial_number, "x"), submitted_by=submitted_by,
                created_at=utcnow())
            session.add(row)
            session.flush()
            for org, role in meta.recipients:
                session.add(models.Delivery(
                    package_id=row.id, recipient_org=org.code, recipient_name=names[org.code],
                    role=role, transport_state="pending", business_state="none",
                    fetch_count=0))
            session.flush()
            audit.record_event(session, actor=submitted_by, action="exchange.send",
                               object_type="exchange-package", object_id=header.message_id,
                               outcome="success",
                               details={"number": meta.number, "sender": meta.issuer.code,
                                        "recipients": [o.code for o, _ in meta.recipients],
                                        "content_digest": header.content_digest.hex(),
                                        "seal": format(signer.serial_number, "x"),
                                        "size": size})
            return Submission(True, _summary(session, row))
    except IntegrityError:
        # A concurrent submission won the race: the same message (a resend), or another
        # message with this number.
        with transaction(ctx.sessions) as session:
            existing = _existing(session, header)
            if existing is not None:
                return Submission(False, _summary(session, existing))
        raise _duplicate_number(header) from None


def _ca_of(session: Session, cert: Any, policy: ExchangePolicy) -> str:
    """The CA name of a verified seal certificate: its registered row names it."""
    row = session.scalar(select(models.OrgKey.certificate_ca).where(
        models.OrgKey.purpose == "seal",
        models.OrgKey.certificate_serial == format(cert.serial_number, "x")))
    return row or policy.ca


# -- fetching --------------------------------------------------------------------------------------


def fetch(ctx: CaContext, message_id: str, org: str, *, actor: str) -> FetchedPackage:
    """The package for recipient ``org``, the same bytes every time. The first fetch moves
    the delivery to ``fetched`` (audited); later ones only count."""
    with transaction(ctx.sessions) as session:
        row = _package_row(session, message_id)
        delivery = _delivery_row(session, row.id, org) if row is not None else None
        if row is None or delivery is None:
            raise PackageNotFound(f"no package {message_id} for organisation {org}",
                                  message_id=message_id)
        now = utcnow()
        session.execute(update(models.Delivery).where(models.Delivery.id == delivery.id).values(
            fetch_count=models.Delivery.fetch_count + 1,
            fetched_at=func.coalesce(models.Delivery.fetched_at, now)))
        first = session.execute(  # type: ignore[attr-defined]
            update(models.Delivery).where(models.Delivery.id == delivery.id,
                                          models.Delivery.transport_state == "pending")
            .values(transport_state="fetched")).rowcount == 1
        if first:
            audit.record_event(session, actor=actor, action="exchange.fetch",
                               object_type="exchange-package", object_id=message_id,
                               outcome="success", details={"recipient": org})
        session.flush()
        session.refresh(delivery)
        status = _delivery_status(delivery, row.deadline, now)
        signed_header, envelope = row.signed_header, row.envelope
    return FetchedPackage(package_der(signed_header, envelope), header_of(signed_header),
                          status)


# -- receipts --------------------------------------------------------------------------------------


def _receipt_record(row: models.Receipt, message_id: str, recipient: OrgName
                    ) -> ReceiptRecord:
    return ReceiptRecord(message_id, recipient, row.kind, row.reason, row.signer_ca,
                         row.signer_serial, row.created_by, row.created_at, row.ess_receipt,
                         row.statement)


def receipts_of(ctx: CaContext, message_id: str, recipient: str | None = None
                ) -> list[ReceiptRecord]:
    with transaction(ctx.sessions) as session:
        query = (select(models.Receipt, models.Delivery, models.Package)
                 .join(models.Delivery, models.Delivery.id == models.Receipt.delivery_id)
                 .join(models.Package, models.Package.id == models.Delivery.package_id)
                 .where(models.Package.message_id == message_id))
        if recipient is not None:
            query = query.where(models.Delivery.recipient_org == recipient)
        return [_receipt_record(r, message_id, OrgName(d.recipient_org, d.recipient_name))
                for r, d, _p in session.execute(query.order_by(models.Receipt.id))]


def _not_received(message_id: str, org: str, why: str) -> NotReceived:
    return NotReceived(f"organisation {org} has not received package {message_id}: {why}",
                       message_id=message_id, organisation=org)


def _check_step(delivery: models.Delivery, kind: str, reason: str, message_id: str, org: str,
                policy: ExchangePolicy) -> tuple[str, str]:
    """(column, expected state) the receipt moves, or the refusal."""
    if kind == TECHNICAL:
        if delivery.transport_state == "pending":
            raise _not_received(message_id, org, "it was never fetched")
        return "transport_state", "fetched"
    if delivery.transport_state != "delivered":
        raise _not_received(message_id, org, "it has not been delivered and verified (no "
                                             "technical receipt yet)")
    needed, _after = BUSINESS_STEPS[kind]
    if delivery.business_state != needed:
        raise InvalidTransition(f"package {message_id} is {delivery.business_state} at {org}: "
                                f"{kind} needs {needed}", state=delivery.business_state)
    if kind == "returned" and not reason.strip():
        raise ValidationError("a return (退回) needs a reason", field="reason")
    if len(reason) > policy.limits.max_reason_chars:
        raise ValidationError(f"the reason must be at most {policy.limits.max_reason_chars} "
                              f"characters", field="reason")
    return "business_state", needed


def _locate(session: Session, message_id: str, org: str, kind: str, reason: str,
            policy: ExchangePolicy
            ) -> tuple[models.Package, models.Delivery, ReceiptRecord | None, str, str]:
    """(package, delivery, receipt of this kind already stored, column, expected state)."""
    row = _package_row(session, message_id)
    delivery = _delivery_row(session, row.id, org) if row is not None else None
    if row is None or delivery is None:
        raise _not_received(message_id, org, "no such package was addressed to it")
    recipient = OrgName(delivery.recipient_org, delivery.recipient_name)
    stored = session.scalar(select(models.Receipt).where(
        models.Receipt.delivery_id == delivery.id, models.Receipt.kind == kind))
    if stored is not None:
        return row, delivery, _receipt_record(stored, message_id, recipient), "", ""
    column, expected = _check_step(delivery, kind, reason, message_id, org, policy)
    return row, delivery, None, column, expected


def receipt_precheck(ctx: CaContext, message_id: str, org: str, kind: str, reason: str, *,
                     policy: ExchangePolicy) -> tuple[bytes, ReceiptRecord | None]:
    """Before a receipt is signed: (the signed header it answers, the receipt of this kind
    already stored or None). Refuses a step the delivery's state does not allow, so nobody
    signs a receipt that would be refused."""
    with transaction(ctx.sessions) as session:
        row, _delivery, stored, _column, _expected = _locate(session, message_id, org, kind,
                                                             reason, policy)
        return row.signed_header, stored


def record_receipt(ctx: CaContext, message_id: str, org: str, statement_der: bytes, *,
                   policy: ExchangePolicy, actor: str) -> tuple[ReceiptRecord, bool]:
    """Verify a receipt from recipient ``org`` and record the step it takes; (record,
    created). A receipt of a kind already recorded returns the stored one (created False)."""
    statement = statement_of(statement_der)
    if statement.message_id != message_id or statement.recipient.code != org:
        raise ReceiptInvalid(f"the receipt is for {statement.message_id} at "
                             f"{statement.recipient.code}, not {message_id} at {org}")
    with transaction(ctx.sessions) as session:
        row, delivery, stored, column, expected = _locate(
            session, message_id, org, statement.kind, statement.reason, policy)
        if stored is not None:
            return stored, False
        recipient = OrgName(delivery.recipient_org, delivery.recipient_name)
        signed_header, delivery_id = row.signed_header, delivery.id
        _chain, root = trust_chain(session, policy.ca)
    verified = verify(statement_der, signed_header, message_id=message_id, trust_roots=[root],
                      revocation=store_revocation(ctx))
    with transaction(ctx.sessions) as session:
        if not is_registered_seal(session, org, verified.signer):
            raise ReceiptInvalid(f"the receipt is not signed with a seal of {org}")
    return _store_receipt(ctx, verified, delivery_id, column, expected, recipient, policy,
                          actor)


def _store_receipt(ctx: CaContext, verified: VerifiedReceipt, delivery_id: int, column: str,
                   expected: str, recipient: OrgName, policy: ExchangePolicy, actor: str
                   ) -> tuple[ReceiptRecord, bool]:
    statement = verified.statement
    kind, message_id = statement.kind, statement.message_id
    now = utcnow()
    values: dict[str, Any]
    if kind == TECHNICAL:
        values = {"transport_state": "delivered", "delivered_at": now}
    else:
        values = {"business_state": BUSINESS_STEPS[kind][1], "business_at": now}
        if kind == "returned":
            values["return_reason"] = statement.reason
    try:
        with transaction(ctx.sessions) as session:
            moved = session.execute(  # type: ignore[attr-defined]
                update(models.Delivery).where(
                    models.Delivery.id == delivery_id,
                    getattr(models.Delivery, column) == expected).values(**values)).rowcount
            if moved != 1:
                raise InvalidTransition(f"package {message_id} at {recipient.code} changed "
                                        f"meanwhile: {kind} needs {expected}", state="changed")
            row = models.Receipt(
                delivery_id=delivery_id, kind=kind, ess_receipt=statement.ess_receipt,
                statement=verified.statement_der, reason=statement.reason or None,
                signer_ca=_ca_of(session, verified.signer, policy),
                signer_serial=format(verified.signer.serial_number, "x"), created_by=actor,
                created_at=now)
            session.add(row)
            session.flush()
            audit.record_event(session, actor=actor, action="exchange.receipt",
                               object_type="exchange-package", object_id=message_id,
                               outcome="success",
                               details={"recipient": recipient.code, "kind": kind,
                                        "reason": statement.reason or None,
                                        "seal": format(verified.signer.serial_number, "x")})
            return _receipt_record(row, message_id, recipient), True
    except (IntegrityError, InvalidTransition):
        with transaction(ctx.sessions) as session:
            stored = session.scalar(select(models.Receipt).where(
                models.Receipt.delivery_id == delivery_id, models.Receipt.kind == kind))
            if stored is not None:
                return _receipt_record(stored, message_id, recipient), False
        raise


# -- lists and search ------------------------------------------------------------------------------


def _page(session: Session, query: Any, page: int, per_page: int, only_org: str | None
          ) -> Page[PackageSummary]:
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(models.Package.sent_at.desc(),
                                          models.Package.id.desc())
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return Page([_summary(session, r, only_org) for r in rows], total, page, per_page)


def _check_page(page: int, per_page: int) -> None:
    if page < 1 or not 1 <= per_page <= 500:
        raise ValidationError("page must be ≥ 1 and per_page 1..500", field="page")


def inbox(ctx: CaContext, org: str, *, transport_state: str | None = None,
          business_state: str | None = None, page: int = 1, per_page: int = 50
          ) -> Page[PackageSummary]:
    """Packages addressed to ``org``, newest first, each with ``org``'s delivery only."""
    _check_page(page, per_page)
    if transport_state is not None and transport_state not in models.TRANSPORT_STATES:
        raise ValidationError(f"state must be one of {', '.join(models.TRANSPORT_STATES)}",
                              field="state")
    if business_state is not None and business_state not in models.BUSINESS_STATES:
        raise ValidationError(f"business state must be one of "
                              f"{', '.join(models.BUSINESS_STATES)}", field="business_state")
    conditions: list[ColumnElement[bool]] = [models.Delivery.package_id == models.Package.id,
                                             models.Delivery.recipient_org == org]
    if transport_state is not None:
        conditions.append(models.Delivery.transport_state == transport_state)
    if business_state is not None:
        conditions.append(models.Delivery.business_state == business_state)
    with transaction(ctx.sessions) as session:
        query = select(models.Package).where(exists().where(and_(*conditions)))
        return _page(session, query, page, per_page, org)


def search(ctx: CaContext, orgs: Sequence[str] | None, *, sender: str | None = None,
           number: str | None = None, title: str | None = None,
           date_from: dt.date | None = None, date_to: dt.date | None = None,
           page: int = 1, per_page: int = 50) -> Page[PackageSummary]:
    """Packages sent or received by any of ``orgs`` (None: every organisation), filtered by
    number (contains), title (contains), document date range and sender; newest first."""
    _check_page(page, per_page)
    where: list[ColumnElement[bool]] = []
    if orgs is not None:
        codes = list(orgs)
        where.append(or_(models.Package.sender_org.in_(codes), exists().where(and_(
            models.Delivery.package_id == models.Package.id,
            models.Delivery.recipient_org.in_(codes)))))
    if sender is not None:
        where.append(models.Package.sender_org == sender)
    if number:
        where.append(models.Package.document_number.contains(number, autoescape=True))
    if title:
        where.append(models.Package.title.contains(title, autoescape=True))
    if date_from is not None:
        where.append(models.Package.document_date >= date_from)
    if date_to is not None:
        where.append(models.Package.document_date <= date_to)
    with transaction(ctx.sessions) as session:
        return _page(session, select(models.Package).where(*where), page, per_page, None)


def overdue(ctx: CaContext, orgs: Iterable[str] | None = None, *, now: dt.datetime | None = None
            ) -> list[PackageSummary]:
    """Packages with a delivery not signed for (nor returned) by its deadline."""
    at = now or utcnow()
    conditions: list[ColumnElement[bool]] = [models.Delivery.package_id == models.Package.id,
                                             models.Delivery.business_state == "none"]
    if orgs is not None:
        conditions.append(models.Delivery.recipient_org.in_(list(orgs)))
    with transaction(ctx.sessions) as session:
        rows = session.scalars(select(models.Package).where(
            models.Package.deadline < at, exists().where(and_(*conditions)))
            .order_by(models.Package.deadline)).all()
        return [_summary(session, r) for r in rows]
