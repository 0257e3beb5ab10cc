"""Security properties of every RA page: headers, CSRF refusal, body limit, error pages that
never show a stack trace."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from core.db import transaction
from ra import models
from ra.config import RaConfig
from ra.web import queries
from tests.ra.conftest import unique
from tests.ra.web.conftest import logged_in, make_app, page_token

PAGES = ("/ra/", "/ra/orgs", "/ra/officials", "/ra/officials/new", "/ra/officials/import",
         "/ra/requests", "/ra/no-such-page")


def _official_count(pki) -> int:
    with transaction(pki.ctx.sessions) as session:
        return session.scalar(select(func.count()).select_from(models.Official)) or 0


def _assert_headers(response, *, cached: bool = False) -> None:
    headers = response.headers
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    if not cached:
        assert headers["Cache-Control"] == "no-store"


def test_security_headers_on_every_page(app, clerk_client) -> None:
    _assert_headers(app.test_client().get("/ra/login"))
    for path in PAGES:
        response = clerk_client.get(path)
        assert response.status_code in (200, 404), path
        _assert_headers(response)
        assert "<script" not in response.get_data(as_text=True)
        assert "style=" not in response.get_data(as_text=True)
    _assert_headers(clerk_client.get("/ra/static/ra.css"), cached=True)


def test_post_without_or_with_a_wrong_csrf_token_changes_nothing(web_pki, clerk_client
                                                                 ) -> None:
    before = _official_count(web_pki)
    form = {"identifier": unique("CSRF"), "name": "张三", "org_code": "630100-BGT"}
    missing = clerk_client.post("/ra/officials/new", data=form)
    wrong = clerk_client.post("/ra/officials/new", data={**form, "csrf_token": "x" * 43})
    for response in (missing, wrong):
        assert response.status_code == 400
        html = response.get_data(as_text=True)
        assert "表单已失效" in html and "未做任何更改" in html
        _assert_headers(response)
    assert _official_count(web_pki) == before
    right = clerk_client.post("/ra/officials/new",
                              data={**form, "csrf_token": page_token(clerk_client)})
    assert right.status_code == 303
    assert _official_count(web_pki) == before + 1


def test_csrf_token_of_another_session_is_refused(web_pki, app, clerk_client, approver
                                                  ) -> None:
    other = logged_in(app, approver)
    form = {"identifier": unique("CSRF"), "name": "张三", "org_code": "630100-BGT",
            "csrf_token": page_token(other)}
    assert clerk_client.post("/ra/officials/new", data=form).status_code == 400


def test_oversized_upload_is_413(web_pki, clerk) -> None:
    app = make_app(web_pki, RaConfig(max_body_bytes=4096))
    client = logged_in(app, clerk)
    token = page_token(client, "/ra/officials/import")
    before = _official_count(web_pki)
    roster = b"identifier,name,org_code\n" + b"X1,\xe5\xbc\xa0\xe4\xb8\x89,630100\n" * 400
    response = client.post("/ra/officials/import", content_type="multipart/form-data",
                           data={"csrf_token": token, "roster": (io.BytesIO(roster), "r.csv")})
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert "上传内容过大" in html
    _assert_headers(response)
    assert _official_count(web_pki) == before


def test_unknown_pages_are_html_404s(clerk_client) -> None:
    for path in ("/ra/no-such-page", "/ra/official/NO-SUCH-ONE", "/ra/requests/999999",
                 "/ra/certificates/officials/abcdef0123"):
        response = clerk_client.get(path)
        assert response.status_code == 404, path
        assert response.content_type.startswith("text/html")
        assert "未找到" in response.get_data(as_text=True)


def test_unexpected_errors_are_a_plain_500_page(clerk_client, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(queries, "organisation_tree", broken)
    response = clerk_client.get("/ra/orgs")
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "系统内部错误" in html
    assert "Traceback" not in html and "secret internals" not in html
    _assert_headers(response)
