"""The provider's periodic work, run by govpki's scheduler (govpki/scheduler.py): retry the
back-channel logouts that are due (apps/sso/backchannel.py) and drop rate-limit counters of
windows long gone (apps/sso/ratelimit.py). Callable without a web request."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from apps.sso import backchannel, ratelimit
from apps.sso.config import SsoConfig, sso_config_from
from apps.sso.keys import TokenKeys
from ca.context import CaContext


@dataclass(frozen=True)
class RoundReport:
    delivered: int
    retrying: int
    failed: int
    counters_purged: int


def run_due(ctx: CaContext, *, config: SsoConfig | None = None,
            now: dt.datetime | None = None) -> RoundReport:
    """One round: every due logout delivery gets its next attempt, old counters go."""
    config = config or sso_config_from(ctx.config.sections)
    deliverer = backchannel.Deliverer(ctx, config, TokenKeys(ctx),
                                      config.issuer_for(ctx.config.public_base_url))
    outcomes = deliverer.deliver(now=now)
    states = [o.state for o in outcomes]
    return RoundReport(delivered=states.count(backchannel.DELIVERED),
                       retrying=states.count(backchannel.PENDING),
                       failed=states.count(backchannel.FAILED),
                       counters_purged=ratelimit.purge(ctx, now=now))
