"""ca.tbs: the TBS bytes the issuer's key signs are the ones pyca writes for that key."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from ca.der import replace_tbs_signature_algorithm
from ca.lint import lint_certificate
from ca.tbs import ExtensionPlan, build_name, build_tbs, extensions_for
from hsm.algorithms import KeyType, algorithm

_SUBJECT = build_name([("C", "CN"), ("ST", "青海省"), ("O", "青海省人民政府办公厅"),
                       ("CN", "张三")])
_ISSUER = build_name([("C", "CN"), ("O", "青海省人民政府办公厅"), ("CN", "Issuing CA")])
_PLAN = ExtensionPlan(key_usage=("digitalSignature", "nonRepudiation"),
                      extended_key_usage=("1.3.6.1.5.5.7.3.2",),
                      policy_oids=("1.3.6.1.4.1.32473.630000.1.1",),
                      crl_url="http://127.0.0.1:8600/crl/officials.crl",
                      ocsp_url="http://127.0.0.1:8600/ocsp")


def _inputs(issuer_key):
    subject_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    issuer_ski = x509.SubjectKeyIdentifier.from_public_key(issuer_key.public_key()).digest
    return dict(issuer_name=_ISSUER, subject=_SUBJECT, public_key=subject_key.public_key(),
                serial=0x7F00112233445566778899AABBCCDDEE, not_before=now,
                not_after=now + dt.timedelta(days=730),
                extensions=extensions_for(_PLAN, subject_key.public_key(), issuer_ski))


def _signed_by_pyca(issuer_key, key_type: KeyType, inputs) -> x509.Certificate:
    builder = (x509.CertificateBuilder().issuer_name(inputs["issuer_name"])
               .subject_name(inputs["subject"]).public_key(inputs["public_key"])
               .serial_number(inputs["serial"]).not_valid_before(inputs["not_before"])
               .not_valid_after(inputs["not_after"]))
    for ext, critical in inputs["extensions"]:
        builder = builder.add_extension(ext, critical)
    return builder.sign(issuer_key, algorithm(key_type).hash_algorithm())


@pytest.mark.parametrize("key_type", list(KeyType))
def test_tbs_is_what_pyca_writes_for_the_issuers_key(key_type: KeyType) -> None:
    """For RSA issuers a P-256 key signs and the AlgorithmIdentifier is replaced: the bytes
    must still be exactly those pyca writes when the RSA key itself signs."""
    issuer_key = algorithm(key_type).generate_software_key()
    inputs = _inputs(issuer_key)
    reference = _signed_by_pyca(issuer_key, key_type, inputs)
    tbs = build_tbs(issuer_key_type=key_type, **inputs)
    assert tbs.tbs_der == reference.tbs_certificate_bytes
    reference_der = reference.public_bytes(Encoding.DER)
    assert tbs.algorithm_der in reference_der
    assert lint_certificate(tbs.lint_der) == lint_certificate(reference_der)
    # and what pkilint reads parses as a certificate of the issuer's algorithm
    linted = x509.load_der_x509_certificate(tbs.lint_der)
    assert linted.signature_algorithm_oid.dotted_string == algorithm(key_type).signature_oid


def test_replacing_the_algorithm_keeps_every_other_byte() -> None:
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    inputs = _inputs(issuer_key)
    tbs = _signed_by_pyca(issuer_key, KeyType.EC_P256, inputs).tbs_certificate_bytes
    same = replace_tbs_signature_algorithm(tbs, bytes.fromhex("300a06082a8648ce3d040302"))
    assert same == tbs
    longer = replace_tbs_signature_algorithm(
        tbs, bytes.fromhex("300d06092a864886f70d01010b0500"))
    assert len(longer) == len(tbs) + 3
    assert longer.replace(bytes.fromhex("300d06092a864886f70d01010b0500"),
                          bytes.fromhex("300a06082a8648ce3d040302"))[4:] == tbs[4:]


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x01", b"\x04\x00", b"\x30\x05\x02\x01"])
def test_replacing_in_something_else_fails(der: bytes) -> None:
    with pytest.raises(ValueError):
        replace_tbs_signature_algorithm(der, b"\x30\x00")
