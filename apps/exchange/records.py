"""Plain, frozen values the exchange's operations return (never ORM rows or sessions): what the
CLI prints, the REST API serialises and the web pages render."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from apps.exchange.header import Header, OrgName


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class DeliveryStatus:
    """One recipient's side of a package: technical and business states kept apart."""

    recipient: OrgName
    role: str  # main (主送) | copy (抄送)
    transport_state: str  # pending | fetched | delivered
    business_state: str  # none | signed-for | returned | completed
    fetched_at: dt.datetime | None
    delivered_at: dt.datetime | None
    business_at: dt.datetime | None
    return_reason: str | None
    overdue: bool

    def as_dict(self) -> dict[str, Any]:
        return {"recipient": self.recipient.as_dict(), "role": self.role,
                "transport_state": self.transport_state,
                "business_state": self.business_state, "fetched_at": _iso(self.fetched_at),
                "delivered_at": _iso(self.delivered_at), "business_at": _iso(self.business_at),
                "return_reason": self.return_reason, "overdue": self.overdue}


@dataclass(frozen=True)
class PackageSummary:
    """A package as lists and tracking show it: header fields and its deliveries (all of
    them for the sender, the caller's own for a recipient)."""

    message_id: str
    content_digest: str
    number: str
    title: str
    sender: OrgName
    document_date: dt.date
    urgency: str
    classification: str
    sent_at: dt.datetime
    deadline: dt.datetime
    size: int
    submitted_by: str
    deliveries: tuple[DeliveryStatus, ...]

    @property
    def overdue(self) -> bool:
        return any(d.overdue for d in self.deliveries)

    def as_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "content_digest": self.content_digest,
                "number": self.number, "title": self.title, "sender": self.sender.as_dict(),
                "document_date": self.document_date.isoformat(), "urgency": self.urgency,
                "classification": self.classification, "sent_at": _iso(self.sent_at),
                "deadline": _iso(self.deadline), "size": self.size,
                "submitted_by": self.submitted_by, "overdue": self.overdue,
                "deliveries": [d.as_dict() for d in self.deliveries]}


@dataclass(frozen=True)
class Submission:
    """The hub's answer to a package: stored now (``created``) or stored already (a resend
    of the same message id and content: nothing new was stored)."""

    created: bool
    package: PackageSummary

    @property
    def message_id(self) -> str:
        return self.package.message_id

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, **self.package.as_dict()}


@dataclass(frozen=True)
class ReceiptRecord:
    message_id: str
    recipient: OrgName
    kind: str  # delivered | signed-for | returned | completed
    reason: str | None
    signer_ca: str
    signer_serial: str
    created_by: str
    created_at: dt.datetime
    ess_receipt: bytes = field(repr=False)
    statement: bytes = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "recipient": self.recipient.as_dict(),
                "kind": self.kind, "reason": self.reason,
                "signer": f"{self.signer_ca}/{self.signer_serial}",
                "created_by": self.created_by, "created_at": _iso(self.created_at)}


@dataclass(frozen=True)
class FetchedPackage:
    """A package as the hub hands it to a recipient: the bytes and the (parsed, not yet
    verified) header."""

    package: bytes = field(repr=False)
    header: Header = field(repr=False)
    delivery: DeliveryStatus = field(repr=False)
