"""Keeping answers current when a certificate's status changes (DESIGN.md, Revocation and time).

ca/ publishes a status-change event (core.events) with the revoking transaction. Here:

- in-process: a core.events listener re-signs and stores the answer synchronously after commit,
  so ``revoke()``/``suspend()``/``release()`` return only once the new answer is in the table (and
  in this process's memory, when it runs a responder);
- between processes: a thread LISTENs on ``govpki_status`` (psycopg 3, its own connection,
  reconnecting) and makes the responder load the stored answer — or sign and store it, when the
  revoking process had no responder — well within a second. After a reconnect it re-checks every
  change since the connection was lost, so a dropped NOTIFY cannot leave a stale answer.
- SQLite has no NOTIFY: the thread polls for changed statuses every ``poll_interval`` instead.

A ``ca-keys`` event (a CA key generation made or retired, an OCSP signer renewed) makes the
responder re-read issuers and signers at once instead of at its next periodic reload.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Any

from ca.context import CaContext
from core import events
from core.db import utcnow
from ocsp.responder import OcspResponder

log = logging.getLogger(__name__)


class StatusEvents:
    """The subscription and the listener thread of one responder; :meth:`close` ends both."""

    def __init__(self, ctx: CaContext, responder: OcspResponder, *, listen: bool = True,
                 poll_interval: float = 1.0) -> None:
        self.ctx = ctx
        self.responder = responder
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()  # set while LISTEN is active (tests wait on it)
        events.subscribe(self._on_event)
        if listen:
            self._thread = threading.Thread(target=self._run, name="ocsp-status-listener",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        events.unsubscribe(self._on_event)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _on_event(self, payload: dict[str, Any]) -> None:
        """In-process, after commit: runs inside the revoking call, so it returns signed."""
        self._handle(payload)

    def _handle(self, payload: dict[str, Any]) -> None:
        if payload.get("type") == "ca-keys":
            # A key generation was made or retired, or a signer renewed (ca/rollover.py).
            try:
                self.responder.reload_metadata()
            except Exception:
                self.responder.invalidate_metadata()  # the next request tries again
                log.exception("OCSP: could not re-read the CA keys after a change")
            return
        if payload.get("type") != "certificate-status":
            return
        ca, serial = payload.get("ca"), payload.get("serial")
        if not isinstance(ca, str) or not isinstance(serial, str):
            return
        try:
            self.responder.sync(ca, serial)
        except Exception:
            # Never fail the revoking call after its commit; sync() dropped the stale answer,
            # so the next request for it is signed fresh.
            log.exception("OCSP: could not re-sign the answer for %s/%s", ca, serial)

    def _run(self) -> None:
        if self.ctx.engine.dialect.name == "postgresql":
            self._listen()
        else:
            self._poll()

    def _poll(self) -> None:
        since = utcnow()
        while not self._stop.wait(self.poll_interval):
            started = utcnow()
            try:
                self.responder.resync(since - dt.timedelta(seconds=2))
                since = started
            except Exception:
                log.exception("OCSP: polling for status changes failed")

    def _listen(self) -> None:
        import psycopg

        url = self.ctx.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        lost_at: dt.datetime | None = None
        backoff = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {events.STATUS_CHANNEL}")
                    self.connected.set()
                    backoff = 0.2
                    if lost_at is not None:
                        self.responder.resync(lost_at - dt.timedelta(seconds=5))
                        lost_at = None
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.25):
                            try:
                                payload = json.loads(note.payload)
                            except ValueError:
                                continue
                            if isinstance(payload, dict):
                                self._handle(payload)
            except Exception as exc:
                self.connected.clear()
                lost_at = lost_at or utcnow()
                log.warning("OCSP: status listener lost its connection (%s); reconnecting",
                            type(exc).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.connected.clear()


def install(ctx: CaContext, responder: OcspResponder | None = None, *, listen: bool = True,
            poll_interval: float = 1.0) -> StatusEvents:
    """Subscribe ``responder`` (a signing-only one if None: a process that revokes but serves no
    OCSP still signs and stores the new answer) to status changes; ``listen`` also starts the
    cross-process listener thread."""
    return StatusEvents(ctx, responder or OcspResponder(ctx), listen=listen,
                        poll_interval=poll_interval)
