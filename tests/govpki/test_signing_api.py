"""POST /api/v1/sign/pdf and POST /api/v1/verify/pdf on the real application (create_app), on
SQLite and PostgreSQL, with real keys, served on a loopback port.

The PKI is made by the demo ceremony with its public base URL on that port, so the seal
certificate's OCSP URL answers: poppler's pdfsig then calls the stamped paper's certificate
trusted (DESIGN.md, Pitfalls), and pyHanko validates it offline from the embedded data. Most
calls go through the test client on the same application (each answer checked against the
OpenAPI document it serves); the transport-level refusals (411 for a chunked upload, 413 from
Content-Length) go over a real socket.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.test import Client, TestResponse

from ca.ceremony import load_ceremony, run_ceremony
from ca.cli import DEMO_CEREMONY
from ca.context import CaContext
from ca.issuance import CertificateRequest, issue_certificate
from ca.store import chain_der
from core import migrate
from core.audit import AuditEvent
from core.config import AuditConfig, Config, KeyStoreConfig
from core.db import make_engine, transaction
from govpki.migrations import all_version_locations
from govpki.signing_api import SEALS_FILE, seal_placement
from govpki.wsgi import create_app
from hsm.file_store import FileKeyStore
from hsm.keystore import KeyRing
from ra.errors import ValidationError
from ra.records import Operator
from signing.appearance import CrossPagePlacement, PagePlacement
from signing.pdf_limits import DEFAULT_MAX_BYTES, MAX_PAGES
from signing.seals import AUDIT_ACTION
from tests.ca.helpers import make_csr
from tests.conftest import TEST_PASSPHRASE, Pki, require
from tests.ra.api.conftest import API, Api
from tests.ra.conftest import make_operator, ra_ready
from tests.signing.pdf.helpers import (
    add_page,
    flip_signed_byte,
    have,
    make_pdf,
    pdfsig,
    pyhanko_verdicts,
)

PDF = "application/pdf"
SEAL_DN = "CN=青海省人民政府办公厅,O=青海省人民政府办公厅,ST=青海省,C=CN"
DEPARTMENT = "青海省人民政府办公厅"


class _Late:
    """The server's WSGI app, set once the PKI that names the server's port exists."""

    target: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.target(environ, start_response)


@dataclass
class Served:
    api: Api
    base: str
    port: int
    root: x509.Certificate
    nssdir: Path
    clerk: Operator
    intruder: Operator
    director: Operator

    @property
    def pki(self) -> Pki:
        return self.api.pki

    def sign(self, pdf: bytes, query: str, operator: Operator | None = None,
             headers: dict[str, str] | None = None) -> TestResponse:
        token = self.api.token(operator or self.clerk)
        return self.api.call("POST", f"/sign/pdf?{query}", token=token, data=pdf,
                             content_type=PDF, headers=headers)

    def verify(self, pdf: bytes, query: str = "") -> TestResponse:
        return self.api.call("POST", f"/verify/pdf{query}", token=self.api.token(self.clerk),
                             data=pdf, content_type=PDF)


def _nss_db(directory: Path, root: x509.Certificate) -> None:
    """An NSS database trusting only our root, for pdfsig."""
    if shutil.which("certutil") is None:
        return
    directory.mkdir()
    pem = directory.parent / "root.pem"
    pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    subprocess.run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"],
                   check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{directory}", "-n", "govpki-root",
                    "-t", "CT,C,C", "-i", str(pem)], check=True, capture_output=True)


def _seal_certificate(ctx: CaContext, home: Path) -> Path:
    """A department-seal key in the server's key store and its certificate (+ chain) file."""
    signer = ctx.keyring.generate("file:seal-api", "ec-p256")
    cert = issue_certificate(ctx, CertificateRequest(
        ca="officials", profile="department-seal", csr=make_csr(signer.as_private_key()),
        subject=SEAL_DN)).certificate()
    with transaction(ctx.sessions) as session:
        chain = [x509.load_der_x509_certificate(d) for d in chain_der(session, "officials")]
    path = home / "seal-api.pem"
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                              for c in (cert, *chain)))
    return path


def _write_seals(home: Path, cert: Path, clerk: str, director: str) -> None:
    (home / SEALS_FILE).write_text(f"""
[[seal]]
name = "qh-office"
key_uri = "file:seal-api"
department = "{DEPARTMENT}"
certificate = "{cert.name}"
allowed = ["{clerk}"]

[[seal]]
name = "qh-contracts"
key_uri = "file:seal-api"
department = "{DEPARTMENT}"
text = "合同专用章"
certificate = "{cert.name}"
allowed = ["{clerk}", "{director}"]
approvers = ["{director}"]

[[seal]]
name = "hn-office"
key_uri = "file:seal-api"
department = "黄南藏族自治州人民政府办公室"
certificate = "{cert.name}"
allowed = ["{clerk}"]
""", encoding="utf-8")


def _serve(home: Path, db: str, url: str) -> Iterator[Served]:
    router = _Late()
    server = make_server("127.0.0.1", 0, router, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    home.mkdir(parents=True, exist_ok=True)
    config = Config(home=home, database_url=url, public_base_url=base,
                    keystore=KeyStoreConfig(), audit=AuditConfig(key_uri="file:audit"),
                    sections={"tsa": {"clock_source": "none"}})
    engine = make_engine(url)
    migrate.upgrade(engine, all_version_locations())
    engine.dispose()
    ctx = CaContext.open(config, keyring=KeyRing([FileKeyStore(home / "keys",
                                                               passphrase=TEST_PASSPHRASE)]))
    result = run_ceremony(ctx, load_ceremony(DEMO_CEREMONY), key_uri=lambda label: f"file:{label}",
                          actor="test")
    pki = ra_ready(Pki(ctx, home, db, "file", result))
    cert = _seal_certificate(ctx, home)
    clerk, intruder, director = (make_operator(pki, "632300", "ra-operator") for _ in range(3))
    _write_seals(home, cert, clerk.username, director.username)
    with transaction(ctx.sessions) as session:
        root = x509.load_der_x509_certificate(chain_der(session, "officials")[-1])
    _nss_db(home / "nss", root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOVPKI_SCHEDULER", "off")
        wsgi = create_app(ctx=ctx)
    router.target = wsgi
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(Api(pki, wsgi.default, Client(wsgi)), base, server.server_port, root,
                     home / "nss", clerk, intruder, director)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        for part in wsgi.routes.values():
            close = getattr(part, "close", None)
            if close is not None:
                close()
        ctx.close()


@pytest.fixture(scope="module", params=[
    "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp(f"signing-api-{request.param}")
    if request.param == "postgres":
        url = request.getfixturevalue("pg_databases").create()
    else:
        url = f"sqlite:///{home / 'govpki.sqlite3'}"
    yield from _serve(home, request.param, url)


def _events(served: Served, digest: str) -> list[tuple[str, str, dict[str, Any]]]:
    with transaction(served.pki.ctx.sessions) as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION)
                               .order_by(AuditEvent.seq)).all()
        out = []
        for row in rows:
            details = json.loads(row.details) if isinstance(row.details, str) else row.details
            if details.get("document_sha256") == digest:
                out.append((row.actor, row.outcome, details))
        return out


def _problem(response: TestResponse, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body is not None and body["type"] == f"urn:govpki:problem:{kind}", body
    return body


# ---------------------------------------------------------------------------------------------
# Signing through the API: a valid, trusted, audited B-LT paper

def test_sign_via_the_api_is_valid_for_pdfsig_pyhanko_and_verify(served: Served,
                                                                 tmp_path: Path) -> None:
    paper = make_pdf(2, title=f"api {served.pki.db}")
    response = served.sign(paper, "seal=qh-office&reason=%E7%9B%96%E7%AB%A0")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == PDF
    signed = response.get_data()
    assert signed.startswith(paper[:8]) and len(signed) > len(paper)
    digest = hashlib.sha256(paper).hexdigest()
    assert response.headers["Govpki-Document-Sha256"] == digest
    assert response.headers["Content-Disposition"] == 'attachment; filename="signed.pdf"'
    assert response.headers["Cache-Control"] == "no-store"
    stamped = base64.b64encode(hashlib.sha256(signed).digest()).decode()
    assert response.headers["Repr-Digest"] == f"sha-256=:{stamped}:"

    # pyHanko, offline with only the root: B-LT carries everything it needs.
    assert [passed for _f, passed, _i in pyhanko_verdicts(signed, served.root)] == [True]
    # poppler's pdfsig: valid and trusted (the OCSP URL in the certificate answers).
    if have("pdfsig") and served.nssdir.exists():
        out = tmp_path / "signed.pdf"
        out.write_bytes(signed)
        [sig] = pdfsig(out, served.nssdir)
        assert sig.valid and sig.trusted, sig.text
    else:
        require(False, "pdfsig and certutil (poppler-utils, libnss3-tools)")

    report = served.verify(signed)
    assert report.status_code == 200
    body = report.json
    assert body is not None and body["valid"] is True, body
    [sig] = body["signatures"]
    assert sig["signer_name"] == DEPARTMENT and sig["signer_organisation"] == DEPARTMENT
    assert sig["level"] == "B-LT" and sig["intact"] and sig["trusted"]
    assert sig["revocation"] == "good"
    assert sig["coverage"] == "entire-revision"  # the DSS update follows the signature
    assert sig["modification"] == "ltv-updates" and sig["modifications_allowed"] is True
    assert sig["timestamp_time"] is not None
    offline = served.verify(signed, "?offline=true").json  # B-LT: the paper carries it all
    assert offline is not None and offline["valid"] is True, offline
    assert offline["signatures"][0]["revocation_source"] == "embedded"

    events = _events(served, digest)
    assert [(actor, outcome) for actor, outcome, _d in events] == [
        (served.clerk.username, "success")]
    assert events[0][2]["stamped_sha256"] == hashlib.sha256(signed).hexdigest()
    assert events[0][2]["level"] == "B-LT"


def test_verify_offline_and_levels(served: Served) -> None:
    """B-B through the API: valid when the server may fetch revocation data from its own
    responder, not valid offline (nothing in the document vouches for the certificate)."""
    paper = make_pdf(1, title="level B-B")
    signed = served.sign(paper, "seal=qh-office&level=B-B&page=1&box=100,100,220,220")
    assert signed.status_code == 200, signed.get_data(as_text=True)[:500]
    online = served.verify(signed.get_data()).json
    assert online is not None and online["valid"] is True, online
    assert online["signatures"][0]["level"] == "B-B"
    offline = served.verify(signed.get_data(), "?offline=true").json
    assert offline is not None and offline["valid"] is False


def test_verify_reports_a_tampered_paper_invalid(served: Served) -> None:
    signed = served.sign(make_pdf(1, title="tamper"), "seal=qh-office").get_data()
    changed = served.verify(flip_signed_byte(signed)).json
    assert changed is not None and changed["valid"] is False
    assert changed["signatures"][0]["intact"] is False
    assert changed["signatures"][0]["problems"]
    page = served.verify(add_page(signed)).json
    assert page is not None and page["valid"] is False
    assert page["signatures"][0]["modification"] == "other"
    unsigned = served.verify(make_pdf(1)).json
    assert unsigned == {"valid": False, "error": "the document carries no signatures",
                        "signatures": []}


# ---------------------------------------------------------------------------------------------
# Who may stamp: the seal's access list and its second approver

def test_refused_for_a_seal_the_caller_may_not_use(served: Served) -> None:
    paper = make_pdf(1, title=f"intruder {served.pki.db}")
    response = served.sign(paper, "seal=qh-office", operator=served.intruder)
    body = _problem(response, 403, "seal-forbidden")
    assert served.intruder.username in body["detail"]
    assert b"%PDF" not in response.get_data()
    digest = hashlib.sha256(paper).hexdigest()
    assert [(actor, outcome, details["error"]) for actor, outcome, details in
            _events(served, digest)] == [(served.intruder.username, "refused", "seal-forbidden")]


def test_second_approver_is_proven_by_their_own_token(served: Served) -> None:
    paper = make_pdf(1, title=f"contract {served.pki.db}")
    _problem(served.sign(paper, "seal=qh-contracts"), 403, "seal-approval-required")
    own = {"Seal-Approval-Token": served.api.token(served.clerk)}
    _problem(served.sign(paper, "seal=qh-contracts", headers=own), 403, "seal-forbidden")
    # A token that is no token is refused before the seal is looked at (the RA audits the
    # bad token under its prefix).
    bogus = {"Seal-Approval-Token": "gp_not-a-token"}
    _problem(served.sign(paper, "seal=qh-contracts", headers=bogus), 403,
             "seal-approval-required")
    # The approver cannot approve their own use either.
    selfish = {"Seal-Approval-Token": served.api.token(served.director)}
    _problem(served.sign(paper, "seal=qh-contracts", operator=served.director,
                         headers=selfish), 403, "seal-forbidden")
    approved = served.sign(paper, "seal=qh-contracts", headers=selfish)
    assert approved.status_code == 200, approved.get_data(as_text=True)[:500]
    events = _events(served, hashlib.sha256(paper).hexdigest())
    assert events[-1][0] == served.clerk.username and events[-1][1] == "success"
    assert events[-1][2]["approved_by"] == served.director.username
    assert [(actor, outcome, details["error"]) for actor, outcome, details in events[:-1]] == [
        (served.clerk.username, "refused", "seal-approval-required"),
        (served.clerk.username, "refused", "seal-forbidden"),
        (served.director.username, "refused", "seal-forbidden")]


def test_unknown_seal_is_404(served: Served) -> None:
    _problem(served.sign(make_pdf(1), "seal=no-such-seal"), 404, "seal-unknown")


def test_seal_chosen_by_organisation(served: Served) -> None:
    """org names the organisation; its RA name is the department its one seal is drawn with."""
    paper = make_pdf(1, title=f"by org {served.pki.db}")
    response = served.sign(paper, "org=632300-BGS&level=B-B")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    [(actor, outcome, details)] = _events(served, hashlib.sha256(paper).hexdigest())
    assert (actor, outcome, details["department"]) == (
        served.clerk.username, "success", "黄南藏族自治州人民政府办公室")
    several = _problem(served.sign(paper, "org=630000-BGT"), 400, "validation")
    assert several["field"] == "org" and "qh-contracts, qh-office" in several["detail"]
    _problem(served.sign(paper, "org=632200-BGS"), 404, "seal-unknown")
    _problem(served.sign(paper, "org=999999"), 404, "ra-not-found")
    both = _problem(served.sign(paper, "org=632300-BGS&seal=hn-office"), 400, "validation")
    assert both["field"] == "seal"


# ---------------------------------------------------------------------------------------------
# Bad input: a specific problem, nothing signed


@pytest.mark.parametrize(("body", "kind"), [
    (b"", "pdf-empty"),
    (b"<html>not a paper</html>", "pdf-not-a-pdf"),
    (b"%PDF-1.7\n1 0 obj << /Type /Catalog", "pdf-corrupt"),
])
def test_bad_pdf_is_400(served: Served, body: bytes, kind: str) -> None:
    _problem(served.sign(body, "seal=qh-office"), 400, kind)
    if kind == "pdf-corrupt":  # a damaged document is a report, not an input error
        report = served.verify(body).json
        assert report is not None and report["valid"] is False and report["error"]
    else:
        _problem(served.verify(body), 400, kind)


@pytest.mark.parametrize(("query", "field"), [
    ("seal=qh-office&level=B-X", "level"),
    ("level=B-LT", "seal"),
    ("org=" + "9" * 33, "org"),
    ("seal=qh-office&page=0", "page"),
    ("seal=qh-office&box=1,2,3", "box"),
    ("seal=qh-office&cross_page=true&page=1", "page"),
    ("seal=qh-office&colour=red", "colour"),
])
def test_bad_parameters_are_400_naming_them(served: Served, query: str, field: str) -> None:
    body = _problem(served.sign(make_pdf(1), query), 400, "validation")
    assert body["field"] == field


def test_wrong_media_type_and_no_token(served: Served) -> None:
    token = served.api.token(served.clerk)
    for path in ("/sign/pdf?seal=qh-office", "/verify/pdf"):
        wrong = served.api.call("POST", path, token=token, data=b"%PDF-1.7",
                                content_type="application/octet-stream")
        _problem(wrong, 415, "unsupported-media-type")
        anonymous = served.api.call("POST", path, data=make_pdf(1), content_type=PDF)
        _problem(anonymous, 401, "authentication-failed")


def _raw_post(served: Served, path: str, head: dict[str, str], body: bytes = b""
              ) -> tuple[int, dict[str, Any]]:
    """One request over the socket, sent as given (headers not completed by a client)."""
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    try:
        conn.putrequest("POST", API + path, skip_accept_encoding=True)
        for name, value in head.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_oversized_and_unannounced_uploads_over_http(served: Served) -> None:
    token = served.api.token(served.clerk)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": PDF}
    status, body = _raw_post(served, "/sign/pdf?seal=qh-office",
                             {**auth, "Content-Length": str(DEFAULT_MAX_BYTES + 1)}, b"%PDF-")
    assert (status, body["type"]) == (413, "urn:govpki:problem:body-too-large")
    assert body["limit"] == DEFAULT_MAX_BYTES
    chunk = make_pdf(1)
    chunked = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
    status, body = _raw_post(served, "/verify/pdf",
                             {**auth, "Transfer-Encoding": "chunked"}, chunked)
    assert (status, body["type"]) == (411, "urn:govpki:problem:length-required")
    # Over the same socket a well-formed upload works.
    paper = make_pdf(1, title="raw")
    status, body = _raw_post(served, "/verify/pdf",
                             {**auth, "Content-Length": str(len(paper))}, paper)
    assert status == 200 and body["valid"] is False


# ---------------------------------------------------------------------------------------------
# The OpenAPI document

def test_openapi_lists_both_routes_with_binary_media_types(served: Served) -> None:
    doc = served.api.call("GET", "/openapi.json").json
    assert doc is not None
    sign = doc["paths"]["/sign/pdf"]["post"]
    assert list(sign["requestBody"]["content"]) == [PDF]
    assert sign["responses"]["200"]["content"] == {PDF: {"schema": {
        "type": "string", "contentMediaType": PDF}}}
    assert {"400", "401", "403", "404", "411", "413", "415"} <= set(sign["responses"])
    assert {p["name"] for p in sign["parameters"]} >= {"seal", "org", "level", "page", "box",
                                                       "reason", "Seal-Approval-Token"}
    assert sign["security"] == [{"bearerToken": []}]
    verify = doc["paths"]["/verify/pdf"]["post"]
    assert list(verify["requestBody"]["content"]) == [PDF]
    assert verify["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PdfVerification"}
    assert verify["security"] == [{"bearerToken": []}]
    assert "PdfSignatureReport" in doc["components"]["schemas"]


# ---------------------------------------------------------------------------------------------
# Property tests: outside input never makes a 500

@given(cut=st.integers(0, 4000), flips=st.lists(st.tuples(st.integers(0, 10**6),
                                                          st.integers(0, 255)), max_size=4))
@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_mutated_papers_get_a_report_or_a_400(served: Served, signed_paper: bytes, cut: int,
                                             flips: list[tuple[int, int]]) -> None:
    data = bytearray(signed_paper[:len(signed_paper) - cut])
    for index, value in flips:
        if data:
            data[index % len(data)] = value
    response = served.verify(bytes(data))
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:300]
    if response.status_code == 200:
        assert response.json is not None and isinstance(response.json["valid"], bool)


@given(page=st.none() | st.integers(1, MAX_PAGES), box=st.none() | st.text(max_size=40),
       cross=st.booleans())
@settings(max_examples=200, deadline=None, database=None)
def test_placement_parameters_are_a_placement_or_a_400(page: int | None, box: str | None,
                                                       cross: bool) -> None:
    try:
        placed = seal_placement({"page": page, "box": box, "cross_page": cross})
    except ValidationError as exc:
        assert exc.details["field"] in ("page", "box")
        return
    if cross:
        assert isinstance(placed, CrossPagePlacement)
    elif page is None and box is None:
        assert placed is None
    else:
        assert isinstance(placed, PagePlacement)


@pytest.fixture(scope="module")
def signed_paper(served: Served) -> bytes:
    response = served.sign(make_pdf(1, title="to mutate"), "seal=qh-office&level=B-B")
    assert response.status_code == 200
    return response.get_data()
