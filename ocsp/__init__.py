"""OCSP responder (RFC 6960, RFC 5019 profile): pre-signed answers in memory, backed by a table.

Protocol logic (:mod:`ocsp.responder`) is callable without any web framework; :mod:`ocsp.wsgi` is
the thin HTTP edge and :mod:`ocsp.events` keeps answers current when a status changes. See
docs/ocsp.md.
"""

from pathlib import Path

MIGRATIONS = str(Path(__file__).parent / "migrations")


def version_locations() -> list[str]:
    """ocsp's migration directory, to append to ``ca.context.version_locations()``."""
    return [MIGRATIONS]
