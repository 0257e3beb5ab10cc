"""The string catalogue: both languages for every key, no text outside it in the templates,
and the language switch (the checks every UI shares are tests/core/web/catalogue_checks.py)."""

from __future__ import annotations

import re
from pathlib import Path

import ra.web
from ra.web import i18n
from tests.core.web.catalogue_checks import (
    LAYOUT,
    assert_both_languages,
    assert_no_literal_text,
    keys_used,
)
from tests.ra.web.conftest import page_token

TEMPLATES = Path(ra.web.__file__).parent / "templates" / "ra"
PYTHON = Path(ra.web.__file__).parent
_TEXT_KEY = re.compile(r"""["']((?:login|done|error|field)\.[\w.\-]+)["']""")


def test_every_key_has_both_languages_with_the_same_placeholders() -> None:
    assert_both_languages(i18n.CATALOG)


def test_every_key_the_pages_use_is_in_the_catalogue() -> None:
    modules = [m for m in PYTHON.glob("*.py") if m.name != "i18n.py"]
    used = keys_used([*TEMPLATES.glob("*.html"), LAYOUT]) | keys_used(modules, _TEXT_KEY)
    assert used, "the key scan found nothing: the pattern is broken"
    # A key ending in "." is a prefix completed from data (test_dynamic_keys_cover_every_value);
    # "login.html" is a template name, not a key.
    missing = sorted(k for k in used
                     if k not in i18n.CATALOG and not k.endswith((".", ".html")))
    assert missing == []


def test_dynamic_keys_cover_every_value() -> None:
    """Keys built from data ("state." ~ state) exist for every value the data can take."""
    from ca.revocation import REVOCATION_REASONS
    from policies.authz import REQUEST_KINDS
    from ra.models import OFFICIAL_STATUSES, ORG_KINDS, REQUEST_STATES

    families = {"state": REQUEST_STATES, "kind": REQUEST_KINDS, "reason": REVOCATION_REASONS,
                "official.status": OFFICIAL_STATUSES, "orgkind": ORG_KINDS,
                "status": ("good", "hold", "revoked"),
                "outcome": ("success", "refused", "failure"),
                "certificate.action": ("revocation", "suspension", "release"),
                "certificate.submit": ("revocation", "suspension", "release")}
    for prefix, values in families.items():
        for value in values:
            assert f"{prefix}.{value}" in i18n.CATALOG, f"{prefix}.{value}"
    for kind in ("revocation", "suspension", "release"):
        assert f"certificate.action.{kind}.hint" in i18n.CATALOG


def test_templates_hold_no_text_outside_the_catalogue() -> None:
    assert_no_literal_text(TEMPLATES.glob("*.html"))


def test_language_switch_follows_the_session(clerk_client) -> None:
    zh = clerk_client.get("/ra/officials").get_data(as_text=True)
    assert 'lang="zh-CN"' in zh and "工作人员" in zh
    switched = clerk_client.get("/ra/lang/en", query_string={"next": "/ra/officials"})
    assert switched.status_code == 303 and switched.headers["Location"] == "/ra/officials"
    en = clerk_client.get("/ra/officials").get_data(as_text=True)
    assert '<html lang="en">' in en and "Officials" in en and "工作人员" not in en
    assert "中文" in en  # the way back
    assert "Register an official" in clerk_client.get("/ra/officials/new").get_data(
        as_text=True)
    token = page_token(clerk_client)
    assert token  # forms still carry the session's token in English
    clerk_client.get("/ra/lang/zh")
    assert "工作人员" in clerk_client.get("/ra/officials").get_data(as_text=True)


def test_login_page_language_comes_from_the_cookie(app) -> None:
    client = app.test_client()
    client.get("/ra/lang/en", query_string={"next": "/ra/login"})
    page = client.get("/ra/login").get_data(as_text=True)
    assert "Operator login" in page and "操作员登录" not in page
    client.get("/ra/lang/xx")  # an unknown language is Chinese
    assert "操作员登录" in client.get("/ra/login").get_data(as_text=True)
