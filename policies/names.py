"""Subject names: what a certificate subject may say, and RFC 4514 strings parsed into it.

The CA never trusts a subject from a CSR (DESIGN.md, issuance step 3): the RA builds it from the
subscriber record, and this module is the one place that decides whether it is acceptable. The
rules are the province's, on top of RFC 5280:

* attributes come out in one canonical order, C, ST, L, O, OU, CN (then serialNumber and
  emailAddress, which a profile has to allow explicitly); RFC 4514 input may list them either way
  round, because people copy both OpenSSL's and Windows' renderings;
* ``C`` is always ``CN`` (encoded as PrintableString); every other attribute is UTF8String so
  Chinese names stay exactly as typed — values are never Unicode-normalised, since NFC would
  replace CJK compatibility ideographs that some people's names use;
* lengths follow RFC 5280 Appendix A upper bounds (counted in characters, not bytes);
* no control or invisible formatting characters, no leading or trailing spaces;
* no PRC resident identity number anywhere: a certificate is public and lives for years, and an ID
  number in it is personal information published to every relying party.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from policies.errors import SubjectRuleViolation
from policies.oids import ATTRIBUTE_OIDS

PRINTABLE_STRING: Final = "printableString"
UTF8_STRING: Final = "utf8String"
IA5_STRING: Final = "ia5String"

# C must be China: the province issues only to its own government bodies.
REQUIRED_COUNTRY: Final = "CN"


@dataclass(frozen=True)
class AttributeSpec:
    """What govpki knows about one subject attribute type.

    ``encoding`` is the ASN.1 string type ca/ must use; ``bound`` names the RFC 5280 Appendix A
    upper bound that ``max_length`` comes from, so error messages can cite it.
    """

    name: str
    oid: str
    max_length: int
    encoding: str
    bound: str


ATTRIBUTES: Final[Mapping[str, AttributeSpec]] = {
    spec.name: spec
    for spec in (
        AttributeSpec("C", ATTRIBUTE_OIDS["C"], 2, PRINTABLE_STRING, "ub-country-name-alpha"),
        AttributeSpec("ST", ATTRIBUTE_OIDS["ST"], 128, UTF8_STRING, "ub-state-name"),
        AttributeSpec("L", ATTRIBUTE_OIDS["L"], 128, UTF8_STRING, "ub-locality-name"),
        AttributeSpec("O", ATTRIBUTE_OIDS["O"], 64, UTF8_STRING, "ub-organization-name"),
        AttributeSpec(
            "OU", ATTRIBUTE_OIDS["OU"], 64, UTF8_STRING, "ub-organizational-unit-name"
        ),
        AttributeSpec("CN", ATTRIBUTE_OIDS["CN"], 64, UTF8_STRING, "ub-common-name"),
        AttributeSpec(
            "serialNumber", ATTRIBUTE_OIDS["serialNumber"], 64, PRINTABLE_STRING,
            "ub-serial-number",
        ),
        AttributeSpec(
            "emailAddress", ATTRIBUTE_OIDS["emailAddress"], 255, IA5_STRING,
            "ub-emailaddress-length",
        ),
    )
}

# The order of the RDNs in the certificate (X.501 order: the first RDN is the most general).
ATTRIBUTE_ORDER: Final[tuple[str, ...]] = tuple(ATTRIBUTES)

SAN_TYPES: Final[tuple[str, ...]] = ("dns", "ip", "email")

# RFC 4514 §3 short names, the long names, "OID."-less dotted forms, and the common aliases
# (S for ST as Windows writes it, E for emailAddress), all matched case-insensitively (§2.3).
_ALIASES: Final[dict[str, str]] = {
    "c": "C", "countryname": "C",
    "st": "ST", "s": "ST", "stateorprovincename": "ST",
    "l": "L", "localityname": "L",
    "o": "O", "organizationname": "O",
    "ou": "OU", "organizationalunitname": "OU",
    "cn": "CN", "commonname": "CN",
    "serialnumber": "serialNumber",
    "emailaddress": "emailAddress", "e": "emailAddress",
    **{oid: name for name, oid in ATTRIBUTE_OIDS.items()},
}


@dataclass(frozen=True)
class SubjectRules:
    """Which subject attributes a profile requires and which it merely allows.

    Anything not listed is refused, so serialNumber and emailAddress appear only where a profile
    asks for them. Both tuples are kept in canonical order whatever order they were given in.
    """

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        given = (*self.required, *self.optional)
        for name in given:
            if name not in ATTRIBUTES:
                raise ValueError(
                    f"unknown subject attribute {name!r} (known: {', '.join(ATTRIBUTE_ORDER)})"
                )
        if len(set(given)) != len(given):
            raise ValueError("a subject attribute is listed twice in required/optional")
        object.__setattr__(
            self, "required", tuple(a for a in ATTRIBUTE_ORDER if a in self.required)
        )
        object.__setattr__(
            self, "optional", tuple(a for a in ATTRIBUTE_ORDER if a in self.optional)
        )

    @property
    def allowed(self) -> tuple[str, ...]:
        """Every attribute a subject may carry under these rules, in canonical order."""
        return tuple(a for a in ATTRIBUTE_ORDER if a in self.required or a in self.optional)

    def encoding(self, attribute: str) -> str:
        """The ASN.1 string type ca/ must encode ``attribute`` with (recorded here, not applied)."""
        return ATTRIBUTES[attribute].encoding


@dataclass(frozen=True)
class SubjectAltNameRules:
    """Whether a subjectAltName is required and which name types it may hold (dns, ip, email).

    Servers are named by their DNS names and addresses, not by CN (RFC 6125 §6.4.4), so the
    server profile requires a SAN and leaves CN optional.
    """

    required: bool
    types: tuple[str, ...]

    def __post_init__(self) -> None:
        for kind in self.types:
            if kind not in SAN_TYPES:
                raise ValueError(f"unknown subjectAltName type {kind!r} (known: dns, ip, email)")
        if len(set(self.types)) != len(self.types):
            raise ValueError("a subjectAltName type is listed twice")
        if self.required and not self.types:
            raise ValueError("a required subjectAltName needs at least one allowed type")
        object.__setattr__(self, "types", tuple(t for t in SAN_TYPES if t in self.types))


# ---------------------------------------------------------------------------------------------
# National identity numbers (GB 11643-1999): 6-digit region, 8-digit birth date, 3-digit
# sequence, check character 0-9 or X; the legacy 15-digit form has a 6-digit date and no check.

_ID18_WINDOW: Final = re.compile(r"(?=([0-9]{17}[0-9X]))")
_ID15_EXACT: Final = re.compile(r"(?<![0-9])([0-9]{15})(?![0-9X])")
_ID_ANY: Final = re.compile(r"[0-9]{15}")  # every 18-character ID also contains 15 digits
# Spaces, hyphens, dots and underscores between digits are dropped first, so "630102 1990..."
# or "630102-19900307-1234" does not slip through.
_DIGIT_SEPARATORS: Final = re.compile(r"(?<=[0-9])[ \-._]+(?=[0-9X])")
_GB11643_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_CHECK: Final = "10X98765432"


def contains_national_id(text: str, *, require_checksum: bool = False) -> bool:
    """Whether ``text`` contains what looks like a PRC resident identity number.

    By default any run of 15 or more digits counts (which covers the 18-character form, 17 digits
    plus a digit or X, and the legacy 15-digit form): a mistyped ID number is still personal
    data, so the GB 11643 check character is not required to match. With
    ``require_checksum=True`` only 18-character numbers with a valid check character and a
    plausible birth date, or runs of exactly 15 digits with a plausible birth date, count —
    for callers that must tell ID numbers from other long numbers. Full-width digits and ``ｘ``
    are folded (NFKC) before matching, as Chinese input methods produce them.
    """
    folded = unicodedata.normalize("NFKC", text).upper()
    compact = _DIGIT_SEPARATORS.sub("", folded)
    if not require_checksum:
        return _ID_ANY.search(compact) is not None
    for match in _ID18_WINDOW.finditer(compact):
        candidate = match.group(1)
        if _plausible_date(candidate[6:14]) and _gb11643_check(candidate[:17]) == candidate[17]:
            return True
    return any(
        _plausible_date("19" + m.group(1)[6:12]) for m in _ID15_EXACT.finditer(compact)
    )


def _gb11643_check(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, _GB11643_WEIGHTS, strict=True))
    return _GB11643_CHECK[total % 11]


def _plausible_date(yyyymmdd: str) -> bool:
    year, month, day = int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8])
    return 1800 <= year <= 2199 and 1 <= month <= 12 and 1 <= day <= 31


# ---------------------------------------------------------------------------------------------
# RFC 4514 parsing.

_ESCAPABLE: Final = frozenset(' "#+,;<=>\\')
# Characters that RFC 4514 §3 forbids unescaped inside a value (',' and '+' end it instead).
_MUST_ESCAPE: Final = frozenset('";<>\x00')
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def _violation(attribute: str | None, rule: str, message: str) -> SubjectRuleViolation:
    prefix = f"{attribute}: " if attribute else ""
    return SubjectRuleViolation(prefix + message, attribute=attribute, rule=rule)


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _attribute_name(raw: str, position: int) -> str:
    if not raw:
        raise _violation(
            None, "syntax", f"missing attribute type before '=' at position {position}"
        )
    key = raw.lower()
    if key.startswith("oid."):
        key = key[4:]
    name = _ALIASES.get(key)
    if name is None:
        raise _violation(
            raw[:20], "unknown-attribute",
            f"unknown attribute type {_short(raw, 20)} "
            f"(govpki subjects use {', '.join(ATTRIBUTE_ORDER)})",
        )
    return name


def _skip_spaces(text: str, i: int) -> int:
    while i < len(text) and text[i] == " ":
        i += 1
    return i


def _parse_value(text: str, i: int, attribute: str) -> tuple[str, int, str | None]:
    """Read one attribute value from ``text[i:]``: (value, next index, ',' / '+' / None at end)."""
    n = len(text)
    i = _skip_spaces(text, i)
    if i < n and text[i] == "#":
        raise _violation(
            attribute, "syntax",
            "hex-encoded BER values ('#...') are not accepted; give the value as text",
        )
    chars: list[tuple[str, bool]] = []  # (character, was escaped)
    pending = bytearray()  # consecutive \XX escapes form one UTF-8 sequence

    def flush() -> None:
        if not pending:
            return
        try:
            decoded = pending.decode("utf-8")
        except UnicodeDecodeError:
            raise _violation(
                attribute, "syntax", "hex escapes (\\XX) do not form valid UTF-8"
            ) from None
        chars.extend((ch, True) for ch in decoded)
        pending.clear()

    terminator: str | None = None
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 2 < n and text[i + 1] in _HEX_DIGITS and text[i + 2] in _HEX_DIGITS:
                pending.append(int(text[i + 1 : i + 3], 16))
                i += 3
                continue
            flush()
            if i + 1 < n and text[i + 1] in _ESCAPABLE:
                chars.append((text[i + 1], True))
                i += 2
                continue
            if i + 1 >= n:
                raise _violation(attribute, "syntax", "the value ends with a lone backslash")
            raise _violation(
                attribute, "syntax",
                f"invalid escape {_short(text[i : i + 2])} at position {i} (RFC 4514 allows a "
                "backslash before a space, one of \"#+,;<=>\\, or two hex digits)",
            )
        flush()
        if ch in ",+":
            terminator = ch
            i += 1
            break
        if ch in _MUST_ESCAPE:
            hint = " (use ',' between attributes)" if ch == ";" else ""
            raise _violation(
                attribute, "syntax",
                f"character {ch!r} at position {i} must be escaped with a backslash{hint}",
            )
        chars.append((ch, False))
        i += 1
    flush()
    # Unescaped spaces before a separator are layout ("CN=张三 , O=..."), not part of the value.
    while chars and chars[-1] == (" ", False):
        chars.pop()
    return "".join(ch for ch, _ in chars), i, terminator


def _parse_rfc4514(text: str) -> list[tuple[str, str]]:
    if not text.strip(" "):
        raise _violation(None, "syntax", "the subject is empty")
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        i = _skip_spaces(text, i)
        start = i
        while i < n and text[i] not in "=,+\\":
            i += 1
        if i >= n or text[i] != "=":
            what = _short(text[start:i]) if i > start else "nothing"
            raise _violation(
                None, "syntax", f"expected 'attribute=value' at position {start}, found {what}"
            )
        attribute = _attribute_name(text[start:i].strip(" "), start)
        value, i, terminator = _parse_value(text, i + 1, attribute)
        if terminator == "+":
            raise _violation(
                attribute, "multi-valued-rdn",
                "multi-valued RDNs ('+') are not allowed; give each attribute its own RDN",
            )
        pairs.append((attribute, value))
        if terminator is None:
            return pairs


# ---------------------------------------------------------------------------------------------
# Value rules.

_INVISIBLE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_PRINTABLE_STRING_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)
_DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL_LOCAL: Final = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")  # RFC 5322 dot-atom


def _check_text(attribute: str, value: str, *, max_length: int, limit_source: str) -> None:
    """The rules every value shares: non-empty, visible, trimmed, bounded, no ID numbers."""
    if not value:
        raise _violation(attribute, "empty", "the value is empty")
    for position, ch in enumerate(value):
        if unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
            raise _violation(
                attribute, "control-character",
                f"contains the control or invisible character U+{ord(ch):04X} at position "
                f"{position}",
            )
    if value != value.strip():
        raise _violation(attribute, "surrounding-space", "has leading or trailing spaces")
    if len(value) > max_length:
        raise _violation(
            attribute, "max-length",
            f"is {len(value)} characters long; the limit is {max_length} ({limit_source})",
        )
    if contains_national_id(value):
        # The value itself is not repeated: it may be someone's ID number.
        raise _violation(
            attribute, "national-id",
            "contains what looks like a PRC resident identity number (15 or more digits); "
            "identity numbers must never appear in a certificate",
        )


def _check_attribute(attribute: str, value: str) -> None:
    spec = ATTRIBUTES[attribute]
    _check_text(
        attribute, value, max_length=spec.max_length,
        limit_source=f"RFC 5280 Appendix A {spec.bound}",
    )
    if attribute == "C" and value != REQUIRED_COUNTRY:
        raise _violation(attribute, "country", f"must be 'CN', got {_short(value)}")
    if spec.encoding == PRINTABLE_STRING:
        bad = next((ch for ch in value if ch not in _PRINTABLE_STRING_CHARS), None)
        if bad is not None:
            raise _violation(
                attribute, "charset", f"character {bad!r} cannot be encoded as PrintableString"
            )
    if attribute == "emailAddress":
        _check_email(attribute, value)


def check_subject(
    attributes: Iterable[tuple[str, str]] | Mapping[str, str], rules: SubjectRules
) -> list[tuple[str, str]]:
    """Apply ``rules`` to already-split (attribute, value) pairs; return them in C→CN order.

    For callers that hold a subject as fields (the RA's subscriber record) rather than as an
    RFC 4514 string. Attribute names must be the canonical short names (``C``, ``ST``...).
    Raises :class:`SubjectRuleViolation` naming the attribute and the rule.
    """
    pairs = list(attributes.items()) if isinstance(attributes, Mapping) else list(attributes)
    seen: dict[str, str] = {}
    for attribute, value in pairs:
        if not isinstance(attribute, str) or attribute not in ATTRIBUTES:
            raise _violation(
                str(attribute)[:20], "unknown-attribute",
                f"unknown attribute type (govpki subjects use {', '.join(ATTRIBUTE_ORDER)})",
            )
        if attribute not in rules.allowed:
            raise _violation(
                attribute, "not-allowed",
                f"is not allowed by this profile (allowed: {', '.join(rules.allowed)})",
            )
        if attribute in seen:
            raise _violation(attribute, "duplicate", "appears more than once")
        if not isinstance(value, str):
            raise _violation(attribute, "syntax", f"must be text, got {type(value).__name__}")
        _check_attribute(attribute, value)
        seen[attribute] = value
    for attribute in rules.required:
        if attribute not in seen:
            raise _violation(attribute, "required", "is required by this profile but missing")
    return [(a, seen[a]) for a in ATTRIBUTE_ORDER if a in seen]


def parse_subject(rfc4514: str, rules: SubjectRules) -> list[tuple[str, str]]:
    """Parse an RFC 4514 subject string and check it against ``rules``.

    Returns (short name, value) pairs in certificate order, C first and CN last, whatever order
    the string used. Escapes (``\\,`` ``\\+`` ``\\"`` ``\\\\`` and ``\\XX`` hex pairs, several of
    which form one UTF-8 character) are decoded; spaces around ``,`` and ``=`` are tolerated.
    Anything wrong — syntax included — raises :class:`SubjectRuleViolation`, never another
    exception, so the RA can show the message as it is.
    """
    if not isinstance(rfc4514, str):
        raise TypeError(f"rfc4514 must be str, got {type(rfc4514).__name__}")
    return check_subject(_parse_rfc4514(rfc4514), rules)


def escape_value(value: str) -> str:
    """Escape one attribute value for an RFC 4514 string (§2.4)."""
    out: list[str] = []
    last = len(value) - 1
    for index, ch in enumerate(value):
        if ch in '"+,;<>\\' or (index == 0 and ch in "# ") or (index == last and ch == " "):
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def format_subject(pairs: Iterable[tuple[str, str]]) -> str:
    """Render (attribute, value) pairs in certificate order as an RFC 4514 string.

    RFC 4514 §2.1 writes the last RDN first, so the result starts with CN and ends with C —
    the way OpenSSL and pyca print names.
    """
    return ",".join(f"{a}={escape_value(v)}" for a, v in reversed(list(pairs)))


# ---------------------------------------------------------------------------------------------
# Subject alternative names.

_SAN = "subjectAltName"


def _dns_name(value: str, attribute: str, where: str) -> str:
    if not value.isascii():
        raise _violation(
            attribute, "dns-name", f"{where}: give internationalised names as A-labels (xn--...)"
        )
    name = value.lower()
    if name.startswith("*."):
        raise _violation(attribute, "dns-name", f"{where}: wildcard names are not issued")
    labels = name.split(".")
    if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise _violation(
            attribute, "dns-name",
            f"{where}: {_short(value)} is not a DNS host name (letters, digits, hyphens; "
            "labels of 1-63 characters; no trailing dot)",
        )
    return name


def _check_email(attribute: str, value: str) -> None:
    local, at, domain = value.rpartition("@")
    if not at or not value.isascii() or not _EMAIL_LOCAL.fullmatch(local) or len(local) > 64:
        raise _violation(attribute, "email", f"{_short(value)} is not an e-mail address")
    _dns_name(domain, attribute, "e-mail domain")


def check_subject_alt_names(
    names: Iterable[tuple[str, str]], rules: SubjectAltNameRules | None
) -> list[tuple[str, str]]:
    """Check (type, value) subjectAltName entries such as ``("dns", "oa.qh.gov.cn")``.

    Returns them normalised (DNS names lower-cased, IP addresses in canonical form) in the order
    given. ``rules=None`` means the profile carries no subjectAltName at all. The identity
    number rule applies here too: an address is as public as a subject.
    """
    entries = list(names)
    if rules is None:
        if entries:
            raise _violation(
                _SAN, "not-allowed", "this profile carries no subject alternative name"
            )
        return []
    if rules.required and not entries:
        raise _violation(
            _SAN, "required",
            f"at least one subject alternative name ({', '.join(rules.types)}) is required",
        )
    result: list[tuple[str, str]] = []
    for index, (kind, value) in enumerate(entries):
        where = f"{kind}[{index}]" if isinstance(kind, str) else f"[{index}]"
        if kind not in SAN_TYPES or kind not in rules.types:
            raise _violation(
                _SAN, "not-allowed",
                f"{where}: name type not allowed (allowed: {', '.join(rules.types)})",
            )
        if not isinstance(value, str):
            raise _violation(_SAN, "syntax", f"{where}: must be text")
        if kind == "email":
            _check_text(_SAN, value, max_length=254, limit_source="RFC 5321 path length")
        else:
            _check_text(_SAN, value, max_length=253, limit_source="the DNS name limit")
        if kind == "dns":
            normal = _dns_name(value, _SAN, where)
        elif kind == "ip":
            try:
                if "%" in value:
                    raise ValueError(value)
                normal = str(ipaddress.ip_address(value))
            except ValueError:
                raise _violation(
                    _SAN, "ip-address", f"{where}: {_short(value)} is not an IP address"
                ) from None
        else:
            _check_email(_SAN, value)
            normal = value
        if (kind, normal) in result:
            raise _violation(_SAN, "duplicate", f"{where}: {_short(normal)} is listed twice")
        result.append((kind, normal))
    return result
