"""The ca package's migrations build exactly the schema its models declare (SQLite and
PostgreSQL), partial indexes included, and the newest one downgrades cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from ca.context import version_locations
from ca.models import Certificate
from core import migrate
from core.db import make_engine
from tests.conftest import PostgresDatabases


def _ca_diff(url: str) -> list:
    engine = make_engine(url)
    try:
        migrate.upgrade(engine, version_locations())
        metadata = MetaData()
        for table in Certificate.metadata.sorted_tables:
            if table.name.startswith("ca_"):
                table.to_metadata(metadata)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()

    def ours(entry: tuple) -> bool:
        obj = entry[1]
        table = getattr(obj, "table", obj)
        return getattr(table, "name", "").startswith("ca_")

    return [d for d in diff if isinstance(d, tuple) and ours(d)]


def test_models_match_migrations_on_sqlite(tmp_path: Path) -> None:
    assert _ca_diff(f"sqlite:///{tmp_path / 'ca.sqlite3'}") == []


@pytest.mark.postgres
def test_models_match_migrations_on_postgresql(pg_databases: PostgresDatabases) -> None:
    assert _ca_diff(pg_databases.create()) == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                             marks=pytest.mark.postgres)])
def test_pending_index_holds_only_pending_rows(backend: str, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    """ix_ca_certificate_pending is partial (state = 'pending'): /metrics reads it on every
    scrape, and it must not grow with every certificate ever issued."""
    url = (f"sqlite:///{tmp_path / 'ca.sqlite3'}" if backend == "sqlite"
           else request.getfixturevalue("pg_databases").create())
    engine = make_engine(url)
    try:
        migrate.upgrade(engine, version_locations())
        indexes = {i["name"]: i for i in inspect(engine).get_indexes("ca_certificate")}
        pending = indexes["ix_ca_certificate_pending"]
        assert pending["column_names"] == ["authority_id", "created_at"]
        where = pending.get("dialect_options", {}).get(f"{engine.dialect.name}_where")
        assert where is not None and "pending" in str(where)
    finally:
        engine.dispose()
