"""End to end in headless Chromium: the province's exchange clerk logs in (certificate login,
software key) and sends a document from the compose page; a prefecture clerk whose
certificate is on a SoftHSM2 USB key (enrolled with `govpki token enroll`) logs in through the
provider's signed-challenge login, finds the document in the inbox, opens it and sees the
seal's verification (valid, the province as signer), downloads the body and signs for it
(签收); the province's clerk then sees the signed-for receipt in tracking. Screenshots go into
the test's temporary directory (and $GOVPKI_TEST_ARTEFACTS)."""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from apps.exchange import service
from govpki.cli import cli
from ra import enrollment, operators
from ra.officials import OfficialInput, create_official
from ra.operators import get_operator
from tests import softhsm
from tests.apps.exchange.conftest import PROVINCE, XINING, document_number, pdf
from tests.apps.exchange.web.conftest import clerk, site
from tests.apps.sso.conftest import audit_events, sign_answer
from tests.browser import VIEWPORT, chromium, require_browser, screenshot
from tests.govpki.test_token_enroll import PIN, SO_PIN, _approve_when_submitted
from tests.ra.conftest import ensure_admin, make_operator, unique

pytestmark = [pytest.mark.browser, pytest.mark.hsm]


def _shot(page: Any, directory: Path, name: str) -> None:
    path = screenshot(page, name)
    shutil.copy(path, directory / path.name)


def _watch(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def _usb_clerk(pki, base: str, label: str) -> Any:
    """卓玛, exchange clerk of Xining, with her signing key and certificate made on the USB
    key through the RA's enrollment (the official's side: `govpki token enroll`)."""
    registrar = make_operator(pki, "630100", "ra-operator")
    approver = make_operator(pki, "630100", "ra-operator")
    official = create_official(pki.ctx.sessions, registrar, OfficialInput(
        unique("EX"), "卓玛", "630100-BGT", "公文收发员", "0971-6100000", "秘书科"))
    account = operators.add_operator(pki.ctx.sessions, ensure_admin(pki), unique("zhuoma"),
                                     org_code=XINING, role="exchange-clerk",
                                     display_name="卓玛",
                                     official_identifier=official.identifier)
    code, _ = enrollment.create_enrollment_code(pki.ctx, registrar, official.identifier)
    approving = _approve_when_submitted(pki, approver, official)
    enrolled = CliRunner().invoke(cli, ["token", "enroll", "--token", label, "--ra", base,
                                        "--wait", "60", "--poll", "0.2"],
                                  env={"GOVPKI_TOKEN_PIN": PIN,
                                       "GOVPKI_PKCS11_MODULE": softhsm.SOFTHSM_MODULE,
                                       "GOVPKI_ENROLLMENT_CODE": code})
    approving.join(10)
    assert enrolled.exit_code == 0, enrolled.output
    return account


def _login_with_software_key(page: Any, base: str, person: Any) -> None:
    """The provider's login page shows a code; the official answers it (what `govpki token
    sign-challenge` does, here with a software key) and the page continues by itself."""
    page.goto(f"{base}/exchange/outbox")
    assert "/sso/login" in page.url
    code = page.inner_text("#challenge-code").strip()
    answered = sign_answer(None, person.key, person.certificate, code, origin=base,
                           post=lambda path, body: requests.post(base + path, json=body,
                                                                 timeout=30))
    assert answered.status_code == 200, answered.text
    page.wait_for_url(f"{base}/exchange/outbox", timeout=20000)


def test_prefecture_signs_for_a_document_the_province_sent(file_pki, tmp_path_factory,
                                                           tmp_path) -> None:
    executable = require_browser()
    softhsm.require_softhsm()
    softhsm.init_softhsm(tmp_path_factory.mktemp("softhsm-exchange"))
    label = f"usb-ex-{secrets.token_hex(3)}"
    softhsm.init_token(label, PIN, SO_PIN)
    from tests.apps.exchange.conftest import exchange_ready

    pki = exchange_ready(file_pki)
    province_clerk = clerk(pki, PROVINCE, "李明")
    number = document_number()
    title = "青海省人民政府办公厅关于做好电子公文交换工作的通知"
    body_file = tmp_path / "关于做好电子公文交换工作的通知.pdf"
    body_file.write_bytes(pdf("关于做好电子公文交换工作的通知"))
    attachment = tmp_path / "附件1 联系人名单.txt"
    attachment.write_text("联系人：卓玛 0971-6100000\n", encoding="utf-8")
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    with site(pki) as web, chromium(executable) as browser:
        base = web.base
        account = _usb_clerk(pki, base, label)

        # 1. The province sends (compose page: seal, encrypt, submit).
        province = browser.new_context(viewport=VIEWPORT)
        sender = province.new_page()
        sender_errors = _watch(sender)
        _login_with_software_key(sender, base, province_clerk)
        sender.click("text=发送公文")
        sender.fill("#number", number)
        sender.fill("#title", title)
        sender.select_option("#urgency", "特急")
        sender.check(f'input[name="main"][value="{XINING}"]')
        sender.set_input_files("#body", str(body_file))
        sender.set_input_files("#attachments", str(attachment))
        _shot(sender, tmp_path, "exchange-01-compose")
        sender.click("#send")
        sender.wait_for_url(re.compile(rf"{re.escape(base)}/exchange/track/.*"))
        assert "公文已发送" in sender.inner_text("#done")
        message_id = sender.url.split("/track/", 1)[1].split("?")[0]
        _shot(sender, tmp_path, "exchange-02-sent")

        # 2. The prefecture's clerk logs in with the certificate on the USB key.
        prefecture = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        page = prefecture.new_page()
        errors = _watch(page)
        page.goto(f"{base}/exchange/inbox")
        assert "/sso/login" in page.url
        login_code = page.inner_text("#challenge-code").strip()
        _shot(page, tmp_path, "exchange-03-login")
        signed = CliRunner().invoke(cli, ["token", "sign-challenge", login_code, "--token",
                                          label, "--provider", base, "--yes"],
                                    env={"GOVPKI_TOKEN_PIN": PIN,
                                         "GOVPKI_PKCS11_MODULE": softhsm.SOFTHSM_MODULE})
        assert signed.exit_code == 0, signed.output
        assert PIN not in signed.output
        page.wait_for_url(f"{base}/exchange/inbox", timeout=20000)
        assert "卓玛" in page.inner_text("#who")
        assert "西宁市人民政府" in page.inner_text("#acting-for")

        # 3. The inbox lists it, extra urgent and awaiting sign-for.
        row = page.locator(f'tr[data-message-id="{message_id}"]')
        assert "特急" in row.inner_text() and "待签收" in row.inner_text()
        _shot(page, tmp_path, "exchange-04-inbox")
        row.get_by_role("link", name=title).click()
        page.wait_for_url(f"{base}/exchange/doc/{message_id}")

        # 4. The document with its verification result.
        verdict = page.inner_text("#verification")
        assert "有效" in verdict and "无效" not in verdict
        assert page.inner_text("#signer-org") == "青海省人民政府"
        assert "未吊销" in page.inner_text("#revocation")
        assert "可信" in page.inner_text("#chain")
        assert number in page.inner_text("#header-facts")
        _shot(page, tmp_path, "exchange-05-document")
        with page.expect_download() as got:
            page.locator("a.download").first.click()
        saved = downloads / got.value.suggested_filename
        got.value.save_as(saved)
        assert saved.read_bytes() == body_file.read_bytes()
        assert got.value.suggested_filename == body_file.name

        # 5. 签收.
        page.click("#sign-for")
        page.wait_for_url(re.compile(r".*done=signed-for"))
        assert "已签收" in page.inner_text("#done")
        assert "已签收" in page.inner_text("#delivery-state")
        _shot(page, tmp_path, "exchange-06-signed-for")

        # 6. The province sees the receipt in tracking.
        sender.click("text=发件箱")
        sender.locator(f'tr[data-message-id="{message_id}"]').get_by_role(
            "link", name="跟踪").click()
        sender.wait_for_url(f"{base}/exchange/track/{message_id}")
        delivery = sender.inner_text(f'#deliveries tr[data-recipient="{XINING}"]')
        assert "已送达" in delivery and "已签收" in delivery
        receipt = sender.locator(f'#receipts tr[data-recipient="{XINING}"]'
                                 f'[data-kind="signed-for"]')
        assert receipt.count() == 1 and account.username in receipt.inner_text()
        _shot(sender, tmp_path, "exchange-07-tracking")
        assert not errors and not sender_errors, (errors, sender_errors)

    actor = get_operator(pki.ctx.sessions, province_clerk.account.username)
    tracked = service.status(pki.ctx, actor, message_id)
    assert [(d.recipient.code, d.transport_state, d.business_state)
            for d in tracked.deliveries] == [(XINING, "delivered", "signed-for")]
    logins = [e for e in audit_events(pki, "exchange.login", "success")
              if e["actor"] == account.username]
    assert logins and logins[-1]["details"]["acr"] == "urn:govpki:acr:certificate"
    assert sorted(p.name for p in tmp_path.glob("exchange-*.png")) == [
        f"exchange-0{n}-{s}.png" for n, s in enumerate(
            ["compose", "sent", "login", "inbox", "document", "signed-for", "tracking"], 1)]
