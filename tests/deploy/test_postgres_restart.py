"""PostgreSQL restarted under load, behind the production deployment (tests/deploy/harness.py)
on a PRIVATE cluster this test starts with initdb/pg_ctl on a port of its own (never the shared
server).

While the database is away every request fails cleanly and fast: 503 with an RFC 9457 problem
body over HTTP (core.db.DatabaseUnavailable), OCSP answers from memory or ``tryLater``
(RFC 6960 §2.3), never a 500, a 502 or a hang. When it is back, both nodes reconnect by
themselves (pool pre-ping, the OCSP listener's reconnect): nothing is restarted.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import create_engine, select, text

from core.db import transaction
from ra import models as ra_models
from tests.ca.helpers import make_csr, new_key
from tests.conftest import IN_CI
from tests.deploy.conftest import Staff, build, make_staff
from tests.deploy.harness import SERVER_NAME, Deployment, http_get, ocsp_request, ocsp_status
from tests.govpki.test_monitoring import private_cluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.hsm]

#: Longer than any answer may take while the database is away: libpq's connect timeout
#: (core.db.CONNECT_TIMEOUT_SECONDS = 5) plus slack for a loaded CI machine.
NEVER_HANGS_SECONDS = 15


@pytest.fixture(scope="module")
def on_private_cluster(tmp_path_factory: pytest.TempPathFactory, deploy_token: str
                       ) -> Iterator[tuple[Deployment, Staff, Any]]:
    if not IN_CI and shutil.which("runuser") is None and os.geteuid() == 0:
        pytest.skip("runuser is needed to run initdb as postgres")
    with private_cluster() as (admin_url, switch):
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('CREATE DATABASE "govpki"'))
        admin.dispose()
        url = admin_url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
        dep = build(tmp_path_factory.mktemp("deploy-pg"), f"{url}/govpki", deploy_token)
        staff = None
        try:
            dep.install()
            staff = make_staff(dep, {"wang": "王芳", "load": "钱进"})
            for node in dep.nodes:
                dep.start_node(node)
            for node in dep.nodes:
                dep.wait_ready(node)
            dep.start_nginx()
            yield dep, staff, switch
        finally:
            dep.stop()
            if staff is not None:
                staff.ctx.close()


def unknown_serial_request(dep: Deployment) -> bytes:
    """An OCSP request for a serial the responder holds no answer for: it must ask the
    database (a fresh serial each time, so no answer is ever cached)."""
    issuer = x509.load_pem_x509_certificate((dep.tls / "officials-ca.pem").read_bytes())
    name_hash = hashlib.sha1(issuer.subject.public_bytes()).digest()  # noqa: S324 (RFC 6960 CertID)
    key_bits = issuer.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)
    key_hash = hashlib.sha1(key_bits).digest()  # noqa: S324
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash, secrets.randbits(120) | 1, hashes.SHA1())  # noqa: S303
    return builder.build().public_bytes(serialization.Encoding.DER)


class Seen:
    """Every answer the load clients got, with how long it took."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.http: list[tuple[str, int, str, bytes, float]] = []
        self.ocsp: list[tuple[str, float]] = []

    def add_http(self, what: str, status: int, headers: dict[str, str], body: bytes,
                 took: float) -> None:
        with self.lock:
            self.http.append((what, status, headers.get("content-type", ""), body, took))

    def add_ocsp(self, status: str, took: float) -> None:
        with self.lock:
            self.ocsp.append((status, took))


#: The node's answer (core.db.DatabaseUnavailable), or nginx's when its OCSP check of the
#: client certificate met a responder answering tryLater (deploy/nginx/govpki.conf).
OUTAGE_PROBLEMS = ("urn:govpki:problem:database-unavailable",
                   "urn:govpki:problem:revocation-status-unavailable")


def assert_clean_503(status: int, headers: dict[str, str], body: bytes,
                     types: tuple[str, ...] = OUTAGE_PROBLEMS) -> None:
    assert status == 503, (status, body[:300])
    assert headers["content-type"].startswith("application/problem+json"), headers
    problem = json.loads(body)
    assert problem["status"] == 503 and problem["type"] in types, problem
    assert headers.get("retry-after") == "5"


def test_postgresql_restart_under_load(on_private_cluster: tuple[Deployment, Staff, Any]
                                       ) -> None:
    dep, staff, switch = on_private_cluster
    wang, load = staff.people["wang"], staff.people["load"]
    issuer = x509.load_pem_x509_certificate((dep.tls / "officials-ca.pem").read_bytes())
    known = ocsp_request(wang.certificate, issuer)
    ocsp_url = f"http://127.0.0.1:{dep.ports['http']}/ocsp"
    seen = Seen()
    stop = threading.Event()
    tags: list[tuple[str, int, dict[str, Any]]] = []

    def ocsp_load() -> None:
        while not stop.is_set():
            for request in (known, unknown_serial_request(dep)):
                started = time.monotonic()
                status, _h, body = http_get(ocsp_url, data=request, timeout=60, headers={
                    "Host": SERVER_NAME, "Content-Type": "application/ocsp-request"})
                took = time.monotonic() - started
                seen.add_ocsp(ocsp_status(body)[0] if status == 200 else f"http-{status}",
                              took)

    def ra_load() -> None:
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            status, headers, body = dep.https("GET", "/api/v1/me", person=wang,
                                              token=staff.clerk_token, timeout=60)
            seen.add_http("me", status, headers, body, time.monotonic() - started)
            tag = f"pg-restart-{i}"
            i += 1
            started = time.monotonic()
            status, headers, body = dep.https("POST", "/api/v1/requests", person=wang,
                                              token=staff.clerk_token, timeout=60, body={
                "official": load.identifier, "kind": "new-pair", "comment": tag,
                "csr": make_csr(new_key("ec-p256")).decode()})
            seen.add_http("submit", status, headers, body, time.monotonic() - started)
            tags.append((tag, status, json.loads(body) if status == 201 else {}))

    threads = [threading.Thread(target=ocsp_load), threading.Thread(target=ra_load)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 120
        while sum(1 for h in seen.http if h[1] in (200, 201)) < 4:
            assert time.monotonic() < deadline, seen.http[-3:]
            time.sleep(0.1)

        switch(False)  # pg_ctl stop -m fast: every node's connections are cut
        # While it is away: clean, fast refusals, through nginx and at each node.
        for _ in range(2):
            started = time.monotonic()
            answer = dep.https("GET", "/api/v1/me", person=wang, token=staff.clerk_token)
            assert time.monotonic() - started < NEVER_HANGS_SECONDS
            assert_clean_503(*answer)
            answer = dep.https("POST", "/api/v1/requests", person=wang,
                               token=staff.clerk_token, body={
                                   "official": load.identifier, "kind": "new-pair",
                                   "comment": "pg-down", "csr": make_csr(
                                       new_key("ec-p256")).decode()})
            assert_clean_503(*answer)
        page = dep.https("GET", "/sso/login", port="https")
        assert page[0] == 503 and "text/html" in page[1]["content-type"]
        status, _h, body = http_get(ocsp_url, data=unknown_serial_request(dep), headers={
            "Host": SERVER_NAME, "Content-Type": "application/ocsp-request"})
        assert status == 200 and ocsp_status(body) == ("try_later", None)
        # A held answer may still be given from memory, or tryLater (the responder re-reads
        # its issuers from the database every 30 s); never anything else.
        status, _h, body = http_get(ocsp_url, data=known, headers={
            "Host": SERVER_NAME, "Content-Type": "application/ocsp-request"})
        assert status == 200 and ocsp_status(body) in (("successful", "good"),
                                                       ("try_later", None))
        for node in dep.nodes:
            status, _headers, body = http_get(node.url + "/readyz")
            assert status == 503 and json.loads(body)["failed"][0] == "database"
            # The node itself, asked directly (from nginx's address): its own 503.
            answer = http_get(node.url + "/api/v1/me",
                              headers={"Authorization": f"Bearer {staff.clerk_token}"})
            assert_clean_503(*answer, types=OUTAGE_PROBLEMS[:1])

        # The CLI: one line and a non-zero exit, no stack trace.
        cli = dep.govpki(dep.nodes[0], "ra", "request", "list", check=False)
        assert cli.returncode == 1, cli
        assert cli.stderr.strip().splitlines() == [
            "error: the database is unavailable (restarting or unreachable): try again shortly"]

        switch(True)
        # Back: both nodes reconnect by themselves, nothing restarted.
        for node in dep.nodes:
            deadline = time.monotonic() + 60
            while True:
                status, _h, _b = http_get(node.url + "/readyz")
                conn_ok = _me_on_node(node.url, staff.clerk_token) == 200
                if status == 200 and conn_ok:
                    break
                assert time.monotonic() < deadline, (node.name, status)
                time.sleep(0.2)
        assert all(node.process is not None and node.process.poll() is None
                   for node in dep.nodes)
        submitted = len([t for t in tags if t[1] == 201])
        deadline = time.monotonic() + 60
        while len([t for t in tags if t[1] == 201]) < submitted + 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)

    # Every answer was a success or a clean refusal, and none took long.
    for what, status, ctype, body, took in seen.http:
        assert took < NEVER_HANGS_SECONDS, (what, status, took)
        if status not in (200, 201):
            assert status == 503 and ctype.startswith("application/problem+json"), \
                (what, status, body[:200])
    assert {s for s, _t in seen.ocsp} <= {"successful", "try_later"}, seen.ocsp
    assert all(took < NEVER_HANGS_SECONDS for _s, took in seen.ocsp)
    assert any(status == 503 for _w, status, *_ in seen.http)  # the outage was seen
    # No half-written request: told 201 ⇔ in the database; told 503 ⇒ not there.
    with transaction(staff.ctx.sessions) as session:
        for tag, status, body in tags:
            rows = session.scalars(select(ra_models.Request).where(
                ra_models.Request.submit_comment == tag)).all()
            if status == 201:
                assert [r.id for r in rows] == [body["id"]]
            elif status == 503:
                assert rows == [], tag
        assert session.scalars(select(ra_models.Request).where(
            ra_models.Request.submit_comment == "pg-down")).all() == []
    verify = dep.govpki(dep.nodes[0], "audit", "verify")
    assert "audit log OK" in verify.stdout


def _me_on_node(base: str, token: str) -> int:
    return http_get(base + "/api/v1/me", headers={"Authorization": f"Bearer {token}"})[0]
