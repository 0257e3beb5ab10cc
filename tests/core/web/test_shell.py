"""The one web shell behind the RA, SSO and exchange pages: the same security headers, the
same stylesheet and layout, the same catalogue machinery, observed over HTTP on the assembled
application (so a UI that went back to headers or a stylesheet of its own fails here)."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from apps.exchange.web import i18n as exchange_i18n
from apps.sso import i18n as sso_i18n
from core.web.i18n import LANGUAGES, Catalogue, language_or_default, other_language
from core.web.pages import MAX_PAGE, page_number
from core.web.security import content_security_policy, tokens_match
from ra.web import i18n as ra_i18n
from tests.apps.exchange.conftest import exchange_ready
from tests.apps.sso.conftest import make_app
from tests.conftest import Pki

#: The first page of each UI, fetched without a session (a page or the redirect to login).
PAGES = {"ra": "/ra/login", "sso": "/sso/login", "exchange": "/exchange/"}
_STYLESHEETS = re.compile(r'<link rel="stylesheet" href="([^"]+)"')


@pytest.fixture(scope="module")
def app(file_pki: Pki) -> Flask:
    return make_app(exchange_ready(file_pki))


def _directives(csp: str) -> dict[str, str]:
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1]
            for part in (p.strip() for p in csp.split(";")) if part}


def test_the_three_uis_answer_with_the_same_security_headers(app: Flask) -> None:
    client = app.test_client()
    answers = {ui: client.get(path) for ui, path in PAGES.items()}
    for ui, answer in answers.items():
        assert answer.status_code in (200, 303), ui
        headers = answer.headers
        assert headers["X-Frame-Options"] == "DENY", ui
        assert headers["X-Content-Type-Options"] == "nosniff", ui
        assert headers["Referrer-Policy"] == "no-referrer", ui
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin", ui
        assert "unsafe-inline" not in headers["Content-Security-Policy"], ui
    policies = {ui: _directives(a.headers["Content-Security-Policy"])
                for ui, a in answers.items()}
    # Only form-action may differ (the SSO provider's forms end at applications' redirect
    # URIs); every other directive is the one policy, word for word.
    rest = {ui: {k: v for k, v in d.items() if k != "form-action"} for ui, d in policies.items()}
    assert rest["ra"] == rest["sso"] == rest["exchange"] == {
        "default-src": "'self'", "base-uri": "'none'", "frame-ancestors": "'none'",
        "object-src": "'none'"}
    assert all(d["form-action"].startswith("'self'") for d in policies.values())
    assert answers["ra"].headers["Content-Security-Policy"] == content_security_policy()


def test_the_three_uis_serve_the_same_stylesheet_first(app: Flask) -> None:
    client = app.test_client()
    sheets: dict[str, bytes] = {}
    for ui, path in (("ra", "/ra/login"), ("sso", "/sso/login")):
        html = client.get(path).get_data(as_text=True)
        links = _STYLESHEETS.findall(html)
        assert links[0] == f"/{ui}/ui/ui.css", ui  # the shell first, the UI's own parts after
        assert len(links) == 2 and not links[1].endswith("ui.css"), ui
        assert '<header class="topbar">' in html and '<footer class="footer">' in html
        assert "http://" not in " ".join(links) and "https://" not in " ".join(links)
    for ui in PAGES:
        answer = client.get(f"/{ui}/ui/ui.css")
        assert answer.status_code == 200 and answer.mimetype == "text/css", ui
        assert "Set-Cookie" not in answer.headers, ui  # no session was looked up or started
        sheets[ui] = answer.get_data()
    assert sheets["ra"] == sheets["sso"] == sheets["exchange"]
    assert b".topbar" in sheets["ra"] and b"url(" not in sheets["ra"]  # no external assets


def test_every_catalogue_names_the_shell(app: Flask) -> None:
    """The layout shows these keys on every page of every UI, in both languages."""
    for catalogue in (ra_i18n.CATALOG, sso_i18n.CATALOG, exchange_i18n.CATALOG):
        for key in ("app.name", "app.emblem", "app.subtitle", "footer.note", "lang.switch",
                    "nav.logout"):
            assert set(catalogue[key]) == set(LANGUAGES), key


def test_catalogue_machinery() -> None:
    catalogue = Catalogue({"greet": ("你好，{name}", "Hello, {name}"),
                           "field.title": ("标题", "Title"),
                           "error.kind.clash": ("冲突", "Clash"),
                           "error.status.404": ("未找到", "Not found")}, label="test")
    assert catalogue.translate("greet", "en", name="王芳") == "Hello, 王芳"
    assert catalogue.translate("greet", "xx", name="王芳") == "你好，王芳"  # Chinese first
    assert catalogue.translate("no.such.key", "zh") == "no.such.key"
    assert catalogue.field_label("title", "zh") == "标题"
    assert catalogue.field_label("other", "zh") == "other"
    assert catalogue.error_title_key("clash", 409) == "error.kind.clash"
    assert catalogue.error_title_key("", 404) == "error.status.404"
    assert catalogue.error_title_key("", 418) == "error.status.400"
    assert catalogue.error_title_key("", 503) == "error.status.500"
    assert other_language("zh") == "en" and other_language("en") == "zh"


@given(st.one_of(st.none(), st.text(max_size=40)))
def test_any_language_cookie_gives_a_language_we_speak(code: str | None) -> None:
    chosen = language_or_default(code)
    assert chosen in LANGUAGES
    assert chosen == code or chosen == "zh"


@given(st.text(max_size=64), st.text(max_size=64))
def test_csrf_tokens_match_only_when_equal_and_present(expected: str, submitted: str) -> None:
    assert tokens_match(expected, submitted) == (bool(expected) and expected == submitted)
    assert not tokens_match(None, submitted) and not tokens_match(expected, None)


@given(st.text(max_size=30))
def test_any_page_argument_gives_a_page_in_range(text: str) -> None:
    with Flask(__name__).test_request_context(query_string={"page": text}):
        number = page_number()
    assert 1 <= number <= MAX_PAGE
    if text.strip().isascii() and text.strip().isdigit() and 1 <= int(text) <= MAX_PAGE:
        assert number == int(text)
