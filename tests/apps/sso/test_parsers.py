"""Property tests of the parsers of outside input: the Client-Cert header (RFC 9440 and
nginx's escaped PEM), the answer `govpki token sign-challenge` posts, and X-Forwarded-For.
Whatever arrives, they return a value or raise MalformedInput, never anything else."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.sso.cert_login import parse_answer, parse_client_cert_header
from apps.sso.config import SsoConfig
from apps.sso.errors import MalformedInput
from apps.sso.ratelimit import source_address
from hsm.challenge import LOGIN_LABEL, login_signed_data, origin_of


def _cert() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "张三")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))


CERT = _cert()
DER = CERT.public_bytes(Encoding.DER)
PEM = CERT.public_bytes(Encoding.PEM).decode()


def _parses_or_refuses(value: str) -> None:
    try:
        parse_client_cert_header(value)
    except MalformedInput:
        pass


def test_header_forms_round_trip() -> None:
    assert parse_client_cert_header(":" + base64.b64encode(DER).decode() + ":") == CERT
    assert parse_client_cert_header(quote(PEM, safe="")) == CERT
    assert parse_client_cert_header(PEM.replace("\n", "%0A").replace(" ", "%20")) == CERT


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_header_any_text(value: str) -> None:
    _parses_or_refuses(value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_header_any_byte_sequence(data: bytes) -> None:
    _parses_or_refuses(":" + base64.b64encode(data).decode() + ":")


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(DER) - 1), st.integers(0, 255))
def test_header_damaged_der(index: int, value: int) -> None:
    damaged = bytearray(DER)
    damaged[index] = value
    _parses_or_refuses(":" + base64.b64encode(bytes(damaged)).decode() + ":")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(PEM)), st.text(max_size=8))
def test_header_damaged_pem(index: int, insert: str) -> None:
    _parses_or_refuses(quote(PEM[:index] + insert + PEM[index:], safe=""))


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["code", "format", "certificate", "signature", "x"]),
                       _JSON | st.text(alphabet="ABCDEFGHJK+/=", max_size=40), max_size=5)
       | _JSON)
def test_answer_any_json(body: object) -> None:
    try:
        answer = parse_answer(body)
    except MalformedInput:
        return
    assert answer.certificate_der and answer.signature


def test_answer_well_formed() -> None:
    answer = parse_answer({"code": "abcd-efgh", "format": LOGIN_LABEL,
                           "certificate": base64.b64encode(DER).decode(),
                           "signature": base64.b64encode(b"\x30\x06sig").decode()})
    assert answer.code == "ABCDEFGH" and answer.certificate_der == DER


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30), st.integers(0, 2**40),
       st.text(max_size=30), st.text(max_size=30), st.integers(0, 2**40))
def test_signed_data_is_unambiguous(o1: str, n1: str, e1: int, o2: str, n2: str, e2: int
                                    ) -> None:
    """Different (origin, nonce, expiry) never give the same bytes, and never DER."""
    a, b = login_signed_data(o1, n1, e1), login_signed_data(o2, n2, e2)
    assert (a == b) == ((o1, n1, e1) == (o2, n2, e2))
    assert a[0] != 0x30 and a[0] != 0x31  # not a DER SEQUENCE / SET: not CMS signed attributes


def test_origin_of() -> None:
    assert origin_of("HTTPS://SSO.Example.gov.cn:443/x") == "https://sso.example.gov.cn"
    assert origin_of("http://127.0.0.1:8600/") == "http://127.0.0.1:8600"


_PROXY_CONFIG = SsoConfig(trusted_proxies=("192.0.2.10",))


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_forwarded_for_any_text(value: str) -> None:
    """X-Forwarded-For from the trusted proxy: an IP address out, whatever came in."""
    found = source_address("192.0.2.10", value, _PROXY_CONFIG)
    assert found == "192.0.2.10" or ipaddress.ip_address(found)
    assert source_address("203.0.113.5", value, _PROXY_CONFIG) == "203.0.113.5"


@given(st.lists(st.ip_addresses(), min_size=1, max_size=5))
def test_forwarded_for_takes_the_address_the_proxy_appended(chain: list) -> None:
    header = ", ".join(str(a) for a in chain)
    assert source_address("192.0.2.10", header, _PROXY_CONFIG) == str(chain[-1])
