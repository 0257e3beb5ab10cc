"""Fixtures for apps/sso: the real application on the shared test PKI, officials with an
account and a certificate (software keys here; SoftHSM2 tokens in the browser test), and a
registered office application."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from apps.sso import clients
from apps.sso.clients import RegisteredClient
from apps.sso.config import SsoConfig
from ca.store import find_certificate
from core.audit import AuditEvent
from core.db import transaction
from govpki.wsgi import _flask_app
from hsm.challenge import login_signed_data, origin_of
from ra import operators
from ra import requests as ra_requests
from ra.config import RaConfig
from ra.officials import OfficialInput, create_official
from ra.records import Official, Operator
from tests.ca.helpers import make_csr, new_key
from tests.conftest import Pki
from tests.ra.conftest import ensure_admin, make_operator, ra_ready, unique

LOCAL = "http://localhost"


@dataclass
class Person:
    """An official with a self-service RA account and a signing certificate."""

    official: Official
    account: Operator
    key: Any
    certificate: x509.Certificate

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")


def issue(pki: Pki, official: Official, public_csr: bytes) -> x509.Certificate:
    """Issue an official-signing certificate through the RA workflow (two operators)."""
    clerk = make_operator(pki, "630100", "ra-operator")
    approver = make_operator(pki, "630100", "ra-operator")
    record = ra_requests.submit(pki.ctx, clerk, official.identifier, "new-pair", csr=public_csr,
                                comment="SSO test")
    record = ra_requests.approve(pki.ctx, approver, record.id)
    if not record.issued:
        record = ra_requests.execute(pki.ctx, approver, record.id)
    ref = record.issued[0]
    with transaction(pki.ctx.sessions) as session:
        return find_certificate(session, ref.serial, ref.ca).certificate()


def make_person(pki: Pki, *, name: str = "王芳", with_account: bool = True,
                role: str = "official", org: str = "630100-BGT") -> Person:
    """An official with a signing certificate and (``with_account``) the one RA account linked
    to their record: a self-service account by default, or an operator's (``role`` at
    ``org``), whose certificate is then how that operator logs in."""
    clerk = make_operator(pki, "630100", "ra-operator")
    official = create_official(pki.ctx.sessions, clerk, OfficialInput(
        unique("SSO"), name, "630100-BGT", "科员", "0971-1234567", "秘书科"))
    account = None
    if with_account:
        account = operators.add_operator(pki.ctx.sessions, ensure_admin(pki), unique("gz"),
                                         org_code=org, role=role, display_name=name,
                                         official_identifier=official.identifier)
    key = new_key("ec-p256")
    cert = issue(pki, official, make_csr(key))
    return Person(official, account, key, cert)  # type: ignore[arg-type]


def sso_ready(pki: Pki) -> Pki:
    return ra_ready(pki)


@pytest.fixture
def sso_pki(file_pki: Pki) -> Pki:
    return sso_ready(file_pki)


#: Every test client and served test app comes from 127.0.0.1 and shares the database's rate
#: counters: tests about something else must not run into each other's wrong codes
#: (test_ratelimit.py tests the limits, each from an address of its own).
ROOMY_LIMITS: dict[str, int] = {"challenges_per_address": 100_000,
                                "answer_failures_per_address": 100_000}


def make_app(pki: Pki, issuer: str = LOCAL, **sso: Any) -> Flask:
    app = _flask_app(pki.ctx, with_ca=True)
    app.config["GOVPKI_RA_CONFIG"] = RaConfig(cookie_secure=False)
    app.config["GOVPKI_SSO_CONFIG"] = SsoConfig(issuer=issuer, cookie_secure=False,
                                                **{**ROOMY_LIMITS, **sso})
    return app


def served_config(base: str, **sso: Any) -> SsoConfig:
    """The [sso] settings of an app served on ``base`` (its issuer is known once it listens)."""
    return SsoConfig(issuer=base, cookie_secure=False, **{**ROOMY_LIMITS, **sso})


@pytest.fixture
def app(sso_pki: Pki) -> Flask:
    return make_app(sso_pki)


@pytest.fixture
def person(sso_pki: Pki) -> Person:
    return make_person(sso_pki)


def register(pki: Pki, *, base: str = "https://app.example.gov.cn", public: bool = False,
             backchannel: str | None = None) -> tuple[RegisteredClient, str | None]:
    return clients.add_client(
        pki.ctx.sessions, "test", unique("应用"), redirect_uris=[f"{base}/callback"],
        post_logout_redirect_uris=[f"{base}/bye"], backchannel_logout_uri=backchannel,
        initiate_login_uri=f"{base}/login", public=public)


@pytest.fixture
def office_app(sso_pki: Pki) -> tuple[RegisteredClient, str | None]:
    return register(sso_pki)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def csrf_of(html: str) -> str:
    import re

    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def challenge_of(html: str) -> tuple[int, str]:
    import re

    ident = re.search(r'name="challenge" value="(\d+)"', html)
    code = re.search(r'id="challenge-code">([A-Z0-9-]+)<', html)
    assert ident and code, "no challenge on the page"
    return int(ident.group(1)), code.group(1)


def sign_answer(client: FlaskClient | Any, person_key: Any, cert: x509.Certificate, code: str,
                *, origin: str = LOCAL, post: Any = None) -> Any:
    """What `govpki token sign-challenge` does, with a software key: fetch, sign, answer."""
    from cryptography.hazmat.primitives.serialization import Encoding

    post = post or (lambda path, body: client.post(path, json=body))
    fetched = post("/sso/challenge", {"code": code})
    if fetched.status_code != 200:
        return fetched  # refused already when fetching (expired, unknown, answered)
    data = fetched.get_json() if hasattr(fetched, "get_json") else fetched.json()
    signed = login_signed_data(origin_of(origin), data["nonce"], data["expires_at"])
    signature = person_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    return post("/sso/challenge/answer", {
        "code": code, "format": "govpki-login-v1",
        "certificate": base64.b64encode(cert.public_bytes(Encoding.DER)).decode(),
        "signature": base64.b64encode(signature).decode()})


def certificate_login(client: FlaskClient, person: Person, next_url: str | None = None
                      ) -> Any:
    """Log in at the provider with the signed challenge; returns the final POST's response."""
    page = client.get("/sso/login" + (f"?next={next_url}" if next_url else ""))
    html = page.get_data(as_text=True)
    challenge_id, code = challenge_of(html)
    answered = sign_answer(client, person.key, person.certificate, code)
    assert answered.status_code == 200, answered.get_data(as_text=True)
    return client.post("/sso/login", data={
        "csrf_token": csrf_of(html), "method": "signed-challenge", "challenge": challenge_id,
        "next": next_url or ""})


def authorize_url(client_id: str, redirect_uri: str, challenge: str, **extra: str) -> str:
    from urllib.parse import urlencode

    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "scope": "openid profile organisation roles certificate", "state": "st-1",
              "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
              "code_challenge_method": "S256", **extra}
    return "/oauth/authorize?" + urlencode(params)


def code_from(location: str) -> str:
    query = parse_qs(urlsplit(location).query)
    assert "code" in query, location
    return query["code"][0]


def audit_events(pki: Pki, action: str, outcome: str | None = None) -> list[dict[str, Any]]:
    with transaction(pki.ctx.sessions) as session:
        query = select(AuditEvent).where(AuditEvent.action == action)
        if outcome:
            query = query.where(AuditEvent.outcome == outcome)
        rows = session.scalars(query.order_by(AuditEvent.seq)).all()
        return [{"actor": r.actor, "object_id": r.object_id, "outcome": r.outcome,
                 "details": json.loads(r.details)} for r in rows]
