"""Who a certificate belongs to, for the CA's reports: the RA's official behind a subscriber_ref.

ca/ stores ``ra-official:<id>/request:<id>`` with every certificate the RA had issued
(ra/requests.py) and never imports ra/; `govpki ca compromise` asks this lookup (registered in
govpki/cli.py through ca.cli.SUBSCRIBER_LOOKUPS) whom to notify about each affected certificate.
"""

from __future__ import annotations

import re

from ca.context import CaContext
from core.db import transaction
from core.errors import GovpkiError
from ra.officials import load_official

_OFFICIAL = re.compile(r"ra-official:([0-9]{1,12})(?:/|$)")


def official_to_notify(ctx: CaContext, subscriber_ref: str) -> dict[str, str] | None:
    """The official's identifier, name, organisation and contact; None for a reference that
    is not an RA official's (CA and service certificates) or an official no longer on record."""
    match = _OFFICIAL.match(subscriber_ref)
    if match is None:
        return None
    try:
        with transaction(ctx.sessions) as session:
            official = load_official(session, int(match.group(1)))
    except GovpkiError:
        return None
    return {"official": official.identifier, "name": official.name,
            "organisation": official.organisation.code,
            "organisation_name": official.organisation.name, "contact": official.contact}
