"""`govpki sso ...` (on the shared PKI, context injected) and the clients page."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from apps.sso import cli, clients
from apps.sso.errors import ClientRefused
from tests.apps.sso.conftest import audit_events, certificate_login, csrf_of
from tests.ra.conftest import ensure_admin, make_operator


@pytest.fixture
def run(sso_pki, monkeypatch):
    @contextmanager
    def context():
        yield sso_pki.ctx

    monkeypatch.setattr(cli, "ca_context", context)

    def invoke(actor: str, *args: str):
        return CliRunner().invoke(cli.sso_group, list(args), env={"GOVPKI_ACTOR": actor})
    return invoke


def test_client_add_list_disable_and_key_rotation(run, sso_pki) -> None:
    admin = ensure_admin(sso_pki)
    added = run(admin.username, "client", "add", "值班管理", "--redirect-uri",
                "https://duty.example.gov.cn/oidc/callback", "--backchannel-logout-uri",
                "https://duty.example.gov.cn/oidc/logout", "--initiate-login-uri",
                "https://duty.example.gov.cn/", "--client-id", "duty-roster")
    assert added.exit_code == 0, added.output
    assert "client_id: duty-roster" in added.output and "client_secret: " in added.output
    secret = added.output.split("client_secret: ")[1].split()[0]
    found = clients.get_client(sso_pki.ctx.sessions, "duty-roster")
    assert found is not None and found.check_client_secret(secret)
    assert found.secret_hash != secret and secret not in str(audit_events(sso_pki,
                                                                          "sso.client.add"))
    listed = run(admin.username, "client", "list")
    assert "duty-roster" in listed.output and "duty.example.gov.cn/oidc/callback" in listed.output
    clerk = make_operator(sso_pki, "630100", "ra-operator")
    refused = run(clerk.username, "client", "add", "x", "--redirect-uri", "https://x.cn/cb")
    assert refused.exit_code != 0
    assert audit_events(sso_pki, "sso.client.add", "refused")
    assert run(admin.username, "client", "disable", "duty-roster").exit_code == 0
    assert clients.get_client(sso_pki.ctx.sessions, "duty-roster") is None
    for _ in range(2):  # whatever the database held before: then a current and a previous
        rotated = run(admin.username, "key", "rotate")
        assert rotated.exit_code == 0 and "current key" in rotated.output
    keys = run(admin.username, "key", "list")
    assert keys.output.count("current") == 1 and "previous" in keys.output


@pytest.mark.parametrize("uri", ["/relative", "ftp://x.cn/cb", "https://x.cn/cb#frag",
                                 "https://user:pw@x.cn/cb", "https://x.cn/c b"])
def test_redirect_uris_must_be_exact_absolute_http(sso_pki, uri) -> None:
    with pytest.raises(ClientRefused):
        clients.add_client(sso_pki.ctx.sessions, "test", "坏应用", redirect_uris=[uri])


def test_clients_page_for_ca_admins_only(app, sso_pki, person) -> None:
    from tests.ra.web.conftest import bootstrap_login, totp

    client = app.test_client()
    certificate_login(client, person)  # an official: not a ca-admin
    assert client.get("/sso/admin/clients").status_code == 403
    admin = bootstrap_login(sso_pki)  # the bootstrap administrator (password + TOTP)
    client = app.test_client()
    page = client.get("/sso/login").get_data(as_text=True)
    client.post("/sso/login", data={"csrf_token": csrf_of(page), "method": "password-totp",
                                    "username": admin.username, "password": admin.password,
                                    "totp": totp(admin)})
    page = client.get("/sso/admin/clients")
    assert page.status_code == 200 and "接入新应用" in page.get_data(as_text=True)
    created = client.post("/sso/admin/clients", data={
        "csrf_token": csrf_of(page.get_data(as_text=True)), "name": "会议管理",
        "redirect_uris": "https://meet.example.gov.cn/cb"})
    html = created.get_data(as_text=True)
    assert created.status_code == 200 and 'id="client-secret"' in html
    bad = client.post("/sso/admin/clients", data={
        "csrf_token": csrf_of(html), "name": "坏", "redirect_uris": "javascript:alert(1)"})
    assert bad.status_code == 400
