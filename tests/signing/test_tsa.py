"""TimeStampAuthority.respond without HTTP: RFC 3161 §2.4.1 refusals, the token's contents
(RFC 3161 §2.4.2, RFC 5816) and the start-up checks of the TSA certificate (§2.3)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hsm.signer import SoftwareSigner
from policies.oids import POLICY_TSA
from signing.config import TsaConfig
from signing.errors import TsaConfigError
from signing.tsa import TimeStampAuthority, TsaKey, load_tsa_key
from tests.conftest import Pki
from tests.signing.helpers import (
    make_query,
    openssl_query,
    parse_reply,
    signed_data,
    status_of,
    tst_info,
    verify,
)

NO_CLOCK_CHECK = TsaConfig(clock_source="none")


@pytest.fixture(scope="module")
def frozen(file_pki: Pki) -> dt.datetime:
    """A fixed instant inside the demo TSA certificate's validity, with microseconds."""
    cert = x509.load_der_x509_certificate(load_tsa_key(file_pki.ctx).certificate_der)
    return (cert.not_valid_before_utc + dt.timedelta(days=1, seconds=15)).replace(
        microsecond=123456)


@pytest.fixture(scope="module")
def frozen_tsa(file_pki: Pki, frozen: dt.datetime) -> TimeStampAuthority:
    return TimeStampAuthority(file_pki.ctx, TsaConfig(clock_source="none", accuracy_seconds=2),
                              now=lambda: frozen)


# -- refusals, one PKIFailureInfo bit each ------------------------------------------------------

@pytest.mark.parametrize(("query", "fail_info"), [
    pytest.param(make_query(hash_name="sha1"), "bad_alg", id="sha1"),
    pytest.param(make_query(hash_name="md5"), "bad_alg", id="md5"),
    pytest.param(make_query(imprint=b"\x00" * 31), "bad_data_format", id="sha256-31-octets"),
    pytest.param(make_query(hash_name="sha384", imprint=b"\x00" * 32), "bad_data_format",
                 id="sha384-with-sha256-length"),
    pytest.param(make_query(policy="1.2.3.4"), "unaccepted_policy", id="foreign-policy"),
    pytest.param(make_query(extensions=True), "unaccepted_extensions", id="extensions"),
    pytest.param(make_query(version=2), "bad_data_format", id="version-2"),
    pytest.param(make_query(nonce=2**600), "bad_data_format", id="600-bit-nonce"),
    pytest.param(b"", "bad_data_format", id="empty"),
    pytest.param(b"\x30\x80\x00\x00", "bad_data_format", id="indefinite-empty"),
    pytest.param(make_query() + b"\x00", "bad_data_format", id="trailing-byte"),
    pytest.param(make_query()[:-1], "bad_data_format", id="truncated"),
    pytest.param(b"\x30" + b"\x00" * 70000, "bad_data_format", id="over-64k"),
])
def test_refusals(file_tsa: TimeStampAuthority, query: bytes, fail_info: str) -> None:
    status, failures = status_of(file_tsa.respond(query))
    assert (status, failures) == ("rejection", {fail_info})
    reply = parse_reply(file_tsa.respond(query))
    assert reply["time_stamp_token"].native is None
    assert reply["status"]["status_string"].native  # a reason in words


def test_our_own_policy_is_accepted(file_tsa: TimeStampAuthority) -> None:
    assert status_of(file_tsa.respond(make_query(policy=POLICY_TSA))) == ("granted", set())


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element (definite length), for requests asn1crypto would refuse to build."""
    n = len(content)
    length = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) \
        + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


SHA256_OID = tlv(0x06, bytes.fromhex("608648016503040201"))


def raw_query(algorithm_identifier: bytes, digest: bytes) -> bytes:
    imprint = tlv(0x30, algorithm_identifier + tlv(0x04, digest))
    return tlv(0x30, tlv(0x02, b"\x01") + imprint)


def test_hash_parameters_other_than_null_are_refused(file_tsa: TimeStampAuthority) -> None:
    query = raw_query(tlv(0x30, SHA256_OID + tlv(0x02, b"\x00")), b"\x00" * 32)
    assert status_of(file_tsa.respond(query)) == ("rejection", {"bad_data_format"})


# -- the token ------------------------------------------------------------------------------------

def test_token_contents(frozen_tsa: TimeStampAuthority, frozen: dt.datetime) -> None:
    query = make_query(b"doc", "sha512", nonce=-5, cert_req=False)
    reply = frozen_tsa.respond(query)
    assert status_of(reply) == ("granted", set())
    info = tst_info(reply).native
    assert info["version"] == "v1"
    assert info["policy"] == POLICY_TSA
    assert info["message_imprint"]["hash_algorithm"]["algorithm"] == "sha512"
    assert info["message_imprint"]["hashed_message"] == hashlib.sha512(b"doc").digest()
    assert info["nonce"] == -5
    assert info["accuracy"] == {"seconds": 2, "millis": None, "micros": None}
    assert info["gen_time"] == frozen.replace(microsecond=123000)
    assert info["tsa"] is None and info["extensions"] is None
    assert not info["ordering"]


def test_imprint_is_copied_byte_for_byte(frozen_tsa: TimeStampAuthority) -> None:
    """Absent hash parameters stay absent (openssl compares the AlgorithmIdentifier)."""
    for algorithm_identifier in (tlv(0x30, SHA256_OID), tlv(0x30, SHA256_OID + b"\x05\x00")):
        query = raw_query(algorithm_identifier, hashlib.sha256(b"x").digest())
        reply = frozen_tsa.respond(query)
        assert status_of(reply) == ("granted", set())
        assert tst_info(reply)["message_imprint"].dump() == query[5:]


def test_signed_attributes_and_signature(frozen_tsa: TimeStampAuthority,
                                         frozen: dt.datetime) -> None:
    reply = frozen_tsa.respond(make_query())
    sd = signed_data(reply)
    assert sd["version"].native == "v3"
    assert sd["encap_content_info"]["content_type"].native == "tst_info"
    signer_info = sd["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0] for a in signer_info["signed_attrs"]}
    assert attrs["content_type"].native == "tst_info"
    econtent = sd["encap_content_info"]["content"].contents
    assert attrs["message_digest"].native == hashlib.sha256(econtent).digest()
    assert attrs["signing_time"].native == frozen.replace(microsecond=0)
    cert_der = frozen_tsa.certificate.public_bytes(serialization.Encoding.DER)
    ess = attrs["signing_certificate_v2"]["certs"][0]
    assert ess["cert_hash"].native == hashlib.sha256(cert_der).digest()
    assert ess["issuer_serial"]["serial_number"].native == frozen_tsa.certificate.serial_number
    assert b"\x30\x0b\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01" not in ess.dump()  # DEFAULT
    assert signer_info["sid"].chosen["serial_number"].native \
        == frozen_tsa.certificate.serial_number
    assert signer_info["signature_algorithm"]["algorithm"].dotted == "1.2.840.10045.4.3.2"
    # RFC 5652 §5.4: the signature covers the attributes re-tagged as SET OF.
    to_be_signed = cms.CMSAttributes.load(
        b"\x31" + signer_info["signed_attrs"].dump()[1:]).dump()
    public_key = frozen_tsa.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signer_info["signature"].native, to_be_signed, ec.ECDSA(hashes.SHA256()))


def test_signer_failure_is_a_system_failure_rejection(file_pki: Pki) -> None:
    key = load_tsa_key(file_pki.ctx)

    class BrokenSigner:
        def __getattr__(self, name: str) -> object:
            return getattr(key.signer, name)

        def sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
            raise RuntimeError("token removed")

    tsa = TimeStampAuthority(None, NO_CLOCK_CHECK,  # type: ignore[arg-type]
                             key=TsaKey(BrokenSigner(), key.certificate_der))
    assert status_of(tsa.respond(make_query())) == ("rejection", {"system_failure"})


def test_expired_tsa_certificate_at_request_time(file_pki: Pki) -> None:
    clock = [dt.datetime.now(dt.UTC)]
    tsa = TimeStampAuthority(file_pki.ctx, NO_CLOCK_CHECK, now=lambda: clock[0])
    clock[0] = tsa.certificate.not_valid_after_utc + dt.timedelta(seconds=1)
    assert status_of(tsa.respond(make_query())) == ("rejection", {"system_failure"})


def test_clock_not_synchronised(file_pki: Pki) -> None:
    tsa = TimeStampAuthority(file_pki.ctx, TsaConfig(clock_source="command",
                                                     clock_command="false"))
    assert status_of(tsa.respond(make_query())) == ("rejection", {"time_not_available"})
    assert tsa.clock_status() == {"source": "command", "synchronised": False,
                                  "detail": "clock command exited 1"}


def test_no_tsa_key_without_context_or_key() -> None:
    with pytest.raises(TypeError):
        TimeStampAuthority(None)


# -- start-up checks of the TSA certificate (RFC 3161 §2.3) ---------------------------------------

def _certificate(key: ec.EllipticCurvePrivateKey, eku: list[x509.ObjectIdentifier] | None,
                 critical: bool = True, days: int = 30) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TSA test")])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=days)))
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _tsa_with(cert_der: bytes, key: ec.EllipticCurvePrivateKey) -> TimeStampAuthority:
    return TimeStampAuthority(None, NO_CLOCK_CHECK,
                              key=TsaKey(SoftwareSigner("file:t", key), cert_der))


TS = ExtendedKeyUsageOID.TIME_STAMPING


def test_a_proper_certificate_is_accepted() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    tsa = _tsa_with(_certificate(key, [TS]), key)
    assert status_of(tsa.respond(make_query())) == ("granted", set())


@pytest.mark.parametrize(("eku", "critical", "message"), [
    pytest.param(None, True, "no extendedKeyUsage", id="no-eku"),
    pytest.param([TS], False, "not critical", id="eku-not-critical"),
    pytest.param([TS, ExtendedKeyUsageOID.CODE_SIGNING], True, "exactly", id="extra-purpose"),
    pytest.param([ExtendedKeyUsageOID.OCSP_SIGNING], True, "exactly", id="wrong-purpose"),
])
def test_certificates_the_tsa_refuses(eku: list[x509.ObjectIdentifier] | None, critical: bool,
                                      message: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TsaConfigError, match=message):
        _tsa_with(_certificate(key, eku, critical), key)


def test_certificate_of_another_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TsaConfigError, match="does not match"):
        _tsa_with(_certificate(other, [TS]), key)


def test_expired_certificate_is_refused_at_start() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TsaConfigError, match="not valid now"):
        _tsa_with(_certificate(key, [TS], days=-1), key)


def test_demo_tsa_certificate_passes(file_tsa: TimeStampAuthority) -> None:
    eku = file_tsa.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [TS]


def test_ber_request_yields_a_der_token(file_tsa: TimeStampAuthority) -> None:
    """Long-form lengths (BER) in the request do not leak into the signed TSTInfo."""
    imprint = tlv(0x30, SHA256_OID) + tlv(0x04, hashlib.sha256(b"x").digest())
    ber_imprint = b"\x30\x81" + bytes([len(imprint)]) + imprint
    query = tlv(0x30, tlv(0x02, b"\x01") + ber_imprint)
    reply = file_tsa.respond(query)
    assert status_of(reply) == ("granted", set())
    assert tst_info(reply)["message_imprint"].dump() == tlv(0x30, imprint)


@pytest.mark.parametrize("key_type", ["ec-p384", "rsa-2048"])
def test_other_key_types_give_tokens_openssl_verifies(key_type: str, tmp_path: Path) -> None:
    """Hash and signature OID come from hsm.algorithms: P-384 signs with SHA-384, RSA with
    sha256WithRSAEncryption; openssl checks both (the self-signed TSA certificate as anchor)."""
    from hsm.algorithms import algorithm

    key = algorithm(key_type).generate_software_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"TSA {key_type}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([TS]), critical=True)
            .sign(key, hashes.SHA256()))
    tsa = TimeStampAuthority(None, NO_CLOCK_CHECK, key=TsaKey(SoftwareSigner("file:t", key),
                                              cert.public_bytes(serialization.Encoding.DER)))
    document = tmp_path / "doc.txt"
    document.write_bytes(b"doc")
    query = openssl_query(document, tmp_path / "q.tsq", digest="sha384")
    (tmp_path / "r.tsr").write_bytes(tsa.respond(query))
    (tmp_path / "tsa.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    result = verify(document, tmp_path / "r.tsr", tmp_path / "tsa.pem", empty)
    assert result.returncode == 0, result.stdout + result.stderr
    signer_info = signed_data((tmp_path / "r.tsr").read_bytes())["signer_infos"][0]
    assert signer_info["signature_algorithm"]["algorithm"].dotted \
        == algorithm(key_type).signature_oid
    assert signer_info["digest_algorithm"]["algorithm"].native == algorithm(key_type).hash_name
