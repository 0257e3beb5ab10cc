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
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import transaction
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
        staff = make_staff(dep, {"wang": "王芳", "li": "李明", "zhao": "赵敏"})
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
