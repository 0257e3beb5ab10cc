"""Each RA page for the roles that may see it, 403 for those that may not, forms that keep the
operator's input and mark the wrong field."""

from __future__ import annotations

import io
import re

import pytest

from ra import requests as requests_service
from ra.web import queries
from tests.ca.helpers import make_csr, new_key
from tests.ra.conftest import unique
from tests.ra.web.conftest import logged_in, make_login, new_official, page_token


@pytest.fixture
def issued(web_pki, clerk, approver):
    """An official of 630100-BGT with one issued certificate."""
    official = new_official(web_pki, clerk.operator)
    req = requests_service.submit(web_pki.ctx, clerk.operator, official.identifier,
                                  "new-pair", csr=make_csr(new_key("ec-p256")))
    requests_service.approve(web_pki.ctx, approver.operator, req.id)
    done = requests_service.execute(web_pki.ctx, approver.operator, req.id)
    return official, done.issued[0]


def _text(response) -> str:
    return response.get_data(as_text=True)


def test_ra_operator_pages(web_pki, clerk_client, clerk, issued) -> None:
    official, cert = issued
    expectations = {
        "/ra/": ["工作台", "待审批申请"],
        "/ra/orgs": ["西宁市人民政府", "<details open>", "名工作人员"],
        f"/ra/officials?q={official.identifier}": [official.identifier, "登记工作人员",
                                                     "批量导入", "共 1 条"],
        f"/ra/official/{official.identifier}": [cert.serial, "数字证书", "申请证书"],
        f"/ra/official/{official.identifier}/edit": ['name="name"', "已离职"],
        f"/ra/official/{official.identifier}/requests/new": ['name="csr_file"', "新办证书"],
        "/ra/requests?state=issued": ["已签发"],
        f"/ra/certificates/{cert.ca}/{cert.serial}": ["CN=张三", "吊销证书", "立即冻结"],
        "/ra/officials/import": ["identifier,name,org_code"],
    }
    for path, needles in expectations.items():
        response = clerk_client.get(path)
        assert response.status_code == 200, path
        for needle in needles:
            assert needle in _text(response), (path, needle)
    # Navigation offers only what the role may do.
    nav = _text(clerk_client.get("/ra/"))
    assert "/ra/audit" not in nav and "/ra/operators" not in nav
    pem = clerk_client.get(f"/ra/certificates/{cert.ca}/{cert.serial}.pem")
    assert pem.status_code == 200 and pem.data.startswith(b"-----BEGIN CERTIFICATE-----")


def test_auditor_reads_but_cannot_act(web_pki, app, issued) -> None:
    official, cert = issued
    auditor = make_login(web_pki, "630000", "auditor")
    client = logged_in(app, auditor)
    nav = _text(client.get("/ra/"))
    assert "/ra/audit" in nav and "/ra/operators" in nav
    log = client.get("/ra/audit", query_string={"action": "ra.request"})
    assert log.status_code == 200 and "ra.request.issue" in _text(log)
    assert client.get("/ra/operators").status_code == 200
    page = _text(client.get(f"/ra/certificates/{cert.ca}/{cert.serial}"))
    assert "吊销证书" not in page  # no action offered…
    official_page = _text(client.get(f"/ra/official/{official.identifier}"))
    assert "申请证书" not in official_page and "/edit" not in official_page
    # …and none allowed when forced.
    token = page_token(client)
    response = client.post(f"/ra/certificates/{cert.ca}/{cert.serial}/request",
                           data={"csrf_token": token, "kind": "revocation",
                                 "reason": "keyCompromise"})
    assert response.status_code == 403
    assert "无权执行此操作" in _text(response)
    created = client.post("/ra/officials/new", data={
        "csrf_token": token, "identifier": unique("AUD"), "name": "张三",
        "org_code": "630100-BGT"})
    assert created.status_code == 403


def test_security_admin_sees_operators_not_requests(web_pki, app, clerk) -> None:
    admin = make_login(web_pki, "630000", "security-admin")
    client = logged_in(app, admin)
    dashboard = _text(client.get("/ra/"))
    assert "您的角色不涉及证书申请业务" in dashboard
    operators = client.get("/ra/operators")
    assert operators.status_code == 200 and clerk.username in _text(operators)
    assert "受理员/审核员" in _text(operators)
    assert client.get("/ra/officials").status_code == 403
    assert client.get("/ra/audit").status_code == 403


def test_out_of_scope_is_forbidden(web_pki, app, issued) -> None:
    official, cert = issued
    other = make_login(web_pki, "632200", "ra-operator")  # another prefecture
    client = logged_in(app, other)
    for path in (f"/ra/official/{official.identifier}",
                 f"/ra/certificates/{cert.ca}/{cert.serial}",
                 "/ra/officials?org=630100", "/ra/audit"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert response.content_type.startswith("text/html")
        assert "无权执行此操作" in _text(response)
    listing = _text(client.get("/ra/officials"))
    assert official.identifier not in listing


def test_create_official_keeps_input_and_marks_the_field(web_pki, clerk_client) -> None:
    token = page_token(clerk_client, "/ra/officials/new")
    form = {"csrf_token": token, "identifier": "bad identifier!", "name": "王五",
            "org_code": "630100-BGT", "position": "科长", "contact": "0971-1", "unit": ""}
    response = clerk_client.post("/ra/officials/new", data=form)
    html = _text(response)
    assert response.status_code == 400
    assert re.search(r'id="identifier" name="identifier"[^>]*class="invalid"', html)
    assert 'value="王五"' in html and 'value="科长"' in html
    assert "表单有误" in html

    good = {**form, "identifier": unique("WW")}
    created = clerk_client.post("/ra/officials/new", data=good)
    assert created.status_code == 303
    assert created.headers["Location"] == f"/ra/official/{good['identifier']}?done=created"
    duplicate = clerk_client.post("/ra/officials/new", data=good)
    assert duplicate.status_code == 409
    assert re.search(r'id="identifier"[^>]*class="invalid"', _text(duplicate))


def test_edit_official(web_pki, clerk_client, clerk) -> None:
    official = new_official(web_pki, clerk.operator)
    path = f"/ra/official/{official.identifier}/edit"
    token = page_token(clerk_client, path)
    form = {"csrf_token": token, "name": "张三丰", "org_code": "630100-BGT",
            "position": "处长", "contact": "", "unit": "", "status": "active"}
    response = clerk_client.post(path, data=form)
    assert response.status_code == 303
    assert "张三丰" in _text(clerk_client.get(f"/ra/official/{official.identifier}"))
    bad = clerk_client.post(path, data={**form, "status": "retired"})
    assert bad.status_code == 400
    assert re.search(r'id="status" name="status" class="invalid"', _text(bad))


def test_request_with_a_bad_csr_is_refused_on_the_form(web_pki, clerk_client, clerk) -> None:
    official = new_official(web_pki, clerk.operator)
    path = f"/ra/official/{official.identifier}/requests/new"
    token = page_token(clerk_client, path)
    response = clerk_client.post(path, content_type="multipart/form-data", data={
        "csrf_token": token, "kind": "new-pair", "comment": "新入职",
        "csr_file": (io.BytesIO(b"not a csr"), "x.csr")})
    html = _text(response)
    assert response.status_code == 400
    assert 'id="csr_file" name="csr_file"' in html and 'class="invalid"' in html
    assert "新入职" in html


def test_full_flow_through_the_pages(web_pki, app, clerk_client, approver) -> None:
    """Register, request with a pasted CSR, approve (→ issued), suspend at once, release,
    revoke — all through the forms."""
    token = page_token(clerk_client, "/ra/officials/new")
    identifier = unique("FL")
    clerk_client.post("/ra/officials/new", data={
        "csrf_token": token, "identifier": identifier, "name": "马六",
        "org_code": "630100-BGT", "position": "", "contact": "", "unit": ""})
    submitted = clerk_client.post(f"/ra/official/{identifier}/requests/new", data={
        "csrf_token": token, "kind": "new-pair",
        "csr_text": make_csr(new_key("ec-p256")).decode()})
    assert submitted.status_code == 303
    request_path = submitted.headers["Location"].split("?")[0]
    request_id = int(request_path.rsplit("/", 1)[1])

    second = logged_in(app, approver)
    token2 = page_token(second, request_path)
    rejected_without_reason = second.post(f"{request_path}/reject",
                                          data={"csrf_token": token2, "comment": " "})
    assert rejected_without_reason.status_code == 400
    assert re.search(r'id="reject-comment"[^>]*class="invalid"',
                     _text(rejected_without_reason))
    approved = second.post(f"{request_path}/approve",
                           data={"csrf_token": token2, "comment": "同意"})
    assert approved.headers["Location"].endswith("?done=approved-executed")
    record = requests_service.get_request(web_pki.ctx, approver.operator, request_id)
    assert record.state == "issued"
    late = second.post(f"{request_path}/reject", data={"csrf_token": token2, "comment": "晚了"})
    assert late.status_code == 409 and "申请当前状态不允许此操作" in _text(late)
    [cert] = record.issued
    cert_path = f"/ra/certificates/{cert.ca}/{cert.serial}"

    suspended = clerk_client.post(f"{cert_path}/request", data={
        "csrf_token": token, "kind": "suspension", "comment": "USB Key 遗失"})
    assert suspended.headers["Location"].endswith("?done=executed")  # immediate kind
    assert "已冻结" in _text(clerk_client.get(cert_path))

    released = clerk_client.post(f"{cert_path}/request", data={
        "csrf_token": token, "kind": "release", "comment": "已找回"})
    release_path = released.headers["Location"].split("?")[0]
    second.post(f"{release_path}/approve", data={"csrf_token": token2})
    assert "有效" in _text(clerk_client.get(cert_path))

    revoked = clerk_client.post(f"{cert_path}/request", data={
        "csrf_token": token, "kind": "revocation", "reason": "affiliationChanged",
        "comment": "调离"})
    revoke_path = revoked.headers["Location"].split("?")[0]
    # The submitter cannot approve their own request: no button, and a refusal if forced.
    assert "须由其他审核员批准" in _text(clerk_client.get(revoke_path))
    own = clerk_client.post(f"{revoke_path}/approve", data={"csrf_token": token})
    assert own.status_code == 403 and "违反双人控制规则" in _text(own)
    second.post(f"{revoke_path}/approve", data={"csrf_token": token2, "comment": "核实"})
    page = _text(clerk_client.get(cert_path))
    assert "已吊销" in page and "隶属关系变更" in page
    again = second.post(f"{revoke_path}/approve", data={"csrf_token": token2})
    assert again.status_code == 403  # already approved by this operator
    for path in (revoke_path, release_path):
        assert "已办结" in _text(clerk_client.get(path))


def test_bulk_import_reports_every_row(web_pki, clerk_client) -> None:
    token = page_token(clerk_client, "/ra/officials/import")
    good_ids = [unique("IM") for _ in range(2)]
    roster = ("identifier,name,org_code,position\n"
              f"{good_ids[0]},赵一,630100-BGT,科员\n"
              f"{good_ids[1]},钱二,632200,科员\n").encode()
    refused = clerk_client.post("/ra/officials/import", content_type="multipart/form-data",
                                data={"csrf_token": token,
                                      "roster": (io.BytesIO(roster), "roster.csv")})
    html = _text(refused)
    assert refused.status_code == 400
    assert "花名册未导入" in html and "632200 is outside your scope" in html
    assert "共 0 条" in _text(clerk_client.get("/ra/officials",
                                              query_string={"q": good_ids[0]}))
    fixed = roster.replace(b"632200", b"630121")
    done = clerk_client.post("/ra/officials/import", content_type="multipart/form-data",
                             data={"csrf_token": token,
                                   "roster": (io.BytesIO(fixed), "roster.csv")})
    assert done.status_code == 200
    assert "已导入 2 名工作人员" in _text(done) and good_ids[1] in _text(done)


def test_dashboard_lists_pending_requests_and_expiring_certificates(
        web_pki, clerk, approver, issued) -> None:
    official, cert = issued
    before = queries.dashboard(web_pki.ctx, approver.operator)
    requests_service.submit(web_pki.ctx, clerk.operator, official.identifier, "revocation",
                            serials=[cert.serial])
    board = queries.dashboard(web_pki.ctx, approver.operator)
    assert before.pending is not None and board.pending is not None
    assert board.pending.total == before.pending.total + 1
    assert 1 <= len(board.pending.items) <= 10  # the oldest first, as in the queue
    assert board.expiring == [] or all(e.not_after for e in board.expiring)
    # The default profile lasts two years: within 800 days it is "expiring".
    # Other tests' certificates share the database: ask for all of them, not the soonest 50.
    soon = queries.expiring_certificates(web_pki.ctx, approver.operator, days=800,
                                         limit=100_000)
    assert (cert.ca, cert.serial) in [(e.ca, e.serial) for e in soon]
    other = make_login(web_pki, "632200", "ra-operator")
    assert cert.serial not in [e.serial for e in queries.expiring_certificates(
        web_pki.ctx, other.operator, days=800, limit=100_000)]


def test_enrollment_code_is_shown_once(web_pki, clerk_client, clerk) -> None:
    official = new_official(web_pki, clerk.operator)
    path = f"/ra/official/{official.identifier}"
    assert "发放注册码" in _text(clerk_client.get(path))
    response = clerk_client.post(f"{path}/enrollment-code",
                                 data={"csrf_token": page_token(clerk_client), "kind": "new-pair"})
    html = _text(response)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    code = re.search(r'class="enrollment-code mono">([A-Z0-9-]+)<', html)
    assert code and len(code.group(1).replace("-", "")) == 25
    assert "注册码只显示这一次" in html
    assert code.group(1) not in _text(clerk_client.get(path))
    bad_kind = clerk_client.post(f"{path}/enrollment-code",
                                 data={"csrf_token": page_token(clerk_client), "kind": "x"})
    assert bad_kind.status_code == 400 and "申请类型" in _text(bad_kind)
