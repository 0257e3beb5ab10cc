"""Key management centre (密钥管理中心): escrow and recovery of encryption keys.

In the dual-certificate model the signing key is born on the official's USB key and never
copied; the encryption key is generated here, escrowed under a KMC key that never leaves the
HSM, certified by the CA and delivered into the USB key, so it can be recovered. See docs/kmc.md.
kmc/ and ra/ are siblings that never import each other: the composition root (govpki/) hands
the RA a :class:`kmc.provider.KmcEncryptionProvider` and resolves operators for kmc's CLI.
"""

from pathlib import Path

MIGRATIONS = str(Path(__file__).parent / "migrations")


def version_locations() -> list[str]:
    """kmc's migration directory, to append to ``ca.context.version_locations()``."""
    return [MIGRATIONS]
