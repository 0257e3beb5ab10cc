"""apps/exchange tables: organisations' keys, packages, per-recipient deliveries, receipts.

A package row and its delivery rows are written in one transaction with the submission's
audit event, before the sender hears "accepted" (hub.py). The package keeps the signed header
and the encrypted body exactly as sent — the hub cannot read the body and never rewrites
either — plus the header's fields as columns for routing, tracking and search. Deliveries
keep the technical state (pending → fetched → delivered) apart from the business state
(none → signed-for → completed, or returned); each receipt is a row of its own holding the
RFC 2634 signed receipt and the signed statement of which act it records.

Organisations are referred to by code (ra's organisation tree) without a foreign key into
ra's tables, so this migration branch stands on its own, as apps/sso's does.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime

KEY_PURPOSES = ("seal", "encryption")
TRANSPORT_STATES = ("pending", "fetched", "delivered")
BUSINESS_STATES = ("none", "signed-for", "returned", "completed")
RECEIPT_KINDS = ("delivered", "signed-for", "returned", "completed")


class OrgKey(Base):
    """An organisation's seal (signs headers and receipts) or encryption key (opens bodies).
    ``key_uri`` is None when the organisation keeps the key on its own node and only its
    certificate is registered here."""

    __tablename__ = "exchange_org_key"
    __table_args__ = (UniqueConstraint("certificate_ca", "certificate_serial",
                                       name="uq_exchange_org_key_certificate"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_code: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    purpose: Mapped[str] = mapped_column(String(16), nullable=False)
    key_uri: Mapped[str | None] = mapped_column(String(512))
    certificate_ca: Mapped[str] = mapped_column(String(64), nullable=False)
    certificate_serial: Mapped[str] = mapped_column(String(40), nullable=False)
    escrow_id: Mapped[int | None] = mapped_column(Integer)
    protection: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class Package(Base):
    __tablename__ = "exchange_package"
    __table_args__ = (
        UniqueConstraint("sender_org", "document_number", name="uq_exchange_package_number"),
        Index("ix_exchange_package_sent_at", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    content_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    envelope_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    sender_org: Mapped[str] = mapped_column(String(32), nullable=False)
    sender_name: Mapped[str] = mapped_column(String(128), nullable=False)
    document_number: Mapped[str] = mapped_column(String(128), nullable=False)
    title: Mapped[str] = mapped_column(String(1000), nullable=False)
    document_date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    urgency: Mapped[str] = mapped_column(String(16), nullable=False)
    classification: Mapped[str] = mapped_column(String(16), nullable=False)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    signed_header: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    envelope: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    seal_ca: Mapped[str] = mapped_column(String(64), nullable=False)
    seal_serial: Mapped[str] = mapped_column(String(40), nullable=False)
    submitted_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class Delivery(Base):
    __tablename__ = "exchange_delivery"
    __table_args__ = (
        UniqueConstraint("package_id", "recipient_org", name="uq_exchange_delivery_recipient"),
        Index("ix_exchange_delivery_inbox", "recipient_org", "transport_state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("exchange_package.id"), nullable=False)
    recipient_org: Mapped[str] = mapped_column(String(32), nullable=False)
    recipient_name: Mapped[str] = mapped_column(String(128), nullable=False)
    role: Mapped[str] = mapped_column(String(8), nullable=False)  # main | copy
    transport_state: Mapped[str] = mapped_column(String(16), nullable=False)
    business_state: Mapped[str] = mapped_column(String(16), nullable=False)
    fetch_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    fetched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    business_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    return_reason: Mapped[str | None] = mapped_column(Text)


class Receipt(Base):
    """One receipt: the RFC 2634 signed receipt (verifiable with ``openssl cms
    -verify_receipt``) and the recipient's signed statement saying which act it records."""

    __tablename__ = "exchange_receipt"
    __table_args__ = (UniqueConstraint("delivery_id", "kind", name="uq_exchange_receipt_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("exchange_delivery.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    ess_receipt: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    statement: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    signer_ca: Mapped[str] = mapped_column(String(64), nullable=False)
    signer_serial: Mapped[str] = mapped_column(String(40), nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
