"""The machinery behind each UI's string catalogue: Simplified Chinese first, English beside it.

A plain dictionary per package rather than gettext catalogues: each UI has a few hundred
strings, both languages sit side by side where a reviewer can compare them, and each package's
test checks that every key has both. The strings stay in the packages (ra/web/i18n.py,
apps/sso/i18n.py, apps/exchange/web/i18n.py); this class is what they had each copied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

log = logging.getLogger("govpki.web")

LANGUAGES: Final = ("zh", "en")
DEFAULT_LANGUAGE: Final = "zh"


class Catalogue:
    """One UI's strings. ``entries`` maps a dotted English key to its (Chinese, English) pair;
    ``{name}`` placeholders are filled by :meth:`translate`. ``label`` names the UI in the
    log line of a missing key."""

    def __init__(self, entries: Mapping[str, tuple[str, str]], *, label: str) -> None:
        self.label = label
        #: key → {"zh": …, "en": …}
        self.entries: dict[str, dict[str, str]] = {
            key: {"zh": zh, "en": en} for key, (zh, en) in entries.items()}

    def has(self, key: str) -> bool:
        return key in self.entries

    def translate(self, key: str, lang: str, **kwargs: Any) -> str:
        """The text of ``key`` in ``lang`` (Chinese when the language is unknown).

        A missing key shows itself (and is logged) rather than failing the page: the
        catalogue tests catch it before release, and the user can still work.
        """
        entry = self.entries.get(key)
        if entry is None:
            log.warning("%s text %r is missing from the catalogue", self.label, key)
            return key
        text = entry.get(lang) or entry[DEFAULT_LANGUAGE]
        return text.format(**kwargs) if kwargs else text

    def field_label(self, field: str, lang: str) -> str:
        """A form field's label ("field.<name>"), for marking the field an error names."""
        key = f"field.{field}"
        return self.translate(key, lang) if key in self.entries else field

    def error_title_key(self, kind: str, status: int) -> str:
        """An error page's title: by the error's kind when known, else by HTTP status."""
        if f"error.kind.{kind}" in self.entries:
            return f"error.kind.{kind}"
        if f"error.status.{status}" in self.entries:
            return f"error.status.{status}"
        return "error.status.400" if status < 500 else "error.status.500"


def other_language(lang: str) -> str:
    """The language the switch in the top bar offers."""
    return "en" if lang == "zh" else "zh"


def language_or_default(code: str | None) -> str:
    """A language code from a cookie or session, or Chinese when it is not one we speak."""
    return code if code in LANGUAGES else DEFAULT_LANGUAGE
