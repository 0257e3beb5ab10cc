"""`govpki backup OUT` and `govpki restore IN`: one archive brings a CA back on an empty machine.

What one archive holds (docs/OPERATIONS.md, Backup and restore):

* a consistent database snapshot — SQLite through the online backup API (a consistent copy even
  while `govpki serve` writes); PostgreSQL through ``pg_dump --format=custom`` run on a snapshot
  exported from a REPEATABLE READ transaction (``pg_export_snapshot``), in which the manifest's
  row counts are taken too, so counts and dump describe the same instant;
* the configuration (``govpki.toml``), the software key store's files exactly as they are
  (encrypted PKCS#8: the archive adds no copy of a key in the clear), the audit checkpoint
  file(s);
* ``ra-secret.key`` *sealed*: it is a raw AES key (it opens the RA operators' TOTP seeds), so it
  travels AES-256-GCM-encrypted under a key derived (scrypt) from the backup passphrase;
* ``manifest.json``: SHA-256 and size of every member, the schema revisions of the snapshot, the
  govpki version, the row count of every table, the PKCS#11 key URIs (those keys stay in the
  HSM: back the token up as docs/OPERATIONS.md says), and what was deliberately left out. The
  manifest carries an HMAC under the same passphrase-derived key, so changing a member *and* its
  hash in the manifest is caught as well as changing a member alone.

No passphrase or PIN is ever written: the backup passphrase is ``GOVPKI_BACKUP_PASSPHRASE`` or,
by default, the software key store's own passphrase (so the archive is exactly as useless
without it as the key files are). The demo's ``secrets/key-passphrase`` file is never archived.

Why pg_dump and not a dump of our own: it is the tool PostgreSQL operators already trust, it is
consistent by MVCC, and the custom format restores with ``pg_restore`` in one transaction. Its
one risk — a pg_dump older than the server refuses to run — is checked up front with a one-line
error naming both versions.

Restore refuses anything but an empty target (home and database), verifies the manifest's HMAC
and every member's hash while reading the archive into a staging directory, opens the sealed
secret and checks that the key passphrase opens every key file, and only then writes: files
first, then the database, then the migrations of this govpki (an archive from an older version
restores into a newer one). Every refusal happens before the target is touched.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import importlib.metadata
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

import click
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import make_url

from core import migrate
from core.config import Config, load_config
from core.db import make_engine
from core.errors import GovpkiError
from ra.sealing import KEY_FILE

FORMAT: Final = "govpki-backup-v1"
MANIFEST: Final = "manifest.json"
MANIFEST_MAC: Final = "manifest.hmac"
BACKUP_PASSPHRASE_ENV: Final = "GOVPKI_BACKUP_PASSPHRASE"  # noqa: S105 (a variable name)
RA_SECRET: Final = KEY_FILE  # the RA's installation secret (ra/sealing.py)
SEALED_RA_SECRET: Final = f"sealed/{KEY_FILE}"
SQLITE_MEMBER: Final = "database/govpki.sqlite3"
PG_MEMBER: Final = "database/govpki.pgdump"
# scrypt at 2^15 × 8: ~32 MiB and a tenth of a second per derivation; one per backup/restore.
_SCRYPT: Final = {"n": 2**15, "r": 8, "p": 1}
_NONCE: Final = 12
# Never archived, whatever the layout: secrets in the clear, run-time state, the live database
# (it is archived as a snapshot instead).
_NEVER: Final = ("secrets", "run")
_NEVER_WHY: Final = {"secrets": "secrets are never archived: keep the key passphrase apart",
                     "run": "run-time state"}
_MEMBER_NAME: Final = re.compile(r"^(home|external|database|sealed)/[A-Za-z0-9._/-]{1,400}$")


class BackupError(GovpkiError):
    """A backup could not be made, or an archive could not be restored (nothing was changed)."""

    kind = "backup"
    http_status = 400


class RestoreRefused(BackupError):
    """The target is not empty: restore only ever fills an empty home and database."""

    kind = "restore-refused"
    http_status = 409


class ArchiveInvalid(BackupError):
    """The archive is not a govpki backup, was altered or damaged, or needs another passphrase."""

    kind = "backup-archive-invalid"


# ---------------------------------------------------------------------------------------------
# Passphrase, sealing, manifest authentication


def _kdf(passphrase: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """(HMAC key for the manifest, AES-256-GCM key for sealed members) from one derivation."""
    material = Scrypt(salt=salt, length=64, **_SCRYPT).derive(passphrase)
    return material[:32], material[32:]


def _key_passphrase(config: Config) -> str | None:
    """The software key store's passphrase, as hsm/file_store.py finds it (env, then file)."""
    ks = config.keystore
    value = os.environ.get(ks.passphrase_env)
    if not value and ks.passphrase_file:
        with contextlib.suppress(OSError):
            value = config.path(ks.passphrase_file).read_text(encoding="utf-8").strip()
    return value or None


def _backup_passphrase(config: Config) -> tuple[bytes, str]:
    """The passphrase the archive is sealed with, and the environment variable that gives it
    back at restore time (recorded in the manifest; the value never is)."""
    value = os.environ.get(BACKUP_PASSPHRASE_ENV)
    if value:
        return value.encode("utf-8"), BACKUP_PASSPHRASE_ENV
    value = _key_passphrase(config)
    if value:
        return value.encode("utf-8"), config.keystore.passphrase_env
    raise BackupError(
        f"no passphrase to seal the archive with: export {BACKUP_PASSPHRASE_ENV} (or the key "
        f"store's {config.keystore.passphrase_env})")


# ---------------------------------------------------------------------------------------------
# The manifest


@dataclass
class Manifest:
    """What an archive holds; serialised as ``manifest.json`` (sorted keys, UTF-8)."""

    created_at: str
    govpki_version: str
    database: dict[str, Any]
    schema_revisions: list[str]
    code_heads: list[str]
    tables: dict[str, int]
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    kdf: dict[str, Any] = field(default_factory=dict)
    # The environment variable whose value sealed the archive (GOVPKI_BACKUP_PASSPHRASE or the
    # key store's passphrase variable); restore reads the same one.
    sealed_with: str = BACKUP_PASSPHRASE_ENV
    pkcs11: dict[str, Any] = field(default_factory=dict)
    not_archived: list[str] = field(default_factory=list)
    format: str = FORMAT

    def to_bytes(self) -> bytes:
        body = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return json.dumps(body, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            body = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ArchiveInvalid("the archive's manifest is not valid JSON") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ArchiveInvalid(f"not a govpki backup archive (format is not {FORMAT})")
        try:
            manifest = cls(**body)
        except TypeError:
            raise ArchiveInvalid("the archive's manifest has unknown or missing fields") from None
        for name, entry in manifest.members.items():
            if (not _MEMBER_NAME.match(name) or ".." in PurePosixPath(name).parts
                    or not isinstance(entry, dict)
                    or not isinstance(entry.get("sha256"), str)
                    or not isinstance(entry.get("size"), int)):
                raise ArchiveInvalid(f"the archive's manifest names a bad member {name!r}")
        return manifest


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: Manifest
    sha256: str


@dataclass(frozen=True)
class RestoreResult:
    home: Path
    manifest: Manifest
    sha256: str
    revisions_after: list[str]
    warnings: list[str]


def govpki_version() -> str:
    try:
        return importlib.metadata.version("govpki")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def script_directory(version_locations: list[str]) -> Any:
    """alembic's view of every package's revisions (no database needed)."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(migrate.__file__).parent / "migrations"))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(version_locations))
    return ScriptDirectory.from_config(cfg)


# ---------------------------------------------------------------------------------------------
# Backup


def _private_file(path: Path) -> IO[bytes]:
    """A new file, 0600 from its first byte, never an existing one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


def _table_facts(conn: Connection) -> tuple[dict[str, int], list[str], list[str]]:
    """(row count per table, alembic revisions, every distinct key URI the tables name)."""
    inspector = inspect(conn)
    counts: dict[str, int] = {}
    uris: set[str] = set()
    for table in sorted(inspector.get_table_names()):
        quoted = conn.dialect.identifier_preparer.quote(table)
        counts[table] = int(conn.execute(text(f"SELECT count(*) FROM {quoted}")).scalar_one())  # noqa: S608
        for column in inspector.get_columns(table):
            name = str(column["name"])
            if name == "key_uri" or name.endswith("_key_uri"):
                col = conn.dialect.identifier_preparer.quote(name)
                uris.update(v for (v,) in conn.execute(
                    text(f"SELECT DISTINCT {col} FROM {quoted}")) if v)  # noqa: S608
    revisions: list[str] = []
    if "alembic_version" in counts:
        revisions = sorted(r for (r,) in conn.execute(text("SELECT version_num FROM "
                                                           "alembic_version")))
    return counts, revisions, sorted(uris)


def _sqlite_path(url: str) -> Path:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        raise BackupError(f"cannot back up the SQLite database {url!r}: not a file")
    return Path(url[len(prefix):])


def _dump_sqlite(config: Config, out: Path) -> tuple[dict[str, Any], dict[str, int], list[str],
                                                      list[str]]:
    """The online backup API: a consistent copy even while another process writes."""
    source_path = _sqlite_path(config.database_url)
    if not source_path.exists():
        raise BackupError(f"the database {source_path} does not exist")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    os.close(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    target = sqlite3.connect(out)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        check = target.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the database snapshot fails SQLite's quick_check: {check}")
    except sqlite3.Error as exc:
        raise BackupError(f"cannot snapshot {source_path}: {exc}") from None
    finally:
        target.close()
        source.close()
    engine = make_engine(f"sqlite:///{out}")
    try:
        with engine.connect() as conn:
            counts, revisions, uris = _table_facts(conn)
    finally:
        engine.dispose()
    return {"kind": "sqlite", "member": SQLITE_MEMBER}, counts, revisions, uris


@dataclass(frozen=True)
class _Libpq:
    """A PostgreSQL URL as the client tools take it: password in the environment, never argv."""

    dsn: str
    env: dict[str, str]

    @classmethod
    def of(cls, url: str) -> _Libpq:
        parsed = make_url(url)
        env = dict(os.environ)
        if parsed.password:
            env["PGPASSWORD"] = str(parsed.password)
        dsn = parsed.set(drivername="postgresql", password=None).render_as_string(
            hide_password=False)
        return cls(dsn, env)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return path


def _tool_major(path: str) -> int:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    if out.returncode != 0 or match is None:
        raise BackupError(f"cannot tell the version of {path}: {out.stdout or out.stderr}")
    return int(match.group(1))


def _first_line(text_: str) -> str:
    lines = [line for line in text_.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _dump_postgres(config: Config, out: Path) -> tuple[dict[str, Any], dict[str, int],
                                                        list[str], list[str]]:
    """pg_dump --format=custom on a snapshot exported from the transaction that counts rows."""
    pg_dump = _tool("pg_dump")
    client_major = _tool_major(pg_dump)
    engine = make_engine(config.database_url, connect_args={"connect_timeout": 10})
    libpq = _Libpq.of(config.database_url)
    try:
        with engine.connect() as conn:
            server_num = int(conn.execute(text("SHOW server_version_num")).scalar_one())
        server_major = server_num // 10000
        if client_major < server_major:
            raise BackupError(
                f"pg_dump {client_major} cannot dump a PostgreSQL {server_major} server: "
                f"install postgresql-client-{server_major}")
        snapshot_options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        with engine.connect().execution_options(**snapshot_options) as conn:
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            counts, revisions, uris = _table_facts(conn)
            os.close(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            result = subprocess.run(
                [pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                 f"--snapshot={snapshot}", f"--file={out}", f"--dbname={libpq.dsn}"],
                env=libpq.env, capture_output=True, text=True, check=False)
            conn.rollback()
    except BackupError:
        raise
    except Exception as exc:
        raise BackupError(f"cannot read the database: {_first_line(str(exc))}") from None
    finally:
        engine.dispose()
    if result.returncode != 0:
        raise BackupError(f"pg_dump failed: {_first_line(result.stderr)}")
    return ({"kind": "postgresql", "member": PG_MEMBER, "format": "pg_dump-custom",
             "pg_dump_major": client_major, "server_major": server_major},
            counts, revisions, uris)


def _within(path: Path, home: Path) -> str | None:
    """``path`` relative to home (POSIX form), or None when it lies outside."""
    try:
        return path.resolve().relative_to(home.resolve()).as_posix()
    except ValueError:
        return None


def _home_files(config: Config) -> tuple[list[tuple[str, Path]], list[str]]:
    """(member name, file) for what the home contributes; what was seen and left out."""
    home = config.home
    picked: dict[str, Path] = {}
    external = 0

    def add(path: Path) -> None:
        nonlocal external
        if not path.is_file() or path.is_symlink():
            return
        relative = _within(path, home)
        if relative is None:
            external += 1
            picked[f"external/{external}/{path.name}"] = path
        else:
            picked[f"home/{relative}"] = path

    add(home / "govpki.toml")
    keys_dir = config.path(config.keystore.directory)
    if keys_dir.is_dir():
        for path in sorted(keys_dir.iterdir()):
            add(path)
    checkpoint = config.path(config.audit.checkpoint_file)
    if checkpoint.parent.is_dir():
        # The configured file and any rotated siblings (an operator may archive by renaming).
        for path in sorted(checkpoint.parent.iterdir()):
            if path.is_file() and (path == checkpoint or path.name.startswith(checkpoint.stem)):
                add(path)
    skipped: list[str] = []
    database = (_sqlite_path(config.database_url)
                if config.database_url.startswith("sqlite:///") else None)
    db_names = {database.name, database.name + "-wal", database.name + "-shm",
                database.name + "-journal"} if database else set()
    archived = {p.resolve() for p in picked.values()}
    if home.is_dir():
        for path in sorted(home.rglob("*")):
            relative = path.relative_to(home).as_posix()
            top = relative.split("/", 1)[0]
            if path.is_dir() or path.resolve() in archived or path.name == RA_SECRET:
                continue
            if top in _NEVER or (path.parent == home and path.name in db_names):
                continue
            skipped.append(relative)
    return sorted(picked.items()), skipped


def _stage_copy(stage: Path, name: str, path: Path) -> Path:
    target = stage / "files" / name
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "rb") as src, _private_file(target) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return target


def _pkcs11_facts(config: Config, uris: list[str]) -> dict[str, Any]:
    keys = sorted({u for u in [*uris, config.audit.key_uri] if u.startswith("pkcs11:")})
    ks = config.keystore
    if not keys and not ks.pkcs11_module:
        return {}
    return {"module": ks.pkcs11_module, "token_label": ks.token_label, "key_uris": keys,
            "note": "PKCS#11 keys stay in the HSM: back the token up as docs/OPERATIONS.md says"}


def create_backup(config: Config, out: Path, version_locations: list[str]) -> BackupResult:
    """Write one archive of ``config``'s installation to ``out`` (refusing to overwrite)."""
    out = out.resolve()
    if out.exists():
        raise BackupError(f"{out} already exists; refusing to overwrite it")
    if not out.parent.is_dir():
        raise BackupError(f"the directory {out.parent} does not exist")
    if _within(out, config.home) is not None:
        raise BackupError("the archive must not be written inside GOVPKI_HOME "
                          "(a backup kept on the machine it protects is no backup)")
    passphrase, sealed_with = _backup_passphrase(config)
    salt = secrets.token_bytes(16)
    mac_key, seal_key = _kdf(passphrase, salt)
    with tempfile.TemporaryDirectory(prefix=".govpki-backup-", dir=out.parent) as tmp:
        stage = Path(tmp)
        os.chmod(stage, 0o700)
        (stage / "database").mkdir(mode=0o700)
        # Order matters. Checkpoint files (and the configuration) are copied *before* the
        # snapshot, so no checkpoint in the archive vouches for an event the snapshot lacks
        # (`govpki audit verify` would call that "rows cut from the end"). Key files are
        # copied *after* it: they are only ever added, never changed, so the copy holds every
        # key a row of the snapshot names, even one a scheduler renewed meanwhile.
        keys_dir = config.path(config.keystore.directory).resolve()

        def is_key(path: Path) -> bool:
            return path.resolve().parent == keys_dir

        early, _ = _home_files(config)
        staged = [(name, _stage_copy(stage, name, path)) for name, path in early
                  if not is_key(path)]
        if config.database_url.startswith("sqlite"):
            database, counts, revisions, uris = _dump_sqlite(config, stage / SQLITE_MEMBER)
            db_member = (SQLITE_MEMBER, stage / SQLITE_MEMBER)
        else:
            database, counts, revisions, uris = _dump_postgres(config, stage / PG_MEMBER)
            db_member = (PG_MEMBER, stage / PG_MEMBER)
        if "ca_authority" not in counts:
            raise BackupError("the database holds no govpki schema: nothing to back up")
        late, skipped = _home_files(config)
        staged += [(name, _stage_copy(stage, name, path)) for name, path in late if is_key(path)]
        members: list[tuple[str, Path]] = [db_member, *sorted(staged)]
        secret = config.home / RA_SECRET
        if secret.is_file():
            sealed = stage / "ra-secret.sealed"
            nonce = secrets.token_bytes(_NONCE)
            with _private_file(sealed) as handle:
                handle.write(nonce + AESGCM(seal_key).encrypt(
                    nonce, secret.read_bytes(), SEALED_RA_SECRET.encode()))
            members.append((SEALED_RA_SECRET, sealed))
        manifest = Manifest(
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            govpki_version=govpki_version(), database=database, schema_revisions=revisions,
            code_heads=sorted(script_directory(version_locations).get_heads()), tables=counts,
            kdf={"name": "scrypt", "salt": base64.b64encode(salt).decode(), **_SCRYPT},
            sealed_with=sealed_with, pkcs11=_pkcs11_facts(config, uris),
            not_archived=[*(f"{n}/ ({_NEVER_WHY[n]})" for n in _NEVER
                            if (config.home / n).exists()), *skipped],
        )
        for name, path in members:
            manifest.members[name] = {"sha256": _sha256_file(path), "size": path.stat().st_size}
        manifest_bytes = manifest.to_bytes()
        mac = hmac.new(mac_key, manifest_bytes, hashlib.sha256).hexdigest().encode()
        partial = stage / "archive.tar.gz"
        now = int(dt.datetime.now(dt.UTC).timestamp())
        with _private_file(partial) as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            # The manifest and its HMAC first: restore checks them before reading anything else.
            for name, data in ((MANIFEST, manifest_bytes), (MANIFEST_MAC, mac)):
                tar.addfile(_tarinfo(name, len(data), now), io.BytesIO(data))
            for name, path in members:
                with open(path, "rb") as handle:
                    tar.addfile(_tarinfo(name, path.stat().st_size, now), handle)
        try:
            os.link(partial, out)  # atomic, and never over a file that appeared meanwhile
        except FileExistsError:
            raise BackupError(f"{out} already exists; refusing to overwrite it") from None
    return BackupResult(out, manifest, _sha256_file(out))


def _tarinfo(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# ---------------------------------------------------------------------------------------------
# Restore


def _target_database_url(home: Path, staged_toml: Path | None) -> str:
    """What the restored installation will use: GOVPKI_DATABASE_URL, else the archived
    configuration's database_url, else the SQLite file in the (new) home."""
    env_url = os.environ.get("GOVPKI_DATABASE_URL")
    if env_url:
        return env_url
    if staged_toml is not None:
        try:
            data = tomllib.loads(staged_toml.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ArchiveInvalid(f"the archived govpki.toml is not valid TOML: {exc}") from None
        url = data.get("database_url")
        if isinstance(url, str) and url:
            return url
    return f"sqlite:///{home / 'govpki.sqlite3'}"


def check_empty_home(home: Path) -> None:
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise RestoreRefused(f"{home} is not empty: restore only fills an empty GOVPKI_HOME "
                             "(nothing was changed)")


def check_empty_database(url: str) -> None:
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path.exists() and path.stat().st_size > 0:
            raise RestoreRefused(f"the database {path} already exists: restore only fills an "
                                 "empty database (nothing was changed)")
        return
    engine = make_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
    except Exception as exc:
        raise BackupError(f"cannot connect to the target database (create it first, empty): "
                          f"{_first_line(str(exc))}") from None
    finally:
        engine.dispose()
    if tables:
        raise RestoreRefused(f"the target database already has {len(tables)} tables "
                             f"({', '.join(sorted(tables)[:3])}, ...): restore only fills an "
                             "empty database (nothing was changed)")


class _Staging:
    """Reads the archive once, in order, into a private directory, checking as it goes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, Path] = {}

    def read(self, archive: Path, passphrase_for: Callable[[Manifest], bytes]
             ) -> tuple[Manifest, bytes]:
        """(manifest, AES key for sealed members); raises ArchiveInvalid on any mismatch."""
        try:
            tar = tarfile.open(archive, mode="r|*")
        except (tarfile.TarError, OSError) as exc:
            raise ArchiveInvalid(f"{archive} is not a govpki backup archive: {exc}") from None
        with tar:
            try:
                return self._read(tar, passphrase_for)
            except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
                if isinstance(exc, GovpkiError):
                    raise
                raise ArchiveInvalid(f"{archive} is damaged: {exc}") from None

    def _read(self, tar: tarfile.TarFile, passphrase_for: Callable[[Manifest], bytes]
              ) -> tuple[Manifest, bytes]:
        head: list[bytes] = []
        for expected in (MANIFEST, MANIFEST_MAC):
            info = tar.next()
            if info is None or info.name != expected or not info.isfile():
                raise ArchiveInvalid(f"not a govpki backup archive (no {expected} at its start)")
            handle = tar.extractfile(info)
            assert handle is not None
            head.append(handle.read(4 << 20))
        manifest = Manifest.from_bytes(head[0])
        kdf = manifest.kdf
        try:
            salt = base64.b64decode(kdf["salt"], validate=True)
            if kdf.get("name") != "scrypt" or {k: kdf[k] for k in _SCRYPT} != _SCRYPT:
                raise ValueError("unknown key derivation")
        except (KeyError, ValueError, TypeError):
            raise ArchiveInvalid("the archive's manifest names an unknown key derivation") \
                from None
        mac_key, seal_key = _kdf(passphrase_for(manifest), salt)
        expected_mac = hmac.new(mac_key, head[0], hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(expected_mac, head[1].strip()):
            raise ArchiveInvalid("the manifest does not authenticate: wrong passphrase "
                                 f"({_passphrase_hint(manifest)}), or the manifest was altered")
        seen: set[str] = set()
        while (info := tar.next()) is not None:  # not `for info in tar`: that re-reads the head
            name = info.name
            entry = manifest.members.get(name)
            if entry is None or name in seen or not info.isfile():
                raise ArchiveInvalid(f"the archive holds {name!r}, which its manifest does "
                                     "not list (altered archive); nothing restored")
            if info.size != entry["size"]:
                raise ArchiveInvalid(f"archive member {name}: size differs from the manifest "
                                     "(the archive was altered or damaged); nothing restored")
            seen.add(name)
            target = self.directory / "m" / name
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            digest = hashlib.sha256()
            source = tar.extractfile(info)
            assert source is not None
            with _private_file(target) as out:
                while block := source.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != entry["sha256"]:
                raise ArchiveInvalid(f"archive member {name}: SHA-256 mismatch (the archive was "
                                     "altered or damaged); nothing restored")
            self.files[name] = target
        missing = sorted(set(manifest.members) - seen)
        if missing:
            raise ArchiveInvalid(f"the archive lacks {missing[0]}, which its manifest lists "
                                 "(truncated archive); nothing restored")
        return manifest, seal_key


def _passphrase_hint(manifest: Manifest) -> str:
    return f"export {manifest.sealed_with} as when the backup was made"


def _restore_passphrase(manifest: Manifest) -> bytes:
    name = manifest.sealed_with
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,63}", name):
        raise ArchiveInvalid("the archive's manifest names a bad passphrase variable")
    value = os.environ.get(name)
    if not value:
        raise ArchiveInvalid(f"the archive is sealed with a passphrase that is not set: "
                             f"{_passphrase_hint(manifest)}")
    return value.encode("utf-8")


def _check_key_files(staging: _Staging, config: Config) -> None:
    """Every archived software key must open with the key passphrase, or nothing is restored:
    a restore that brings back keys nobody can open is a restore that failed."""
    passphrase = os.environ.get(config.keystore.passphrase_env)
    keys_dir = config.path(config.keystore.directory)
    relative = _within(keys_dir, config.home)
    prefix = f"home/{relative}/" if relative is not None else None
    key_members = [n for n in staging.files if prefix and n.startswith(prefix)
                   and n.endswith(".p8.pem")]
    if not key_members:
        return
    if not passphrase:
        raise ArchiveInvalid(f"the archive holds {len(key_members)} software keys: export "
                             f"{config.keystore.passphrase_env} (the key passphrase, kept apart "
                             "from the archive) so the restore can check that it opens them")
    for name in key_members:
        try:
            serialization.load_pem_private_key(staging.files[name].read_bytes(),
                                               passphrase.encode("utf-8"))
        except (ValueError, TypeError):
            raise ArchiveInvalid(f"{config.keystore.passphrase_env} does not open "
                                 f"{name.removeprefix('home/')}: wrong key passphrase; nothing "
                                 "restored") from None


@dataclass
class _Installed:
    """What restore created, so a failure halfway removes it and leaves the target empty."""

    paths: list[Path] = field(default_factory=list)

    def undo(self) -> None:
        for path in reversed(self.paths):
            with contextlib.suppress(OSError):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()


def _install(source: Path, target: Path, installed: _Installed) -> None:
    missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)
        installed.paths.append(directory)
    with open(source, "rb") as src, _private_file(target) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    installed.paths.append(target)


def _restore_postgres(dump: Path, url: str) -> None:
    pg_restore = _tool("pg_restore")
    libpq = _Libpq.of(url)
    result = subprocess.run(
        [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
         f"--dbname={libpq.dsn}", str(dump)],
        env=libpq.env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {_first_line(result.stderr)}")


def _drop_all(url: str) -> None:
    """Undo a PostgreSQL restore whose later step failed: the database was empty before.

    Tables, and the functions the dump created with them (the audit log's append-only trigger
    function, migration core_0002): one left behind would make the next restore into this
    database fail in pg_restore ("already exists")."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            quote = conn.dialect.identifier_preparer.quote
            for table in inspect(conn).get_table_names():
                conn.execute(text(f"DROP TABLE IF EXISTS {quote(table)} CASCADE"))
            for name, arguments in conn.execute(text(
                    "SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
                    "JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = current_schema() AND p.prokind = 'f'")).all():
                conn.execute(text(f"DROP FUNCTION IF EXISTS {quote(name)}({arguments}) CASCADE"))
    finally:
        engine.dispose()


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return _table_facts(conn)[0]


def restore_backup(home: Path, archive: Path, version_locations: list[str], *,
                   check_only: bool = False) -> RestoreResult:
    """Fill the empty ``home`` (and its empty database) from ``archive``; then migrate.

    ``check_only``: verify the archive (manifest HMAC, every member's hash, the sealed secret,
    the key passphrase against every key file) and stop, touching nothing — the monthly
    "can we still restore?" test an operator runs without a spare machine."""
    home = home.resolve()
    archive = archive.resolve()
    if not check_only:
        check_empty_home(home)
    warnings: list[str] = []
    staging_parent = home.parent if home.parent.is_dir() else None
    with tempfile.TemporaryDirectory(prefix=".govpki-restore-", dir=staging_parent) as tmp:
        stage = Path(tmp)
        os.chmod(stage, 0o700)
        staging = _Staging(stage)
        manifest, seal_key = staging.read(archive, _restore_passphrase)
        toml = staging.files.get("home/govpki.toml")
        config_home = stage / "config-check"
        config_home.mkdir(mode=0o700)
        if toml is not None:
            shutil.copyfile(toml, config_home / "govpki.toml")
        config = load_config(config_home)  # validates the archived configuration
        url = _target_database_url(home, toml)
        kind = "sqlite" if url.startswith("sqlite") else "postgresql"
        if check_only:
            kind = str(manifest.database.get("kind"))
        elif manifest.database.get("kind") != kind:
            raise RestoreRefused(f"the archive holds a {manifest.database.get('kind')} database "
                                 f"but the target is {kind}: restore into the same kind "
                                 "(set GOVPKI_DATABASE_URL)")
        if not check_only:
            check_empty_database(url)
        known = {r.revision for r in script_directory(version_locations).walk_revisions()}
        unknown = [r for r in manifest.schema_revisions if r not in known]
        if unknown:
            raise RestoreRefused(f"the archive's schema revision {unknown[0]} is unknown to this "
                                 f"govpki {govpki_version()} (govpki {manifest.govpki_version} "
                                 "made the archive): install that version or newer")
        plain_secret: Path | None = None
        if SEALED_RA_SECRET in staging.files:
            sealed = staging.files[SEALED_RA_SECRET].read_bytes()
            try:
                secret = AESGCM(seal_key).decrypt(sealed[:_NONCE], sealed[_NONCE:],
                                                  SEALED_RA_SECRET.encode())
            except (InvalidTag, ValueError):
                raise ArchiveInvalid("the sealed ra-secret.key does not open (altered archive); "
                                     "nothing restored") from None
            plain_secret = stage / "ra-secret.plain"
            with _private_file(plain_secret) as handle:
                handle.write(secret)
        target_config = _retarget(config, home)
        _check_key_files(staging, target_config)
        if check_only:
            return RestoreResult(home, manifest, _sha256_file(archive),
                                 manifest.schema_revisions, warnings)

        # --- from here on the target changes; a failure removes what was written ---------
        installed = _Installed()
        if not home.exists():
            home.mkdir(mode=0o700, parents=True)
            installed.paths.append(home)
        database_written = False
        try:
            for name, path in sorted(staging.files.items()):
                if name.startswith("home/"):
                    _install(path, home / name.removeprefix("home/"), installed)
                elif name.startswith("external/"):
                    warnings.append(f"{name} was outside GOVPKI_HOME; restored into "
                                    f"{home / 'restored-external' / name}: move it to the "
                                    "path the configuration names")
                    _install(path, home / "restored-external" / name, installed)
            if plain_secret is not None:
                _install(plain_secret, home / RA_SECRET, installed)
            dump = staging.files[manifest.database["member"]]
            if kind == "sqlite":
                _install(dump, _sqlite_path(url), installed)
            else:
                database_written = True
                _restore_postgres(dump, url)
            engine = make_engine(url)
            try:
                restored = _counts(engine)
                for table, count in manifest.tables.items():
                    if restored.get(table) != count:
                        raise BackupError(f"table {table}: {restored.get(table)} rows restored, "
                                          f"the manifest says {count}")
                migrate.upgrade(engine, version_locations)
                with engine.connect() as conn:
                    after = sorted(r for (r,) in conn.execute(
                        text("SELECT version_num FROM alembic_version")))
            finally:
                engine.dispose()
        except BaseException:
            installed.undo()
            if database_written:
                with contextlib.suppress(Exception):
                    _drop_all(url)
            raise
    _restore_passphrase_file(target_config, warnings)
    return RestoreResult(home, manifest, _sha256_file(archive), after, warnings)


def _retarget(config: Config, home: Path) -> Config:
    import dataclasses

    return dataclasses.replace(config, home=home)


def _restore_passphrase_file(config: Config, warnings: list[str]) -> None:
    """The demo keeps its key passphrase in a file the archive never carries: write it back
    from the passphrase the operator exported, so the restored home works as the old one did."""
    ks = config.keystore
    if not ks.passphrase_file:
        return
    path = config.path(ks.passphrase_file)
    if path.exists():
        return
    value = os.environ.get(ks.passphrase_env)
    if not value:
        warnings.append(f"{path} is not in the archive (secrets never are): create it (0600) "
                        f"or export {ks.passphrase_env} before starting govpki")
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _private_file(path) as handle:
        handle.write(value.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Audit and the CLI


def _audit(config: Config, action: str, details: dict[str, Any]) -> None:
    """Taking or restoring a backup is on the audit record (the archive holds the CA's keys,
    encrypted); the event is checkpointed when the audit key can be opened here."""
    from ca.cli import checkpoint
    from ca.context import CaContext, default_actor
    from core.audit import record_event
    from core.db import make_sessionmaker, transaction

    engine = make_engine(config.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            record_event(session, actor=default_actor(), action=action, object_type="backup",
                         object_id=details["archive_sha256"], outcome="success",
                         details=details)
    finally:
        engine.dispose()
    try:
        ctx = CaContext.open(config)
    except GovpkiError as exc:
        click.echo(f"warning: the audit event is not checkpointed yet ({exc.message})", err=True)
        return
    try:
        checkpoint(ctx)
    except GovpkiError as exc:
        click.echo(f"warning: the audit event is not checkpointed yet ({exc.message})", err=True)
    finally:
        ctx.close()


@click.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def backup_cmd(out: Path) -> None:
    """Write one archive (0600): database snapshot, configuration, encrypted keys, audit
    checkpoints, sealed RA secret, manifest (备份)."""
    from ca.setup import require_initialised
    from govpki.migrations import all_version_locations

    config = load_config()
    require_initialised(config)
    result = create_backup(config, out, all_version_locations())
    _audit(config, "ops.backup", {"archive_sha256": result.sha256,
                                  "members": len(result.manifest.members),
                                  "schema": result.manifest.schema_revisions})
    for item in result.manifest.not_archived:
        click.echo(f"warning: not archived: {item}", err=True)
    for uri in result.manifest.pkcs11.get("key_uris", []):
        click.echo(f"note: {uri} stays in the HSM (back the token up separately)", err=True)
    click.echo(f"backup written: {result.path} ({len(result.manifest.members)} members, "
               f"sha256 {result.sha256})")


@click.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--check", "check_only", is_flag=True,
              help="Only verify the archive (manifest, hashes, passphrases); change nothing.")
def restore_cmd(archive: Path, check_only: bool) -> None:
    """Restore an archive onto an empty GOVPKI_HOME and empty database, then migrate (恢复).

    The passphrase the archive was sealed with (GOVPKI_BACKUP_PASSPHRASE or the key store's,
    e.g. GOVPKI_KEY_PASSPHRASE) must be exported; it is never in the archive."""
    from core.config import home_from_env
    from govpki.migrations import all_version_locations

    home = home_from_env()
    result = restore_backup(home, archive, all_version_locations(), check_only=check_only)
    for line in iter_summary(result.manifest):
        click.echo(f"  {line}", err=True)
    if check_only:
        click.echo(f"archive OK: {archive} (sha256 {result.sha256})")
        return
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    _audit(load_config(home), "ops.restore", {
        "archive_sha256": result.sha256, "made_at": result.manifest.created_at,
        "made_by_version": result.manifest.govpki_version, "version": govpki_version(),
        "schema_before": result.manifest.schema_revisions, "schema_after": result.revisions_after})
    click.echo(f"restored {archive} into {home} (schema {' '.join(result.revisions_after)})")


# ---------------------------------------------------------------------------------------------
# Listing


def read_manifest(archive: Path) -> Manifest:
    """The manifest of an archive, unauthenticated (for `govpki backup show`)."""
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            info = tar.next()
            if info is None or info.name != MANIFEST:
                raise ArchiveInvalid(f"{archive} is not a govpki backup archive")
            handle = tar.extractfile(info)
            assert handle is not None
            return Manifest.from_bytes(handle.read(4 << 20))
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveInvalid(f"{archive} is not a govpki backup archive: {exc}") from None


def iter_summary(manifest: Manifest) -> Iterator[str]:
    yield f"made {manifest.created_at} by govpki {manifest.govpki_version}"
    yield f"database: {manifest.database.get('kind')}, schema {' '.join(manifest.schema_revisions)}"
    for table in ("ca_certificate", "audit_event", "ra_request"):
        if table in manifest.tables:
            yield f"{table}: {manifest.tables[table]} rows"
    yield f"members: {len(manifest.members)}"
    for uri in manifest.pkcs11.get("key_uris", []):
        yield f"in the HSM (not archived): {uri}"
    for item in manifest.not_archived:
        yield f"not archived: {item}"
