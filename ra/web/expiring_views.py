"""Certificates expiring within 30 days, grouped by organisation: the operator page behind the
dashboard's count, so each prefecture's or department's RA operator sees whose USB keys need
renewing before officials are locked out of signing and logging in.

Who sees what is decided by ``queries.expiring_certificates`` (the actor's scope, as on the
dashboard); this view only groups. Mounted at /ra/expiring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from flask.typing import ResponseReturnValue

from ra.web import queries
from ra.web.base import actor, bp, ca_context, render

WINDOW_DAYS: Final = 30
# A province has a few thousand officials; a month's renewals fit on one page.
LIMIT: Final = 2000


@dataclass(frozen=True)
class OrganisationGroup:
    name: str
    certificates: list[queries.ExpiringCertificate]


def group_by_organisation(items: list[queries.ExpiringCertificate]) -> list[OrganisationGroup]:
    """Organisations with the most expiring certificates first, then by name; soonest first
    within each."""
    groups: dict[str, list[queries.ExpiringCertificate]] = {}
    for item in items:
        groups.setdefault(item.organisation_name, []).append(item)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [OrganisationGroup(name, sorted(certs, key=lambda c: c.not_after))
            for name, certs in ordered]


@bp.get("/expiring")
def expiring_by_organisation() -> ResponseReturnValue:
    items = queries.expiring_certificates(ca_context(), actor(), days=WINDOW_DAYS, limit=LIMIT)
    return render("expiring.html", groups=group_by_organisation(items), total=len(items))
