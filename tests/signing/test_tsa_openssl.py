"""The TSA over a real loopback socket, checked by the OpenSSL CLI as an independent client.

Runs on the full `pki` matrix so the TSA key is exercised as a file key and on SoftHSM2, with
the TSA certificate read from SQLite and from PostgreSQL.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from policies.oids import POLICY_TSA
from tests.signing.conftest import TsaServer
from tests.signing.helpers import (
    http,
    openssl_query,
    query_text,
    reply_text,
    signed_data,
    status_of,
    tst_info,
    verify,
)


@pytest.fixture
def document(tmp_path: Path) -> Path:
    path = tmp_path / "公文.txt"
    path.write_text("青海省人民政府办公厅 关于印发……的通知\n", encoding="utf-8")
    return path


def stamp(server: TsaServer, query: bytes, out: Path) -> str:
    reply = http(server.url + "/tsa", query)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/timestamp-reply"
    out.write_bytes(reply.body)
    return reply_text(out)


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_openssl_query_is_granted_and_verifies(tsa_server: TsaServer, document: Path,
                                               tmp_path: Path, digest: str) -> None:
    query = openssl_query(document, tmp_path / "q.tsq", digest=digest)
    text = stamp(tsa_server, query, tmp_path / "r.tsr")
    assert "Status: Granted." in text
    assert f"Policy OID: {POLICY_TSA}" in text
    assert f"Hash Algorithm: {digest}" in text
    assert "Accuracy: 0x01 seconds" in text
    sent_nonce = re.search(r"Nonce: (\S+)", query_text(tmp_path / "q.tsq"))
    got_nonce = re.search(r"Nonce: (\S+)", text)
    assert sent_nonce and got_nonce and sent_nonce.group(1) == got_nonce.group(1)
    result = verify(document, tmp_path / "r.tsr", tsa_server.root, tsa_server.chain)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verification: OK" in result.stdout


def test_verification_fails_for_another_document(tsa_server: TsaServer, document: Path,
                                                 tmp_path: Path) -> None:
    stamp(tsa_server, openssl_query(document, tmp_path / "q.tsq"), tmp_path / "r.tsr")
    other = tmp_path / "other.txt"
    other.write_text("另一份文件\n", encoding="utf-8")
    result = verify(other, tmp_path / "r.tsr", tsa_server.root, tsa_server.chain)
    assert result.returncode != 0
    assert "Verification: OK" not in result.stdout


def test_no_nonce(tsa_server: TsaServer, document: Path, tmp_path: Path) -> None:
    query = openssl_query(document, tmp_path / "q.tsq", nonce=False)
    text = stamp(tsa_server, query, tmp_path / "r.tsr")
    assert "Status: Granted." in text
    assert "Nonce: unspecified" in text
    result = verify(document, tmp_path / "r.tsr", tsa_server.root, tsa_server.chain)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_cert_req_the_token_carries_no_certificate(
        tsa_server: TsaServer, document: Path, tmp_path: Path) -> None:
    query = openssl_query(document, tmp_path / "q.tsq", cert=False)
    text = stamp(tsa_server, query, tmp_path / "r.tsr")
    assert "Status: Granted." in text
    assert not signed_data((tmp_path / "r.tsr").read_bytes())["certificates"].native
    # The verifier must now be handed the TSA certificate; without it, it cannot find the signer.
    without = verify(document, tmp_path / "r.tsr", tsa_server.root, tsa_server.chain)
    assert without.returncode != 0
    with_tsa = verify(document, tmp_path / "r.tsr", tsa_server.root, tsa_server.chain_with_tsa)
    assert with_tsa.returncode == 0, with_tsa.stdout + with_tsa.stderr


def test_cert_req_puts_the_tsa_certificate_in_the_token(tsa_server: TsaServer, document: Path,
                                                        tmp_path: Path) -> None:
    stamp(tsa_server, openssl_query(document, tmp_path / "q.tsq"), tmp_path / "r.tsr")
    certs = signed_data((tmp_path / "r.tsr").read_bytes())["certificates"]
    tsa_der = tsa_server.tsa.certificate.public_bytes(serialization.Encoding.DER)
    dumped = [c.chosen.dump() for c in certs]  # a SET OF: DER orders it, not the TSA
    assert tsa_der in dumped  # the certificate signingCertificateV2 names
    issuers = [x509.load_der_x509_certificate(d) for d in dumped if d != tsa_der]
    # ...and the issuing CAs below the root, so a verifier holding only the root builds the path
    assert issuers and all(c.subject != c.issuer for c in issuers)
    assert tsa_server.tsa.certificate.issuer in {c.subject for c in issuers}


def test_sha1_query_is_rejected_with_bad_alg(tsa_server: TsaServer, document: Path,
                                             tmp_path: Path) -> None:
    query = openssl_query(document, tmp_path / "q.tsq", digest="sha1")
    text = stamp(tsa_server, query, tmp_path / "r.tsr")
    assert "Status: Rejected." in text
    assert "unrecognized or unsupported algorithm identifier" in text
    assert status_of((tmp_path / "r.tsr").read_bytes()) == ("rejection", {"bad_alg"})


def test_garbage_is_rejected_with_bad_data_format(tsa_server: TsaServer,
                                                  tmp_path: Path) -> None:
    text = stamp(tsa_server, b"\x30\x03garbage", tmp_path / "r.tsr")
    assert "Status: Rejected." in text
    assert "the data submitted has the wrong format" in text


def test_serial_numbers_are_unique(tsa_server: TsaServer, document: Path,
                                   tmp_path: Path) -> None:
    query = openssl_query(document, tmp_path / "q.tsq")
    serials = set()
    for _ in range(200):
        reply = http(tsa_server.url + "/tsa", query)
        serial = tst_info(reply.body, full=False)["serial_number"].native
        assert 0 < serial < 2**127
        serials.add(serial)
    assert len(serials) == 200
