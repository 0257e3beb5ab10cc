"""The tamper-evident audit log: a hash chain in the database, anchored by signed checkpoints.

Every state transition worth auditing (a certificate issued or refused, a key generated, a
revocation) becomes one :class:`AuditEvent` row. Each row carries the SHA-256 of a canonical
encoding of its own fields *and* of the previous row's hash, so changing, inserting or removing
a row breaks the chain at a place :func:`verify_chain` can name.

A hash chain alone does not stop someone who can write to the database: they can recompute
every hash after their change. That is what checkpoints are for: :func:`write_checkpoint`
signs (seq, hash, time) of the head with the audit key and appends it to a file outside the
database. A rewritten or truncated log no longer matches a signed checkpoint, and an operator
who archives that file elsewhere (see docs/audit.md) keeps evidence that the database owner
cannot forge.

Ordering and locking: :func:`record_event` appends inside the caller's transaction, so an issued
certificate and its audit event commit together or not at all. The chain head lives in the
one-row ``audit_head`` table; appending locks it (``SELECT ... FOR UPDATE`` on PostgreSQL, the
``BEGIN IMMEDIATE`` write lock on SQLite), which keeps the chain linear across processes but also
serialises every auditing transaction from that point to its commit. Callers therefore record
the event as the *last* statement before commit.

This module imports nothing of ours above ``core``: the signer is any object with the shape of
``hsm.signer.Signer``'s ``sign`` and ``public_key`` (see :class:`CheckpointSigner`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.schema import Table

from core.db import Base, UTCDateTime, transaction, utcnow
from core.errors import AuditError

__all__ = [
    "GENESIS_HASH",
    "OUTCOMES",
    "AuditEvent",
    "AuditHead",
    "Checkpoint",
    "CheckpointSigner",
    "VerifyReport",
    "canonical_details",
    "checkpoint_signed_data",
    "compute_event_hash",
    "encode_fields",
    "format_time",
    "key_id",
    "read_checkpoints",
    "record_event",
    "record_refusal",
    "verify_chain",
    "write_checkpoint",
]

#: The prev_hash of seq 1, and the hash a checkpoint at seq 0 (an empty log) carries.
GENESIS_HASH: Final = "0" * 64
#: What an audited action came to. "refused": a rule said no (bad CSR, not authorised);
#: "failure": something broke (HSM error, database error) after the action was allowed.
OUTCOMES: Final = ("success", "refused", "failure")

# Domain-separation tags: the first field of every hashed or signed encoding, so a digest or
# signature made for one purpose can never be presented as one made for another.
EVENT_TAG: Final = "govpki-audit-event-v1"
CHECKPOINT_TAG: Final = "govpki-audit-checkpoint-v1"

# Column sizes; record_event checks them itself because SQLite would not.
_MAX_LEN: Final = {"actor": 255, "action": 100, "object_type": 100, "object_id": 255}
_ACTION_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
# Key names in `details` that would put a secret into a log kept for years.
_SECRET_WORDS: Final = frozenset({"pin", "password", "passwd", "passphrase", "secret"})
# verify_chain stops collecting after this many problems: after a renumbering every later row
# is wrong, and the first few say all there is to say.
_MAX_PROBLEMS: Final = 100


# --------------------------------------------------------------------------------------------
# Tables


class AuditEvent(Base):
    """One link of the chain. Rows are only ever inserted; nothing updates or deletes them."""

    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(_MAX_LEN["actor"]), nullable=False)
    action: Mapped[str] = mapped_column(String(_MAX_LEN["action"]), nullable=False)
    object_type: Mapped[str] = mapped_column(String(_MAX_LEN["object_type"]), nullable=False)
    object_id: Mapped[str] = mapped_column(String(_MAX_LEN["object_id"]), nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    details: Mapped[str] = mapped_column(Text, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        CheckConstraint("seq >= 1", name="ck_audit_event_seq_positive"),
        Index("ix_audit_event_object", "object_type", "object_id"),
        Index("ix_audit_event_actor", "actor"),
    )

    def details_dict(self) -> dict[str, Any]:
        """The details as data (the column holds canonical JSON text)."""
        value = json.loads(self.details)
        if not isinstance(value, dict):
            raise AuditError(f"audit event seq {self.seq}: details are not a JSON object")
        return value

    def __repr__(self) -> str:
        return (
            f"AuditEvent(seq={self.seq}, action={self.action!r}, outcome={self.outcome!r}, "
            f"object={self.object_type}:{self.object_id})"
        )


class AuditHead(Base):
    """The chain's head (last seq and hash), a single row with id 1.

    Its row lock is the chain lock: whoever holds it appends the next seq. It also lets
    :func:`verify_chain` notice rows removed from the end by someone who did not also fix it.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (CheckConstraint("id = 1", name="ck_audit_head_singleton"),)


@event.listens_for(AuditHead.__table__, "after_create")
def _insert_genesis_head(target: Table, connection: Connection, **_kw: Any) -> None:
    """``Base.metadata.create_all`` (used by some tests) gets the head row the migration adds."""
    connection.execute(insert(target).values(id=1, seq=0, hash=GENESIS_HASH))


# --------------------------------------------------------------------------------------------
# Canonical encodings


def encode_fields(*fields: str) -> bytes:
    """Length-prefixed UTF-8: for each field, its byte length (4 bytes, big-endian), its bytes.

    Chosen over JSON for the hashed bytes because it has no escaping rules, so an auditor's
    independent verifier in any language produces the same bytes, and no two different field
    lists encode alike.
    """
    out = bytearray()
    for value in fields:
        raw = value.encode("utf-8")
        out += len(raw).to_bytes(4, "big")
        out += raw
    return bytes(out)


def format_time(value: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC: one spelling per instant, microseconds always."""
    if value.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str) -> dt.datetime:
    parsed = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    if format_time(parsed) != value:
        raise ValueError(f"time {value!r} is not in canonical form")
    return parsed


def canonical_details(details: Mapping[str, Any] | None) -> str:
    """The details as canonical JSON text: sorted keys, no whitespace, UTF-8 kept as is.

    This text is what the column stores and what the hash covers, byte for byte, so the
    verifier never has to re-serialise (float formatting, key order) to check a row.
    """
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise TypeError(f"details must be a mapping, not {type(details).__name__}")
    _check_json_value(details, "details")
    text = json.dumps(
        details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("details contain text that is not valid Unicode (lone surrogate)") \
            from None
    return text


def _check_json_value(value: Any, where: str) -> None:
    """Only JSON's own types, string keys, finite numbers, and no key named like a secret."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, not {value!r}")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; keys must be str")
            if _looks_secret(key):
                raise ValueError(
                    f"{where} has the key {key!r}: secrets (PINs, passwords, private keys) "
                    "never go into the audit log"
                )
            _check_json_value(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; details hold JSON types only")


def _looks_secret(key: str) -> bool:
    """Key names made of a secret's word (``pin``, ``user_pin``, ``client-secret``, ``privateKey``).

    A guard against slips, not a guarantee: it is deliberately blunt (``pin_policy`` is refused
    too; name it ``unlock_policy``), since a false alarm costs a rename and a secret in a log
    kept for years costs a key.
    """
    lowered = key.lower()
    if re.search(r"private[_-]?key$", lowered):
        return True
    return any(word in _SECRET_WORDS for word in re.split(r"[^a-z0-9]+", lowered))


def compute_event_hash(
    *,
    seq: int,
    occurred_at: dt.datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    outcome: str,
    details: str,
    prev_hash: str,
) -> str:
    """SHA-256 (lowercase hex) of :func:`encode_fields` over the tag and the row's fields.

    ``details`` is the stored canonical JSON text (see :func:`canonical_details`), ``seq`` is in
    decimal, ``occurred_at`` in :func:`format_time` form. docs/audit.md spells the layout out
    for independent verifiers.
    """
    data = encode_fields(
        EVENT_TAG,
        str(seq),
        format_time(occurred_at),
        actor,
        action,
        object_type,
        object_id,
        outcome,
        details,
        prev_hash,
    )
    return hashlib.sha256(data).hexdigest()


def _row_hash(row: Any) -> str:
    return compute_event_hash(
        seq=row.seq,
        occurred_at=row.occurred_at,
        actor=row.actor,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        outcome=row.outcome,
        details=row.details,
        prev_hash=row.prev_hash,
    )


# --------------------------------------------------------------------------------------------
# Appending


def _check_text(name: str, value: object, *, required: bool) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if required and not value:
        raise ValueError(f"{name} must not be empty")
    if len(value) > _MAX_LEN[name]:
        raise ValueError(f"{name} is longer than {_MAX_LEN[name]} characters")
    # Control characters would let a value forge extra lines when the log is printed;
    # NUL is refused by PostgreSQL anyway.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{name} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid Unicode (lone surrogate)") from None
    return value


def record_event(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    outcome: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction, and flush it.

    The event commits or rolls back with whatever else the transaction did, so "certificate
    stored" and "certificate issued was audited" can never disagree. Call this as the last
    statement before commit: from here until the commit the chain is locked for every other
    process (that lock is what keeps seq contiguous and the chain linear).

    ``actor`` is who acted (operator name, ``system``), ``action`` a dotted lowercase name
    (``ca.issue``, ``ca.issue.refused``), ``object_type``/``object_id`` what it acted on (may be
    empty strings when there is no object), ``outcome`` one of :data:`OUTCOMES`, ``details`` a
    JSON-able mapping without secrets. Bad arguments raise ``TypeError``/``ValueError`` naming
    the argument before anything is locked or written.

    On PostgreSQL the transaction must be READ COMMITTED (the default); under REPEATABLE READ
    two concurrent appenders end in a serialisation failure instead of waiting for each other.
    """
    spec = EventSpec(actor, action, object_type, object_id, outcome, details)
    # Transient (never added to the session): the row itself was written by _append.
    return AuditEvent(**_append(session, [spec])[0])


@dataclass(frozen=True)
class EventSpec:
    """One event for :func:`record_events` (the same fields as :func:`record_event`)."""

    actor: str
    action: str
    object_type: str
    object_id: str
    outcome: str
    details: Mapping[str, Any] | None = None


def record_events(session: Session, events: Sequence[EventSpec]) -> list[str]:
    """Append several events under one chain lock, in order; returns their hashes.

    For batched issuance: one lock, one bulk insert and one head update for the whole batch,
    while every event still gets its own link (seq, prev_hash, hash), so verification is the
    same as for events appended one by one. Same contract as :func:`record_event`.
    """
    return [row["hash"] for row in _append(session, events)]


def _append(session: Session, events: Sequence[EventSpec]) -> list[dict[str, Any]]:
    """Validate every event before locking anything, then link and insert them."""
    prepared = []
    for ev in events:
        _check_text("actor", ev.actor, required=True)
        _check_text("action", ev.action, required=True)
        if not _ACTION_RE.fullmatch(ev.action):
            raise ValueError(f"action {ev.action!r} must be dotted lowercase words")
        _check_text("object_type", ev.object_type, required=False)
        _check_text("object_id", ev.object_id, required=False)
        if ev.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {ev.outcome!r}")
        prepared.append((ev, canonical_details(ev.details)))
    if not prepared:
        return []
    # The chain lock. Column select, not an ORM load, so a stale AuditHead in the session's
    # identity map can never hand out a seq twice.
    head = session.execute(
        select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
    ).one_or_none()
    if head is None:
        raise AuditError(
            "the audit_head row is missing: run the migrations ('govpki init') before auditing"
        )
    seq, prev = head.seq, head.hash
    # Taken under the lock, so occurred_at follows seq order as long as the clock does.
    occurred_at = utcnow()
    rows: list[dict[str, Any]] = []
    for ev, details_text in prepared:
        seq += 1
        digest = compute_event_hash(
            seq=seq, occurred_at=occurred_at, actor=ev.actor, action=ev.action,
            object_type=ev.object_type, object_id=ev.object_id, outcome=ev.outcome,
            details=details_text, prev_hash=prev,
        )
        rows.append({"seq": seq, "occurred_at": occurred_at, "actor": ev.actor,
                     "action": ev.action, "object_type": ev.object_type,
                     "object_id": ev.object_id, "outcome": ev.outcome,
                     "details": details_text, "prev_hash": prev, "hash": digest})
        prev = digest
    session.execute(insert(AuditEvent), rows)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=seq, hash=prev))
    return rows


def record_refusal(
    session_factory: sessionmaker[Session],
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: Mapping[str, Any] | None = None,
    outcome: str = "refused",
) -> AuditEvent:
    """Record an event in a transaction of its own and commit it.

    For actions that did not happen: their own transaction rolled back (or never wrote), yet
    the refusal must still be on record. Call it *after* that transaction has ended: on SQLite
    a transaction still open on another connection holds the write lock this one needs, and on
    PostgreSQL one that already called :func:`record_event` holds the chain lock. ``outcome`` is
    ``refused`` or ``failure``. The returned event is detached from any session.
    """
    if outcome not in ("refused", "failure"):
        raise ValueError(f"record_refusal records 'refused' or 'failure', not {outcome!r}")
    with transaction(session_factory) as session:
        audit_event = record_event(
            session,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            outcome=outcome,
            details=details,
        )
    return audit_event


# --------------------------------------------------------------------------------------------
# Checkpoints


@runtime_checkable
class CheckpointSigner(Protocol):
    """What checkpoints need of a key: the shape of ``hsm.signer.Signer`` (core cannot import it).

    ``sign`` returns a DER ECDSA signature or an RSASSA-PKCS1-v1_5 signature.
    """

    def public_key(self) -> PublicKeyTypes: ...

    def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes: ...


def key_id(public_key: PublicKeyTypes) -> str:
    """SHA-256 (hex) of the SubjectPublicKeyInfo DER: names the audit key in every checkpoint."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def checkpoint_signed_data(seq: int, head_hash: str, time: dt.datetime) -> bytes:
    """The bytes a checkpoint signature covers: :func:`encode_fields` of tag, seq, hash, time."""
    return encode_fields(CHECKPOINT_TAG, str(seq), head_hash, format_time(time))


def _verify_signature(public_key: PublicKeyTypes, signature: bytes, data: bytes) -> bool:
    """RSA PKCS#1 v1.5 or ECDSA with SHA-256, chosen by the key's type, never by the file."""
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise AuditError(
                f"audit checkpoints are signed with RSA or EC keys, not {type(public_key).__name__}"
            )
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement "the log had ``seq`` events, the last with ``hash``, at ``time``"."""

    seq: int
    hash: str
    time: dt.datetime
    key_id: str
    signature: bytes

    def signed_data(self) -> bytes:
        return checkpoint_signed_data(self.seq, self.hash, self.time)

    def to_line(self) -> str:
        """One JSON line (with newline): sorted keys, the signature in standard base64."""
        body = {
            "v": 1,
            "seq": self.seq,
            "hash": self.hash,
            "time": format_time(self.time),
            "key_id": self.key_id,
            "sig": base64.b64encode(self.signature).decode("ascii"),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def from_line(cls, line: str) -> Checkpoint:
        """Parse one line; ``ValueError`` says what is malformed (the signature is not checked)."""
        try:
            body = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError("not valid JSON") from None
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        if body.get("v") != 1:
            raise ValueError(f"unknown format version {body.get('v')!r}")
        seq, head_hash, time, kid, sig = (
            body.get("seq"), body.get("hash"), body.get("time"), body.get("key_id"),
            body.get("sig"),
        )
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError("seq must be a non-negative integer")
        for name, value in (("hash", head_hash), ("key_id", kid)):
            if not isinstance(value, str) or not _HEX64_RE.fullmatch(value):
                raise ValueError(f"{name} must be 64 lowercase hex digits")
        if not isinstance(time, str):
            raise ValueError("time must be a string")
        if not isinstance(sig, str):
            raise ValueError("sig must be a base64 string")
        try:
            signature = base64.b64decode(sig, validate=True)
        except binascii.Error:
            raise ValueError("sig is not valid base64") from None
        assert isinstance(head_hash, str) and isinstance(kid, str)
        return cls(seq=seq, hash=head_hash, time=_parse_time(time), key_id=kid,
                   signature=signature)

    def verify(self, public_key: PublicKeyTypes) -> bool:
        """True when the key is the one named by ``key_id`` and the signature is valid."""
        return key_id(public_key) == self.key_id and _verify_signature(
            public_key, self.signature, self.signed_data()
        )


def read_checkpoints(path: Path) -> list[tuple[int, Checkpoint | str]]:
    """Every non-empty line of the file as (line number, checkpoint or why it is malformed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise  # the caller decides what a missing file means
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read the checkpoint file {path}: {exc}") from None
    result: list[tuple[int, Checkpoint | str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            result.append((number, Checkpoint.from_line(line)))
        except ValueError as exc:
            result.append((number, str(exc)))
    return result


def write_checkpoint(session: Session, signer: CheckpointSigner, path: Path) -> Checkpoint:
    """Sign the current head and append it to the checkpoint file as one JSON line.

    Before signing, the rows since the last checkpoint this key made are verified (from the
    start of the log when there is none), so a checkpoint never vouches for a chain that is
    already broken: that raises :class:`AuditError` naming the problem. The file is created
    ``0600`` (its directory ``0700``) and written with one ``O_APPEND`` write under an exclusive
    ``flock``, so concurrent writers neither interleave lines nor append them out of seq order.
    The session is only read from; the caller ends its transaction.
    """
    public_key = signer.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise AuditError(
            f"audit checkpoints are signed with RSA or EC keys, not {type(public_key).__name__}"
        )
    kid = key_id(public_key)
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        anchor = _last_own_checkpoint(path, public_key)
        walk = _Walk()
        if anchor is not None:
            walk.anchor(anchor.seq, anchor.hash)
        head = walk.run(session, checkpoints={})
        if head is None:
            raise AuditError("refusing to checkpoint: the audit_head row is missing")
        head_seq, head_hash = head
        if anchor is not None and anchor.seq > head_seq:
            raise AuditError(
                f"refusing to checkpoint: the log ends at seq {head_seq} but an earlier "
                f"checkpoint covers seq {anchor.seq} (rows were cut from the end)"
            )
        walk.check_head(head_seq, head_hash)
        if walk.problems:
            raise AuditError(f"refusing to checkpoint: {walk.problems[0]}",
                             problem=walk.problems[0])

        time = utcnow()
        data = checkpoint_signed_data(head_seq, head_hash, time)
        signature = signer.sign(data, hashes.SHA256())
        # A token that returns raw r||s or signs with the wrong key would otherwise leave a
        # file that fails verification only when an auditor reads it, months later.
        if not _verify_signature(public_key, signature, data):
            raise AuditError("the audit key's signature does not verify with its public key")
        checkpoint = Checkpoint(seq=head_seq, hash=head_hash, time=time, key_id=kid,
                                signature=signature)
        payload = checkpoint.to_line().encode("utf-8")
        written = os.write(fd, payload)
        if written != len(payload):
            raise AuditError(f"short write to {path}: {written} of {len(payload)} bytes")
        os.fsync(fd)
        return checkpoint
    finally:
        os.close(fd)  # also releases the flock


def _last_own_checkpoint(path: Path, public_key: PublicKeyTypes) -> Checkpoint | None:
    """The last line signed by this key, if it verifies; otherwise None (walk from genesis)."""
    lines = read_checkpoints(path)
    if lines:
        last = lines[-1][1]
        if isinstance(last, Checkpoint) and last.verify(public_key):
            return last
    return None


# --------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_chain` found. ``ok`` is False exactly when ``problems`` is non-empty.

    ``last_seq`` is the last event in the log; ``checkpointed_seq`` the highest seq a valid
    signed checkpoint vouches for (events after it are only as safe as the database).
    ``warnings`` never make the report fail (e.g. events not yet checkpointed).
    """

    ok: bool
    events_checked: int
    checkpoints_checked: int
    first_problem: str | None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    last_seq: int = 0
    checkpointed_seq: int = 0


@dataclass
class _Walk:
    """Walks rows in seq order checking seq, links, hashes and checkpoints at their seq."""

    problems: list[str] = field(default_factory=list)
    events: int = 0
    start_seq: int = 0  # rows with seq >= start_seq are read (0: all of them)
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    before_last_hash: str | None = None  # the stored hash of the row before last_seq
    anchor_hash: str | None = None  # what the row at start_seq must carry, if anchored
    matched_seq: int = 0  # highest seq at which a checkpoint matched the log

    def problem(self, text: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)
        elif len(self.problems) == _MAX_PROBLEMS:
            self.problems.append("... further problems not listed")

    def anchor(self, seq: int, head_hash: str) -> None:
        """Start at a checkpointed row instead of genesis (write_checkpoint's incremental walk)."""
        if seq > 0:
            self.start_seq = seq
            self.anchor_hash = head_hash
            self.last_seq = seq - 1
            self.matched_seq = seq

    def run(
        self, session: Session, checkpoints: Mapping[int, list[tuple[int, Checkpoint]]]
    ) -> tuple[int, str] | None:
        """Walk the rows; return the head row's (seq, hash) as of the same snapshot, or None.

        Rows and head come from one statement, so events committed by other processes while
        the walk runs can never make the head look ahead of (or behind) the last row.
        """
        head: tuple[int, str] | None = None
        rows = _rows_with_head(session, self.start_seq)
        for row in rows:
            if head is None:
                head = (row.head_seq, row.head_hash)
            if row.seq is None:
                continue  # the outer join's one row when no event is at or after start_seq
            self._visit(row, checkpoints)
        if head is None:  # no head row at all: walk the events on their own
            for row in _rows(session, self.start_seq):
                self._visit(row, checkpoints)
        return head

    def _visit(self, row: Any, checkpoints: Mapping[int, list[tuple[int, Checkpoint]]]) -> None:
        self.events += 1
        self.step(row, checkpoints.get(row.seq, ()))

    def step(self, row: Any, checkpoints: Sequence[tuple[int, Checkpoint]]) -> None:
        expected = self.last_seq + 1
        linkable = True
        if self.anchor_hash is not None and row.seq == self.start_seq:
            # The anchor row: its stored hash must still be the signed one.
            if row.hash != self.anchor_hash:
                self.problem(
                    f"seq {row.seq}: hash differs from the last checkpoint (the log was "
                    "rewritten after it was signed)"
                )
            linkable = False
        elif row.seq < expected:
            self.problem(f"seq {row.seq}: duplicated (a second row with this seq)")
            return
        elif row.seq > expected:
            missing = str(expected) if row.seq == expected + 1 else f"{expected}..{row.seq - 1}"
            after = f"after seq {self.last_seq}" if self.last_seq else "at the start of the log"
            self.problem(f"gap: seq {missing} missing {after} (rows deleted)")
            linkable = False
        if linkable and row.prev_hash != self.last_hash:
            if self.last_seq >= 1 and row.prev_hash == self.before_last_hash:
                self.problem(
                    f"seq {self.last_seq}: inserted (seq {row.seq} links to seq "
                    f"{self.last_seq - 1}, skipping it)"
                )
            else:
                self.problem(
                    f"seq {row.seq}: prev_hash does not link to seq {self.last_seq} (a row "
                    f"was inserted, removed or rewritten at seq {self.last_seq} or {row.seq})"
                )
        if _row_hash(row) != row.hash:
            self.problem(f"seq {row.seq}: hash mismatch (row altered)")
        for number, checkpoint in checkpoints:
            if checkpoint.hash == row.hash:
                self.matched_seq = max(self.matched_seq, row.seq)
            else:
                self.problem(
                    f"checkpoint line {number}: seq {row.seq} has a different hash in the log "
                    f"than the signed checkpoint (rows in seq {self.matched_seq + 1}..{row.seq} "
                    "were rewritten after it was signed)"
                )
        self.before_last_hash = self.last_hash if linkable else None
        self.last_seq = row.seq
        self.last_hash = row.hash

    def check_head(self, head_seq: int, head_hash: str) -> None:
        if head_seq != self.last_seq or head_hash != self.last_hash:
            self.problem(
                f"audit_head says seq {head_seq} (hash {head_hash[:16]}…) but the log ends at "
                f"seq {self.last_seq} (hash {self.last_hash[:16]}…)"
            )


def _rows(session: Session, start_seq: int) -> Iterator[Any]:
    """Rows as plain tuples in seq order, streamed.

    Never ORM objects: the session's identity map may hold copies older than the database,
    and the verifier must see what is stored.
    """
    table = AuditEvent.__table__
    query = select(table).where(table.c.seq >= start_seq).order_by(table.c.seq)
    yield from session.execute(query.execution_options(yield_per=1000))


def _rows_with_head(session: Session, start_seq: int) -> Iterator[Any]:
    """Like :func:`_rows`, each row also carrying the head row (``head_seq``, ``head_hash``).

    ``audit_head LEFT JOIN audit_event``: one statement, one snapshot (PostgreSQL READ
    COMMITTED takes a snapshot per statement). With no event at or after ``start_seq`` it is
    one row whose event columns are NULL; with no head row it is empty.
    """
    head, events = AuditHead.__table__, AuditEvent.__table__
    query = (
        select(head.c.seq.label("head_seq"), head.c.hash.label("head_hash"), *events.c)
        .select_from(head.outerjoin(events, events.c.seq >= start_seq))
        .where(head.c.id == 1)
        .order_by(events.c.seq)
    )
    yield from session.execute(query.execution_options(yield_per=1000))


def verify_chain(
    session: Session,
    checkpoint_path: Path,
    public_key: PublicKeyTypes | Sequence[PublicKeyTypes],
) -> VerifyReport:
    """Check the whole log and every checkpoint; report the first problem precisely.

    Tampering is reported, not raised: the result is a :class:`VerifyReport` whose
    ``first_problem`` names what and where (altered row, inserted row, gap, rows cut from the
    end, forged checkpoint line, head disagreeing with the last row). ``public_key`` is the
    trusted audit key, or several (old and new, after a key rollover). Problems are listed in
    this order: checkpoint-file problems by line, then the log in seq order (checkpoints
    compared at their seq), then checkpoints beyond the end of the log, then the head row.

    A missing (or empty) checkpoint file while the log has events is a problem: nothing
    outside the database vouches for it. Events after the last checkpoint are a warning.
    Raises :class:`AuditError` only for unusable input: a key that is not RSA or EC, an
    unreadable file.
    """
    keys: list[PublicKeyTypes] = (
        list(public_key) if isinstance(public_key, Sequence) else [public_key]
    )
    if not keys:
        raise AuditError("verify_chain needs the audit public key")
    trusted: dict[str, PublicKeyTypes] = {}
    for key in keys:
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise AuditError(
                f"audit checkpoints are signed with RSA or EC keys, not {type(key).__name__}"
            )
        trusted[key_id(key)] = key

    walk = _Walk()
    warnings: list[str] = []
    checkpoint_path = Path(checkpoint_path)
    try:
        lines = read_checkpoints(checkpoint_path)
        file_missing = False
    except FileNotFoundError:
        lines, file_missing = [], True

    valid: list[tuple[int, Checkpoint]] = []
    by_seq: dict[int, list[tuple[int, Checkpoint]]] = {}
    previous: tuple[int, Checkpoint] | None = None
    for number, item in lines:
        if isinstance(item, str):
            walk.problem(f"checkpoint line {number}: malformed ({item})")
            continue
        trusted_key = trusted.get(item.key_id)
        if trusted_key is None:
            walk.problem(
                f"checkpoint line {number}: signed by key {item.key_id[:16]}…, not by the "
                f"given audit key ({', '.join(k[:16] + '…' for k in trusted)})"
            )
            continue
        if not _verify_signature(trusted_key, item.signature, item.signed_data()):
            walk.problem(f"checkpoint line {number}: bad signature")
            continue
        if previous is not None:
            prev_number, prev = previous
            if item.seq < prev.seq:
                walk.problem(
                    f"checkpoint line {number}: seq {item.seq} goes backwards "
                    f"(line {prev_number} has seq {prev.seq})"
                )
                continue
            if item.time < prev.time:
                warnings.append(
                    f"checkpoint line {number}: time {format_time(item.time)} is before line "
                    f"{prev_number}'s (clock stepped back?)"
                )
        if item.seq == 0 and item.hash != GENESIS_HASH:
            walk.problem(f"checkpoint line {number}: seq 0 must carry the genesis hash")
            continue
        previous = (number, item)
        valid.append((number, item))
        by_seq.setdefault(item.seq, []).append((number, item))

    head = walk.run(session, by_seq)

    beyond = [(n, c) for n, c in valid if c.seq > walk.last_seq]
    if beyond:
        number, checkpoint = max(beyond, key=lambda nc: nc[1].seq)
        walk.problem(
            f"checkpoint line {number} covers seq {checkpoint.seq} but the log ends at seq "
            f"{walk.last_seq} (rows cut from the end)"
        )
    if head is None:
        walk.problem("the audit_head row is missing")
    else:
        walk.check_head(*head)

    checkpointed = max((c.seq for _n, c in valid if c.seq <= walk.last_seq), default=0)
    if walk.events:
        if file_missing or not lines:
            # A file problem, so it goes first like the other file problems.
            state = "missing" if file_missing else "empty"
            walk.problems.insert(
                0,
                f"the checkpoint file {checkpoint_path} is {state}: no signed checkpoint "
                f"covers the log (seq 1..{walk.last_seq})",
            )
        elif checkpointed < walk.last_seq:
            warnings.append(
                f"seq {checkpointed + 1}..{walk.last_seq} are not yet covered by a checkpoint"
            )

    problems = tuple(walk.problems)
    return VerifyReport(
        ok=not problems,
        events_checked=walk.events,
        checkpoints_checked=len(lines),
        first_problem=problems[0] if problems else None,
        problems=problems,
        warnings=tuple(warnings),
        last_seq=walk.last_seq,
        checkpointed_seq=checkpointed,
    )
