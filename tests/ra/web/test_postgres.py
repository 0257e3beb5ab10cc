"""The main flow of the RA pages once on PostgreSQL: login, register, request, approve and
issue, revoke, audit log (the page tests run on SQLite; the services underneath run the
whole storage matrix)."""

from __future__ import annotations

import pytest

from ra import requests as requests_service
from tests.ca.helpers import make_csr, new_key
from tests.ra.conftest import unique
from tests.ra.web.conftest import logged_in, make_app, make_login, page_token

pytestmark = pytest.mark.postgres


def test_main_flow_on_postgresql(ra_pg_pki) -> None:
    pki = ra_pg_pki
    app = make_app(pki)
    clerk = make_login(pki, "630100", "ra-operator")
    approver = make_login(pki, "630100", "ra-operator")
    auditor = make_login(pki, "630000", "auditor")
    a, b = logged_in(app, clerk), logged_in(app, approver)
    token_a, token_b = page_token(a, "/ra/officials/new"), page_token(b)

    identifier = unique("PG")
    created = a.post("/ra/officials/new", data={
        "csrf_token": token_a, "identifier": identifier, "name": "韩梅",
        "org_code": "630100-BGT", "position": "科员", "contact": "", "unit": "秘书科"})
    assert created.status_code == 303
    submitted = a.post(f"/ra/official/{identifier}/requests/new", data={
        "csrf_token": token_a, "kind": "new-pair",
        "csr_text": make_csr(new_key("ec-p256")).decode()})
    request_path = submitted.headers["Location"].split("?")[0]
    approved = b.post(f"{request_path}/approve", data={"csrf_token": token_b})
    assert approved.headers["Location"].endswith("?done=approved-executed")
    record = requests_service.get_request(pki.ctx, approver.operator,
                                          int(request_path.rsplit("/", 1)[1]))
    [cert] = record.issued
    official_page = a.get(f"/ra/official/{identifier}").get_data(as_text=True)
    assert cert.serial in official_page

    cert_path = f"/ra/certificates/{cert.ca}/{cert.serial}"
    revoked = a.post(f"{cert_path}/request", data={
        "csrf_token": token_a, "kind": "revocation", "reason": "superseded"})
    b.post(f"{revoked.headers['Location'].split('?')[0]}/approve",
           data={"csrf_token": token_b})
    assert "已吊销" in a.get(cert_path).get_data(as_text=True)

    search = a.get("/ra/officials", query_string={"q": "韩"}).get_data(as_text=True)
    assert identifier in search
    log = logged_in(app, auditor).get("/ra/audit", query_string={"who": approver.username})
    assert log.status_code == 200 and "ra.request.done" in log.get_data(as_text=True)
