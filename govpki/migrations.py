"""Every package's migration directory, for `govpki db upgrade` and `govpki init`."""

from apps.exchange import version_locations as exchange_version_locations
from apps.sso import version_locations as sso_version_locations
from ca.context import version_locations
from kmc import version_locations as kmc_version_locations
from ocsp import version_locations as ocsp_version_locations
from ra import version_locations as ra_version_locations


def all_version_locations() -> list[str]:
    return [*version_locations(), *ocsp_version_locations(), *ra_version_locations(),
            *kmc_version_locations(), *sso_version_locations(), *exchange_version_locations()]
