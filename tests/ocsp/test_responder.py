"""The responder's protocol logic, called directly, on every storage × key-store pair."""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ca import status as ca_status
from ca.revocation import release, revoke, suspend
from ca.store import chain_der
from core.audit import AuditEvent
from core.db import transaction, utcnow
from ocsp.events import install
from ocsp.models import PresignedResponse
from ocsp.request import parse_request
from ocsp.responder import OcspResponder
from ocsp.signer import ensure_fresh
from tests.ocsp.conftest import issue


def _issuer(pki, ca: str = "officials") -> x509.Certificate:  # type: ignore[no-untyped-def]
    with transaction(pki.ctx.sessions) as session:
        return x509.load_der_x509_certificate(chain_der(session, ca)[0])


def _request(cert: x509.Certificate, issuer: x509.Certificate,
             algorithm: hashes.HashAlgorithm | None = None, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA256())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _check_signed(body: bytes, signer_ca_cert: x509.Certificate) -> ocsp.OCSPResponse:
    """pyca parses it, and the signature verifies with the delegated signer's key, whose
    certificate the issuing CA signed."""
    resp = ocsp.load_der_ocsp_response(body)
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    signer = resp.certificates[0]
    signer.verify_directly_issued_by(signer_ca_cert)
    from cryptography.hazmat.primitives.asymmetric import ec

    key = signer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    return resp


def test_good_revoked_hold_release_on_every_backend(opki) -> None:
    responder = OcspResponder(opki.ctx)
    issuer = _issuer(opki)
    cert = issue(opki)
    for alg in (hashes.SHA1(), hashes.SHA256()):  # noqa: S303
        resp = _check_signed(responder.respond(_request(cert, issuer, alg)), issuer)
        assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert resp.hash_algorithm.name == alg.name
    suspend(opki.ctx, _serial(cert), actor="t")
    responder.sync("officials", _serial(cert))
    resp = _check_signed(responder.respond(_request(cert, issuer)), issuer)
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason is x509.ReasonFlags.certificate_hold
    release(opki.ctx, _serial(cert), actor="t")
    responder.sync("officials", _serial(cert))
    assert ocsp.load_der_ocsp_response(responder.respond(_request(cert, issuer))
                                       ).certificate_status is ocsp.OCSPCertStatus.GOOD


def test_nonce_is_echoed_and_answer_signed_fresh(ofile_pki, responder) -> None:
    issuer = _issuer(ofile_pki)
    cert = issue(ofile_pki)
    first = responder.respond(_request(cert, issuer, nonce=b"n" * 32))
    second = responder.respond(_request(cert, issuer, nonce=b"m" * 32))
    r1, r2 = (ocsp.load_der_ocsp_response(b) for b in (first, second))
    assert r1.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 32
    assert r2.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"m" * 32
    assert r1.signature != r2.signature


@pytest.mark.parametrize("size, ok", [(1, True), (32, True), (33, False), (128, False)])
def test_nonce_length_bounds_rfc8954(ofile_pki, responder, size: int, ok: bool) -> None:
    issuer = _issuer(ofile_pki)
    cert = issue(ofile_pki)
    resp = ocsp.load_der_ocsp_response(responder.respond(_request(cert, issuer,
                                                                  nonce=b"x" * size)))
    expected = (ocsp.OCSPResponseStatus.SUCCESSFUL if ok
                else ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    assert resp.response_status is expected


def test_several_cert_ids_parse_and_answer(ofile_pki, responder) -> None:
    issuer = _issuer(ofile_pki)
    certs = [issue(ofile_pki) for _ in range(3)]
    revoke(ofile_pki.ctx, _serial(certs[1]), "keyCompromise", actor="t")
    one = [asn1_ocsp.OCSPRequest.load(_request(c, issuer))["tbs_request"]["request_list"][0]
           for c in certs]
    der = asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": one}}).dump()
    assert len(parse_request(der).cert_ids) == 3
    parsed = asn1_ocsp.OCSPResponse.load(responder.respond(der))
    single = parsed.basic_ocsp_response["tbs_response_data"]["responses"]
    assert [s["cert_status"].name for s in single] == ["good", "revoked", "good"]
    assert single[1]["cert_status"].chosen["revocation_reason"].native == "key_compromise"


def test_cert_ids_of_two_cas_are_unauthorized(ofile_pki, responder) -> None:
    a, b = issue(ofile_pki, "officials"), issue(ofile_pki, "devices")
    one = [asn1_ocsp.OCSPRequest.load(_request(c, _issuer(ofile_pki, ca)))["tbs_request"][
        "request_list"][0] for c, ca in ((a, "officials"), (b, "devices"))]
    der = asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": one}}).dump()
    assert responder.respond(der) == b"\x30\x03\x0a\x01\x06"


def test_devices_ca_answers_with_its_own_signer(ofile_pki, responder) -> None:
    issuer = _issuer(ofile_pki, "devices")
    cert = issue(ofile_pki, "devices")
    resp = _check_signed(responder.respond(_request(cert, issuer)), issuer)
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_revoking_call_returns_after_answer_is_signed_and_stored(ofile_pki) -> None:
    """install(): the in-process listener runs inside revoke(), after its commit."""
    responder = OcspResponder(ofile_pki.ctx)
    hub = install(ofile_pki.ctx, responder, listen=False)
    try:
        issuer = _issuer(ofile_pki)
        cert = issue(ofile_pki)
        good = responder.respond(_request(cert, issuer))
        assert ocsp.load_der_ocsp_response(good).certificate_status is ocsp.OCSPCertStatus.GOOD
        revoke(ofile_pki.ctx, _serial(cert), "affiliationChanged", actor="t")
        # No sync() call: the event did it. Memory and table both say revoked already.
        with transaction(ofile_pki.ctx.sessions) as session:
            rows = session.scalars(select(PresignedResponse).where(
                PresignedResponse.serial == _serial(cert))).all()
        assert {r.hash_algorithm for r in rows} == {"sha1", "sha256"}
        assert {r.status for r in rows} == {"revoked"}
        cached = responder._cache[parse_request(_request(cert, issuer)).cert_ids[0].key]
        resp = ocsp.load_der_ocsp_response(cached.der)
        assert resp.revocation_reason is x509.ReasonFlags.affiliation_changed
        assert ocsp.load_der_ocsp_response(responder.respond(_request(cert, issuer))
                                           ).certificate_status is ocsp.OCSPCertStatus.REVOKED
    finally:
        hub.close()


def test_restart_rebuilds_memory_from_the_table(ofile_pki) -> None:
    issuer = _issuer(ofile_pki)
    cert = issue(ofile_pki)
    first = OcspResponder(ofile_pki.ctx)
    answer = first.respond(_request(cert, issuer))
    second = OcspResponder(ofile_pki.ctx)  # a restarted process
    assert second.load() >= 1
    assert second.respond(_request(cert, issuer)) == answer  # the same bytes: not re-signed


def test_restart_notices_a_change_made_while_nobody_listened(ofile_pki) -> None:
    issuer = _issuer(ofile_pki)
    cert = issue(ofile_pki)
    OcspResponder(ofile_pki.ctx).respond(_request(cert, issuer))  # stored as good
    revoke(ofile_pki.ctx, _serial(cert), "superseded", actor="t")  # no responder installed
    restarted = OcspResponder(ofile_pki.ctx)
    restarted.load()
    assert ocsp.load_der_ocsp_response(restarted.respond(_request(cert, issuer))
                                       ).certificate_status is ocsp.OCSPCertStatus.REVOKED


def test_half_expired_answer_is_resigned(ofile_pki) -> None:
    now = [utcnow()]
    responder = OcspResponder(ofile_pki.ctx, validity=dt.timedelta(hours=2),
                              clock=lambda: now[0])
    issuer = _issuer(ofile_pki)
    cert = issue(ofile_pki)
    req = _request(cert, issuer)
    first = ocsp.load_der_ocsp_response(responder.respond(req))
    assert first.next_update_utc - first.this_update_utc == dt.timedelta(hours=2)
    now[0] += dt.timedelta(minutes=59)
    assert ocsp.load_der_ocsp_response(responder.respond(req)).this_update_utc \
        == first.this_update_utc
    now[0] += dt.timedelta(minutes=2)
    assert ocsp.load_der_ocsp_response(responder.respond(req)).this_update_utc \
        > first.this_update_utc


def test_presign_all_signs_sha1_and_sha256(ofile_pki) -> None:
    cert = issue(ofile_pki)
    responder = OcspResponder(ofile_pki.ctx)
    assert responder.presign_all("officials") >= 1
    with transaction(ofile_pki.ctx.sessions) as session:
        algs = set(session.scalars(select(PresignedResponse.hash_algorithm).where(
            PresignedResponse.serial == _serial(cert))))
    assert algs == {"sha1", "sha256"}
    assert responder.presign_all("officials") == 0  # nothing is due any more


def test_database_down_serves_held_answers_and_try_later_otherwise(ofile_pki) -> None:
    issuer = _issuer(ofile_pki)
    held, other = issue(ofile_pki), issue(ofile_pki)
    responder = OcspResponder(ofile_pki.ctx)
    good = responder.respond(_request(held, issuer))

    class Down:
        def __call__(self):  # type: ignore[no-untyped-def]
            raise __import__("sqlalchemy.exc", fromlist=["OperationalError"]).OperationalError(
                "SELECT 1", {}, Exception("database is down"))

    responder.ctx = type(ofile_pki.ctx)(ofile_pki.ctx.config, ofile_pki.ctx.engine, Down(),
                                        ofile_pki.ctx.keyring)  # type: ignore[arg-type]
    assert responder.respond(_request(held, issuer)) == good
    assert responder.respond(_request(other, issuer)) == b"\x30\x03\x0a\x01\x03"  # tryLater


def test_periodic_reread_during_an_outage_keeps_the_issuers_it_knew(ofile_pki) -> None:
    """The issuer list is re-read every 30 s; a re-read that meets a database that is away
    keeps the list read before, so answers held in memory are still served (not tryLater)."""
    issuer = _issuer(ofile_pki)
    held = issue(ofile_pki)
    responder = OcspResponder(ofile_pki.ctx)
    responder.presign_all("officials")  # answers held for SHA-256 and SHA-1 CertIDs
    responder.respond(_request(held, issuer))

    class Down:
        def __call__(self):  # type: ignore[no-untyped-def]
            raise __import__("sqlalchemy.exc", fromlist=["OperationalError"]).OperationalError(
                "SELECT 1", {}, Exception("database is down"))

    responder.ctx = type(ofile_pki.ctx)(ofile_pki.ctx.config, ofile_pki.ctx.engine, Down(),
                                        ofile_pki.ctx.keyring)  # type: ignore[arg-type]
    responder.invalidate_metadata()  # the periodic re-read is due
    # Other request bytes than before (SHA-1 CertID), so the answer is looked up by CertID.
    body = responder.respond(_request(held, issuer, hashes.SHA1()))  # noqa: S303 (RFC 5019)
    assert ocsp.load_der_ocsp_response(body).certificate_status is ocsp.OCSPCertStatus.GOOD
    # A forced re-read (a generation made or retired) must not pretend: it fails loudly.
    with pytest.raises(SQLAlchemyError):
        responder.reload_metadata()


def test_signer_renewal_when_a_third_remains(ofile_pki) -> None:
    with transaction(ofile_pki.ctx.sessions) as session:
        before = ca_status.service_key(session, "devices", "ocsp-signer")
    assert ensure_fresh(ofile_pki.ctx, ca="devices") == []  # fresh: nothing to do
    late = before.not_after - (before.not_after - before.not_before) / 4
    renewed = ensure_fresh(ofile_pki.ctx, ca="devices", now=late, actor="t")
    assert [r.ca for r in renewed] == ["devices"] and renewed[0].old_serial == before.serial
    with transaction(ofile_pki.ctx.sessions) as session:
        after = ca_status.service_key(session, "devices", "ocsp-signer")
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq.desc())
                                  .limit(4)).all()
    assert after.serial == renewed[0].new_serial and after.key_uri != before.key_uri
    assert "ocsp.renew-signer" in actions
    new_cert = after.certificate()
    assert new_cert.subject == before.certificate().subject
    assert new_cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    # A responder uses the new signer.
    issuer = _issuer(ofile_pki, "devices")
    resp = _check_signed(OcspResponder(ofile_pki.ctx).respond(
        _request(issue(ofile_pki, "devices"), issuer, nonce=b"1234")), issuer)
    assert resp.certificates[0].serial_number == int(after.serial, 16)
