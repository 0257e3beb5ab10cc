"""Software key store: one encrypted PKCS#8 file per key, passphrase from the environment.

The embedded default. Keys are encrypted at rest with the best PKCS#8 encryption pyca offers
(PBES2), written 0600 and never overwritten, so a re-run ceremony cannot silently replace a CA key.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hsm.algorithms import KeyType, algorithm
from hsm.errors import InvalidKeyUri, KeyExists, KeyNotFound, MissingSecret, WrongPin
from hsm.signer import SoftwareSigner

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def parse_file_uri(uri: str) -> str:
    """``file:<name>`` → name. Names are plain labels, never paths (no traversal)."""
    if not uri.startswith("file:"):
        raise InvalidKeyUri(f"not a file key URI: {uri!r}")
    name = uri[len("file:"):]
    if not _NAME.match(name):
        raise InvalidKeyUri(
            f"file key name {name!r} must be 1-128 letters, digits, '.', '_' or '-'"
        )
    return name


class FileKeyStore:
    scheme = "file"

    def __init__(self, directory: Path, passphrase: bytes | None = None,
                 passphrase_env: str = "GOVPKI_KEY_PASSPHRASE",  # noqa: S107 (a variable name)
                 passphrase_file: Path | None = None) -> None:
        self.directory = directory
        self._passphrase_env = passphrase_env
        self._passphrase_file = passphrase_file
        self._passphrase = passphrase
        self._cache: dict[str, SoftwareSigner] = {}
        self._lock = threading.Lock()

    def _secret(self) -> bytes:
        if self._passphrase is None:
            value = os.environ.get(self._passphrase_env)
            if not value and self._passphrase_file is not None:
                try:
                    value = self._passphrase_file.read_text(encoding="utf-8").strip()
                except OSError:
                    raise MissingSecret(
                        f"cannot read the key passphrase file {self._passphrase_file}"
                    ) from None
            if not value:
                raise MissingSecret(
                    f"the key passphrase is not set: export {self._passphrase_env}"
                )
            self._passphrase = value.encode("utf-8")
        return self._passphrase

    def _path(self, uri: str) -> Path:
        return self.directory / f"{parse_file_uri(uri)}.p8.pem"

    def exists(self, uri: str) -> bool:
        return self._path(uri).exists()

    def generate(self, uri: str, key_type: KeyType | str) -> SoftwareSigner:
        path = self._path(uri)
        key = algorithm(key_type).generate_software_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._secret()),
        )
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyExists(f"key {uri} already exists; refusing to overwrite it") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        signer = SoftwareSigner(uri, key)
        with self._lock:
            self._cache[uri] = signer
        return signer

    def get(self, uri: str) -> SoftwareSigner:
        with self._lock:
            cached = self._cache.get(uri)
        if cached is not None:
            return cached
        path = self._path(uri)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyNotFound(f"key {uri} not found in {self.directory}") from None
        try:
            key = serialization.load_pem_private_key(data, self._secret())
        except (ValueError, TypeError):
            raise WrongPin(f"cannot decrypt key {uri}: wrong passphrase or damaged file") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise KeyNotFound(f"key {uri} is not an RSA or EC key")
        signer = SoftwareSigner(uri, key)
        with self._lock:
            self._cache[uri] = signer
        return signer
