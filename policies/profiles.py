"""Certificate profiles: YAML data files validated once into frozen runtime objects.

A profile says what a certificate of one kind may contain: key types, validity, key usage per
key family, extended key usage, policies, which revocation pointers it carries and what its
subject may say. The files live in ``policies/profiles/`` (file name = profile name) so the CA
administrator can read and review them without reading code; ca/ turns a :class:`Profile` into
extensions and never decides those things itself (Boulder's ``issuance.ProfileConfig``).

Validation is strict and eager because a profile mistake is a mis-issued certificate for every
request that uses it: unknown fields are errors (a misspelt ``extended_key_usages`` would
otherwise silently drop the EKU), duplicate YAML keys are errors (PyYAML keeps the last one
quietly), and every problem is reported with its exact field path, e.g.
``official-signing.yaml: key_usage.ec[1]: 'keyEncipherment' is not allowed on EC keys``.
The field reference is docs/profiles.md.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml

from core.errors import ConfigError
from policies.errors import KeyTypeNotAllowed, ProfileInvalid, ProfileNotFound, ProfileProblem
from policies.names import ATTRIBUTE_ORDER, SAN_TYPES, SubjectAltNameRules, SubjectRules
from policies.oids import ANY_POLICY, EKU_OIDS
from policies.validation import Check, duplicate_keys, fields
from policies.validation import describe as _describe

__all__ = [
    "KEY_TYPE_FAMILIES",
    "KEY_USAGE_NAMES",
    "PROFILES_DIR",
    "CrlPolicy",
    "Description",
    "ExtendedKeyUsagePolicy",
    "KeyUsagePolicy",
    "Profile",
    "SubjectAltNameRules",
    "SubjectRules",
    "get_profile",
    "key_family",
    "load_profile",
    "load_profiles",
    "profile_from_mapping",
    "profile_from_yaml",
]

PROFILES_DIR: Final = Path(__file__).resolve().parent / "profiles"

# The key-type strings of hsm/algorithms.py's KeyType and their families. policies may not import
# hsm, so they are repeated here; tests/policies/test_profiles.py fails if the two drift apart.
KEY_TYPE_FAMILIES: Final[Mapping[str, str]] = MappingProxyType({
    "rsa-2048": "rsa",
    "rsa-3072": "rsa",
    "rsa-4096": "rsa",
    "ec-p256": "ec",
    "ec-p384": "ec",
})
KEY_FAMILIES: Final[tuple[str, ...]] = ("rsa", "ec")

# RFC 5280 §4.2.1.3 names in bit order, and the keyword arguments of pyca's x509.KeyUsage.
_X509_FLAGS: Final[dict[str, str]] = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}
KEY_USAGE_NAMES: Final[tuple[str, ...]] = tuple(_X509_FLAGS)
# X.509 (2008) renamed nonRepudiation to contentCommitment; both spellings are accepted.
_KEY_USAGE_ALIASES: Final[dict[str, str]] = {"contentCommitment": "nonRepudiation"}

# Bits a key family cannot have, and why (pkilint refuses them as errors).
_FORBIDDEN_BITS: Final[dict[str, dict[str, str]]] = {
    "rsa": {
        "keyAgreement": "RFC 4055 §1.2: RSA keys do not do key agreement",
    },
    "ec": {
        "keyEncipherment": "RFC 8813 §3; EC encryption certificates use keyAgreement",
        "dataEncipherment": "RFC 8813 §3; EC encryption certificates use keyAgreement",
    },
}

# RFC 5280 §4.2.1.12 (documentSigning: RFC 9336 §3): key usage bits consistent with a purpose.
_EKU_NEEDS_ONE_OF: Final[dict[str, tuple[str, ...]]] = {
    "serverAuth": ("digitalSignature", "keyEncipherment", "keyAgreement"),
    "clientAuth": ("digitalSignature", "keyAgreement"),
    "codeSigning": ("digitalSignature",),
    "emailProtection": ("digitalSignature", "nonRepudiation", "keyEncipherment", "keyAgreement"),
    "timeStamping": ("digitalSignature", "nonRepudiation"),
    "OCSPSigning": ("digitalSignature", "nonRepudiation"),
    "documentSigning": ("digitalSignature", "nonRepudiation"),
}

_EKU_NAMES: Final[dict[str, str]] = {oid: name for name, oid in EKU_OIDS.items()}

_NAME: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_OID: Final = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")
_MAX_VALIDITY_DAYS: Final = 36525  # 100 years: a larger number is a typo, not a policy
# A CRL that promises no update for more than a year is a typo, not a policy (CA/B BR 4.9.7
# allows twelve months for CA certificates' CRLs; govpki is not bound by it but shares the sense).
_MAX_CRL_HOURS: Final = 366 * 24


def key_family(key_type: str) -> str:
    """The family (``rsa`` or ``ec``) of a registry key-type string such as ``ec-p256``."""
    try:
        return KEY_TYPE_FAMILIES[key_type]
    except (KeyError, TypeError):
        raise KeyTypeNotAllowed(
            f"unknown key type {key_type!r} (known: {', '.join(KEY_TYPE_FAMILIES)})",
            key_type=str(key_type),
        ) from None


@dataclass(frozen=True)
class Description:
    """What the profile is for, in English (docs, logs) and Chinese (the RA's pages)."""

    en: str
    zh: str

    def __str__(self) -> str:
        return f"{self.en} / {self.zh}"


@dataclass(frozen=True)
class KeyUsagePolicy:
    """The keyUsage bits for one key family, as RFC 5280 names, in the order the file gave."""

    usages: tuple[str, ...]
    critical: bool = True

    def x509_flags(self) -> dict[str, bool]:
        """Keyword arguments for ``cryptography.x509.KeyUsage`` (all nine, each True or False)."""
        return {flag: name in self.usages for name, flag in _X509_FLAGS.items()}


@dataclass(frozen=True)
class ExtendedKeyUsagePolicy:
    """The extendedKeyUsage purposes (names from RFC 5280 §4.2.1.12 or dotted OIDs)."""

    usages: tuple[str, ...]
    critical: bool = False

    @property
    def oids(self) -> tuple[str, ...]:
        """The purposes as dotted OIDs, names translated, in the file's order."""
        return tuple(EKU_OIDS.get(u, u) for u in self.usages)


@dataclass(frozen=True)
class CrlPolicy:
    """How long a CA's CRLs are valid: nextUpdate = thisUpdate + these hours (RFC 5280
    §5.1.2.5). The delta CRL's is shorter, so relying parties see changes sooner without
    fetching the whole list (§5.2.4)."""

    next_update_hours: int
    delta_next_update_hours: int


@dataclass(frozen=True)
class Profile:
    """One validated certificate profile. Build it with :func:`load_profile` and friends.

    ``key_usage`` maps a key family (``rsa``/``ec``) to its :class:`KeyUsagePolicy`; it has an
    entry for exactly the families of ``key_types``. ``subject_rules`` and ``san_rules`` come
    from the file's ``subject`` and ``subject_alt_name`` sections (``san_rules`` is None when
    the certificate carries no subjectAltName). Validity clipping to the issuer's validity
    is ca/'s job; ``validity_days`` is the most this profile asks for.
    """

    name: str
    description: Description
    key_types: tuple[str, ...]
    validity_days: int
    is_ca: bool
    path_length: int | None
    key_usage: Mapping[str, KeyUsagePolicy] = field(hash=False)
    extended_key_usage: ExtendedKeyUsagePolicy | None
    ocsp_nocheck: bool
    certificate_policies: tuple[str, ...]
    crl_distribution_point: bool
    aia_ocsp: bool
    aia_ca_issuers: bool
    subject_rules: SubjectRules
    san_rules: SubjectAltNameRules | None
    # CA profiles only: validity of the CRLs the CA publishes (None: ca/ uses its defaults).
    crl: CrlPolicy | None = None

    def allows_key_type(self, key_type: str) -> bool:
        """Whether a subject key of this registry key type (``ec-p256``...) may be certified."""
        return key_type in self.key_types

    def key_usage_for(self, key_family: str) -> KeyUsagePolicy:
        """The keyUsage for a subject key of ``key_family`` (``rsa`` or ``ec``).

        Key usage depends on the key: keyEncipherment on an EC key is an error (RFC 8813), so
        there is no single key usage per profile. Raises :class:`KeyTypeNotAllowed` for a family
        this profile does not certify.
        """
        try:
            return self.key_usage[key_family]
        except (KeyError, TypeError):
            raise KeyTypeNotAllowed(
                f"profile '{self.name}' does not certify {key_family!r} keys "
                f"(it allows: {', '.join(self.key_types)})",
                profile=self.name, key_family=str(key_family),
            ) from None


# ---------------------------------------------------------------------------------------------
# Validation: every helper reports into _Check with a field path and returns None when invalid,
# so one pass finds every problem and cross-field checks run only on fields that parsed.

_MISSING: Final = object()


class _Check(Check):
    def error(self, source: str) -> ProfileInvalid:
        joined = "; ".join(str(p) for p in self.problems)
        return ProfileInvalid(
            f"{source}: {joined}", tuple(self.problems),
            source=source, field=self.problems[0].path,
        )


def _fields(
    check: _Check, value: object, path: str, *, required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> dict[str, Any] | None:
    return fields(check, value, path, required=required, optional=optional,
                  top_level="the profile must be a mapping of fields")


def _bool(check: _Check, value: object, path: str) -> bool | None:
    if value is _MISSING:
        return None
    if not isinstance(value, bool):
        check.fail(path, f"must be true or false, got {_describe(value)}")
        return None
    return value


def _strings(
    check: _Check, value: object, path: str, *, non_empty: bool, number_hint: str = ""
) -> list[str] | None:
    """A list of non-empty strings, or None with every bad item reported by its index."""
    if value is _MISSING:
        return None
    if not isinstance(value, list):
        check.fail(path, f"must be a list, got {_describe(value)}")
        return None
    if non_empty and not value:
        check.fail(path, "must not be empty")
        return None
    out: list[str] = []
    for index, item in enumerate(value):
        if isinstance(item, str) and item:
            out.append(item)
        else:
            hint = number_hint if isinstance(item, int | float) and item is not True else ""
            check.fail(
                f"{path}[{index}]", f"must be a non-empty string, got {_describe(item)}{hint}"
            )
    return out if len(out) == len(value) else None


def _description(check: _Check, value: object) -> Description | None:
    if value is _MISSING:
        return None
    fields = _fields(check, value, "description", required=("en", "zh"))
    if fields is None:
        return None
    texts: dict[str, str] = {}
    for lang in ("en", "zh"):
        text = fields.get(lang, _MISSING)
        if text is _MISSING:
            continue
        if isinstance(text, str) and text.strip():
            texts[lang] = text.strip()
        else:
            check.fail(f"description.{lang}", f"must be non-empty text, got {_describe(text)}")
    if len(texts) != 2:
        return None
    return Description(en=texts["en"], zh=texts["zh"])


def _key_types(check: _Check, value: object) -> tuple[str, ...] | None:
    items = _strings(check, value, "key_types", non_empty=True)
    if items is None:
        return None
    ok = True
    for index, item in enumerate(items):
        if item not in KEY_TYPE_FAMILIES:
            check.fail(
                f"key_types[{index}]",
                f"unknown key type {item!r} (known: {', '.join(KEY_TYPE_FAMILIES)})",
            )
            ok = False
        elif item in items[:index]:
            check.fail(f"key_types[{index}]", f"{item!r} is listed twice")
            ok = False
    return tuple(items) if ok else None


def _validity_days(check: _Check, value: object) -> int | None:
    if value is _MISSING:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        check.fail("validity_days", f"must be a positive integer, got {_describe(value)}")
        return None
    if value > _MAX_VALIDITY_DAYS:
        check.fail(
            "validity_days", f"must be at most {_MAX_VALIDITY_DAYS} (100 years), got {value}"
        )
        return None
    return value


def _path_length(check: _Check, value: object, is_ca: bool | None) -> int | None:
    if is_ca is False and value is not _MISSING:
        check.fail(
            "path_length",
            "only CA profiles have a path length (RFC 5280 §4.2.1.9: pathLenConstraint needs cA)",
        )
        return None
    if value is _MISSING:
        if is_ca:
            check.fail("path_length", "CA profiles must give path_length (null for no limit)")
        return None
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        check.fail("path_length", f"must be a non-negative integer or null, got {_describe(value)}")
        return None
    return value


def _key_usage(
    check: _Check, value: object, is_ca: bool | None
) -> dict[str, KeyUsagePolicy] | None:
    if value is _MISSING:
        return None
    fields = _fields(check, value, "key_usage", required=(), optional=("critical", *KEY_FAMILIES))
    if fields is None:
        return None
    critical = _bool(check, fields.get("critical", True), "key_usage.critical")
    families = [f for f in KEY_FAMILIES if f in fields]
    if not families:
        check.fail("key_usage", "needs an entry for at least one key family (rsa, ec)")
    result: dict[str, KeyUsagePolicy] = {}
    for family in families:
        path = f"key_usage.{family}"
        items = _strings(check, fields[family], path, non_empty=True)
        if items is None:
            continue
        names: list[str] = []
        for index, item in enumerate(items):
            where = f"{path}[{index}]"
            name = _KEY_USAGE_ALIASES.get(item, item)
            if name not in _X509_FLAGS:
                close = difflib.get_close_matches(item, KEY_USAGE_NAMES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                check.fail(where, f"unknown key usage {item!r}{hint}")
            elif name in _FORBIDDEN_BITS[family]:
                check.fail(
                    where,
                    f"{item!r} is not allowed on {family.upper()} keys "
                    f"({_FORBIDDEN_BITS[family][name]})",
                )
            elif name in names:
                check.fail(where, f"{item!r} is listed twice")
            elif name == "keyCertSign" and is_ca is False:
                check.fail(where, "'keyCertSign' is only for CA profiles (is_ca: true)")
            else:
                names.append(name)
        if len(names) != len(items):
            continue
        for bit in ("encipherOnly", "decipherOnly"):
            if bit in names and "keyAgreement" not in names:
                check.fail(
                    path, f"'{bit}' means nothing without 'keyAgreement' (RFC 5280 §4.2.1.3)"
                )
        if "encipherOnly" in names and "decipherOnly" in names:
            check.fail(path, "'encipherOnly' and 'decipherOnly' cannot both be set")
        if is_ca:
            for bit in ("keyCertSign", "cRLSign"):
                if bit not in names:
                    check.fail(path, f"CA profiles must include '{bit}'")
        result[family] = KeyUsagePolicy(tuple(names), critical is not False)
    if is_ca and critical is False:
        check.fail("key_usage.critical", "must be true for CA profiles (RFC 5280 §4.2.1.3)")
    if critical is None or len(result) != len(families) or not families:
        return None
    return result


def _extended_key_usage(check: _Check, value: object) -> ExtendedKeyUsagePolicy | None:
    path = "extended_key_usage"
    if value is _MISSING or value is None:
        return None
    fields = _fields(check, value, path, required=("usages",), optional=("critical",))
    if fields is None:
        return None
    critical = _bool(check, fields.get("critical", False), f"{path}.critical")
    items = _strings(check, fields.get("usages", _MISSING), f"{path}.usages", non_empty=True)
    if items is None or critical is None:
        return None
    seen: list[str] = []
    for index, item in enumerate(items):
        where = f"{path}.usages[{index}]"
        if item not in EKU_OIDS and not _OID.fullmatch(item):
            close = difflib.get_close_matches(item, list(EKU_OIDS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            check.fail(
                where,
                f"unknown purpose {item!r}{hint}: use one of {', '.join(EKU_OIDS)} or a dotted OID",
            )
            return None
        oid = EKU_OIDS.get(item, item)
        if oid in seen:
            check.fail(where, f"{item!r} is listed twice")
            return None
        seen.append(oid)
    return ExtendedKeyUsagePolicy(tuple(items), critical)


def _oid_problem(oid: str) -> str | None:
    if not _OID.fullmatch(oid):
        return "is not a dotted-decimal OID (digits separated by dots, no leading zeros)"
    first, second = (int(arc) for arc in oid.split(".")[:2])
    if first > 2:
        return "is not a valid OID: the first arc is 0, 1 or 2"
    if first < 2 and second > 39:
        return "is not a valid OID: under arcs 0 and 1 the second arc is at most 39"
    return None


def _certificate_policies(check: _Check, value: object) -> tuple[str, ...] | None:
    if value is _MISSING:
        return ()
    items = _strings(
        check, value, "certificate_policies", non_empty=False,
        number_hint=" (quote the OID: YAML read it as a number)",
    )
    if items is None:
        return None
    ok = True
    for index, item in enumerate(items):
        problem = _oid_problem(item)
        if problem is None and item in items[:index]:
            problem = "is listed twice"
        if problem is not None:
            check.fail(f"certificate_policies[{index}]", f"{item!r} {problem}")
            ok = False
    return tuple(items) if ok else None


def _subject(check: _Check, value: object) -> SubjectRules | None:
    if value is _MISSING:
        return None
    fields = _fields(check, value, "subject", required=("required",), optional=("optional",))
    if fields is None:
        return None
    lists: dict[str, list[str]] = {}
    for part in ("required", "optional"):
        raw = fields.get(part, [] if part == "optional" else _MISSING)
        items = _strings(check, raw, f"subject.{part}", non_empty=part == "required")
        if items is None:
            continue
        good: list[str] = []
        for index, item in enumerate(items):
            where = f"subject.{part}[{index}]"
            if item not in ATTRIBUTE_ORDER:
                check.fail(
                    where,
                    f"unknown subject attribute {item!r} (known: {', '.join(ATTRIBUTE_ORDER)})",
                )
            elif item in good:
                check.fail(where, f"{item!r} is listed twice")
            elif part == "optional" and item in lists.get("required", []):
                check.fail(where, f"{item!r} is already in subject.required")
            else:
                good.append(item)
        if len(good) == len(items):
            lists[part] = good
    if len(lists) != 2:
        return None
    return SubjectRules(required=tuple(lists["required"]), optional=tuple(lists["optional"]))


def _subject_alt_name(check: _Check, value: object) -> SubjectAltNameRules | None:
    path = "subject_alt_name"
    if value is _MISSING or value is None:
        return None
    fields = _fields(check, value, path, required=("required", "types"))
    if fields is None:
        return None
    required = _bool(check, fields.get("required", _MISSING), f"{path}.required")
    items = _strings(check, fields.get("types", _MISSING), f"{path}.types", non_empty=True)
    if items is None or required is None:
        return None
    for index, item in enumerate(items):
        if item not in SAN_TYPES:
            check.fail(
                f"{path}.types[{index}]",
                f"unknown name type {item!r} (known: {', '.join(SAN_TYPES)})",
            )
            return None
        if item in items[:index]:
            check.fail(f"{path}.types[{index}]", f"{item!r} is listed twice")
            return None
    return SubjectAltNameRules(required=required, types=tuple(items))


def _hours(check: _Check, value: object, path: str) -> int | None:
    if value is _MISSING:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        check.fail(path, f"must be a positive integer (hours), got {_describe(value)}")
        return None
    if value > _MAX_CRL_HOURS:
        check.fail(path, f"must be at most {_MAX_CRL_HOURS} (366 days), got {value}")
        return None
    return value


def _crl(check: _Check, value: object, is_ca: bool | None) -> CrlPolicy | None:
    """The optional ``crl`` section of a CA profile: how long its full and delta CRLs last."""
    path = "crl"
    if value is _MISSING:
        return None
    if is_ca is False:
        check.fail(path, "only CA profiles publish CRLs (is_ca: true)")
        return None
    fields = _fields(check, value, path,
                     required=("next_update_hours", "delta_next_update_hours"))
    if fields is None:
        return None
    full = _hours(check, fields.get("next_update_hours", _MISSING), f"{path}.next_update_hours")
    delta = _hours(check, fields.get("delta_next_update_hours", _MISSING),
                   f"{path}.delta_next_update_hours")
    if full is None or delta is None:
        return None
    if delta > full:
        check.fail(f"{path}.delta_next_update_hours",
                   f"must not exceed next_update_hours ({full}): a delta CRL is published "
                   "more often than the full CRL it refers to (RFC 5280 §5.2.4)")
        return None
    return CrlPolicy(next_update_hours=full, delta_next_update_hours=delta)


_REQUIRED_FIELDS: Final = (
    "description", "key_types", "validity_days", "is_ca", "key_usage",
    "crl_distribution_point", "aia_ocsp", "aia_ca_issuers", "subject",
)
_OPTIONAL_FIELDS: Final = (
    "path_length", "extended_key_usage", "ocsp_nocheck", "certificate_policies",
    "subject_alt_name", "crl",
)


def profile_from_mapping(data: object, name: str, *, source: str | None = None) -> Profile:
    """Validate an already-parsed mapping (what ``yaml.safe_load`` gives) into a :class:`Profile`.

    Raises :class:`ProfileInvalid` listing every problem with its field path; ``source`` (default
    ``<name>.yaml``) starts the message. Never raises anything else for any input.
    """
    source = source or f"{name}.yaml"
    check = _Check()
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        check.fail("", f"profile name {_describe(name)} must be lower-case letters, digits and "
                       "single hyphens (it is the file name)")
    top = _fields(check, data, "", required=_REQUIRED_FIELDS, optional=_OPTIONAL_FIELDS)
    if top is None:
        raise check.error(source)

    def get(key: str) -> object:
        return top.get(key, _MISSING)

    description = _description(check, get("description"))
    key_types = _key_types(check, get("key_types"))
    validity_days = _validity_days(check, get("validity_days"))
    is_ca = _bool(check, get("is_ca"), "is_ca")
    path_length = _path_length(check, get("path_length"), is_ca)
    key_usage = _key_usage(check, get("key_usage"), is_ca)
    eku = _extended_key_usage(check, get("extended_key_usage"))
    ocsp_nocheck = _bool(check, top.get("ocsp_nocheck", False), "ocsp_nocheck")
    policies = _certificate_policies(check, get("certificate_policies"))
    crl_dp = _bool(check, get("crl_distribution_point"), "crl_distribution_point")
    aia_ocsp = _bool(check, get("aia_ocsp"), "aia_ocsp")
    aia_ca_issuers = _bool(check, get("aia_ca_issuers"), "aia_ca_issuers")
    subject = _subject(check, get("subject"))
    san = _subject_alt_name(check, get("subject_alt_name"))
    crl = _crl(check, get("crl"), is_ca)

    # Cross-field rules.
    if key_types is not None and key_usage is not None:
        wanted = {KEY_TYPE_FAMILIES[k] for k in key_types}
        for family in KEY_FAMILIES:
            if family in wanted and family not in key_usage:
                types = ", ".join(k for k in key_types if KEY_TYPE_FAMILIES[k] == family)
                check.fail(f"key_usage.{family}", f"required for the allowed key types {types}")
            if family in key_usage and family not in wanted:
                check.fail(
                    f"key_usage.{family}",
                    f"key_types allows no {family.upper()} key, so this entry must go",
                )
    if eku is not None:
        _check_eku(check, eku, key_usage)
    if ocsp_nocheck:
        if eku is None or EKU_OIDS["OCSPSigning"] not in eku.oids:
            check.fail("ocsp_nocheck", "only an OCSP signer (extended_key_usage OCSPSigning) "
                                       "carries id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1)")
        if is_ca:
            check.fail("ocsp_nocheck", "a CA certificate cannot be exempt from revocation checks")
        if aia_ocsp:
            check.fail("aia_ocsp", "must be false with ocsp_nocheck: nobody asks OCSP about "
                                   "a certificate that is exempt from revocation checks")
    if policies and is_ca is False and ANY_POLICY in policies:
        index = policies.index(ANY_POLICY)
        check.fail(f"certificate_policies[{index}]", "anyPolicy belongs in CA certificates only")

    if check.problems:
        raise check.error(source)
    assert description is not None and key_types is not None and validity_days is not None
    assert is_ca is not None and key_usage is not None and ocsp_nocheck is not None
    assert policies is not None and crl_dp is not None and aia_ocsp is not None
    assert aia_ca_issuers is not None and subject is not None
    return Profile(
        name=name,
        description=description,
        key_types=key_types,
        validity_days=validity_days,
        is_ca=is_ca,
        path_length=path_length,
        key_usage=MappingProxyType(key_usage),
        extended_key_usage=eku,
        ocsp_nocheck=ocsp_nocheck,
        certificate_policies=policies,
        crl_distribution_point=crl_dp,
        aia_ocsp=aia_ocsp,
        aia_ca_issuers=aia_ca_issuers,
        subject_rules=subject,
        san_rules=san,
        crl=crl,
    )


def _check_eku(
    check: _Check, eku: ExtendedKeyUsagePolicy, key_usage: Mapping[str, KeyUsagePolicy] | None
) -> None:
    """RFC 3161 §2.3 for TSAs and RFC 5280 §4.2.1.12 consistency with key usage."""
    path = "extended_key_usage"
    if EKU_OIDS["timeStamping"] in eku.oids:
        if len(eku.usages) != 1:
            check.fail(f"{path}.usages", "a TSA certificate has timeStamping as its only "
                                         "purpose (RFC 3161 §2.3)")
        if not eku.critical:
            check.fail(f"{path}.critical", "must be true with timeStamping (RFC 3161 §2.3)")
    if key_usage is None:
        return
    for index, usage in enumerate(eku.usages):
        needs = _EKU_NEEDS_ONE_OF.get(_EKU_NAMES.get(usage, usage))
        if needs is None:
            continue
        for family, policy in key_usage.items():
            if not set(needs) & set(policy.usages):
                check.fail(
                    f"{path}.usages[{index}]",
                    f"{usage!r} needs one of {', '.join(needs)} in key_usage.{family} "
                    "(RFC 5280 §4.2.1.12)",
                )


# ---------------------------------------------------------------------------------------------
# Files.


def profile_from_yaml(text: str, name: str, *, source: str | None = None) -> Profile:
    """Parse YAML text (safe loader only) and validate it as the profile ``name``."""
    source = source or f"{name}.yaml"
    try:
        duplicates = duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise _file_error(source, f"not valid YAML: {where}{exc.problem or exc.context}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        # PyYAML raises ValueError for impossible dates such as 2024-13-45.
        raise _file_error(source, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise _file_error(source, "not valid YAML: nested too deeply") from None
    if duplicates:
        check = _Check()
        check.problems.extend(duplicates)
        raise check.error(source)
    return profile_from_mapping(data, name, source=source)


def _file_error(source: str, reason: str) -> ProfileInvalid:
    """A problem with the file as a whole (no field path)."""
    return ProfileInvalid(
        f"{source}: {reason}", (ProfileProblem("", reason),), source=source, field=""
    )


def load_profile(path: str | os.PathLike[str]) -> Profile:
    """Load and validate one profile file; the file name without ``.yaml`` is the profile name."""
    file = Path(path)
    if file.suffix != ".yaml":
        raise _file_error(file.name, "profile files end in .yaml")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileNotFound(f"no profile file {file}", profile=file.stem) from None
    except UnicodeDecodeError:
        raise _file_error(file.name, "not UTF-8 text") from None
    except OSError as exc:
        raise _file_error(file.name, f"cannot be read ({exc.strerror})") from None
    return profile_from_yaml(text, file.stem, source=file.name)


def load_profiles(directory: str | os.PathLike[str] | None = None) -> dict[str, Profile]:
    """Load every ``*.yaml`` profile in ``directory`` (default: the packaged profiles).

    The first invalid file raises :class:`ProfileInvalid`; a ``.yml`` file is refused rather than
    ignored, so a profile never silently goes missing. A missing directory is a
    deployment problem (:class:`core.errors.ConfigError`).
    """
    if directory is None:
        return dict(_packaged_profiles())
    return _load_directory(Path(directory))


def _load_directory(directory: Path) -> dict[str, Profile]:
    if not directory.is_dir():
        raise ConfigError(f"profile directory {directory} does not exist")
    profiles: dict[str, Profile] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        if path.suffix == ".yml":
            raise _file_error(path.name, "profile files end in .yaml (rename it)")
        if path.suffix == ".yaml" and path.is_file():
            profiles[path.stem] = load_profile(path)
    return profiles


@functools.lru_cache(maxsize=1)
def _packaged_profiles() -> Mapping[str, Profile]:
    return MappingProxyType(_load_directory(PROFILES_DIR))


def get_profile(name: str, directory: str | os.PathLike[str] | None = None) -> Profile:
    """The profile called ``name``; :class:`ProfileNotFound` names the known ones otherwise."""
    profiles = _packaged_profiles() if directory is None else load_profiles(directory)
    try:
        return profiles[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(profiles)) or "none"
        raise ProfileNotFound(
            f"unknown profile {name!r} (known: {known})", profile=str(name)
        ) from None
