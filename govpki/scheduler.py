"""Periodic jobs of a serving node: republish CRLs that are due, renew OCSP signers that are
close to expiry, retry single sign-on's back-channel logouts, sign an audit checkpoint.

Every worker process starts the thread, but only the one holding the home's scheduler lock runs
the jobs, and each round holds the installation's job lock (govpki/refresh.py: a PostgreSQL
advisory lock), so neither two workers nor two nodes on one database run a round at the same
time; every job acts only when due, so the next round finds nothing left to do. A deployment
of several nodes runs the rounds from a timer instead (`govpki refresh`, deploy/systemd) and
turns this thread off (GOVPKI_SCHEDULER=off).
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


def run_jobs(ctx: CaContext, *, crl: bool, ocsp: bool, checkpointed_seq: int = -1,
             sso: bool | None = None) -> int:
    """One round of every job; a failing job is logged and the others still run. ``sso``
    (default: like ``crl``) runs where the SSO provider is mounted, with the CA's pages.

    Returns the audit seq now covered by a checkpoint: a round in which nothing was recorded
    signs no new line (the file would otherwise grow by one line a minute for nothing).
    """
    from ca.cli import audit_head, checkpoint

    if crl:
        try:  # before CRLs: a generation whose certificates have all expired publishes no more
            from ca.rollover import retire_finished

            retire_finished(ctx)
        except Exception:
            log.exception("retiring CA key generations failed")
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
    if (crl if sso is None else sso):
        try:
            from apps.sso.maintenance import run_due

            run_due(ctx)
        except Exception:
            log.exception("SSO back-channel logout retries failed")
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
    from govpki.refresh import installation_lock

    stop = threading.Event()

    def loop() -> None:
        checkpointed = -1
        lock: IO[str] | None = None
        while not stop.is_set():
            # Asked again every round: after a graceful restart (SIGHUP) the new worker starts
            # while the old one still holds the home's lock, and takes over once it is gone.
            lock = lock or _try_lock(ctx)
            try:
                if lock is not None:
                    # One round at a time across the nodes of one database (govpki/refresh.py).
                    with installation_lock(ctx) as ours:
                        if ours:
                            checkpointed = run_jobs(ctx, crl=crl, ocsp=ocsp,
                                                    checkpointed_seq=checkpointed)
            except Exception:
                log.exception("scheduler round failed (database unavailable?); next round "
                              "in %.0f s", INTERVAL_SECONDS)
            stop.wait(INTERVAL_SECONDS)

    thread = threading.Thread(target=loop, name="govpki-scheduler", daemon=True)
    thread.start()
    return thread
