"""deploy/ for real: Debian's nginx with mutual TLS in front of two `govpki serve` nodes on one
PostgreSQL database, checked with curl and openssl as an operator would.

Certificate login and the API get through with a certificate issued by govpki; a foreign or
revoked certificate is refused by nginx before any node sees the request; a forged
Client-Cert header is ignored whichever way it comes in; OCSP answers over plain HTTP; a lost
node (kill -9) under load costs only the requests it held, and loses or duplicates no
certificate, revocation or audit event.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import func, select, text

from ca.models import Certificate
from core.audit import AuditEvent
from core.db import transaction
from ra import models as ra_models
from tests.ca.helpers import make_csr, new_key
from tests.deploy.conftest import Staff, build, make_staff
from tests.deploy.harness import (
    SERVER_NAME,
    Deployment,
    Person,
    http_get,
    ocsp_request,
    ocsp_status,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.hsm]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, fresh_database: str,
             deploy_token: str) -> Iterator[tuple[Deployment, Staff]]:
    dep = build(tmp_path_factory.mktemp("deploy"), fresh_database, deploy_token)
    staff = None
    try:
        dep.install()
        staff = make_staff(dep, {"wang": "王芳", "li": "李明", "zhao": "赵敏", "load": "钱进"})
        for node in dep.nodes:
            dep.start_node(node)
        for node in dep.nodes:
            dep.wait_ready(node)
        dep.start_nginx()
        yield dep, staff
    finally:
        dep.stop()
        if staff is not None:
            staff.ctx.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def certificate_login(dep: Deployment, person: Person, jar: Path, *,
                      extra_header: str | None = None) -> subprocess.CompletedProcess[str]:
    """The login page on the mTLS port, then its certificate form, as a browser would."""
    headers = ["-H", extra_header] if extra_header else []
    page = dep.curl("-c", str(jar), "-b", str(jar), *headers,
                    dep.https_url("mtls", "/sso/login"), person=person)
    assert page.returncode == 0, page.stderr
    assert "使用此证书登录" in page.stdout  # the page saw a forwarded certificate
    return dep.curl("-c", str(jar), "-b", str(jar), *headers, "-o", "/dev/null",
                    "-w", "%{http_code} %{redirect_url}",
                    "--data-urlencode", f"csrf_token={csrf_of(page.stdout)}",
                    "--data-urlencode", "method=client-certificate",
                    dep.https_url("mtls", "/sso/login"), person=person)


def audit_rows(staff: Staff, action: str, **detail: str) -> list[AuditEvent]:
    with transaction(staff.ctx.sessions) as session:
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                    .order_by(AuditEvent.seq)))
        session.expunge_all()
    out = []
    for row in rows:
        details = json.loads(row.details)
        if all(details.get(k) == v for k, v in detail.items()):
            out.append(row)
    return out


# ---------------------------------------------------------------------------------------------


def test_ocsp_and_crl_over_plain_http(deployed: tuple[Deployment, Staff]) -> None:
    dep, staff = deployed
    person = staff.people["wang"]
    out = subprocess.run(["openssl", "ocsp", "-issuer", str(dep.tls / "officials-ca.pem"),
                          "-cert", str(person.cert_path),
                          "-url", f"http://127.0.0.1:{dep.ports['http']}/ocsp",
                          "-header", f"Host={SERVER_NAME}",
                          "-CAfile", str(dep.tls / "root.pem")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert "Response verify OK" in out.stderr + out.stdout, out.stderr
    assert f"{person.cert_path}: good" in out.stdout
    status, headers, crl = http_get(f"http://127.0.0.1:{dep.ports['http']}/crl/officials.crl",
                                    headers={"Host": SERVER_NAME})
    assert status == 200 and headers["content-type"] == "application/pkix-crl"
    check = subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-CAfile",
                            str(dep.tls / "client-ca.pem")], input=crl, capture_output=True,
                           check=False)
    assert b"verify OK" in check.stdout + check.stderr
    # Anything else on :80 goes to HTTPS; /metrics is for the monitoring network only.
    status, headers, _b = http_get(f"http://127.0.0.1:{dep.ports['http']}/ra/login",
                                   headers={"Host": SERVER_NAME})
    assert status == 301 and headers["location"].startswith(f"https://{SERVER_NAME}")
    assert http_get(f"http://127.0.0.1:{dep.ports['http']}/metrics",
                    headers={"Host": SERVER_NAME})[0] == 404


def test_certificate_login_gets_through_mtls(deployed: tuple[Deployment, Staff],
                                             tmp_path: Path) -> None:
    dep, staff = deployed
    wang = staff.people["wang"]
    jar = tmp_path / "cookies"
    login = certificate_login(dep, wang, jar)
    assert login.stdout.startswith("303 "), login.stdout + login.stderr
    # The session is the browser's on :443 as well: cookies are per host, not per port.
    portal = dep.curl("-b", str(jar), "-w", "\n%{http_code}", dep.https_url("https",
                                                                             "/sso/portal"))
    assert portal.stdout.endswith("\n200") and wang.name in portal.stdout
    event = audit_rows(staff, "sso.login", method="client-certificate")[-1]
    assert event.outcome == "success" and wang.serial in event.details


def test_api_is_behind_the_client_certificate(deployed: tuple[Deployment, Staff],
                                              tmp_path: Path) -> None:
    from ra.enrollment import create_enrollment_code

    dep, staff = deployed
    wang = staff.people["wang"]
    header = tmp_path / "auth-header"  # curl -H @file: the token stays out of argv
    header.write_text(f"Authorization: Bearer {staff.clerk_token}\n")
    me = dep.curl("-H", f"@{header}", "-w", "\n%{http_code}",
                  dep.https_url("mtls", "/api/v1/me"), person=wang)
    body, _, code = me.stdout.rpartition("\n")
    assert code == "200" and json.loads(body)["username"] == staff.clerk.username
    # Without a certificate, the API is not served: on :443 nginx refuses it, on :8443 the
    # TLS door does (no node sees either request).
    for port, person in (("https", None), ("mtls", None)):
        refused = dep.curl("-H", f"@{header}", "-w", "\n%{http_code}",
                           dep.https_url(port, "/api/v1/me"), person=person)
        body, _, code = refused.stdout.rpartition("\n")
        assert code == "403", refused.stdout
        problem = json.loads(body)
        assert problem["status"] == 403 and problem["type"].startswith("urn:govpki:problem:")
    # USB-key enrollment stays outside: its one-time code is the credential.
    code_text, _record = create_enrollment_code(staff.ctx, staff.clerk,
                                                staff.people["zhao"].identifier)
    key = new_key("ec-p256")
    enrol = dep.https("POST", "/api/v1/enrollment", port="https",
                      body={"code": code_text, "csr": make_csr(key).decode()})
    assert enrol[0] == 202, enrol
    status_url = json.loads(enrol[2])["status_url"]
    assert "/api/v1/enrollment/" in status_url
    wrong = dep.https("POST", "/api/v1/enrollment", port="https",
                      body={"code": "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF", "csr":
                            make_csr(key).decode()})
    assert wrong[0] in (400, 401, 403, 404) and wrong[1]["content-type"].startswith(
        "application/problem+json")
    # Operator calls next to it are not outside: /api/v1/enrollment-codes needs the mTLS door.
    assert dep.https("POST", "/api/v1/enrollment-codes", port="https",
                     token=staff.clerk_token, body={})[0] == 403


def _foreign(tmp_path: Path) -> Person:
    """A client certificate from a CA that is not this PKI's (clientAuth, valid today)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = new_key("ec-p256"), new_key("ec-p256")
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "另一个根CA")])
    cert = (x509.CertificateBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "冒充者")])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "foreign.pem", tmp_path / "foreign.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Person("foreign", "冒充者", "", cert_path, key_path, cert)


def test_foreign_certificate_is_refused_at_tls(deployed: tuple[Deployment, Staff],
                                               tmp_path: Path) -> None:
    dep, _staff = deployed
    foreign = _foreign(tmp_path)
    before = len(dep.access_log())
    for path in ("/sso/login", "/api/v1/me"):
        reply = dep.curl("-w", "\n%{http_code}", dep.https_url("mtls", path), person=foreign)
        body, _, code = reply.stdout.rpartition("\n")
        assert code == "403", reply.stdout
        assert json.loads(body)["detail"].startswith("FAILED:")
    lines = [line for line in dep.access_log()[before:] if "/ocsp" not in line]
    assert len(lines) == 2 and all("upstream=- " in line for line in lines), lines


def test_forged_client_cert_header_is_ignored(deployed: tuple[Deployment, Staff],
                                              tmp_path: Path) -> None:
    import http.client

    dep, staff = deployed
    wang, zhao = staff.people["wang"], staff.people["zhao"]
    forged = wang.escaped_pem()

    # (1) Straight to a node, from an address that is not the proxy's (127.0.0.5).
    node = dep.nodes[0]

    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30,
                                      source_address=("127.0.0.5", 0))
    conn.request("GET", "/sso/login", headers={"Client-Cert": forged})
    page = conn.getresponse()
    html = page.read().decode()
    cookies = "; ".join(c.split(";", 1)[0] for k, c in page.getheaders()
                        if k.lower() == "set-cookie")
    conn.request("POST", "/sso/login", headers={
        "Client-Cert": forged, "Cookie": cookies,
        "Content-Type": "application/x-www-form-urlencoded"},
        body=f"csrf_token={quote(csrf_of(html))}&method=client-certificate")
    reply = conn.getresponse()
    reply.read()
    conn.close()
    assert reply.status == 403 and reply.getheader("Set-Cookie", "").find(
        "govpki_sso_session=") < 0
    refusal = audit_rows(staff, "sso.login", reason="untrusted-proxy")[-1]
    assert json.loads(refusal.details)["client"] == "127.0.0.5"

    # (2) To nginx's HTTPS door without client certificates: the header is cleared, and the
    # underscore spelling is dropped; the node sees no certificate at all.
    jar = tmp_path / "jar"
    for header in (f"Client-Cert: {forged}", f"Client_Cert: {forged}"):
        page_ = dep.curl("-c", str(jar), "-b", str(jar), "-H", header,
                         dep.https_url("https", "/sso/login"))
        assert "使用此证书登录" not in page_.stdout
        post = dep.curl("-c", str(jar), "-b", str(jar), "-H", header, "-o", "/dev/null",
                        "-w", "%{http_code}",
                        "--data-urlencode", f"csrf_token={csrf_of(page_.stdout)}",
                        "--data-urlencode", "method=client-certificate",
                        dep.https_url("https", "/sso/login"))
        assert post.stdout in ("400", "403"), post.stdout
        last = audit_rows(staff, "sso.login")[-1]
        assert last.outcome != "success" and json.loads(last.details)["reason"] == "malformed"

    # (3) Through the mTLS door with a certificate of one's own: nginx's header wins.
    login = certificate_login(dep, zhao, tmp_path / "jar2",
                              extra_header=f"Client-Cert: {forged}")
    assert login.stdout.startswith("303 ")
    portal = dep.curl("-b", str(tmp_path / "jar2"), dep.https_url("https", "/sso/portal"))
    assert zhao.name in portal.stdout and wang.name not in portal.stdout


def revoke_through_api(dep: Deployment, staff: Staff, person: Person, *, transport: Person,
                       reason: str = "keyCompromise") -> tuple[int, int]:
    """Clerk opens a revocation request, approver approves (carried out at once): (status of
    the approval, request id)."""
    opened = dep.https("POST", f"/api/v1/certificates/officials/{person.serial}/revoke",
                       person=transport, token=staff.clerk_token,
                       body={"reason": reason, "comment": "deployment test"})
    assert opened[0] == 201, opened
    request_id = json.loads(opened[2])["id"]
    approved = dep.https("POST", f"/api/v1/requests/{request_id}/approve", person=transport,
                         token=staff.approver_token, body={"comment": "两人审核"})
    return approved[0], request_id


def wait_ocsp(dep: Deployment, person: Person, expected: str) -> None:
    """Until every node's responder answers ``expected`` for ``person``."""
    issuer = dep.tls / "officials-ca.pem"
    from cryptography import x509

    request = ocsp_request(person.certificate, x509.load_pem_x509_certificate(
        issuer.read_bytes()))
    for node in dep.nodes:
        deadline = time.monotonic() + 15
        while True:
            status, _h, body = http_get(node.url + "/ocsp", data=request, headers={
                "Content-Type": "application/ocsp-request"})
            if status == 200 and ocsp_status(body) == ("successful", expected):
                break
            assert time.monotonic() < deadline, (node.name, status, body[:50])
            time.sleep(0.2)


def test_revoked_certificate_is_refused_at_tls(deployed: tuple[Deployment, Staff]) -> None:
    dep, staff = deployed
    li, wang = staff.people["li"], staff.people["wang"]
    me = dep.curl("-o", "/dev/null", "-w", "%{http_code}", dep.https_url("mtls", "/sso/login"),
                  person=li)
    assert me.stdout == "200"
    status, _request = revoke_through_api(dep, staff, li, transport=wang)
    assert status == 200
    wait_ocsp(dep, li, "revoked")
    before = len(dep.access_log())
    refused = dep.curl("-w", "\n%{http_code}", dep.https_url("mtls", "/sso/login"), person=li)
    body, _, code = refused.stdout.rpartition("\n")
    assert code == "403" and json.loads(body)["detail"] == "FAILED:certificate revoked"
    # nginx asked the responder (a POST /ocsp on :80, to a node); the request itself went
    # nowhere.
    lines = [line for line in dep.access_log()[before:] if "/sso/login" in line]
    assert len(lines) == 1 and "upstream=- " in lines[0], lines


def _ocsp_der(dep: Deployment, person: Person) -> bytes:
    from cryptography import x509

    return ocsp_request(person.certificate, x509.load_pem_x509_certificate(
        (dep.tls / "officials-ca.pem").read_bytes()))


def _ocsp_ok(url: str, request: bytes, host: str | None = None) -> bool:
    headers = {"Content-Type": "application/ocsp-request"}
    if host:
        headers["Host"] = host
    status, _h, body = http_get(url, data=request, headers=headers, timeout=30)
    return status == 200 and ocsp_status(body)[0] == "successful"


def _unread_bytes(server_port: int, client_port: int) -> int | None:
    """How much of what the client sent the server has not read yet (/proc/net/tcp
    rx_queue of the server's end), None while the connection is not there."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{server_port:04X}") and fields[2].endswith(
                f":{client_port:04X}"):
            return int(fields[4].split(":")[1], 16)
    return None


def test_graceful_reload_and_draining_stop(deployed: tuple[Deployment, Staff]) -> None:
    """`systemctl reload` (SIGHUP) replaces granian's workers without refusing a request;
    `systemctl stop` (SIGTERM) refuses new connections at once and finishes the request in
    flight; nginx sends everything to the other node meanwhile."""
    dep, staff = deployed
    node = dep.nodes[0]
    assert node.process is not None
    request = _ocsp_der(dep, staff.people["wang"])

    # Reload under a stream of requests straight to this node.
    results: list[bool] = []
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            results.append(_ocsp_ok(node.url + "/ocsp", request))

    replaced = dep.node_log_count(node, "Stopped old worker")
    thread = threading.Thread(target=stream)
    thread.start()
    try:
        reload = [a.replace("$MAINPID", str(node.process.pid))
                  for a in dep.node_unit.exec_reload]
        subprocess.run(reload, check=True)
        workers = int(dep.node_unit.exec_start[dep.node_unit.exec_start.index("--workers")
                                               + 1])
        deadline = time.monotonic() + 120
        while dep.node_log_count(node, "Stopped old worker") < replaced + workers:
            assert node.process.poll() is None and time.monotonic() < deadline, \
                dep.tail(node.log)
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert results and all(results), f"{results.count(False)} of {len(results)} failed"

    # Stop with a request half sent: the worker holds it, the signal arrives, the rest of the
    # body follows, the answer comes back whole.
    conn = socket.create_connection(("127.0.0.1", node.port), timeout=30)
    head = (f"POST /ocsp HTTP/1.1\r\nHost: {SERVER_NAME}\r\n"
            f"Content-Type: application/ocsp-request\r\nContent-Length: {len(request)}\r\n"
            "Connection: close\r\n\r\n").encode()
    conn.sendall(head + request[:10])
    client_port = conn.getsockname()[1]
    deadline = time.monotonic() + 30
    while _unread_bytes(node.port, client_port) != 0:  # until a worker has read the head
        assert time.monotonic() < deadline
        time.sleep(0.05)
    node.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while True:  # new connections are refused while the old one is served
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", node.port)) != 0:
                break
        assert time.monotonic() < deadline, "still accepting after SIGTERM"
        time.sleep(0.05)
    # ... and nginx sends them to the other node.
    assert _ocsp_ok(f"http://127.0.0.1:{dep.ports['http']}/ocsp", request, SERVER_NAME)
    conn.sendall(request[10:])
    reply = b""
    while chunk := conn.recv(65536):
        reply += chunk
    conn.close()
    head_, _, body = reply.partition(b"\r\n\r\n")
    assert head_.startswith(b"HTTP/1.1 200"), reply[:200]
    assert ocsp_status(body) == ("successful", "good")
    assert node.process.wait(timeout=60) == 0
    dep.start_node(node)
    dep.wait_ready(node)


def test_refresh_rounds_take_turns(deployed: tuple[Deployment, Staff]) -> None:
    """`govpki refresh` (govpki-refresh.service) on both nodes: one round at a time across
    the database, and no CRL published twice."""
    from govpki.refresh import JOBS_LOCK_KEY

    dep, staff = deployed
    with staff.ctx.engine.connect() as conn:  # another node in the middle of a round
        assert conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                            {"k": JOBS_LOCK_KEY}).scalar()
        conn.commit()
        busy = dep.govpki_process(dep.refresh_unit, dep.nodes[1])
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": JOBS_LOCK_KEY})
        conn.commit()
    assert busy.returncode == 0, busy.stderr
    assert "another process holds the installation's job lock" in busy.stdout

    def full_crls() -> dict[str, int]:
        rows = audit_rows(staff, "ca.crl.publish", kind="full")
        counts: dict[str, int] = {}
        for row in rows:
            ca = row.object_id.split("/")[0]
            counts[ca] = counts.get(ca, 0) + 1
        return counts

    with transaction(staff.ctx.sessions) as session:  # make every CA's CRL due now
        from ca.models import PublishedCrl

        session.execute(PublishedCrl.__table__.update().values(
            this_update=func.now() - text("interval '30 days'"),
            next_update=func.now() - text("interval '1 day'")))
    before = full_crls()
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [threading.Thread(target=lambda n=n: results.append(
        dep.govpki_process(dep.refresh_unit, n))) for n in dep.nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert any(r.stdout.startswith("refresh: ") for r in results)
    after = full_crls()
    cas = {row.object_id.split("/")[0] for row in audit_rows(staff, "ca.crl.publish")}
    # Every CA got exactly one new full CRL: published once, never twice.
    assert {ca: after.get(ca, 0) - before.get(ca, 0) for ca in cas} == {ca: 1 for ca in cas}


class Call:
    """One request a load client made: what, when, and what it was told."""

    def __init__(self, step: str, tag: str) -> None:
        self.step, self.tag = step, tag
        self.started = time.monotonic()
        self.ended = 0.0
        self.status = 0
        self.body: dict[str, object] = {}

    def finish(self, status: int, body: bytes) -> Call:
        self.ended = time.monotonic()
        self.status = status
        try:
            self.body = json.loads(body) if body else {}
        except ValueError:
            self.body = {}
        return self


def test_kill_one_node_under_load(deployed: tuple[Deployment, Staff]) -> None:
    """kill -9 of node a while OCSP and RA load runs through nginx: node b keeps answering;
    only requests in flight at the kill fail; the database has every certificate, revocation
    and audit event the clients were told about, once."""
    dep, staff = deployed
    load, wang = staff.people["load"], staff.people["wang"]
    ocsp_der = _ocsp_der(dep, wang)
    ocsp_url = f"http://127.0.0.1:{dep.ports['http']}/ocsp"
    run = f"kill-{int(time.time())}"
    ra_calls: list[Call] = []
    ocsp_calls: list[tuple[float, float, bool]] = []
    half_way, ra_done = threading.Event(), threading.Event()

    def api(step: str, tag: str, path: str, token: str, body: dict[str, object]) -> Call:
        call = Call(step, tag)
        ra_calls.append(call)
        try:
            status, _h, data = dep.https("POST", path, person=wang, token=token, body=body)
        except OSError:
            status, data = 0, b""
        return call.finish(status, data)

    def ra_load(rounds: int = 8) -> None:
        try:
            for i in range(rounds):
                if i == 3:
                    half_way.set()
                tag = f"{run}-{i}"
                submitted = api("submit", tag, "/api/v1/requests", staff.clerk_token, {
                    "official": load.identifier, "kind": "new-pair", "comment": tag,
                    "csr": make_csr(new_key("ec-p256")).decode()})
                if submitted.status != 201:
                    continue
                approved = api("approve", tag, f"/api/v1/requests/{submitted.body['id']}"
                               "/approve", staff.approver_token, {"comment": "同意"})
                if approved.status != 200 or i % 2 == 0:
                    continue
                serial = approved.body["issued"][0]["serial"]  # type: ignore[index]
                opened = api("revoke", tag, f"/api/v1/certificates/officials/{serial}/revoke",
                             staff.clerk_token, {"reason": "keyCompromise",
                                                 "comment": f"{tag}-r"})
                if opened.status == 201:
                    api("approve-revoke", tag, f"/api/v1/requests/{opened.body['id']}"
                        "/approve", staff.approver_token, {"comment": "同意吊销"})
        finally:
            ra_done.set()

    def ocsp_load() -> None:
        while not ra_done.is_set() or len(ocsp_calls) < 60:
            started = time.monotonic()
            ok = _ocsp_ok(ocsp_url, ocsp_der, SERVER_NAME)
            ocsp_calls.append((started, time.monotonic(), ok))

    threads = [threading.Thread(target=ra_load), threading.Thread(target=ocsp_load)]
    for t in threads:
        t.start()
    assert half_way.wait(timeout=300)
    killed_at = time.monotonic()
    dep.kill_node(dep.nodes[0])
    dead_at = time.monotonic()  # SIGKILL sent at killed_at; the node's sockets gone by now
    for t in threads:
        t.join(timeout=300)
    try:
        # Only what was in flight at the kill failed: at most one request per client.
        ra_failed = [c for c in ra_calls if c.status not in (200, 201)]
        assert len(ra_failed) <= 1, [(c.step, c.status, c.body) for c in ra_failed]
        assert all(c.started <= dead_at and c.ended >= killed_at for c in ra_failed), [
            (c.step, c.status, c.started - killed_at, c.ended - dead_at) for c in ra_failed]
        ocsp_failed = [c for c in ocsp_calls if not c[2]]
        assert len(ocsp_failed) <= 1
        assert all(s <= dead_at and e >= killed_at for s, e, _ in ocsp_failed)
        # The other node kept answering both kinds of client.
        assert sum(1 for c in ra_calls if c.started > dead_at and c.status in (200, 201)) >= 4
        assert sum(1 for s, _e, ok in ocsp_calls if s > dead_at and ok) >= 10

        with transaction(staff.ctx.sessions) as session:
            for i in range(8):
                tag = f"{run}-{i}"
                told = {c.step: c for c in ra_calls if c.tag == tag}
                rows = session.scalars(select(ra_models.Request).where(
                    ra_models.Request.submit_comment == tag)).all()
                assert len(rows) <= 1, f"request {tag} duplicated"
                if "submit" in told and told["submit"].status == 201:
                    assert [r.id for r in rows] == [told["submit"].body["id"]]
                for row in rows:
                    certs = session.scalars(select(Certificate).where(
                        Certificate.subscriber_ref.like(f"%/request:{row.id}"),
                        Certificate.state == "issued")).all()
                    assert len(certs) <= 1, f"request {row.id} issued twice"
                    submits = session.scalar(select(func.count()).select_from(AuditEvent).where(
                        AuditEvent.action == "ra.request.submit",
                        AuditEvent.object_id == str(row.id)))
                    assert submits == 1
                approve = told.get("approve")
                if approve is not None and approve.status == 200:
                    serial = approve.body["issued"][0]["serial"]  # type: ignore[index]
                    issued = session.scalars(select(AuditEvent).where(
                        AuditEvent.action == "ca.issue", AuditEvent.outcome == "success",
                        AuditEvent.object_id == f"officials/{serial}")).all()
                    assert len(issued) == 1, f"{serial}: {len(issued)} ca.issue events"
                    revoked = told.get("approve-revoke")
                    if revoked is not None and revoked.status == 200:
                        cert = session.scalar(select(Certificate).where(
                            Certificate.serial == serial))
                        assert cert is not None and cert.status == "revoked"
                        events = session.scalar(select(func.count()).select_from(
                            AuditEvent).where(AuditEvent.action == "ca.revoke",
                                              AuditEvent.outcome == "success",
                                              AuditEvent.object_id == f"officials/{serial}"))
                        assert events == 1
                revocations = session.scalars(select(ra_models.Request).where(
                    ra_models.Request.submit_comment == f"{tag}-r")).all()
                assert len(revocations) <= 1
        # On the first node: its checkpoint file holds the ceremony's checkpoints and those of
        # its refresh rounds (each node keeps its own file of checkpoints it signed).
        verify = dep.govpki(dep.nodes[0], "audit", "verify")
        assert "audit log OK" in verify.stdout, verify.stdout
    finally:
        dep.start_node(dep.nodes[0])
        dep.wait_ready(dep.nodes[0])
