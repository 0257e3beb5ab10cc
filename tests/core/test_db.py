"""core.db: aware UTC datetimes on both backends, SQLite settings, the unit-of-work helper.

The test table lives on its own MetaData, never on core.db.Base, so it cannot leak into
anyone's migrations or create_all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, insert, select, text
from sqlalchemy.exc import StatementError

from core.db import UTCDateTime, make_engine, make_sessionmaker, transaction, utcnow

metadata = MetaData()
stamps = Table(
    "test_utc_stamp", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=True),
)

BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")


@pytest.fixture(scope="module")
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    metadata.create_all(engine)
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(autouse=True)
def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(stamps.delete())


def store_and_load(engine: Engine, value: dt.datetime | None) -> dt.datetime | None:
    with engine.begin() as conn:
        result = conn.execute(insert(stamps).values(at=value))
        assert result.inserted_primary_key is not None
        row_id = result.inserted_primary_key[0]
    with engine.connect() as conn:
        return conn.execute(select(stamps.c.at).where(stamps.c.id == row_id)).scalar_one()


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=dt.UTC),
        dt.datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=BEIJING),  # converted, same instant
        dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.datetime(2050, 1, 1, tzinfo=dt.UTC),  # past 2038 (certificate not_after)
    ],
    ids=["utc", "beijing", "new-york-eve", "after-2038"],
)
def test_aware_datetimes_round_trip_as_utc(engine: Engine, value: dt.datetime) -> None:
    loaded = store_and_load(engine, value)
    assert loaded == value  # the same instant, to the microsecond
    assert loaded is not None and loaded.tzinfo == dt.UTC


def test_none_round_trips(engine: Engine) -> None:
    assert store_and_load(engine, None) is None


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as conn:
        conn.execute(insert(stamps).values(at=dt.datetime(2025, 1, 1)))  # noqa: DTZ001


def test_stored_value_is_utc_whatever_the_session_time_zone(engine: Engine) -> None:
    """PostgreSQL's TimeZone setting must not shift values (the column has no zone)."""
    value = dt.datetime(2025, 6, 1, 12, 0, tzinfo=BEIJING)
    store_and_load(engine, value)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TIME ZONE 'Asia/Shanghai'")
        raw = conn.execute(text("SELECT at FROM test_utc_stamp")).scalar_one()
        loaded = conn.execute(select(stamps.c.at)).scalar_one()
    assert str(raw).startswith("2025-06-01 04:00:00")  # stored as naive UTC
    assert loaded == value


def test_utcnow_is_aware() -> None:
    assert utcnow().tzinfo == dt.UTC


def test_transaction_commits_on_success_and_rolls_back_on_error(engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        session.execute(insert(stamps).values(id=1, at=utcnow()))
    with pytest.raises(RuntimeError), transaction(factory) as session:
        session.execute(insert(stamps).values(id=2, at=utcnow()))
        raise RuntimeError("half-way")
    with engine.connect() as conn:
        assert conn.execute(select(stamps.c.id)).scalars().all() == [1]


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    """WAL + busy timeout let the CLI and a server share the file; foreign keys are enforced."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_postgresql_url_uses_psycopg3() -> None:
    engine = make_engine("postgresql://127.0.0.1:5432/nothing")
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_read_transaction_reads_and_never_keeps_a_write(engine: Engine) -> None:
    """PostgreSQL refuses a write inside it (READ ONLY); on SQLite nothing is committed."""
    from sqlalchemy.exc import DBAPIError

    from core.db import read_transaction

    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        session.execute(insert(stamps).values(id=1, at=utcnow()))
    with read_transaction(factory) as session:
        assert session.execute(select(stamps.c.id)).scalars().all() == [1]
        if engine.dialect.name == "postgresql":
            with pytest.raises(DBAPIError, match="read-only transaction"):
                session.execute(insert(stamps).values(id=2, at=utcnow()))
        else:
            session.execute(insert(stamps).values(id=2, at=utcnow()))
    with engine.connect() as conn:
        assert conn.execute(select(stamps.c.id)).scalars().all() == [1]


@pytest.mark.parametrize("reader", ["read_transaction", "transaction"])
def test_sqlite_reads_do_not_hold_up_the_writer(tmp_path: Path, reader: str) -> None:
    """While a read_transaction is open (a long audit verify, a metrics scrape), another
    process still takes SQLite's write lock at once; an ordinary transaction (BEGIN IMMEDIATE,
    what every write needs) would keep it waiting. The second case shows the test can fail."""
    import sqlite3

    from core.db import read_transaction

    path = tmp_path / "x.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    factory = make_sessionmaker(engine)
    opened = read_transaction if reader == "read_transaction" else transaction
    writer = sqlite3.connect(path, timeout=0.3, isolation_level=None)
    try:
        with opened(factory) as session:
            session.execute(select(stamps.c.id)).all()
            if reader == "read_transaction":
                writer.execute("BEGIN IMMEDIATE")
                writer.execute("INSERT INTO test_utc_stamp (id) VALUES (7)")
                writer.execute("COMMIT")
                # a snapshot: the row committed meanwhile is not seen inside the read
                assert session.execute(select(stamps.c.id)).scalars().all() == []
            else:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    writer.execute("BEGIN IMMEDIATE")
    finally:
        writer.close()
        engine.dispose()


def test_read_transaction_is_one_snapshot(engine: Engine) -> None:
    """Every statement of a read sees the state of its first one: `govpki audit verify` walks
    the chain and then reads the head row, and a commit in between must not make them differ
    (REPEATABLE READ on PostgreSQL, a WAL snapshot on SQLite)."""
    from core.db import read_transaction

    factory = make_sessionmaker(engine)
    with read_transaction(factory) as session:
        assert session.execute(select(stamps.c.id)).scalars().all() == []
        with transaction(factory) as other:  # another connection commits meanwhile
            other.execute(insert(stamps).values(id=5, at=utcnow()))
        assert session.execute(select(stamps.c.id)).scalars().all() == []
    with read_transaction(factory) as session:
        assert session.execute(select(stamps.c.id)).scalars().all() == [5]
