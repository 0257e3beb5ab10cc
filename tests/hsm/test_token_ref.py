"""Key references on a USB key (hsm/token_ref.py): outside input, so parsed strictly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm.pkcs11_uri import Pkcs11Uri
from hsm.token_ref import (
    MAX_REFERENCE_CHARS,
    InvalidKeyReference,
    KeyReference,
    check_label,
    parse_key_id,
    parse_key_reference,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("id:0a1b2c", KeyReference(key_id=b"\x0a\x1b\x2c")),
    ("ID:0A:1B:2C", KeyReference(key_id=b"\x0a\x1b\x2c")),
    ("label:cafe", KeyReference(label="cafe")),
    ("label:id:x", KeyReference(label="id:x")),
    ("govpki-sign-0a1b2c3d", KeyReference(label="govpki-sign-0a1b2c3d")),
    ("张三 签名密钥", KeyReference(label="张三 签名密钥")),
    ("cafe", KeyReference(key_id=b"\xca\xfe", label="cafe", either=True)),
    ("ca:fe", KeyReference(key_id=b"\xca\xfe", label="ca:fe", either=True)),
    ("caf", KeyReference(label="caf")),  # odd length: not an id
    ("pkcs11:token=usb;object=k;id=%01%02;type=private",
     KeyReference(key_id=b"\x01\x02", label="k", token="usb")),
    ("pkcs11:id=%ff", KeyReference(key_id=b"\xff")),
])
def test_forms(text: str, expected: KeyReference) -> None:
    assert parse_key_reference(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("id:", "not hex"),
    ("id:abc", "not hex"),
    ("id:0g", "not hex"),
    ("id:0a::1b", "not hex"),
    ("label:", "must not be empty"),
    ("a\tb", "control characters"),
    ("label:a\x00b", "control characters"),
    ("x" * (MAX_REFERENCE_CHARS + 1), "at most"),
    ("pkcs11:object=k;type=cert", "type=private"),
    ("pkcs11:token=usb", "names no key"),
    ("pkcs11:object=k?pin-value=1234", "pin-value is refused"),
    ("pkcs11:object=k?pin-source=file:/pin", "pin-source"),
    ("pkcs11:id=", "empty id"),
    ("pkcs11:object=a%0Ab", "control characters"),
    ("pkcs11:object=k;bogus=1", "bogus"),
])
def test_refusals_say_why(text: str, message: str) -> None:
    with pytest.raises(InvalidKeyReference, match=message):
        parse_key_reference(text)


def test_pin_value_in_a_uri_is_not_echoed() -> None:
    with pytest.raises(InvalidKeyReference) as caught:
        parse_key_reference("pkcs11:object=k?pin-value=secret-9981")
    assert "secret-9981" not in str(caught.value)


def test_non_text_is_refused() -> None:
    with pytest.raises(InvalidKeyReference, match="must be text"):
        parse_key_reference(b"id:01")  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyReference, match="must be text"):
        check_label(1)  # type: ignore[arg-type]


@given(st.text(max_size=80) | st.text(alphabet="pkcs11:idlabe;=%0123456789abcdefABCDEF\x00\n",
                                      max_size=40))
@settings(max_examples=500, deadline=None)
def test_any_text_gives_a_reference_or_invalid_key_reference(text: str) -> None:
    try:
        ref = parse_key_reference(text)
    except InvalidKeyReference as exc:
        assert "\n" not in str(exc)
        return
    assert ref.key_id is not None or ref.label is not None
    assert ref.key_id != b""
    if ref.either:
        assert ref.key_id is not None and ref.label == text


@given(st.binary(min_size=1, max_size=64))
@settings(max_examples=300, deadline=None)
def test_every_id_round_trips_in_every_hex_form(key_id: bytes) -> None:
    plain = key_id.hex()
    assert parse_key_reference(f"id:{plain}").key_id == key_id
    assert parse_key_reference(f"id:{plain.upper()}").key_id == key_id
    assert parse_key_id(":".join(f"{b:02x}" for b in key_id)) == key_id
    bare = parse_key_reference(plain)
    assert bare.either and bare.key_id == key_id and bare.label == plain


labels = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


@given(labels)
@settings(max_examples=300, deadline=None)
def test_every_label_round_trips_with_the_label_prefix(label: str) -> None:
    assert parse_key_reference(f"label:{label}") == KeyReference(label=label)


@given(labels, st.binary(min_size=1, max_size=32), labels)
@settings(max_examples=300, deadline=None)
def test_every_key_uri_round_trips(label: str, key_id: bytes, token: str) -> None:
    uri = Pkcs11Uri(token=token, object=label, id=key_id, type="private").format()
    assert parse_key_reference(uri) == KeyReference(key_id=key_id, label=label, token=token)
