"""End to end in headless Chromium: register, request, approve, issue, revoke.

Two operators of one prefecture in two browser contexts (two people, two sessions): A registers
an official and submits a new-pair request with a CSR, B approves it and the certificate is
issued; A asks for its revocation, B approves, the certificate shows as revoked. An auditor
reads the audit log. Every operator logs in as operators do: with the certificate of their
own official record, through single sign-on (the test answers the login code as
`govpki token sign-challenge` would, with a software key, while the page polls). Screenshots
of the main pages are saved as artefacts (tests/browser.py), and the pages must run without a
single console error or CSP violation.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from ra import requests as requests_service
from ra.web.auth_views import SSO_LOGOUT_KEY
from tests.apps.sso.conftest import Person, make_person, served_config, sign_answer
from tests.browser import VIEWPORT, chromium, require_browser, screenshot, serve
from tests.ca.helpers import make_csr, new_key
from tests.ra.conftest import unique
from tests.ra.web.conftest import make_app

pytestmark = pytest.mark.browser


def _log_in(context, base: str, person: Person, shot: str | None = None):
    """Certificate login: the RA sends the browser to the provider's login page, the official's
    tool answers the code shown there, the page logs in and comes back to the RA."""
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if shot:
        page.goto(f"{base}/ra/login")
        screenshot(page, shot)
        page.click("#sso-login")
    else:
        page.goto(f"{base}/ra/")
    page.wait_for_selector("#challenge-code")
    assert page.url.startswith(f"{base}/sso/login")
    code = page.inner_text("#challenge-code").strip()
    agent = requests.Session()  # the official's machine, not the browser
    answered = sign_answer(None, person.key, person.certificate, code, origin=base,
                           post=lambda path, body: agent.post(base + path, json=body,
                                                              timeout=10))
    assert answered.status_code == 200, answered.text
    page.wait_for_url(f"{base}/ra/", timeout=15000)
    assert person.account.display_name in page.inner_text(".topbar")
    return page, errors


def test_register_request_approve_revoke(web_pki, tmp_path: Path) -> None:
    executable = require_browser()
    pki = web_pki
    a = make_person(pki, name="马受理", role="ra-operator", org="630100")
    b = make_person(pki, name="韩审核", role="ra-operator", org="630100")
    auditor = make_person(pki, name="祁审计", role="auditor", org="630000")
    identifier = unique("XN")
    csr_file = tmp_path / "official.csr"
    csr_file.write_bytes(make_csr(new_key("ec-p256")))

    app = make_app(pki)
    with serve(app) as base, chromium(executable) as browser:
        app.config["GOVPKI_SSO_CONFIG"] = served_config(base)
        app.config[SSO_LOGOUT_KEY] = (
            "/oauth/logout?client_id=govpki-ra&post_logout_redirect_uri="
            + quote(f"{base}/ra/login?bye=1", safe=""))
        ctx_a = browser.new_context(viewport=VIEWPORT)
        ctx_b = browser.new_context(viewport=VIEWPORT)
        page_a, errors_a = _log_in(ctx_a, base, a, shot="01-login")
        screenshot(page_a, "02-dashboard")

        # A registers an official.
        page_a.get_by_role("link", name="工作人员").first.click()
        page_a.get_by_role("link", name="登记工作人员").click()
        page_a.fill("#identifier", identifier)
        page_a.fill("#name", "李明华")
        page_a.select_option("#org_code", "630100-BGT")
        page_a.fill("#unit", "秘书科")
        page_a.fill("#position", "科员")
        page_a.fill("#contact", "0971-8123456")
        page_a.get_by_role("button", name="保存").click()
        page_a.wait_for_url(re.compile(rf".*/ra/official/{identifier}\?done=created"))
        assert "已登记工作人员" in page_a.inner_text("main")

        # A submits a new-pair request with the official's CSR.
        page_a.get_by_role("link", name="申请证书").click()
        page_a.set_input_files("#csr_file", str(csr_file))
        page_a.fill("#comment", "新入职，申领签名证书")
        page_a.get_by_role("button", name="提交申请").click()
        page_a.wait_for_url(re.compile(r".*/ra/requests/\d+\?done=submitted"))
        request_id = int(re.search(r"/requests/(\d+)", page_a.url).group(1))  # type: ignore[union-attr]
        assert "已提交" in page_a.inner_text("main")
        assert "须由其他审核员批准" in page_a.inner_text("main")  # no approve button for A

        page_a.goto(f"{base}/ra/officials?q=李明")
        assert identifier in page_a.inner_text("table")
        screenshot(page_a, "03-officials")

        # B approves: the certificate is issued at once.
        page_b, errors_b = _log_in(ctx_b, base, b)
        page_b.get_by_role("link", name="证书申请").first.click()
        page_b.get_by_role("link", name="已提交").click()
        screenshot(page_b, "04-requests")
        # (The queue is shared with other tests: reach the request through its official.)
        page_b.get_by_role("link", name="工作人员").first.click()
        page_b.fill("#q", identifier)
        page_b.get_by_role("button", name="查询").click()
        page_b.get_by_role("link", name="李明华").click()
        page_b.get_by_role("link", name=f"#{request_id}", exact=True).click()
        screenshot(page_b, "05-request")
        page_b.fill("#approve-comment", "材料齐全，同意")
        page_b.get_by_role("button", name="批准").click()
        page_b.wait_for_url(re.compile(rf".*/ra/requests/{request_id}\?done=approved-executed"))
        assert "已签发" in page_b.inner_text("main")

        # The certificate appears on the official's page.
        [serial] = requests_service.get_request(pki.ctx, b.account, request_id).issued
        page_a.goto(f"{base}/ra/official/{identifier}")
        screenshot(page_a, "06-official")
        page_a.get_by_role("link", name=serial.serial).click()
        main = page_a.inner_text("main")
        assert "李明华" in main and "有效" in main
        screenshot(page_a, "07-certificate")

        # A asks for revocation; B approves; the status shows revoked.
        page_a.select_option("#revocation-reason", "keyCompromise")
        page_a.fill("#revocation-comment", "USB Key 遗失，确认吊销")
        page_a.get_by_role("button", name="提交吊销申请").click()
        page_a.wait_for_url(re.compile(r".*/ra/requests/\d+\?done=submitted"))
        revoke_id = int(re.search(r"/requests/(\d+)", page_a.url).group(1))  # type: ignore[union-attr]

        page_b.goto(f"{base}/ra/requests/{revoke_id}")
        page_b.fill("#approve-comment", "核实无误")
        page_b.get_by_role("button", name="批准").click()
        page_b.wait_for_url(re.compile(rf".*/ra/requests/{revoke_id}\?done=approved-executed"))
        assert "已办结" in page_b.inner_text("main")

        page_a.goto(f"{base}/ra/certificates/{serial.ca}/{serial.serial}")
        main = page_a.inner_text("main")
        assert "已吊销" in main and "密钥泄露" in main
        screenshot(page_a, "08-certificate-revoked")

        # English is one click away and stays with the session.
        page_a.get_by_role("link", name="English").click()
        assert "Revoked" in page_a.inner_text("main")
        page_a.goto(f"{base}/ra/requests")
        assert "Certificate requests" in page_a.inner_text("main")
        screenshot(page_a, "09-requests-en")
        page_a.get_by_role("link", name="中文").click()
        page_a.goto(f"{base}/ra/orgs")
        screenshot(page_a, "10-orgs")

        # The auditor reads the log: every step above is there.
        ctx_c = browser.new_context(viewport=VIEWPORT)
        page_c, errors_c = _log_in(ctx_c, base, auditor)
        page_c.get_by_role("link", name="审计日志").click()
        page_c.fill("#object_id", str(revoke_id))
        page_c.get_by_role("button", name="查询").click()
        log_text = page_c.inner_text("table")
        assert "ra.request.approve" in log_text and "ra.request.submit" in log_text
        page_c.goto(f"{base}/ra/audit")
        screenshot(page_c, "11-audit", full_page=False)

        # A logs out: the RA session ends, and the provider's too once A confirms there (a
        # logout without an ID token hint is confirmed, RP-Initiated Logout 1.0 §6).
        page_a.get_by_role("button", name="退出").click()
        page_a.wait_for_url(re.compile(r".*/oauth/logout\?.*"))
        page_a.get_by_role("main").get_by_role("button", name="退出").click()
        page_a.wait_for_url(re.compile(r".*/ra/login\?bye=1"))
        page_a.goto(f"{base}/ra/")
        assert "/sso/login" in page_a.url  # no session left anywhere: certificate login again

        for context in (ctx_a, ctx_b, ctx_c):
            context.close()
    assert errors_a == [] and errors_b == [] and errors_c == []
