"""Configuration: ``GOVPKI_HOME``/govpki.toml validated at start-up into frozen dataclasses.

Unknown keys are an error naming the key (pyHanko's config style), because a misspelt key that is
silently ignored in a CA configuration is a production incident waiting to happen.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8600


@dataclass(frozen=True)
class KeyStoreConfig:
    """Where private keys live. ``type`` is ``file`` (embedded default) or ``pkcs11``.

    The PIN / passphrase never lives here: it comes from the environment variable named by
    ``pin_env`` / ``passphrase_env`` (or a prompt), so config files can be archived freely.
    """

    type: str = "file"
    directory: str = "keys"
    passphrase_env: str = "GOVPKI_KEY_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
    # A 0600 file holding the passphrase (systemd credentials, the demo home); the environment
    # variable wins when both are set.
    passphrase_file: str = ""
    pkcs11_module: str = ""
    token_label: str = ""
    pin_env: str = "GOVPKI_PKCS11_PIN"


@dataclass(frozen=True)
class AuditConfig:
    checkpoint_file: str = "audit/checkpoints.jsonl"
    key_uri: str = "file:audit"


@dataclass(frozen=True)
class Config:
    home: Path
    database_url: str
    public_base_url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    listen_host: str = DEFAULT_HOST
    listen_port: int = DEFAULT_PORT
    keystore: KeyStoreConfig = field(default_factory=KeyStoreConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    # Tables owned by packages above core (e.g. [tsa] → signing.config.TsaConfig), kept as
    # data here and validated, unknown keys refused, by the package that owns them.
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def path(self, relative: str) -> Path:
        """A path inside GOVPKI_HOME (absolute paths are kept as they are)."""
        p = Path(relative)
        return p if p.is_absolute() else self.home / p


_SECTIONS: dict[str, type] = {"keystore": KeyStoreConfig, "audit": AuditConfig}
PACKAGE_SECTIONS = ("tsa", "ra", "sso")
_TOP_LEVEL = {"database_url", "public_base_url", "listen_host", "listen_port"}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown configuration key '{where}{key}'", key=f"{where}{key}")
        expected = type(fields[key].default) if fields[key].default is not dataclasses.MISSING \
            else str
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(
                f"configuration key '{where}{key}' must be {expected.__name__}", key=f"{where}{key}"
            )
    return cls(**data)


def home_from_env() -> Path:
    return Path(os.environ.get("GOVPKI_HOME", "./var")).resolve()


def load_config(home: Path | None = None) -> Config:
    """Read GOVPKI_HOME/govpki.toml (optional) and the environment overrides."""
    home = (home or home_from_env()).resolve()
    data: dict[str, Any] = {}
    path = home / "govpki.toml"
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"configuration key '{key}' must be a table", key=key)
            kwargs[key] = _build(_SECTIONS[key], value, f"{key}.")
        elif key in PACKAGE_SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"configuration key '{key}' must be a table", key=key)
            kwargs.setdefault("sections", {})[key] = value
        elif key in _TOP_LEVEL:
            kwargs[key] = value
        else:
            raise ConfigError(f"unknown configuration key '{key}'", key=key)
    for key in ("public_base_url", "listen_host", "database_url"):
        if key in kwargs and not isinstance(kwargs[key], str):
            raise ConfigError(f"configuration key '{key}' must be str", key=key)
    port = kwargs.get("listen_port", DEFAULT_PORT)
    if not isinstance(port, int) or isinstance(port, bool):
        raise ConfigError("configuration key 'listen_port' must be int", key="listen_port")
    if not 0 < port < 65536:
        raise ConfigError("configuration key 'listen_port' must be a port number (1-65535)",
                          key="listen_port")
    env_url = os.environ.get("GOVPKI_DATABASE_URL")
    if env_url:
        kwargs["database_url"] = env_url
    kwargs.setdefault("database_url", f"sqlite:///{home / 'govpki.sqlite3'}")
    if "public_base_url" not in kwargs:
        host = kwargs.get("listen_host", DEFAULT_HOST)
        port = kwargs.get("listen_port", DEFAULT_PORT)
        kwargs["public_base_url"] = f"http://{host}:{port}"
    kwargs["public_base_url"] = kwargs["public_base_url"].rstrip("/")
    return Config(home=home, **kwargs)
