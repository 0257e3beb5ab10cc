"""Who may log in with a password ([ra] password_login): by default only the bootstrap
administrator — the first account, marked when it is created and by migration ra_0003 on an
existing installation — while every other operator is refused (audited) and sent to
certificate login; "all" and "none"; the mark is unique."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import IntegrityError

from core import migrate
from core.audit import AuditEvent
from core.db import make_engine, transaction
from core.errors import ConfigError
from govpki.migrations import all_version_locations
from ra import credentials, models
from ra.config import RaConfig, ra_config_from
from ra.errors import AuthenticationFailed, PasswordLoginNotAllowed
from tests.ra.conftest import TEST_PASSWORD, ensure_admin, make_login


def _login(pki, config: RaConfig, username: str, password: str, code: str):
    return credentials.PasswordTotpLogin(config).authenticate(
        pki.ctx, {"username": username, "password": password, "totp": code},
        client="127.0.0.1")


def _last_refusal(pki, username: str) -> dict:
    with transaction(pki.ctx.sessions) as session:
        row = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "ra.login", AuditEvent.object_id == username,
            AuditEvent.outcome == "refused").order_by(AuditEvent.seq.desc()).limit(1)).one()
        return json.loads(row.details)


def _bootstrap_credentials(pki) -> tuple[str, str]:
    """(username, otpauth URI) of the bootstrap administrator, with TEST_PASSWORD."""
    from tests.ra.web.conftest import bootstrap_login

    login = bootstrap_login(pki)
    return login.username, login.otpauth


def test_only_the_first_account_is_the_bootstrap_administrator(ra_pki) -> None:
    """On every database of the matrix: the partial unique index holds."""
    admin = ensure_admin(ra_pki)
    other, _, _ = make_login(ra_pki, "630000", "ca-admin")
    assert admin.bootstrap and not other.bootstrap
    with pytest.raises(IntegrityError), transaction(ra_pki.ctx.sessions) as session:
        session.execute(update(models.Operator).where(models.Operator.id == other.id)
                        .values(bootstrap=True))


def test_default_lets_only_the_bootstrap_administrator_in(ra_file_pki) -> None:
    pki = ra_file_pki
    config = RaConfig()
    assert config.password_login == "bootstrap"
    username, uri = _bootstrap_credentials(pki)
    assert _login(pki, config, username, TEST_PASSWORD, credentials.totp_now(uri)).bootstrap

    clerk, password, clerk_uri = make_login(pki, "630100", "ra-operator")
    with pytest.raises(PasswordLoginNotAllowed, match="certificate on your USB key") as info:
        _login(pki, config, clerk.username, password, credentials.totp_now(clerk_uri))
    assert info.value.http_status == 403
    assert _last_refusal(pki, clerk.username)["error"] == "password-login-not-allowed"
    # Wrong credentials say only what they say for anyone: no oracle of who may use passwords.
    with pytest.raises(AuthenticationFailed) as wrong:
        _login(pki, config, clerk.username, "not the password", "000000")
    assert not isinstance(wrong.value, PasswordLoginNotAllowed)
    assert str(wrong.value) == credentials._GENERIC


def test_all_and_none(ra_file_pki) -> None:
    pki = ra_file_pki
    clerk, password, uri = make_login(pki, "630100", "ra-operator")
    everyone = RaConfig(password_login="all")
    assert _login(pki, everyone, clerk.username, password, credentials.totp_now(uri)).id \
        == clerk.id
    username, admin_uri = _bootstrap_credentials(pki)
    with pytest.raises(PasswordLoginNotAllowed):
        _login(pki, RaConfig(password_login="none"), username, TEST_PASSWORD,
               credentials.totp_now(admin_uri))
    assert _last_refusal(pki, username)["error"] == "password-login-not-allowed"


def test_the_setting_is_validated() -> None:
    assert ra_config_from({"ra": {"password_login": "all"}}).password_login == "all"
    with pytest.raises(ConfigError, match=r"ra\.password_login"):
        ra_config_from({"ra": {"password_login": "everyone"}})


def _alembic(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(migrate.__file__).parent / "migrations"))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(all_version_locations()))
    cfg.attributes["engine"] = engine
    return cfg


def test_migration_marks_the_existing_bootstrap_account(tmp_path: Path) -> None:
    """An installation from before ra_0003: its first operator (granted ca-admin by the
    bootstrap) becomes the bootstrap administrator, nobody else."""
    engine = make_engine(f"sqlite:///{tmp_path / 'before.sqlite3'}")
    try:
        migrate.upgrade(engine, all_version_locations())
        command.downgrade(_alembic(engine), "ra_0002")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO ra_organisation (id, code, name, kind, path) "
                              "VALUES (1, '630000', '青海省', 'province', '/630000/')"))
            for ident, name, by in ((1, "first", "bootstrap"), (2, "second", "first"),
                                    (3, "third", "bootstrap")):
                conn.execute(text(
                    "INSERT INTO ra_operator (id, username, display_name, organisation_id, "
                    "active, created_at) VALUES (:id, :name, :name, 1, 1, "
                    "'2025-01-01 00:00:00.000000')"), {"id": ident, "name": name})
                conn.execute(text(
                    "INSERT INTO ra_role_assignment (operator_id, role, status, granted_by, "
                    "created_at) VALUES (:id, 'ca-admin', 'active', :by, "
                    "'2025-01-01 00:00:00.000000')"), {"id": ident, "by": by})
        migrate.upgrade(engine, all_version_locations())
        with engine.connect() as conn:
            marked = conn.execute(text("SELECT username FROM ra_operator WHERE bootstrap "
                                       "ORDER BY id")).scalars().all()
        assert marked == ["first"]
    finally:
        engine.dispose()
