"""Preparing a GOVPKI_HOME for a ceremony: directories, configuration, schema, key URIs."""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Callable
from pathlib import Path

from ca.context import version_locations
from ca.errors import CeremonyError, NotInitialised
from core import migrate
from core.config import Config, home_from_env, load_config
from core.db import make_engine

DEMO_PASSPHRASE_FILE = "secrets/key-passphrase"  # noqa: S105 (a path)


def _toml_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def add_config_sections(home: Path, sections: dict[str, dict[str, str | int]]) -> None:
    """Append the tables govpki.toml does not have yet (created 0600 if missing).

    Tables the operator already wrote are left exactly as they are: a ceremony never rewrites
    configuration, it only records what it created.
    """
    path = home / "govpki.toml"
    existing: dict[str, object] = {}
    if path.exists():
        try:
            existing = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise CeremonyError(f"{path}: not valid TOML: {exc}") from None
    lines = [] if existing or path.exists() else [
        "# govpki configuration, written by the key ceremony; see docs/configuration.md"]
    for name, values in sections.items():
        if name in existing:
            continue
        lines += ["", f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in values.items())]
    if not lines:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def pkcs11_key_uri(token_label: str) -> Callable[[str], str]:
    from hsm.pkcs11_uri import Pkcs11Uri

    return lambda label: Pkcs11Uri(token=token_label, object=label).format()


def prepare_home(pkcs11_module: str | None, token_label: str | None, pin_env: str,
                 audit_label: str | None, demo: bool = False,
                 locations: list[str] | None = None,
                 ) -> tuple[Config, Callable[[str], str]]:
    """Config and key-URI scheme for a ceremony on this home; schema brought up to date."""
    home = home_from_env()
    home.mkdir(parents=True, exist_ok=True)
    config_path = home / "govpki.toml"
    sections: dict[str, dict[str, str | int]] = {}
    key_uri: Callable[[str], str]
    if pkcs11_module:
        if not token_label:
            raise CeremonyError("--token-label is required with --pkcs11-module")
        sections["keystore"] = {"type": "pkcs11", "pkcs11_module": pkcs11_module,
                                "token_label": token_label, "pin_env": pin_env}
        key_uri = pkcs11_key_uri(token_label)
    else:
        if token_label:
            raise CeremonyError("--token-label needs --pkcs11-module")
        key_uri = lambda label: f"file:{label}"  # noqa: E731
        if demo and not os.environ.get("GOVPKI_KEY_PASSPHRASE"):
            _write_demo_passphrase(home)
            sections["keystore"] = {"type": "file", "passphrase_file": DEMO_PASSPHRASE_FILE}
    if demo:
        # A demo machine may run no time daemon, so it cannot prove its clock: the demo TSA
        # answers without the check (production default: the kernel's NTP state).
        sections["tsa"] = {"clock_source": "none"}
    if audit_label:
        sections["audit"] = {"key_uri": key_uri(audit_label)}
    if config_path.exists() and pkcs11_module:
        existing = load_config(home)
        if existing.keystore.pkcs11_module not in ("", pkcs11_module):
            raise CeremonyError(
                f"{config_path} names another key store; edit it or use an empty GOVPKI_HOME"
            )
    add_config_sections(home, sections)
    config = load_config(home)
    engine = make_engine(config.database_url)
    try:
        migrate.upgrade(engine, locations or version_locations())
    finally:
        engine.dispose()
    return config, key_uri


def _write_demo_passphrase(home: Path) -> None:
    """The embedded demo keeps its key passphrase in a 0600 file; production uses the env/HSM."""
    path = home / DEMO_PASSPHRASE_FILE
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_urlsafe(32))


def is_initialised(config: Config | None = None) -> bool:
    """True when GOVPKI_HOME's database holds at least one CA."""
    from sqlalchemy import inspect, select

    from ca.models import Authority

    config = config or load_config()
    if config.database_url.startswith("sqlite:///"):
        path = Path(config.database_url[len("sqlite:///"):])
        if not path.exists():
            return False
    engine = make_engine(config.database_url)
    try:
        if not inspect(engine).has_table("ca_authority"):
            return False
        with engine.connect() as conn:
            return conn.execute(select(Authority.id).limit(1)).first() is not None
    finally:
        engine.dispose()


def require_initialised(config: Config) -> None:
    """A clear error instead of a database error when a command runs on an empty home."""
    if not is_initialised(config):
        raise NotInitialised(
            f"{config.home} holds no CA yet: run `govpki init` (demo) or `govpki ca ceremony FILE`"
        )
