"""The deployment fixture (tests/deploy/harness.py) and the RA's people on it.

Each module builds its own deployment once: a fresh PostgreSQL database (dropped afterwards),
a SoftHSM2 token of its own, two nodes, nginx. Everything here runs once, never on the storage
× key matrix: the deployment *is* the storage (PostgreSQL) and key (PKCS#11) configuration of
production.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ca.context import CaContext
from core.config import load_config
from ra import api_tokens, operators
from ra import requests as ra_requests
from ra.officials import OfficialInput, create_official
from ra.records import Operator
from tests import softhsm
from tests.ca.helpers import make_csr, new_key
from tests.conftest import PostgresDatabases, postgres_available, require
from tests.deploy.harness import ADMIN, PIN, SO_PIN, SUBJECT_O, Deployment, Person, environment


def require_deployment_tools() -> None:
    require(shutil.which("nginx") is not None, "nginx (apt-get install nginx)")
    require(shutil.which("curl") is not None, "curl")
    require(softhsm.softhsm_available(), "SoftHSM2")


@dataclass
class Staff:
    """Two RA operators (four eyes) with API tokens, and officials with certificates."""

    ctx: CaContext
    clerk: Operator
    approver: Operator
    clerk_token: str
    approver_token: str
    people: dict[str, Person]


def issue_person(dep: Deployment, ctx: CaContext, clerk: Operator, approver: Operator,
                 admin: Operator, name: str, *, account: bool = True) -> Person:
    identifier = f"DEP-{secrets.token_hex(4)}"
    official = create_official(ctx.sessions, clerk, OfficialInput(
        identifier, name, "630100-BGT", "科员", "0971-1234567", "秘书科"))
    username = ""
    if account:
        username = f"gz-{secrets.token_hex(3)}"
        operators.add_operator(ctx.sessions, admin, username, org_code="630100-BGT",
                               role="official", display_name=name,
                               official_identifier=official.identifier)
    key = new_key("ec-p256")
    record = ra_requests.submit(ctx, clerk, official.identifier, "new-pair",
                                csr=make_csr(key), comment="deployment test")
    record = ra_requests.approve(ctx, approver, record.id)
    if not record.issued:
        record = ra_requests.execute(ctx, approver, record.id)
    ref = record.issued[0]
    from ca.store import find_certificate
    from core.db import transaction

    with transaction(ctx.sessions) as session:
        cert = find_certificate(session, ref.serial, ref.ca).certificate()
    people = dep.base / "people"
    people.mkdir(exist_ok=True, mode=0o700)
    cert_path, key_path = people / f"{identifier}.pem", people / f"{identifier}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return Person(identifier, name, username, cert_path, key_path, cert)


def make_staff(dep: Deployment, names: dict[str, str]) -> Staff:
    with environment(GOVPKI_PKCS11_PIN=PIN):
        ctx = CaContext.open(load_config(dep.nodes[0].home))
    admin = operators.get_operator(ctx.sessions, ADMIN)  # made by `govpki ra operator add`
    clerk = operators.add_operator(ctx.sessions, admin, f"clerk-{secrets.token_hex(3)}",
                                   org_code="630100", role="ra-operator")
    approver = operators.add_operator(ctx.sessions, admin, f"appr-{secrets.token_hex(3)}",
                                      org_code="630100", role="ra-operator")
    clerk_token, _r = api_tokens.create_api_token(ctx, clerk, clerk.username, "deploy-test")
    approver_token, _r = api_tokens.create_api_token(ctx, approver, approver.username,
                                                     "deploy-test")
    people = {key: issue_person(dep, ctx, clerk, approver, admin, name)
              for key, name in names.items()}
    return Staff(ctx, clerk, approver, clerk_token, approver_token, people)


@pytest.fixture(scope="module")
def fresh_database() -> Iterator[str]:
    """A database of its own on the shared server, dropped after the module."""
    require(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    databases = PostgresDatabases()
    url = databases.create()
    try:
        yield url.replace("postgresql+psycopg://", "postgresql://")
    finally:
        databases.drop_all()


@pytest.fixture(scope="module")
def deploy_token(softhsm_token: dict[str, str]) -> str:
    """A SoftHSM2 token for this module's CA keys (the session's SoftHSM2 directory: the nodes
    and this process must see the same tokens)."""
    label = f"deploy-{secrets.token_hex(4)}"
    softhsm.init_token(label, PIN, SO_PIN)
    return label


def build(base: Path, database_url: str, token: str) -> Deployment:
    require_deployment_tools()
    return Deployment(base, database_url, softhsm.SOFTHSM_MODULE, token)


__all__ = ["SUBJECT_O", "Staff", "build", "make_staff", "require_deployment_tools"]
