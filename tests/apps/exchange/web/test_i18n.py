"""The exchange pages' string catalogue: both languages for every key, every key the pages
use present, keys built from data covering every value, no text outside the catalogue."""

from __future__ import annotations

import re
import string
from pathlib import Path

import apps.exchange.web
from apps.exchange import models
from apps.exchange.receipts import KINDS
from apps.exchange.web import i18n

HERE = Path(apps.exchange.web.__file__).parent
TEMPLATES = HERE / "templates" / "exchange"
_KEY_CALL = re.compile(r"""_\(\s*["']([a-z][\w.\-]*)["']""")


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_key_has_both_languages_with_the_same_placeholders() -> None:
    for key, entry in i18n.CATALOG.items():
        assert set(entry) == set(i18n.LANGUAGES), key
        assert all(entry[lang].strip() for lang in i18n.LANGUAGES), key
        assert _placeholders(entry["zh"]) == _placeholders(entry["en"]), key


def test_every_key_the_pages_use_is_in_the_catalogue() -> None:
    used: set[str] = set()
    for path in [*TEMPLATES.glob("*.html"), *HERE.glob("*.py")]:
        if path.name != "i18n.py":
            used |= set(_KEY_CALL.findall(path.read_text(encoding="utf-8")))
    assert len(used) > 50, "the key scan found too little: the pattern is broken"
    missing = sorted(k for k in used if k not in i18n.CATALOG and not k.endswith("."))
    assert missing == []


def test_dynamic_keys_cover_every_value() -> None:
    from signing.cms import RevocationStatus

    families = {"transport": models.TRANSPORT_STATES, "business": models.BUSINESS_STATES,
                "receipt": KINDS, "role": ("main", "copy"),
                "inbox.filter": models.BUSINESS_STATES,
                "doc.revocation": tuple(s.value for s in RevocationStatus),
                "doc.done": ("signed-for", "returned", "completed"),
                "compose": ("sent", "resent")}
    for prefix, values in families.items():
        for value in values:
            assert f"{prefix}.{value}" in i18n.CATALOG, f"{prefix}.{value}"
    from apps.exchange import errors

    for error in vars(errors).values():
        if isinstance(error, type) and issubclass(error, errors.ExchangeError) \
                and error.http_status < 500 and error is not errors.ExchangeError:
            assert i18n.error_title_key(error.kind, error.http_status) != "error.status.400" \
                or error.http_status == 400, error.kind


def test_templates_hold_no_text_outside_the_catalogue() -> None:
    """Strip Jinja, tags and attributes: only punctuation may remain."""
    allowed = set(" \n\t·›/()#,:—：、（）") | set(string.digits)
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        text = re.sub(r"\{#.*?#\}", "", text, flags=re.S)
        text = re.sub(r"\{%.*?%\}", "", text, flags=re.S)
        text = re.sub(r"\{\{.*?\}\}", "", text, flags=re.S)
        text = re.sub(r"<[^>]*>", "", text, flags=re.S)
        left = {ch for ch in text if ch not in allowed}
        assert not left, f"{template.name}: literal text {''.join(sorted(left))!r}"
