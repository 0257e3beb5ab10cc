"""policies/exchange.yaml validated once into a frozen :class:`ExchangePolicy`.

What may travel (classifications), how fast a document must be signed for (deadline per
urgency), and how large a package may be are data, reviewed like the certificate profiles.
Unknown keys, missing keys and wrong types are reported together with their field paths, as
policies/ does for profiles and authorisation rules.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml

import policies
from apps.exchange.errors import ClassifiedRefused, ExchangePolicyInvalid, ValidationError
from policies.validation import Check, duplicate_keys, fields

POLICY_FILE: Final = Path(policies.__file__).resolve().parent / "exchange.yaml"
_LIMITS: Final = ("max_body_bytes", "max_attachment_bytes", "max_attachments",
                  "max_package_bytes", "max_recipients", "max_title_chars",
                  "max_number_chars", "max_reason_chars")
#: What the tables and the header parser can hold (apps/exchange/models.py, header.MAX_TEXT);
#: CMS holds at most 256 MiB of plaintext in memory (signing.cms.MAX_ATTACHED_BYTES).
_CEILINGS: Final = {"max_number_chars": 128, "max_title_chars": 1000, "max_reason_chars": 1000,
                    "max_package_bytes": 200 * 1024 * 1024, "max_attachments": 1000}


@dataclass(frozen=True)
class Urgency:
    name: str  # 特急 / 加急 / 平急: what the header carries
    en: str
    hours: int


@dataclass(frozen=True)
class Classification:
    name: str  # 非密 / 秘密 / ...
    en: str
    allowed: bool


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_attachment_bytes: int
    max_attachments: int
    max_package_bytes: int
    max_recipients: int
    max_title_chars: int
    max_number_chars: int
    max_reason_chars: int


@dataclass(frozen=True)
class ExchangePolicy:
    ca: str
    urgencies: Mapping[str, Urgency]
    classifications: Mapping[str, Classification]
    limits: Limits

    def urgency(self, name: str) -> Urgency:
        found = self.urgencies.get(name)
        if found is None:
            raise ValidationError(f"urgency must be one of {', '.join(self.urgencies)}, not "
                                  f"{name!r}", field="urgency")
        return found

    def deadline(self, urgency: str, sent_at: dt.datetime) -> dt.datetime:
        """The sign-for deadline (签收时限) of a document sent at ``sent_at``."""
        return sent_at + dt.timedelta(hours=self.urgency(urgency).hours)

    def check_classification(self, name: str) -> Classification:
        """The classification, or ValidationError (unknown) / ClassifiedRefused (may not
        travel on this network)."""
        found = self.classifications.get(name)
        if found is None:
            raise ValidationError(f"classification must be one of "
                                  f"{', '.join(self.classifications)}, not {name!r}",
                                  field="classification")
        if not found.allowed:
            allowed = ", ".join(c.name for c in self.classifications.values() if c.allowed)
            raise ClassifiedRefused(
                f"a document classified {found.name} ({found.en}) may not be exchanged on this "
                f"network: only {allowed} documents travel here", classification=found.name)
        return found


def _positive_int(check: Check, value: object, path: str) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        check.fail(path, f"must be a positive integer, got {value!r}")
        return None
    return value


def _text(check: Check, value: object, path: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        check.fail(path, "must be a non-empty string")
        return None
    return value


def policy_from_mapping(data: object, *, source: str = "exchange.yaml") -> ExchangePolicy:
    """Validate a parsed mapping, or raise with every problem found."""
    check = Check()
    top = fields(check, data, "", required=("ca", "urgencies", "classifications", "limits"))
    urgencies: dict[str, Urgency] = {}
    classifications: dict[str, Classification] = {}
    limit_values: dict[str, int] = {}
    ca = None
    if top is not None:
        ca = _text(check, top.get("ca"), "ca")
        raw_urgencies = top.get("urgencies")
        if not isinstance(raw_urgencies, dict) or not raw_urgencies:
            check.fail("urgencies", "must be a non-empty mapping")
        else:
            for name, spec in raw_urgencies.items():
                path = f"urgencies.{name}"
                item = fields(check, spec, path, required=("en", "hours"))
                if item is None or not isinstance(name, str):
                    continue
                en = _text(check, item.get("en"), f"{path}.en")
                hours = _positive_int(check, item.get("hours"), f"{path}.hours")
                if en and hours:
                    urgencies[name] = Urgency(name, en, hours)
        raw_classes = top.get("classifications")
        if not isinstance(raw_classes, dict) or not raw_classes:
            check.fail("classifications", "must be a non-empty mapping")
        else:
            for name, spec in raw_classes.items():
                path = f"classifications.{name}"
                item = fields(check, spec, path, required=("en", "allowed"))
                if item is None or not isinstance(name, str):
                    continue
                en = _text(check, item.get("en"), f"{path}.en")
                allowed = item.get("allowed")
                if not isinstance(allowed, bool):
                    check.fail(f"{path}.allowed", "must be true or false")
                elif en:
                    classifications[name] = Classification(name, en, allowed)
            if classifications and not any(c.allowed for c in classifications.values()):
                check.fail("classifications", "at least one classification must be allowed")
        raw_limits = fields(check, top.get("limits"), "limits", required=_LIMITS)
        if raw_limits is not None:
            for key in _LIMITS:
                if key in raw_limits:
                    value = _positive_int(check, raw_limits[key], f"limits.{key}")
                    if value is not None and value > _CEILINGS.get(key, value):
                        check.fail(f"limits.{key}", f"must be at most {_CEILINGS[key]}")
                    elif value is not None:
                        limit_values[key] = value
    if check.problems:
        joined = "; ".join(str(p) for p in check.problems)
        raise ExchangePolicyInvalid(f"{source}: {joined}", source=source,
                                    field=check.problems[0].path)
    assert ca is not None
    return ExchangePolicy(ca=ca, urgencies=MappingProxyType(urgencies),
                          classifications=MappingProxyType(classifications),
                          limits=Limits(**limit_values))


def policy_from_yaml(text: str, *, source: str = "exchange.yaml") -> ExchangePolicy:
    try:
        duplicates = duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        data: Any = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExchangePolicyInvalid(f"{source}: not valid YAML: {first}", source=source) \
            from None
    if duplicates:
        raise ExchangePolicyInvalid(f"{source}: {'; '.join(str(p) for p in duplicates)}",
                                    source=source)
    return policy_from_mapping(data, source=source)


def load_policy(path: Path) -> ExchangePolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExchangePolicyInvalid(f"{path.name}: cannot be read ({exc})") from None
    return policy_from_yaml(text, source=path.name)


@functools.lru_cache(maxsize=1)
def get_policy() -> ExchangePolicy:
    """The packaged policy, validated once per process."""
    return load_policy(POLICY_FILE)
