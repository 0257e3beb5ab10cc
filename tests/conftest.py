"""Shared fixtures: the test PKI, built once per session for each storage × key-store pair.

Tests that touch storage or keys take the ``pki`` fixture and run on the full matrix
(SQLite, PostgreSQL) × (file keys, SoftHSM2 keys); everything else runs once. The PKI is made
by the same demo ceremony file `govpki init` uses (STYLE.md lesson 9), so tests exercise the
production path. In CI (CI=true) a missing PostgreSQL or SoftHSM2 fails instead of skipping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ca.ceremony import CeremonyResult, load_ceremony, run_ceremony
from ca.cli import DEMO_CEREMONY
from ca.context import CaContext
from core import migrate
from core.config import AuditConfig, Config, KeyStoreConfig
from core.db import make_engine
from govpki.migrations import all_version_locations
from hsm.file_store import FileKeyStore
from hsm.keystore import KeyRing

PG_ADMIN_URL = os.environ.get("GOVPKI_TEST_PG", "postgresql+psycopg://127.0.0.1:5432/test")
IN_CI = os.environ.get("CI") == "true"
TEST_PIN = "test-user-pin"
TEST_SO_PIN = "test-so-pin"
TEST_PASSPHRASE = b"test-key-passphrase"


def require(available: bool, what: str) -> None:
    """Skip on a developer machine that lacks ``what``; fail in CI, where nothing may skip."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available on this machine")


def postgres_available() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


class PostgresDatabases:
    """Creates uniquely named databases on the shared server and drops only those."""

    def __init__(self) -> None:
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self) -> str:
        name = f"govpki_t_{secrets.token_hex(6)}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PostgresDatabases]:
    require(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    dbs = PostgresDatabases()
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One SoftHSM2 token for the session's CA keys (SOFTHSM2_CONF set before first load)."""
    from tests import softhsm

    require(softhsm.softhsm_available(), "SoftHSM2")
    base = tmp_path_factory.mktemp("softhsm")
    softhsm.init_softhsm(base)
    label = "govpki-ca"
    softhsm.init_token(label, TEST_PIN, TEST_SO_PIN)
    return {"module": softhsm.SOFTHSM_MODULE, "label": label, "pin": TEST_PIN}


@dataclass
class Pki:
    ctx: CaContext
    home: Path
    db: str
    keys: str
    ceremony: CeremonyResult

    @property
    def id(self) -> str:
        return f"{self.db}-{self.keys}"


def build_pki(home: Path, database_url: str, keys: str, token: dict[str, str] | None, *,
              public_base_url: str = "http://127.0.0.1:8600") -> Pki:
    home.mkdir(parents=True, exist_ok=True)
    file_store = FileKeyStore(home / "keys", passphrase=TEST_PASSPHRASE)
    stores: list = [file_store]
    if keys == "softhsm":
        from hsm.pkcs11_store import Pkcs11KeyStore
        from hsm.pkcs11_uri import Pkcs11Uri

        assert token is not None
        # One token per session; a per-PKI label prefix keeps the matrix's keys apart.
        prefix = f"{home.name}-"
        stores.append(Pkcs11KeyStore(token["module"], token["label"], pin=token["pin"]))

        def key_uri(label: str) -> str:
            return Pkcs11Uri(token=token["label"], object=prefix + label).format()

        keystore = KeyStoreConfig(type="pkcs11", pkcs11_module=token["module"],
                                  token_label=token["label"])
    else:
        def key_uri(label: str) -> str:
            return f"file:{label}"

        keystore = KeyStoreConfig()
    config = Config(home=home, database_url=database_url,
                    public_base_url=public_base_url, keystore=keystore,
                    audit=AuditConfig(key_uri=key_uri("audit")))
    engine = make_engine(database_url)
    migrate.upgrade(engine, all_version_locations())  # every package's tables, as `init` does
    engine.dispose()
    ctx = CaContext.open(config, keyring=KeyRing(stores))
    result = run_ceremony(ctx, load_ceremony(DEMO_CEREMONY), key_uri=key_uri, actor="test")
    return Pki(ctx, home, database_url.split(":")[0].split("+")[0], keys, result)


MATRIX = [("sqlite", "file"), ("sqlite", "softhsm"), ("postgres", "file"),
          ("postgres", "softhsm")]


@pytest.fixture(scope="session")
def _pki_cache() -> Iterator[dict[str, Pki]]:
    cache: dict[str, Pki] = {}
    yield cache
    for pki in cache.values():
        pki.ctx.close()


def _get_pki(request: pytest.FixtureRequest, db: str, keys: str) -> Pki:
    cache: dict[str, Pki] = request.getfixturevalue("_pki_cache")
    key = f"{db}-{keys}"
    if key in cache:
        return cache[key]
    token = request.getfixturevalue("softhsm_token") if keys == "softhsm" else None
    home = request.getfixturevalue("tmp_path_factory").mktemp(f"pki-{key}")
    if db == "postgres":
        url = request.getfixturevalue("pg_databases").create()
    else:
        url = f"sqlite:///{home / 'govpki.sqlite3'}"
    cache[key] = build_pki(home, url, keys, token)
    return cache[key]


@pytest.fixture(
    scope="session",
    params=[pytest.param(m, id=f"{m[0]}-{m[1]}",
                         marks=[*([pytest.mark.postgres] if m[0] == "postgres" else []),
                                *([pytest.mark.hsm] if m[1] == "softhsm" else [])])
            for m in MATRIX],
)
def pki(request: pytest.FixtureRequest) -> Pki:
    """The demo hierarchy on one storage × key-store pair, built once per session."""
    return _get_pki(request, *request.param)


@pytest.fixture(scope="session")
def file_pki(request: pytest.FixtureRequest) -> Pki:
    """SQLite + file keys only: for tests about behaviour, not storage (run once)."""
    return _get_pki(request, "sqlite", "file")


@pytest.fixture(scope="session")
def pg_file_pki(request: pytest.FixtureRequest) -> Pki:
    """PostgreSQL + file keys: concurrency across processes."""
    return _get_pki(request, "postgres", "file")


@pytest.fixture(autouse=True)
def _no_kmc_plugged_in() -> Iterator[None]:
    """The key management centre is plugged into the RA process-wide (govpki installs it in
    create_app and the CLI); every test starts without it, so whether issuance escrows an
    encryption pair never depends on test order. Tests of the dual-certificate flow install it
    themselves (govpki.kmc_wiring.install_kmc)."""
    from ra import plugins

    plugins.install(None, None)
    yield
    plugins.install(None, None)
