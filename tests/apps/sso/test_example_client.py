"""docs/sso.md's minimal office application (examples/sso_client.py, authlib's Flask client)
against the provider, both on loopback: log in, a certificate-only page, logout everywhere."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import requests

from apps.sso import clients
from tests.apps.sso.conftest import make_app, served_config
from tests.apps.sso.test_http_client import _user_agent_login
from tests.browser import serve

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sso_client.py"


def _example():
    spec = importlib.util.spec_from_file_location("sso_client_example", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_office_application(sso_pki, person) -> None:
    provider_app = make_app(sso_pki)
    with serve(provider_app) as base:
        provider_app.config["GOVPKI_SSO_CONFIG"] = served_config(base)
        holder: dict = {}

        def late(environ, start_response):  # the example app is made once its URL is known
            return holder["app"](environ, start_response)

        with serve(late) as app_base:
            registered, secret = clients.add_client(
                sso_pki.ctx.sessions, "test", "值班管理（示例）",
                redirect_uris=[f"{app_base}/callback"],
                post_logout_redirect_uris=[f"{app_base}/"],
                backchannel_logout_uri=f"{app_base}/backchannel-logout",
                initiate_login_uri=f"{app_base}/login")
            holder["app"] = _example().create_app(base, registered.client_id, secret)
            ua = requests.Session()
            _user_agent_login(ua, base, person)
            home = ua.get(f"{app_base}/login")
            assert home.url == f"{app_base}/" and "王芳" in home.text, home.text
            assert "已使用数字证书登录" in ua.get(f"{app_base}/sensitive").text
            out = ua.get(f"{app_base}/logout")
            assert out.url == f"{app_base}/" and "统一身份认证登录" in out.text
            assert ua.get(f"{base}/sso/portal", allow_redirects=False).status_code == 303
