"""Periodic jobs of a serving node: republish CRLs that are due, renew OCSP signers that are
close to expiry, sign an audit checkpoint.

Every worker process starts the thread, but only the one holding the home's scheduler lock runs
the jobs, so one node never renews a signer twice. Several nodes on one PostgreSQL are safe:
CRL numbers come from a locked counter, and publication happens only when due.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from typing import IO

from ca.context import CaContext

log = logging.getLogger("govpki.scheduler")
INTERVAL_SECONDS = 60.0


def _try_lock(ctx: CaContext) -> IO[str] | None:
    path = ctx.config.path("run/scheduler.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def run_jobs(ctx: CaContext, *, crl: bool, ocsp: bool, checkpointed_seq: int = -1) -> int:
    """One round of every job; a failing job is logged and the others still run.

    Returns the audit seq now covered by a checkpoint: a round in which nothing was recorded
    signs no new line (the file would otherwise grow by one line a minute for nothing).
    """
    from ca.cli import audit_head, checkpoint

    if crl:
        try:
            from ca.crl import republish_due

            republish_due(ctx)
        except Exception:
            log.exception("CRL republication failed")
    if ocsp:
        try:
            from ocsp.signer import ensure_fresh

            ensure_fresh(ctx, actor="system:scheduler")
        except Exception:
            log.exception("OCSP signer renewal failed")
    try:
        head = audit_head(ctx)
        if head != checkpointed_seq:
            checkpoint(ctx)
            checkpointed_seq = head
    except Exception:
        log.exception("audit checkpoint failed")
    return checkpointed_seq


def start_scheduler(ctx: CaContext, *, crl: bool, ocsp: bool) -> threading.Thread | None:
    if os.environ.get("GOVPKI_SCHEDULER") == "off":
        return None
    lock = _try_lock(ctx)
    if lock is None:
        return None
    stop = threading.Event()

    def loop() -> None:
        checkpointed = -1
        while not stop.is_set():
            checkpointed = run_jobs(ctx, crl=crl, ocsp=ocsp, checkpointed_seq=checkpointed)
            stop.wait(INTERVAL_SECONDS)

    thread = threading.Thread(target=loop, name="govpki-scheduler", daemon=True)
    thread.start()
    return thread
