"""How an official names a key on a USB key: by CKA_ID in hex, by label, or by PKCS#11 URI.

Outside input (a CLI argument, a value read back from the RA), so the parser is strict and says
what it expected. The forms, tried in this order:

* ``pkcs11:object=<label>;id=%01%02...`` — an RFC 7512 URI (:mod:`hsm.pkcs11_uri`), as
  :attr:`hsm.token.TokenKey.key_uri` gives it;
* ``id:0a1b2c...`` or ``id:0a:1b:2c`` — CKA_ID in hex (the colon-separated form is what p11tool
  prints; pkcs11-tool prints the plain one);
* ``label:<text>`` — CKA_LABEL, exactly;
* anything else is a label, except that a bare word that is also valid hex (``cafe``, or the
  ``id_hex`` that ``govpki token list`` shows) may be either: the token is searched both ways and
  the reference must match exactly one key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hsm.errors import HsmError, InvalidKeyUri
from hsm.pkcs11_uri import parse_pkcs11_uri

MAX_REFERENCE_CHARS = 1024
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_HEX_COLONS = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidKeyReference(HsmError):
    """A key reference or label that cannot name a key (empty, control characters, bad hex)."""

    kind = "hsm-invalid-key-reference"
    http_status = 400


@dataclass(frozen=True)
class KeyReference:
    """What to look for. ``either`` is set for a bare hex word: id *or* label may match."""

    key_id: bytes | None = None
    label: str | None = None
    token: str | None = None  # a URI's token=, checked against the open token
    either: bool = False

    def __str__(self) -> str:
        if self.either:
            return f"{self.label!r} (as id or label)"
        parts = []
        if self.label is not None:
            parts.append(f"label {self.label!r}")
        if self.key_id is not None:
            parts.append(f"id {self.key_id.hex()}")
        return " and ".join(parts)


def parse_key_reference(text: str) -> KeyReference:
    """Parse a key reference; anything unusable raises :class:`InvalidKeyReference`."""
    if not isinstance(text, str):
        raise InvalidKeyReference(f"a key reference must be text, not {type(text).__name__}")
    if not text:
        raise InvalidKeyReference("the key reference is empty: give id:<hex>, label:<text> or a "
                                  "pkcs11: URI")
    if len(text) > MAX_REFERENCE_CHARS:
        raise InvalidKeyReference(f"the key reference is {len(text)} characters long; at most "
                                  f"{MAX_REFERENCE_CHARS} are accepted")
    if text[:7].lower() == "pkcs11:":
        return _from_uri(text)
    if text[:3].lower() == "id:":
        return KeyReference(key_id=parse_key_id(text[3:]))
    if text[:6].lower() == "label:":
        return KeyReference(label=check_label(text[6:]))
    check_label(text)
    if _HEX.match(text) or _HEX_COLONS.match(text):
        return KeyReference(key_id=parse_key_id(text), label=text, either=True)
    return KeyReference(label=text)


def parse_key_id(text: str) -> bytes:
    """CKA_ID from hex, plain (``0a1b``) or colon-separated (``0a:1b``), any case."""
    if _HEX.match(text):
        return bytes.fromhex(text)
    if _HEX_COLONS.match(text):
        return bytes.fromhex(text.replace(":", ""))
    shown = text if len(text) <= 40 else text[:40] + "..."
    raise InvalidKeyReference(f"key id {shown!r} is not hex: give pairs of hex digits, like "
                              f"'0a1b2c' or '0a:1b:2c'")


def check_label(label: str) -> str:
    """A CKA_LABEL govpki will write or search for: non-empty UTF-8 text, no control characters
    (they would garble `govpki token list` and the terminal it prints to)."""
    if not isinstance(label, str):
        raise InvalidKeyReference(f"a key label must be text, not {type(label).__name__}")
    if not label:
        raise InvalidKeyReference("a key label must not be empty")
    if _CONTROL.search(label):
        raise InvalidKeyReference("a key label must not contain control characters")
    try:
        label.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyReference("a key label must be encodable as UTF-8") from None
    return label


def _from_uri(text: str) -> KeyReference:
    try:
        uri = parse_pkcs11_uri(text)
    except InvalidKeyUri as exc:
        raise InvalidKeyReference(str(exc)) from None
    if uri.type not in (None, "private"):
        raise InvalidKeyReference(f"the key URI selects type={uri.type}; a key is named by its "
                                  f"private key (type=private, or no type)")
    if uri.pin_source is not None:
        raise InvalidKeyReference("the key URI has pin-source; govpki does not read PINs from "
                                  "URIs")
    if uri.object is None and uri.id is None:
        raise InvalidKeyReference("the key URI names no key: add object=<label> or id=<%hex>")
    if uri.id is not None and not uri.id:
        raise InvalidKeyReference("the key URI has an empty id")
    label = check_label(uri.object) if uri.object is not None else None
    return KeyReference(key_id=uri.id, label=label, token=uri.token)
