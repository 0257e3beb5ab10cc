"""Signature timestamps (RFC 3161 Appendix A) from govpki's own TSA, and revocation at the
time that matters: a signature timestamped before its certificate was revoked stays valid, an
untimestamped one does not."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.revocation import revoke, suspend
from ca.store import chain_der
from core.db import transaction
from signing.cms import (
    RevocationStatus,
    http_timestamper,
    sign_cms,
    store_revocation,
    tsa_timestamper,
    verify_cms,
)
from signing.cms_errors import TimestampFailed
from signing.config import TsaConfig
from signing.tsa import TimeStampAuthority
from tests.signing.cms.conftest import CmsPki
from tests.signing.cms.helpers import flip, openssl, openssl_verify
from tests.signing.helpers import make_query


@pytest.fixture(scope="module")
def devices_ca(cms_pki: CmsPki) -> x509.Certificate:
    """The TSA's issuing CA: the token carries only the TSA certificate, so the signer puts
    this one into the signature's chain (or the verifier passes it as other_certificates)."""
    with transaction(cms_pki.pki.ctx.sessions) as session:
        return x509.load_der_x509_certificate(chain_der(session, "devices")[0])


def timestamped(cms_pki: CmsPki, tsa: TimeStampAuthority, devices_ca: x509.Certificate,
                data: bytes | Path, party: str = "ec", **kwargs: object) -> bytes:
    who = getattr(cms_pki, party)
    return sign_cms(data, who.signer, who.certificate, [*cms_pki.chain, devices_ca],
                    timestamp=tsa_timestamper(tsa.respond), **kwargs)  # type: ignore[arg-type]


def unsigned_token(signature: bytes) -> bytes:
    si = cms.ContentInfo.load(signature)["content"]["signer_infos"][0]
    return bytes(si["unsigned_attrs"][0]["values"][0].dump())


def test_timestamped_signature(cms_pki: CmsPki, file_tsa: TimeStampAuthority,
                               devices_ca: x509.Certificate, document: Path,
                               tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    signature = timestamped(cms_pki, file_tsa, devices_ca, document)
    verdict = verify_cms(signature, document, trust_roots=cms_pki.root)
    assert verdict.valid, verdict.reasons
    stamp = verdict.signer.timestamp if verdict.signer else None
    assert stamp is not None and stamp.valid
    assert stamp.time is not None and before <= stamp.time <= dt.datetime.now(dt.UTC)
    assert verdict.timestamp_time == stamp.time
    assert stamp.tsa_subject == file_tsa.certificate.subject.rfc4514_string()
    assert verdict.signers[0].validated_at == stamp.time  # chain checked at the stamped time

    # openssl cms ignores the unsigned attribute and accepts the signature ...
    sig = tmp_path / "ts.p7s"
    sig.write_bytes(signature)
    result = openssl_verify(sig, cms_pki.root_pem, document)
    assert result.returncode == 0, result.stderr.decode()
    # ... and openssl ts confirms the token stamps the SignatureValue octets (RFC 3161 App. A).
    si = cms.ContentInfo.load(signature)["content"]["signer_infos"][0]
    value = tmp_path / "signature-value.bin"
    value.write_bytes(si["signature"].native)
    token = tmp_path / "token.der"
    token.write_bytes(unsigned_token(signature))
    untrusted = tmp_path / "devices.pem"
    untrusted.write_bytes(devices_ca.public_bytes(serialization.Encoding.PEM))
    checked = openssl("ts", "-verify", "-token_in", "-in", token, "-data", value,
                      "-CAfile", cms_pki.root_pem, "-untrusted", untrusted)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert b"Verification: OK" in checked.stdout


def test_tsa_token_carries_its_chain(cms_pki: CmsPki, file_tsa: TimeStampAuthority,
                                     devices_ca: x509.Certificate) -> None:
    """The TSA sends its issuing CA with its certificate (certReq), so the root alone is
    enough to validate the timestamp: no extra certificates from the signer or verifier."""
    signature = sign_cms(b"doc", cms_pki.ec.signer, cms_pki.ec.certificate, cms_pki.chain,
                         timestamp=tsa_timestamper(file_tsa.respond))
    token = unsigned_token(signature)
    assert devices_ca.public_bytes(serialization.Encoding.DER) in token
    assert verify_cms(signature, b"doc", trust_roots=cms_pki.root).valid


def test_changed_timestamp_token_is_invalid(cms_pki: CmsPki, file_tsa: TimeStampAuthority,
                                            devices_ca: x509.Certificate) -> None:
    signature = timestamped(cms_pki, file_tsa, devices_ca, b"doc")
    token = unsigned_token(signature)
    at = signature.index(token) + len(token) - 20  # inside the TSA's signature value
    verdict = verify_cms(flip(signature, at), b"doc", trust_roots=cms_pki.root)
    assert not verdict.valid
    assert verdict.integrity  # the document signature itself is intact
    assert verdict.signer and verdict.signer.timestamp and not verdict.signer.timestamp.valid


def test_token_for_another_signature_is_refused_when_signing(
        cms_pki: CmsPki, file_tsa: TimeStampAuthority) -> None:
    other = tsa_timestamper(file_tsa.respond)

    def wrong(_: bytes) -> bytes:
        return other(b"some other signature value")

    with pytest.raises(TimestampFailed, match="does not stamp this signature value"):
        sign_cms(b"doc", cms_pki.ec.signer, cms_pki.ec.certificate, timestamp=wrong)


def test_tsa_refusal_is_a_typed_error(cms_pki: CmsPki) -> None:
    tsa = TimeStampAuthority(cms_pki.pki.ctx, TsaConfig(clock_source="command",
                                                         clock_command="false"))
    with pytest.raises(TimestampFailed, match="refused: rejection") as caught:
        sign_cms(b"doc", cms_pki.ec.signer, cms_pki.ec.certificate,
                 timestamp=tsa_timestamper(tsa.respond))
    assert caught.value.http_status == 502


def test_tsa_answers_garbage_or_nothing(cms_pki: CmsPki) -> None:
    with pytest.raises(TimestampFailed, match="not a TimeStampResp"):
        sign_cms(b"doc", cms_pki.ec.signer, cms_pki.ec.certificate,
                 timestamp=tsa_timestamper(lambda query: b"garbage"))
    with pytest.raises(TimestampFailed, match="cannot be reached"):
        sign_cms(b"doc", cms_pki.ec.signer, cms_pki.ec.certificate,
                 timestamp=http_timestamper("http://127.0.0.1:9/tsa", timeout=2))
    with pytest.raises(ValueError, match="http"):
        http_timestamper("file:///etc/passwd")


def test_nonce_mismatch_is_refused(cms_pki: CmsPki, file_tsa: TimeStampAuthority) -> None:
    def replay(query: bytes) -> bytes:  # answers a different query (an old reply replayed)
        return file_tsa.respond(make_query(data=b"", imprint=hashlib.sha256(b"x").digest()))

    with pytest.raises(TimestampFailed, match=r"nonce differs|other data"):
        sign_cms(b"doc", cms_pki.ec.signer, cms_pki.ec.certificate,
                 timestamp=tsa_timestamper(replay))


def test_revocation_at_the_time_that_matters(cms_pki: CmsPki, file_tsa: TimeStampAuthority,
                                             devices_ca: x509.Certificate) -> None:
    victim = cms_pki.issue("to-be-revoked", "official-signing", "ec-p256")
    chain = [*cms_pki.chain, devices_ca]
    stamped = sign_cms(b"doc", victim.signer, victim.certificate, chain,
                       timestamp=tsa_timestamper(file_tsa.respond))
    plain = sign_cms(b"doc", victim.signer, victim.certificate, chain)
    checker = store_revocation(cms_pki.pki.ctx)

    before = verify_cms(plain, b"doc", trust_roots=cms_pki.root, revocation=checker)
    assert before.valid and before.signers[0].revocation is RevocationStatus.GOOD

    revoke(cms_pki.pki.ctx, format(victim.certificate.serial_number, "x"), "keyCompromise",
           ca="officials", actor="cms-tests",
           at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    after = verify_cms(plain, b"doc", trust_roots=cms_pki.root, revocation=checker,
                       at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2))
    assert not after.valid and after.signers[0].revocation is RevocationStatus.REVOKED
    assert after.integrity and after.chain_valid
    assert any("is revoked or suspended" in r for r in after.reasons)

    # Timestamped before the revocation: the signature provably existed while it was good.
    kept = verify_cms(stamped, b"doc", trust_roots=cms_pki.root, revocation=checker)
    assert kept.valid, kept.reasons
    assert kept.signers[0].revocation is RevocationStatus.GOOD


def test_suspended_certificate_and_failing_checker(cms_pki: CmsPki) -> None:
    held = cms_pki.issue("to-be-held", "official-signing", "ec-p256")
    signature = sign_cms(b"doc", held.signer, held.certificate, cms_pki.chain)
    suspend(cms_pki.pki.ctx, format(held.certificate.serial_number, "x"), ca="officials",
            actor="cms-tests")
    verdict = verify_cms(signature, b"doc", trust_roots=cms_pki.root,
                         revocation=store_revocation(cms_pki.pki.ctx),
                         at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert not verdict.valid and verdict.signers[0].revocation is RevocationStatus.REVOKED

    def broken(cert: x509.Certificate, issuer: x509.Certificate, moment: dt.datetime) -> str:
        raise ConnectionError("OCSP responder unreachable")

    unknown = verify_cms(signature, b"doc", trust_roots=cms_pki.root, revocation=broken)
    assert not unknown.valid and unknown.signers[0].revocation is RevocationStatus.UNKNOWN
    assert any("could not be checked (ConnectionError)" in r for r in unknown.reasons)
