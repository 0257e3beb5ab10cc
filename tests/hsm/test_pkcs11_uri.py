"""RFC 7512 PKCS#11 URIs: the RFC's own examples, govpki's refusals, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm.errors import InvalidKeyUri
from hsm.pkcs11_uri import OBJECT_TYPES, Pkcs11Uri, parse_pkcs11_uri

# -- RFC 7512 §3 examples ---------------------------------------------------------------------


def test_rfc7512_examples() -> None:
    assert parse_pkcs11_uri("pkcs11:") == Pkcs11Uri()
    assert parse_pkcs11_uri("pkcs11:object=my-pubkey;type=public") == Pkcs11Uri(
        object="my-pubkey", type="public")
    assert parse_pkcs11_uri(
        "pkcs11:object=my-key;type=private?pin-source=file:/etc/token"
    ) == Pkcs11Uri(object="my-key", type="private", pin_source="file:/etc/token")
    assert parse_pkcs11_uri(
        "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;"
        "model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial="
    ) == Pkcs11Uri(token="The Software PKCS#11 Softtoken", manufacturer="Snake Oil, Inc.",
                   model="1.0", object="my-certificate", type="cert",
                   id=bytes.fromhex("69953e5cf4bdec91"), serial="")
    assert parse_pkcs11_uri("pkcs11:slot-description=Sun%20Metaslot") == Pkcs11Uri(
        slot_description="Sun Metaslot")
    assert parse_pkcs11_uri(
        "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;"
        "library-description=Soft%20Token%20Library;library-version=1.23"
    ) == Pkcs11Uri(library_manufacturer="Snake Oil, Inc.",
                   library_description="Soft Token Library", library_version="1.23")
    assert parse_pkcs11_uri(
        "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;"
        "id=%01%02%03%Ba%dd%Ef%fe%eD;object=my-certificate;type=cert"
    ) == Pkcs11Uri(token="My token% created by Joe", library_version="3",
                   id=bytes.fromhex("010203baddeffeed"), object="my-certificate", type="cert")
    assert parse_pkcs11_uri(
        "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert"
    ).token == "A name with a substring %;"
    assert parse_pkcs11_uri(
        "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;"
        "object=my-certificate;type=cert"
    ).token == "Name with a small A with acute: á"
    assert parse_pkcs11_uri("pkcs11:slot-id=134?module-name=softhsm2") == Pkcs11Uri(
        slot_id=134, module_name="softhsm2")


def test_rfc7512_pin_value_example_is_refused() -> None:
    with pytest.raises(InvalidKeyUri, match="pin-value is refused"):
        parse_pkcs11_uri("pkcs11:token=Software%20PKCS%2311%20softtoken;"
                         "manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin")


def test_rfc7512_vendor_attributes_are_refused_by_name() -> None:
    with pytest.raises(InvalidKeyUri, match="'vendor-aaa'"):
        parse_pkcs11_uri("pkcs11:token=my-token;object=my-certificate;type=cert;"
                         "vendor-aaa=value-a?pin-source=file:/etc/token-pin&vendor-bbb=value-b")


# -- govpki's URIs ----------------------------------------------------------------------------


def test_govpki_key_uri() -> None:
    uri = parse_pkcs11_uri("pkcs11:token=govpki-ca;object=root-ca")
    assert (uri.token, uri.object, uri.id, uri.type) == ("govpki-ca", "root-ca", None, None)
    assert uri.format() == "pkcs11:token=govpki-ca;object=root-ca"
    assert str(uri) == uri.format()


def test_chinese_labels_percent_encoded_and_raw() -> None:
    encoded = "pkcs11:token=%E7%9C%81%E6%94%BF%E5%BA%9C;object=%E6%A0%B9CA"
    assert parse_pkcs11_uri(encoded) == Pkcs11Uri(token="省政府", object="根CA")
    assert parse_pkcs11_uri("pkcs11:token=省政府;object=根CA") == Pkcs11Uri(token="省政府",
                                                                         object="根CA")
    assert Pkcs11Uri(token="省政府", object="根CA").format() == encoded


def test_reserved_characters_are_encoded_on_format() -> None:
    uri = Pkcs11Uri(token="a;b?c/d", object="50% & #1 =x", module_path="/opt/p11 lib/x.so")
    text = uri.format()
    assert text == ("pkcs11:token=a%3Bb%3Fc%2Fd;object=50%25%20%26%20%231%20%3Dx"
                    "?module-path=/opt/p11%20lib/x.so")
    assert parse_pkcs11_uri(text) == uri


def test_scheme_is_case_insensitive() -> None:
    assert parse_pkcs11_uri("PKCS11:object=k").object == "k"


@pytest.mark.parametrize(("text", "message"), [
    ("file:root-ca", "must start with 'pkcs11:' \\(found scheme 'file'\\)"),
    ("", "must start with 'pkcs11:'"),
    ("pkcs11:tokn=x", "unknown PKCS#11 URI path attribute 'tokn'"),
    ("pkcs11:Token=x", "unknown PKCS#11 URI path attribute 'Token'"),
    ("pkcs11:x-vendor=1", "'x-vendor'"),
    ("pkcs11:object=k?colour=red", "unknown PKCS#11 URI query attribute 'colour'"),
    ("pkcs11:token=a;token=b", "'token' is given more than once"),
    ("pkcs11:object=a;object=a", "'object' is given more than once"),
    ("pkcs11:?module-path=/a&module-path=/b", "'module-path' is given more than once"),
    ("pkcs11:object=k?pin-value=1234", "pin-value is refused"),
    ("pkcs11:object=k;pin-value=1234", "pin-value.*belongs in the query"),
    ("pkcs11:module-path=/x.so", "belongs in the query"),
    ("pkcs11:?object=k", "belongs in the path"),
    ("pkcs11:object", "has no '=value'"),
    ("pkcs11:object=k;", "empty attribute"),
    ("pkcs11:object=k;;token=t", "empty attribute"),
    ("pkcs11:object=a b", "contains ' '"),
    ("pkcs11:object=a\nb", "contains '\\\\n'"),
    ("pkcs11:object=a\u200bb", "contains"),
    ("pkcs11:object=k#frag", "no fragment"),
    ("pkcs11:object=%4", "two hex digits"),
    ("pkcs11:object=%G1", "two hex digits"),
    ("pkcs11:object=%C3%28", "not valid UTF-8"),
    ("pkcs11:type=key", "type='key' is not an object type"),
    ("pkcs11:library-version=1.x", "library-version"),
    ("pkcs11:slot-id=-1", "slot-id must be a decimal number"),
    ("pkcs11:slot-id=%EF%BC%91", "slot-id must be a decimal number"),  # full-width 1
    ("pkcs11:object=k?module-path=a;b", "contains ';'"),
])
def test_malformed_uris_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidKeyUri, match=message):
        parse_pkcs11_uri(text)


def test_pin_value_is_not_echoed() -> None:
    with pytest.raises(InvalidKeyUri) as caught:
        parse_pkcs11_uri("pkcs11:object=k?pin-value=s3cr3t-PIN")
    assert "s3cr3t-PIN" not in str(caught.value)
    with pytest.raises(InvalidKeyUri) as caught:
        parse_pkcs11_uri("s3cr3t-PIN")  # a PIN passed where a URI was expected
    assert "s3cr3t-PIN" not in str(caught.value)


def test_id_is_binary_and_any_byte_round_trips() -> None:
    every_byte = bytes(range(256))
    uri = Pkcs11Uri(object="k", id=every_byte)
    assert parse_pkcs11_uri(uri.format()).id == every_byte
    assert parse_pkcs11_uri("pkcs11:id=%FF%00ab").id == b"\xff\x00ab"


@pytest.mark.parametrize("kwargs", [
    {"type": "secret"},
    {"id": "0102"},
    {"slot_id": -3},
    {"slot_id": True},
    {"token": "\ud800"},
    {"object": 5},
    {"library_version": "v1"},
])
def test_constructor_validates_eagerly(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidKeyUri):
        Pkcs11Uri(**kwargs)  # type: ignore[arg-type]


# -- properties -------------------------------------------------------------------------------

labels = st.none() | st.text(max_size=40)
uris = st.builds(
    Pkcs11Uri,
    token=labels,
    manufacturer=labels,
    serial=labels,
    model=labels,
    library_manufacturer=labels,
    library_description=labels,
    library_version=st.none() | st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{1,4})?\Z"),
    slot_description=labels,
    slot_manufacturer=labels,
    slot_id=st.none() | st.integers(min_value=0, max_value=2**64 - 1),
    object=labels | st.sampled_from(["根CA;签名", "a%20b", "x?y&z=1#2", "/../etc", "省 政 府"]),
    type=st.none() | st.sampled_from(sorted(OBJECT_TYPES)),
    id=st.none() | st.binary(max_size=32),
    module_name=labels,
    module_path=labels,
    pin_source=labels,
)


@given(uris)
@settings(max_examples=300, deadline=None)
def test_format_then_parse_round_trips(uri: Pkcs11Uri) -> None:
    text = uri.format()
    assert text.isascii()
    assert parse_pkcs11_uri(text) == uri
    assert parse_pkcs11_uri(text).format() == text


URI_ALPHABET = "pkcs11:;?&=%#/ tokenobjidyp-_.~0123456789ABCDEFabcdef省政府\x00\n\u200b\ud800"


@given(st.text() | st.text(alphabet=URI_ALPHABET).map(lambda t: "pkcs11:" + t)
       | st.lists(st.sampled_from(["token", "object", "id", "type", "slot-id", "pin-value",
                                   "module-path", "library-version", "serial", "x"]),
                  max_size=5).flatmap(
           lambda names: st.tuples(*[st.text(alphabet=URI_ALPHABET, max_size=8)
                                     for _ in names]).map(
               lambda values: "pkcs11:" + ";".join(
                   f"{n}={v}" for n, v in zip(names, values, strict=True)))))
@settings(max_examples=500, deadline=None)
def test_arbitrary_text_raises_nothing_but_invalid_key_uri(text: str) -> None:
    try:
        uri = parse_pkcs11_uri(text)
    except InvalidKeyUri:
        return
    assert parse_pkcs11_uri(uri.format()) == uri
