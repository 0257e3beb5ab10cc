"""The TSA's HTTP edge on a real loopback socket: RFC 3161 §3.4 media types, problem bodies
for what never reaches the protocol, and never a 500."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from signing.config import TsaConfig
from signing.tsa import TimeStampAuthority
from signing.tsa_wsgi import create_tsa_app
from tests.conftest import Pki
from tests.signing.conftest import TsaServer
from tests.signing.helpers import http, make_query, openssl_query, reply_text, serve, status_of


def problem(reply_body: bytes) -> dict[str, object]:
    return json.loads(reply_body)


def test_post_grants(file_tsa_server: TsaServer) -> None:
    reply = http(file_tsa_server.url + "/tsa", make_query())
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/timestamp-reply"
    assert reply.headers["Cache-Control"] == "no-store"
    assert status_of(reply.body) == ("granted", set())


def test_content_type_parameters_are_ignored(file_tsa_server: TsaServer) -> None:
    reply = http(file_tsa_server.url + "/tsa", make_query(),
                 content_type="Application/TimeStamp-Query; charset=binary")
    assert reply.status == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405(file_tsa_server: TsaServer, method: str) -> None:
    reply = http(file_tsa_server.url + "/tsa", None if method == "GET" else b"x", method=method)
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"
    assert reply.headers["Content-Type"] == "application/problem+json"
    body = problem(reply.body)
    assert body["status"] == 405 and body["type"] == "urn:govpki:problem:method-not-allowed"


@pytest.mark.parametrize("content_type", ["application/ocsp-request", "text/plain", None])
def test_wrong_content_type_is_415(file_tsa_server: TsaServer, content_type: str | None) -> None:
    reply = http(file_tsa_server.url + "/tsa", make_query(), content_type=content_type)
    assert reply.status == 415
    assert problem(reply.body)["type"] == "urn:govpki:problem:unsupported-media-type"


def test_oversized_body_is_413(file_tsa_server: TsaServer) -> None:
    reply = http(file_tsa_server.url + "/tsa", b"\x30" * (64 * 1024 + 1))
    assert reply.status == 413
    body = problem(reply.body)
    assert body["type"] == "urn:govpki:problem:payload-too-large" and body["limit"] == 65536


def test_exactly_64k_is_a_protocol_answer(file_tsa_server: TsaServer) -> None:
    reply = http(file_tsa_server.url + "/tsa", b"\x30" * (64 * 1024))
    assert reply.status == 200
    assert status_of(reply.body) == ("rejection", {"bad_data_format"})


def test_unknown_path_is_404(file_tsa_server: TsaServer) -> None:
    reply = http(file_tsa_server.url + "/tsa/other", make_query())
    assert reply.status == 404
    assert problem(reply.body)["type"] == "urn:govpki:problem:not-found"


@pytest.mark.parametrize("body", [b"", b"garbage", b"\x30\x82\xff\xff"])
def test_garbage_is_a_rejection_with_http_200(file_tsa_server: TsaServer, body: bytes) -> None:
    reply = http(file_tsa_server.url + "/tsa", body)
    assert reply.status == 200
    assert status_of(reply.body) == ("rejection", {"bad_data_format"})


def test_bad_content_length_is_400(file_tsa_server: TsaServer) -> None:
    host, port = file_tsa_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /tsa HTTP/1.0\r\nContent-Type: application/timestamp-query\r\n"
                     b"Content-Length: -5\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.0 400")


def test_health_reports_the_clock(file_tsa_server: TsaServer) -> None:
    reply = http(file_tsa_server.url + "/tsa/health", None, method="GET", content_type=None)
    assert reply.status == 200
    body = json.loads(reply.body)
    assert body["source"] == "none" and body["synchronised"] is True
    assert reply.headers["Content-Type"] == "application/json"
    assert http(file_tsa_server.url + "/tsa/health", b"", method="POST").status == 405


@pytest.mark.parametrize(("command", "granted"), [("false", False), ("true", True)])
def test_clock_command(file_pki: Pki, tmp_path: Path, command: str, granted: bool) -> None:
    """`openssl ts -reply -text` reads timeNotAvailable when the clock check fails."""
    tsa = TimeStampAuthority(file_pki.ctx, TsaConfig(clock_source="command",
                                                     clock_command=command))
    document = tmp_path / "doc.txt"
    document.write_bytes(b"doc")
    query = openssl_query(document, tmp_path / "q.tsq")
    with serve(create_tsa_app(None, tsa=tsa)) as url:
        reply = http(url + "/tsa", query)
        health = http(url + "/tsa/health", None, method="GET", content_type=None)
    assert reply.status == 200
    (tmp_path / "r.tsr").write_bytes(reply.body)
    text = reply_text(tmp_path / "r.tsr")
    if granted:
        assert "Status: Granted." in text
        assert health.status == 200
    else:
        assert "Status: Rejected." in text
        assert "the TSA's time source is not available" in text
        assert status_of(reply.body) == ("rejection", {"time_not_available"})
        assert health.status == 503
        assert json.loads(health.body)["synchronised"] is False


def test_app_factory_loads_the_key_from_the_context(file_pki: Pki) -> None:
    app = create_tsa_app(file_pki.ctx, TsaConfig(clock_source="none"))
    with serve(app) as url:
        assert status_of(http(url + "/tsa", make_query()).body) == ("granted", set())
