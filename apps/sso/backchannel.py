"""OpenID Connect Back-Channel Logout 1.0 delivery, through an outbox that survives failures.

Why it looks like this: a logout must end the session at every application that took part
(§2.3: the OP remembers them — sessions.add_client), yet an application may be restarting or
briefly unreachable when the user logs out. So ending a session writes one
``sso_logout_delivery`` row per such client with a registered ``backchannel_logout_uri``, in
the same transaction (sessions.end → :func:`enqueue`): no logout is lost between "session
ended" and "clients told". The provider then makes the first attempt at once, synchronously,
with a short timeout (``[sso] backchannel_timeout_seconds``), so a reachable client has ended
its session before the logout page shows; the scheduler (govpki/scheduler.py →
apps/sso/maintenance.py) retries the rest with exponential backoff
(``backchannel_retry_seconds`` doubling up to ``backchannel_retry_max_seconds``) until
``backchannel_max_attempts``, and the final failure is an audit event.

The rules, from the specification:

* §2.4 — each attempt posts a newly signed logout token: ``iss``, ``aud``, ``iat``, ``exp``,
  ``jti``, ``sub``, ``sid``, the ``events`` member, never a ``nonce``, ``typ: logout+jwt``. A
  retry an hour later is therefore not refused as stale by an RP that checks ``iat``.
* §2.5 — ``POST`` ``application/x-www-form-urlencoded`` with one ``logout_token`` parameter to
  the registered URI. Redirects are not followed (the URI is registered exactly, like redirect
  URIs; following one would post the token somewhere nobody registered).
* §2.8 — 200 OK is success, and 204 No Content too (the specification asks OPs to accept it;
  any 2xx is taken). 400 means the RP rejected the token or could not log out: the same
  claims would be rejected again, so it is final at once, as is any other 4xx except 408,
  425 and 429 (timing, not content). 5xx, timeouts and refused connections are retried.

Several nodes may run the scheduler's round at once: a row is claimed by one conditional
UPDATE (its ``attempts`` as seen) before it is sent, so no token is posted twice in parallel.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from apps.sso import models
from apps.sso.config import SsoConfig
from apps.sso.keys import TokenKeys
from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow

log = logging.getLogger("govpki.sso")

BACKCHANNEL_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
#: 4xx answers that say "not now" rather than "not this token" (RFC 9110 §15.5.9, RFC 8470,
#: RFC 6585 §4): retried like a 5xx.
_TRANSIENT_4XX: Final = frozenset({408, 425, 429})
#: How long a claimed row is left alone by other nodes while one sends it.
_LEASE: Final = dt.timedelta(minutes=2)
#: Rows one round works through at most (the rest wait for the next round).
_BATCH: Final = 200


@dataclass(frozen=True)
class Outcome:
    """What one attempt did to one delivery."""

    id: int
    client_id: str
    state: str
    attempts: int
    error: str | None


def enqueue(session: Session, *, session_id: int, sid: str, sub: str,
            client_ids: Sequence[str], now: dt.datetime) -> tuple[int, ...]:
    """Owe a logout token to each active client of ``client_ids`` that registered a
    back-channel URI, inside the caller's transaction (the one that ends the session)."""
    if not client_ids:
        return ()
    wanted = set(session.scalars(select(models.Client.client_id).where(
        models.Client.client_id.in_(list(client_ids)), models.Client.active.is_(True),
        models.Client.backchannel_logout_uri.is_not(None))))
    rows = [models.LogoutDelivery(session_id=session_id, sid=sid, sub=sub, client_id=c,
                                  state=PENDING, attempts=0, created_at=now,
                                  next_attempt_at=now)
            for c in client_ids if c in wanted]
    session.add_all(rows)
    session.flush()
    return tuple(r.id for r in rows)


def backoff(config: SsoConfig, attempts: int) -> dt.timedelta:
    """The wait after the ``attempts``-th failed attempt: retry_seconds · 2^(attempts-1),
    capped at retry_max_seconds."""
    seconds = config.backchannel_retry_seconds * 2 ** min(max(attempts - 1, 0), 30)
    return dt.timedelta(seconds=min(seconds, config.backchannel_retry_max_seconds))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirects())


class Deliverer:
    """Signs logout tokens and posts them; one per provider (and one per scheduler round)."""

    def __init__(self, ctx: CaContext, config: SsoConfig, keys: TokenKeys, issuer: str
                 ) -> None:
        self.ctx, self.config, self.keys, self.issuer = ctx, config, keys, issuer

    def logout_token(self, client_id: str, sub: str, sid: str) -> str:
        """Back-Channel Logout 1.0 §2.4 (module doc); explicit typing per RFC 8725 §3.11."""
        now = int(time.time())
        return self.keys.sign({
            "iss": self.issuer, "aud": client_id, "iat": now,
            "exp": now + self.config.logout_token_seconds, "jti": secrets.token_urlsafe(16),
            "sub": sub, "sid": sid, "events": {BACKCHANNEL_EVENT: {}},
        }, typ="logout+jwt")

    def post(self, uri: str, token: str) -> tuple[str | None, bool]:
        """POST the token (§2.5): (None, _) on 2xx, else (why, whether to retry)."""
        body = urllib.parse.urlencode({"logout_token": token}).encode("ascii")
        request = urllib.request.Request(  # noqa: S310 (a registered http(s) URI)
            uri, data=body, method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with _OPENER.open(request, timeout=self.config.backchannel_timeout_seconds) as reply:
                reply.read(4096)
        except urllib.error.HTTPError as exc:
            retry = exc.code >= 500 or exc.code in _TRANSIENT_4XX
            return f"HTTP {exc.code}", retry
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            return f"unreachable: {getattr(exc, 'reason', exc)}"[:255], True
        return None, False

    def deliver(self, ids: Sequence[int] | None = None, *, now: dt.datetime | None = None
                ) -> list[Outcome]:
        """One attempt at each pending delivery that is due (of ``ids``, when given)."""
        now = now or utcnow()
        with transaction(self.ctx.sessions) as session:
            query = select(models.LogoutDelivery.id, models.LogoutDelivery.attempts).where(
                models.LogoutDelivery.state == PENDING,
                models.LogoutDelivery.next_attempt_at <= now)
            if ids is not None:
                query = query.where(models.LogoutDelivery.id.in_(list(ids)))
            due = session.execute(query.order_by(models.LogoutDelivery.next_attempt_at)
                                  .limit(_BATCH)).all()
        outcomes = []
        for row_id, attempts in due:
            try:
                outcome = self._attempt(row_id, attempts, now)
            except Exception:  # e.g. the token key unavailable: the claim lapses, retried
                log.exception("back-channel logout delivery %d could not be attempted", row_id)
                continue
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _claim(self, row_id: int, attempts: int, now: dt.datetime
               ) -> tuple[str, str, str, str | None] | None:
        """Take a row for this attempt (None when another node has it), with its client's
        current URI (None when the client is gone, disabled or has no URI any more)."""
        with transaction(self.ctx.sessions) as session:
            claimed = session.execute(update(models.LogoutDelivery).where(
                models.LogoutDelivery.id == row_id, models.LogoutDelivery.state == PENDING,
                models.LogoutDelivery.attempts == attempts).values(
                attempts=attempts + 1, last_attempt_at=now, next_attempt_at=now + _LEASE))
            if getattr(claimed, "rowcount", 0) != 1:
                return None
            row = session.get(models.LogoutDelivery, row_id)
            assert row is not None
            uri = session.scalar(select(models.Client.backchannel_logout_uri).where(
                models.Client.client_id == row.client_id, models.Client.active.is_(True)))
            return row.client_id, row.sub, row.sid, uri

    def _attempt(self, row_id: int, attempts: int, now: dt.datetime) -> Outcome | None:
        claimed = self._claim(row_id, attempts, now)
        if claimed is None:
            return None
        client_id, sub, sid, uri = claimed
        attempt = attempts + 1
        error: str | None
        if uri is None:
            error, retry = "the client is disabled or has no back-channel URI any more", False
        else:
            error, retry = self.post(uri, self.logout_token(client_id, sub, sid))
        if error is None:
            state = DELIVERED
        elif retry and attempt < self.config.backchannel_max_attempts:
            state = PENDING
        else:
            state = FAILED
        with transaction(self.ctx.sessions) as session:
            row = session.get(models.LogoutDelivery, row_id)
            assert row is not None
            row.state, row.last_error = state, error[:255] if error else None
            if state == DELIVERED:
                row.delivered_at = now
            elif state == PENDING:
                row.next_attempt_at = now + backoff(self.config, attempt)
            if state != PENDING:
                _note_on_session(session, row, now, error)
                audit.record_event(
                    session, actor="system", action="sso.backchannel-logout",
                    object_type="sso-client", object_id=client_id,
                    outcome="success" if state == DELIVERED else "failure",
                    details={"sub": sub, "delivery": row_id, "attempts": attempt,
                             "error": error})
        if state == PENDING:
            log.warning("back-channel logout to %s failed (attempt %d, retried later): %s",
                        client_id, attempt, error)
        elif state == FAILED:
            log.error("back-channel logout to %s failed for good after %d attempt(s): %s",
                      client_id, attempt, error)
        return Outcome(row_id, client_id, state, attempt, error)


def _note_on_session(session: Session, row: models.LogoutDelivery, now: dt.datetime,
                     error: str | None) -> None:
    """Keep the session's list of clients saying when each was told (or why not)."""
    entry = session.scalar(select(models.SessionClient).where(
        models.SessionClient.session_id == row.session_id,
        models.SessionClient.client_id == row.client_id))
    if entry is not None:
        entry.notified_at = now
        entry.notify_error = error[:255] if error else None
