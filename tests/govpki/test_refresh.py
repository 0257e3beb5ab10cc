"""The installation's job lock (govpki/refresh.py): one round of the periodic jobs at a time,
per GOVPKI_HOME on SQLite, per database on PostgreSQL (an advisory lock that the server drops
with the connection of a node that died). The deployment test runs `govpki refresh` itself
(tests/deploy/test_nginx_mtls.py::test_refresh_rounds_take_turns)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from ca.context import CaContext
from govpki.refresh import JOBS_LOCK_KEY, installation_lock


def test_sqlite_home_lock_is_taken_once(file_pki) -> None:  # type: ignore[no-untyped-def]
    with installation_lock(file_pki.ctx) as first:
        assert first
        with installation_lock(file_pki.ctx) as second:
            assert not second  # another round (this process or another) holds it
    with installation_lock(file_pki.ctx) as again:
        assert again


@pytest.mark.postgres
def test_postgres_lock_spans_nodes_and_dies_with_the_connection(  # type: ignore[no-untyped-def]
        pg_file_pki) -> None:
    # A second context is a second node: its own engine and connections.
    other = CaContext.open(pg_file_pki.ctx.config, keyring=pg_file_pki.ctx.keyring)
    try:
        with installation_lock(pg_file_pki.ctx) as first:
            assert first
            with installation_lock(other) as second:
                assert not second
        with installation_lock(other) as after:
            assert after
        # A node that dies mid-round: its connection goes, and the lock with it.
        held = installation_lock(other)
        assert held.__enter__()
        with pg_file_pki.ctx.engine.connect() as conn:
            holder = conn.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :hi AND objid = :lo"),
                {"hi": JOBS_LOCK_KEY >> 32, "lo": JOBS_LOCK_KEY & 0xFFFFFFFF}).scalar_one()
            # PostgreSQL ≥ 14 waits (up to 5 s) until the backend is gone.
            conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": holder})
        with installation_lock(pg_file_pki.ctx) as taken_over:
            assert taken_over
        held.__exit__(None, None, None)  # the unlock on a dead connection is no error
    finally:
        other.close()
