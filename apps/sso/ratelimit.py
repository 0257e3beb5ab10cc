"""Rate limits on login challenges: how many codes a browser or a source address may ask for,
and how many wrong codes or answers it may send, in a fixed window ([sso] rate_* settings).

Why it looks like this: the 8-character login code is the only secret between a browser and
the official's `govpki token sign-challenge`; guessing another browser's waiting code would
let an attacker answer it (a login of the wrong person in someone's browser) or spoil it. The
counters live in the database (``sso_rate_counter``) so that every node behind the proxy
counts together, keyed by the SHA-256 of the subject (a browser's binding cookie, a source
address) so the table holds no addresses. Windows are fixed (aligned to multiples of
``rate_window_seconds``): one indexed upsert per event, and at worst twice the limit across a
window boundary, which the code space absorbs. A refusal is a :class:`RateLimited` (429 with
Retry-After: the end of the window); the first refusal of a subject in a window is audited,
later ones in the same window are only logged, so a flood cannot grow the audit log.

The source address is the peer's, or — when the peer is one of ``[sso] trusted_proxies`` —
the last address it appended to ``X-Forwarded-For`` (nginx ``$proxy_add_x_forwarded_for``):
behind the proxy every request would otherwise come from one address.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from apps.sso import models
from apps.sso.config import SsoConfig
from apps.sso.errors import RateLimited
from ca.context import CaContext
from core import audit
from core.db import transaction, utcnow

log = logging.getLogger("govpki.sso")

CHALLENGE: Final = "challenge"
ANSWER_FAILURE: Final = "answer-failure"
#: Counters older than this are deleted by the scheduler (apps/sso/maintenance.py).
KEEP: Final = dt.timedelta(days=1)


@dataclass(frozen=True)
class Subject:
    """Who is counted: ``scope`` browser or address, ``value`` the cookie or address."""

    scope: str
    value: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.scope}:{self.value}".encode()).hexdigest()


def source_address(peer: str, forwarded_for: str | None, config: SsoConfig) -> str:
    """The address a rate limit counts (module doc): the peer, or the client a trusted proxy
    names last in X-Forwarded-For."""
    if forwarded_for and config.is_trusted_proxy(peer):
        last = forwarded_for.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return peer
    return peer


def _limit(config: SsoConfig, bucket: str, scope: str) -> int:
    return {(CHALLENGE, "browser"): config.challenges_per_browser,
            (CHALLENGE, "address"): config.challenges_per_address,
            (ANSWER_FAILURE, "browser"): config.answer_failures_per_browser,
            (ANSWER_FAILURE, "address"): config.answer_failures_per_address}[(bucket, scope)]


def _window(config: SsoConfig, now: dt.datetime) -> tuple[dt.datetime, int]:
    """(start of the window ``now`` is in, seconds until it ends)."""
    size = config.rate_window_seconds
    epoch = int(now.timestamp())
    start = epoch - epoch % size
    return (dt.datetime.fromtimestamp(start, dt.UTC),
            max(1, math.ceil(start + size - now.timestamp())))


def _increment(session: Session, bucket: str, digest: str, start: dt.datetime) -> int:
    """Add one to a counter (created at 1) in one statement; returns the new count."""
    counter = models.RateCounter
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(counter).values(bucket=bucket, subject_hash=digest, window_start=start,
                                       count=1).on_conflict_do_update(
        index_elements=["bucket", "subject_hash", "window_start"],
        set_={"count": counter.count + 1}).returning(counter.count)
    return int(session.execute(statement).scalar_one())


def _refuse(ctx: CaContext, bucket: str, subject: Subject, limit: int, retry_after: int,
            *, first: bool, client: str) -> RateLimited:
    what = "login codes" if bucket == CHALLENGE else "wrong login codes or answers"
    if first:
        audit.record_refusal(ctx.sessions, actor="anonymous", action="sso.rate-limit",
                             object_type=f"sso-{subject.scope}", object_id=subject.digest[:16],
                             details={"bucket": bucket, "scope": subject.scope,
                                      "limit": limit, "client": client[:64]})
    else:
        log.warning("rate limit %s per %s still exceeded (%s)", bucket, subject.scope,
                    subject.digest[:16])
    return RateLimited(f"too many {what} from this {subject.scope}: try again in "
                       f"{retry_after} seconds", retry_after=retry_after,
                       limit=f"{bucket}/{subject.scope}")


def _add(ctx: CaContext, config: SsoConfig, bucket: str, subjects: Sequence[Subject],
         now: dt.datetime) -> tuple[list[tuple[Subject, int]], int]:
    start, retry_after = _window(config, now)
    with transaction(ctx.sessions) as session:
        counts = [(s, _increment(session, bucket, s.digest, start)) for s in subjects]
    return counts, retry_after


def take(ctx: CaContext, config: SsoConfig, bucket: str, subjects: Sequence[Subject], *,
         client: str, now: dt.datetime | None = None) -> None:
    """Count one event for each subject; raise RateLimited when that puts any over its limit
    (the event then does not happen: callers take *before* acting)."""
    counts, retry_after = _add(ctx, config, bucket, subjects, now or utcnow())
    for subject, seen in counts:
        limit = _limit(config, bucket, subject.scope)
        if seen > limit:
            raise _refuse(ctx, bucket, subject, limit, retry_after, first=seen == limit + 1,
                          client=client)


def record(ctx: CaContext, config: SsoConfig, bucket: str, subjects: Sequence[Subject], *,
           now: dt.datetime | None = None) -> None:
    """Count one event that has happened (a wrong code): it never raises, the caller has
    its own refusal to give; :func:`check` refuses the next attempt once the limit is used."""
    _add(ctx, config, bucket, subjects, now or utcnow())


def check(ctx: CaContext, config: SsoConfig, bucket: str, subjects: Sequence[Subject], *,
          client: str, now: dt.datetime | None = None) -> None:
    """Raise RateLimited when any subject has used up its limit in this window. A refused
    attempt counts too, so the first refusal of a window is the one audited."""
    now = now or utcnow()
    start, _retry = _window(config, now)
    digests = {s.digest: s for s in subjects}
    with transaction(ctx.sessions) as session:
        rows = session.execute(select(models.RateCounter.subject_hash,
                                      models.RateCounter.count).where(
            models.RateCounter.bucket == bucket, models.RateCounter.window_start == start,
            models.RateCounter.subject_hash.in_(list(digests)))).all()
    over = [digests[d] for d, seen in rows if seen >= _limit(config, bucket, digests[d].scope)]
    if over:
        take(ctx, config, bucket, over, client=client, now=now)


def purge(ctx: CaContext, *, now: dt.datetime | None = None) -> int:
    """Delete counters of windows that ended long ago."""
    before = (now or utcnow()) - KEEP
    with transaction(ctx.sessions) as session:
        result = session.execute(delete(models.RateCounter).where(
            models.RateCounter.window_start < before))
        return int(getattr(result, "rowcount", 0) or 0)
