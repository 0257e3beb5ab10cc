"""The registration authority: organisations, officials, operators and roles, the request
workflow. The RA decides, the CA signs: ra/ calls ca/'s service API (issue_certificate,
revocation) and never touches keys. See docs/ra.md.
"""

from pathlib import Path

MIGRATIONS = str(Path(__file__).parent / "migrations")


def version_locations() -> list[str]:
    """ra's migration directory, to append to ``ca.context.version_locations()``."""
    return [MIGRATIONS]
