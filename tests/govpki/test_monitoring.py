"""Monitoring: /readyz, /metrics, structured JSON logs with a request id.

The readiness probe is made to fail for real: a SQLite file that is gone, a key store that is
gone, a private PostgreSQL cluster (initdb on another port, never the shared server) that is
stopped and started again. Metrics are parsed with prometheus_client's own parser and checked
against what was done (issued, refused, revoked, OCSP requests); under
``govpki serve --workers 2`` every scrape reports the sum over both workers.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from werkzeug.test import Client

from ca.crl import publish_crls
from ca.errors import InvalidCsr
from ca.issuance import CertificateRequest, issue_certificate
from ca.models import Certificate
from ca.revocation import revoke
from ca.store import chain_der
from core import audit
from core.db import transaction, utcnow
from core.errors import GovpkiError
from govpki.logging import RequestIdMiddleware, json_handler
from govpki.wsgi import PrefixRouter, create_app
from ra import credentials, operators, orgs, requests
from ra.officials import OfficialInput, create_official
from ra.records import Operator
from tests.ca.helpers import OFFICIAL_DN, make_csr, new_key
from tests.conftest import IN_CI, TEST_PASSPHRASE, Pki, build_pki, require
from tests.govpki.test_cli import GOVPKI, ROOT

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Metrics:
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    return (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
            .public_bytes(serialization.Encoding.DER))


def issuer_of(pki: Pki, ca: str = "officials") -> x509.Certificate:
    with transaction(pki.ctx.sessions) as session:
        return x509.load_der_x509_certificate(chain_der(session, ca)[0])


def issue(pki: Pki, days: int | None = None) -> x509.Certificate:
    return issue_certificate(pki.ctx, CertificateRequest(
        ca="officials", profile="official-signing", csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN, validity_days=days, requested_by="test")).certificate()


@pytest.fixture(scope="module")
def home_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    """A PKI of its own (this module breaks its database and key store on purpose)."""
    home = tmp_path_factory.mktemp("monitoring")
    pki = build_pki(home, f"sqlite:///{home / 'govpki.sqlite3'}", "file", None)
    orgs.load_organisations(pki.ctx.sessions, actor="test")
    yield pki
    pki.ctx.close()


@pytest.fixture(scope="module")
def app(home_pki: Pki) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOVPKI_SCHEDULER", "off")
        wsgi = create_app(ctx=home_pki.ctx)
    wsgi.routes["/metrics"].collector.cache_seconds = 0  # every scrape reads the database
    yield wsgi
    wsgi.routes["/ocsp"].close()


def test_readyz_reports_database_and_key_store(home_pki: Pki, app: Any) -> None:
    client = Client(app)
    ok = client.get("/readyz")
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert ok.json["checks"]["database"] == "ok" and ok.json["checks"]["schema"] == "ok"
    assert ok.json["checks"]["keystore"].startswith("ok")
    assert client.get("/healthz").status_code == 200

    database = home_pki.home / "govpki.sqlite3"
    database.rename(home_pki.home / "moved.sqlite3")
    try:
        down = client.get("/readyz")
    finally:
        (home_pki.home / "moved.sqlite3").rename(database)
    assert down.status_code == 503 and down.content_type == "application/problem+json"
    assert down.headers["Retry-After"] == "5"
    assert down.json["failed"] == ["database", "schema"], down.json
    assert "database: unreachable" in down.json["detail"]
    assert not (home_pki.home / "govpki.sqlite3-journal").exists()
    assert client.get("/readyz").status_code == 200

    before = value(parse(client.get("/metrics").get_data(as_text=True)),
                   "govpki_keystore_check_failures_total")
    keys = home_pki.home / "keys"
    keys.rename(home_pki.home / "keys-away")
    try:
        no_keys = client.get("/readyz")
    finally:
        (home_pki.home / "keys-away").rename(keys)
    assert no_keys.status_code == 503 and no_keys.json["failed"] == ["keystore"]
    assert "not found" in no_keys.json["checks"]["keystore"]
    after = parse(client.get("/metrics").get_data(as_text=True))
    assert value(after, "govpki_keystore_check_failures_total") == before + 1
    assert client.get("/readyz").status_code == 200


def test_metrics_follow_what_was_done(home_pki: Pki, app: Any) -> None:
    client = Client(app)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    before = parse(response.get_data(as_text=True))
    assert value(before, "govpki_database_up") == 1.0

    certs = [issue(home_pki), issue(home_pki), issue(home_pki, days=10)]
    revoke(home_pki.ctx, format(certs[1].serial_number, "x"), "keyCompromise",
           ca="officials", actor="test")
    with pytest.raises(InvalidCsr):
        issue_certificate(home_pki.ctx, CertificateRequest(
            ca="officials", profile="official-signing", csr=b"garbage", subject=OFFICIAL_DN,
            requested_by="test"))
    # An HSM that failed mid-issuance is audited as a failure with an hsm-* error kind.
    audit.record_refusal(home_pki.ctx.sessions, actor="test", action="ca.issue",
                         object_type="certificate-request", object_id="officials/?",
                         outcome="failure", details={"ca": "officials",
                                                     "profile": "official-signing",
                                                     "error": "hsm", "message": "token gone"})
    admin = _admin(home_pki)
    official = create_official(home_pki.ctx.sessions, admin, OfficialInput(
        "QH-MON-1", "李四", "630100-BGT", "科员", "0971-1234567", None))
    requests.submit(home_pki.ctx, admin, official.identifier, "new-pair",
                    csr=make_csr(new_key("ec-p256")))
    publish_crls(home_pki.ctx, "officials")
    issuer = issuer_of(home_pki)
    for cert in certs:
        answer = client.post("/ocsp", data=ocsp_request(cert, issuer),
                             headers={"Content-Type": "application/ocsp-request"})
        assert answer.status_code == 200
    assert client.post("/ocsp", data=b"garbage",
                       headers={"Content-Type": "application/ocsp-request"}).status_code == 200

    after = parse(client.get("/metrics").get_data(as_text=True))

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("govpki_certificates_issued_total", ca="officials",
                 profile="official-signing") == 3
    assert delta("govpki_certificate_requests_refused_total", ca="officials",
                 profile="official-signing", outcome="refused", error="invalid-csr") == 1
    assert delta("govpki_certificate_status_changes_total", ca="officials", change="revoke") == 1
    assert delta("govpki_hsm_failures_total", action="ca.issue") == 1
    assert delta("govpki_certificates_expiring_30d", ca="officials") == 1
    assert value(after, "govpki_ra_requests_pending", state="submitted") == 1
    assert delta("govpki_ocsp_requests_total", method="POST", status="successful") == 3
    assert delta("govpki_ocsp_requests_total", method="POST", status="malformedRequest") == 1
    assert delta("govpki_ocsp_request_duration_seconds_count", method="POST") == 4
    assert value(after, "govpki_crl_number", ca="officials", kind="delta") > \
        value(after, "govpki_crl_number", ca="officials", kind="full") > 0
    assert 0 <= value(after, "govpki_crl_age_seconds", ca="officials", kind="full") < 60
    assert value(after, "govpki_crl_next_update_seconds", ca="officials", kind="full") > 3600
    assert value(after, "govpki_audit_events_total") > value(before, "govpki_audit_events_total")
    assert any(name == "govpki_build_info" for name, _ in after)

    # The database gone: the scrape still answers, saying so, and per-process counters stay.
    database = home_pki.home / "govpki.sqlite3"
    database.rename(home_pki.home / "moved.sqlite3")
    try:
        down = parse(client.get("/metrics").get_data(as_text=True))
    finally:
        (home_pki.home / "moved.sqlite3").rename(database)
    assert value(down, "govpki_database_up") == 0.0
    assert value(down, "govpki_ocsp_requests_total", method="POST", status="successful") == \
        value(after, "govpki_ocsp_requests_total", method="POST", status="successful")


def _admin(pki: Pki) -> Operator:
    try:
        return operators.get_operator(pki.ctx.sessions, "mon-admin")
    except GovpkiError:
        return operators.add_operator(pki.ctx.sessions, None, "mon-admin", org_code="630000",
                                      role="ca-admin")


def test_probes_and_scrapes_read_while_a_writer_holds_sqlite(home_pki: Pki, app: Any) -> None:
    """/readyz and /metrics only read (core.db.read_only): while another process holds the
    SQLite write lock they answer from a snapshot. Begun as writes (BEGIN IMMEDIATE) they
    would wait out the busy timeout and then report the database unreachable (503, up 0)."""
    import sqlite3

    client = Client(app)
    writer = sqlite3.connect(home_pki.home / "govpki.sqlite3", timeout=1,
                             isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a long issuance batch, a restore, an operator
        ready = client.get("/readyz")
        scraped = parse(client.get("/metrics").get_data(as_text=True))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert ready.status_code == 200, ready.get_data(as_text=True)
    assert ready.json["checks"]["database"] == "ok"
    assert value(scraped, "govpki_database_up") == 1.0


def test_metrics_report_a_reservation_left_pending(home_pki: Pki, app: Any) -> None:
    """A serial reserved (TBS committed) whose certificate was never stored is what a crash
    between Boulder's two commits leaves: /metrics counts it and ages it until it is issued."""
    from ca.issuance import _prepare_request, reserve, sign_and_store

    client = Client(app)
    before = parse(client.get("/metrics").get_data(as_text=True))
    assert value(before, "govpki_ca_reservations_pending", ca="officials") == 0.0
    assert value(before, "govpki_ca_reservation_oldest_seconds", ca="officials") == 0.0
    item = _prepare_request(home_pki.ctx, CertificateRequest(
        ca="officials", profile="official-signing", csr=make_csr(new_key("ec-p256")),
        subject=OFFICIAL_DN, requested_by="test"))
    reserve(home_pki.ctx, [item])
    with transaction(home_pki.ctx.sessions) as session:  # reserved ten minutes ago
        session.execute(update(Certificate).where(Certificate.id == item.row_id).values(
            created_at=utcnow() - dt.timedelta(minutes=10)))
    during = parse(client.get("/metrics").get_data(as_text=True))
    assert value(during, "govpki_ca_reservations_pending", ca="officials") == 1.0
    assert 600 <= value(during, "govpki_ca_reservation_oldest_seconds", ca="officials") < 660
    assert value(during, "govpki_ca_reservations_pending", ca="devices") == 0.0
    outcome = sign_and_store(home_pki.ctx, [item])[0]
    assert not isinstance(outcome, GovpkiError)
    after = parse(client.get("/metrics").get_data(as_text=True))
    assert value(after, "govpki_ca_reservations_pending", ca="officials") == 0.0
    assert value(after, "govpki_ca_reservation_oldest_seconds", ca="officials") == 0.0


def test_operator_page_lists_expiring_certificates_per_organisation(home_pki: Pki) -> None:
    """/ra/expiring: an RA operator sees the certificates of their scope that expire within
    30 days, grouped by organisation; another prefecture's stay hidden."""
    from tests.ra.web.conftest import Login, logged_in, make_app

    pki, admin = home_pki, _admin(home_pki)
    people = {org: [operators.add_operator(pki.ctx.sessions, admin, f"exp-{org}-{i}",
                                           org_code=org, role="ra-operator") for i in (1, 2)]
              for org in ("630100", "632200")}
    serials: dict[str, list[str]] = {}
    for org, unit, names in (("630100", "630100-BGT", ["赵一", "钱二"]),
                             ("630100", "630121", ["孙三"]), ("632200", "632200-BGS", ["周四"])):
        clerk, approver = people[org]
        for name in names:
            official = create_official(pki.ctx.sessions, clerk, OfficialInput(
                f"QH-EXP-{len(serials)}", name, unit, "科员", "0971-1234567", None))
            req = requests.submit(pki.ctx, clerk, official.identifier, "new-pair",
                                  csr=make_csr(new_key("ec-p256")))
            req = requests.approve(pki.ctx, approver, req.id)
            serials[name] = [c.serial for c in requests.execute(pki.ctx, approver, req.id).issued]
    soon = [s for name in ("赵一", "孙三", "周四") for s in serials[name]]
    with transaction(pki.ctx.sessions) as session:  # as if issued two years ago
        session.execute(update(Certificate).where(Certificate.serial.in_(soon))
                        .values(not_after=utcnow() + dt.timedelta(days=10)))

    clerk = people["630100"][0]
    credentials.set_password(pki.ctx, None, clerk.username, "correct horse battery staple")
    uri = credentials.enroll_totp(pki.ctx, None, clerk.username)
    client = logged_in(make_app(pki), Login(clerk, "correct horse battery staple", uri))
    page = client.get("/ra/expiring")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "西宁市人民政府办公厅 (1)" in html and "大通回族土族自治县人民政府 (1)" in html
    assert "赵一" in html and "孙三" in html
    assert "钱二" not in html  # not expiring
    assert "周四" not in html and "海北藏族自治州" not in html  # outside the clerk's scope


def test_request_id_is_echoed_and_in_every_log_line() -> None:
    buffer = io.StringIO()
    handler = json_handler(buffer)
    inner = logging.getLogger("govpki.test.inner")
    access = logging.getLogger("govpki.access")
    for logger in (inner, access):
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        inner.info("working on it", extra={"step": 1})
        inner.warning("still working")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def missing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no"]

    client = Client(RequestIdMiddleware(app))
    quiet = Client(RequestIdMiddleware(PrefixRouter(app, {"/missing": missing}),
                                       access="errors"))  # an --only ocsp node's default
    try:
        given = client.get("/thing?code=s3cr3t-enrollment", headers={"X-Request-Id": "req-42"})
        made = client.get("/thing", headers={"X-Request-Id": "bad id {\"x\": 1}"})
        mark = len(buffer.getvalue().splitlines())
        quiet.get("/thing", headers={"X-Request-Id": "ok-1"})
        quiet.get("/missing", headers={"X-Request-Id": "gone-1"})
        errors_only = [json.loads(line) for line in buffer.getvalue().splitlines()[mark:]]
    finally:
        for logger in (inner, access):
            logger.removeHandler(handler)
    assert given.headers["X-Request-Id"] == "req-42"
    generated = made.headers["X-Request-Id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()][:mark]
    assert [line["request_id"] for line in lines] == ["req-42"] * 3 + [generated] * 3
    assert [(r["request_id"], r["message"]) for r in errors_only] == [
        ("ok-1", "working on it"), ("ok-1", "still working"), ("gone-1", "request")]
    assert [line["message"] for line in lines[:3]] == ["working on it", "still working",
                                                       "request"]
    assert lines[0]["step"] == 1 and lines[1]["level"] == "WARNING"
    assert lines[2]["path"] == "/thing" and lines[2]["status"] == 200
    assert "s3cr3t" not in buffer.getvalue() and "bad id" not in buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# govpki serve --workers 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_serve_with_two_workers_sums_metrics_and_logs_json(home_pki: Pki, tmp_path: Path
                                                           ) -> None:
    cert = issue(home_pki)
    request = ocsp_request(cert, issuer_of(home_pki))
    port = _free_port()
    env = dict(os.environ, GOVPKI_HOME=str(home_pki.home), GOVPKI_SCHEDULER="off",
               GOVPKI_KEY_PASSPHRASE=TEST_PASSPHRASE.decode())
    env.pop("GOVPKI_DATABASE_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    stderr = tmp_path / "serve.err"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([GOVPKI, "serve", "--port", str(port), "--workers", "2"],
                                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        status, headers, body = _get(base + "/readyz", {"X-Request-Id": "probe-1"})
        assert status == 200, body
        assert headers["x-request-id"] == "probe-1"
        sent = 12
        for _ in range(sent):
            post = urllib.request.Request(base + "/ocsp", data=request,
                                          headers={"Content-Type": "application/ocsp-request"})
            with urllib.request.urlopen(post, timeout=10) as response:
                assert response.status == 200
        # Scrapes land on either worker; each reports the sum over both.
        for _ in range(6):
            _, _, text = _get(base + "/metrics")
            metrics = parse(text.decode())
            assert value(metrics, "govpki_ocsp_requests_total", method="POST",
                         status="successful") == sent
            assert value(metrics, "govpki_database_up") == 1.0
    finally:
        proc.terminate()
        try:  # granian drains both workers; under a loaded CI machine that takes a while
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    lines = [line for line in stderr.read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    access = [r for r in records if r["logger"] == "govpki.access"]
    assert any(r["request_id"] == "probe-1" and r["path"] == "/readyz" for r in access)
    assert len({r["pid"] for r in access}) >= 1
    assert sum(1 for r in access if r["path"] == "/ocsp") == sent
    assert all(len(r["request_id"]) == 32 for r in access if r["path"] == "/ocsp")


# ---------------------------------------------------------------------------------------------
# A private PostgreSQL cluster, stopped and started under the readiness probe


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@contextmanager
def private_cluster() -> Iterator[tuple[str, Any]]:
    """initdb + pg_ctl on a free port in a directory of its own; yields (url, restart(stop))."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    require(initdb is not None and pg_ctl is not None, "PostgreSQL server binaries (initdb)")
    assert initdb and pg_ctl
    base = Path(tempfile.mkdtemp(prefix="govpki-pg-"))
    data, log = base / "data", base / "server.log"
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(base, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def ctl(*args: str) -> None:
        subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-l", str(log), "-w", *args],
                       check=True, capture_output=True, timeout=60)

    subprocess.run([*as_postgres, initdb, "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl("-o", options, "start")

    def switch(up: bool) -> None:
        ctl("-o", options, "start") if up else ctl("-m", "fast", "stop")

    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", switch
    finally:
        subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, check=False, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.postgres
def test_readyz_follows_a_private_postgresql_cluster(tmp_path: Path) -> None:
    if not IN_CI and shutil.which("runuser") is None and os.geteuid() == 0:
        pytest.skip("runuser is needed to run initdb as postgres")
    with private_cluster() as (url, switch):
        pki = build_pki(tmp_path / "home", url, "file", None)
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("GOVPKI_SCHEDULER", "off")
                wsgi = create_app(ctx=pki.ctx)
            client = Client(wsgi)
            assert client.get("/readyz").status_code == 200
            switch(False)
            started = time.monotonic()
            down = client.get("/readyz")
            assert time.monotonic() - started < 5  # a short timeout, never a hang
            assert down.status_code == 503 and down.json["failed"][0] == "database", down.json
            metrics = parse(client.get("/metrics").get_data(as_text=True))
            assert value(metrics, "govpki_database_up") == 0.0
            switch(True)
            assert client.get("/readyz").status_code == 200  # no restart of the app needed
            wsgi.routes["/ocsp"].close()
        finally:
            pki.ctx.close()
