"""`govpki backup` / `govpki restore` as an operator runs them, on SQLite and PostgreSQL:
issue and revoke, back up, destroy the home and the database, restore onto an empty machine,
and find every certificate, revocation, audit event, CRL number and OCSP answer as it was.
A tampered archive and a non-empty target are refused in one line, changing nothing."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import create_engine, func, select, text

from ca.context import CaContext
from ca.crl import publish_crls
from ca.issuance import CertificateRequest, issue_certificate
from ca.models import Authority, Certificate, CrlCounter
from ca.revocation import revoke, suspend
from ca.store import chain_der
from core.audit import AuditEvent
from core.config import load_config
from core.db import transaction
from govpki.backup import (
    ArchiveInvalid,
    BackupError,
    RestoreRefused,
    create_backup,
    restore_backup,
)
from govpki.migrations import all_version_locations
from ocsp.responder import OcspResponder
from ra import credentials, operators, requests
from ra.officials import OfficialInput, create_official
from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key
from tests.conftest import PG_ADMIN_URL, PostgresDatabases
from tests.govpki.test_cli import assert_one_line_error, run

PASSWORD = "correct horse battery staple"


def open_context(home: Path, database_url: str | None) -> CaContext:
    """The installation in ``home`` in this process (keys opened with its passphrase file)."""
    config = load_config(home)
    if database_url:
        config = dataclasses.replace(config, database_url=database_url)
    return CaContext.open(config)


def ocsp_status(ctx: CaContext, cert: x509.Certificate, ca: str = "officials"
                ) -> tuple[str, Any, Any]:
    """(status, revocation time, reason) as the in-process responder answers for ``cert``."""
    with transaction(ctx.sessions) as session:
        issuer = x509.load_der_x509_certificate(chain_der(session, ca)[0])
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(
        OcspResponder(ctx).respond(request.public_bytes(serialization.Encoding.DER)))
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return (answer.certificate_status.name, answer.revocation_time_utc,
            answer.revocation_reason)


@dataclass
class Installation:
    """A home made by `govpki init`, filled with RA and CA activity through the services."""

    home: Path
    database_url: str | None  # None: SQLite in the home
    passphrase: str
    certificates: list[x509.Certificate]
    totp_uri: str
    operator: str

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(extra)
        if self.database_url:
            env["GOVPKI_DATABASE_URL"] = self.database_url
        return env


def fill(home: Path, database_url: str | None) -> Installation:
    """init (CLI), then an RA operator with password and TOTP (creates ra-secret.key), an
    official with a pending request, three certificates: one good, one revoked, one held."""
    run(home, "init", env={"GOVPKI_DATABASE_URL": database_url} if database_url else None)
    ctx = open_context(home, database_url)
    try:
        admin = operators.add_operator(ctx.sessions, None, "root-admin", org_code="630000",
                                       role="ca-admin")
        clerk = operators.add_operator(ctx.sessions, admin, "clerk-1", org_code="630100",
                                       role="ra-operator")
        credentials.set_password(ctx, None, clerk.username, PASSWORD)
        uri = credentials.enroll_totp(ctx, None, clerk.username)
        official = create_official(ctx.sessions, clerk, OfficialInput(
            "QH-BACKUP-1", "张三", "630100-BGT", "科员", "0971-1234567", "秘书科"))
        requests.submit(ctx, clerk, official.identifier, "new-pair",
                        csr=make_csr(new_key("ec-p256")), comment="新入职")
        certs = [issue_certificate(ctx, CertificateRequest(
            ca="officials", profile="official-signing", csr=make_csr(new_key("ec-p256")),
            subject=OFFICIAL_DN, requested_by="test")).certificate() for _ in range(3)]
        revoke(ctx, format(certs[1].serial_number, "x"), "keyCompromise", ca="officials",
               actor="test")
        suspend(ctx, format(certs[2].serial_number, "x"), ca="officials", actor="test")
        for cert in certs:
            ocsp_status(ctx, cert)  # pre-signed answers are stored: they must travel too
        publish_crls(ctx, "officials")
    finally:
        ctx.close()
    passphrase = (home / "secrets" / "key-passphrase").read_text().strip()
    return Installation(home, database_url, passphrase, certs, uri, clerk.username)


def snapshot(ctx: CaContext, certs: list[x509.Certificate]) -> dict[str, Any]:
    """What must survive: certificate rows, audit events, CRL numbers, OCSP answers."""
    with transaction(ctx.sessions) as session:
        rows = session.execute(select(
            Certificate.serial, Certificate.authority_id, Certificate.state, Certificate.status,
            Certificate.revoked_at, Certificate.revocation_reason, Certificate.certificate_der,
            Certificate.tbs_der).order_by(Certificate.id)).all()
        events = session.execute(select(AuditEvent.seq, AuditEvent.hash)
                                 .order_by(AuditEvent.seq)).all()
        crl = dict(session.execute(select(Authority.name, CrlCounter.last_number)
                                   .join(CrlCounter, CrlCounter.authority_id == Authority.id))
                   .all())
    return {"certificates": [tuple(r) for r in rows], "events": [tuple(e) for e in events],
            "crl": crl, "ocsp": [ocsp_status(ctx, c) for c in certs]}


def archive_members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def rewrite_archive(archive: Path, out: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def restore_and_check(before: dict[str, Any], inst: Installation, archive: Path,
                      target: Path, target_url: str | None) -> None:
    env = {"GOVPKI_KEY_PASSPHRASE": inst.passphrase}
    if target_url:
        env["GOVPKI_DATABASE_URL"] = target_url
    restored = run(target, "restore", str(archive), env=env)
    assert "restored" in restored.stdout
    db_env = {"GOVPKI_DATABASE_URL": target_url} if target_url else None
    verify = run(target, "audit", "verify", env=db_env)
    assert "audit log OK" in verify.stdout, verify.stdout
    # The demo's passphrase file is never archived; restore wrote it back from the variable.
    assert (target / "secrets" / "key-passphrase").read_text() == inst.passphrase
    assert (target / "ra-secret.key").stat().st_mode & 0o077 == 0

    ctx = open_context(target, target_url)
    try:
        after = snapshot(ctx, inst.certificates)
        assert after["certificates"] == before["certificates"]
        assert after["ocsp"] == before["ocsp"]
        assert [o[0] for o in after["ocsp"]] == ["GOOD", "REVOKED", "REVOKED"]
        # every event is there, unchanged; the restore itself is the next one
        assert after["events"][:len(before["events"])] == before["events"]
        with transaction(ctx.sessions) as session:
            actions = session.scalars(select(AuditEvent.action)
                                      .where(AuditEvent.seq > len(before["events"]))).all()
            pending = session.scalar(text("SELECT count(*) FROM ra_request "
                                          "WHERE state = 'submitted'"))
        assert actions == ["ops.restore"] and pending == 1
        # ra-secret.key travelled: the operator's sealed TOTP seed still opens
        from ra.config import RaConfig

        # (password_login "all": clerk-1 is no bootstrap administrator; this checks the seed)
        login = credentials.PasswordTotpLogin(RaConfig(password_login="all")).authenticate(
            ctx, {"username": inst.operator, "password": PASSWORD,
                  "totp": credentials.totp_now(inst.totp_uri)}, client="test")
        assert login.username == inst.operator
    finally:
        ctx.close()
    published = run(target, "crl", "publish", "--ca", "officials", env=db_env)
    assert published.returncode == 0
    ctx = open_context(target, target_url)
    try:
        with transaction(ctx.sessions) as session:
            number = session.scalar(select(CrlCounter.last_number).join(
                Authority, Authority.id == CrlCounter.authority_id)
                .where(Authority.name == "officials"))
        assert number is not None and number > before["crl"]["officials"]
    finally:
        ctx.close()


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_backup(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Installation, dict[str, Any], Path]]:
    base = tmp_path_factory.mktemp("backup-sqlite")
    inst = fill(base / "home", None)
    ctx = open_context(inst.home, None)
    before = snapshot(ctx, inst.certificates)
    ctx.close()
    archive = base / "govpki-backup.tar.gz"
    out = run(inst.home, "backup", str(archive))
    assert "backup written" in out.stdout
    yield inst, before, archive


def test_backup_archive_is_private_and_complete(sqlite_backup) -> None:  # type: ignore[no-untyped-def]
    inst, before, archive = sqlite_backup
    assert archive.stat().st_mode & 0o777 == 0o600
    members = archive_members(archive)
    manifest = json.loads(members["manifest.json"])
    assert list(members)[:2] == ["manifest.json", "manifest.hmac"]
    names = set(members) - {"manifest.json", "manifest.hmac"}
    assert names == set(manifest["members"])
    assert {"database/govpki.sqlite3", "home/govpki.toml", "home/audit/checkpoints.jsonl",
            "home/keys/officials-ca-1.p8.pem", "sealed/ra-secret.key"} <= names
    assert manifest["tables"]["ca_certificate"] == len(before["certificates"])
    assert manifest["tables"]["audit_event"] == len(before["events"])
    assert sorted(manifest["schema_revisions"]) == sorted(manifest["code_heads"])
    assert manifest["govpki_version"] and manifest["sealed_with"] == "GOVPKI_KEY_PASSPHRASE"
    # no secret in the clear: not the passphrase, not the RA secret, no unencrypted key
    blob = b"".join(members.values())
    assert inst.passphrase.encode() not in blob
    assert (inst.home / "ra-secret.key").read_bytes() not in blob
    assert b"BEGIN PRIVATE KEY" not in blob and b"BEGIN EC PRIVATE KEY" not in blob
    assert not any(n.startswith("home/secrets") for n in names)
    # `govpki backup` itself is on the audit record of the installation it copied
    ctx = open_context(inst.home, None)
    with transaction(ctx.sessions) as session:
        last = session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq.desc())).first()
    ctx.close()
    assert last == "ops.backup"


def test_restore_sqlite_onto_an_empty_machine(sqlite_backup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inst, before, archive = sqlite_backup
    check = run(tmp_path / "nowhere", "restore", "--check", str(archive),
                env={"GOVPKI_KEY_PASSPHRASE": inst.passphrase})
    assert "archive OK" in check.stdout and not (tmp_path / "nowhere").exists()
    # destroy the original (a copy of the home stays for the other tests of this module)
    saved = tmp_path / "saved"
    shutil.copytree(inst.home, saved)
    shutil.rmtree(inst.home)
    try:
        restore_and_check(before, inst, archive, tmp_path / "new-home", None)
    finally:
        shutil.copytree(saved, inst.home)


def test_tampered_archive_is_refused_and_nothing_restored(sqlite_backup, tmp_path: Path
                                                          ) -> None:  # type: ignore[no-untyped-def]
    inst, _, archive = sqlite_backup
    env = {"GOVPKI_KEY_PASSPHRASE": inst.passphrase}
    members = archive_members(archive)
    target = tmp_path / "target"
    # one byte of the database changed, the manifest left as it was: hash mismatch
    altered = dict(members)
    db = bytearray(altered["database/govpki.sqlite3"])
    db[len(db) // 2] ^= 0x01
    altered["database/govpki.sqlite3"] = bytes(db)
    bad = tmp_path / "altered.tar.gz"
    rewrite_archive(archive, bad, altered)
    result = run(target, "restore", str(bad), env=env, check=False)
    assert_one_line_error(result, "database/govpki.sqlite3: SHA-256 mismatch")
    assert not target.exists()
    # the member *and* its hash in the manifest changed: the manifest's HMAC fails
    manifest = json.loads(members["manifest.json"])
    manifest["members"]["database/govpki.sqlite3"]["sha256"] = "0" * 64
    forged = dict(altered, **{"manifest.json": json.dumps(manifest).encode()})
    rewrite_archive(archive, bad, forged)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOVPKI_KEY_PASSPHRASE", inst.passphrase)
        with pytest.raises(ArchiveInvalid, match="manifest does not authenticate"):
            restore_backup(target, bad, all_version_locations())
        assert not target.exists()
        # a member the manifest does not list
        rewrite_archive(archive, bad, dict(members, **{"home/extra.txt": b"x"}))
        with pytest.raises(ArchiveInvalid, match="does not list"):
            restore_backup(target, bad, all_version_locations())
        # the wrong passphrase
        mp.setenv("GOVPKI_KEY_PASSPHRASE", "wrong")
        with pytest.raises(ArchiveInvalid, match="wrong passphrase"):
            restore_backup(target, archive, all_version_locations())
    assert not target.exists()


def test_restore_refuses_a_non_empty_home(sqlite_backup) -> None:  # type: ignore[no-untyped-def]
    inst, _, archive = sqlite_backup
    listing = sorted(p.relative_to(inst.home) for p in inst.home.rglob("*"))
    db_bytes = (inst.home / "govpki.sqlite3").read_bytes()
    result = run(inst.home, "restore", str(archive),
                 env={"GOVPKI_KEY_PASSPHRASE": inst.passphrase}, check=False)
    assert_one_line_error(result, "is not empty")
    assert sorted(p.relative_to(inst.home) for p in inst.home.rglob("*")) == listing
    assert (inst.home / "govpki.sqlite3").read_bytes() == db_bytes
    # and a backup never overwrites an archive
    with pytest.raises(BackupError, match="already exists"):
        create_backup(load_config(inst.home), archive, all_version_locations())


@pytest.mark.postgres
def test_backup_and_restore_on_postgresql(pg_databases: PostgresDatabases,
                                          tmp_path: Path) -> None:
    source_url = pg_databases.create()
    inst = fill(tmp_path / "home", source_url)
    ctx = open_context(inst.home, source_url)
    before = snapshot(ctx, inst.certificates)
    ctx.close()
    archive = tmp_path / "pg-backup.tar.gz"
    run(inst.home, "backup", str(archive), env=inst.env())
    manifest = json.loads(archive_members(archive)["manifest.json"])
    assert manifest["database"]["kind"] == "postgresql"
    assert manifest["database"]["member"] == "database/govpki.pgdump"

    # destroy: the home and the database
    shutil.rmtree(inst.home)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{source_url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()

    target_url = pg_databases.create()  # a fresh, empty database on the new machine
    restore_and_check(before, inst, archive, tmp_path / "new-home", target_url)

    # restoring again into the now non-empty database is refused, changing nothing
    engine = create_engine(target_url)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(AuditEvent)).scalar()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOVPKI_KEY_PASSPHRASE", inst.passphrase)
        mp.setenv("GOVPKI_DATABASE_URL", target_url)
        with pytest.raises(RestoreRefused, match="target database already has"):
            restore_backup(tmp_path / "third-home", archive, all_version_locations())
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AuditEvent)).scalar() == count
    engine.dispose()
    assert not (tmp_path / "third-home").exists()


@pytest.mark.hsm
@pytest.mark.postgres
def test_undoing_a_failed_postgresql_restore_leaves_nothing_behind(
        pg_databases: PostgresDatabases) -> None:
    """A restore that fails after pg_restore drops what it made, functions included (the
    audit guard's trigger function), so the next restore into the same database can run."""
    from core import migrate
    from core.db import make_engine
    from govpki.backup import _drop_all

    url = pg_databases.create()
    engine = make_engine(url)
    try:
        migrate.upgrade(engine, all_version_locations())  # what pg_restore would have made
        _drop_all(url)
        with engine.connect() as conn:
            left = conn.execute(text(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema()")).scalar_one()
            functions = conn.execute(text(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = current_schema()")).scalar_one()
        assert (left, functions) == (0, 0)
        migrate.upgrade(engine, all_version_locations())  # creates it all again: no clash
    finally:
        engine.dispose()


def test_pkcs11_keys_stay_in_the_hsm_and_are_listed(request: pytest.FixtureRequest,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With keys on a token the archive carries no key at all, names every token key in the
    manifest, and is sealed with GOVPKI_BACKUP_PASSPHRASE (there is no file-key passphrase)."""
    from tests.conftest import _get_pki

    pki = _get_pki(request, "sqlite", "softhsm")
    archive = tmp_path / "hsm-backup.tar.gz"
    monkeypatch.delenv("GOVPKI_KEY_PASSPHRASE", raising=False)
    with pytest.raises(BackupError, match="GOVPKI_BACKUP_PASSPHRASE"):
        create_backup(pki.ctx.config, archive, all_version_locations())
    monkeypatch.setenv("GOVPKI_BACKUP_PASSPHRASE", "a long backup passphrase")
    result = create_backup(pki.ctx.config, archive, all_version_locations())
    manifest = result.manifest
    assert manifest.sealed_with == "GOVPKI_BACKUP_PASSPHRASE"
    uris = manifest.pkcs11["key_uris"]
    assert pki.ctx.config.audit.key_uri in uris
    assert all(u.startswith("pkcs11:") for u in uris) and len(uris) >= 6
    assert manifest.pkcs11["token_label"] == pki.ctx.config.keystore.token_label
    assert not any(name.endswith(".p8.pem") for name in manifest.members)
    checked = restore_backup(tmp_path / "unused-home", archive, all_version_locations(),
                             check_only=True)
    assert checked.sha256 == result.sha256 and not (tmp_path / "unused-home").exists()


_TOKEN_SCRIPT = """
import sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hsm.pkcs11_store import Pkcs11KeyStore

module, action = sys.argv[1], sys.argv[2]
with Pkcs11KeyStore(module, "ca-token", pin_env="TOKEN_PIN") as store:
    uri = "pkcs11:token=ca-token;object=issuing-ca"
    signer = store.generate(uri, "ec-p256") if action == "generate" else store.get(uri)
    signature = signer.sign(b"to be signed", hashes.SHA256())
    signer.public_key().verify(signature, b"to be signed", ec.ECDSA(hashes.SHA256()))
    sys.stdout.write(signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
"""


@pytest.mark.hsm
def test_softhsm_token_backup_procedure(tmp_path: Path) -> None:
    """docs/OPERATIONS.md's SoftHSM2 token backup, step by step: with no process using the
    token, archive its directory; after losing it, unpack the archive: the same key signs."""
    import os
    import subprocess
    import sys

    from tests import softhsm
    from tests.conftest import require

    require(softhsm.softhsm_available(), "SoftHSM2")
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf), TOKEN_PIN="1234")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "ca-token",
                    "--pin", "1234", "--so-pin", "5678"], env=env, check=True,
                   capture_output=True)

    def key(action: str) -> str:
        done = subprocess.run([sys.executable, "-c", _TOKEN_SCRIPT, softhsm.SOFTHSM_MODULE,
                               action], env=env, cwd=Path(__file__).resolve().parents[2],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    public = key("generate")
    backup = tmp_path / "token-backup.tar.gz"
    subprocess.run(["tar", "-C", str(tmp_path), "-czf", str(backup), "tokens"], check=True)
    shutil.rmtree(tmp_path / "tokens")  # the token is lost
    subprocess.run(["tar", "-C", str(tmp_path), "-xzf", str(backup)], check=True)
    assert key("get") == public
