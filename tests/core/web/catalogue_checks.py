"""Checks every UI's string catalogue must pass, shared by tests/ra/web/test_i18n.py,
tests/apps/sso/test_i18n.py and tests/apps/exchange/web/test_i18n.py (each keeps the checks
that depend on its own data: keys built from its states, its language switch)."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from pathlib import Path

from core.web.i18n import LANGUAGES

#: ``_("some.key")`` in a template or a module.
KEY_CALL = re.compile(r"""_\(\s*["']([a-z][\w.\-]*)["']""")
#: The shell's layout (core/web/templates/ui/layout.html) is a template of every UI.
LAYOUT = Path(__file__).resolve().parents[3] / "core" / "web" / "templates" / "ui" / "layout.html"


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def assert_both_languages(catalog: Mapping[str, Mapping[str, str]]) -> None:
    """Every key has non-empty Chinese and English with the same placeholders."""
    assert catalog, "empty catalogue"
    for key, entry in catalog.items():
        assert set(entry) == set(LANGUAGES), key
        assert all(entry[lang].strip() for lang in LANGUAGES), key
        assert placeholders(entry["zh"]) == placeholders(entry["en"]), key


def keys_used(paths: Iterable[Path], *extra: re.Pattern[str]) -> set[str]:
    """The literal keys ``paths`` ask for (``extra``: patterns of keys named other ways)."""
    used: set[str] = set()
    for path in paths:
        source = path.read_text(encoding="utf-8")
        for pattern in (KEY_CALL, *extra):
            used |= set(pattern.findall(source))
    return used


def literal_text(template: Path) -> str:
    """What a reader would see of ``template`` that is not from the catalogue: Jinja blocks,
    comments, expressions, tags, macro-added attributes and &nbsp; stripped."""
    text = template.read_text(encoding="utf-8")
    text = re.sub(r"\{#.*?#\}", "", text, flags=re.S)
    text = re.sub(r"\{%.*?%\}", "", text, flags=re.S)
    text = re.sub(r"\{\{.*?\}\}", "", text, flags=re.S)
    text = re.sub(r"<[^>]*>", "", text, flags=re.S)
    text = re.sub(r'[\w-]+="[^"]*"', "", text)
    return text.replace("&nbsp;", "")


def assert_no_literal_text(templates: Iterable[Path], allowed: str = "") -> None:
    """Only punctuation and digits may stay outside the catalogue (``allowed``: more)."""
    permitted = set(" \n\t·›/()#,:—") | set(string.digits) | set(allowed)
    for template in templates:
        left = {ch for ch in literal_text(template) if ch not in permitted}
        assert not left, f"{template.name}: literal text {''.join(sorted(left))!r}"
