"""`govpki refresh`: one round of the periodic jobs (CRLs that are due, OCSP signers close to
expiry, an audit checkpoint, …), for a systemd timer on every node of a deployment.

Several nodes on one PostgreSQL database take turns: a round runs only while holding the
installation's job lock, a PostgreSQL session-level advisory lock (``pg_try_advisory_lock``)
on a connection of its own — the server releases it by itself if the node dies mid-round. A
node that finds the lock taken does nothing: another node is doing the same work, and every
job decides "is it due?" from the database, so the next round finds nothing left to do. (CRL
numbers are also taken under a row lock, so even without this lock no number is used twice;
the lock is what keeps two nodes from renewing the same OCSP signer at the same moment.) On
SQLite — one database file, one host — the lock is a file lock in GOVPKI_HOME.

`govpki serve`'s own scheduler thread (govpki/scheduler.py) takes the same lock for each of
its rounds, so a node with its scheduler on and a timer elsewhere never overlap either.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import click
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from ca.context import CaContext
from core.errors import GovpkiError

log = logging.getLogger("govpki.refresh")

#: The advisory lock's key: "govpki" in ASCII, one 64-bit number for every node of one database.
JOBS_LOCK_KEY: Final = int.from_bytes(b"govpki", "big")
JOBS_LOCK_FILE: Final = "run/jobs.lock"


@contextmanager
def installation_lock(ctx: CaContext) -> Iterator[bool]:
    """Yields True while this process holds the installation's job lock, False when another
    process (on this host or, with PostgreSQL, any node) holds it. Never waits."""
    if ctx.engine.dialect.name != "postgresql":
        path = ctx.config.path(JOBS_LOCK_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with ctx.engine.connect() as conn:
        ours = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                 {"key": JOBS_LOCK_KEY}).scalar())
        conn.commit()
        try:
            yield ours
        finally:
            if ours:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": JOBS_LOCK_KEY})
                    conn.commit()
                except SQLAlchemyError:
                    pass  # the connection is gone, and the server released the lock with it


class _Failures(logging.Handler):
    """Collects the jobs that failed in a round (run_jobs logs and goes on with the others)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        reason = ""
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text_ = getattr(exc, "message", None) or str(exc)
            reason = f": {type(exc).__name__}: {(text_.splitlines() or [''])[0][:200]}"
        self.lines.append(record.getMessage() + reason)


def _last_checkpointed(ctx: CaContext) -> int:
    """The seq this home's checkpoint file already covers (-1: none), so a quiet round adds
    no line: the timer runs every few minutes, the file should not grow with it."""
    from core.audit import Checkpoint, read_checkpoints

    try:
        lines = read_checkpoints(ctx.config.path(ctx.config.audit.checkpoint_file))
    except (FileNotFoundError, GovpkiError):
        return -1
    seqs = [entry.seq for _n, entry in lines if isinstance(entry, Checkpoint)]
    return seqs[-1] if seqs else -1


def _scheduler_events_after(ctx: CaContext, seq: int) -> dict[str, int]:
    from core.audit import AuditEvent
    from core.db import transaction

    with transaction(ctx.sessions) as session:
        rows = session.execute(
            select(AuditEvent.action, func.count()).where(
                AuditEvent.seq > seq, AuditEvent.actor == "system:scheduler",
                AuditEvent.outcome == "success").group_by(AuditEvent.action)).all()
    return {action: int(count) for action, count in rows}


@click.command("refresh")
def refresh_cmd() -> None:
    """Run the periodic jobs once: CRLs that are due, OCSP signers near expiry, an audit
    checkpoint (for a timer on every node; nodes on one database take turns)."""
    from ca.cli import audit_head, ca_context
    from govpki import scheduler

    failures = _Failures()
    logger = logging.getLogger("govpki.scheduler")
    with ca_context() as ctx, installation_lock(ctx) as ours:
        if not ours:
            click.echo("another process holds the installation's job lock: nothing to do "
                       "here this round")
            return
        before = audit_head(ctx)
        logger.addHandler(failures)
        propagate, logger.propagate = logger.propagate, False
        try:
            seq = scheduler.run_jobs(ctx, crl=True, ocsp=True,
                                     checkpointed_seq=_last_checkpointed(ctx))
        finally:
            logger.removeHandler(failures)
            logger.propagate = propagate
        done = _scheduler_events_after(ctx, before)
    click.echo(f"refresh: {done.get('ca.crl.publish', 0)} CRLs published, "
               f"{done.get('ocsp.renew-signer', 0)} OCSP signers renewed, audit checkpointed "
               f"at seq {seq}")
    for line in failures.lines:
        click.echo(f"error: {line}", err=True)
    if failures.lines:
        raise SystemExit(1)
