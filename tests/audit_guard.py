"""The audit log's append-only guard (core_0002's triggers), for tests that must get past it.

A plain module (``from tests import audit_guard``), not a conftest, so any test package can use
it. Tests that tamper with ``audit_event`` to prove ``govpki audit verify`` catches it first
:func:`drop` the guard, as an attacker with DDL rights would: the triggers only stop UPDATE and
DELETE, the hash chain and the checkpoints are what catch someone who removes them. Test
fixtures that empty the log between tests use :func:`lifted`, which puts the guard back.

The statements are the migration's own (read through alembic from core_0002), so these helpers
drop and create exactly the objects a migrated database has.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from core import migrate

REVISION = "core_0002"

Executor = Connection | Session | sqlite3.Connection


@cache
def migration() -> ModuleType:
    """The revision module that creates the guard."""
    script = ScriptDirectory(str(Path(migrate.__file__).parent / "migrations"),
                             version_locations=[migrate.CORE_VERSIONS])
    revision = script.get_revision(REVISION)
    assert revision is not None, f"no migration {REVISION}"
    return revision.module


def message(verb: str) -> str:
    """What the database says when the guard refuses ``verb`` (UPDATE, DELETE, TRUNCATE)."""
    return str(migration().MESSAGE.format(verb=verb))


def _dialect(conn: Executor) -> str:
    if isinstance(conn, sqlite3.Connection):
        return "sqlite"
    if isinstance(conn, Session):
        return conn.get_bind().dialect.name
    return conn.dialect.name


def _execute(conn: Executor, statements: list[str]) -> None:
    for statement in statements:
        if isinstance(conn, sqlite3.Connection):
            conn.execute(statement)
        else:
            conn.execute(text(statement))


def drop(conn: Executor) -> None:
    """Remove the guard inside ``conn``'s transaction (a no-op when it is already gone)."""
    _execute(conn, migration().DROP[_dialect(conn)])


def create(conn: Executor) -> None:
    """Put the guard back inside ``conn``'s transaction (it must not be there)."""
    _execute(conn, migration().CREATE[_dialect(conn)])


@contextmanager
def lifted(conn: Executor) -> Iterator[None]:
    """The guard is absent inside the block and present again after it, in the same
    transaction: a test fixture's reset of the log, never an application path."""
    drop(conn)
    yield
    create(conn)
