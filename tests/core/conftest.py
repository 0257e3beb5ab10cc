"""Databases for core's tests: a SQLite file, and a fresh PostgreSQL database per test module.

PostgreSQL tests create ``govpki_t_<random>`` on the server named by GOVPKI_TEST_PG (the same
variable as tests/conftest.py; default: the local ``test`` database, trust auth) and drop exactly
that database afterwards.
Outside CI an unreachable server skips them; with CI=true it fails them, so a broken CI service
cannot turn the PostgreSQL half of the suite silently green.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from core import migrate
from core.db import make_engine

# libpq spelling (no "+psycopg"): psycopg.connect takes it, and so does core.db.make_engine.
POSTGRES_ADMIN_URL = make_url(
    os.environ.get("GOVPKI_TEST_PG", "postgresql://127.0.0.1:5432/test")
).set(drivername="postgresql").render_as_string(hide_password=False)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it (and only it) afterwards."""
    name = f"govpki_t_{secrets.token_hex(6)}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(
            hide_password=False
        )
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url(backend: str, tmp_dir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir / 'govpki.sqlite3'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database per test module and backend."""
    with database_url(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="module")
def migrated_engine(db_url: str) -> Iterator[Engine]:
    """The module's database with core's migrations applied, the way `govpki init` does it."""
    engine = make_engine(db_url)
    migrate.upgrade(engine, [migrate.CORE_VERSIONS])
    yield engine
    engine.dispose()
