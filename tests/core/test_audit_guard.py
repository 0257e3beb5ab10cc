"""The database refuses to change or remove audit rows (core_0002), on SQLite and PostgreSQL.

The refusals are the database's own: raw SQL as an operator would type it, and the ORM as an
application bug would do it. Appending through core.audit (which updates ``audit_head``) keeps
working, and the migration's downgrade takes the guard away again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import migrate
from core.audit import GENESIS_HASH, AuditEvent, AuditHead, compute_event_hash, record_event
from core.db import make_engine, make_sessionmaker, transaction
from tests import audit_guard

from .conftest import BACKENDS, database_url


def append(factory: sessionmaker[Session], count: int) -> None:
    for i in range(count):
        with transaction(factory) as session:
            record_event(session, actor="operator-李", action="ca.issue",
                         object_type="certificate", object_id=f"{i + 1:04x}",
                         outcome="success", details={"serial": f"{i + 1:04x}"})


def events(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in
                conn.execute(select(AuditEvent.__table__).order_by(text("seq")))]


def head(engine: Engine) -> tuple[int, str]:
    with engine.connect() as conn:
        row = conn.execute(select(AuditHead.seq, AuditHead.hash)).one()
        return row.seq, row.hash


def refused(verb: str) -> Any:
    return pytest.raises(IntegrityError, match=re.escape(audit_guard.message(verb)))


@pytest.fixture
def three(migrated_engine: Engine) -> sessionmaker[Session]:
    """Three events on an otherwise empty log of the module's (migrated, guarded) database."""
    with migrated_engine.begin() as conn, audit_guard.lifted(conn):
        conn.execute(text("DELETE FROM audit_event"))
        conn.execute(text("UPDATE audit_head SET seq = 0, hash = :h WHERE id = 1"),
                     {"h": GENESIS_HASH})
    factory = make_sessionmaker(migrated_engine)
    append(factory, 3)
    return factory


@pytest.mark.parametrize(("verb", "sql"), [
    ("UPDATE", "UPDATE audit_event SET actor = 'mallory' WHERE seq = 2"),
    ("UPDATE", "UPDATE audit_event SET seq = seq + 1000"),
    ("UPDATE", "UPDATE audit_event SET details = '{}', hash = prev_hash WHERE seq = 3"),
    ("DELETE", "DELETE FROM audit_event WHERE seq = 2"),
    ("DELETE", "DELETE FROM audit_event WHERE seq > 1"),
    # No WHERE: SQLite's truncate optimisation would skip row triggers; it must not.
    ("DELETE", "DELETE FROM audit_event"),
])
def test_sql_update_or_delete_is_refused_and_the_rows_stay(
    three: sessionmaker[Session], migrated_engine: Engine, verb: str, sql: str
) -> None:
    before = events(migrated_engine)
    assert len(before) == 3
    with refused(verb), migrated_engine.begin() as conn:
        conn.execute(text(sql))
    assert events(migrated_engine) == before


@pytest.mark.postgres
def test_truncate_is_refused_on_postgresql(tmp_path: Path) -> None:
    """PostgreSQL only: SQLite has no TRUNCATE (DELETE without WHERE is tested above). A
    database of its own, so the SQLite run generates no skipped case (CI allows no skip)."""
    with database_url("postgres", tmp_path) as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine, [migrate.CORE_VERSIONS])
            append(make_sessionmaker(engine), 3)
            before = events(engine)
            assert len(before) == 3
            with refused("TRUNCATE"), engine.begin() as conn:
                conn.execute(text("TRUNCATE audit_event"))
            assert events(engine) == before
        finally:
            engine.dispose()


def test_an_orm_update_or_delete_is_refused(
    three: sessionmaker[Session], migrated_engine: Engine
) -> None:
    """What an application bug would do: change a loaded event, or delete one."""
    before = events(migrated_engine)
    with refused("UPDATE"), transaction(three) as session:
        event = session.get(AuditEvent, 2)
        assert event is not None
        event.outcome = "refused"
    with refused("DELETE"), transaction(three) as session:
        event = session.get(AuditEvent, 3)
        assert event is not None
        session.delete(event)
    assert events(migrated_engine) == before


def test_appending_still_works_after_a_refusal(
    three: sessionmaker[Session], migrated_engine: Engine
) -> None:
    """Appends update audit_head, which the guard leaves alone, and insert, which it allows."""
    with refused("DELETE"), migrated_engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event WHERE seq = 3"))
    append(three, 2)
    rows = events(migrated_engine)
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5]
    last = rows[-1]
    assert head(migrated_engine) == (5, last[-1])
    assert last[-2] == rows[-2][-1]  # seq 5 links to seq 4
    with three() as session:
        stored = session.get(AuditEvent, 5)
        assert stored is not None
        assert compute_event_hash(
            seq=stored.seq, occurred_at=stored.occurred_at, actor=stored.actor,
            action=stored.action, object_type=stored.object_type, object_id=stored.object_id,
            outcome=stored.outcome, details=stored.details, prev_hash=stored.prev_hash,
        ) == stored.hash


# --------------------------------------------------------------------------------------------
# The migration itself, on a database of its own (the module's database stays guarded)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(migrate.__file__).parent / "migrations"))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join([migrate.CORE_VERSIONS]))
    cfg.attributes["engine"] = engine
    return cfg


def guard_objects(engine: Engine) -> set[str]:
    """The names of the triggers (and, on PostgreSQL, the function) the guard consists of."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            found = conn.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name = 'audit_event'")).scalars()
            return set(found)
        triggers = conn.execute(text(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_event'::regclass "
            "AND NOT tgisinternal")).scalars()
        functions = conn.execute(text(
            "SELECT proname FROM pg_proc WHERE proname = 'audit_event_append_only'")).scalars()
        return {*triggers, *functions}


@pytest.fixture(params=BACKENDS)
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database_url(request.param, tmp_path) as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def test_downgrade_removes_the_guard_and_upgrade_restores_it(fresh_engine: Engine) -> None:
    migrate.upgrade(fresh_engine, [migrate.CORE_VERSIONS])
    expected = {
        "sqlite": {"audit_event_no_update", "audit_event_no_delete"},
        "postgresql": {"audit_event_no_update_delete", "audit_event_no_truncate",
                       "audit_event_append_only"},
    }[fresh_engine.dialect.name]
    assert guard_objects(fresh_engine) == expected
    factory = make_sessionmaker(fresh_engine)
    append(factory, 2)

    command.downgrade(alembic_config(fresh_engine), "core_0001")
    assert guard_objects(fresh_engine) == set()
    with fresh_engine.begin() as conn:  # the bare table takes any change again
        conn.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE seq = 1"))
        conn.execute(text("DELETE FROM audit_event WHERE seq = 2"))
    assert [(row[0], row[2]) for row in events(fresh_engine)] == [(1, "mallory")]

    migrate.upgrade(fresh_engine, [migrate.CORE_VERSIONS])
    assert guard_objects(fresh_engine) == expected
    with refused("DELETE"), fresh_engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event"))
    assert len(events(fresh_engine)) == 1
