"""RFC 7512 PKCS#11 URIs: the names that configuration gives to keys on a token.

A key is named ``pkcs11:token=<label>;object=<label>`` rather than by slot number or handle,
because slot numbers change when SoftHSM2 re-reads its token directory or a USB key moves to
another port, while labels stay put. The parser is strict: an attribute we do not understand is
refused by name instead of being ignored, since a silently ignored ``serial=`` could make govpki
sign with the wrong token's key. ``pin-value`` is refused outright: a PIN inside a URI ends up in
configuration files, argv and logs, and govpki takes PINs only from the environment or a prompt.

Values are percent-decoded as UTF-8 (RFC 7512 §2.3), so Chinese labels round-trip. Raw non-ASCII
characters are also accepted on input, as an IRI (RFC 3987) would be read, because operators type
``token=省政府CA`` into configuration; :meth:`Pkcs11Uri.format` always writes the canonical
percent-encoded form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from hsm.errors import InvalidKeyUri

SCHEME = "pkcs11:"

# RFC 7512 §2.3: object types a URI may select.
OBJECT_TYPES = frozenset({"public", "private", "cert", "secret-key", "data"})

# URI attribute name → dataclass field name. Path attributes identify a token and an object;
# query attributes say how to reach it. Order here is the order format() writes them in.
_PATH_ATTRIBUTES: dict[str, str] = {
    "token": "token",
    "manufacturer": "manufacturer",
    "serial": "serial",
    "model": "model",
    "library-manufacturer": "library_manufacturer",
    "library-description": "library_description",
    "library-version": "library_version",
    "slot-description": "slot_description",
    "slot-manufacturer": "slot_manufacturer",
    "slot-id": "slot_id",
    "object": "object",
    "type": "type",
    "id": "id",
}
_QUERY_ATTRIBUTES: dict[str, str] = {
    "module-name": "module_name",
    "module-path": "module_path",
    "pin-source": "pin_source",
}
_REFUSED_QUERY_ATTRIBUTES = {
    "pin-value": "pin-value is refused: a PIN must never be written into a key URI "
    "(it would end up in configuration, argv and logs); supply it through the environment",
}

# Characters that may appear unencoded in a value (RFC 7512 §2.3 pk11-pchar / pk11-qchar).
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_RES_AVAIL = ":[]@!$'()*+,="
_PATH_CHARS = frozenset(_UNRESERVED + _RES_AVAIL + "&")
_QUERY_CHARS = frozenset(_UNRESERVED + _RES_AVAIL + "/?|")
# format() leaves only unreserved characters raw (and '/' in the query, so module paths read
# naturally); everything else is percent-encoded, which every RFC 7512 reader accepts.
_FORMAT_SAFE = frozenset(_UNRESERVED.encode("ascii"))
_FORMAT_SAFE_QUERY = frozenset((_UNRESERVED + "/").encode("ascii"))
_VERSION = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9})?$")
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed PKCS#11 URI. Every field is optional: an absent attribute matches anything.

    ``id`` is the object's CKA_ID as bytes; every other value is text. Construction validates
    eagerly (type, versions, slot id, UTF-8), so an invalid URI cannot exist as an object.
    """

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    library_manufacturer: str | None = None
    library_description: str | None = None
    library_version: str | None = None
    slot_description: str | None = None
    slot_manufacturer: str | None = None
    slot_id: int | None = None
    object: str | None = None
    type: str | None = None
    id: bytes | None = None
    module_name: str | None = None
    module_path: str | None = None
    pin_source: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "id":
                if not isinstance(value, bytes):
                    raise InvalidKeyUri(f"PKCS#11 URI id must be bytes, not {type(value).__name__}")
            elif f.name == "slot_id":
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise InvalidKeyUri(f"PKCS#11 URI slot-id must be a non-negative integer, "
                                        f"not {value!r}")
            else:
                if not isinstance(value, str):
                    raise InvalidKeyUri(f"PKCS#11 URI attribute {_attr_name(f.name)} must be "
                                        f"text, not {type(value).__name__}")
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidKeyUri(f"PKCS#11 URI attribute {_attr_name(f.name)} is not "
                                        f"encodable as UTF-8") from None
        if self.type is not None and self.type not in OBJECT_TYPES:
            known = ", ".join(sorted(OBJECT_TYPES))
            raise InvalidKeyUri(f"PKCS#11 URI type={self.type!r} is not an object type "
                                f"(RFC 7512 allows: {known})")
        if self.library_version is not None and not _VERSION.match(self.library_version):
            raise InvalidKeyUri(f"PKCS#11 URI library-version={self.library_version!r} must be "
                                f"'major' or 'major.minor' in decimal digits")

    def format(self) -> str:
        """The canonical text: attributes in a fixed order, every reserved byte percent-encoded.

        ``parse_pkcs11_uri(uri.format()) == uri`` for every valid ``uri``.
        """
        path = [f"{name}={self._encoded(field, _FORMAT_SAFE)}"
                for name, field in _PATH_ATTRIBUTES.items() if getattr(self, field) is not None]
        query = [f"{name}={self._encoded(field, _FORMAT_SAFE_QUERY)}"
                 for name, field in _QUERY_ATTRIBUTES.items() if getattr(self, field) is not None]
        text = SCHEME + ";".join(path)
        if query:
            text += "?" + "&".join(query)
        return text

    def __str__(self) -> str:
        return self.format()

    def _encoded(self, field: str, safe: frozenset[int]) -> str:
        value = getattr(self, field)
        if field == "id":
            # RFC 7512 §2.3: the id is binary, so every byte is percent-encoded.
            return "".join(f"%{b:02X}" for b in value)
        if field == "slot_id":
            return str(value)
        return _percent_encode(value.encode("utf-8"), safe)


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse an RFC 7512 URI; anything malformed raises :class:`InvalidKeyUri` saying what.

    Refused: another scheme, a fragment, attributes not in RFC 7512 (including vendor ``x-``
    attributes, which govpki cannot honour), an attribute given twice, ``pin-value``, bad
    percent-encoding, and values that are not UTF-8 (except ``id``, which is binary).
    """
    if not isinstance(text, str):
        raise InvalidKeyUri(f"a PKCS#11 URI must be text, not {type(text).__name__}")
    if text[: len(SCHEME)].lower() != SCHEME:
        # The text is not echoed: a mistyped argument could be a PIN.
        scheme = text.partition(":")[0] if ":" in text[:32] else ""
        found = f" (found scheme {scheme!r})" if scheme else ""
        raise InvalidKeyUri(f"not a PKCS#11 URI: it must start with '{SCHEME}'{found}")
    rest = text[len(SCHEME):]
    if "#" in rest:
        raise InvalidKeyUri("a PKCS#11 URI has no fragment: '#' must be percent-encoded as %23")
    path_text, sep, query_text = rest.partition("?")
    values: dict[str, object] = {}
    if path_text:
        for item in path_text.split(";"):
            name, value = _split_attribute(item, "path")
            field = _PATH_ATTRIBUTES.get(name)
            if field is None:
                if name in _QUERY_ATTRIBUTES or name in _REFUSED_QUERY_ATTRIBUTES:
                    raise InvalidKeyUri(f"PKCS#11 URI attribute {name!r} belongs in the query "
                                        f"(after '?'), not in the path")
                raise InvalidKeyUri(f"unknown PKCS#11 URI path attribute {name!r} "
                                    f"(known: {', '.join(_PATH_ATTRIBUTES)})")
            _store(values, name, field, _decode(name, value, _PATH_CHARS))
    if sep and query_text:
        for item in query_text.split("&"):
            name, value = _split_attribute(item, "query")
            if name in _REFUSED_QUERY_ATTRIBUTES:
                raise InvalidKeyUri(_REFUSED_QUERY_ATTRIBUTES[name])
            field = _QUERY_ATTRIBUTES.get(name)
            if field is None:
                if name in _PATH_ATTRIBUTES:
                    raise InvalidKeyUri(f"PKCS#11 URI attribute {name!r} belongs in the path "
                                        f"(before '?'), not in the query")
                raise InvalidKeyUri(f"unknown PKCS#11 URI query attribute {name!r} "
                                    f"(known: {', '.join(_QUERY_ATTRIBUTES)})")
            _store(values, name, field, _decode(name, value, _QUERY_CHARS))
    return Pkcs11Uri(**values)  # type: ignore[arg-type]


def _split_attribute(item: str, part: str) -> tuple[str, str]:
    name, eq, value = item.partition("=")
    if not eq:
        if not item:
            raise InvalidKeyUri(f"empty attribute in the PKCS#11 URI {part} "
                                f"(doubled or trailing separator)")
        raise InvalidKeyUri(f"PKCS#11 URI {part} attribute {_shorten(name)!r} has no '=value'")
    return name, value


def _store(values: dict[str, object], name: str, field: str, raw: bytes) -> None:
    if field in values:
        raise InvalidKeyUri(f"PKCS#11 URI attribute {name!r} is given more than once")
    if field == "id":
        values[field] = raw
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKeyUri(f"PKCS#11 URI attribute {name!r} is not valid UTF-8 after "
                            f"percent-decoding") from None
    if field == "slot_id":
        if not text.isascii() or not text.isdigit():
            raise InvalidKeyUri(f"PKCS#11 URI slot-id must be a decimal number, not {text!r}")
        values[field] = int(text)
        return
    values[field] = text


def _decode(name: str, value: str, allowed: frozenset[str]) -> bytes:
    """Percent-decode one value; raw ASCII outside the RFC grammar is refused by position."""
    out = bytearray()
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "%":
            pair = value[i + 1: i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise InvalidKeyUri(f"PKCS#11 URI attribute {name!r}: '%' must be followed by "
                                    f"two hex digits (found {value[i:i + 3]!r})")
            out.append(int(pair, 16))
            i += 3
            continue
        if ch in allowed:
            out.append(ord(ch))
        elif not ch.isascii() and ch.isprintable():
            # isprintable() is False for lone surrogates, controls and format characters.
            out += ch.encode("utf-8")
        else:
            raise InvalidKeyUri(f"PKCS#11 URI attribute {name!r} contains {ch!r}, which must "
                                f"be percent-encoded (RFC 7512 §2.3)")
        i += 1
    return bytes(out)


def _percent_encode(raw: bytes, safe: frozenset[int]) -> str:
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in raw)


def _attr_name(field: str) -> str:
    for table in (_PATH_ATTRIBUTES, _QUERY_ATTRIBUTES):
        for name, f in table.items():
            if f == field:
                return name
    return field


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
