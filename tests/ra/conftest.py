"""ra's tables on top of the shared test PKIs (tests/conftest.py builds them without ra)."""

from __future__ import annotations

import secrets

import pytest

import ra
from core import migrate
from core.db import make_engine
from govpki.migrations import all_version_locations
from ra import operators, orgs
from ra.records import Operator
from tests.conftest import Pki

_migrated: set[str] = set()


def ra_ready(pki: Pki) -> Pki:
    """Apply ra's migration and load the organisation tree, once per database."""
    if pki.db + pki.ctx.config.database_url not in _migrated:
        locations = all_version_locations()
        locations += [d for d in ra.version_locations() if d not in locations]
        engine = make_engine(pki.ctx.config.database_url)
        migrate.upgrade(engine, locations)
        engine.dispose()
        orgs.load_organisations(pki.ctx.sessions, actor="test")
        _migrated.add(pki.db + pki.ctx.config.database_url)
    return pki


@pytest.fixture
def ra_pki(pki: Pki) -> Pki:
    return ra_ready(pki)


@pytest.fixture
def ra_file_pki(file_pki: Pki) -> Pki:
    return ra_ready(file_pki)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def make_operator(pki: Pki, org: str, role: str, admin: Operator | None = None) -> Operator:
    """An operator with one role, created by a fresh ca-admin (or bootstrap on an empty DB)."""
    sessions = pki.ctx.sessions
    if admin is None:
        admin = ensure_admin(pki)
    return operators.add_operator(sessions, admin, unique(role), org_code=org, role=role)


def ensure_admin(pki: Pki) -> Operator:
    sessions = pki.ctx.sessions
    if operators.operator_count(sessions) == 0:
        return operators.add_operator(sessions, None, "root-admin", org_code="630000",
                                      role="ca-admin")
    return operators.get_operator(sessions, "root-admin")


TEST_PASSWORD = "correct horse battery staple"


def make_login(pki: Pki, org: str, role: str, admin: Operator | None = None
               ) -> tuple[Operator, str, str]:
    """An operator who can log in: (operator, password, otpauth URI for ra.credentials.totp_now)."""
    from ra import credentials

    operator = make_operator(pki, org, role, admin)
    credentials.set_password(pki.ctx, None, operator.username, TEST_PASSWORD)
    uri = credentials.enroll_totp(pki.ctx, None, operator.username)
    return operator, TEST_PASSWORD, uri
