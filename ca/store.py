"""Read side of the CA's tables: find authorities, generations and certificates.

Returns plain dataclasses, never ORM rows, so callers above ca/ (RA, OCSP, signing) cannot write
through them (STYLE.md lesson 1).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.errors import AmbiguousSerial, CertificateNotFound, UnknownCa
from ca.models import Authority, Certificate, Generation


@dataclass(frozen=True)
class CertificateRecord:
    id: int
    ca: str
    serial: str
    profile: str
    subject: str
    key_type: str
    state: str
    status: str
    not_before: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    requested_by: str
    subscriber_ref: str | None
    certificate_der: bytes | None

    def certificate(self) -> x509.Certificate:
        if self.certificate_der is None:
            raise CertificateNotFound(f"serial {self.serial} was reserved but never signed")
        return x509.load_der_x509_certificate(self.certificate_der)


@dataclass(frozen=True)
class AuthorityRecord:
    id: int
    name: str
    parent: str | None
    profile: str
    generation: int
    key_uri: str
    certificate_der: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    status: str  # status of this generation's certificate in the issuer's store

    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.certificate_der)


def normalise_serial(serial: str | int) -> str:
    """Lower-case hex without leading zeros or separators (``0A:1b`` → ``a1b``)."""
    if isinstance(serial, int):
        return format(serial, "x")
    text = serial.strip().lower().replace(":", "")
    if text.startswith("0x"):
        text = text[2:]
    try:
        return format(int(text, 16), "x")
    except ValueError:
        raise CertificateNotFound(f"'{serial}' is not a hexadecimal serial number") from None


def _record(row: Certificate, ca_name: str) -> CertificateRecord:
    return CertificateRecord(
        id=row.id, ca=ca_name, serial=row.serial, profile=row.profile, subject=row.subject,
        key_type=row.key_type, state=row.state, status=row.status,
        not_before=row.not_before, not_after=row.not_after, revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason, requested_by=row.requested_by,
        subscriber_ref=row.subscriber_ref, certificate_der=row.certificate_der,
    )


def authority_row(session: Session, name: str) -> Authority:
    row = session.scalar(select(Authority).where(Authority.name == name))
    if row is None:
        known = ", ".join(session.scalars(select(Authority.name).order_by(Authority.id))) or "none"
        raise UnknownCa(f"no CA named '{name}' (known: {known})", ca=name)
    return row


def current_generation(session: Session, authority: Authority) -> Generation:
    gen = session.scalar(
        select(Generation)
        .where(Generation.authority_id == authority.id)
        .order_by(Generation.number.desc())
        .limit(1)
    )
    if gen is None:
        raise UnknownCa(f"CA '{authority.name}' has no key yet", ca=authority.name)
    return gen


def generation_row(session: Session, authority: Authority, number: int) -> Generation:
    gen = session.scalar(select(Generation).where(Generation.authority_id == authority.id,
                                                  Generation.number == number))
    if gen is None:
        raise UnknownCa(f"CA '{authority.name}' has no key generation {number}",
                        ca=authority.name)
    return gen


def get_authority(session: Session, name: str) -> AuthorityRecord:
    auth = authority_row(session, name)
    gen = current_generation(session, auth)
    cert = session.get(Certificate, gen.certificate_id)
    parent = session.get(Authority, auth.parent_id) if auth.parent_id else None
    return AuthorityRecord(
        id=auth.id, name=auth.name, parent=parent.name if parent else None, profile=auth.profile,
        generation=gen.number, key_uri=gen.key_uri, certificate_der=gen.certificate_der,
        not_before=gen.not_before, not_after=gen.not_after,
        status=cert.status if cert else "good",
    )


def list_authorities(session: Session) -> list[AuthorityRecord]:
    names = session.scalars(select(Authority.name).order_by(Authority.id)).all()
    return [get_authority(session, n) for n in names]


def find_certificate(
    session: Session, serial: str | int, ca: str | None = None
) -> CertificateRecord:
    """One certificate by serial; without ``ca`` an ambiguous serial is refused, not guessed."""
    hex_serial = normalise_serial(serial)
    query = select(Certificate, Authority.name).join(
        Authority, Authority.id == Certificate.authority_id
    ).where(Certificate.serial == hex_serial)
    if ca is not None:
        authority_row(session, ca)
        query = query.where(Authority.name == ca)
    rows = session.execute(query).all()
    if not rows:
        where = f" issued by '{ca}'" if ca else ""
        raise CertificateNotFound(f"no certificate with serial {hex_serial}{where}")
    if len(rows) > 1:
        cas = ", ".join(name for _, name in rows)
        raise AmbiguousSerial(
            f"serial {hex_serial} exists under several CAs ({cas}): give --ca"
        )
    row, name = rows[0]
    return _record(row, name)


def list_certificates(
    session: Session, ca: str | None = None, limit: int = 100, state: str | None = None
) -> list[CertificateRecord]:
    """Newest first. ``state="pending"`` lists reservations whose signing never completed
    (a crash between pipeline steps 7 and 8): the record of what was about to be signed."""
    query = select(Certificate, Authority.name).join(
        Authority, Authority.id == Certificate.authority_id
    )
    if state is not None:
        query = query.where(Certificate.state == state)
    if ca is not None:
        authority_row(session, ca)
        query = query.where(Authority.name == ca)
    query = query.order_by(Certificate.id.desc()).limit(limit)
    return [_record(row, name) for row, name in session.execute(query).all()]


def chain_der(session: Session, ca: str) -> list[bytes]:
    """The CA's current certificate, then its parents' up to the root."""
    out: list[bytes] = []
    auth: Authority | None = authority_row(session, ca)
    while auth is not None:
        out.append(current_generation(session, auth).certificate_der)
        auth = session.get(Authority, auth.parent_id) if auth.parent_id else None
    return out


def certificates_of_subscriber(session: Session, subscriber_prefix: str, *,
                               limit: int = 200) -> list[CertificateRecord]:
    """Signed certificates whose subscriber reference starts with ``subscriber_prefix``
    (the RA's ``ra-official:<id>/``), newest first: one indexed prefix match."""
    query = (select(Certificate, Authority.name)
             .join(Authority, Authority.id == Certificate.authority_id)
             .where(Certificate.subscriber_ref.startswith(subscriber_prefix, autoescape=True),
                    Certificate.state == "issued")
             .order_by(Certificate.id.desc()).limit(limit))
    return [_record(row, name) for row, name in session.execute(query).all()]
