"""ca/lint.py's dispatch cache must give exactly pkilint's findings (see ca.lint._accelerate)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from pkilint import loader
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity

from ca import lint


def _plain_findings(der: bytes) -> list[tuple[str, str, str]]:
    """pkilint's own traversal, unaccelerated, with ca.lint's severity filter."""
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS,
                                               extension.EXTENSION_MAPPINGS),
        [certificate.create_issuer_validator_container([]),
         certificate.create_validity_validator_container(),
         certificate.create_subject_validator_container([]),
         certificate.create_extensions_validator_container([]),
         certificate.create_spki_validator_container([])])
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
    return [(fd.finding.severity.name, fd.finding.code, r.node.path)
            for r in validator.validate(doc.root) for fd in r.finding_descriptions
            if fd.finding.severity <= ValidationFindingSeverity.WARNING]


def _fast_findings(der: bytes) -> list[tuple[str, str, str]]:
    return [(f.severity, f.code, f.node_path) for f in lint.lint_certificate(der)]


def _cert(*, rsa_key: bool = False, cn: str | None = "张三", key_encipherment: bool = False,
          ski: bool = True, url: str = "http://127.0.0.1:8600/crl/officials.crl",
          days: int = 365, eku: bool = True, san: str | None = None) -> bytes:
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(
        ec.SECP256R1())
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "青海省人民政府办公厅")]
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    issuer = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Issuing CA")])
    builder = (x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.KeyUsage(True, True, key_encipherment, False, False, False,
                                            False, False, False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   key.public_key()), critical=False)
               .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                   [x509.UniformResourceIdentifier(url)], None, None, None)]), critical=False))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]),
            critical=False)
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(
            key.public_key()), critical=False)
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.RFC822Name(san)]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


@pytest.mark.parametrize("kwargs", [
    {}, {"rsa_key": True}, {"key_encipherment": True}, {"rsa_key": True, "ski": False},
    {"cn": None}, {"cn": None, "san": "zhangsan@example.gov.cn"}, {"url": "ldap://x"},
    {"url": "http://bad host/x.crl"}, {"days": 40000}, {"eku": False}, {"san": "not an email"},
])
def test_same_findings_as_pkilint(kwargs) -> None:
    der = _cert(**kwargs)
    assert _fast_findings(der) == _plain_findings(der)


def test_the_comparison_sees_real_findings() -> None:
    der = _cert(key_encipherment=True, cn=None)
    fast = _fast_findings(der)
    assert any(severity == "ERROR" for severity, _, _ in fast)
    assert fast == _plain_findings(der)


@settings(max_examples=25, deadline=None)
@given(cn=st.one_of(st.none(), st.text(min_size=1, max_size=70)),
       days=st.integers(min_value=1, max_value=50000),
       ski=st.booleans(), key_encipherment=st.booleans(),
       san=st.one_of(st.none(), st.emails()))
def test_same_findings_for_generated_certificates(cn, days, ski, key_encipherment, san) -> None:
    try:
        der = _cert(cn=cn, days=days, ski=ski, key_encipherment=key_encipherment, san=san)
    except ValueError:  # pyca refuses some names outright: nothing to lint
        return
    assert _fast_findings(der) == _plain_findings(der)


def test_values_decoded_once_still_report_broken_values_every_time() -> None:
    """The per-thread memo of decoded values never hides a decoding failure: a broken key
    usage value is FATAL on every certificate that carries it, after good ones were cached."""
    good = _cert()
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    name_ = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "张三")])
    broken = (x509.CertificateBuilder().subject_name(name_).issuer_name(name_)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
              .add_extension(x509.UnrecognizedExtension(x509.ExtensionOID.KEY_USAGE,
                                                        b"\x03\x05garbage"), critical=True)
              .sign(key, hashes.SHA256()).public_bytes(Encoding.DER))
    for der in (good, broken, good, broken):
        assert _fast_findings(der) == _plain_findings(der)
    assert any(code == "itu.invalid_asn1_syntax" for _, code, _ in _fast_findings(broken))


def test_a_linted_document_leaves_no_cycles_behind() -> None:
    """ca.lint takes the document apart after linting: its ~450 nodes are freed by reference
    counting, not left for the cycle collector to find (12% of issuance under callgrind)."""
    import gc

    ders = [_cert() for _ in range(4)]
    lint.lint_certificate(ders[0])  # validator tree, memos: built once, kept
    gc.collect()
    gc.disable()
    try:
        for der in ders[1:]:
            assert _fast_findings(der) == _plain_findings(der)
        lint.lint_certificate(_cert(cn=None))
        gc.collect()  # pkilint's plain traversal leaves its cycles: clear them first
        for der in ders[1:]:
            lint.lint_certificate(der)
        assert gc.collect() == 0
    finally:
        gc.enable()
