"""USB-key enrollment over real HTTP (a werkzeug server on loopback, urllib as the client),
the way `govpki token enroll` calls it: the one-time code alone authenticates the official's
tool. A software key stands in for the token here; the token tool has tests of its own."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from werkzeug.serving import make_server

from tests.ca.helpers import make_csr, new_key
from tests.ra.api.conftest import Api, make_operator, new_official


@pytest.fixture(scope="module")
def base_url(api: Api) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, api.client.application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def _http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
          ) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", "Accept": "application/json",
        **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_enroll_with_a_one_time_code_over_http(api: Api, base_url: str) -> None:
    pki = api.pki
    clerk = make_operator(pki, "632800", "ra-operator")
    approver = make_operator(pki, "632800", "ra-operator")
    official = new_official(pki, clerk, "632800-BGS", "王五", None)
    bearer = {"Authorization": f"Bearer {api.token(clerk)}"}

    status, _, made = _http("POST", base_url + "/api/v1/enrollment-codes",
                            {"official": official.identifier}, bearer)
    assert status == 201 and made["kind"] == "new-pair"
    code = made["code"]

    key = new_key("ec-p256")
    enroll = {"Authorization": f"Enrollment {code}"}  # sent on every call, as the tool does
    status, headers, accepted = _http("POST", base_url + "/api/v1/enrollment",
                                      {"code": code, "csr": make_csr(key).decode()}, enroll)
    assert status == 202, accepted
    assert accepted["state"] == "submitted" and headers["Location"] == accepted["status_url"]
    status, _, again = _http("POST", base_url + "/api/v1/enrollment",
                             {"code": code, "csr": make_csr(key).decode()}, enroll)
    assert status == 403 and again["type"] == "urn:govpki:problem:enrollment-refused"

    status_url = base_url + accepted["status_url"]
    status, _, waiting = _http("GET", status_url, headers=enroll)
    assert status == 200 and waiting["state"] == "submitted"
    assert waiting["certificate_pem"] is None and waiting["chain_pem"] == []
    # A bearer token is not how this endpoint is read; a wrong code is refused.
    status, headers, _ = _http("GET", status_url, headers=bearer)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Enrollment")
    status, _, _ = _http("GET", status_url,
                         headers={"Authorization": "Enrollment AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"})
    assert status == 401

    status, _, approved = _http(
        "POST", f"{base_url}/api/v1/requests/{accepted['request_id']}/approve", {},
        {"Authorization": f"Bearer {api.token(approver)}"})
    assert status == 200 and approved["state"] == "issued", approved

    status, _, issued = _http("GET", status_url, headers=enroll)
    assert status == 200 and issued["state"] == "issued"
    cert = x509.load_pem_x509_certificate(issued["certificate_pem"].encode())
    spki = PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(Encoding.DER, spki) == \
        key.public_key().public_bytes(Encoding.DER, spki)
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in issued["chain_pem"]]
    assert chain[0].subject == cert.issuer and chain[-1].subject == chain[-1].issuer
    assert issued["encryption_status"] == "pending-kmc"

    status, _, other = _http("GET", f"{base_url}/api/v1/enrollment/"
                             f"{accepted['request_id'] + 1000}", headers=enroll)
    assert status == 403 and other["type"] == "urn:govpki:problem:enrollment-refused"


def test_a_refused_csr_leaves_the_code_usable(api: Api, base_url: str) -> None:
    clerk = make_operator(api.pki, "632800", "ra-operator")
    official = new_official(api.pki, clerk, "632800-BGS", "赵六", None)
    status, _, made = _http("POST", base_url + "/api/v1/enrollment-codes",
                            {"official": official.identifier},
                            {"Authorization": f"Bearer {api.token(clerk)}"})
    assert status == 201
    status, _, bad = _http("POST", base_url + "/api/v1/enrollment",
                           {"code": made["code"], "csr": "not a CSR"})
    assert status == 400 and bad["field"] == "csr"
    status, _, good = _http("POST", base_url + "/api/v1/enrollment",
                            {"code": made["code"], "csr": make_csr(new_key("ec-p256")).decode()})
    assert status == 202 and good["state"] == "submitted"
