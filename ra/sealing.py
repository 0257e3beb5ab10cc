"""The RA's installation secret: seals TOTP seeds so a copy of the database alone is useless.

One 256-bit key in ``GOVPKI_HOME/ra-secret.key`` (mode 0600, created on first use with
O_EXCL so two processes starting together cannot each write a different one). Every node of a
multi-node deployment shares GOVPKI_HOME's configuration, so they share it; `govpki backup`
(operations issue) must carry it with the configuration. Sealed values are AES-256-GCM with a
fresh 96-bit nonce and the purpose and row as associated data, so a sealed seed moved to
another operator's row does not open.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import ConfigError

KEY_FILE = "ra-secret.key"
_KEY_BYTES = 32
_NONCE_BYTES = 12


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def for_home(cls, home: Path) -> Sealer:
        return cls(_load_or_create(home / KEY_FILE))

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:],
                                      context.encode())
        except (InvalidTag, ValueError):
            raise ConfigError(f"a sealed RA secret does not open with {KEY_FILE}: the file "
                              "was replaced or the row was altered") from None


def _load_or_create(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process may have created it a moment ago and still be writing.
        for _ in range(100):
            key = path.read_bytes()
            if len(key) == _KEY_BYTES:
                return key
            time.sleep(0.01)
        raise ConfigError(f"{path} must hold exactly {_KEY_BYTES} bytes") from None
    key = secrets.token_bytes(_KEY_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key
