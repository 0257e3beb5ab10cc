"""Schema upgrade from the previous migration heads, with a database full of data, on SQLite and
PostgreSQL.

"Previous heads" are found with alembic's script directory over every package's migration
directory (govpki.migrations.all_version_locations): for each branch head, its down_revision —
or the head itself when the branch has a single revision (nothing older exists to upgrade
from). A database is migrated to exactly those revisions, then filled with rows made by the
services (a demo ceremony, RA officials and requests, issued, revoked and held certificates,
CRLs, OCSP answers, audit events): they run on a database at head and their rows are copied
into the older schema column by column, keeping only the columns that schema has. That keeps
this test valid as migrations are added: a new additive revision needs no change here, and one
that drops or renames what old rows hold fails here first, which is the point.

Then `govpki db upgrade`, and: every row of every table of the old schema is still there, unchanged;
the installation is usable — an RA request made before the upgrade is approved and carried
out, a certificate is issued and revoked, a CRL is published with a higher number, OCSP answers
agree with the store, and the audit chain verifies against its signed checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import Engine, MetaData, func, select, text

from ca.cli import checkpoint
from ca.context import CaContext
from ca.crl import publish_crls
from ca.issuance import CertificateRequest, issue_certificate
from ca.models import Authority, CrlCounter
from ca.revocation import revoke, suspend
from ca.store import chain_der
from core import migrate
from core.audit import verify_chain
from core.config import AuditConfig
from core.db import make_engine, transaction
from govpki.backup import script_directory
from govpki.migrations import all_version_locations
from hsm.file_store import FileKeyStore
from hsm.keystore import KeyRing
from ocsp.responder import OcspResponder
from ra import operators, orgs, requests
from ra.officials import OfficialInput, create_official
from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key
from tests.conftest import TEST_PASSPHRASE, PostgresDatabases, build_pki
from tests.govpki.test_cli import run


def previous_heads() -> list[str]:
    """Each branch's previous revision (its head's down_revision), or the head of a branch
    that has only one revision."""
    script = script_directory(all_version_locations())
    targets: list[str] = []
    for head in script.get_heads():
        down = script.get_revision(head).down_revision
        if down is None:
            targets.append(head)
        elif isinstance(down, str):
            targets.append(down)
        else:  # a merge revision: every parent
            targets.extend(down)
    return sorted(targets)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(migrate.__file__).parent / "migrations"))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(all_version_locations()))
    cfg.attributes["engine"] = engine
    return cfg


def revisions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(r for (r,) in conn.execute(text("SELECT version_num FROM alembic_version")))


def fill_through_services(ctx: CaContext) -> dict[str, Any]:
    """RA and CA activity on a database at head; returns what the checks need."""
    orgs.load_organisations(ctx.sessions, actor="test")
    admin = operators.add_operator(ctx.sessions, None, "up-admin", org_code="630000",
                                   role="ca-admin")
    clerk = operators.add_operator(ctx.sessions, admin, "up-clerk", org_code="630100",
                                   role="ra-operator")
    approver = operators.add_operator(ctx.sessions, admin, "up-approver", org_code="630100",
                                      role="ra-operator")
    official = create_official(ctx.sessions, clerk, OfficialInput(
        "QH-UP-1", "王五", "630100-BGT", "科员", "0971-7654321", "秘书科"))
    done = requests.submit(ctx, clerk, official.identifier, "new-pair",
                           csr=make_csr(new_key("ec-p256")), comment="升级前")
    done = requests.approve(ctx, approver, done.id, "材料齐全")
    done = requests.execute(ctx, approver, done.id)
    pending = requests.submit(ctx, clerk, official.identifier, "new-pair",
                              csr=make_csr(new_key("ec-p256")), comment="升级前待审")
    certs = [issue_certificate(ctx, CertificateRequest(
        ca="officials", profile="official-signing", csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN, requested_by="test")).certificate() for _ in range(3)]
    revoke(ctx, format(certs[1].serial_number, "x"), "keyCompromise", ca="officials",
           actor="test")
    suspend(ctx, format(certs[2].serial_number, "x"), ca="officials", actor="test")
    publish_crls(ctx)
    for cert in certs:
        ocsp_answer(ctx, cert)
    checkpoint(ctx)
    return {"certs": certs, "pending": pending.id, "approver": approver.username,
            "issued": done.issued[0].serial}


def ocsp_answer(ctx: CaContext, cert: x509.Certificate) -> str:
    with transaction(ctx.sessions) as session:
        issuer = x509.load_der_x509_certificate(chain_der(session, "officials")[0])
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(OcspResponder(ctx).respond(
        request.public_bytes(serialization.Encoding.DER)))
    return str(answer.certificate_status.name)


def copy_rows(source: Engine, target: Engine) -> dict[str, int]:
    """Every row of the source, into the tables and columns the (older) target schema has."""
    src, dst = MetaData(), MetaData()
    src.reflect(source)
    dst.reflect(target)
    copied: dict[str, int] = {}
    with source.connect() as read, target.begin() as write:
        for table in reversed(dst.sorted_tables):  # rows the migrations made (audit_head)
            if table.name != "alembic_version":
                write.execute(table.delete())
        for table in dst.sorted_tables:
            if table.name == "alembic_version" or table.name not in src.tables:
                continue
            origin = src.tables[table.name]
            columns = [c.name for c in table.columns if c.name in origin.columns]
            rows = [dict(r) for r in read.execute(
                select(*(origin.c[c] for c in columns))).mappings()]
            if rows:
                write.execute(table.insert(), rows)
            copied[table.name] = len(rows)
        if target.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in dst.sorted_tables:
                if "id" in table.columns and table.c.id.autoincrement is not False:
                    # Names from the reflected schema, not from input.
                    sequence = f"pg_get_serial_sequence('{table.name}', 'id')"
                    sql = (f"SELECT setval({sequence}, coalesce((SELECT max(id) FROM "  # noqa: S608
                           f"{table.name}), 0) + 1, false) WHERE {sequence} IS NOT NULL")
                    write.execute(text(sql))
    return copied


def dump(engine: Engine, tables: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of ``tables`` (name → columns), ordered by every column, as plain tuples."""
    meta = MetaData()
    meta.reflect(engine, only=list(tables))
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name, columns in tables.items():
            table = meta.tables[name]
            cols = [table.c[c] for c in columns]
            out[name] = sorted((tuple(r) for r in conn.execute(select(*cols))), key=repr)
    return out


def schema_of(engine: Engine) -> dict[str, list[str]]:
    meta = MetaData()
    meta.reflect(engine)
    return {name: [c.name for c in table.columns] for name, table in meta.tables.items()
            if name != "alembic_version"}


# ---------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(source URL at head, empty target URL) on one backend."""
    if request.param == "sqlite":
        yield (f"sqlite:///{tmp_path / 'source.sqlite3'}",
               f"sqlite:///{tmp_path / 'previous.sqlite3'}")
    else:
        dbs: PostgresDatabases = request.getfixturevalue("pg_databases")
        yield dbs.create(), dbs.create()


def test_upgrade_from_the_previous_heads_keeps_every_row_usable(
        databases: tuple[str, str], tmp_path: Path) -> None:
    source_url, target_url = databases
    targets = previous_heads()
    heads = sorted(script_directory(all_version_locations()).get_heads())
    assert targets != heads, "no branch has a previous revision to upgrade from"

    # 1. Data made by the services (at head) in a home of its own.
    pki = build_pki(tmp_path / "home", source_url, "file", None)
    try:
        facts = fill_through_services(pki.ctx)
    finally:
        pki.ctx.close()

    # 2. A database at the previous heads, filled with those rows.
    target = make_engine(target_url)
    try:
        for revision in targets:
            command.upgrade(alembic_config(target), revision)
        assert revisions(target) == targets
        old_schema = schema_of(target)
        source = make_engine(source_url)
        try:
            copied = copy_rows(source, target)
        finally:
            source.dispose()
        assert copied["ca_certificate"] > 6 and copied["audit_event"] > 20
        assert copied.get("ra_request", 0) == 2
        before = dump(target, old_schema)

        # 3. Upgrade to head as the operator does: nothing lost, nothing changed.
        run(tmp_path / "operator-home", "db", "upgrade",
            env={"GOVPKI_DATABASE_URL": target_url})
        assert revisions(target) == heads
        assert dump(target, old_schema) == before
    finally:
        target.dispose()

    # 4. Usable: the same keys and checkpoint file over the upgraded database.
    work = tmp_path / "upgraded"
    work.mkdir()
    shutil.copy(pki.home / "audit" / "checkpoints.jsonl", work / "checkpoints.jsonl")
    config = dataclasses.replace(pki.ctx.config, database_url=target_url,
                                 audit=AuditConfig(checkpoint_file=str(work / "checkpoints.jsonl"),
                                                   key_uri=pki.ctx.config.audit.key_uri))
    ctx = CaContext.open(config, keyring=KeyRing([
        FileKeyStore(pki.home / "keys", passphrase=TEST_PASSPHRASE)]))
    try:
        with transaction(ctx.sessions) as session:
            crl_before = session.scalar(select(func.max(CrlCounter.last_number)).join(
                Authority, Authority.id == CrlCounter.authority_id)
                .where(Authority.name == "officials"))
        approver = operators.get_operator(ctx.sessions, facts["approver"])
        carried = requests.approve(ctx, approver, facts["pending"], "升级后批准")
        carried = requests.execute(ctx, approver, carried.id)
        assert carried.state == "issued"
        new = issue_certificate(ctx, CertificateRequest(
            ca="officials", profile="official-signing", csr=make_csr(new_key("ec-p256")),
            subject=OFFICIAL_DN, requested_by="test")).certificate()
        revoke(ctx, format(new.serial_number, "x"), "superseded", ca="officials", actor="test")
        [full, _delta] = publish_crls(ctx, "officials")
        assert crl_before is not None and full.number > crl_before
        assert full.crl().get_revoked_certificate_by_serial_number(new.serial_number)
        assert full.crl().get_revoked_certificate_by_serial_number(
            facts["certs"][1].serial_number)
        assert [ocsp_answer(ctx, c) for c in [*facts["certs"], new]] == [
            "GOOD", "REVOKED", "REVOKED", "REVOKED"]
        checkpoint(ctx)
        with transaction(ctx.sessions) as session:
            report = verify_chain(session, work / "checkpoints.jsonl",
                                  ctx.keyring.get(config.audit.key_uri).public_key())
        assert report.ok, report.first_problem
        assert report.checkpointed_seq == report.last_seq
    finally:
        ctx.close()
