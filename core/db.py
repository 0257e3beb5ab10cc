"""Database plumbing shared by every package: declarative Base, engines, sessions, UTC times.

Each domain package declares its tables on :data:`Base` in its own ``models.py`` and ships its
own alembic migrations (``<package>/migrations``); :mod:`core.migrate` runs them all.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.engine import Connection, Dialect, ExceptionContext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from core.errors import GovpkiError

log = logging.getLogger("govpki.db")
#: How long a new PostgreSQL connection may take before the request fails (libpq's
#: connect_timeout): a database host that drops packets must not hold a request for minutes.
CONNECT_TIMEOUT_SECONDS = 5

class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DatabaseUnavailable(GovpkiError, SQLAlchemyError):
    """The database cannot be reached: refused, restarting, shut down, out of connections.

    Raised instead of the driver's error so that every edge answers it the same way — 503
    with a problem body over HTTP, one line on the CLI — while code that catches SQLAlchemy's
    errors (the OCSP responder's ``tryLater``) still does. Nothing was written: the transaction
    that met it is rolled back.
    """

    kind = "database-unavailable"
    http_status = 503

    def __init__(self, message: str = "the database is unavailable (restarting or "
                 "unreachable): try again shortly", **details: object) -> None:
        super().__init__(message, **details)


#: SQLSTATE classes of a database that is away rather than of a statement that failed: 08
#: connection exception, 57 operator intervention (shutdown, starting up; not 57014, a
#: cancelled statement), 53300 too many connections.
_AWAY_CLASSES = ("08", "57")
_NOT_AWAY = ("57014",)


def _database_away(context: ExceptionContext) -> bool:
    if context.is_pre_ping:
        return False  # the pool reconnects by itself; that is not a failure yet
    if context.is_disconnect:
        return True
    import psycopg

    original = context.original_exception
    if not isinstance(original, psycopg.OperationalError):
        return False
    state = original.sqlstate
    if state is None:  # refused or timed out before any server answered
        return True
    return (state[:2] in _AWAY_CLASSES and state not in _NOT_AWAY) or state == "53300"


def _unavailable(context: ExceptionContext) -> BaseException | None:
    """``handle_error`` hook: a connection-class failure becomes DatabaseUnavailable (after
    SQLAlchemy has invalidated the broken connection, so the pool reconnects later)."""
    if not _database_away(context):
        return None
    first = (str(context.original_exception).strip().splitlines() or [""])[0]
    log.info("database unavailable: %s", first[:300])
    error = DatabaseUnavailable()
    error.__cause__ = context.original_exception
    return error


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings govpki relies on for each backend.

    SQLite: WAL and a busy timeout so the CLI and a running server can share the file, foreign
    keys on. PostgreSQL: pre-ping so a node survives a database restart (a pooled connection
    that died with the old server is replaced at checkout, no request sees it), a connect
    timeout, and connection-class failures raised as :class:`DatabaseUnavailable`.
    """
    if url.startswith("sqlite"):
        _create_private_file(url)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        # pysqlite's own transaction handling defers BEGIN; issue it ourselves so that
        # "BEGIN IMMEDIATE" (see `write_transaction`) takes the write lock up front.
        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # A read (read_transaction) begins deferred: in WAL mode it reads a snapshot and
            # never waits for, nor blocks, the one writer.
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    connect_args = dict(kwargs.pop("connect_args", {}))
    if "connect_timeout" not in url:
        connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    event.listen(engine, "handle_error", _unavailable, retval=True)

    @event.listens_for(engine, "begin")
    def _begin_pg(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # one snapshot for the whole read (a chain walk and the head row agree)
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    return engine


def _create_private_file(url: str) -> None:
    """The embedded database holds the CA's records and audit log: readable by its owner only
    (created 0600 before SQLite would create it with the umask's 0644)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return
    path = Path(url[len(prefix):])
    if path.exists() or not path.parent.is_dir():
        return
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


#: Execution option of a connection that only reads (see :func:`read_transaction`).
READ_ONLY = "govpki_read_only"


@contextmanager
def read_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A consistent read that takes no write lock: SQLite begins it deferred (a WAL snapshot,
    so a long read such as ``govpki audit verify`` or a metrics scrape never holds up
    issuance), PostgreSQL runs it REPEATABLE READ, READ ONLY (one snapshot for every statement,
    and a write inside it is refused by the server).
    Nothing is committed; writes belong in :func:`transaction`."""
    session = factory()
    try:
        session.connection(execution_options={READ_ONLY: True})
        yield session
    finally:
        session.rollback()
        session.close()


def read_only(engine: Engine) -> Connection:
    """A connection for reads outside a Session (probes, metrics), begun as
    :func:`read_transaction` begins."""
    return engine.connect().execution_options(**{READ_ONLY: True})


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error (nothing half-written)."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
