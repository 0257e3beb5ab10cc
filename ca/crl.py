"""Full and delta CRLs per CA (RFC 5280 §5), built from the certificate store for a million entries.

What is published (docs/crl.md): per CA *name* and key generation, a full CRL and a delta CRL on
it, each listing the certificates that generation signed and signed by that generation's key.
Generation 1 publishes at ``/crl/<ca>.crl`` and ``/crl/<ca>-delta.crl``, generation N ≥ 2 at
``/crl/<ca>/gN.crl`` and ``/crl/<ca>/gN-delta.crl`` — the URLs its certificates name. One CRL for
all generations, signed by the newest key, would not verify for the older generations'
certificates: RFC 5280 §6.3.3 (f) and OpenSSL want the CRL signed by the key that signed the
certificate. A generation publishes until it is retired (the last certificate it signed has
expired, ca/rollover.py); one CRL number space per CA serves all its generations.

How it is built — DESIGN.md route (b), the same as certificates in ca/tbs.py:
1. pyca's CertificateRevocationListBuilder emits the TBSCertList *without entries* (issuer,
   thisUpdate, nextUpdate, every extension), signed with a throwaway key of the CA's algorithm;
2. the revokedCertificates SEQUENCE is encoded here as DER in one pass over the database rows —
   pyca's ``add_revoked_certificate`` copies its list on every call (quadratic: 13 s for 100k,
   DESIGN.md Pitfalls), and a million Python RevokedCertificate objects would not fit the memory
   budget anyway;
3. the entries are spliced into the TBS, the CA's key signs those bytes through the signer
   interface (file or PKCS#11 alike) and the signature is verified before anything is stored.

CRL numbers (§5.2.3) come from one counter row per CA, locked with SELECT ... FOR UPDATE for the
whole publication, shared by full and delta CRLs: never reused across restarts or processes, and
a higher number always carries a later thisUpdate and newer content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import ColumnElement, Connection, Table, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ca.context import CaContext
from ca.der import _read_tlv, assemble_signed, signature_algorithm_of, tlv
from ca.errors import CaError
from ca.issuer import Issuer, cached_issuer, issuer_with_key
from ca.models import Certificate, CrlCounter, Generation, PublishedCrl
from ca.plan import crl_url, delta_crl_url
from ca.revocation import REASONS
from ca.status import authority_names
from ca.store import authority_row, generation_row
from ca.tbs import throwaway_signer, verify_signature
from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from hsm.algorithms import algorithm
from hsm.signer import Signer
from policies.profiles import CrlPolicy, get_profile

log = logging.getLogger(__name__)

# Without a ``crl`` section in the CA's profile: a daily full CRL and a delta every four hours.
DEFAULT_POLICY = CrlPolicy(next_update_hours=24, delta_next_update_hours=4)
# A delta lists changes since its base CRL's thisUpdate *minus this margin*: a revocation stamps
# status_changed_at before it commits, so one that committed just after the base read the store
# could otherwise fall between base and delta. Repeating an entry the base already has is
# harmless; missing one is not.
DELTA_OVERLAP = dt.timedelta(minutes=5)
CERTIFICATES: Table = Certificate.__table__  # type: ignore[assignment]

_REASON_OID = b"\x06\x03\x55\x1d\x15"  # id-ce-cRLReasons, 2.5.29.21
# crlEntryExtensions holding only a reasonCode, per RFC 5280 §5.3.1 code; unspecified (0) is
# never written ("SHOULD be absent instead of using the unspecified reasonCode value").
_REASON_EXTENSIONS: dict[int, bytes] = {
    code: tlv(0x30, tlv(0x30, _REASON_OID + tlv(0x04, tlv(0x0A, bytes([code])))))
    for code in REASONS.values() if code != 0
}


class CrlNotPublished(CaError):
    """A CA exists but no CRL of the kind asked for could be found or made."""

    kind = "crl-not-published"
    http_status = 404


@dataclass(frozen=True)
class CrlRecord:
    """One published CRL, as stored and served."""

    ca: str
    number: int
    is_delta: bool
    base_number: int | None
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    der: bytes
    generation: int = 1

    def crl(self) -> x509.CertificateRevocationList:
        return x509.load_der_x509_crl(self.der)

    def due(self, now: dt.datetime) -> bool:
        """Half the validity has passed: time to publish the next one, long before relying
        parties' caches (which may keep it until nextUpdate) run dry."""
        return now >= self.this_update + (self.next_update - self.this_update) / 2


def crl_policy(profile_name: str) -> CrlPolicy:
    """The CA profile's ``crl`` section, or :data:`DEFAULT_POLICY`."""
    return get_profile(profile_name).crl or DEFAULT_POLICY


# ---------------------------------------------------------------------------------------------
# DER of the entries


def _time_sql(column: ColumnElement[dt.datetime], dialect: str) -> ColumnElement[str]:
    """The stored UTC time as YYYYMMDDHHMMSS text, formatted by the database: a million
    Python datetimes would cost more than the whole DER encoding."""
    if dialect == "sqlite":
        return func.strftime("%Y%m%d%H%M%S", column)
    return func.to_char(column, "YYYYMMDDHH24MISS")


def _entries(rows: Iterable[Any], delta: bool,
             out: bytearray) -> int:
    """Append one DER CRL entry per row to ``out``; returns how many.

    Row: (serial hex, time YYYYMMDDHHMMSS, status, reason). revocationDate is UTCTime through
    2049 and GeneralizedTime after (RFC 5280 §5.1.2.6). Every entry is shorter than 128 bytes
    (serial ≤ 21 octets), so each length is one byte.
    """
    reasons = REASONS
    extensions = _REASON_EXTENSIONS
    hold = extensions[REASONS["certificateHold"]]
    remove = extensions[REASONS["removeFromCRL"]]
    count = 0
    for serial, when, status, reason in rows:
        if len(serial) % 2:
            serial = "0" + serial
        raw = bytes.fromhex(serial)
        if raw[0] & 0x80:
            raw = b"\x00" + raw
        if "1950" <= when < "2050":
            body = b"\x02" + bytes((len(raw),)) + raw + b"\x17\x0d" + when[2:].encode() + b"Z"
        else:
            body = b"\x02" + bytes((len(raw),)) + raw + b"\x18\x0f" + when.encode() + b"Z"
        if status == "hold":
            body += hold
        elif status == "revoked":
            code = reasons.get(reason or "unspecified", 0)
            if code:
                body += extensions[code]
        elif delta:  # good again after a hold: the delta tells relying parties to drop it
            body += remove
        else:
            continue
        out += b"\x30" + bytes((len(body),)) + body
        count += 1
    return count


def _splice(tbs: bytes, revoked: bytes) -> bytes:
    """Insert revokedCertificates after nextUpdate in a pyca TBSCertList (RFC 5280 §5.1)."""
    _, content, end = _read_tlv(tbs, 0)
    parts: list[bytes] = []
    offset = content
    while offset < end:
        start, _, stop = _read_tlv(tbs, offset)
        parts.append(tbs[start:stop])
        offset = stop
    # version, signature, issuer, thisUpdate, nextUpdate, [revokedCertificates], [0] extensions
    if len(parts) < 5 or tbs[content] != 0x02:
        raise ValueError("unexpected TBSCertList layout from pyca")
    head, tail = parts[:5], [p for p in parts[5:] if p[0] != 0x30]
    middle = [tlv(0x30, revoked)] if revoked else []  # absent when empty (§5.1.2.6)
    return tlv(0x30, b"".join([*head, *middle, *tail]))


# ---------------------------------------------------------------------------------------------
# Building one CRL


@dataclass(frozen=True)
class _Plan:
    number: int
    base: int | None  # set on deltas
    this_update: dt.datetime
    next_update: dt.datetime
    changed_since: dt.datetime | None  # deltas: changes after this instant
    # An issuing distribution point naming /crl/<ca>.crl (§5.2.5) — on every CRL but a root's:
    # a CRL with an IDP covers only certificates whose CRL DP names it, and a self-signed root
    # certificate carries none (profile root-ca), so relying parties that check the anchor too
    # (openssl -crl_check_all) would find no CRL for it: "different CRL scope".
    with_idp: bool = True


def _skeleton(issuer: Issuer, plan: _Plan, base_url: str) -> tuple[bytes, bytes]:
    """(TBSCertList without entries, signatureAlgorithm) from pyca and a throwaway key."""
    ext_idp = x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(
            crl_url(base_url, issuer.name, issuer.generation))],
        relative_name=None, only_contains_user_certs=False, only_contains_ca_certs=False,
        only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(plan.this_update)
        .next_update(plan.next_update)
        .add_extension(x509.CRLNumber(plan.number), critical=False)              # §5.2.3
        .add_extension(x509.AuthorityKeyIdentifier(issuer.ski, None, None),       # §5.2.1
                       critical=False)
    )
    if plan.with_idp:
        # §5.2.5: critical; identical on base and delta, as relying parties (OpenSSL among
        # them) combine a delta only with a base of the same scope.
        builder = builder.add_extension(ext_idp, critical=True)
    if plan.base is None:
        builder = builder.add_extension(x509.FreshestCRL([x509.DistributionPoint(  # §5.2.6
            [x509.UniformResourceIdentifier(
                delta_crl_url(base_url, issuer.name, issuer.generation))],
            None, None, None)]), critical=False)
    else:
        builder = builder.add_extension(x509.DeltaCRLIndicator(plan.base),         # §5.2.4
                                        critical=True)
    throwaway = throwaway_signer(issuer.signer.key_type)
    crl = builder.sign(
        throwaway.as_private_key(),  # type: ignore[arg-type]
        algorithm(issuer.signer.key_type).hash_algorithm(),  # type: ignore[arg-type]
    )
    return crl.tbs_certlist_bytes, signature_algorithm_of(crl.public_bytes(Encoding.DER))


def _build(connection: Connection, issuer: Issuer, plan: _Plan, base_url: str
           ) -> tuple[bytes, int]:
    """Read the entries, encode, sign with the CA's newest key, verify. Returns (DER, entries).

    Expired certificates are dropped (RFC 5280 §3.3 allows removing an entry once the
    certificate has expired; an expired certificate fails path validation anyway), so the CRL
    does not grow without bound.
    """
    t = CERTIFICATES
    query = select(
        t.c.serial,
        _time_sql(func.coalesce(t.c.revoked_at, t.c.status_changed_at),
                  connection.dialect.name),
        t.c.status, t.c.revocation_reason,
    ).where(t.c.authority_id == issuer.authority_id, t.c.state == "issued",
            t.c.not_after > plan.this_update,
            # only what this generation signed (the root's own certificate has no generation)
            or_(t.c.generation_id == issuer.generation_id, t.c.generation_id.is_(None))
            if issuer.generation == 1 else t.c.generation_id == issuer.generation_id)
    if plan.changed_since is None:
        query = query.where(t.c.status != "good")
    else:
        query = query.where(t.c.status_changed_at > plan.changed_since)
    # Streamed in batches (a server-side cursor on PostgreSQL): a million rows never sit in
    # memory at once. Set on the statement: Connection.execution_options would change the
    # session's connection for every later statement too.
    rows = connection.execute(query.execution_options(stream_results=True, yield_per=20000))
    revoked = bytearray()
    count = _entries(rows, plan.changed_since is not None, revoked)
    skeleton, algorithm_der = _skeleton(issuer, plan, base_url)
    tbs = _splice(skeleton, bytes(revoked))
    del revoked
    hash_algorithm = algorithm(issuer.signer.key_type).hash_algorithm()
    signature = issuer.signer.sign(tbs, hash_algorithm)
    verify_signature(issuer.public_key, signature, tbs, hash_algorithm)
    return assemble_signed(tbs, algorithm_der, signature), count


# ---------------------------------------------------------------------------------------------
# Numbers, storage, publication


def _lock_counter(session: Session, authority_id: int) -> int:
    """Lock the CA's CRL number row (creating it on first use) and return the last number."""
    query = (select(CrlCounter.last_number).where(CrlCounter.authority_id == authority_id)
             .with_for_update())
    last = session.execute(query).scalar_one_or_none()
    if last is None:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        session.execute(insert(CrlCounter).values(authority_id=authority_id, last_number=0)
                        .on_conflict_do_nothing())
        last = session.execute(query).scalar_one()
    return last


def _newest(session: Session, authority_id: int, delta: bool, generation: int
            ) -> PublishedCrl | None:
    return session.scalar(
        select(PublishedCrl)
        .where(PublishedCrl.authority_id == authority_id, PublishedCrl.is_delta == delta,
               PublishedCrl.generation == generation)
        .order_by(PublishedCrl.number.desc()).limit(1))


def _record(row: PublishedCrl, ca: str) -> CrlRecord:
    return CrlRecord(ca, row.number, row.is_delta, row.base_number, row.this_update,
                     row.next_update, row.entries, row.der, row.generation or 1)


def _publish_one(ctx: CaContext, ca: str, generation: int, *, mode: str, actor: str,
                 signer: Signer | None = None) -> list[CrlRecord]:
    """Publish what ``mode`` asks for one generation of one CA, in one transaction holding the
    CA's CRL number lock.

    ``full``: a full CRL and a delta on it. ``delta``: a delta on the newest full CRL (a full
    one first if there is none). ``due``: decided under the lock, so several schedulers or web
    nodes racing publish once — a full CRL and delta when the newest full CRL is due or
    missing, else a delta when the newest delta is due, missing or on an older base, else
    nothing.
    """
    if signer is None:
        issuer = cached_issuer(ctx, ca, generation=generation)
    else:
        with transaction(ctx.sessions) as session:
            issuer = issuer_with_key(session, ctx, ca, generation, signer)
    policy = crl_policy(_authority_profile(ctx, ca))
    base_url = ctx.config.public_base_url
    published: list[PublishedCrl] = []
    with transaction(ctx.sessions) as session:
        authority = authority_row(session, ca)
        last = _lock_counter(session, authority.id)
        now = utcnow().replace(microsecond=0)
        full = _newest(session, authority.id, False, generation)
        if mode == "full" or full is None:
            want_full = True
        elif mode == "delta":
            want_full = False
        else:
            want_full = _record(full, ca).due(now)
            delta = _newest(session, authority.id, True, generation)
            if not want_full and not (delta is None or delta.base_number != full.number
                                      or _record(delta, ca).due(now)):
                return []
        plans: list[_Plan] = []
        number = last
        with_idp = authority.parent_id is not None
        if want_full:
            number += 1
            plans.append(_Plan(number, None, now,
                               now + dt.timedelta(hours=policy.next_update_hours), None,
                               with_idp))
            base_number, base_time = number, now
        else:
            assert full is not None
            base_number, base_time = full.number, full.this_update
        number += 1
        plans.append(_Plan(number, base_number, now,
                           now + dt.timedelta(hours=policy.delta_next_update_hours),
                           base_time - DELTA_OVERLAP, with_idp))
        connection = session.connection()
        for plan in plans:
            der, count = _build(connection, issuer, plan, base_url)
            row = PublishedCrl(authority_id=authority.id, number=plan.number,
                               generation=generation,
                               is_delta=plan.base is not None, base_number=plan.base,
                               this_update=plan.this_update, next_update=plan.next_update,
                               entries=count, der=der)
            session.add(row)
            published.append(row)
        session.execute(update(CrlCounter).where(CrlCounter.authority_id == authority.id)
                        .values(last_number=number))
        session.flush()
        audit.record_events(session, [audit.EventSpec(
            actor=actor, action="ca.crl.publish", object_type="crl",
            object_id=f"{ca}/{row.number}", outcome="success",
            details={"kind": "delta" if row.is_delta else "full", "number": row.number,
                     "generation": generation,
                     "base_number": row.base_number, "entries": row.entries,
                     "this_update": row.this_update.isoformat(),
                     "next_update": row.next_update.isoformat(),
                     "sha256": hashlib.sha256(row.der).hexdigest()},
        ) for row in published])
    return [_record(row, ca) for row in published]


def _authority_profile(ctx: CaContext, ca: str) -> str:
    """The CA's own profile name, which carries its CRL validity (``crl`` section)."""
    with transaction(ctx.sessions) as session:
        return authority_row(session, ca).profile


def _publishers(ctx: CaContext, ca: str | None, generation: int | None
                ) -> list[tuple[str, int, str]]:
    """(CA, generation, key URI) for every generation that publishes: those not retired."""
    with transaction(ctx.sessions) as session:
        names = [authority_row(session, ca).name] if ca is not None \
            else authority_names(session)
        out: list[tuple[str, int, str]] = []
        for name in names:
            authority = authority_row(session, name)
            if generation is not None:
                generation_row(session, authority, generation)  # UnknownCa if there is none
            query = select(Generation.number, Generation.key_uri).where(
                Generation.authority_id == authority.id, Generation.retired_at.is_(None))
            if generation is not None:
                query = query.where(Generation.number == generation)
            out += [(name, n, uri) for n, uri in
                    session.execute(query.order_by(Generation.number)).all()]
        return out


def _reachable(ctx: CaContext, key_uri: str) -> bool:
    """Whether this process can sign with the key: an offline root's token is in the safe."""
    try:
        return ctx.keyring.exists(key_uri)
    except GovpkiError:
        return False


def _publish(ctx: CaContext, ca: str | None, *, mode: str, actor: str,
             generation: int | None = None, signer: Signer | None = None) -> list[CrlRecord]:
    """Every (CA, generation) in turn; one that fails (its key offline: a root whose token is
    in the safe) is audited and does not stop the others, and the first failure is raised once
    they have all been tried."""
    out: list[CrlRecord] = []
    failures: list[GovpkiError] = []
    for name, number, key_uri in _publishers(ctx, ca, generation):
        if signer is not None and key_uri != signer.key_uri:
            continue  # the key brought out signs for its own generation only
        if signer is None and mode == "due" and ca is None and not _reachable(ctx, key_uri):
            # The scheduler's round over every CA: a key kept offline is published by hand
            # when its token is brought out (docs/OPERATIONS.md, Key custody); the CRL's age
            # is watched by monitoring (govpki_crl_next_update_seconds), not audited a minute.
            log.info("CRL of %s generation %d not republished: its key is not online here",
                     name, number)
            continue
        try:
            out += _publish_one(ctx, name, number, mode=mode, actor=actor, signer=signer)
        except GovpkiError as exc:
            audit.record_refusal(ctx.sessions, actor=actor, action="ca.crl.publish",
                                 object_type="crl", object_id=f"{name}/?", outcome="failure",
                                 details={"error": exc.kind, "message": exc.message,
                                          "generation": number})
            failures.append(exc)
    if failures:
        raise failures[0]
    return out


def publish_crls(ctx: CaContext, ca: str | None = None, *, actor: str = "system",
                 generation: int | None = None, signer: Signer | None = None
                 ) -> list[CrlRecord]:
    """Publish a full CRL and a delta CRL on it for ``ca`` (or every CA), now: one pair per
    key generation not yet retired (or only ``generation``). ``signer``: a CA key from a store
    the key ring does not hold (an offline root's token); only its generation publishes.

    Returns the stored CRLs, full before delta, CA by CA, oldest generation first. Each is one
    ``ca.crl.publish`` audit event committed with it; a failure (HSM error, ...) stores nothing
    and is audited.
    """
    return _publish(ctx, ca, mode="full", actor=actor, generation=generation, signer=signer)


def publish_delta(ctx: CaContext, ca: str | None = None, *, actor: str = "system",
                  generation: int | None = None, signer: Signer | None = None
                  ) -> list[CrlRecord]:
    """Publish only a delta CRL on the newest full CRL (a full one first if there is none):
    changes reach relying parties without re-sending the whole list."""
    return _publish(ctx, ca, mode="delta", actor=actor, generation=generation, signer=signer)


def republish_due(ctx: CaContext, ca: str | None = None, *, actor: str = "system:scheduler",
                  generation: int | None = None, signer: Signer | None = None
                  ) -> list[CrlRecord]:
    """For a scheduler: publish where the newest CRL is missing or older than half its
    validity (a full CRL brings a fresh delta with it). Returns what was published."""
    return _publish(ctx, ca, mode="due", actor=actor, generation=generation, signer=signer)


def latest_crl(ctx: CaContext, ca: str, *, delta: bool = False, generation: int = 1
               ) -> CrlRecord | None:
    """The newest stored full (or delta) CRL of generation ``generation`` of ``ca``; None if
    none yet. UnknownCa if there is no such CA or generation."""
    with transaction(ctx.sessions) as session:
        authority = authority_row(session, ca)
        generation_row(session, authority, generation)
        row = _newest(session, authority.id, delta, generation)
        return _record(row, ca) if row is not None else None


def current_crl(ctx: CaContext, ca: str, *, delta: bool = False, generation: int = 1
                ) -> CrlRecord:
    """What to serve: the newest CRL, generated on demand when none is stored yet or the
    stored one is past its nextUpdate (a missed schedule must not leave relying parties with
    an expired CRL). A retired generation publishes no more: its last CRL is served as it is
    (every certificate it lists has expired)."""
    record = latest_crl(ctx, ca, delta=delta, generation=generation)
    if record is None or utcnow() >= record.next_update:
        republish_due(ctx, ca, actor="system:on-demand", generation=generation)
        record = latest_crl(ctx, ca, delta=delta, generation=generation)
    if record is None:
        which = f" generation {generation}" if generation != 1 else ""
        raise CrlNotPublished(f"CA '{ca}'{which} has no {'delta' if delta else 'full'} CRL",
                              ca=ca)
    return record


__all__ = [
    "DEFAULT_POLICY",
    "DELTA_OVERLAP",
    "CrlNotPublished",
    "CrlRecord",
    "crl_policy",
    "current_crl",
    "delta_crl_url",
    "latest_crl",
    "publish_crls",
    "publish_delta",
    "republish_due",
]
