"""The issuance pipeline (DESIGN.md, Issuance pipeline; Boulder's ``IssueCertificate`` order).

1. the RA hands an approved request: CSR + subscriber data + profile;
2. the CSR parses and its signature verifies (proof of possession); key type allowed by profile;
3. the subject comes from the caller's subscriber data, never from the CSR;
4. profile → extensions, validity clipped to the issuer's;
5. a CSPRNG serial (127 bits, positive), unique per issuer by database constraint;
6. the TBS certificate is linted (pkilint, RFC 5280) and refused on error;
7. the serial and TBS bytes are committed (``pending``) before the key signs;
8. the key signs, the certificate and its audit event commit together, then it is returned.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.exc import IntegrityError

from ca.context import CaContext
from ca.errors import (
    CsrSignatureInvalid,
    InvalidCsr,
    IssuerUnavailable,
    LintFailed,
    PolicyViolation,
)
from ca.issuer import Issuer, cached_issuer
from ca.models import Certificate
from ca.plan import plan_for
from ca.tbs import ExtensionPlan, ToBeSigned, build_name, build_tbs, extensions_for, sign_tbs
from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from hsm.algorithms import KeyType, key_type_of
from hsm.errors import HsmError, UnsupportedKeyType
from policies.names import contains_national_id, parse_subject
from policies.profiles import Profile, get_profile

MAX_CSR_BYTES = 64 * 1024
CERTIFICATES: Table = Certificate.__table__  # type: ignore[assignment]
# Relying parties with slow clocks must not see a certificate from the future.
BACKDATE = dt.timedelta(minutes=1)
SERIAL_BITS = 127


@dataclass(frozen=True)
class CertificateRequest:
    ca: str
    profile: str
    csr: bytes
    subject: str  # RFC 4514, from the subscriber record
    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    validity_days: int | None = None
    requested_by: str = "system"
    subscriber_ref: str | None = None


@dataclass(frozen=True)
class IssuedCertificate:
    ca: str
    serial: str
    profile: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    der: bytes

    @property
    def pem(self) -> str:
        return self.certificate().public_bytes(Encoding.PEM).decode("ascii")

    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Step 2: parse and check proof of possession."""
    if not data or len(data) > MAX_CSR_BYTES:
        raise InvalidCsr(f"CSR must be 1 to {MAX_CSR_BYTES} bytes, got {len(data)}")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise InvalidCsr(f"CSR does not parse: {_first_line(exc)}") from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm, InvalidSignature):
        valid = False
    if not valid:
        raise CsrSignatureInvalid("CSR signature does not verify: no proof of possession")
    return csr


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_key(public_key: object, profile: Profile) -> KeyType:
    try:
        key_type = key_type_of(public_key)  # type: ignore[arg-type]
    except UnsupportedKeyType as exc:
        raise PolicyViolation(f"{exc.message}; profile {profile.name} allows "
                              f"{', '.join(profile.key_types)}") from None
    if not profile.allows_key_type(key_type.value):
        raise PolicyViolation(
            f"profile {profile.name} does not allow {key_type.value} keys "
            f"(allowed: {', '.join(profile.key_types)})"
        )
    return key_type


def issue_certificate(ctx: CaContext, request: CertificateRequest) -> IssuedCertificate:
    """Issue one certificate; every refusal is an audit event and stores nothing else."""
    result = issue_certificates(ctx, [request])[0]
    if isinstance(result, GovpkiError):
        raise result
    return result


def issue_certificates(ctx: CaContext, requests: Sequence[CertificateRequest]
                       ) -> list[IssuedCertificate | GovpkiError]:
    """Issue a batch (bulk enrollment from a roster): one result per request, in order.

    Steps 2-6 run per request, and a refused request is audited and reported in its place
    without stopping the others. Steps 7 and 8 run once for the batch: one transaction reserves
    every serial, the key signs each TBS, one transaction stores every certificate with its own
    audit link. The order guarantee holds for each certificate.
    """
    results: list[IssuedCertificate | GovpkiError | None] = [None] * len(requests)
    prepared: list[tuple[int, Prepared]] = []
    for index, request in enumerate(requests):
        try:
            prepared.append((index, _prepare_request(ctx, request)))
        except GovpkiError as exc:
            results[index] = exc
    try:
        reserve(ctx, [p for _, p in prepared])                           # step 7
    except GovpkiError as exc:
        for index, _ in prepared:
            results[index] = exc
        prepared = []
    for (index, _), outcome in zip(prepared, sign_and_store(ctx, [p for _, p in prepared]),
                                   strict=True):                          # step 8
        results[index] = outcome
    refusals = [(requests[i], r) for i, r in enumerate(results) if isinstance(r, GovpkiError)]
    if refusals:
        _audit_refusals(ctx, refusals)
    return [r for r in results if r is not None]


def _prepare_request(ctx: CaContext, request: CertificateRequest) -> Prepared:
    profile = get_profile(request.profile)
    csr = parse_csr(request.csr)                                           # step 2
    public_key = csr.public_key()
    check_key(public_key, profile)
    subject = build_name(parse_subject(request.subject, profile.subject_rules))  # step 3
    issuer = cached_issuer(ctx, request.ca)  # usable? checked again when the serial is reserved
    plan = plan_for(profile, public_key, ctx.config.public_base_url, issuer.name,
                    generation=issuer.generation, san_dns=request.san_dns,
                    san_ip=request.san_ip, san_email=request.san_email)
    return prepare(
        issuer=issuer, profile=profile, plan=plan, subject=subject,
        public_key=public_key,
        validity_days=_validity(profile, request.validity_days),
        requested_by=request.requested_by, subscriber_ref=request.subscriber_ref,
    )


def _audit_refusals(ctx: CaContext,
                    refusals: list[tuple[CertificateRequest, GovpkiError]]) -> None:
    with transaction(ctx.sessions) as session:
        audit.record_events(session, [
            audit.EventSpec(
                actor=_safe_actor(request.requested_by), action="ca.issue",
                object_type="certificate-request",
                object_id=_redacted(request.subscriber_ref or request.subject)[:128],
                # an HSM that fails is a failure of ours; everything else refused the request
                outcome="failure" if isinstance(exc, HsmError) else "refused",
                details={"ca": request.ca, "profile": request.profile, "error": exc.kind,
                         "message": exc.message},
            ) for request, exc in refusals
        ])


_LONG_DIGITS = re.compile(r"[0-9０-９][0-9０-９ \-._]{13,}[0-9０-９Xx]")


def _redacted(text: str) -> str:
    """A subject refused for carrying a national ID number must not carry it into the audit
    log either: long digit runs are masked."""
    if not contains_national_id(text):
        return text
    return _LONG_DIGITS.sub(lambda m: "*" * len(m.group()), text)


def _safe_actor(actor: str) -> str:
    """A refusal must be recorded even when the actor text itself is unusable."""
    cleaned = "".join(ch for ch in actor if ch.isprintable())[:128]
    return cleaned or "unknown"


def _validity(profile: Profile, requested: int | None) -> int:
    if requested is None:
        return profile.validity_days
    if requested <= 0 or requested > profile.validity_days:
        raise PolicyViolation(
            f"validity of {requested} days is outside 1..{profile.validity_days} "
            f"allowed by profile {profile.name}"
        )
    return requested


def new_serial() -> int:
    """127 random bits, never zero: positive and ≤ 16 octets in DER (RFC 5280 §4.1.2.2)."""
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial >> 64:
            return serial


@dataclass
class Prepared:
    """A certificate between lint (step 6) and storage (step 8)."""

    issuer: Issuer
    profile: Profile
    tbs: ToBeSigned
    serial: int
    subject_text: str
    key_type: KeyType
    not_before: dt.datetime
    not_after: dt.datetime
    reserved_at: dt.datetime
    requested_by: str
    subscriber_ref: str | None
    verify_key: CertificateIssuerPublicKeyTypes
    rebuild: Callable[[int], ToBeSigned]
    row_id: int | None = None

    @property
    def object_id(self) -> str:
        return f"{self.issuer.name}/{self.serial:x}"


def prepare(
    *,
    issuer: Issuer,
    profile: Profile,
    plan: ExtensionPlan,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    validity_days: int,
    requested_by: str,
    subscriber_ref: str | None,
    self_signed: bool = False,
    not_after_cap: dt.datetime | None = None,
) -> Prepared:
    """Steps 4-6: validity, extensions, serial, TBS, pre-issuance lint.

    ``not_after_cap`` ends the certificate no later than that (a re-issue after a CA key
    compromise keeps the replaced certificate's end, ca/compromise.py)."""
    now = utcnow().replace(microsecond=0)
    issuer.check_validity(now)
    not_before = now - BACKDATE
    not_after = not_before + dt.timedelta(days=validity_days)
    if issuer.not_after is not None:
        not_after = min(not_after, issuer.not_after)                     # step 4
    if not_after_cap is not None:
        not_after = min(not_after, not_after_cap)
    if not_after <= now:
        raise IssuerUnavailable(f"CA '{issuer.name}' expires before the certificate would start")
    issuer_ski = issuer.ski
    if self_signed:
        issuer_ski = x509.SubjectKeyIdentifier.from_public_key(public_key).digest
    extensions = extensions_for(plan, public_key, issuer_ski)
    # pkilint costs ~0.8 s to import; commands that never issue (`govpki ca list`) skip it.
    from ca.lint import blocking, lint_certificate

    def rebuild(serial: int) -> ToBeSigned:
        tbs = build_tbs(
            issuer_name=subject if self_signed else issuer.subject,
            issuer_key_type=issuer.signer.key_type, subject=subject, public_key=public_key,
            serial=serial, not_before=not_before, not_after=not_after, extensions=extensions,
        )
        errors = blocking(lint_certificate(tbs.lint_der))                 # step 6
        if errors:
            raise LintFailed(
                "pre-issuance check refused the certificate: " + "; ".join(map(str, errors)),
                profile=profile.name,
            )
        return tbs

    serial = new_serial()                                                  # step 5
    return Prepared(
        issuer=issuer, profile=profile, tbs=rebuild(serial), serial=serial,
        subject_text=subject.rfc4514_string(), key_type=key_type_of(public_key),
        not_before=not_before, not_after=not_after, reserved_at=now,
        requested_by=requested_by, subscriber_ref=subscriber_ref,
        verify_key=public_key if self_signed else issuer.public_key,  # type: ignore[arg-type]
        rebuild=rebuild,
    )


def _row(item: Prepared) -> dict[str, object]:
    return {
        "authority_id": item.issuer.authority_id, "generation_id": item.issuer.generation_id,
        "serial": format(item.serial, "x"), "profile": item.profile.name,
        "subject": item.subject_text, "key_type": item.key_type.value, "state": "pending",
        "tbs_der": item.tbs.tbs_der, "not_before": item.not_before,
        "not_after": item.not_after, "status": "good", "requested_by": item.requested_by,
        "subscriber_ref": item.subscriber_ref, "created_at": item.reserved_at,
    }


def reserve(ctx: CaContext, items: list[Prepared]) -> None:
    """Step 7: commit every serial and TBS before any key signs (one transaction)."""
    if not items:
        return
    for _attempt in range(3):
        try:
            with transaction(ctx.sessions) as session:
                checked: set[int] = set()
                for item in items:
                    if item.issuer.authority_id not in checked:
                        item.issuer.check_status(session)  # revoked or held since loaded?
                        checked.add(item.issuer.authority_id)
                table = CERTIFICATES
                ids = session.connection().execute(
                    insert(table).returning(table.c.id, sort_by_parameter_order=True),
                    [_row(item) for item in items],
                ).scalars().all()
            for item, row_id in zip(items, ids, strict=True):
                item.row_id = row_id
            return
        except IntegrityError:
            # A serial collided under one issuer (astronomically rare): new serials, new TBS,
            # linted again, and the whole batch retried.
            for item in items:
                item.serial = new_serial()
                item.tbs = item.rebuild(item.serial)
    raise PolicyViolation("could not reserve unique serial numbers")


def sign_and_store(ctx: CaContext, items: list[Prepared]
                   ) -> list[IssuedCertificate | GovpkiError]:
    """Step 8: sign each recorded TBS, then store certificates and audit links together."""
    outcomes: list[IssuedCertificate | GovpkiError] = []
    signed: list[tuple[Prepared, bytes]] = []
    for item in items:
        try:
            cert = sign_tbs(item.tbs, item.issuer.signer, item.verify_key)
        except HsmError as exc:
            outcomes.append(exc)  # the pending row stays: what was about to be signed
            continue
        der = cert.public_bytes(Encoding.DER)
        signed.append((item, der))
        outcomes.append(IssuedCertificate(
            ca=item.issuer.name, serial=format(item.serial, "x"), profile=item.profile.name,
            subject=item.subject_text, not_before=item.not_before, not_after=item.not_after,
            der=der,
        ))
    if signed:
        issued_at = utcnow()
        with transaction(ctx.sessions) as session:
            table = CERTIFICATES
            session.connection().execute(
                update(table).where(table.c.id == bindparam("row_id")).values(
                    state="issued", certificate_der=bindparam("der"), issued_at=issued_at),
                [{"row_id": item.row_id, "der": der} for item, der in signed],
            )
            audit.record_events(session, [
                audit.EventSpec(
                    actor=item.requested_by, action="ca.issue", object_type="certificate",
                    object_id=item.object_id, outcome="success",
                    details={"profile": item.profile.name, "subject": item.subject_text,
                             "not_after": item.not_after.isoformat(),
                             "key_type": item.key_type.value,
                             "subscriber_ref": item.subscriber_ref,
                             "reserved_at": item.reserved_at.isoformat()},
                ) for item, _ in signed
            ])
    return outcomes


def sign_and_record(
    ctx: CaContext,
    *,
    issuer: Issuer,
    profile: Profile,
    plan: ExtensionPlan,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    validity_days: int,
    requested_by: str,
    subscriber_ref: str | None,
    self_signed: bool = False,
    not_after_cap: dt.datetime | None = None,
) -> IssuedCertificate:
    """Steps 4-8 for one certificate without a CSR (the key ceremony, a key rollover, a
    re-issue of a certified key after a CA key compromise)."""
    item = prepare(issuer=issuer, profile=profile, plan=plan, subject=subject,
                   public_key=public_key, validity_days=validity_days,
                   requested_by=requested_by, subscriber_ref=subscriber_ref,
                   self_signed=self_signed, not_after_cap=not_after_cap)
    reserve(ctx, [item])
    outcome = sign_and_store(ctx, [item])[0]
    if isinstance(outcome, GovpkiError):
        raise outcome
    return outcome


__all__ = [
    "CertificateRequest",
    "IssuedCertificate",
    "issue_certificate",
    "parse_csr",
]
