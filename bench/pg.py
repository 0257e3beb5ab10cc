"""A private PostgreSQL database per benchmark run on the shared server (created, then dropped;
nothing else on the server is touched)."""

from __future__ import annotations

import os

PG_ADMIN = os.environ.get("GOVPKI_BENCH_PG", "postgresql+psycopg://127.0.0.1:5432/test")


def pg_database(prefix: str = "govpki_bench") -> str | None:
    """URL of a fresh database, or None when PostgreSQL is not reachable."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{os.getpid()}"
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception:
        return None
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()
