"""Reads the API needs and no ra service offers (yet): the organisation tree as an operator may
see it, one certificate with its owner, an official's certificates, the audit log.

Each one authorises through ra.authz.authorize before it returns anything, exactly as a
service would (a refusal is audited and raises Forbidden, 403), and returns plain values.
Certificates are read through ca.store, never ca's tables: the subscriber reference that ca/
keeps (``ra-official:<id>/request:<n>``, written by ra.requests) says whose certificate it is.
If ra grows these reads as services, these become one-line calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, or_, select

from ca.context import CaContext
from ca.store import CertificateRecord, certificates_of_subscriber, find_certificate
from core.audit import AuditEvent
from core.db import transaction
from ra.authz import authorize, visible_path
from ra.errors import Forbidden, ValidationError
from ra.officials import get_official, load_official
from ra.orgs import get_organisation, list_organisations
from ra.records import Official, Operator, Organisation, Page

_OWNER: Final = re.compile(r"ra-official:([0-9]{1,10})/(?:request:([0-9]{1,10}))?")
MAX_CERTIFICATES: Final = 200


@dataclass(frozen=True)
class OwnedCertificate:
    certificate: CertificateRecord
    #: The official the RA issued it to; None when it was not issued through the RA.
    owner: Official | None
    request_id: int | None


def visible_organisations(ctx: CaContext, actor: Operator, under: str | None
                          ) -> list[Organisation]:
    """The organisations ``actor`` may see (org.view), optionally only ``under``'s subtree,
    in tree order (parents before children)."""
    if under is not None:
        with transaction(ctx.sessions) as session:
            org = get_organisation(session, under)
        authorize(ctx.sessions, actor, "org.view", org)
        prefix = org.path
    else:
        visible = visible_path(actor, "org.view")
        if visible is None:
            authorize(ctx.sessions, actor, "org.view", actor.organisation)
            raise Forbidden("forbidden: org.view")  # pragma: no cover - authorize raised
        prefix = visible
    with transaction(ctx.sessions) as session:
        return list_organisations(session, prefix)


def organisation(ctx: CaContext, actor: Operator, code: str) -> Organisation:
    with transaction(ctx.sessions) as session:
        org = get_organisation(session, code)
    authorize(ctx.sessions, actor, "org.view", org)
    return org


def owned_certificate(ctx: CaContext, ca: str, serial: str) -> OwnedCertificate:
    """The certificate and whose it is, unchecked: for callers that authorise the owner
    themselves (a status-change request is authorised by ra.requests.submit)."""
    with transaction(ctx.sessions) as session:
        cert = find_certificate(session, serial, ca)
        match = _OWNER.match(cert.subscriber_ref or "")
        owner = load_official(session, int(match.group(1))) if match else None
    request_id = int(match.group(2)) if match and match.group(2) else None
    return OwnedCertificate(cert, owner, request_id)


def certificate(ctx: CaContext, actor: Operator, ca: str, serial: str) -> OwnedCertificate:
    """One certificate, visible to whoever may view its owner (official.view on the owner);
    a certificate not issued through the RA only to all-scoped roles ("the whole system")."""
    found = owned_certificate(ctx, ca, serial)
    object_id = f"{found.certificate.ca}/{found.certificate.serial}"
    if found.owner is None:
        authorize(ctx.sessions, actor, "official.view", None, object_type="certificate",
                  object_id=object_id)
    else:
        authorize(ctx.sessions, actor, "official.view", found.owner.organisation,
                  official=found.owner, object_type="certificate", object_id=object_id)
    return found


def official_certificates(ctx: CaContext, actor: Operator, identifier: str
                          ) -> list[CertificateRecord]:
    """The official's signed certificates, newest first (get_official authorises)."""
    official = get_official(ctx.sessions, actor, identifier)
    with transaction(ctx.sessions) as session:
        return certificates_of_subscriber(session, official.subscriber_ref + "/",
                                          limit=MAX_CERTIFICATES)


def audit_events(ctx: CaContext, actor: Operator, *, action: str | None = None,
                 by: str | None = None, outcome: str | None = None, page: int = 1,
                 per_page: int = 50) -> Page[AuditEvent]:
    """The audit log, newest first, for auditors (audit.read on the whole system).

    ``action`` matches itself and everything below it (``ra.request`` matches
    ``ra.request.approve``); ``by`` is the actor's exact name.
    """
    if page < 1 or not 1 <= per_page <= 500:
        raise ValidationError("page must be ≥ 1 and per_page 1..500", field="page")
    authorize(ctx.sessions, actor, "audit.read", None, object_type="audit-log")
    where = []
    if action:
        where.append(or_(AuditEvent.action == action,
                         AuditEvent.action.startswith(action + ".", autoescape=True)))
    if by:
        where.append(AuditEvent.actor == by)
    if outcome:
        where.append(AuditEvent.outcome == outcome)
    with transaction(ctx.sessions) as session:
        total = session.scalar(select(func.count()).select_from(AuditEvent).where(*where)) or 0
        rows = session.scalars(select(AuditEvent).where(*where).order_by(AuditEvent.seq.desc())
                               .offset((page - 1) * per_page).limit(per_page)).all()
        for row in rows:
            session.expunge(row)
    return Page(list(rows), total, page, per_page)
