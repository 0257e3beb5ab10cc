"""Password + TOTP login, lockout, and server-side web sessions, on a real database.

The factor, replay and lockout tests use operators made for the purpose with ``[ra]
password_login = "all"``: they are about the password machinery, which works the same for
any account. Who may use it at all (the bootstrap administrator only, by default) is
test_authn_bootstrap.py."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select, update

from core.audit import AuditEvent
from core.db import transaction
from ra import authn, credentials, models, operators
from ra.config import RaConfig
from ra.errors import AccountLocked, AuthenticationFailed, Forbidden, ValidationError
from tests.ra.conftest import TEST_PASSWORD, ensure_admin, make_login, make_operator

CONFIG = RaConfig(lockout_threshold=3, lockout_minutes=15, password_login="all")


def _login(pki, username: str, password: str, code: str):
    method = authn.login_methods(CONFIG)["password-totp"]
    return method.authenticate(pki.ctx, {"username": username, "password": password,
                                         "totp": code}, client="127.0.0.1")


def _refusals(pki, username: str) -> list[AuditEvent]:
    with transaction(pki.ctx.sessions) as session:
        return list(session.scalars(select(AuditEvent).where(
            AuditEvent.action == "ra.login", AuditEvent.actor == username,
            AuditEvent.outcome == "refused")))


def test_password_and_totp_log_in_and_a_code_is_never_accepted_twice(ra_file_pki) -> None:
    pki = ra_file_pki
    operator, password, uri = make_login(pki, "630100", "ra-operator")
    code = credentials.totp_now(uri)
    assert _login(pki, operator.username, password, code).id == operator.id
    with pytest.raises(AuthenticationFailed, match="user name, password or one-time code"):
        _login(pki, operator.username, password, code)  # replay (RFC 6238 §5.2)
    next_code = credentials.totp_now(uri, time.time() + 30)
    assert _login(pki, operator.username, password, next_code).id == operator.id


@pytest.mark.parametrize("what", ["password", "totp", "user"])
def test_one_wrong_factor_fails_with_the_same_message(ra_file_pki, what: str) -> None:
    pki = ra_file_pki
    operator, password, uri = make_login(pki, "630100", "ra-operator")
    username, code = operator.username, credentials.totp_now(uri)
    if what == "password":
        password = "wrong " + password
    elif what == "totp":
        code = f"{(int(code) + 1) % 1_000_000:06d}"
    else:
        username = "nobody-" + username
    with pytest.raises(AuthenticationFailed) as info:
        _login(pki, username, password, code)
    assert str(info.value) == credentials._GENERIC
    assert password not in str(info.value) and code not in str(info.value)
    assert len(_refusals(pki, username)) == 1


def test_lockout_after_repeated_failures_and_reset_unlocks(ra_file_pki) -> None:
    pki = ra_file_pki
    operator, password, uri = make_login(pki, "630100", "ra-operator")
    for _ in range(CONFIG.lockout_threshold - 1):
        with pytest.raises(AuthenticationFailed):
            _login(pki, operator.username, "not the password!", "000000")
    with pytest.raises(AccountLocked, match="now locked"):
        _login(pki, operator.username, "not the password!", "000000")
    # Locked: even the right credentials are not checked.
    with pytest.raises(AccountLocked, match="locked after repeated failed logins"):
        _login(pki, operator.username, password, credentials.totp_now(uri))
    with pytest.raises(Forbidden, match="already has"):
        credentials.set_password(pki.ctx, None, operator.username, TEST_PASSWORD + "!")
    security = make_operator(pki, "630000", "security-admin")
    credentials.set_password(pki.ctx, security, operator.username, TEST_PASSWORD + "!")
    assert _login(pki, operator.username, TEST_PASSWORD + "!",
                  credentials.totp_now(uri)).id == operator.id


def test_weak_passwords_refused_and_secrets_not_stored_in_clear(ra_file_pki) -> None:
    pki = ra_file_pki
    operator, _password, uri = make_login(pki, "630100", "ra-operator")
    with pytest.raises(ValidationError) as info:
        credentials.set_password(pki.ctx, operator, operator.username, "short")
    assert info.value.field == "password"
    secret = uri.split("secret=")[1].split("&")[0]
    with transaction(pki.ctx.sessions) as session:
        row = session.scalar(select(models.Credential).where(
            models.Credential.operator_id == operator.id))
        assert row is not None and row.password_hash.startswith("scrypt$")
        assert TEST_PASSWORD not in row.password_hash
        assert row.totp_sealed is not None and secret.encode() not in row.totp_sealed
        events = session.scalars(select(AuditEvent.details)).all()
    assert not any(TEST_PASSWORD in str(d) or secret in str(d) for d in events)


def test_resetting_another_operators_password_is_security_administration(ra_file_pki) -> None:
    pki = ra_file_pki
    target, _, _ = make_login(pki, "630100", "ra-operator")
    peer = make_operator(pki, "630100", "ra-operator")
    with pytest.raises(Forbidden):
        credentials.set_password(pki.ctx, peer, target.username, "a brand new passphrase")
    security = make_operator(pki, "630000", "security-admin")
    credentials.set_password(pki.ctx, security, target.username, "a brand new passphrase")
    credentials.set_password(pki.ctx, target, target.username, "my own new passphrase")


def test_sessions_resume_time_out_and_end(ra_file_pki) -> None:
    pki = ra_file_pki
    operator, _, _ = make_login(pki, "630100", "ra-operator")
    method = authn.login_methods(CONFIG)["password-totp"]
    token, started = authn.start_session(pki.ctx, operator, method, client="127.0.0.1")
    assert started.acr == "urn:govpki:acr:password-totp" and len(started.csrf_token) >= 32
    resumed = authn.resume_session(pki.ctx, token, config=CONFIG)
    assert resumed is not None and resumed.operator.username == operator.username
    assert authn.resume_session(pki.ctx, token + "x", config=CONFIG) is None
    with transaction(pki.ctx.sessions) as session:  # 16 idle minutes pass
        session.execute(update(models.WebSession).where(
            models.WebSession.token_hash == started.id_hash).values(
            last_seen=started.last_seen - dt.timedelta(minutes=16)))
    assert authn.resume_session(pki.ctx, token, config=CONFIG) is None
    assert authn.resume_session(pki.ctx, token, config=RaConfig(session_idle_minutes=60)) is None

    token, started = authn.start_session(pki.ctx, operator, method, client="127.0.0.1")
    with transaction(pki.ctx.sessions) as session:  # logged in 9 hours ago, active since
        session.execute(update(models.WebSession).where(
            models.WebSession.token_hash == started.id_hash).values(
            created_at=started.created_at - dt.timedelta(hours=9)))
    assert authn.resume_session(pki.ctx, token, config=CONFIG) is None

    token, _ = authn.start_session(pki.ctx, operator, method, client="127.0.0.1")
    authn.end_session(pki.ctx, token)
    assert authn.resume_session(pki.ctx, token, config=CONFIG) is None

    token, _ = authn.start_session(pki.ctx, operator, method, client="127.0.0.1")
    credentials.set_password(pki.ctx, operator, operator.username, "after a compromise 2026")
    assert authn.resume_session(pki.ctx, token, config=CONFIG) is None


def test_deactivated_operator_loses_the_session(ra_file_pki) -> None:
    pki = ra_file_pki
    operator, _, _ = make_login(pki, "630100", "ra-operator")
    method = authn.login_methods(CONFIG)["password-totp"]
    token, _ = authn.start_session(pki.ctx, operator, method, client="127.0.0.1")
    with transaction(pki.ctx.sessions) as session:
        session.execute(update(models.Operator).where(models.Operator.id == operator.id)
                        .values(active=False))
    assert authn.resume_session(pki.ctx, token, config=CONFIG) is None
    assert ensure_admin(pki) is not None and operators.get_operator(
        pki.ctx.sessions, operator.username).active is False
