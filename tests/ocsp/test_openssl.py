"""The responder over HTTP on loopback, checked by an independent client: ``openssl ocsp``."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ca.revocation import revoke, suspend
from tests.ocsp.conftest import issue, pem, write_pems


def _openssl_ocsp(server, paths: dict[str, Path], certs: list[Path], *extra: str
                  ) -> subprocess.CompletedProcess[str]:
    argv = ["openssl", "ocsp", "-issuer", str(paths["issuer"]), "-url", server.url,
            "-CAfile", str(paths["root"]), "-verify_other", str(paths["issuer"]),
            "-resp_text", "-timeout", "10", *extra]
    for cert in certs:
        argv += ["-cert", str(cert)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _write(tmp_path: Path, name: str, cert) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_bytes(pem(cert))
    return path


def test_good_with_nonce(server, ofile_pki, tmp_path: Path) -> None:
    paths = write_pems(ofile_pki, tmp_path)
    leaf = _write(tmp_path, "leaf.pem", issue(ofile_pki))
    out = _openssl_ocsp(server, paths, [leaf])
    assert out.returncode == 0, out.stderr
    assert "Response verify OK" in out.stderr
    assert f"{leaf}: good" in out.stdout
    assert "OCSP Nonce" in out.stdout
    assert re.search(r"Responder Id: [0-9A-F]{40}", out.stdout)  # byKey (RFC 6960 §4.2.2.3)
    assert "OCSP No Check" in out.stdout  # the delegated signer's certificate is included


def test_good_without_nonce_is_presigned(server, ofile_pki, tmp_path: Path) -> None:
    paths = write_pems(ofile_pki, tmp_path)
    leaf = _write(tmp_path, "leaf.pem", issue(ofile_pki))
    first = _openssl_ocsp(server, paths, [leaf], "-no_nonce")
    second = _openssl_ocsp(server, paths, [leaf], "-no_nonce")
    assert first.returncode == 0 and "Response verify OK" in first.stderr, first.stderr
    assert f"{leaf}: good" in first.stdout and "Nonce" not in first.stdout
    # The same pre-signed answer both times (same producedAt and signature).
    produced = [re.search(r"Produced At: (.*)", o.stdout).group(1)  # type: ignore[union-attr]
                for o in (first, second)]
    assert produced[0] == produced[1]
    assert "Next Update:" in first.stdout


@pytest.mark.parametrize("digest", ["-sha1", "-sha256"])
def test_revoked_with_reason_and_time(server, ofile_pki, tmp_path: Path, digest: str) -> None:
    paths = write_pems(ofile_pki, tmp_path)
    cert = issue(ofile_pki)
    leaf = _write(tmp_path, "leaf.pem", cert)
    assert "good" in _openssl_ocsp(server, paths, [leaf], "-no_nonce", digest).stdout
    change = revoke(ofile_pki.ctx, format(cert.serial_number, "x"), "keyCompromise", actor="t")
    out = _openssl_ocsp(server, paths, [leaf], "-no_nonce", digest)
    assert out.returncode == 0 and "Response verify OK" in out.stderr, out.stderr
    assert f"{leaf}: revoked" in out.stdout
    assert "Reason: keyCompromise" in out.stdout
    when = change.at.strftime("%b %e %H:%M:%S %Y GMT").replace("  ", " ")
    assert re.sub(r"\s+", " ", out.stdout).count(f"Revocation Time: {when}") >= 1, out.stdout
    hash_name = "sha1" if digest == "-sha1" else "sha256"
    assert f"Hash Algorithm: {hash_name}" in out.stdout


def test_hold_is_revoked_with_certificate_hold(server, ofile_pki, tmp_path: Path) -> None:
    paths = write_pems(ofile_pki, tmp_path)
    cert = issue(ofile_pki)
    leaf = _write(tmp_path, "leaf.pem", cert)
    suspend(ofile_pki.ctx, format(cert.serial_number, "x"), actor="t")
    out = _openssl_ocsp(server, paths, [leaf])
    assert f"{leaf}: revoked" in out.stdout and "Reason: certificateHold" in out.stdout


def test_unknown_serial(server, ofile_pki, tmp_path: Path) -> None:
    paths = write_pems(ofile_pki, tmp_path)
    out = _openssl_ocsp(server, paths, [], "-serial", "0x1234567890abcdef")
    assert out.returncode == 0 and "Response verify OK" in out.stderr, out.stderr
    assert "0x1234567890abcdef: unknown" in out.stdout


def test_two_cert_ids_in_one_request(server, ofile_pki, tmp_path: Path) -> None:
    paths = write_pems(ofile_pki, tmp_path)
    good = _write(tmp_path, "good.pem", issue(ofile_pki))
    bad_cert = issue(ofile_pki)
    bad = _write(tmp_path, "bad.pem", bad_cert)
    revoke(ofile_pki.ctx, format(bad_cert.serial_number, "x"), "superseded", actor="t")
    out = _openssl_ocsp(server, paths, [good, bad], "-sha256")
    assert out.returncode == 0 and "Response verify OK" in out.stderr, out.stderr
    assert f"{good}: good" in out.stdout and f"{bad}: revoked" in out.stdout
    assert "Reason: superseded" in out.stdout


def test_foreign_issuer_is_unauthorized(server, ofile_pki, tmp_path: Path) -> None:
    """An issuer we do not serve: openssl makes a CertID from a throwaway CA."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "foreign.pem"), "-subj", "/CN=Foreign CA",
                    "-days", "2"], check=True, capture_output=True)
    out = subprocess.run(["openssl", "ocsp", "-issuer", str(tmp_path / "foreign.pem"),
                          "-serial", "0x1234", "-url", server.url, "-resp_text", "-noverify"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert "unauthorized (6)" in out.stdout + out.stderr


def test_garbage_is_malformed(server) -> None:
    req = urllib.request.Request(server.url, data=b"\x30\x03garbage", method="POST",
                                 headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/ocsp-response"
        assert resp.read() == b"\x30\x03\x0a\x01\x01"


def _get(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read(), dict(resp.headers)


def test_get_with_rfc5019_caching_headers(server, ofile_pki, tmp_path: Path) -> None:
    paths = write_pems(ofile_pki, tmp_path)
    cert = issue(ofile_pki)
    leaf = _write(tmp_path, "leaf.pem", cert)
    issuer_cert = x509.load_pem_x509_certificate(paths["issuer"].read_bytes())
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer_cert, hashes.SHA1()).build()  # noqa: S303
    der = req.public_bytes(serialization.Encoding.DER)
    # RFC 5019 §5: URL-encoded base64; quote() turns '+', '/' and '=' into %2B, %2F, %3D.
    url = server.url + "/" + quote(base64.b64encode(der).decode(), safe="")
    body, headers = _get(url)
    assert headers["Content-Type"] == "application/ocsp-response"
    parsed = ocsp.load_der_ocsp_response(body)
    assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
    cache = headers["Cache-Control"]
    assert "public" in cache and "no-transform" in cache and "must-revalidate" in cache
    max_age = int(re.search(r"max-age=(\d+)", cache).group(1))  # type: ignore[union-attr]
    assert parsed.next_update_utc is not None
    assert 0 < max_age <= (parsed.next_update_utc - parsed.this_update_utc).total_seconds()
    assert headers["ETag"] == '"' + hashlib.sha1(body).hexdigest() + '"'  # noqa: S324
    assert headers["Last-Modified"] == parsed.this_update_utc.strftime(
        "%a, %d %b %Y %H:%M:%S GMT")
    assert headers["Expires"] == parsed.next_update_utc.strftime("%a, %d %b %Y %H:%M:%S GMT")
    # openssl checks what GET returned, independently.
    (tmp_path / "resp.der").write_bytes(body)
    out = subprocess.run(["openssl", "ocsp", "-respin", str(tmp_path / "resp.der"),
                          "-issuer", str(paths["issuer"]), "-cert", str(leaf),
                          "-CAfile", str(paths["root"]), "-verify_other", str(paths["issuer"]),
                          "-no_nonce", "-resp_text"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert "Response verify OK" in out.stderr, out.stderr
    assert f"{leaf}: good" in out.stdout
    # Unencoded '/' in the base64 (some clients) and base64url are accepted too.
    body2, _ = _get(server.url + "/" + base64.b64encode(der).decode().replace("+", "%2B"))
    assert body2 == body
    body3, _ = _get(server.url + "/" + base64.urlsafe_b64encode(der).decode().rstrip("="))
    assert body3 == body


def test_get_with_nonce_is_not_cached(server, ofile_pki, tmp_path: Path) -> None:
    paths = write_pems(ofile_pki, tmp_path)
    out = subprocess.run(["openssl", "ocsp", "-issuer", str(paths["issuer"]), "-serial", "0x99",
                          "-reqout", str(tmp_path / "req.der")],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    der = (tmp_path / "req.der").read_bytes()
    body, headers = _get(server.url + "/" + quote(base64.b64encode(der).decode(), safe=""))
    assert headers["Cache-Control"] == "no-store"
    (tmp_path / "resp.der").write_bytes(body)
    out = subprocess.run(["openssl", "ocsp", "-respin", str(tmp_path / "resp.der"),
                          "-reqin", str(tmp_path / "req.der"), "-CAfile", str(paths["root"]),
                          "-verify_other", str(paths["issuer"]), "-resp_text"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert "Response verify OK" in out.stderr, out.stderr
    assert "OCSP Nonce" in out.stdout and "Cert Status: unknown" in out.stdout
