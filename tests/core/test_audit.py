"""The audit log: encoding, appending inside transactions, checkpoints, and tamper detection.

Database tests run on SQLite and PostgreSQL (see conftest.py). Tampering is done the way an
attacker with database access would do it: raw SQL, bypassing core.audit, after dropping the
append-only guard (tests/audit_guard.py; test_audit_guard.py shows it refusing).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import random
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, MetaData, Table, select, text
from sqlalchemy.orm import Session, sessionmaker

from core import audit, migrate
from core.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditHead,
    Checkpoint,
    CheckpointSigner,
    canonical_details,
    compute_event_hash,
    encode_fields,
    record_event,
    record_refusal,
    verify_chain,
    write_checkpoint,
)
from core.db import make_engine, make_sessionmaker, transaction
from core.errors import AuditError
from hsm.signer import SoftwareSigner
from tests import audit_guard

from ._audit_worker import append_events
from .conftest import database_url

# --------------------------------------------------------------------------------------------
# Keys and helpers

EVENT_TABLE = cast(Table, AuditEvent.__table__)
HEAD_TABLE = cast(Table, AuditHead.__table__)


class RsaTestSigner:
    """The smallest object core accepts as an audit key: what a caller outside hsm/ could write."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key

    def public_key(self) -> PublicKeyTypes:
        return self._key.public_key()

    def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        return self._key.sign(data, padding.PKCS1v15(), hash_algorithm)


@pytest.fixture(scope="module")
def signer() -> SoftwareSigner:
    return SoftwareSigner("file:audit", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def rsa_signer() -> RsaTestSigner:
    return RsaTestSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture
def factory(migrated_engine: Engine) -> sessionmaker[Session]:
    """An empty log on the module's database (tests share one database per module)."""
    with migrated_engine.begin() as conn, audit_guard.lifted(conn):
        conn.execute(text("DELETE FROM audit_event"))
        conn.execute(
            text("UPDATE audit_head SET seq = 0, hash = :h WHERE id = 1"), {"h": GENESIS_HASH}
        )
    return make_sessionmaker(migrated_engine)


@pytest.fixture
def checkpoints(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "checkpoints.jsonl"


def append(factory: sessionmaker[Session], count: int, action: str = "ca.issue") -> None:
    for i in range(count):
        with transaction(factory) as session:
            record_event(
                session,
                actor="operator-李",
                action=action,
                object_type="certificate",
                object_id=f"{i + 1:04x}",
                outcome="success",
                details={"serial": f"{i + 1:04x}", "subject": "CN=张三,O=省政府办公厅"},
            )


def checkpoint(factory: sessionmaker[Session], signer: CheckpointSigner, path: Path) -> Checkpoint:
    with factory() as session:
        return write_checkpoint(session, signer, path)


def verify(
    factory: sessionmaker[Session], path: Path, key: PublicKeyTypes | list[PublicKeyTypes]
) -> audit.VerifyReport:
    with factory() as session:
        return verify_chain(session, path, key)


def tamper(factory: sessionmaker[Session], sql: str, **params: Any) -> None:
    """Raw SQL in its own transaction, as someone with database access would do it: first
    dropping the append-only guard, which only stops UPDATE and DELETE, not the owner."""
    with transaction(factory) as session:
        audit_guard.drop(session)
        session.execute(text(sql), params)


def rows(factory: sessionmaker[Session]) -> list[Any]:
    with factory() as session:
        return list(session.execute(select(EVENT_TABLE).order_by(text("seq"))))


def head(factory: sessionmaker[Session]) -> tuple[int, str]:
    with factory() as session:
        row = session.execute(select(AuditHead.seq, AuditHead.hash)).one()
        return row.seq, row.hash


# --------------------------------------------------------------------------------------------
# Canonical encoding (no database)


def test_encode_fields_is_length_prefixed_utf8() -> None:
    assert encode_fields("ab", "", "张") == (
        b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x03" + "张".encode()
    )


def test_field_boundaries_cannot_be_shifted() -> None:
    """("ab", "c") and ("a", "bc") concatenate alike; their encodings must not."""
    assert encode_fields("ab", "c") != encode_fields("a", "bc")


EVENT_VECTOR: dict[str, Any] = {
    "seq": 7,
    "occurred_at": dt.datetime(2025, 1, 2, 3, 4, 5, 60, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    "actor": "ra-operator-王",
    "action": "ca.revoke",
    "object_type": "certificate",
    "object_id": "5f3a",
    "outcome": "success",
    "details": '{"reason":"keyCompromise"}',
    "prev_hash": "ab" * 32,
}


def test_event_hash_matches_the_documented_layout() -> None:
    """Re-implemented from docs/audit.md alone: the tag, then nine fields, each u32-prefixed."""
    fields = [
        "govpki-audit-event-v1",
        "7",
        "2025-01-01T19:04:05.000060Z",  # +08:00 converted to UTC, microseconds always present
        "ra-operator-王",
        "ca.revoke",
        "certificate",
        "5f3a",
        "success",
        '{"reason":"keyCompromise"}',
        "ab" * 32,
    ]
    data = b"".join(len(f.encode()).to_bytes(4, "big") + f.encode() for f in fields)
    assert compute_event_hash(**EVENT_VECTOR) == hashlib.sha256(data).hexdigest()


def test_event_hash_is_pinned() -> None:
    """Changing the encoding orphans every existing log: this vector must never change."""
    assert compute_event_hash(**EVENT_VECTOR) == (
        "b64ce2dae3cbe2895b5ed244fad02c74398e9c3f93f5cbd9c616436001c61e43"
    )


def test_canonical_details_sorted_compact_and_readable() -> None:
    text_ = canonical_details(
        {"subject": "CN=张三", "a": [1, 2.5, None, True], "n": {"z": 1, "b": 2}}
    )
    assert text_ == '{"a":[1,2.5,null,true],"n":{"b":2,"z":1},"subject":"CN=张三"}'
    assert canonical_details(None) == canonical_details({}) == "{}"


@pytest.mark.parametrize(
    "details",
    [{"pin": "1234"}, {"token": {"user_pin": "1234"}}, {"client-secret": "x"},
     {"items": [{"Passphrase": "x"}]}, {"privateKey": "MII..."}, {"ca_private_key": "x"}],
    ids=["pin", "nested-user_pin", "client-secret", "in-list", "privateKey", "ca_private_key"],
)
def test_details_refuse_secret_looking_keys(details: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="secrets"):
        canonical_details(details)


def test_details_allow_ordinary_keys() -> None:
    canonical_details({"key_uri": "pkcs11:token=ca;object=root", "spinner": 1, "pinyin": "zhang"})


@pytest.mark.parametrize(
    ("details", "error", "names"),
    [
        ({"n": float("nan")}, ValueError, "finite"),
        ({"n": float("inf")}, ValueError, "finite"),
        ({1: "x"}, TypeError, "keys must be str"),
        ({"s": {1, 2}}, TypeError, "details\\['s'\\] is a set"),
        ({"t": dt.datetime.now(dt.UTC)}, TypeError, "JSON types only"),
        (["not", "a", "mapping"], TypeError, "mapping"),
        ({"x": "\ud800"}, ValueError, "surrogate"),
    ],
    ids=["nan", "inf", "int-key", "set", "datetime", "list", "lone-surrogate"],
)
def test_details_refuse_what_json_cannot_say_exactly(
    details: Any, error: type[Exception], names: str
) -> None:
    with pytest.raises(error, match=names):
        canonical_details(details)


def test_times_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        audit.format_time(dt.datetime(2025, 1, 1))  # noqa: DTZ001 - the point of the test


def test_checkpoint_line_round_trip() -> None:
    cp = Checkpoint(seq=3, hash="cd" * 32, time=dt.datetime(2025, 5, 1, tzinfo=dt.UTC),
                    key_id="ef" * 32, signature=b"\x30\x06sig")
    line = cp.to_line()
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {
        "v": 1, "seq": 3, "hash": "cd" * 32, "time": "2025-05-01T00:00:00.000000Z",
        "key_id": "ef" * 32, "sig": "MAZzaWc=",
    }
    assert Checkpoint.from_line(line) == cp


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"v":2}', "version"),
        ('{"v":1,"seq":-1}', "seq"),
        ('{"v":1,"seq":1,"hash":"AB"}', "hash"),
    ],
)
def test_malformed_checkpoint_lines_say_why(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Checkpoint.from_line(line)


def test_software_signer_is_a_checkpoint_signer(signer: SoftwareSigner) -> None:
    """hsm's signer fits core's protocol without core importing hsm."""
    assert isinstance(signer, CheckpointSigner)
    assert isinstance(RsaTestSigner(rsa.generate_private_key(65537, 2048)), CheckpointSigner)


# --------------------------------------------------------------------------------------------
# Schema


def test_migration_creates_both_tables_and_the_head_row(migrated_engine: Engine) -> None:
    assert migrate.pending(migrated_engine, [migrate.CORE_VERSIONS]) == []
    with migrated_engine.connect() as conn:
        assert conn.execute(text("SELECT id, seq, hash FROM audit_head")).all() == [
            (1, 0, GENESIS_HASH)
        ]


def test_migration_matches_the_models(migrated_engine: Engine) -> None:
    """The migration and the ORM models describe the same tables (no autogenerate drift)."""
    metadata = MetaData()
    EVENT_TABLE.to_metadata(metadata)
    HEAD_TABLE.to_metadata(metadata)
    with migrated_engine.connect() as conn:
        context = MigrationContext.configure(conn)
        diff = [
            d for d in compare_metadata(context, metadata)
            if not (d[0] == "remove_table" and not d[1].name.startswith("audit_"))
        ]
    assert diff == []


def test_create_all_also_seeds_the_head_row(tmp_path: Path) -> None:
    """Tests elsewhere build schemas with create_all instead of migrations; auditing must work."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    AuditEvent.metadata.create_all(engine, tables=[EVENT_TABLE, HEAD_TABLE])
    with transaction(make_sessionmaker(engine)) as session:
        assert record_event(session, actor="a", action="x.y", object_type="", object_id="",
                            outcome="success", details={}).seq == 1
    engine.dispose()


# --------------------------------------------------------------------------------------------
# Appending


def test_events_form_a_chain(factory: sessionmaker[Session]) -> None:
    append(factory, 3)
    stored = rows(factory)
    assert [r.seq for r in stored] == [1, 2, 3]
    assert stored[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in stored[1:]] == [r.hash for r in stored[:-1]]
    for r in stored:
        assert audit._row_hash(r) == r.hash
        assert r.occurred_at.tzinfo == dt.UTC
    assert head(factory) == (3, stored[-1].hash)
    assert json.loads(stored[0].details) == {"serial": "0001", "subject": "CN=张三,O=省政府办公厅"}


def test_event_rolls_back_with_the_callers_transaction(factory: sessionmaker[Session]) -> None:
    """No certificate without its audit event, and no audit event for a rolled-back issuance."""
    with pytest.raises(RuntimeError), transaction(factory) as session:
        record_event(session, actor="ca", action="ca.issue", object_type="certificate",
                     object_id="01", outcome="success", details={})
        raise RuntimeError("signing failed after the event was recorded")
    assert rows(factory) == []
    assert head(factory) == (0, GENESIS_HASH)

    with transaction(factory) as session:
        event = record_event(session, actor="ca", action="ca.issue", object_type="certificate",
                             object_id="01", outcome="success", details={})
    assert event.seq == 1  # the rolled-back attempt left no hole


def test_refusal_is_recorded_although_the_action_rolled_back(
    factory: sessionmaker[Session],
) -> None:
    with pytest.raises(ValueError, match="bad CSR"), transaction(factory):
        raise ValueError("bad CSR")  # the issuance's own transaction, rolled back
    event = record_refusal(factory, actor="ra-operator", action="ca.issue.refused",
                           object_type="request", object_id="42",
                           details={"reason": "CSR signature does not verify"})
    assert (event.seq, event.outcome, event.action) == (1, "refused", "ca.issue.refused")
    assert event.details_dict() == {"reason": "CSR signature does not verify"}  # detached, usable
    assert [r.outcome for r in rows(factory)] == ["refused"]


def test_refusal_records_only_refused_or_failure(factory: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="'refused' or 'failure'"):
        record_refusal(factory, actor="a", action="x.y", object_type="", object_id="",
                       outcome="success")


@pytest.mark.parametrize(
    ("changes", "error", "names"),
    [
        ({"outcome": "ok"}, ValueError, "outcome must be one of"),
        ({"action": "CA Issue"}, ValueError, "action"),
        ({"actor": ""}, ValueError, "actor must not be empty"),
        ({"actor": "x" * 256}, ValueError, "actor is longer than 255"),
        ({"object_id": "a\nseq 9: forged"}, ValueError, "object_id must not contain control"),
        ({"object_id": 5}, TypeError, "object_id must be str"),
        ({"details": {"pin": "1234"}}, ValueError, "secrets"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    factory: sessionmaker[Session], changes: dict[str, Any], error: type[Exception], names: str
) -> None:
    arguments: dict[str, Any] = {"actor": "a", "action": "ca.issue", "object_type": "certificate",
                                 "object_id": "01", "outcome": "success", "details": {}}
    arguments.update(changes)
    with pytest.raises(error, match=names), transaction(factory) as session:
        record_event(session, **arguments)
    assert rows(factory) == []


def test_missing_head_row_is_an_audit_error(
    factory: sessionmaker[Session], signer: SoftwareSigner, tmp_path: Path
) -> None:
    append(factory, 2)
    tamper(factory, "DELETE FROM audit_head")
    try:
        with pytest.raises(AuditError, match="audit_head row is missing"), \
                transaction(factory) as session:
            record_event(session, actor="a", action="x.y", object_type="", object_id="",
                         outcome="success")
        report = verify(factory, tmp_path / "none.jsonl", signer.public_key())
        assert report.events_checked == 2  # the rows are still walked
        assert report.problems[-1] == "the audit_head row is missing"
        with pytest.raises(AuditError, match="refusing to checkpoint: the audit_head row"):
            checkpoint(factory, signer, tmp_path / "c.jsonl")
    finally:
        tamper(factory, "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)", h=GENESIS_HASH)


# --------------------------------------------------------------------------------------------
# Checkpoints and verification of an untouched log


def test_empty_log_verifies_without_a_checkpoint_file(
    factory: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    report = verify(factory, checkpoints, signer.public_key())
    assert report.ok and report.events_checked == 0 and report.first_problem is None


def test_events_without_any_checkpoint_fail_verification(
    factory: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    append(factory, 2)
    report = verify(factory, checkpoints, signer.public_key())
    assert not report.ok
    assert report.first_problem is not None
    assert "is missing: no signed checkpoint covers the log (seq 1..2)" in report.first_problem

    checkpoints.parent.mkdir()
    checkpoints.touch()
    report = verify(factory, checkpoints, signer.public_key())
    assert report.first_problem is not None and "is empty" in report.first_problem


def test_checkpointed_log_verifies(
    factory: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    append(factory, 5)
    first = checkpoint(factory, signer, checkpoints)
    append(factory, 5)
    second = checkpoint(factory, signer, checkpoints)
    assert (first.seq, second.seq) == (5, 10)

    report = verify(factory, checkpoints, signer.public_key())
    assert report.ok, report.problems
    assert (report.events_checked, report.checkpoints_checked) == (10, 2)
    assert (report.last_seq, report.checkpointed_seq, report.warnings) == (10, 10, ())


def test_events_after_the_last_checkpoint_are_a_warning(
    factory: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    append(factory, 3)
    checkpoint(factory, signer, checkpoints)
    append(factory, 2)
    report = verify(factory, checkpoints, signer.public_key())
    assert report.ok
    assert report.warnings == ("seq 4..5 are not yet covered by a checkpoint",)


def test_checkpoint_file_format_and_permissions(
    factory: sessionmaker[Session], rsa_signer: RsaTestSigner, checkpoints: Path
) -> None:
    append(factory, 2)
    cp = checkpoint(factory, rsa_signer, checkpoints)
    assert stat.S_IMODE(checkpoints.stat().st_mode) == 0o600
    assert stat.S_IMODE(checkpoints.parent.stat().st_mode) == 0o700
    lines = checkpoints.read_text().splitlines()
    assert len(lines) == 1
    body = json.loads(lines[0])
    assert sorted(body) == ["hash", "key_id", "seq", "sig", "time", "v"]
    assert (body["seq"], body["hash"]) == (2, head(factory)[1])
    assert body["key_id"] == audit.key_id(rsa_signer.public_key()) == cp.key_id
    # The signature verifies with nothing but pyca and the documented signed bytes.
    public = rsa_signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(cp.signature, audit.encode_fields(
        "govpki-audit-checkpoint-v1", "2", body["hash"], body["time"]
    ), padding.PKCS1v15(), hashes.SHA256())
    assert verify(factory, checkpoints, public).ok


def test_checkpoint_of_an_empty_log(
    factory: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    """A scheduled checkpoint job must not fail on a fresh installation."""
    cp = checkpoint(factory, signer, checkpoints)
    assert (cp.seq, cp.hash) == (0, GENESIS_HASH)
    append(factory, 1)
    checkpoint(factory, signer, checkpoints)
    assert verify(factory, checkpoints, signer.public_key()).ok


def test_key_rollover_verifies_with_both_keys(
    factory: sessionmaker[Session], signer: SoftwareSigner, rsa_signer: RsaTestSigner,
    checkpoints: Path,
) -> None:
    append(factory, 2)
    checkpoint(factory, signer, checkpoints)
    append(factory, 2)
    checkpoint(factory, rsa_signer, checkpoints)  # new key: walks from genesis, no anchor
    assert verify(factory, checkpoints, [signer.public_key(), rsa_signer.public_key()]).ok
    report = verify(factory, checkpoints, rsa_signer.public_key())
    assert report.first_problem is not None
    assert report.first_problem.startswith("checkpoint line 1: signed by key ")


def test_verify_refuses_unusable_keys(
    factory: sessionmaker[Session], checkpoints: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with pytest.raises(AuditError, match="RSA or EC"):
        verify(factory, checkpoints, ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(AuditError, match="needs the audit public key"):
        verify(factory, checkpoints, [])


def test_a_signer_that_signs_wrongly_leaves_no_line(
    factory: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    """E.g. a token returning raw r||s: caught when writing, not months later by an auditor."""

    class RawSigner:
        def public_key(self) -> PublicKeyTypes:
            return signer.public_key()

        def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
            return signer.sign_raw(data, hash_algorithm)

    append(factory, 1)
    with pytest.raises(AuditError, match="does not verify"):
        checkpoint(factory, RawSigner(), checkpoints)
    assert checkpoints.read_text() == ""


# --------------------------------------------------------------------------------------------
# Tampering: each case must be named precisely


@pytest.fixture
def ten_checkpointed(
    factory: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> sessionmaker[Session]:
    """Ten events, checkpointed at seq 10."""
    append(factory, 10)
    checkpoint(factory, signer, checkpoints)
    assert verify(factory, checkpoints, signer.public_key()).ok
    return factory


def first_problem(factory: sessionmaker[Session], path: Path, signer: SoftwareSigner) -> str:
    report = verify(factory, path, signer.public_key())
    assert not report.ok
    assert report.first_problem is not None
    assert report.first_problem == report.problems[0]
    return report.first_problem


def test_altered_row_is_named(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    tamper(ten_checkpointed, "UPDATE audit_event SET details = :d WHERE seq = 5",
           d='{"serial":"0005","subject":"CN=李四"}')
    problem = first_problem(ten_checkpointed, checkpoints, signer)
    assert problem == "seq 5: hash mismatch (row altered)"


def test_deleted_row_is_named(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    tamper(ten_checkpointed, "DELETE FROM audit_event WHERE seq = 5")
    problem = first_problem(ten_checkpointed, checkpoints, signer)
    assert problem == "gap: seq 5 missing after seq 4 (rows deleted)"


def test_several_deleted_rows_are_named(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    tamper(ten_checkpointed, "DELETE FROM audit_event WHERE seq IN (1, 2, 6, 7)")
    report = verify(ten_checkpointed, checkpoints, signer.public_key())
    assert report.problems == (
        "gap: seq 1..2 missing at the start of the log (rows deleted)",
        "gap: seq 6..7 missing after seq 5 (rows deleted)",
    )


def _forge_row(seq: int, prev_hash: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "seq": seq, "occurred_at": dt.datetime.now(dt.UTC), "actor": "intruder",
        "action": "ca.issue", "object_type": "certificate", "object_id": "dead",
        "outcome": "success", "details": "{}", "prev_hash": prev_hash,
    }
    row["hash"] = compute_event_hash(**row)
    return row


def _insert_row(factory: sessionmaker[Session], row: dict[str, Any]) -> None:
    with transaction(factory) as session:
        session.execute(EVENT_TABLE.insert().values(**row))


def test_inserted_row_is_named(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    """A forged row slid in at seq 6 (later rows renumbered), its own hash computed correctly."""
    stored = rows(ten_checkpointed)
    tamper(ten_checkpointed, "UPDATE audit_event SET seq = seq + 1000 WHERE seq >= 6")
    tamper(ten_checkpointed, "UPDATE audit_event SET seq = seq - 999 WHERE seq > 1000")
    _insert_row(ten_checkpointed, _forge_row(6, stored[4].hash))
    problem = first_problem(ten_checkpointed, checkpoints, signer)
    assert problem == "seq 6: inserted (seq 7 links to seq 5, skipping it)"


def test_appended_forged_row_is_named(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    """A row added at the end without the head being updated."""
    _insert_row(ten_checkpointed, _forge_row(11, rows(ten_checkpointed)[-1].hash))
    problem = first_problem(ten_checkpointed, checkpoints, signer)
    assert problem.startswith("audit_head says seq 10 ")
    assert "but the log ends at seq 11" in problem


def test_duplicated_seq_is_named(factory: sessionmaker[Session]) -> None:
    """Only possible once the primary key is dropped; the walk still says so."""
    append(factory, 3)
    walk = audit._Walk()
    stored = rows(factory)
    for row in [stored[0], stored[1], stored[1], stored[2]]:
        walk.step(row, ())
    assert walk.problems == ["seq 2: duplicated (a second row with this seq)"]


def test_rewritten_chain_is_caught_by_the_checkpoint(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    """An attacker who alters seq 3 and recomputes every later hash (and the head) is caught
    only by the signed checkpoint; the message bounds where the rewrite happened."""
    stored = rows(ten_checkpointed)
    prev = stored[1].hash
    for r in stored[2:]:
        fields = {k: getattr(r, k) for k in ("seq", "occurred_at", "actor", "action",
                                             "object_type", "object_id", "outcome", "details")}
        if r.seq == 3:
            fields["details"] = '{"serial":"0003","subject":"CN=someone else"}'
        new_hash = compute_event_hash(**fields, prev_hash=prev)
        tamper(ten_checkpointed,
               "UPDATE audit_event SET details = :d, prev_hash = :p, hash = :h WHERE seq = :s",
               d=fields["details"], p=prev, h=new_hash, s=r.seq)
        prev = new_hash
    tamper(ten_checkpointed, "UPDATE audit_head SET hash = :h", h=prev)
    problem = first_problem(ten_checkpointed, checkpoints, signer)
    assert problem == (
        "checkpoint line 1: seq 10 has a different hash in the log than the signed checkpoint "
        "(rows in seq 1..10 were rewritten after it was signed)"
    )


def test_rows_cut_from_the_end_are_caught_by_the_checkpoint(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    """The last three rows deleted and the head fixed up to match, as an attacker would."""
    tamper(ten_checkpointed, "DELETE FROM audit_event WHERE seq > 7")
    tamper(ten_checkpointed,
           "UPDATE audit_head SET seq = 7, hash = (SELECT hash FROM audit_event WHERE seq = 7)")
    report = verify(ten_checkpointed, checkpoints, signer.public_key())
    assert report.problems == (
        "checkpoint line 1 covers seq 10 but the log ends at seq 7 (rows cut from the end)",
    )


def test_rows_cut_without_fixing_the_head_name_both(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    tamper(ten_checkpointed, "DELETE FROM audit_event WHERE seq > 7")
    report = verify(ten_checkpointed, checkpoints, signer.public_key())
    assert report.problems[0].startswith("checkpoint line 1 covers seq 10 but the log ends at")
    assert report.problems[1].startswith("audit_head says seq 10 ")


def test_forged_checkpoint_line_is_named(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    """Line 2 claims the log had 12 events (to frame someone for deleting two), same signature."""
    append(ten_checkpointed, 2)
    lines = checkpoints.read_text().splitlines()
    body = json.loads(lines[0])
    body["seq"] = 12
    checkpoints.write_text(lines[0] + "\n" + json.dumps(body) + "\n")
    problem = first_problem(ten_checkpointed, checkpoints, signer)
    assert problem == "checkpoint line 2: bad signature"


def test_checkpoint_signed_by_another_key_is_named(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    intruder = SoftwareSigner("file:intruder", ec.generate_private_key(ec.SECP256R1()))
    checkpoint(ten_checkpointed, intruder, checkpoints)
    problem = first_problem(ten_checkpointed, checkpoints, signer)
    assert re.fullmatch(r"checkpoint line 2: signed by key [0-9a-f]{16}…, not by the given "
                        r"audit key \([0-9a-f]{16}…\)", problem)


def test_reordered_checkpoint_lines_are_named(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    append(ten_checkpointed, 1)
    checkpoint(ten_checkpointed, signer, checkpoints)
    first, second = checkpoints.read_text().splitlines()
    checkpoints.write_text(f"{second}\n{first}\n")
    problem = first_problem(ten_checkpointed, checkpoints, signer)
    assert problem == "checkpoint line 2: seq 10 goes backwards (line 1 has seq 11)"


def test_malformed_checkpoint_line_is_named(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    with checkpoints.open("a") as f:
        f.write('{"v":1,"seq":11,"hash":"trunc\n')
    problem = first_problem(ten_checkpointed, checkpoints, signer)
    assert problem == "checkpoint line 2: malformed (not valid JSON)"


def test_head_disagreeing_with_the_last_row_is_named(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    tamper(ten_checkpointed, "UPDATE audit_head SET hash = :h", h="0" * 63 + "1")
    problem = first_problem(ten_checkpointed, checkpoints, signer)
    assert problem.startswith("audit_head says seq 10 (hash 0000000000000000…) but the log ")


def test_write_checkpoint_refuses_to_vouch_for_a_broken_chain(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    append(ten_checkpointed, 3)
    tamper(ten_checkpointed, "UPDATE audit_event SET actor = 'someone else' WHERE seq = 12")
    with pytest.raises(AuditError, match="refusing to checkpoint: seq 12: hash mismatch"):
        checkpoint(ten_checkpointed, signer, checkpoints)
    assert len(checkpoints.read_text().splitlines()) == 1


def test_write_checkpoint_checks_the_anchor_row(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    """The incremental walk starts at the last checkpoint; that row must still be the signed one."""
    tamper(ten_checkpointed, "UPDATE audit_event SET hash = :h WHERE seq = 10", h="1" * 64)
    tamper(ten_checkpointed, "UPDATE audit_head SET hash = :h", h="1" * 64)
    with pytest.raises(AuditError, match="seq 10: hash differs from the last checkpoint"):
        checkpoint(ten_checkpointed, signer, checkpoints)


def test_write_checkpoint_refuses_after_rows_were_cut(
    ten_checkpointed: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    tamper(ten_checkpointed, "DELETE FROM audit_event WHERE seq > 7")
    tamper(ten_checkpointed,
           "UPDATE audit_head SET seq = 7, hash = (SELECT hash FROM audit_event WHERE seq = 7)")
    with pytest.raises(AuditError, match="rows were cut from the end"):
        checkpoint(ten_checkpointed, signer, checkpoints)


# --------------------------------------------------------------------------------------------
# Property: arbitrary details hash deterministically and survive the database round trip

_SECRETISH = re.compile(r"pin|pass|secret|private", re.IGNORECASE)
_keys = st.text(max_size=12) | st.text(
    alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=6
)
_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | st.sampled_from(["省政府办公厅", "张三", "CN=李四,O=某市", "𠀀 emoji 😀"])
)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(_keys.filter(lambda k: not _SECRETISH.search(k)), children, max_size=3),
    max_leaves=8,
)
_details = st.dictionaries(_keys.filter(lambda k: not _SECRETISH.search(k)), _json, max_size=5)


@settings(max_examples=30, deadline=None,
          # `factory` empties the log once; every example then appends to one growing chain,
          # which is exactly what the property is about.
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(details=_details)
def test_any_details_hash_deterministically_and_verify(
    factory: sessionmaker[Session], details: dict[str, Any]
) -> None:
    text_ = canonical_details(details)
    shuffled = dict(random.sample(list(details.items()), len(details)))
    assert canonical_details(shuffled) == text_
    assert json.loads(text_) == details

    with transaction(factory) as session:
        event = record_event(session, actor="测试", action="test.property", object_type="t",
                             object_id="1", outcome="success", details=details)
    with factory() as session:
        stored = session.execute(
            select(EVENT_TABLE).where(EVENT_TABLE.c.seq == event.seq)
        ).one()
        assert stored.details == text_
        assert audit._row_hash(stored) == stored.hash == event.hash
        walk = audit._Walk()
        walk.run(session, {})
        assert walk.problems == [] and walk.last_seq == event.seq


# --------------------------------------------------------------------------------------------
# Concurrency: several processes appending to one database keep the chain linear


def _run_workers(
    url: str, workers: int, each: int, signer: SoftwareSigner, path: Path
) -> list[audit.VerifyReport]:
    """Run the appenders; meanwhile checkpoint and verify over and over, as a cron job would.

    Returns the reports made while the log was growing: none may see a problem, because
    events committed during a walk must not look like a head/log disagreement.
    """
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=append_events, args=(url, w, each, start)) for w in range(workers)]
    for p in procs:
        p.start()
    start.set()
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    reports = []
    try:
        while any(p.is_alive() for p in procs):
            checkpoint(factory, signer, path)
            reports.append(verify(factory, path, signer.public_key()))
    finally:
        for p in procs:
            p.join(timeout=120)
        engine.dispose()
    assert [p.exitcode for p in procs] == [0] * workers
    return reports


def _assert_linear(url: str, workers: int, each: int, signer: SoftwareSigner, path: Path) -> None:
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    try:
        stored = rows(factory)
        assert [r.seq for r in stored] == list(range(1, workers * each + 1))
        for w in range(workers):
            mine = [int(r.object_id) for r in stored if r.actor == f"worker-{w}"]
            assert mine == list(range(each)), f"worker {w}'s events out of order"
        checkpoint(factory, signer, path)
        report = verify(factory, path, signer.public_key())
        assert report.ok, report.problems
        assert report.events_checked == workers * each
    finally:
        engine.dispose()


@contextmanager
def fresh_migrated(backend: str, tmp_dir: Path) -> Iterator[str]:
    """A database of its own (the module's shared one is reset by every test)."""
    with database_url(backend, tmp_dir) as url:
        engine = make_engine(url)
        migrate.upgrade(engine, [migrate.CORE_VERSIONS])
        engine.dispose()
        yield url


@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_appends_on_postgresql(
    tmp_path: Path, signer: SoftwareSigner, checkpoints: Path
) -> None:
    """4 processes x 200 events, each in its own transaction: seq 1..800, one linear chain."""
    with fresh_migrated("postgres", tmp_path) as url:
        reports = _run_workers(url, 4, 200, signer, checkpoints)
        assert reports, "the appenders finished before the auditor could look"
        assert [r.problems for r in reports if not r.ok] == []
        _assert_linear(url, 4, 200, signer, checkpoints)


@pytest.mark.slow
def test_concurrent_appends_on_sqlite(
    tmp_path: Path, signer: SoftwareSigner, checkpoints: Path
) -> None:
    """BEGIN IMMEDIATE (core.db) already serialises SQLite writers; check that it holds."""
    with fresh_migrated("sqlite", tmp_path) as url:
        reports = _run_workers(url, 4, 50, signer, checkpoints)
        assert reports, "the appenders finished before the auditor could look"
        assert [r.problems for r in reports if not r.ok] == []
        _assert_linear(url, 4, 50, signer, checkpoints)


def test_checkpoint_writers_do_not_interleave(
    factory: sessionmaker[Session], signer: SoftwareSigner, checkpoints: Path
) -> None:
    """Threads writing checkpoints at once: whole lines, in non-decreasing seq order."""
    from concurrent.futures import ThreadPoolExecutor

    append(factory, 3)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: checkpoint(factory, signer, checkpoints), range(8)))
    assert len(checkpoints.read_text().splitlines()) == 8
    assert verify(factory, checkpoints, signer.public_key()).ok
