"""End to end in headless Chromium with a SoftHSM2 USB key: an official enrolled with
`govpki token enroll` opens the portal, logs in with the certificate login (the test plays
the official running `govpki token sign-challenge` while the page polls), lands in the portal,
opens the RA self-service pages without logging in again (the RA is an OIDC client of the
provider), logs out, and both sessions are gone (the RA heard the back-channel logout).
Screenshots go to $GOVPKI_TEST_ARTEFACTS."""

from __future__ import annotations

import re
import secrets

import pytest
from click.testing import CliRunner

from govpki.cli import cli
from ra import enrollment, operators
from ra.officials import OfficialInput, create_official
from tests import softhsm
from tests.apps.sso.conftest import audit_events, make_app, served_config
from tests.browser import VIEWPORT, chromium, require_browser, screenshot, serve
from tests.govpki.test_token_enroll import PIN, SO_PIN, _approve_when_submitted
from tests.ra.conftest import ensure_admin, make_operator, unique

pytestmark = [pytest.mark.browser, pytest.mark.hsm]


def test_certificate_login_portal_ra_and_logout_everywhere(sso_pki, tmp_path_factory) -> None:
    executable = require_browser()
    softhsm.require_softhsm()
    softhsm.init_softhsm(tmp_path_factory.mktemp("softhsm-sso"))
    label = f"usb-sso-{secrets.token_hex(3)}"
    softhsm.init_token(label, PIN, SO_PIN)
    pki = sso_pki
    clerk = make_operator(pki, "630100", "ra-operator")
    approver = make_operator(pki, "630100", "ra-operator")
    official = create_official(pki.ctx.sessions, clerk, OfficialInput(
        unique("BR"), "卓玛", "630100-BGT", "副科长", "0971-6100000", "秘书科"))
    account = operators.add_operator(pki.ctx.sessions, ensure_admin(pki), unique("zhuoma"),
                                     org_code="630100-BGT", role="official",
                                     display_name="卓玛",
                                     official_identifier=official.identifier)
    env = {"GOVPKI_TOKEN_PIN": PIN, "GOVPKI_PKCS11_MODULE": softhsm.SOFTHSM_MODULE}
    app = make_app(pki)
    with serve(app) as base, chromium(executable) as browser:
        app.config["GOVPKI_SSO_CONFIG"] = served_config(base)
        code, _ = enrollment.create_enrollment_code(pki.ctx, clerk, official.identifier)
        approving = _approve_when_submitted(pki, approver, official)
        enrolled = CliRunner().invoke(cli, ["token", "enroll", "--token", label, "--ra", base,
                                            "--wait", "60", "--poll", "0.2"],
                                      env={**env, "GOVPKI_ENROLLMENT_CODE": code})
        approving.join(10)
        assert enrolled.exit_code == 0, enrolled.output

        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/sso/portal")
        assert "/sso/login" in page.url
        login_code = page.inner_text("#challenge-code").strip()
        screenshot(page, "sso-01-login")

        signed = CliRunner().invoke(cli, ["token", "sign-challenge", login_code, "--token",
                                          label, "--provider", base, "--yes"], env=env)
        assert signed.exit_code == 0, signed.output
        assert PIN not in signed.output and "卓玛" in signed.output
        page.wait_for_url(f"{base}/sso/portal", timeout=15000)
        assert "卓玛" in page.inner_text(".topbar")
        assert "数字证书" in page.inner_text("#login-info")
        screenshot(page, "sso-02-portal")

        # The RA's pages, through the provider: no second login.
        page.get_by_role("link", name=re.compile("注册审核系统")).click()
        page.wait_for_url(re.compile(rf"{re.escape(base)}/ra/.*"), timeout=15000)
        assert "/ra/login" not in page.url
        assert "卓玛" in page.inner_text(".topbar")
        screenshot(page, "sso-03-ra-self-service")
        page.goto(f"{base}/ra/officials")
        assert official.identifier in page.inner_text("main")

        # Log out at the provider: both sessions end.
        page.goto(f"{base}/sso/portal")
        page.get_by_role("button", name="退出").click()
        page.wait_for_selector("#logged-out")
        screenshot(page, "sso-04-logged-out")
        page.goto(f"{base}/ra/")  # no RA session, no provider session: certificate login
        assert "/sso/login" in page.url and "/ra/" not in page.url.split("?")[0]
        page.goto(f"{base}/sso/portal")
        assert "/sso/login" in page.url
        assert not errors, errors
    backchannel = audit_events(pki, "ra.logout", "success")
    assert backchannel[-1]["details"]["via"] == "backchannel-logout"
    assert backchannel[-1]["details"]["sessions"] == 1
    logins = audit_events(pki, "sso.login", "success")
    assert logins[-1]["actor"] == account.username
    assert logins[-1]["details"]["method"] == "signed-challenge"
