"""Opening key stores from configuration and resolving key URIs to signers.

``file:<name>`` goes to the software store in GOVPKI_HOME; ``pkcs11:...`` (RFC 7512) goes to the
configured PKCS#11 token. Callers hold a :class:`KeyRing` and never know which one answered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from core.config import Config, KeyStoreConfig
from hsm.algorithms import KeyType
from hsm.errors import InvalidKeyUri
from hsm.file_store import FileKeyStore
from hsm.signer import Signer


class KeyStore(Protocol):
    scheme: str

    def exists(self, uri: str) -> bool: ...

    def generate(self, uri: str, key_type: KeyType | str) -> Signer: ...

    def get(self, uri: str) -> Signer: ...


class KeyRing:
    """Dispatch by URI scheme to the stores this process has open."""

    def __init__(self, stores: list[KeyStore]) -> None:
        self._stores = {s.scheme: s for s in stores}

    def store_for(self, uri: str) -> KeyStore:
        scheme = uri.split(":", 1)[0]
        store = self._stores.get(scheme)
        if store is None:
            configured = ", ".join(sorted(self._stores)) or "none"
            raise InvalidKeyUri(
                f"no key store for '{scheme}:' URIs is configured (configured: {configured})"
            )
        return store

    def get(self, uri: str) -> Signer:
        return self.store_for(uri).get(uri)

    def generate(self, uri: str, key_type: KeyType | str) -> Signer:
        return self.store_for(uri).generate(uri, key_type)

    def exists(self, uri: str) -> bool:
        return self.store_for(uri).exists(uri)

    def add(self, store: KeyStore) -> None:
        self._stores[store.scheme] = store

    @property
    def stores(self) -> list[KeyStore]:
        return list(self._stores.values())


def open_pkcs11_store(module: str, token_label: str, pin_env: str) -> KeyStore:
    from hsm.pkcs11_store import Pkcs11KeyStore  # imported lazily: python-pkcs11 loads a C library

    return Pkcs11KeyStore(module, token_label, pin_env=pin_env)


def open_keyring(config: Config, *, with_pkcs11: bool = True) -> KeyRing:
    """The software store is always there (audit key in the demo); PKCS#11 when configured."""
    ks: KeyStoreConfig = config.keystore
    stores: list[KeyStore] = [
        FileKeyStore(
            config.path(ks.directory),
            passphrase_env=ks.passphrase_env,
            passphrase_file=config.path(ks.passphrase_file) if ks.passphrase_file else None,
        )
    ]
    if with_pkcs11 and (ks.type == "pkcs11" or ks.pkcs11_module):
        stores.append(open_pkcs11_store(ks.pkcs11_module, ks.token_label, ks.pin_env))
    return KeyRing(stores)


def file_store(directory: Path, passphrase: bytes) -> FileKeyStore:
    return FileKeyStore(directory, passphrase=passphrase)
