"""Read-only queries the RA pages need and no ra service offers yet.

Each one authorises through ra.authz like a service would (a refusal is audited and raises
Forbidden) and returns plain frozen values. Certificates are read through ca's read APIs
(ca.store, ca.status), never its tables: the RA's own tables say which certificate belongs to
which official, ca/ says what state it is in.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Select, func, select

from ca.context import CaContext
from ca.status import statuses
from ca.store import CertificateRecord, certificates_of_subscriber, find_certificate
from core.audit import AuditEvent
from core.db import transaction, utcnow
from ra import models
from ra.authz import authorize, permits, visible_path
from ra.officials import get_official, load_official
from ra.orgs import list_organisations
from ra.records import Official, Operator, Organisation, Page, RequestRecord
from ra.requests import list_requests

_OWNER: Final = re.compile(r"ra-official:(\d+)/")
MAX_PER_PAGE: Final = 200


@dataclass(frozen=True)
class RequestSummary:
    """One line of a request list on an official's or a certificate's page."""

    id: int
    kind: str
    state: str
    submitted_by: str
    submitted_at: dt.datetime


@dataclass
class OrgNode:
    """An organisation in the tree, with the officials registered in it and below it."""

    organisation: Organisation
    officials: int
    children: list[OrgNode] = field(default_factory=list)


@dataclass(frozen=True)
class ExpiringCertificate:
    ca: str
    serial: str
    not_after: dt.datetime
    status: str
    official_identifier: str
    official_name: str
    organisation_name: str


@dataclass(frozen=True)
class OfficialOverview:
    official: Official
    certificates: Sequence[CertificateRecord]
    requests: Sequence[RequestSummary]


@dataclass(frozen=True)
class CertificateView:
    certificate: CertificateRecord
    official: Official | None
    requests: Sequence[RequestSummary]


@dataclass(frozen=True)
class AuditRow:
    seq: int
    occurred_at: dt.datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    outcome: str
    details: str


@dataclass(frozen=True)
class Dashboard:
    pending: Page[RequestRecord] | None
    approved_waiting: int
    expiring: Sequence[ExpiringCertificate]


def _self_only(actor: Operator) -> bool:
    """Accounts whose only role is self-service see their own record and nothing else."""
    return actor.roles <= {"official"}


# ---------------------------------------------------------------------------------------------
# Organisations


def organisation_tree(ctx: CaContext, actor: Operator) -> list[OrgNode]:
    """The organisations ``actor`` may see as a forest (roots first), each with the number
    of officials in its subtree (what its "officials" link lists)."""
    prefix = visible_path(actor, "org.view")
    if prefix is None:
        authorize(ctx.sessions, actor, "org.view", actor.organisation)
    assert prefix is not None
    with transaction(ctx.sessions) as session:
        orgs = list_organisations(session, prefix)
        counts = dict(session.execute(
            select(models.Official.organisation_id, func.count())
            .group_by(models.Official.organisation_id)).all())
    nodes = {o.code: OrgNode(o, counts.get(o.id, 0)) for o in orgs}
    roots: list[OrgNode] = []
    for org in orgs:  # tree order: a parent comes before its children
        parent = nodes.get(org.parent_code or "")
        (parent.children if parent is not None else roots).append(nodes[org.code])
    for org in reversed(orgs):  # children first: add each subtree's total to its parent
        parent = nodes.get(org.parent_code or "")
        if parent is not None:
            parent.officials += nodes[org.code].officials
    return roots


def organisations_for(ctx: CaContext, actor: Operator, action: str) -> list[Organisation]:
    """The organisations a form may offer for ``action`` (e.g. where to register an official):
    a filter for a choice list, not a decision — the service still authorises the choice."""
    prefix = visible_path(actor, action)
    if prefix is None:
        return []
    with transaction(ctx.sessions) as session:
        return [o for o in list_organisations(session, prefix) if permits(actor, action, o)]


# ---------------------------------------------------------------------------------------------
# Officials and certificates


def _summaries(query: Select[models.Request], ctx: CaContext) -> list[RequestSummary]:
    with transaction(ctx.sessions) as session:
        return [RequestSummary(r.id, r.kind, r.state, r.submitted_by, r.submitted_at)
                for r in session.scalars(query.order_by(models.Request.id.desc()).limit(100))]


def official_overview(ctx: CaContext, actor: Operator, identifier: str) -> OfficialOverview:
    """An official with their certificates and requests (official.view, audited refusal)."""
    official = get_official(ctx.sessions, actor, identifier)
    with transaction(ctx.sessions) as session:
        certificates = certificates_of_subscriber(session, official.subscriber_ref + "/")
    requests = _summaries(select(models.Request).where(
        models.Request.official_id == official.id), ctx)
    return OfficialOverview(official, certificates, requests)


def certificate_view(ctx: CaContext, actor: Operator, ca: str, serial: str) -> CertificateView:
    """A certificate, whom the RA issued it to, and the requests naming it.

    Seeing a certificate is seeing its official (official.view on their organisation); one
    the RA did not issue (a CA or service certificate) only all-scoped roles may see."""
    with transaction(ctx.sessions) as session:
        record = find_certificate(session, serial, ca)
        match = _OWNER.match(record.subscriber_ref or "")
        official = load_official(session, int(match.group(1))) if match else None
    object_id = f"{record.ca}/{record.serial}"
    authorize(ctx.sessions, actor, "official.view",
              official.organisation if official else None, official=official,
              object_type="certificate", object_id=object_id)
    named = select(models.RequestCertificate.request_id).where(
        models.RequestCertificate.ca == record.ca,
        models.RequestCertificate.serial == record.serial)
    requests = _summaries(select(models.Request).where(models.Request.id.in_(named)), ctx)
    return CertificateView(record, official, requests)


def expiring_certificates(ctx: CaContext, actor: Operator, *, days: int = 30,
                          limit: int = 50) -> list[ExpiringCertificate]:
    """Certificates the RA issued in ``actor``'s scope that expire within ``days`` and are
    not revoked, soonest first.

    ca.status reads each CA's certificates inside the window (an index on authority and
    not_after); only those are then matched against the RA's records in one query.
    """
    prefix = visible_path(actor, "request.view")
    if prefix is None:
        return []
    now = utcnow()
    horizon = now + dt.timedelta(days=days)
    with transaction(ctx.sessions) as session:
        cas = session.scalars(select(models.RequestCertificate.ca).distinct().where(
            models.RequestCertificate.role == "issued")).all()
        soon = {(s.ca, s.serial): s for ca in cas
                for s in statuses(session, ca, only_unexpired_at=now, expires_before=horizon)
                if s.status != "revoked"}
        if not soon:
            return []
        where = [models.RequestCertificate.role == "issued",
                 models.RequestCertificate.serial.in_({serial for _, serial in soon}),
                 models.Organisation.path.startswith(prefix, autoescape=True)]
        if _self_only(actor):
            where.append(models.Official.id == (actor.official_id or 0))
        rows = session.execute(
            select(models.RequestCertificate.ca, models.RequestCertificate.serial,
                   models.Official.identifier, models.Official.name, models.Organisation.name)
            .join(models.Request, models.Request.id == models.RequestCertificate.request_id)
            .join(models.Official, models.Official.id == models.Request.official_id)
            .join(models.Organisation,
                  models.Organisation.id == models.Official.organisation_id)
            .where(*where)).all()
    found = [ExpiringCertificate(ca, serial, soon[(ca, serial)].not_after,
                                 soon[(ca, serial)].status, ident, name, org)
             for ca, serial, ident, name, org in rows if (ca, serial) in soon]
    return sorted(found, key=lambda e: e.not_after)[:limit]


def dashboard(ctx: CaContext, actor: Operator) -> Dashboard:
    """What waits for ``actor``: requests to decide, approved ones not yet carried out, and
    certificates about to expire. Sections the actor's roles do not cover are left empty
    (an auditor's or security administrator's dashboard is not an error page)."""
    if not permits(actor, "request.view", actor.organisation) or _self_only(actor):
        return Dashboard(None, 0, [])
    pending = list_requests(ctx, actor, state="submitted", per_page=10)
    approved = list_requests(ctx, actor, state="approved", per_page=1).total
    return Dashboard(Page(list(pending.items), pending.total, 1, 10), approved,
                     expiring_certificates(ctx, actor))


# ---------------------------------------------------------------------------------------------
# Audit log


def audit_page(ctx: CaContext, actor: Operator, *, page: int = 1, per_page: int = 50,
               who: str = "", action: str = "", object_id: str = "") -> Page[AuditRow]:
    """The audit log, newest first, for holders of audit.read (the refusal is audited too).

    Filters: exact actor, action prefix ("ra.request"), exact object id.
    """
    authorize(ctx.sessions, actor, "audit.read", None, object_type="audit-log")
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    where = []
    if who:
        where.append(AuditEvent.actor == who)
    if action:
        where.append(AuditEvent.action.startswith(action, autoescape=True))
    if object_id:
        where.append(AuditEvent.object_id == object_id)
    with transaction(ctx.sessions) as session:
        total = session.scalar(select(func.count()).select_from(AuditEvent).where(*where)) or 0
        rows = session.scalars(select(AuditEvent).where(*where)
                               .order_by(AuditEvent.seq.desc())
                               .offset((page - 1) * per_page).limit(per_page)).all()
        items = [AuditRow(r.seq, r.occurred_at, r.actor, r.action, r.object_type, r.object_id,
                          r.outcome, r.details) for r in rows]
    return Page(items, total, page, per_page)
