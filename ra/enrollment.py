"""One-time enrollment codes: how an official's `govpki token enroll` proves who it is for.

An operator allowed ``enrollment.create`` for the official's organisation hands out a code
(on paper or by phone, like a bank PIN letter). The official's tool redeems it once, with a
CSR signed by the new key on the USB key; that opens an issuance request *in the operator's
name* (the operator initiated it), so the two-person rule asks a second operator to approve,
as for any request. Afterwards the same code only reads that request's outcome (the
certificate and its chain to write onto the token) until ``POLL_DAYS`` after redemption.

Codes are 25 characters from an unambiguous alphabet (about 120 bits), shown in groups of
five; only their SHA-256 is stored. Handing out a new code for an official retires the unused
older ones. Redemption claims the code with a conditional update first, so two clients racing
with one code cannot both submit; a refused CSR releases the claim, so nothing is left
half-done and the official can retry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update

from ca.context import CaContext
from ca.store import chain_der, find_certificate
from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from ra import models, plugins
from ra.authz import authorize
from ra.config import RaConfig
from ra.errors import (
    AuthenticationFailed,
    EnrollmentRefused,
    InvalidTransition,
    NotFound,
    ValidationError,
)
from ra.officials import load_official
from ra.records import Operator, RequestRecord
from ra.requests import ISSUANCE_KINDS, get_request_unchecked, submit_for_enrollment

ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH: Final = 25
POLL_DAYS: Final = 30


@dataclass(frozen=True)
class EnrollmentCodeRecord:
    id: int
    official: str
    kind: str
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None
    request_id: int | None


@dataclass(frozen=True)
class EnrollmentStatus:
    """What the token tool needs: the request's state and, once issued, what to write."""

    request_id: int
    state: str
    certificate_pem: str | None
    chain_pem: tuple[str, ...]
    message: str
    encryption_status: str | None


def normalise_code(code: str) -> str:
    """Upper case without separators or spaces, so "abcde-fghjk ..." as typed still works."""
    return "".join(ch for ch in code.upper() if ch not in "- \t")


def _hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def _format(code: str) -> str:
    return "-".join(code[i:i + 5] for i in range(0, len(code), 5))


def _record(row: models.EnrollmentCode, identifier: str) -> EnrollmentCodeRecord:
    return EnrollmentCodeRecord(row.id, identifier, row.kind, row.created_by, row.created_at,
                                row.expires_at, row.used_at, row.request_id)


def create_enrollment_code(ctx: CaContext, actor: Operator, official_identifier: str, *,
                           kind: str = "new-pair", config: RaConfig | None = None
                           ) -> tuple[str, EnrollmentCodeRecord]:
    """A new code for ``official_identifier``: (the code, shown once; its record)."""
    if kind not in ISSUANCE_KINDS:
        raise ValidationError(f"kind must be one of {', '.join(ISSUANCE_KINDS)}", field="kind")
    hours = (config or RaConfig()).enrollment_code_hours
    with transaction(ctx.sessions) as session:
        row = session.scalar(select(models.Official).where(
            models.Official.identifier == official_identifier))
        if row is None:
            raise NotFound(f"no official with identifier {official_identifier!r}")
        official = load_official(session, row.id)
    authorize(ctx.sessions, actor, "enrollment.create", official.organisation,
              official=official, object_type="official", object_id=official.identifier)
    if official.status != "active":
        raise ValidationError(f"official {official.identifier} has left; no enrollment",
                              field="official")
    code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    now = utcnow()
    with transaction(ctx.sessions) as session:
        session.execute(update(models.EnrollmentCode).where(
            models.EnrollmentCode.official_id == official.id,
            models.EnrollmentCode.used_at.is_(None),
            models.EnrollmentCode.expires_at > now).values(expires_at=now))
        code_row = models.EnrollmentCode(
            code_hash=_hash(code), official_id=official.id, kind=kind,
            created_by=actor.username, created_at=now,
            expires_at=now + dt.timedelta(hours=hours))
        session.add(code_row)
        session.flush()
        audit.record_event(session, actor=actor.username, action="ra.enrollment.code",
                           object_type="official", object_id=official.identifier,
                           outcome="success",
                           details={"code": code_row.id, "kind": kind,
                                    "expires_at": code_row.expires_at.isoformat()})
        return _format(code), _record(code_row, official.identifier)


def _find(ctx: CaContext, code: str, client: str, action: str) -> models.EnrollmentCode:
    with transaction(ctx.sessions) as session:
        row = session.scalar(select(models.EnrollmentCode).where(
            models.EnrollmentCode.code_hash == _hash(code)))
        if row is not None:
            session.expunge(row)
    if row is None:
        audit.record_refusal(ctx.sessions, actor="anonymous", action=action,
                             object_type="enrollment-code", object_id="",
                             details={"client": client[:64], "error": "unknown-code"})
        raise AuthenticationFailed("unknown enrollment code: check it, or ask the RA operator "
                                   "for a new one")
    return row


def _refuse(ctx: CaContext, row: models.EnrollmentCode, action: str, client: str,
            exc: GovpkiError) -> None:
    audit.record_refusal(ctx.sessions, actor=f"enrollment-code:{row.id}", action=action,
                         object_type="enrollment-code", object_id=str(row.id),
                         details={"client": client[:64], "error": exc.kind,
                                  "message": exc.message})


def redeem_enrollment_code(ctx: CaContext, code: str, csr: bytes, *, client: str = ""
                           ) -> RequestRecord:
    """Open the request the code was handed out for, once."""
    action = "ra.enrollment.redeem"
    row = _find(ctx, code, client, action)
    now = utcnow()
    refusal: EnrollmentRefused | None = None
    if row.used_at is not None:
        refusal = EnrollmentRefused(
            f"this enrollment code was already used (request {row.request_id}); ask the RA "
            "operator for a new one", request=row.request_id)
    elif row.expires_at <= now:
        refusal = EnrollmentRefused(
            f"this enrollment code expired at {row.expires_at:%Y-%m-%d %H:%M} UTC; ask the RA "
            "operator for a new one")
    if refusal is None:
        with transaction(ctx.sessions) as session:
            claimed = session.execute(update(models.EnrollmentCode).where(
                models.EnrollmentCode.id == row.id,
                models.EnrollmentCode.used_at.is_(None)).values(used_at=now))
            if not getattr(claimed, "rowcount", 0):
                refusal = EnrollmentRefused("this enrollment code was already used; ask the "
                                            "RA operator for a new one")
    if refusal is not None:
        _refuse(ctx, row, action, client, refusal)
        raise refusal
    try:
        with transaction(ctx.sessions) as session:
            official = load_official(session, row.official_id)
        record = submit_for_enrollment(ctx, official, row.kind, csr,
                                       submitted_by=row.created_by)
    except BaseException:
        with transaction(ctx.sessions) as session:
            session.execute(update(models.EnrollmentCode).where(
                models.EnrollmentCode.id == row.id).values(used_at=None))
        raise
    with transaction(ctx.sessions) as session:
        session.execute(update(models.EnrollmentCode).where(
            models.EnrollmentCode.id == row.id).values(request_id=record.id))
        audit.record_event(session, actor=f"enrollment-code:{row.id}", action=action,
                           object_type="certificate-request", object_id=str(record.id),
                           outcome="success",
                           details={"official": official.identifier, "kind": row.kind,
                                    "client": client[:64]})
    return record


def _request_of_code(ctx: CaContext, code: str, request_id: int, client: str, action: str
                     ) -> tuple[models.EnrollmentCode, RequestRecord]:
    """The request ``code`` opened, if it is ``request_id`` and still within POLL_DAYS of
    redemption; any other request is refused (and audited) whatever it is."""
    row = _find(ctx, code, client, action)
    if row.request_id != request_id or row.used_at is None \
            or utcnow() - row.used_at > dt.timedelta(days=POLL_DAYS):
        exc = EnrollmentRefused(f"this enrollment code does not give access to request "
                                f"{request_id}")
        _refuse(ctx, row, action, client, exc)
        raise exc
    return row, get_request_unchecked(ctx, request_id)


def enrollment_status(ctx: CaContext, code: str, request_id: int, *, client: str = ""
                      ) -> EnrollmentStatus:
    """The outcome of the request this code opened (and nothing else)."""
    action = "ra.enrollment.status"
    _row, record = _request_of_code(ctx, code, request_id, client, action)
    cert_pem: str | None = None
    chain: tuple[str, ...] = ()
    message = {"submitted": "waiting for an RA operator's approval",
               "approved": "approved; the certificate is being issued",
               "rejected": f"rejected: {record.decision_comment or ''}".strip(),
               "issued": "issued"}.get(record.state, record.state)
    if record.state == "issued" and record.issued:
        signing = record.issued[0]
        with transaction(ctx.sessions) as session:
            cert = find_certificate(session, signing.serial, signing.ca)
            chain_ders = chain_der(session, signing.ca)
        cert_pem = cert.certificate().public_bytes(Encoding.PEM).decode()
        chain = tuple(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM).decode()
                      for d in chain_ders)
    return EnrollmentStatus(record.id, record.state, cert_pem, chain, message,
                            record.encryption_status)


def deliver_encryption_key(ctx: CaContext, code: str, request_id: int,
                           transport_spki_der: bytes, *, client: str = "") -> dict[str, Any]:
    """Release the encryption key escrowed for the request this code opened, wrapped to the
    transport key the USB key generated (the KMC's delivery, installed by govpki)."""
    action = "ra.enrollment.encryption-key"
    row, record = _request_of_code(ctx, code, request_id, client, action)
    if record.state != "issued" or record.encryption_status != "escrowed":
        raise InvalidTransition(f"request {request_id} has no escrowed encryption key to "
                                f"deliver (state {record.state}, encryption "
                                f"{record.encryption_status or 'none'})",
                                state=record.state)
    delivery = plugins.encryption_delivery()
    if delivery is None:
        raise InvalidTransition("no key management centre is configured on this RA")
    if not transport_spki_der or len(transport_spki_der) > 4096:
        raise ValidationError("the transport key must be a DER SubjectPublicKeyInfo of at most "
                              "4096 bytes", field="transport_key")
    return delivery.deliver(ctx, f"{record.official.subscriber_ref}/request:{record.id}",
                            transport_spki_der, actor=f"enrollment-code:{row.id}")
