"""Property tests: arbitrary bytes and mutated valid requests always get an OCSP response with a
protocol status — never an exception, never an HTTP 500 — from respond() and from the WSGI app."""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Iterator

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca.store import chain_der
from core.db import transaction
from ocsp.responder import OcspResponder
from ocsp.wsgi import OcspApp, create_ocsp_app
from tests.ocsp.conftest import issue, with_ocsp_tables

STATUSES = {"successful", "malformed_request", "internal_error", "try_later", "unauthorized"}
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _status(body: bytes) -> str:
    return str(asn1_ocsp.OCSPResponse.load(body)["response_status"].native)


def _valid_request(pki) -> bytes:  # type: ignore[no-untyped-def]
    with transaction(pki.ctx.sessions) as session:
        issuer = x509.load_der_x509_certificate(chain_der(session, "officials")[0])
    cert = issue(pki)
    return (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256())
            .add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False).build()
            .public_bytes(serialization.Encoding.DER))


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_get_a_protocol_status(responder: OcspResponder, data: bytes) -> None:
    body = responder.respond(data)
    assert _status(body) in STATUSES - {"internal_error"}


@pytest.fixture(scope="module")
def valid_request(file_pki) -> bytes:  # type: ignore[no-untyped-def]
    return _valid_request(with_ocsp_tables(file_pki))


@pytest.fixture(scope="module")
def wsgi_app(file_pki) -> Iterator[OcspApp]:  # type: ignore[no-untyped-def]
    app = create_ocsp_app(with_ocsp_tables(file_pki).ctx, listen=False)
    yield app
    app.close()


@SETTINGS
@given(data=st.data())
def test_mutated_requests_get_a_protocol_status(valid_request: bytes, responder: OcspResponder,
                                                data: st.DataObject) -> None:
    buf = bytearray(valid_request)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if kind == "flip" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and buf:
            buf[pos] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del buf[pos:pos + data.draw(st.integers(1, 16))]
        else:
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    body = responder.respond(bytes(buf))
    assert _status(body) in STATUSES - {"internal_error"}


def _call(app, method: str, path: str, body: bytes = b"", raw: str | None = None,
          ctype: str = "application/ocsp-request") -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "",
               "CONTENT_TYPE": ctype, "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    if raw is not None:
        environ["RAW_URI"] = raw
    out = b"".join(app(environ, lambda status, headers, exc=None: seen.append(status)))
    return seen[0], out


@SETTINGS
@given(body=st.binary(max_size=1024), path=st.text(max_size=200),
       ctype=st.sampled_from(["application/ocsp-request", "text/plain", ""]))
def test_wsgi_never_answers_500(wsgi_app: OcspApp, body: bytes, path: str, ctype: str) -> None:
    app = wsgi_app
    status, out = _call(app, "POST", "/ocsp", body, ctype=ctype)
    assert status == "200 OK" and _status(out) in STATUSES - {"internal_error"}
    status, out = _call(app, "GET", "/ocsp/" + path, raw="/ocsp/" + path)
    assert status == "200 OK" and _status(out) in STATUSES - {"internal_error"}


def test_oversized_post_is_malformed(ofile_pki) -> None:
    app = create_ocsp_app(ofile_pki.ctx, listen=False)
    try:
        status, out = _call(app, "POST", "/ocsp", b"\x30" * 20000)
        assert status == "200 OK" and _status(out) == "malformed_request"
        status, out = _call(app, "POST", "/ocsp", b"\x30\x00", ctype="text/html")
        assert _status(out) == "malformed_request"
        assert _call(app, "GET", "/elsewhere")[0].startswith("404")
        assert _call(app, "PUT", "/ocsp")[0].startswith("405")
    finally:
        app.close()


# --- the fast request parser must agree with asn1crypto wherever it answers ------------------

def _requests_for_fast_path() -> list[bytes]:
    """Requests as pyca (like openssl) builds them: every CertID hash, serials of every
    length class, with and without a nonce of the extreme lengths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fast-path")])
    now = dt.datetime.now(dt.UTC)

    def cert(serial: int) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(serial).not_valid_before(now)
                .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))

    issuer = cert(1)
    out = []
    for serial in (1, 127, 128, 255, 256, 2**63, 2**126 + 5):
        leaf = cert(serial)
        # SHA-1 CertIDs are what RFC 5019 clients send: a name, not a security use
        for alg in (hashes.SHA1(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()):  # noqa: S303
            for nonce in (None, os.urandom(1), os.urandom(32)):
                b = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, alg)
                if nonce is not None:
                    b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
                out.append(b.build().public_bytes(serialization.Encoding.DER))
    return out


_FAST_SAMPLES = _requests_for_fast_path()


def test_fast_parser_takes_the_common_shape_and_agrees() -> None:
    from ocsp.request import _fast_parse, _parse

    for der in _FAST_SAMPLES:
        fast = _fast_parse(der)
        assert fast is not None
        assert fast == _parse(der)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_FAST_SAMPLES), st.integers(min_value=0), st.integers(1, 255),
       st.booleans())
def test_fast_parser_never_disagrees_with_asn1crypto(der: bytes, pos: int, flip: int,
                                                      truncate: bool) -> None:
    from ocsp.errors import MalformedRequest
    from ocsp.request import _fast_parse, _parse

    data = bytearray(der)
    if truncate:
        data = data[: pos % len(data)]
    else:
        data[pos % len(data)] ^= flip
    fast = _fast_parse(bytes(data))
    if fast is None:
        return  # the slow path decides; other tests cover its answers
    try:
        slow = _parse(bytes(data))
    except (MalformedRequest, ValueError, TypeError, KeyError, IndexError, OverflowError):
        raise AssertionError("the fast path accepted what asn1crypto refuses") from None
    assert fast == slow
