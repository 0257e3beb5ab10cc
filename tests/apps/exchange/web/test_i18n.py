"""The exchange pages' string catalogue: both languages for every key, every key the pages
use present, keys built from data covering every value, no text outside the catalogue (the
checks every UI shares are tests/core/web/catalogue_checks.py)."""

from __future__ import annotations

from pathlib import Path

import apps.exchange.web
from apps.exchange import models
from apps.exchange.receipts import KINDS
from apps.exchange.web import i18n
from tests.core.web.catalogue_checks import (
    LAYOUT,
    assert_both_languages,
    assert_no_literal_text,
    keys_used,
)

HERE = Path(apps.exchange.web.__file__).parent
TEMPLATES = HERE / "templates" / "exchange"


def test_every_key_has_both_languages_with_the_same_placeholders() -> None:
    assert_both_languages(i18n.CATALOG)


def test_every_key_the_pages_use_is_in_the_catalogue() -> None:
    modules = [m for m in HERE.glob("*.py") if m.name != "i18n.py"]
    used = keys_used([*TEMPLATES.glob("*.html"), LAYOUT, *modules])
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
    assert_no_literal_text(TEMPLATES.glob("*.html"), allowed="：、（）")
