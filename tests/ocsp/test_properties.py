"""Property tests: arbitrary bytes and mutated valid requests always get an OCSP response with a
protocol status — never an exception, never an HTTP 500 — from respond() and from the WSGI app."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
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
