"""Everything the CA needs at run time, opened once per process from the configuration."""

from __future__ import annotations

import getpass
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core import migrate
from core.config import Config, load_config
from core.db import make_engine, make_sessionmaker
from hsm.keystore import KeyRing, open_keyring

MIGRATIONS = str(Path(__file__).parent / "migrations")


def version_locations() -> list[str]:
    """Migration directories of core and ca (packages above add theirs in govpki/)."""
    return [migrate.CORE_VERSIONS, MIGRATIONS]


def default_actor() -> str:
    """Who the audit log names for CLI actions: GOVPKI_ACTOR, else the OS user."""
    actor = os.environ.get("GOVPKI_ACTOR")
    if actor:
        return actor
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


@dataclass
class CaContext:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    keyring: KeyRing
    # (expires at, ca.issuer.Issuer) per CA name: see ca/issuer.py
    issuer_cache: dict[str, tuple[float, Any]] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def open(cls, config: Config | None = None, keyring: KeyRing | None = None) -> CaContext:
        config = config or load_config()
        engine = make_engine(config.database_url)
        return cls(config, engine, make_sessionmaker(engine), keyring or open_keyring(config))

    def close(self) -> None:
        if not self._closed:
            self.engine.dispose()
            self._closed = True
