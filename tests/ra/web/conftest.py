"""Fixtures for the RA web pages: the real Flask application on the shared test PKI, operators
with a password and TOTP, and a logged-in test client.

How tests log in: operators log in with their certificate through single sign-on, and only the
bootstrap administrator with a password ([ra] password_login, default "bootstrap"). Tests
about the pages rather than about logging in use :func:`logged_in`, which opens a real
server-side session through ra.authn's public API exactly as the SSO callback does
(apps/sso/ra_client.py: ``start_session`` with the ID token's acr). Logging in itself is
tested for real: the password form with the bootstrap administrator (:func:`bootstrap_login`)
and refused for other operators (test_auth.py), certificate login end to end over HTTP
(tests/apps/sso/test_ra_login.py) and in Chromium (test_browser.py).

Most page tests run on SQLite + file keys (``ra_file_pki``); the storage matrix is covered by
the service tests underneath, and test_postgres.py runs the main flow once on PostgreSQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from apps.sso.cert_login import ACR_CERTIFICATE
from apps.sso.ra_client import OidcLogin
from core.db import transaction
from govpki.wsgi import _flask_app
from ra import authn, credentials, models
from ra.config import RaConfig
from ra.officials import OfficialInput, create_official
from ra.records import Official, Operator
from tests.conftest import Pki
from tests.ra.conftest import TEST_PASSWORD, ensure_admin, make_operator, ra_ready, unique
from tests.ra.conftest import make_login as ra_make_login

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Login:
    """An operator who can log in: the account and both factors."""

    operator: Operator
    password: str
    otpauth: str
    #: The last TOTP time step used, so the next login uses a newer code.
    last_step: int = 0

    @property
    def username(self) -> str:
        return self.operator.username


def make_login(pki: Pki, org: str, role: str) -> Login:
    """A fresh operator with a password and an enrolled TOTP seed (tests/ra/conftest.py)."""
    return Login(*ra_make_login(pki, org, role))


def bootstrap_login(pki: Pki) -> Login:
    """The bootstrap administrator of the shared database (the first account,
    tests/ra/conftest.ensure_admin) with a fresh password and TOTP seed: the one operator
    ``[ra] password_login = "bootstrap"`` lets in by password. A reset by a security
    administrator (as after a lost authenticator) when another test set them before; it also
    clears any lockout and ends the account's other sessions."""
    admin = ensure_admin(pki)
    assert admin.bootstrap, "the shared database's first operator is not marked bootstrap"
    with transaction(pki.ctx.sessions) as session:
        existing = session.scalar(select(models.Credential).where(
            models.Credential.operator_id == admin.id))
        has_password = existing is not None and existing.password_hash is not None
        has_totp = existing is not None and existing.totp_sealed is not None
    security = make_operator(pki, "630000", "security-admin") if has_password or has_totp \
        else None
    credentials.set_password(pki.ctx, security if has_password else None, admin.username,
                             TEST_PASSWORD)
    uri = credentials.enroll_totp(pki.ctx, security if has_totp else None, admin.username)
    return Login(admin, TEST_PASSWORD, uri)


def totp(login: Login) -> str:
    """A code the RA has not seen for this account yet: codes are never accepted twice, so a
    second login within one 30-second step uses the next step's code (±1 step is allowed)."""
    now = int(time.time()) // credentials.TOTP_PERIOD
    use = max(now, login.last_step + 1)
    assert use <= now + 1, "more than two logins of one account within 30 s"
    login.last_step = use
    return credentials.totp_now(login.otpauth, at=use * credentials.TOTP_PERIOD + 1)


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def make_app(pki: Pki, config: RaConfig | None = None) -> Flask:
    app = _flask_app(pki.ctx, with_ca=True)
    app.config["GOVPKI_RA_CONFIG"] = config or RaConfig()
    return app


def log_in(client: FlaskClient, login: Login, *, code: str | None = None):
    page = client.get("/ra/login")
    token = csrf_of(page.get_data(as_text=True))
    return client.post("/ra/login", data={
        "csrf_token": token, "method": "password-totp", "username": login.username,
        "password": login.password, "totp": code if code is not None else totp(login)})


def logged_in(app: Flask, login: Login | Operator) -> FlaskClient:
    """A browser holding an RA session opened the way certificate login through single
    sign-on opens it (module doc): a real server-side session with acr certificate."""
    operator = login.operator if isinstance(login, Login) else login
    token, _session = authn.start_session(app.config["GOVPKI_CA"], operator,
                                          OidcLogin(ACR_CERTIFICATE), client="127.0.0.1")
    client = app.test_client()
    client.set_cookie("govpki_ra_session", token, path="/ra")
    return client


def page_token(client: FlaskClient, path: str = "/ra/") -> str:
    """The session's CSRF token, as a form on ``path`` carries it."""
    return csrf_of(client.get(path).get_data(as_text=True))


def new_official(pki: Pki, actor: Operator, org: str = "630100-BGT",
                 name: str = "张三") -> Official:
    return create_official(pki.ctx.sessions, actor, OfficialInput(
        unique("QH"), name, org, "科员", "0971-1234567", "秘书科"))


@pytest.fixture
def web_pki(ra_file_pki: Pki) -> Pki:
    return ra_file_pki


@pytest.fixture
def app(web_pki: Pki) -> Flask:
    return make_app(web_pki)


@pytest.fixture
def clerk(web_pki: Pki) -> Login:
    return make_login(web_pki, "630100", "ra-operator")


@pytest.fixture
def approver(web_pki: Pki) -> Login:
    return make_login(web_pki, "630100", "ra-operator")


@pytest.fixture
def clerk_client(app: Flask, clerk: Login) -> Iterator[FlaskClient]:
    yield logged_in(app, clerk)


@pytest.fixture
def ra_pg_pki(pg_file_pki: Pki) -> Pki:
    return ra_ready(pg_file_pki)
