"""The SSO pages' string catalogue: both languages for every key, every key the pages and the
shell's layout use present, no text outside the catalogue in the frame (the checks every UI
shares are tests/core/web/catalogue_checks.py)."""

from __future__ import annotations

from pathlib import Path

import apps.sso
from apps.sso import i18n
from tests.core.web.catalogue_checks import (
    LAYOUT,
    assert_both_languages,
    assert_no_literal_text,
    keys_used,
)

HERE = Path(apps.sso.__file__).parent
TEMPLATES = HERE / "templates" / "sso"


def test_every_key_has_both_languages_with_the_same_placeholders() -> None:
    assert_both_languages(i18n.CATALOG)


def test_every_key_the_pages_use_is_in_the_catalogue() -> None:
    used = keys_used([*TEMPLATES.glob("*.html"), LAYOUT, HERE / "views.py"])
    assert len(used) > 20, "the key scan found too little: the pattern is broken"
    missing = sorted(k for k in used if k not in i18n.CATALOG and not k.endswith("."))
    assert missing == []


def test_the_frame_holds_no_text_outside_the_catalogue() -> None:
    """base.html only: login.html still writes its password-form labels and the command line
    in both languages at once (用户名 / User name), an SSO page decision left as it is."""
    assert_no_literal_text([TEMPLATES / "base.html", LAYOUT])
