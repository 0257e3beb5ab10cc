"""The OCSP responder's protocol logic (RFC 6960, RFC 5019 profile), without any web framework.

Answers for one good or revoked certificate asked without a nonce are *pre-signed*: held in a dict
keyed by (CertID hash algorithm, issuer name hash, issuer key hash, serial) for SHA-1 and SHA-256
CertIDs, and stored in ``ocsp_response`` so another or a restarted responder loads them instead of
signing again. They are re-signed once half their validity has passed. Requests with a nonce or
several CertIDs, and unknown serials, are signed on request. Every answer is signed by a
delegated OCSP signer (RFC 6960 §4.2.2.2), responderID byKey, with the signer certificate in
``certs``: the signer certified by the CA key *generation* that the request's issuerKeyHash
names, so after an issuing-CA key rollover the old generation's signer keeps answering for the
certificates the old key signed (a client checks the responder certificate against the issuer it
was given) until that generation is retired (ca/rollover.py). A CertID names a certificate only
under the key that signed it: the same serial under another generation's key is ``unknown``.

:meth:`OcspResponder.respond` never raises: bad input becomes ``malformedRequest``, a foreign
issuer ``unauthorized``, an unreachable database ``tryLater`` (unless a still-valid pre-signed
answer is held), anything unexpected ``internalError`` (logged).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from ca import status as ca_status
from ca.context import CaContext
from ca.errors import UnknownCa
from core.db import transaction, utcnow
from core.errors import GovpkiError
from hsm.algorithms import algorithm
from hsm.signer import Signer
from ocsp import der
from ocsp.errors import OcspError, ResponseStatus, TryLater, Unauthorized
from ocsp.models import PresignedResponse
from ocsp.request import HASH_OIDS, CertIdRequest, OcspRequest, parse_request

log = logging.getLogger(__name__)

SIGNER_ROLE = "ocsp-signer"
PRESIGNED_ALGORITHMS = ("sha1", "sha256")
DEFAULT_VALIDITY = dt.timedelta(hours=24)
# Issuers and signers change rarely (a key rollover, a renewed signer): re-read this often.
METADATA_TTL = 30.0
#: After a failed periodic re-read (database away), the next attempt is this many seconds later.
METADATA_RETRY = 5.0
# A bound on the request-bytes → cache-key memo, so hostile clients cannot grow it without limit.
RAW_MEMO_LIMIT = 100_000
# RFC 5280 §5.3.1 reason codes (CRLReason), as ca/ names them.
REASON_CODES = {"unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3,
                "superseded": 4, "cessationOfOperation": 5, "certificateHold": 6,
                "removeFromCRL": 8, "privilegeWithdrawn": 9, "aACompromise": 10}
_HASHLIB = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
            "sha512": hashlib.sha512}
_OID_OF = {name: oid for oid, name in HASH_OIDS.items()}
CacheKey = tuple[str, bytes, bytes, int]
SignerKey = tuple[str, int]  # (CA, key generation)


@dataclass(frozen=True)
class IssuerKey:
    """One generation of a CA as a CertID names it under one hash algorithm."""

    ca: str
    generation: int
    hash_algorithm: str
    name_hash: bytes
    key_hash: bytes


@dataclass(frozen=True)
class SignerState:
    """The delegated signer of one CA key generation, loaded once and reused for every answer."""

    ca: str
    generation: int
    serial: str
    signer: Signer
    hash: hashes.HashAlgorithm
    key_hash: bytes  # SHA-1 of the signer's subjectPublicKey: responderID byKey
    signature_algorithm_der: bytes
    certificate_der: bytes
    not_after: dt.datetime


@dataclass(frozen=True)
class Answer:
    """A response and what the HTTP edge needs for RFC 5019 §6 caching headers."""

    der: bytes
    status: ResponseStatus
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    cacheable: bool = False  # pre-signed: same bytes for everyone until next_update
    etag: str | None = None


@dataclass(frozen=True)
class CachedAnswer:
    ca: str
    serial: str
    generation: int
    status: str
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    this_update: dt.datetime
    next_update: dt.datetime
    refresh_at: dt.datetime
    der: bytes
    answer: Answer = field(repr=False)


def cert_id_der(hash_algorithm: str, name_hash: bytes, key_hash: bytes, serial: int) -> bytes:
    """A CertID as RFC 5019 clients send it (hash AlgorithmIdentifier with NULL parameters)."""
    oid = asn1_algos.DigestAlgorithmId(_OID_OF[hash_algorithm]).dump()
    alg = der.tlv(0x30, oid + b"\x05\x00")
    serial_bytes = serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)
    return der.tlv(0x30, alg + der.tlv(0x04, name_hash) + der.tlv(0x04, key_hash)
                   + der.tlv(0x02, serial_bytes))


def _matches(row: PresignedResponse | CachedAnswer, rec: ca_status.StatusRecord) -> bool:
    return (row.status == rec.status and row.revoked_at == rec.revoked_at
            and row.revocation_reason == rec.revocation_reason)


class OcspResponder:
    """Answers OCSP requests for every CA of ``ctx`` that has an OCSP signer.

    Thread-safe: the caches are plain dicts replaced or updated by single assignments, and the
    metadata reload holds a lock. ``clock`` is injectable so tests can move time.
    """

    def __init__(self, ctx: CaContext, *, validity: dt.timedelta = DEFAULT_VALIDITY,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        if validity <= dt.timedelta(0):
            raise ValueError("validity must be positive")
        self.ctx = ctx
        self.validity = validity
        self.clock = clock
        self._cache: dict[CacheKey, CachedAnswer] = {}
        self._raw: dict[bytes, CacheKey] = {}
        self._issuers: dict[tuple[str, bytes, bytes], IssuerKey] = {}
        self._issuers_by_ca: dict[str, list[IssuerKey]] = {}
        self._signers: dict[SignerKey, SignerState] = {}
        self._signer_objects: dict[str, Signer] = {}
        self._metadata_at = 0.0
        self._lock = threading.RLock()

    # -- public API ---------------------------------------------------------------------------

    def respond(self, request_der: bytes) -> bytes:
        """DER OCSPResponse for ``request_der``; never raises."""
        return self.respond_detailed(request_der).der

    def respond_detailed(self, request_der: bytes) -> Answer:
        """Like :meth:`respond`, with the validity and cacheability the HTTP edge needs."""
        try:
            key = self._raw.get(request_der)  # hot path: the same bytes asked again
            if key is not None:
                cached = self._cache.get(key)
                if cached is not None and self.clock() < cached.refresh_at:
                    return cached.answer
            return self._respond(parse_request(request_der), request_der)
        except OcspError as exc:
            return Answer(der.ERROR_RESPONSES[exc.status], exc.status)
        except SQLAlchemyError as exc:
            log.warning("OCSP: database unavailable, answering tryLater: %s",
                        type(exc).__name__)
            return Answer(der.ERROR_RESPONSES[ResponseStatus.TRY_LATER],
                          ResponseStatus.TRY_LATER)
        except Exception:
            log.exception("OCSP: unexpected error, answering internalError")
            return Answer(der.ERROR_RESPONSES[ResponseStatus.INTERNAL_ERROR],
                          ResponseStatus.INTERNAL_ERROR)

    def load(self) -> int:
        """Fill memory from ``ocsp_response`` (answers not yet expired), then re-check every
        certificate whose status changed since the oldest of them was signed: a change made while
        no responder listened must not be answered from a stale row. Returns answers loaded."""
        now = self.clock()
        self._load_metadata(force=True)
        with transaction(self.ctx.sessions) as session:
            rows = list(session.scalars(select(PresignedResponse).where(
                PresignedResponse.next_update > now)))
        oldest = None
        for row in rows:
            self._remember_row(row)
            oldest = row.this_update if oldest is None else min(oldest, row.this_update)
        if oldest is not None:
            self.resync(oldest - dt.timedelta(seconds=5))
        return len(rows)

    def resync(self, since: dt.datetime) -> int:
        """Bring every certificate whose status changed after ``since`` up to date."""
        changed: list[tuple[str, str]] = []
        with transaction(self.ctx.sessions) as session:
            for ca in self._served_cas():
                changed += [(ca, r.serial) for r in ca_status.statuses(
                    session, ca, changed_since=since)]
        for ca, serial in changed:
            self.sync(ca, serial)
        return len(changed)

    def sync(self, ca: str, serial: str) -> None:
        """Make memory and the table answer the CA's current status for one serial.

        Uses a stored answer when it says the current status (another responder signed it), signs
        otherwise. If signing fails, the stale answers are dropped from memory and the table first,
        so the next request is signed fresh rather than answered wrongly.
        """
        self._load_metadata()
        issuers = self._issuers_by_ca.get(ca)
        if not issuers:
            return
        now = self.clock()
        with transaction(self.ctx.sessions) as session:
            try:
                rec = ca_status.status(session, ca, serial)
            except UnknownCa:
                return
            rows = {(r.hash_algorithm, r.issuer_key_hash): r for r in session.scalars(
                select(PresignedResponse).where(PresignedResponse.ca == ca,
                                                PresignedResponse.serial == serial))}
        serial_int = int(serial, 16)
        if rec is not None and (ca, rec.generation) not in self._signers:
            return
        stale: list[IssuerKey] = []
        for issuer in issuers:
            if issuer.hash_algorithm not in PRESIGNED_ALGORITHMS:
                continue
            if rec is not None and issuer.generation != rec.generation:
                continue  # another key never signed this serial: nothing held for it
            row = rows.get((issuer.hash_algorithm, issuer.key_hash))
            if rec is not None and row is not None and _matches(row, rec) \
                    and row.next_update > now + self.validity / 2:
                self._remember_row(row)
            else:
                stale.append(issuer)
        if not stale:
            return
        keys = [(i.hash_algorithm, i.name_hash, i.key_hash, serial_int) for i in stale]
        for key in keys:
            self._cache.pop(key, None)
        if rec is None:
            self._delete_rows(ca, serial)
            return
        try:
            self._presign(stale, [rec], now)
        except Exception:
            self._delete_rows(ca, serial)
            raise

    def presign_all(self, ca: str | None = None, *, force: bool = False,
                    progress: Callable[[int], None] = lambda _n: None) -> int:
        """Sign (or re-sign when due, or always with ``force``) every unexpired certificate's
        answers; returns how many answers were signed."""
        self._load_metadata(force=True)
        now = self.clock()
        signed = 0
        for name, generation in sorted(self._signers):
            if ca is not None and name != ca:
                continue
            issuers = [i for i in self._issuers_by_ca.get(name, [])
                       if i.hash_algorithm in PRESIGNED_ALGORITHMS
                       and i.generation == generation]
            batch: list[ca_status.StatusRecord] = []
            with transaction(self.ctx.sessions) as session:
                records = list(ca_status.statuses(session, name, only_unexpired_at=now,
                                                  generation=generation))
            for rec in records:
                if not force and all(self._fresh(i, rec, now) for i in issuers):
                    continue
                batch.append(rec)
                if len(batch) >= 200:
                    signed += self._presign(issuers, batch, now)
                    progress(signed)
                    batch = []
            if batch:
                signed += self._presign(issuers, batch, now)
                progress(signed)
        return signed

    def cached_count(self) -> int:
        return len(self._cache)

    def invalidate_metadata(self) -> None:
        """Re-read issuers and signers on the next request (after a signer renewal)."""
        self._metadata_at = 0.0

    def reload_metadata(self) -> None:
        """Re-read issuers and signers now: a CA key generation was made or retired, and
        answers held for a retired one must not be served from memory any more."""
        self._load_metadata(force=True)

    # -- request handling ---------------------------------------------------------------------

    def _respond(self, request: OcspRequest, request_der: bytes) -> Answer:
        self._load_metadata()
        now = self.clock()
        if len(request.cert_ids) == 1 and request.nonce is None \
                and request.cert_ids[0].hash_algorithm in PRESIGNED_ALGORITHMS:
            cid = request.cert_ids[0]
            cached = self._cache.get(cid.key)
            if cached is not None and now < cached.refresh_at:
                self._memo(request_der, cid.key)
                return cached.answer
            issuer = self._issuer_for(cid)
            try:
                with transaction(self.ctx.sessions) as session:
                    rec = ca_status.status(session, issuer.ca, format(cid.serial, "x")) \
                        if cid.serial > 0 else None
            except SQLAlchemyError:
                if cached is not None and now < cached.next_update:
                    return cached.answer  # still valid: better than tryLater
                raise
            if rec is not None and rec.generation == issuer.generation:
                self._presign([issuer], [rec], now)
                fresh = self._cache.get(cid.key)
                if fresh is not None:
                    self._memo(request_der, cid.key)
                    return fresh.answer
            return self._sign_fresh((issuer.ca, issuer.generation), [(cid, None)], None, now)
        issuers = [self._issuer_for(cid) for cid in request.cert_ids]
        responders = {(i.ca, i.generation) for i in issuers}
        if len(responders) > 1:
            # One response has one signer, and each CA key generation has its own delegated
            # signer (a client checks it against the issuer it asked about).
            raise Unauthorized("the CertIDs name issuers with different responders "
                               "(different CAs or key generations of a CA)")
        signer_key = next(iter(responders))
        ca, generation = signer_key
        # A held pre-signed answer is kept current by status events, so its status serves a
        # nonce request too; only the others are read from the database (on SQLite every
        # transaction takes the write lock, so this matters across worker processes).
        recs: list[ca_status.StatusRecord | None] = []
        missing = []
        for cid in request.cert_ids:
            held = self._cache.get(self._presigned_key(cid))
            if held is not None and now < held.next_update:
                recs.append(ca_status.StatusRecord(ca, held.serial, held.status, held.revoked_at,
                                                   held.revocation_reason, held.next_update,
                                                   None, held.generation))
            else:
                recs.append(None)
                missing.append(len(recs) - 1)
        if missing:
            with transaction(self.ctx.sessions) as session:
                for index in missing:
                    serial = request.cert_ids[index].serial
                    found = ca_status.status(session, ca, format(serial, "x")) \
                        if serial > 0 else None
                    recs[index] = found if found is not None \
                        and found.generation == generation else None
        return self._sign_fresh(signer_key, list(zip(request.cert_ids, recs, strict=True)),
                                request.nonce, now)

    def _presigned_key(self, cid: CertIdRequest) -> CacheKey:
        """The cache key of the pre-signed answer for the same certificate: a SHA-384 CertID
        (never pre-signed) maps to the SHA-256 one of the same issuer generation."""
        if cid.hash_algorithm in PRESIGNED_ALGORITHMS:
            return cid.key
        issuer = self._issuers[(cid.hash_algorithm, cid.issuer_name_hash, cid.issuer_key_hash)]
        twin = next(i for i in self._issuers_by_ca[issuer.ca]
                    if i.generation == issuer.generation and i.hash_algorithm == "sha256")
        return ("sha256", twin.name_hash, twin.key_hash, cid.serial)

    def _memo(self, request_der: bytes, key: CacheKey) -> None:
        if len(self._raw) >= RAW_MEMO_LIMIT:
            self._raw = {}
        self._raw[bytes(request_der)] = key

    def _issuer_for(self, cid: CertIdRequest) -> IssuerKey:
        issuer = self._issuers.get((cid.hash_algorithm, cid.issuer_name_hash,
                                    cid.issuer_key_hash))
        if issuer is None or (issuer.ca, issuer.generation) not in self._signers:
            raise Unauthorized("no CA key served here matches the CertID's issuer")
        return issuer

    def _sign_fresh(self, signer_key: SignerKey,
                    items: list[tuple[CertIdRequest, ca_status.StatusRecord | None]],
                    nonce: bytes | None, now: dt.datetime) -> Answer:
        this_update = now.replace(microsecond=0)
        state = self._signers[signer_key]
        next_update = min(this_update + self.validity, state.not_after)
        answers = []
        for cid, rec in items:
            if rec is None:
                answers.append(der.SingleAnswer(cid.der, "unknown", this_update, None))
            else:
                answers.append(self._single(cid.der, rec, this_update, next_update))
        body = self._sign(state, answers, nonce, this_update)
        return Answer(body, ResponseStatus.SUCCESSFUL, this_update,
                      None if all(r is None for _, r in items) else next_update)

    @staticmethod
    def _single(cert_id: bytes, rec: ca_status.StatusRecord, this_update: dt.datetime,
                next_update: dt.datetime) -> der.SingleAnswer:
        if rec.status == "good":
            return der.SingleAnswer(cert_id, "good", this_update, next_update)
        # certificateHold is answered as revoked with that reason (RFC 6960 §2.2).
        reason = rec.revocation_reason or ("certificateHold" if rec.status == "hold" else None)
        # unspecified is omitted, as RFC 5280 §5.3.1 asks of CRL entries.
        code = REASON_CODES.get(reason) if reason and reason != "unspecified" else None
        return der.SingleAnswer(cert_id, "revoked", this_update, next_update,
                                rec.revoked_at or rec.status_changed_at or this_update, code)

    @staticmethod
    def _sign(state: SignerState, answers: list[der.SingleAnswer], nonce: bytes | None,
              produced_at: dt.datetime) -> bytes:
        tbs = der.response_data(state.key_hash, produced_at, answers, nonce)
        signature = state.signer.sign(tbs, state.hash)
        return der.ocsp_response(tbs, state.signature_algorithm_der, signature,
                                 [state.certificate_der])

    # -- pre-signing --------------------------------------------------------------------------

    def _fresh(self, issuer: IssuerKey, rec: ca_status.StatusRecord, now: dt.datetime) -> bool:
        cached = self._cache.get((issuer.hash_algorithm, issuer.name_hash, issuer.key_hash,
                                  int(rec.serial, 16)))
        return cached is not None and now < cached.refresh_at and _matches(cached, rec)

    def _presign(self, issuers: Iterable[IssuerKey], records: list[ca_status.StatusRecord],
                 now: dt.datetime) -> int:
        """Sign one answer per (issuer key, record), store them all in one transaction, then
        put them in memory (only after commit: memory never runs ahead of the table)."""
        this_update = now.replace(microsecond=0)
        made: list[CachedAnswer] = []
        rows: list[dict[str, Any]] = []
        for issuer in issuers:
            state = self._signers[(issuer.ca, issuer.generation)]
            next_update = min(this_update + self.validity, state.not_after)
            for rec in records:
                serial = int(rec.serial, 16)
                cid = cert_id_der(issuer.hash_algorithm, issuer.name_hash, issuer.key_hash,
                                  serial)
                body = self._sign(state, [self._single(cid, rec, this_update, next_update)],
                                  None, this_update)
                cached = self._cached(issuer, rec.serial, rec.status, rec.revoked_at,
                                      rec.revocation_reason, this_update, next_update, body)
                made.append(cached)
                rows.append(dict(
                    ca=issuer.ca, generation=issuer.generation, serial=rec.serial,
                    hash_algorithm=issuer.hash_algorithm, issuer_name_hash=issuer.name_hash,
                    issuer_key_hash=issuer.key_hash, status=rec.status,
                    revoked_at=rec.revoked_at, revocation_reason=rec.revocation_reason,
                    this_update=this_update, next_update=next_update, response_der=body,
                    signer_serial=state.serial))
        self._store(rows)
        for cached, row in zip(made, rows, strict=True):
            self._cache[(row["hash_algorithm"], row["issuer_name_hash"], row["issuer_key_hash"],
                         int(cached.serial, 16))] = cached
        return len(made)

    def _store(self, rows: list[dict[str, Any]]) -> None:
        """Upsert by (hash algorithm, issuer key hash, serial); two responders storing the same
        answer at once both succeed (the loser of the insert race updates)."""
        for attempt in range(3):
            try:
                with transaction(self.ctx.sessions) as session:
                    self._upsert(session, rows)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    @staticmethod
    def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
        serials = {str(r["serial"]) for r in rows}
        existing = {(e.hash_algorithm, e.issuer_key_hash, e.serial): e
                    for e in session.scalars(select(PresignedResponse).where(
                        PresignedResponse.serial.in_(serials)))}
        for row in rows:
            found = existing.get((row["hash_algorithm"], row["issuer_key_hash"],
                                  row["serial"]))
            if found is None:
                session.add(PresignedResponse(**row))
            else:
                for name, value in row.items():
                    setattr(found, name, value)

    def _delete_rows(self, ca: str, serial: str) -> None:
        try:
            with transaction(self.ctx.sessions) as session:
                session.execute(delete(PresignedResponse).where(
                    PresignedResponse.ca == ca, PresignedResponse.serial == serial))
        except SQLAlchemyError:
            log.exception("OCSP: could not drop stale answers for %s/%s", ca, serial)

    def _cached(self, issuer: IssuerKey, serial: str, status: str,
                revoked_at: dt.datetime | None, reason: str | None, this_update: dt.datetime,
                next_update: dt.datetime, body: bytes) -> CachedAnswer:
        refresh_at = this_update + (next_update - this_update) / 2
        answer = Answer(body, ResponseStatus.SUCCESSFUL, this_update, next_update, True,
                        '"' + hashlib.sha1(body).hexdigest() + '"')  # noqa: S324 - RFC 5019 ETag
        return CachedAnswer(issuer.ca, serial, issuer.generation, status, revoked_at, reason,
                            this_update, next_update, refresh_at, body, answer)

    def _remember_row(self, row: PresignedResponse) -> None:
        issuer = self._issuers.get((row.hash_algorithm, row.issuer_name_hash,
                                    row.issuer_key_hash))
        if issuer is None:
            return  # a generation no longer served
        self._cache[(row.hash_algorithm, row.issuer_name_hash, row.issuer_key_hash,
                     int(row.serial, 16))] = self._cached(
            issuer, row.serial, row.status, row.revoked_at, row.revocation_reason,
            row.this_update, row.next_update, row.response_der)

    # -- issuers and signers ------------------------------------------------------------------

    def _served_cas(self) -> list[str]:
        self._load_metadata()
        return sorted({ca for ca, _ in self._signers})

    def _load_metadata(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._metadata_at < METADATA_TTL:
            return
        with self._lock:
            if not force and time.monotonic() - self._metadata_at < METADATA_TTL:
                return
            try:
                self._read_metadata()
            except SQLAlchemyError:
                if force or not self._issuers:
                    raise
                # The periodic re-read met a database that is away: keep serving the answers
                # held for the issuers known a moment ago (each is valid until its nextUpdate)
                # rather than tryLater for all of them, and try again shortly.
                log.warning("OCSP: database unavailable, keeping the issuers read before")
                self._metadata_at = time.monotonic() - METADATA_TTL + METADATA_RETRY

    def _read_metadata(self) -> None:
        """Issuers and signers of every unretired generation, read in one transaction (the
        caller holds the lock)."""
        issuers: dict[tuple[str, bytes, bytes], IssuerKey] = {}
        by_ca: dict[str, list[IssuerKey]] = {}
        signers: dict[SignerKey, SignerState] = {}
        with transaction(self.ctx.sessions) as session:
            for ca in ca_status.authority_names(session):
                # Retired generations sign nothing any more: their CertIDs are refused.
                active = ca_status.generations(session, ca, active_only=True)
                for gen in active:
                    for key in _issuer_keys(gen):
                        issuers[(key.hash_algorithm, key.name_hash, key.key_hash)] = key
                        by_ca.setdefault(ca, []).append(key)
                numbers = {gen.number for gen in active}
                # newest first: the first record of each generation is its signer
                for record in ca_status.service_keys(session, SIGNER_ROLE, ca):
                    if record.generation in numbers \
                            and (ca, record.generation) not in signers:
                        signers[(ca, record.generation)] = self._signer_state(record)
        gone = self._issuers.keys() - issuers.keys()
        self._issuers, self._issuers_by_ca, self._signers = issuers, by_ca, signers
        if gone:
            # A generation was retired: its held answers go too (one pass over the cache,
            # only when that happens), so its CertIDs are refused from now on.
            for held in [k for k in self._cache if k[:3] in gone]:
                self._cache.pop(held, None)
        self._metadata_at = time.monotonic()

    def _signer_state(self, record: ca_status.ServiceKeyRecord) -> SignerState:
        current = self._signers.get((record.ca, record.generation))
        if current is not None and current.serial == record.serial:
            return current
        signer = self._signer_objects.get(record.key_uri)
        if signer is None:
            try:
                signer = self.ctx.keyring.get(record.key_uri)
            except GovpkiError as exc:
                raise TryLater(f"the OCSP signer key of {record.ca} is unavailable") from exc
            self._signer_objects[record.key_uri] = signer
        cert = asn1_x509.Certificate.load(record.certificate_der)
        alg = algorithm(signer.key_type)
        oid = asn1_core.ObjectIdentifier(alg.signature_oid).dump()
        # RSA AlgorithmIdentifiers carry NULL parameters (RFC 4055), ECDSA ones none (RFC 5758).
        params = b"\x05\x00" if signer.key_type.value.startswith("rsa") else b""
        sig_alg_der = der.tlv(0x30, oid + params)
        return SignerState(record.ca, record.generation, record.serial, signer,
                           alg.hash_algorithm(),
                           cert.public_key.sha1, sig_alg_der, record.certificate_der,
                           record.not_after)


def _issuer_keys(gen: ca_status.GenerationRecord) -> list[IssuerKey]:
    cert = asn1_x509.Certificate.load(gen.certificate_der)
    name_der = cert.subject.dump()
    key_bits = cert.public_key["public_key"].contents[1:]  # BIT STRING minus unused-bits octet
    return [IssuerKey(gen.ca, gen.number, alg, fn(name_der).digest(), fn(key_bits).digest())
            for alg, fn in _HASHLIB.items()]
