"""The certificate request workflow (证书申请): submit → approve/reject → issue (or done).

States and the steps between them::

    submitted --approve (enough distinct approvers)--> approved --execute--> issued  (new-pair,
        |                                                                    renewal, re-key)
        +------reject-----> rejected                         approved --execute--> done
                                                                     (revocation, suspension,
                                                                      release)

Any other step is refused with :class:`InvalidTransition` (409). Every transition, and every
refusal, is an audit event naming who acted and why. The two-person rule: the submitter never
approves their own request, nobody approves twice, and policies/authz.yaml may ask for more than
one approver (bulk revocation); until enough have approved the request stays ``submitted``.

The RA decides, the CA signs (STYLE.md 1): execution calls ca.issue_certificate with the
official-signing profile, the request's CSR and a subject built from the RA's records, or
ca.revocation for status changes. The encryption half of the dual-certificate model comes from
the key management centre in a later issue; :class:`EncryptionKeyProvider` is the step it plugs
into, and the default records "encryption pair pending KMC".

Ordering: the CA commits the certificate before the RA records the serial. ca/ stores
``subscriber_ref = "ra-official:<official id>/request:<request id>"``, so a crash between the two
leaves a certificate that names its request (``ca list``) rather than an orphan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ca import revocation
from ca.context import CaContext
from ca.issuance import CertificateRequest, IssuedCertificate, issue_certificate
from ca.store import certificates_of_subscriber, find_certificate
from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from policies.authz import REQUEST_KINDS, get_authz_policy
from ra import models, plugins
from ra.authz import authorize, visible_path
from ra.errors import (
    InvalidTransition,
    NotFound,
    TwoPersonRuleViolation,
    ValidationError,
)
from ra.officials import load_official, subject_for
from ra.orgs import get_organisation
from ra.records import CertificateRef, Official, Operator, Page, RequestRecord

ISSUANCE_KINDS: Final = ("new-pair", "renewal", "re-key")
STATUS_KINDS: Final = ("revocation", "suspension", "release")
#: Issuance kinds that replace the official's earlier certificate of the same profile.
SUPERSEDING_KINDS: Final = ("renewal", "re-key")
#: step → the states it may start from.
ALLOWED_FROM: Final = {"approve": ("submitted",), "reject": ("submitted",),
                       "execute": ("approved",)}
#: Which action of policies/authz.yaml carries out an approved request of each kind.
EXECUTE_ACTION: Final = {"new-pair": "request.issue", "renewal": "request.issue",
                         "re-key": "request.issue", "revocation": "certificate.revoke",
                         "suspension": "certificate.suspend", "release": "certificate.release"}
DEFAULT_CA: Final = "officials"
DEFAULT_PROFILE: Final = "official-signing"
MAX_CSR_BYTES: Final = 64 * 1024
MAX_COMMENT: Final = 2000


# ---------------------------------------------------------------------------------------------
# The KMC plug-in point


@dataclass(frozen=True)
class EncryptionOutcome:
    """What the encryption step did: ``status`` is stored on the request and audited."""

    status: str
    certificate: CertificateRef | None = None
    note: str = ""


class EncryptionKeyProvider(Protocol):
    """Supplies the encryption key pair and certificate once the signing one is issued.

    The key management centre (KMC, a later issue) generates the encryption key pair, escrows
    it, has the CA certify it and returns it wrapped for the official's USB key.
    """

    def provide(self, ctx: CaContext, request: RequestRecord,
                signing: IssuedCertificate) -> EncryptionOutcome: ...


class KmcNotConfigured:
    """The default until the KMC exists: nothing is generated, the request says so."""

    def provide(self, ctx: CaContext, request: RequestRecord,
                signing: IssuedCertificate) -> EncryptionOutcome:
        return EncryptionOutcome("pending-kmc", None, "encryption pair pending KMC")


# ---------------------------------------------------------------------------------------------
# Reading


def _record(session: Session, row: models.Request, official: Official | None = None
            ) -> RequestRecord:
    certs = session.scalars(select(models.RequestCertificate).where(
        models.RequestCertificate.request_id == row.id).order_by(models.RequestCertificate.id))
    certs_list = list(certs)
    approvals = session.scalars(select(models.Approval.operator).where(
        models.Approval.request_id == row.id).order_by(models.Approval.id)).all()
    return RequestRecord(
        id=row.id, kind=row.kind, official=official or load_official(session, row.official_id),
        state=row.state, ca=row.ca, profile=row.profile, reason=row.reason,
        required_approvals=row.required_approvals, approvals=tuple(approvals),
        submitted_by=row.submitted_by, submitted_at=row.submitted_at,
        submit_comment=row.submit_comment, decided_by=row.decided_by,
        decided_at=row.decided_at, decision_comment=row.decision_comment,
        executed_by=row.executed_by, executed_at=row.executed_at,
        targets=tuple(CertificateRef(c.ca, c.serial) for c in certs_list if c.role == "target"),
        issued=tuple(CertificateRef(c.ca, c.serial) for c in certs_list if c.role == "issued"),
        encryption_status=row.encryption_status, last_error=row.last_error,
        has_csr=row.csr is not None,
    )


def _load(sessions: sessionmaker[Session], request_id: int) -> RequestRecord:
    with transaction(sessions) as session:
        row = session.get(models.Request, request_id)
        if row is None:
            raise NotFound(f"no certificate request {request_id}", request=request_id)
        return _record(session, row)


def get_request_unchecked(ctx: CaContext, request_id: int) -> RequestRecord:
    """For callers that authenticated access to this one request another way (ra.enrollment:
    the enrollment code that opened it)."""
    return _load(ctx.sessions, request_id)


def get_request(ctx: CaContext, actor: Operator, request_id: int) -> RequestRecord:
    record = _load(ctx.sessions, request_id)
    authorize(ctx.sessions, actor, "request.view", record.official.organisation,
              official=record.official, object_type="certificate-request",
              object_id=str(request_id))
    return record


def list_requests(ctx: CaContext, actor: Operator, *, state: str | None = None,
                  org_code: str | None = None, page: int = 1, per_page: int = 50
                  ) -> Page[RequestRecord]:
    """Requests ``actor`` may see, oldest first (the queue order)."""
    if state is not None and state not in models.REQUEST_STATES:
        raise ValidationError(f"state must be one of {', '.join(models.REQUEST_STATES)}",
                              field="state")
    if page < 1 or not 1 <= per_page <= 500:
        raise ValidationError("page must be ≥ 1 and per_page 1..500", field="page")
    if org_code is not None:
        with transaction(ctx.sessions) as session:
            org = get_organisation(session, org_code)
        authorize(ctx.sessions, actor, "request.view", org)
        prefix: str | None = org.path
    else:
        prefix = visible_path(actor, "request.view")
        if prefix is None:
            authorize(ctx.sessions, actor, "request.view", actor.organisation)
    assert prefix is not None
    with transaction(ctx.sessions) as session:
        where = [models.Organisation.path.startswith(prefix, autoescape=True)]
        if actor.roles <= {"official"}:
            where.append(models.Request.official_id == (actor.official_id or 0))
        if state is not None:
            where.append(models.Request.state == state)
        base = (select(models.Request)
                .join(models.Official, models.Official.id == models.Request.official_id)
                .join(models.Organisation,
                      models.Organisation.id == models.Official.organisation_id)
                .where(*where))
        total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = session.scalars(base.order_by(models.Request.id)
                               .offset((page - 1) * per_page).limit(per_page)).all()
        return Page([_record(session, r) for r in rows], total, page, per_page)


# ---------------------------------------------------------------------------------------------
# Transitions


def _refuse(sessions: sessionmaker[Session], actor: str, action: str, object_id: str,
            exc: GovpkiError) -> None:
    audit.record_refusal(sessions, actor=actor, action=f"ra.request.{action}",
                         object_type="certificate-request", object_id=object_id,
                         details={"error": exc.kind, "message": exc.message})


def _comment(value: str, field: str, *, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise ValidationError(f"{field} is required: say why", field=field)
    if len(value) > MAX_COMMENT or not all(ch.isprintable() or ch in "\n\t" for ch in value):
        raise ValidationError(f"{field} must be at most {MAX_COMMENT} printable characters",
                              field=field)
    return value


def _check_csr(csr: bytes) -> None:
    """Parse and check proof of possession early, so a bad CSR never waits for approval."""
    if not csr or len(csr) > MAX_CSR_BYTES:
        raise ValidationError(f"the CSR must be 1 to {MAX_CSR_BYTES} bytes", field="csr")
    try:
        parsed = (x509.load_pem_x509_csr(csr) if csr.lstrip().startswith(b"-----BEGIN")
                  else x509.load_der_x509_csr(csr))
        valid = parsed.is_signature_valid
    except Exception:  # any parser failure is the same bad input
        raise ValidationError("the CSR does not parse (PEM or DER PKCS#10 expected)",
                              field="csr") from None
    if not valid:
        raise ValidationError("the CSR's signature does not verify (no proof of possession)",
                              field="csr")


def _owns(official: Official, subscriber_ref: str | None) -> bool:
    return (subscriber_ref or "").startswith(official.subscriber_ref + "/")


def _official(ctx: CaContext, identifier: str) -> Official:
    with transaction(ctx.sessions) as session:
        row = session.scalar(select(models.Official).where(
            models.Official.identifier == identifier))
        if row is None:
            raise NotFound(f"no official with identifier {identifier!r}")
        return load_official(session, row.id)


def submit(ctx: CaContext, actor: Operator, official_identifier: str, kind: str, *,
           csr: bytes | None = None, serials: Sequence[str] = (), ca: str | None = None,
           reason: str | None = None, comment: str = "",
           profile: str = DEFAULT_PROFILE) -> RequestRecord:
    """Open a request for an official. Issuance kinds need a CSR; status kinds name the
    official's certificates (``serials``, of ``ca``) and revocation an RFC 5280 reason.

    Kinds listed in policies/authz.yaml ``immediate_request_kinds`` (suspension: a lost USB
    key) are carried out at once, by the submitter's own authority to submit them."""
    if kind not in REQUEST_KINDS:
        raise ValidationError(f"kind must be one of {', '.join(REQUEST_KINDS)}", field="kind")
    official = _official(ctx, official_identifier)
    authorize(ctx.sessions, actor, "request.submit", official.organisation, official=official,
              request_kind=kind, object_type="official", object_id=official.identifier)
    record = _open(ctx, actor.username, official, kind, csr=csr, serials=serials, ca=ca,
                   reason=reason, comment=comment, profile=profile)
    if record.required_approvals == 0:
        return _carry_out_at_once(ctx, actor.username, record)
    return record


def submit_for_enrollment(ctx: CaContext, official: Official, kind: str, csr: bytes, *,
                          submitted_by: str) -> RequestRecord:
    """For ra.enrollment: a one-time enrollment code, handed out by an operator allowed to,
    has already authenticated the caller as ``official``; the request then waits for an
    operator's approval like any other."""
    if kind not in ISSUANCE_KINDS:
        raise ValidationError("an enrollment code opens issuance requests only", field="kind")
    return _open(ctx, submitted_by, official, kind, csr=csr)


def _open(ctx: CaContext, by: str, official: Official, kind: str, *,
          csr: bytes | None = None, serials: Sequence[str] = (), ca: str | None = None,
          reason: str | None = None, comment: str = "",
          profile: str = DEFAULT_PROFILE) -> RequestRecord:
    """Validate and store a submitted request; refusals are audited under ``by``."""
    policy = get_authz_policy()
    try:
        comment = _comment(comment, "comment", required=False)
        targets: list[CertificateRef] = []
        if kind in ISSUANCE_KINDS:
            if csr is None:
                raise ValidationError(f"a {kind} request needs a CSR", field="csr")
            if serials:
                raise ValidationError(f"a {kind} request names no certificates",
                                      field="serials")
            _check_csr(csr)
            if official.status != "active":
                raise ValidationError(f"official {official.identifier} has left; no new "
                                      "certificates", field="official")
            with transaction(ctx.sessions) as session:
                subject_for(session, official)  # refused now rather than at issuance
            reason = None
        else:
            if csr is not None:
                raise ValidationError(f"a {kind} request takes no CSR", field="csr")
            if not serials:
                raise ValidationError(f"a {kind} request names at least one certificate",
                                      field="serials")
            if kind == "revocation":
                reason = reason or "unspecified"
                if reason not in revocation.REVOCATION_REASONS:
                    raise ValidationError(
                        f"reason must be one of {', '.join(revocation.REVOCATION_REASONS)}",
                        field="reason")
            elif reason is not None:
                raise ValidationError(f"a {kind} request takes no reason", field="reason")
            with transaction(ctx.sessions) as session:
                for serial in dict.fromkeys(serials):
                    cert = find_certificate(session, serial, ca)
                    if not _owns(official, cert.subscriber_ref):
                        raise ValidationError(f"certificate {cert.serial} was not issued to "
                                              f"{official.identifier} through the RA",
                                              field="serials")
                    targets.append(CertificateRef(cert.ca, cert.serial))
        required = (0 if kind in policy.immediate_request_kinds else
                    policy.approvals_required("request.approve", request_kind=kind,
                                              certificates=len(targets)))
    except GovpkiError as exc:
        _refuse(ctx.sessions, by, "submit", official.identifier, exc)
        raise
    with transaction(ctx.sessions) as session:
        req = models.Request(
            kind=kind, official_id=official.id, state="submitted",
            ca=targets[0].ca if targets else (ca or DEFAULT_CA), profile=profile, csr=csr,
            reason=reason, required_approvals=required, submitted_by=by,
            submitted_at=utcnow(), submit_comment=comment)
        session.add(req)
        session.flush()
        for t in targets:
            session.add(models.RequestCertificate(request_id=req.id, role="target", ca=t.ca,
                                                  serial=t.serial))
        session.flush()
        audit.record_event(session, actor=by, action="ra.request.submit",
                           object_type="certificate-request", object_id=str(req.id),
                           outcome="success",
                           details={"kind": kind, "official": official.identifier,
                                    "organisation": official.organisation.code,
                                    "certificates": [f"{t.ca}/{t.serial}" for t in targets],
                                    "required_approvals": required, "comment": comment})
        return _record(session, req, official)


def _carry_out_at_once(ctx: CaContext, by: str, record: RequestRecord) -> RequestRecord:
    """Approve by policy and execute a request of an immediate (reversible) kind."""
    with transaction(ctx.sessions) as session:
        row = _locked(session, record.id, "approve")
        row.state = "approved"
        row.decided_by, row.decided_at = by, utcnow()
        row.decision_comment = "carried out on submission (policies/authz.yaml " \
                               "immediate_request_kinds)"
        audit.record_event(session, actor=by, action="ra.request.approve",
                           object_type="certificate-request", object_id=str(record.id),
                           outcome="success",
                           details={"approvals": 0, "required": 0, "state": "approved",
                                    "policy": "immediate_request_kinds"})
    return _change_status(ctx, by, _load(ctx.sessions, record.id))


def _locked(session: Session, request_id: int, step: str) -> models.Request:
    row = session.scalar(select(models.Request).where(models.Request.id == request_id)
                         .with_for_update())
    if row is None:
        raise NotFound(f"no certificate request {request_id}")
    if row.state not in ALLOWED_FROM[step]:
        raise InvalidTransition(f"cannot {step} request {request_id}: it is {row.state}",
                                state=row.state)
    return row


def approve(ctx: CaContext, actor: Operator, request_id: int, comment: str = ""
            ) -> RequestRecord:
    """One approval; the request becomes ``approved`` when enough distinct operators agree."""
    record = _load(ctx.sessions, request_id)
    authorize(ctx.sessions, actor, "request.approve", record.official.organisation,
              official=record.official, request_kind=record.kind,
              object_type="certificate-request", object_id=str(request_id))
    try:
        comment = _comment(comment, "comment", required=False)
        if actor.username == record.submitted_by:
            raise TwoPersonRuleViolation(
                f"forbidden: two-person rule: {actor.username} submitted request {request_id} "
                "and cannot approve it")
        if actor.username in record.approvals:
            raise TwoPersonRuleViolation(
                f"forbidden: two-person rule: {actor.username} has already approved request "
                f"{request_id}; another operator must")
        with transaction(ctx.sessions) as session:
            row = _locked(session, request_id, "approve")
            session.add(models.Approval(request_id=row.id, operator=actor.username,
                                        comment=comment, approved_at=utcnow()))
            session.flush()
            count = session.scalar(select(func.count()).select_from(models.Approval).where(
                models.Approval.request_id == row.id)) or 0
            if count >= row.required_approvals:
                row.state = "approved"
                row.decided_by, row.decided_at = actor.username, utcnow()
                row.decision_comment = comment
            session.flush()
            audit.record_event(session, actor=actor.username, action="ra.request.approve",
                               object_type="certificate-request", object_id=str(request_id),
                               outcome="success",
                               details={"approvals": count, "required": row.required_approvals,
                                        "state": row.state, "comment": comment})
            return _record(session, row)
    except GovpkiError as exc:
        _refuse(ctx.sessions, actor.username, "approve", str(request_id), exc)
        raise


def reject(ctx: CaContext, actor: Operator, request_id: int, comment: str) -> RequestRecord:
    """Reject with a reason (required: the official is told why)."""
    record = _load(ctx.sessions, request_id)
    authorize(ctx.sessions, actor, "request.reject", record.official.organisation,
              official=record.official, request_kind=record.kind,
              object_type="certificate-request", object_id=str(request_id))
    try:
        comment = _comment(comment, "comment", required=True)
        with transaction(ctx.sessions) as session:
            row = _locked(session, request_id, "reject")
            row.state = "rejected"
            row.decided_by, row.decided_at, row.decision_comment = (
                actor.username, utcnow(), comment)
            session.flush()
            audit.record_event(session, actor=actor.username, action="ra.request.reject",
                               object_type="certificate-request", object_id=str(request_id),
                               outcome="success", details={"comment": comment})
            return _record(session, row)
    except GovpkiError as exc:
        _refuse(ctx.sessions, actor.username, "reject", str(request_id), exc)
        raise


def execute(ctx: CaContext, actor: Operator, request_id: int, *,
            encryption: EncryptionKeyProvider | None = None) -> RequestRecord:
    """Carry out an approved request: issue through ca/, or change certificate status."""
    record = _load(ctx.sessions, request_id)
    authorize(ctx.sessions, actor, EXECUTE_ACTION[record.kind], record.official.organisation,
              official=record.official, request_kind=record.kind,
              object_type="certificate-request", object_id=str(request_id))
    if record.state not in ALLOWED_FROM["execute"]:
        exc = InvalidTransition(f"cannot execute request {request_id}: it is {record.state}",
                                state=record.state)
        _refuse(ctx.sessions, actor.username, "execute", str(request_id), exc)
        raise exc
    if record.kind in ISSUANCE_KINDS:
        provider = encryption or plugins.encryption_provider() or KmcNotConfigured()
        return _issue(ctx, actor.username, record, provider)
    return _change_status(ctx, actor.username, record)


def _failed(ctx: CaContext, by: str, record: RequestRecord, exc: GovpkiError) -> None:
    with transaction(ctx.sessions) as session:
        row = session.get(models.Request, record.id)
        assert row is not None
        row.last_error = f"{exc.kind}: {exc.message}"[:2000]
    audit.record_refusal(ctx.sessions, actor=by, action="ra.request.execute",
                         object_type="certificate-request", object_id=str(record.id),
                         outcome="failure", details={"error": exc.kind, "message": exc.message})


def _issued_earlier(session: Session, subscriber_ref: str, profile: str
                    ) -> IssuedCertificate | None:
    """The certificate an earlier run of this request had signed, if the process stopped
    after the CA committed it and before the RA recorded it (the CA commits first, Boulder's
    order): executing again adopts it instead of issuing a second one."""
    for c in certificates_of_subscriber(session, subscriber_ref):
        if c.subscriber_ref == subscriber_ref and c.profile == profile \
                and c.certificate_der is not None:
            return IssuedCertificate(ca=c.ca, serial=c.serial, profile=c.profile,
                                     subject=c.subject, not_before=c.not_before,
                                     not_after=c.not_after, der=c.certificate_der)
    return None


def _issue(ctx: CaContext, by: str, record: RequestRecord,
           encryption: EncryptionKeyProvider) -> RequestRecord:
    subscriber_ref = f"{record.official.subscriber_ref}/request:{record.id}"
    with transaction(ctx.sessions) as session:
        row = session.get(models.Request, record.id)
        assert row is not None and row.csr is not None
        csr = row.csr
        subject = subject_for(session, record.official)
        adopted = _issued_earlier(session, subscriber_ref, record.profile)
    issued = adopted
    if issued is None:
        try:
            issued = issue_certificate(ctx, CertificateRequest(
                ca=record.ca, profile=record.profile, csr=csr, subject=subject,
                requested_by=by, subscriber_ref=subscriber_ref))
        except GovpkiError as exc:
            _failed(ctx, by, record, exc)
            raise
    outcome = encryption.provide(ctx, record, issued)
    with transaction(ctx.sessions) as session:
        row = _locked(session, record.id, "execute")
        row.state = "issued"
        row.executed_by, row.executed_at = by, utcnow()
        row.encryption_status, row.last_error = outcome.status, None
        session.add(models.RequestCertificate(request_id=row.id, role="issued",
                                              ca=issued.ca, serial=issued.serial))
        if outcome.certificate is not None:
            session.add(models.RequestCertificate(
                request_id=row.id, role="issued", ca=outcome.certificate.ca,
                serial=outcome.certificate.serial))
        session.flush()
        audit.record_event(session, actor=by, action="ra.request.issue",
                           object_type="certificate-request", object_id=str(record.id),
                           outcome="success",
                           details={"ca": issued.ca, "serial": issued.serial,
                                    "subject": issued.subject, "adopted": adopted is not None,
                                    "encryption": outcome.status, "note": outcome.note})
    if record.kind in SUPERSEDING_KINDS:
        _supersede(ctx, by, record, issued)
    return _load(ctx.sessions, record.id)


def _supersede(ctx: CaContext, by: str, record: RequestRecord, issued: IssuedCertificate
               ) -> None:
    """Renewal and re-key replace the official's earlier certificates of the same profile:
    revoke them as superseded (RFC 5280 §5.3.1) so one key per purpose stays valid. A failure
    here leaves the new certificate issued and is recorded on the request for a retry."""
    with transaction(ctx.sessions) as session:
        earlier = [c for c in certificates_of_subscriber(
            session, record.official.subscriber_ref + "/")
            if c.profile == record.profile and c.status != "revoked"
            and not (c.ca == issued.ca and c.serial == issued.serial)]
    for cert in earlier:
        try:
            revocation.revoke(ctx, cert.serial, "superseded", ca=cert.ca, actor=by)
        except GovpkiError as exc:
            _failed(ctx, by, record, exc)


_GOAL: Final = {"revocation": ("revoked",), "suspension": ("hold", "revoked"),
                "release": ("good",)}


def _change_status(ctx: CaContext, by: str, record: RequestRecord) -> RequestRecord:
    """Each target in turn; targets already in the goal state are skipped, so an execution
    interrupted half-way (one of a bulk revocation failed) can simply be run again."""
    done: list[str] = []
    for target in record.targets:
        with transaction(ctx.sessions) as session:
            current = find_certificate(session, target.serial, target.ca)
        if current.status in _GOAL[record.kind]:
            continue
        try:
            if record.kind == "revocation":
                revocation.revoke(ctx, target.serial, record.reason or "unspecified",
                                  ca=target.ca, actor=by)
            elif record.kind == "suspension":
                revocation.suspend(ctx, target.serial, ca=target.ca, actor=by)
            else:
                revocation.release(ctx, target.serial, ca=target.ca, actor=by)
        except GovpkiError as exc:
            _failed(ctx, by, record, exc)
            raise
        done.append(f"{target.ca}/{target.serial}")
    with transaction(ctx.sessions) as session:
        row = _locked(session, record.id, "execute")
        row.state = "done"
        row.executed_by, row.executed_at, row.last_error = by, utcnow(), None
        session.flush()
        audit.record_event(session, actor=by, action="ra.request.done",
                           object_type="certificate-request", object_id=str(record.id),
                           outcome="success",
                           details={"kind": record.kind, "changed": done,
                                    "reason": record.reason})
        return _record(session, row)
