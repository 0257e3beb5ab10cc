"""Read-only status API for the services that speak for a CA (OCSP, CRL publication, TSA).

ocsp/ and signing/ import this module (STYLE.md: "ca read-only API"); it returns plain
dataclasses and never an ORM row or a session, so nothing above ca/ can write through it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import ColumnElement, or_, select
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
    # Set once it no longer signs CRLs or OCSP answers (every certificate it issued expired,
    # or its key was declared compromised).
    retired_at: dt.datetime | None = None
    retired_reason: str | None = None
    # Of its certificate, in the parent's store: revoked once its key was declared compromised.
    status: str = "good"

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
    # The CA key generation that certified it: an OCSP signer answers only for certificates
    # of that generation (RFC 6960 §4.2.2.2: issued by the CA that issued the certificate).
    generation: int = 1

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
    # The CA key generation that signed it: a CertID naming another generation's key does not
    # name this certificate.
    generation: int = 1


def authority_names(session: Session) -> list[str]:
    return list(session.scalars(select(Authority.name).order_by(Authority.id)))


def generations(session: Session, ca: str, *, active_only: bool = False
                ) -> list[GenerationRecord]:
    """Every key generation of ``ca``, oldest first; ``active_only`` leaves out retired ones
    (those sign nothing any more)."""
    auth = authority_row(session, ca)
    query = (select(Generation, Certificate.status)
             .outerjoin(Certificate, Certificate.id == Generation.certificate_id)
             .where(Generation.authority_id == auth.id))
    if active_only:
        query = query.where(Generation.retired_at.is_(None))
    rows = session.execute(query.order_by(Generation.number)).all()
    return [GenerationRecord(ca, g.number, g.key_uri, g.certificate_der, g.not_before,
                             g.not_after, g.retired_at, g.retired_reason, state or "good")
            for g, state in rows]


def _generation_numbers(session: Session, authority_id: int) -> dict[int | None, int]:
    """generation id → number for one CA; a certificate without one (the root's own) is 1."""
    numbers: dict[int | None, int] = {None: 1}
    numbers.update(session.execute(select(Generation.id, Generation.number).where(
        Generation.authority_id == authority_id)).all())
    return numbers


def generation_filter(session: Session, authority_id: int, number: int
                      ) -> ColumnElement[bool]:
    """SQL condition "the certificate was signed by generation ``number`` of this CA"."""
    gen_id = session.scalar(select(Generation.id).where(
        Generation.authority_id == authority_id, Generation.number == number))
    if number == 1:
        return or_(Certificate.generation_id == gen_id, Certificate.generation_id.is_(None))
    return Certificate.generation_id == gen_id


def service_keys(session: Session, role: str, ca: str | None = None, *,
                 generation: int | None = None) -> list[ServiceKeyRecord]:
    """Newest first: the service keys of ``role`` (``ocsp-signer``, ``tsa``), optionally only
    those certified by key generation ``generation`` of ``ca``."""
    query = (select(ServiceKey, Authority.name, Certificate, Generation.number)
             .join(Authority, Authority.id == ServiceKey.authority_id)
             .join(Certificate, Certificate.id == ServiceKey.certificate_id)
             .outerjoin(Generation, Generation.id == Certificate.generation_id)
             .where(ServiceKey.role == role)
             .order_by(ServiceKey.id.desc()))
    if ca is not None:
        authority_row(session, ca)
        query = query.where(Authority.name == ca)
    out = []
    for key, name, cert, number in session.execute(query).all():
        if cert.certificate_der is None:
            continue
        if generation is not None and (number or 1) != generation:
            continue
        out.append(ServiceKeyRecord(name, key.role, key.key_uri, cert.serial,
                                    cert.certificate_der, cert.not_before, cert.not_after,
                                    number or 1))
    return out


def service_key(session: Session, ca: str, role: str, *, generation: int | None = None
                ) -> ServiceKeyRecord:
    keys = service_keys(session, role, ca, generation=generation)
    if not keys:
        which = f" for key generation {generation}" if generation is not None else ""
        raise UnknownCa(f"CA '{ca}' has no {role} key{which}", ca=ca)
    return keys[0]


def _record(row: Certificate, ca: str, numbers: dict[int | None, int]) -> StatusRecord:
    return StatusRecord(ca, row.serial, row.status, row.revoked_at, row.revocation_reason,
                        row.not_after, row.status_changed_at,
                        numbers.get(row.generation_id, 1))


def statuses(session: Session, ca: str, *, only_unexpired_at: dt.datetime | None = None,
             changed_since: dt.datetime | None = None, not_good: bool = False,
             expires_before: dt.datetime | None = None, generation: int | None = None,
             ) -> Iterator[StatusRecord]:
    """Issued certificates of ``ca`` (all generations, or only ``generation``), streamed in id
    order. ``expires_before`` narrows to a window (indexed on authority and not_after)."""
    auth = authority_row(session, ca)
    numbers = _generation_numbers(session, auth.id)
    query = select(Certificate).where(Certificate.authority_id == auth.id,
                                      Certificate.state == "issued")
    if generation is not None:
        query = query.where(generation_filter(session, auth.id, generation))
    if only_unexpired_at is not None:
        query = query.where(Certificate.not_after > only_unexpired_at)
    if changed_since is not None:
        query = query.where(Certificate.status_changed_at > changed_since)
    if expires_before is not None:
        query = query.where(Certificate.not_after <= expires_before)
    if not_good:
        query = query.where(Certificate.status != "good")
    for row in session.scalars(query.order_by(Certificate.id).execution_options(yield_per=1000)):
        yield _record(row, ca, numbers)


def status(session: Session, ca: str, serial: str) -> StatusRecord | None:
    """One certificate's status under ``ca``; None when that CA never issued the serial."""
    auth = authority_row(session, ca)
    found = session.execute(
        select(Certificate, Generation.number)
        .outerjoin(Generation, Generation.id == Certificate.generation_id)
        .where(Certificate.authority_id == auth.id, Certificate.serial == serial,
               Certificate.state == "issued")).first()
    if found is None:
        return None
    row, number = found
    return _record(row, ca, {row.generation_id: number or 1})
