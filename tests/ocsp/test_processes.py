"""Several responder processes on one PostgreSQL: same answers, a revocation everywhere within a
second (LISTEN/NOTIFY), whichever process revoked."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ca.revocation import revoke
from ca.store import chain_der
from core.db import transaction
from tests.ocsp.conftest import issue

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _spawn(pki) -> tuple[subprocess.Popen[str], str]:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([sys.executable, "-m", "tests.ocsp.serve_worker", str(pki.home),
                             pki.ctx.config.database_url], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready "), line
    return proc, f"http://127.0.0.1:{line.split()[1]}/ocsp"


@pytest.fixture
def two_responders(opg_pki) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    procs = [_spawn(opg_pki) for _ in range(2)]
    yield [url for _, url in procs]
    for proc, _ in procs:
        proc.terminate()
        proc.wait(10)


def _ask(url: str, der: bytes) -> ocsp.OCSPResponse:
    req = urllib.request.Request(url, data=der, method="POST",
                                 headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return ocsp.load_der_ocsp_response(resp.read())


def _request(pki, cert: x509.Certificate) -> bytes:  # type: ignore[no-untyped-def]
    with transaction(pki.ctx.sessions) as session:
        issuer = x509.load_der_x509_certificate(chain_der(session, "officials")[0])
    return (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
            .public_bytes(serialization.Encoding.DER))


def _wait_revoked(url: str, der: bytes, deadline: float) -> float:
    while True:
        if _ask(url, der).certificate_status is ocsp.OCSPCertStatus.REVOKED:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} still answers good after the deadline")
        time.sleep(0.02)


def test_revocation_reaches_every_process_within_a_second(opg_pki, two_responders) -> None:
    """This test process revokes and runs no responder: the responders that hear the NOTIFY
    sign and store the new answer themselves."""
    cert = issue(opg_pki)
    der = _request(opg_pki, cert)
    answers = [_ask(url, der) for url in two_responders]
    assert [a.certificate_status for a in answers] == [ocsp.OCSPCertStatus.GOOD] * 2
    revoke(opg_pki.ctx, format(cert.serial_number, "x"), "keyCompromise", actor="t")
    start = time.monotonic()
    for url in two_responders:
        assert _wait_revoked(url, der, start + 1.0) - start <= 1.0
    answers = [_ask(url, der) for url in two_responders]
    assert {a.revocation_reason for a in answers} == {x509.ReasonFlags.key_compromise}
    assert len({a.revocation_time_utc for a in answers}) == 1


def test_in_process_responder_signs_and_others_load_it(opg_pki, two_responders) -> None:
    from ocsp.events import install
    from ocsp.responder import OcspResponder

    responder = OcspResponder(opg_pki.ctx)
    hub = install(opg_pki.ctx, responder, listen=False)
    try:
        cert = issue(opg_pki)
        der = _request(opg_pki, cert)
        for url in two_responders:
            assert _ask(url, der).certificate_status is ocsp.OCSPCertStatus.GOOD
        revoke(opg_pki.ctx, format(cert.serial_number, "x"), "superseded", actor="t")
        mine = ocsp.load_der_ocsp_response(responder.respond(der))
        assert mine.certificate_status is ocsp.OCSPCertStatus.REVOKED
        start = time.monotonic()
        for url in two_responders:
            _wait_revoked(url, der, start + 1.0)
    finally:
        hub.close()
