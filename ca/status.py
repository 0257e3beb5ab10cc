"""Read-only status API for the services that speak for a CA (OCSP, CRL publication, TSA).

ocsp/ and signing/ import this module (STYLE.md: "ca read-only API"); it returns plain
dataclasses and never an ORM row or a session, so nothing above ca/ can write through it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.errors import UnknownCa
from ca.models import Authority, Certificate, Generation, ServiceKey
from ca.store import authority_row


@dataclass(frozen=True)
class GenerationRecord:
    ca: str
    number: int
    key_uri: str
    certificate_der: bytes
    not_before: dt.datetime
    not_after: dt.datetime

    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.certificate_der)


@dataclass(frozen=True)
class ServiceKeyRecord:
    """An OCSP signer or TSA key and its certificate (the newest one for its CA and role)."""

    ca: str
    role: str
    key_uri: str
    serial: str
    certificate_der: bytes
    not_before: dt.datetime
    not_after: dt.datetime

    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.certificate_der)


@dataclass(frozen=True)
class StatusRecord:
    """What a status answer needs about one certificate, and nothing more."""

    ca: str
    serial: str
    status: str  # good | revoked | hold
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    not_after: dt.datetime
    status_changed_at: dt.datetime | None


def authority_names(session: Session) -> list[str]:
    return list(session.scalars(select(Authority.name).order_by(Authority.id)))


def generations(session: Session, ca: str) -> list[GenerationRecord]:
    """Every key generation of ``ca``, oldest first: status is answered for all of them."""
    auth = authority_row(session, ca)
    rows = session.scalars(select(Generation).where(Generation.authority_id == auth.id)
                           .order_by(Generation.number))
    return [GenerationRecord(ca, g.number, g.key_uri, g.certificate_der, g.not_before,
                             g.not_after) for g in rows]


def service_keys(session: Session, role: str, ca: str | None = None) -> list[ServiceKeyRecord]:
    """Newest first: the service keys of ``role`` (``ocsp-signer``, ``tsa``)."""
    query = (select(ServiceKey, Authority.name, Certificate)
             .join(Authority, Authority.id == ServiceKey.authority_id)
             .join(Certificate, Certificate.id == ServiceKey.certificate_id)
             .where(ServiceKey.role == role)
             .order_by(ServiceKey.id.desc()))
    if ca is not None:
        authority_row(session, ca)
        query = query.where(Authority.name == ca)
    out = []
    for key, name, cert in session.execute(query).all():
        if cert.certificate_der is None:
            continue
        out.append(ServiceKeyRecord(name, key.role, key.key_uri, cert.serial,
                                    cert.certificate_der, cert.not_before, cert.not_after))
    return out


def service_key(session: Session, ca: str, role: str) -> ServiceKeyRecord:
    keys = service_keys(session, role, ca)
    if not keys:
        raise UnknownCa(f"CA '{ca}' has no {role} key", ca=ca)
    return keys[0]


def _record(row: Certificate, ca: str) -> StatusRecord:
    return StatusRecord(ca, row.serial, row.status, row.revoked_at, row.revocation_reason,
                        row.not_after, row.status_changed_at)


def statuses(session: Session, ca: str, *, only_unexpired_at: dt.datetime | None = None,
             changed_since: dt.datetime | None = None, not_good: bool = False,
             expires_before: dt.datetime | None = None,
             ) -> Iterator[StatusRecord]:
    """Issued certificates of ``ca`` (all generations), streamed in id order.
    ``expires_before`` narrows to a window (indexed on authority and not_after)."""
    auth = authority_row(session, ca)
    query = select(Certificate).where(Certificate.authority_id == auth.id,
                                      Certificate.state == "issued")
    if only_unexpired_at is not None:
        query = query.where(Certificate.not_after > only_unexpired_at)
    if changed_since is not None:
        query = query.where(Certificate.status_changed_at > changed_since)
    if expires_before is not None:
        query = query.where(Certificate.not_after <= expires_before)
    if not_good:
        query = query.where(Certificate.status != "good")
    for row in session.scalars(query.order_by(Certificate.id).execution_options(yield_per=1000)):
        yield _record(row, ca)


def status(session: Session, ca: str, serial: str) -> StatusRecord | None:
    """One certificate's status under ``ca``; None when that CA never issued the serial."""
    auth = authority_row(session, ca)
    row = session.scalar(select(Certificate).where(
        Certificate.authority_id == auth.id, Certificate.serial == serial,
        Certificate.state == "issued"))
    return _record(row, ca) if row is not None else None
